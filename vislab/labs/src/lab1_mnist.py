# %% [markdown]
# # Lab 1: MNIST classification with neural networks
#
# In this lab you build four classifiers for handwritten digits, from a plain multi-layer perceptron to a
# small ResNet, train each one and look at its validation curves:
#
# | part | network | what you write |
# |---|---|---|
# | 1-0 | multi-layer perceptron (784-50-50-10) | its layers (warm-up) |
# | 1-1 | simple CNN | conv / pool / linear layers, choosing kernel sizes |
# | 1-2 | VGG-like CNN | eight 3x3 convolutions and the classifier head |
# | 1-3 | ResNet | a residual block and the network built from it |
#
# **How the exercises work.** Every `NotImplemented` (or `raise NotImplementedError`) is yours to replace.
# The cell after each exercise runs a *checker* from `vislab.labs`: it builds your class, runs it on small
# inputs and prints a report -- a table of every layer's output shape against the lab's table, stopping at
# the first difference, with a hint. "public checks passed" means the checks we run found nothing wrong; it
# does not prove the network correct. The training cells after a checker only run once it passed.
#
# Run the notebook top to bottom (*Run -> Run All Cells*). With the environment variable `VISLAB_QUICK=1`
# every training run is cut to a few hundred images and one epoch (a smoke test, e.g. for grading);
# without it you get the real lab. Use a GPU where you have one (Colab: *Runtime -> Change runtime type ->
# GPU*); the notebook picks the device once, below.
#
# **On a CPU** the notebook trains with shorter settings that reach the lab's accuracy in a fraction of its
# time (a one-cycle learning-rate schedule with AdamW, or SGD for the MLP; 2 epochs for `SimpleVGG` and
# `SimpleResNet`, batch 128, channels-last, bfloat16 only where the CPU computes it natively); set
# `LAB_SETTINGS = True` in the setup cell below for the lab's own (10 epochs per network, batch 64, each
# network's optimizer), as on a GPU.

# %% [markdown]
# ## 0. Setup
#
# This notebook needs the `vislab` package. Where it is already installed (your course machine, a local
# `pip install -e .` of the repository) the next cell does nothing. vislab is **not published on PyPI**, so
# on a fresh Colab runtime upload the wheel your teacher gave you (`vislab-<version>-py3-none-any.whl`,
# built with `pip wheel --no-deps -w dist .` in the repository) into the session's files, then run the cell.

# %%
import importlib.util

if importlib.util.find_spec("vislab") is None:
    import glob

    wheels = sorted(glob.glob("vislab-*.whl"))
    if not wheels:
        raise RuntimeError("vislab is not installed: upload the vislab wheel (vislab-<version>-py3-none-any.whl) "
                           "next to this notebook, then run this cell again")
    # %pip install -q {wheels[-1]}

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from vislab.core.device import pick_device
from vislab.core.memory import retain_freed_memory
from vislab.labs import check_mlp, check_resblock, check_resnet, check_simple_cnn, check_vgg
from vislab.labs.settings import lab1_settings
from vislab.mnist.data import load_mnist, normalize

QUICK = os.environ.get("VISLAB_QUICK") == "1"  # small smoke-test settings (see the top of the notebook)
LAB_SETTINGS = False  # True: the lab's own training settings on a CPU too (about 2 hours on two cores)
device = pick_device("auto")  # cuda, then mps, then cpu: chosen once, used by every cell below
settings = lab1_settings(device.type, lab=LAB_SETTINGS, quick=QUICK)  # the lab's on a GPU, shorter on a CPU
EPOCHS = settings.epochs  # epochs per network: change them here, e.g. EPOCHS["SimpleVGG"] = 10
MEMORY_FORMAT = torch.channels_last if settings.channels_last else torch.contiguous_format
if not settings.lab:
    retain_freed_memory()  # CPU: reuse freed memory in the next step rather than page-fault it in afresh
torch.manual_seed(0)
print(f"device: {device}; quick mode: {QUICK}")
print(settings.describe())

# %% [markdown]
# ## 1. The MNIST data set
#
# MNIST is a large database of handwritten digits: 60,000 training and 10,000 test images, each a 28 x 28
# grey-scale image of one digit centred on its centre of mass, labelled 0-9. vislab ships a copy, so nothing
# is downloaded. The pixels are normalised with the training set's mean and standard deviation
# (0.1307, 0.3081). As in the lab, the test set serves as the validation set after every epoch.

# %%
train_images, train_labels = load_mnist(None, "train")
test_images, test_labels = load_mnist(None, "test")
if QUICK:
    train_images, train_labels = train_images[:256], train_labels[:256]
    test_images, test_labels = test_images[:256], test_labels[:256]

batch_size = settings.batch_size  # the lab's 64; 128 on a CPU, where larger batches run faster per image
train_loader = DataLoader(TensorDataset(normalize(train_images), train_labels), batch_size=batch_size, shuffle=True)
validation_loader = DataLoader(TensorDataset(normalize(test_images), test_labels), batch_size=1000)
print(f"{len(train_loader.dataset)} training images, {len(validation_loader.dataset)} validation images")

x, y = next(iter(train_loader))
print("one batch:", tuple(x.shape), x.dtype, "labels", tuple(y.shape), y.dtype)

# %%
fig, axes = plt.subplots(2, 10, figsize=(11, 2.8))
for ax, image, label in zip(axes.flat, train_images[:20], train_labels[:20], strict=True):
    ax.imshow(image, cmap="gray")  # the raw uint8 image, 0 = black background
    ax.set_title(int(label))
    ax.axis("off")
plt.show()

# %% [markdown]
# ## 2. Lab 1-0: a multi-layer perceptron
#
# The image (28 x 28 = 784 values) is flattened into a vector and passes through two hidden layers of 50
# units, each a matrix product $h' = x W$ (plus a bias) followed by a ReLU, then an output layer of 10 values.
#
# **Softmax** turns the 10 outputs into probabilities that sum to 1:
# $\sigma(\mathbf{z})_j = e^{z_j} / \sum_{k=1}^{K} e^{z_k}$. For outputs (2.0, 1.0, 0.1) it gives about
# (0.66, 0.24, 0.10). The network returns `log_softmax` (log-probabilities) and the loss is `nll_loss`,
# which together are the cross-entropy.
#
# **Dropout** fights over-fitting: during training it zeroes each activation with probability p (here 0.2)
# and scales the others by 1 / (1 - p), so that the network cannot rely on any single unit; in evaluation
# mode (`model.eval()`) it does nothing.

# %%
z = torch.tensor([2.0, 1.0, 0.1])
print("softmax", F.softmax(z, dim=0).numpy().round(3), "sum", float(F.softmax(z, dim=0).sum()))
drop = nn.Dropout(0.2)
print("dropout in training mode:", drop(torch.ones(10)).numpy())
print("dropout in eval mode:    ", drop.eval()(torch.ones(10)).numpy())


# %% [markdown]
# **Exercise 1-0 (warm-up).** Define the layers of the MLP: `fc1` (784 -> 50), `fc1_drop` (dropout 0.2),
# `fc2` (50 -> 50), `fc2_drop`, `fc3` (50 -> 10). Use `nn.Linear(in_features, out_features)` and
# `nn.Dropout(p)`. The forward pass is given.

# %%
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        # BEGIN SOLUTION hint: nn.Linear(in_features, out_features) and nn.Dropout(p)
        self.fc1 = nn.Linear(28 * 28, 50)  # 784 -> 50
        self.fc1_drop = nn.Dropout(0.2)  # p = 0.2
        self.fc2 = nn.Linear(50, 50)  # 50 -> 50
        self.fc2_drop = nn.Dropout(0.2)  # p = 0.2
        self.fc3 = nn.Linear(50, 10)  # 50 -> 10 classes
        # END SOLUTION

    def forward(self, x):
        x = x.flatten(1)  # (B, 1, 28, 28) -> (B, 784)
        x = F.relu(self.fc1(x))
        x = self.fc1_drop(x)
        x = F.relu(self.fc2(x))
        x = self.fc2_drop(x)
        return F.log_softmax(self.fc3(x), dim=1)


# %%
mlp_ok = check_mlp(Net)


# %% [markdown]
# ### Training and validation loops
#
# A training epoch repeats, for every batch: reset the gradients the optimizer holds, compute the model's
# output, compute the loss, back-propagate, and let the optimizer update the weights; it also logs the loss
# now and then. Validation runs the model in evaluation mode without gradients and measures the average loss
# and the accuracy over the whole validation set. (Modern PyTorch: every tensor and the model are moved with
# `.to(device)`, the device picked once above; the slides' `Variable` wrapper and GPU-only calls are gone.)
# Two optional arguments serve the CPU settings: a learning-rate `scheduler` (the one-cycle schedule) changes
# the learning rate after every step, and `bf16` runs the forward pass in bfloat16 where autocast chooses to.

# %%
def train(model, optimizer, epoch, scheduler=None, bf16=False, log_interval=200):
    model.train()
    for batch_idx, (data, target) in enumerate(train_loader):
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()  # 1) clear the gradients of the previous step
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            output = model(data)  # 2) forward pass: log-probabilities (B, 10)
        loss = F.nll_loss(output, target)  # 3) the loss
        loss.backward()  # 4) back-propagation
        optimizer.step()  # 5) update the weights
        if scheduler is not None:
            scheduler.step()  # 6) the learning rate of the next step
        if batch_idx % log_interval == 0:
            print(f"Train Epoch: {epoch} [{batch_idx * len(data)}/{len(train_loader.dataset)} "
                  f"({100.0 * batch_idx / len(train_loader):.0f}%)]\tLoss: {loss.item():.6f}")


def validate(model, loss_vector, accuracy_vector):
    model.eval()
    val_loss, correct = 0.0, 0
    with torch.no_grad():  # no gradients (and no optimizer) in validation
        for data, target in validation_loader:
            data, target = data.to(device), target.to(device)
            output = model(data)
            val_loss += F.nll_loss(output, target, reduction="sum").item()
            pred = output.argmax(dim=1)  # the index of the largest log-probability
            correct += int((pred == target).sum())
    val_loss /= len(validation_loader.dataset)
    accuracy = 100.0 * correct / len(validation_loader.dataset)
    loss_vector.append(val_loss)
    accuracy_vector.append(accuracy)
    print(f"\nValidation set: Average loss: {val_loss:.4f}, "
          f"Accuracy: {correct}/{len(validation_loader.dataset)} ({accuracy:.0f}%)\n")


def fit(model, optimizer, epochs, one_cycle=False, bf16=False):
    """Train for ``epochs`` epochs, validating after each; returns the curves and the wall time.

    ``one_cycle``: the learning rate climbs from 1/25 of the optimizer's to it over the first 30% of the steps,
    then falls to almost zero by the last one (``OneCycleLR``), so a short run ends on small, careful steps.
    """
    scheduler = None
    if one_cycle:
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=optimizer.param_groups[0]["lr"],
                                                        epochs=epochs, steps_per_epoch=len(train_loader))
    lossv, accv = [], []
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        train(model, optimizer, epoch, scheduler, bf16)
        validate(model, lossv, accv)
    seconds = time.perf_counter() - start
    print(f"{type(model).__name__}: {epochs} epoch(s) in {seconds:.1f} s, final accuracy {accv[-1]:.2f}%")
    return lossv, accv, seconds


def plot_curves(lossv, accv, title):
    epochs = np.arange(1, len(lossv) + 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3))
    ax1.plot(epochs, lossv, marker="o")
    ax1.set_title(f"{title}: validation loss")
    ax1.set_xlabel("epoch")
    ax2.plot(epochs, accv, marker="o")
    ax2.set_title(f"{title}: validation accuracy (%)")
    ax2.set_xlabel("epoch")
    fig.tight_layout()
    plt.show()


results = {}  # name -> (epochs, seconds, final accuracy), summarised at the end

# %%
if mlp_ok:
    model = Net().to(device)
    if settings.lab:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)  # the lab's settings
    else:  # the lab's SGD with more momentum, a larger peak rate (one-cycle) and a little weight decay
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    lossv, accv, seconds = fit(model, optimizer, EPOCHS["MLP"], one_cycle=not settings.lab, bf16=settings.bf16["MLP"])
    results["MLP"] = (len(accv), seconds, accv[-1])
    plot_curves(lossv, accv, "MLP")
else:
    print("Finish exercise 1-0 (the MLP) above first: its checker has not passed yet.")

# %% [markdown]
# ## 3. Lab 1-1: a simple CNN
#
# A **convolution** slides a small kernel of weights over the image and sums the products: one output map per
# kernel, each detecting one kind of local pattern. An **activation** (ReLU) after it makes the network
# non-linear. **Pooling** shrinks the map: max-pooling keeps the largest value of each window, average
# pooling their mean, so later layers see a larger area at lower cost.
#
# The output size of a convolution or pooling layer, for input size $I$, kernel $K$, padding $P$ and stride
# $S$:
#
# $$O = 1 + \frac{I - K + 2P}{S}$$
#
# (rounded down). A 3x3 convolution without padding, stride 1: 28 -> 1 + (28 - 3) / 1 = 26. A 2x2 max-pool
# with stride 2: 26 -> 1 + (26 - 2) / 2 = 13.

# %%
def out_size(i, k, p=0, s=1):
    """The lab's formula O = 1 + (I - K + 2P) / S, rounded down."""
    return 1 + (i - k + 2 * p) // s


print("conv 5x5, no padding: 28 ->", out_size(28, 5), "| with padding 2: 28 ->", out_size(28, 5, p=2))
print("PyTorch agrees:", tuple(nn.Conv2d(1, 8, 5)(torch.zeros(1, 1, 28, 28)).shape),
      tuple(nn.Conv2d(1, 8, 5, padding=2)(torch.zeros(1, 1, 28, 28)).shape))


# %% [markdown]
# **Exercise 1-1.** Fill in the layers of `SimpleCNN`. **Do not touch stride or padding** (keep the defaults:
# stride 1 for convolutions, stride = kernel size for pooling, no padding): pick the kernel sizes so that the
# sizes follow the lab's chain
#
# | layer | output |
# |---|---|
# | conv1 (1 -> 20 channels) + ReLU | 20 x 26 x 26 |
# | maxpool1 | 20 x 13 x 13 |
# | conv2 (20 -> 50) + ReLU | 50 x 11 x 11 |
# | maxpool2 | 50 x 5 x 5 |
# | conv3 (50 -> 20) + ReLU | 20 x 3 x 3 |
# | flatten, fc1 + ReLU | 100 |
# | fc2 | 10 |

# %%
class SimpleCNN(nn.Module):
    def __init__(self):
        super().__init__()
        # BEGIN SOLUTION hint: keep stride and padding at their defaults; choose each kernel size from the table
        self.conv1 = nn.Conv2d(1, 20, 3)  # 28 -> 26
        self.maxpool1 = nn.MaxPool2d(2)  # 26 -> 13
        self.conv2 = nn.Conv2d(20, 50, 3)  # 13 -> 11
        self.maxpool2 = nn.MaxPool2d(2)  # 11 -> 5
        self.conv3 = nn.Conv2d(50, 20, 3)  # 5 -> 3
        self.fc1 = nn.Linear(3 * 3 * 20, 100)  # 180 -> 100
        self.fc2 = nn.Linear(100, 10)  # 100 -> 10
        # END SOLUTION

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = self.maxpool1(x)
        x = F.relu(self.conv2(x))
        x = self.maxpool2(x)
        x = F.relu(self.conv3(x))
        x = x.flatten(1)  # (B, 20, 3, 3) -> (B, 180); unlike view(-1, 180) it fails loudly on a wrong size
        x = F.relu(self.fc1(x))
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


# %%
cnn_ok = check_simple_cnn(SimpleCNN)

# %%
if cnn_ok:
    model = SimpleCNN().to(device, memory_format=MEMORY_FORMAT)
    if settings.lab:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    lossv, accv, seconds = fit(model, optimizer, EPOCHS["SimpleCNN"], one_cycle=not settings.lab,
                               bf16=settings.bf16["SimpleCNN"])
    results["SimpleCNN"] = (len(accv), seconds, accv[-1])
    plot_curves(lossv, accv, "SimpleCNN")
else:
    print("Finish exercise 1-1 (SimpleCNN) above first: its checker has not passed yet.")


# %% [markdown]
# ## 4. Lab 1-2: a VGG-like CNN
#
# VGGNet uses only 3x3 convolutions and gets its power from depth; it is simple to modify. This small version
# has eight 3x3 convolutions in five stages, each stage ended by a 2x2 max-pool (stride 2), then three linear
# layers. The lab's table (channels x height x width after each step):
#
# | layer | output |
# |---|---|
# | input | 1 x 28 x 28 |
# | conv1 + ReLU | 64 x 30 x 30 |
# | max-pool | 64 x 15 x 15 |
# | conv2 + ReLU | 128 x 17 x 17 |
# | max-pool | 128 x 8 x 8 |
# | conv3, conv4 + ReLU | 256 x 10 x 10 |
# | max-pool | 256 x 5 x 5 |
# | conv5, conv6 + ReLU | 512 x 5 x 5 |
# | max-pool | 512 x 2 x 2 |
# | conv7, conv8 + ReLU | 512 x 2 x 2 |
# | max-pool | 512 x 1 x 1 |
# | flatten, Linear1 + ReLU, dropout | 100 |
# | Linear2 + ReLU, dropout | 100 |
# | last_linear | 10 |
#
# Two slips of the original slides are corrected here: the first row said 28 x 28 after conv1, but the pool
# after it gives 15 x 15, which needs 30 x 30 (so the first three convolutions *grow* the map by 2: padding 2;
# the later ones keep it: padding 1); and stage 3 ends with 256 channels (not 128), since stage 4 takes 256.
# The lab's answer also put a ReLU on the logits before `log_softmax`, which clips every negative logit to 0
# and slows learning: the last layer has no activation.

# %% [markdown]
# **Exercise 1-2.** Fill in `conv1`..`conv8` (3x3 kernels; choose the padding from the table), `Linear1`
# (512 -> 100), `drop` (dropout 0.2), `Linear2` (100 -> 100) and `last_linear` (100 -> 10).

# %%
class SimpleVGG(nn.Module):
    def __init__(self):
        super().__init__()
        # BEGIN SOLUTION hint: 3x3 kernels; padding 2 where the table grows the map by 2, padding 1 where it keeps it
        self.conv1 = nn.Conv2d(1, 64, 3, padding=2)  # 28 -> 30
        self.conv2 = nn.Conv2d(64, 128, 3, padding=2)  # 15 -> 17
        self.conv3 = nn.Conv2d(128, 256, 3, padding=2)  # 8 -> 10
        self.conv4 = nn.Conv2d(256, 256, 3, padding=1)  # 10 -> 10
        self.conv5 = nn.Conv2d(256, 512, 3, padding=1)  # 5 -> 5
        self.conv6 = nn.Conv2d(512, 512, 3, padding=1)  # 5 -> 5
        self.conv7 = nn.Conv2d(512, 512, 3, padding=1)  # 2 -> 2
        self.conv8 = nn.Conv2d(512, 512, 3, padding=1)  # 2 -> 2
        self.Linear1 = nn.Linear(512, 100)  # 512 -> 100
        self.drop = nn.Dropout(0.2)  # p = 0.2
        self.Linear2 = nn.Linear(100, 100)  # 100 -> 100
        self.last_linear = nn.Linear(100, 10)  # 100 -> 10
        # END SOLUTION
        self.act = nn.ReLU()
        self.maxpool2d = nn.MaxPool2d(2, 2)

    def forward(self, x):
        x = self.maxpool2d(self.act(self.conv1(x)))
        x = self.maxpool2d(self.act(self.conv2(x)))
        x = self.maxpool2d(self.act(self.conv4(self.conv3(x))))  # "Conv + Conv + ReLU", as the lab's table
        x = self.maxpool2d(self.act(self.conv6(self.conv5(x))))
        x = self.maxpool2d(self.act(self.conv8(self.conv7(x))))
        x = x.flatten(1)  # (B, 512, 1, 1) -> (B, 512)
        x = self.drop(F.relu(self.Linear1(x)))
        x = self.drop(F.relu(self.Linear2(x)))
        return F.log_softmax(self.last_linear(x), dim=1)  # no ReLU on the logits


# %%
vgg_ok = check_vgg(SimpleVGG)

# %%
if vgg_ok:
    model = SimpleVGG().to(device, memory_format=MEMORY_FORMAT)
    # Eight convolutions without batch norm start on a plateau: at lr 1e-3 this network stayed at chance (10%)
    # for its first 40 steps here, at 1e-4 it reached 44% in the same steps. (The one-cycle schedule starts at
    # 1/25 of its peak and warms up, which gets it past the plateau at a peak of 1e-3.)
    if settings.lab:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    lossv, accv, seconds = fit(model, optimizer, EPOCHS["SimpleVGG"], one_cycle=not settings.lab,
                               bf16=settings.bf16["SimpleVGG"])
    results["SimpleVGG"] = (len(accv), seconds, accv[-1])
    plot_curves(lossv, accv, "SimpleVGG")
else:
    print("Finish exercise 1-2 (SimpleVGG) above first: its checker has not passed yet.")


# %% [markdown]
# ## 5. Lab 1-3: a small ResNet
#
# *Deep Residual Learning for Image Recognition* (He et al., CVPR 2016): very deep plain networks train worse
# than shallower ones, although they could copy them. A residual block makes copying easy: instead of the
# mapping $H(x)$ its layers learn the residual $F(x) = H(x) - x$, and the block outputs
# $\mathrm{ReLU}(F(x) + x)$. When the number of channels changes, the shortcut cannot be the identity: a 1x1
# convolution (+ batch norm) *projects* $x$ to the new number of channels.
#
# The block here: conv 3x3 -> BN -> ReLU -> conv 3x3 -> BN, plus the shortcut, then ReLU; padding 1 and stride
# 1 keep the height and width. (The lab's answer re-used the block's own `conv1` as the shortcut; the
# checker catches that.)

# %% [markdown]
# **Exercise 1-3a.** Write `ResBlock(in_channels, out_channels)`: `conv1`, `bn1`, `conv2`, `bn2` and
# `shortcut` (the identity `nn.Identity()` when the channels match, otherwise a 1x1 convolution followed by
# `nn.BatchNorm2d`), then the forward pass.

# %%
class ResBlock(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        # BEGIN SOLUTION hint: 3x3 convs with padding 1 and no bias (BN has one); BatchNorm2d after each
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity() if in_channels == out_channels else nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
        # END SOLUTION

    def forward(self, x):
        # BEGIN SOLUTION hint: relu(bn1(conv1(x))), then bn2(conv2(.)), add shortcut(x), then a final ReLU
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))
        # END SOLUTION


# %%
resblock_ok = check_resblock(ResBlock)


# %% [markdown]
# **Exercise 1-3b.** Build `SimpleResNet` from your `ResBlock`:
#
# | layer | output |
# |---|---|
# | conv1: 7x7, stride 2, padding 3, 1 -> 64 channels, no bias; bn1; ReLU | 64 x 14 x 14 |
# | max_pool: 3x3, stride 2, padding 1 | 64 x 7 x 7 |
# | layer1 .. layer4: ResBlock 64 -> 64, 64 -> 128, 128 -> 256, 256 -> 512 | 512 x 7 x 7 |
# | avgpool: global average (`nn.AdaptiveAvgPool2d(1)`), flatten | 512 |
# | linear: 512 -> 10, then log_softmax | 10 |

# %%
class SimpleResNet(nn.Module):
    def __init__(self):
        super().__init__()
        # BEGIN SOLUTION hint: follow the table; use your ResBlock for layer1..layer4
        self.conv1 = nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=False)  # 28 -> 14
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.max_pool = nn.MaxPool2d(3, stride=2, padding=1)  # 14 -> 7
        self.layer1 = ResBlock(64, 64)
        self.layer2 = ResBlock(64, 128)
        self.layer3 = ResBlock(128, 256)
        self.layer4 = ResBlock(256, 512)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(512, 10)
        # END SOLUTION

    def forward(self, x):
        # BEGIN SOLUTION hint: conv1, bn1, relu, max_pool, layer1..layer4, avgpool, flatten, linear, log_softmax
        out = self.max_pool(self.relu(self.bn1(self.conv1(x))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = self.avgpool(out).flatten(1)
        return F.log_softmax(self.linear(out), dim=1)
        # END SOLUTION


# %%
resnet_ok = check_resnet(SimpleResNet)

# %%
if resblock_ok and resnet_ok:
    model = SimpleResNet().to(device, memory_format=MEMORY_FORMAT)
    if settings.lab:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=5e-2)
    lossv, accv, seconds = fit(model, optimizer, EPOCHS["SimpleResNet"], one_cycle=not settings.lab,
                               bf16=settings.bf16["SimpleResNet"])
    results["SimpleResNet"] = (len(accv), seconds, accv[-1])
    plot_curves(lossv, accv, "SimpleResNet")
else:
    print("Finish exercises 1-3a and 1-3b (ResBlock, SimpleResNet) above first: their checkers have not passed yet.")

# %% [markdown]
# ## 6. Summary
#
# Training time and final validation accuracy of every network you trained. Compare them: how do the number of
# parameters, the time per epoch and the accuracy relate? (In quick mode the numbers mean little: one short
# epoch on a few hundred images.)

# %%
if results:
    print(f"{'network':<14}{'epochs':>7}{'seconds':>10}{'accuracy %':>12}")
    for name, (epochs, seconds, accuracy) in results.items():
        print(f"{name:<14}{epochs:>7}{seconds:>10.1f}{accuracy:>12.2f}")
    print(f"{'total':<14}{'':>7}{sum(seconds for _, seconds, _ in results.values()):>10.1f}")
else:
    print("No network trained yet: finish the exercises above.")
