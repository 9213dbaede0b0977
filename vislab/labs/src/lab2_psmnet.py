# %% [markdown]
# # Lab 2: Stereo matching with PSMNet
#
# PSMNet (*Pyramid Stereo Matching Network*, Chang & Chen, CVPR 2018) estimates depth from a rectified pair of
# images. In this lab you write its two characteristic modules -- the **spatial pyramid pooling** (SPP) feature
# extractor and the 3D **stacked hourglass** -- see how the cost volume and the disparity regression work on
# small tensors, train a few iterations on synthetic scenes, and predict the disparity, confidence and a point
# cloud of a real scene, next to the classical SGBM baseline.
#
# **How the exercises work.** Every `NotImplemented` is yours to replace. The cell after each exercise runs a
# *checker* from `vislab.labs`: it loads vislab's reference weights into your module by PSMNet's official
# parameter names and compares its outputs with vislab's own module on the same input, reporting the first
# sub-module that differs. "public checks passed" means the checks found nothing wrong, not that the code is
# proven correct. The cells that use your modules only run once their checkers passed.
#
# With the environment variable `VISLAB_QUICK=1` every step uses tiny settings (small crops, a small disparity
# range, one training iteration): a smoke test, e.g. for grading. Without it you get the real lab; use a GPU
# where you have one (Colab: *Runtime -> Change runtime type -> GPU*).
#
# **On a CPU** the training in section 5 runs 30 iterations on 256 x 256 crops instead of the lab's 60 on
# 256 x 512, a quarter of the work; set `LAB_SETTINGS = True` in the setup cell below for the lab's, as on a
# GPU.

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
from torch.utils.data import DataLoader

from vislab.core.device import pick_device
from vislab.labs import check_hourglass, check_spp
from vislab.stereo import as_rgb_image, load_example, predict_disparity, stereo_metrics
from vislab.stereo.camera.checks import check_pair
from vislab.stereo.camera.pipeline import predict_pair
from vislab.stereo.camera.synthetic_rig import unrectify
from vislab.stereo.datasets.synthetic import SyntheticStereo, render_scene
from vislab.stereo.geometry import depth_to_points, disparity_to_depth
from vislab.stereo.models import create_model, load_stereo_model
from vislab.stereo.models.blocks import cbr_3d, convbn, convbn_3d, init_official, make_layer
from vislab.stereo.models.volume import build_concat_volume
from vislab.stereo.transforms import imagenet_normalize
from vislab.stereo.visualize import colorize_confidence, colorize_disparity

QUICK = os.environ.get("VISLAB_QUICK") == "1"  # tiny smoke-test settings (see the top of the notebook)
LAB_SETTINGS = False  # True: the lab's own training settings on a CPU too (60 iterations on 256 x 512 crops)
device = pick_device("auto")  # cuda, then mps, then cpu: chosen once, used by every cell below
torch.manual_seed(0)
print(f"device: {device}; quick mode: {QUICK}")

# %% [markdown]
# ## 1. Stereo matching and disparity
#
# Two cameras side by side, a *baseline* $B$ apart, see the same scene. After rectification a point appears on
# the same row in both images, shifted horizontally: it sits at $x$ in the left image and at $x - d$ in the
# right one. The shift $d$ is the **disparity**; stereo matching finds, for every pixel of the left image, its
# corresponding pixel in the right image. Near objects shift more than far ones; with the focal length $f$ (in
# pixels)
#
# $$\text{depth} = \frac{f \cdot B}{d}$$
#
# Matching is hard where the images do not say which pixel corresponds: occlusions, repeated patterns,
# texture-less and reflective surfaces. PSMNet's answer is *context*: the SPP module gives each pixel features
# of regions of several sizes, and the stacked hourglass regularises the whole cost volume.
#
# Our example is the Middlebury 2014 *Motorcycle* pair that ships with scikit-image (quarter size), with its
# ground-truth disparity and its camera.

# %%
left, right, gt, camera = load_example("motorcycle")
# A crop whose sides are multiples of 16 (PSMNet halves the size four times); smaller in quick mode.
crop_h, crop_w = (256, 256) if QUICK else (496, 736)
y0, x0 = (left.shape[0] - crop_h) // 2, (left.shape[1] - crop_w) // 2
left, right, gt = (a[y0:y0 + crop_h, x0:x0 + crop_w] for a in (left, right, gt))
cx, cy = camera.cx - x0, camera.cy - y0  # the principal point moves with the crop
print(f"pair {left.shape[1]}x{left.shape[0]}, disparities {np.nanmin(gt):.1f} to {np.nanmax(gt):.1f} px, "
      f"focal {camera.focal:.0f} px, baseline {camera.baseline:.0f} mm")

fig, axes = plt.subplots(1, 3, figsize=(15, 4))
for ax, image, title in zip(axes, (left, right, colorize_disparity(gt)), ("left", "right", "ground-truth disparity"),
                            strict=True):
    ax.imshow(image)
    ax.set_title(title)
    ax.axis("off")
plt.show()

# %%
gt_depth = disparity_to_depth(gt, camera.focal, camera.baseline, camera.doffs)
d = float(np.nanmedian(gt))
print(f"a disparity of {d:.1f} px: depth = f * B / (d + doffs) = {camera.focal:.0f} * {camera.baseline:.0f} / "
      f"({d:.1f} + {camera.doffs:.1f}) = {camera.focal * camera.baseline / (d + camera.doffs) / 1000:.2f} m")
print(f"(Middlebury's cameras have different principal points, hence the offset doffs; "
      f"depths here: {np.nanmin(gt_depth) / 1000:.2f} to {np.nanmax(gt_depth) / 1000:.2f} m)")


# %% [markdown]
# ## 2. Lab 2-1: the feature extractor and the SPP module
#
# Both images go through the same 2D CNN (shared weights). A ResNet-like trunk (given below) reduces the image
# to a quarter of its size:
#
# | name | layer setting | output |
# |---|---|---|
# | conv0_1 .. conv0_3 (`firstconv`) | 3x3, 32 (the first with stride 2) | H/2 x W/2 x 32 |
# | conv1_x (`layer1`) | [3x3, 32; 3x3, 32] x 3 | H/2 x W/2 x 32 |
# | conv2_x (`layer2`) | [3x3, 64; 3x3, 64] x 16, stride 2 | H/4 x W/4 x 64 |
# | conv3_x (`layer3`) | [3x3, 128; 3x3, 128] x 3, dilation 2 | H/4 x W/4 x 128 |
# | conv4_x (`layer4`) | [3x3, 128; 3x3, 128] x 3, dilation 4 | H/4 x W/4 x 128 |
#
# Then the **SPP module** -- your exercise. Four branches average-pool conv4_x's output over windows of
# 64 x 64, 32 x 32, 16 x 16 and 8 x 8 (the stride equal to the window), reduce 128 to 32 channels with a
# 1x1 `convbn` and a ReLU, and are upsampled back (bilinear) to H/4 x W/4. Each pixel thereby learns how it
# relates to regions of four sizes around it. The fusion concatenates conv2_16 (64 channels), conv4_3 (128)
# and the four branches (4 x 32): 320 channels, reduced by a 3x3 `convbn` to 128 + ReLU and a 1x1 convolution
# to 32 matching features.
#
# `convbn(in, out, kernel_size, stride, pad, dilation)` is PSMNet's convolution (no bias) + batch norm.

# %%
print(convbn(128, 32, 1, 1, 0, 1))


# %% [markdown]
# **Exercise 2-1.** Fill in `branch1` .. `branch4` (pool sizes 64, 32, 16, 8 with matching strides, then
# `convbn(128, 32, 1, 1, 0, 1)` and `nn.ReLU(inplace=True)`) and `lastconv` (`convbn` 320 -> 128 with a 3x3
# kernel and padding 1, ReLU, then a 1x1 `nn.Conv2d` 128 -> 32 without bias). Keep the names: the checker and
# the pretrained weights find your layers by them.

# %%
class FeatureExtraction(nn.Module):
    def __init__(self):
        super().__init__()
        self.firstconv = nn.Sequential(
            convbn(3, 32, 3, 2, 1, 1), nn.ReLU(inplace=True),
            convbn(32, 32, 3, 1, 1, 1), nn.ReLU(inplace=True),
            convbn(32, 32, 3, 1, 1, 1), nn.ReLU(inplace=True),
        )
        self.layer1 = make_layer(32, 32, 3, stride=1, pad=1, dilation=1)
        self.layer2 = make_layer(32, 64, 16, stride=2, pad=1, dilation=1)
        self.layer3 = make_layer(64, 128, 3, stride=1, pad=1, dilation=1)
        self.layer4 = make_layer(128, 128, 3, stride=1, pad=1, dilation=2)
        # BEGIN SOLUTION hint: nn.Sequential(nn.AvgPool2d(window, stride=window), convbn(...), nn.ReLU(inplace=True))
        self.branch1 = nn.Sequential(nn.AvgPool2d((64, 64), stride=(64, 64)),  # 64 x 64 windows
                                     convbn(128, 32, 1, 1, 0, 1), nn.ReLU(inplace=True))
        self.branch2 = nn.Sequential(nn.AvgPool2d((32, 32), stride=(32, 32)),  # 32 x 32 windows
                                     convbn(128, 32, 1, 1, 0, 1), nn.ReLU(inplace=True))
        self.branch3 = nn.Sequential(nn.AvgPool2d((16, 16), stride=(16, 16)),  # 16 x 16 windows
                                     convbn(128, 32, 1, 1, 0, 1), nn.ReLU(inplace=True))
        self.branch4 = nn.Sequential(nn.AvgPool2d((8, 8), stride=(8, 8)),  # 8 x 8 windows
                                     convbn(128, 32, 1, 1, 0, 1), nn.ReLU(inplace=True))
        self.lastconv = nn.Sequential(convbn(320, 128, 3, 1, 1, 1), nn.ReLU(inplace=True),  # fusion: 320 -> 32
                                      nn.Conv2d(128, 32, kernel_size=1, padding=0, stride=1, bias=False))
        # END SOLUTION

    def forward(self, x):
        output = self.firstconv(x)
        output = self.layer1(output)
        output_raw = self.layer2(output)  # conv2_16: (B, 64, H/4, W/4)
        output = self.layer3(output_raw)
        output_skip = self.layer4(output)  # conv4_3: (B, 128, H/4, W/4)
        size = output_skip.shape[-2:]
        branches = [F.interpolate(branch(output_skip), size=size, mode="bilinear", align_corners=False)
                    for branch in (self.branch4, self.branch3, self.branch2, self.branch1)]
        return self.lastconv(torch.cat([output_raw, output_skip, *branches], dim=1))  # (B, 32, H/4, W/4)


# %%
spp_ok = check_spp(FeatureExtraction)


# %% [markdown]
# ## 3. Lab 2-2: the hourglass module
#
# The cost volume (next section) is 4D per pair -- features x disparity x height x width -- so PSMNet
# regularises it with **3D convolutions**, whose kernels slide along disparity, height and width. An
# **hourglass** processes the volume top-down and bottom-up (encoder-decoder) to bring in global context; PSMNet
# stacks three of them, each refining the previous one's result.
#
# | layer | stride | kernel | padding | channels |
# |---|---|---|---|---|
# | conv1: Conv3d + BN3d + ReLU | 2 | 3 | 1 | x 2 |
# | conv2: Conv3d + BN3d | 1 | 3 | 1 | x 1 |
# | conv3: Conv3d + BN3d + ReLU | 2 | 3 | 1 | x 1 |
# | conv4: Conv3d + BN3d + ReLU | 1 | 3 | 1 | x 1 |
# | conv5: ConvTranspose3d + BN3d | 2 | 3 | 1 | x 1 |
# | conv6: ConvTranspose3d + BN3d | 2 | 3 | 1 | x 0.5 |
#
# ("channels" relative to the layer's input: conv1 doubles `inplanes`, conv6 halves it back.) The transposed
# convolutions need `output_padding=1` to exactly double the size, and no bias (batch norm follows).
# `convbn_3d(in, out, kernel_size, stride, pad)` is a Conv3d (no bias) + BatchNorm3d.

# %% [markdown]
# **Exercise 2-2.** Fill in `conv1` .. `conv6` following the table. Keep the names; the forward pass is given
# (`presqu` / `postsqu` are the previous hourglass's 1/8-scale tensors, `None` for the first one).

# %%
class Hourglass(nn.Module):
    def __init__(self, inplanes):
        super().__init__()
        # BEGIN SOLUTION hint: convbn_3d (+ nn.ReLU(inplace=True)); conv5/conv6: nn.ConvTranspose3d + nn.BatchNorm3d
        self.conv1 = nn.Sequential(convbn_3d(inplanes, inplanes * 2, kernel_size=3, stride=2, pad=1),
                                   nn.ReLU(inplace=True))  # 1/4 -> 1/8, channels x 2
        self.conv2 = convbn_3d(inplanes * 2, inplanes * 2, kernel_size=3, stride=1, pad=1)  # 1/8 -> 1/8
        self.conv3 = nn.Sequential(convbn_3d(inplanes * 2, inplanes * 2, kernel_size=3, stride=2, pad=1),
                                   nn.ReLU(inplace=True))  # 1/8 -> 1/16
        self.conv4 = nn.Sequential(convbn_3d(inplanes * 2, inplanes * 2, kernel_size=3, stride=1, pad=1),
                                   nn.ReLU(inplace=True))  # 1/16 -> 1/16
        self.conv5 = nn.Sequential(nn.ConvTranspose3d(inplanes * 2, inplanes * 2, kernel_size=3, padding=1,
                                                      output_padding=1, stride=2, bias=False),
                                   nn.BatchNorm3d(inplanes * 2))  # 1/16 -> 1/8
        self.conv6 = nn.Sequential(nn.ConvTranspose3d(inplanes * 2, inplanes, kernel_size=3, padding=1,
                                                      output_padding=1, stride=2, bias=False),
                                   nn.BatchNorm3d(inplanes))  # 1/8 -> 1/4, channels back to inplanes
        # END SOLUTION

    def forward(self, x, presqu, postsqu):
        out = self.conv1(x)  # in: 1/4, out: 1/8
        pre = self.conv2(out)  # in: 1/8, out: 1/8
        if postsqu is not None:
            pre = F.relu(pre + postsqu, inplace=True)
        else:
            pre = F.relu(pre, inplace=True)
        out = self.conv3(pre)  # in: 1/8, out: 1/16
        out = self.conv4(out)  # in: 1/16, out: 1/16
        if presqu is not None:
            post = F.relu(self.conv5(out) + presqu, inplace=True)  # in: 1/16, out: 1/8
        else:
            post = F.relu(self.conv5(out) + pre, inplace=True)
        out = self.conv6(post)  # in: 1/8, out: 1/4
        return out, pre, post


# %%
hourglass_ok = check_hourglass(Hourglass)


# %% [markdown]
# ## 4. The cost volume and the disparity regression, on small tensors
#
# **Cost volume.** For every candidate disparity $d$, the left feature at $x$ is concatenated with the right
# feature at $x - d$ (zero where $x - d$ falls outside the image). With 32 features per image and $D/4$
# candidates at quarter resolution this gives a volume of 64 x D/4 x H/4 x W/4 per pair. Here with one feature
# channel and a row of 6 pixels, the right image being the left shifted by 2:

# %%
def build_cost_volume(left_feat, right_feat, num_disp):
    """(B, C, H, W) features -> concatenation volume (B, 2C, num_disp, H, W), written as a loop over d."""
    b, c, h, w = left_feat.shape
    volume = left_feat.new_zeros(b, 2 * c, num_disp, h, w)
    for d in range(num_disp):
        volume[:, :c, d, :, d:] = left_feat[:, :, :, d:]
        volume[:, c:, d, :, d:] = right_feat[:, :, :, :w - d]
    return volume


left_row = torch.tensor([[[[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]]]])  # (B=1, C=1, H=1, W=6)
right_row = torch.tensor([[[[3.0, 4.0, 5.0, 6.0, 0.0, 0.0]]]])  # the same row seen 2 pixels further left
volume = build_cost_volume(left_row, right_row, num_disp=4)
for d in range(4):
    print(f"d={d}: left {volume[0, 0, d, 0].tolist()}  right {volume[0, 1, d, 0].tolist()}")
print("the pairs agree at d = 2; vislab's vectorised version gives the same volume:",
      torch.equal(volume, build_concat_volume(left_row, right_row, 4)))


# %% [markdown]
# **Disparity regression (soft argmin).** The 3D CNN turns the volume into one score per disparity and pixel.
# Upsampled to full resolution (D x H x W), a softmax over the disparities gives a probability $p_d$ for each
# candidate, and the estimate is the expectation $\hat d = \sum_d d \cdot p_d$. Unlike an argmax it is
# differentiable, and it can fall *between* two candidates (sub-pixel disparity):

# %%
scores = torch.tensor([0.0, 0.0, 1.0, 4.0, 4.5, 1.0, 0.0, 0.0])  # one pixel, 8 candidate disparities
p = F.softmax(scores, dim=0)
print("probabilities", p.numpy().round(3))
print(f"argmax {int(p.argmax())}, soft argmin {float((p * torch.arange(8.0)).sum()):.3f}")


def disparity_regression(cost, max_disp, size):
    """Scores (B, D/4, H/4, W/4) -> disparity (B, H, W): trilinear upsampling, softmax over d, expectation."""
    cost = F.interpolate(cost.unsqueeze(1), size=(max_disp, *size), mode="trilinear", align_corners=False)
    prob = F.softmax(cost.squeeze(1), dim=1)  # (B, D, H, W)
    disparities = torch.arange(max_disp, device=cost.device, dtype=cost.dtype).view(1, -1, 1, 1)
    return (prob * disparities).sum(dim=1)


print("regressed disparity of a random (1, 4, 2, 3) score volume, upsampled to D=16, 8x12 px:",
      tuple(disparity_regression(torch.randn(1, 4, 2, 3), 16, (8, 12)).shape))


# %% [markdown]
# ## 5. Your PSMNet, and a few training iterations
#
# Now the whole network, built from your two modules exactly as the paper's stacked-hourglass model: features
# of both images, the cost volume, two 3D convolution blocks (`dres0`, `dres1`), three of your hourglasses
# (`dres2`..`dres4`), each followed by a classifier that turns its volume into one score per disparity, and the
# regression. In training the three outputs are all supervised (weights 0.5, 0.7, 1.0), as in the paper. The
# attribute names are PSMNet's official ones, so official and vislab checkpoints load into it.

# %%
class StudentPSMNet(nn.Module):
    def __init__(self, max_disp):
        super().__init__()
        self.max_disp = max_disp
        self.feature_extraction = FeatureExtraction()
        self.dres0 = nn.Sequential(*cbr_3d(64, 32), *cbr_3d(32, 32))
        self.dres1 = nn.Sequential(*cbr_3d(32, 32), convbn_3d(32, 32, 3, 1, 1))
        self.dres2 = Hourglass(32)
        self.dres3 = Hourglass(32)
        self.dres4 = Hourglass(32)
        self.classif1, self.classif2, self.classif3 = (
            nn.Sequential(*cbr_3d(32, 32), nn.Conv3d(32, 1, kernel_size=3, padding=1, bias=False)) for _ in range(3))
        init_official(self)  # PSMNet's weight initialisation

    def forward(self, left, right):
        """ImageNet-normalised (B, 3, H, W) pair, H and W multiples of 16 -> disparity (B, H, W)
        (in training mode: the three hourglasses' disparities)."""
        size = left.shape[-2:]
        cost = build_cost_volume(self.feature_extraction(left), self.feature_extraction(right), self.max_disp // 4)
        cost0 = self.dres0(cost)
        cost0 = self.dres1(cost0) + cost0
        out1, pre1, post1 = self.dres2(cost0, None, None)
        out1 = out1 + cost0
        out2, pre2, post2 = self.dres3(out1, pre1, post1)
        out2 = out2 + cost0
        out3, pre3, post3 = self.dres4(out2, pre1, post2)
        out3 = out3 + cost0
        cost1 = self.classif1(out1)
        cost2 = self.classif2(out2) + cost1
        cost3 = self.classif3(out3) + cost2
        if self.training:
            return tuple(disparity_regression(c.squeeze(1), self.max_disp, size) for c in (cost1, cost2, cost3))
        return disparity_regression(cost3.squeeze(1), self.max_disp, size)


# %%
if spp_ok and hourglass_ok:
    student = StudentPSMNet(max_disp=192)
    reference = create_model("stackhourglass", max_disp=192)  # vislab's PSMNet, official parameter names
    student.load_state_dict(reference.state_dict())  # fails loudly if a single name or shape differs
    print(f"vislab's stacked-hourglass weights load into your PSMNet: {len(reference.state_dict())} tensors, "
          f"{sum(p.numel() for p in student.parameters()):,} parameters")
else:
    print("Finish exercises 2-1 and 2-2 (SPP, hourglass) above first: their checkers have not passed yet.")

# %% [markdown]
# **Training.** The lab trained on KITTI; here the scenes are vislab's synthetic ones (random textured shapes
# in front of a background, with exact ground truth), so nothing needs downloading. The loss is the paper's
# smooth L1 over the pixels with a known disparity below `max_disp`. Watch it go down -- a few iterations only
# show the start: PSMNet needs many thousands of iterations on a GPU to become good.

# %%
if QUICK:
    train_h, train_w, train_disp, batch, iterations, log_every = 256, 256, 16, 2, 1, 1
elif LAB_SETTINGS or device.type != "cpu":
    train_h, train_w, train_disp, batch, iterations, log_every = 256, 512, 192, 2, 60, 3
else:  # a CPU: half the iterations on crops of half the width
    train_h, train_w, train_disp, batch, iterations, log_every = 256, 256, 192, 2, 30, 2

if spp_ok and hourglass_ok:
    torch.manual_seed(0)
    model = StudentPSMNet(max_disp=train_disp).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999))
    scenes = SyntheticStereo(size=batch * iterations, height=train_h, width=train_w, max_disp=min(train_disp, 64))
    model.train()
    for it, sample in enumerate(DataLoader(scenes, batch_size=batch)):
        start = time.perf_counter()
        img_l, img_r = imagenet_normalize(sample["left"].to(device)), imagenet_normalize(sample["right"].to(device))
        gt_disp = sample["disp"].to(device)
        mask = sample["valid"].to(device) & (gt_disp > 0) & (gt_disp < train_disp)
        optimizer.zero_grad()
        out1, out2, out3 = model(img_l, img_r)
        loss = (0.5 * F.smooth_l1_loss(out1[mask], gt_disp[mask])
                + 0.7 * F.smooth_l1_loss(out2[mask], gt_disp[mask])
                + F.smooth_l1_loss(out3[mask], gt_disp[mask]))
        loss.backward()
        optimizer.step()
        if it % log_every == 0:
            print(f"Iter {it} training loss = {loss.item():.3f} , time = {time.perf_counter() - start:.2f}")
else:
    print("Finish exercises 2-1 and 2-2 (SPP, hourglass) above first: their checkers have not passed yet.")

# %% [markdown]
# ## 6. Prediction: the shipped weights, and your model
#
# vislab ships weights for PSMNet's *basic* variant (trained on synthetic scenes on a CPU; see its model card:
# it is a demo, weaker than the official weights or SGBM on real pairs). `predict_disparity` runs it and also
# returns a **confidence** map: the softmax probability mass within 2 px of the estimate (high for a sharp
# single peak, low where the matching is ambiguous). We ask for the paper's soft argmin (section 4) and the
# network alone (`lr_check=0`). vislab's defaults go further: `estimator="dominant"` averages only around the
# most probable disparity, which keeps object edges sharper, and a left-right check (`lr_check=2`) also predicts
# the right view and refills the pixels the two views disagree on (mostly occlusions) from the background.

# %%
max_disp = 64 if QUICK else 192  # the Motorcycle crop's disparities stay below 64
shipped = predict_disparity(left, right, max_disp=max_disp, device=str(device), estimator="softargmin",
                            lr_check=0)
print(f"shipped PSMNet: {shipped.seconds:.1f} s on {shipped.info['device']}, {shipped.info['name']} variant")
m = stereo_metrics(shipped.disparity, gt, max_disp=max_disp)
print(f"against the ground truth: EPE {m['epe']:.2f} px, D1 {m['d1']:.1f}%")

# %% [markdown]
# **Your feature extractor inside the shipped model.** Your `FeatureExtraction` has the official names, so the
# shipped weights load into it. The rest of the basic model (its 3D blocks and classifier) comes from the
# shipped model; the cost volume and the regression are yours from section 4. The result should match vislab's
# prediction up to floating-point rounding.

# %%
if spp_ok:
    basic, _ = load_stereo_model(None, device=device, max_disp=max_disp)  # the shipped weights
    features = FeatureExtraction().to(device).eval()
    features.load_state_dict({k.removeprefix("feature_extraction."): v for k, v in basic.state_dict().items()
                              if k.startswith("feature_extraction.")})

    def to_tensor(img):
        return imagenet_normalize(torch.from_numpy(img.transpose(2, 0, 1)).to(device)).unsqueeze(0)

    with torch.no_grad():
        start = time.perf_counter()
        cost = build_cost_volume(features(to_tensor(left)), features(to_tensor(right)), max_disp // 4)
        cost = basic.dres0(cost)
        for block in (basic.dres1, basic.dres2, basic.dres3, basic.dres4):  # the basic variant: residual 3D blocks
            cost = block(cost) + cost
        yours = disparity_regression(basic.classify(cost).squeeze(1), max_disp, left.shape[:2])[0].cpu().numpy()
    print(f"your feature extractor + the shipped weights: {time.perf_counter() - start:.1f} s; "
          f"differs from vislab's prediction by {np.abs(yours - shipped.disparity).mean():.5f} px on average, "
          f"at most {np.abs(yours - shipped.disparity).max():.4f} px")
else:
    print("Finish exercise 2-1 (SPP) above first: its checker has not passed yet.")

# %% [markdown]
# **Your trained model.** The network you trained above for a few iterations, on the same pair: expect a poor
# map -- compare it with the shipped weights to see what training buys.

# %%
if spp_ok and hourglass_ok:
    model.eval()
    with torch.no_grad():
        own = model(to_tensor(left), to_tensor(right))[0].cpu().numpy()
    m_own = stereo_metrics(own, gt, max_disp=train_disp)
    print(f"your model after {iterations} iterations: EPE {m_own['epe']:.2f} px (pixels with disparity < {train_disp})")
else:
    own = None
    print("Finish exercises 2-1 and 2-2 (SPP, hourglass) above first: their checkers have not passed yet.")

# %% [markdown]
# ## 7. Disparity, confidence and a point cloud
#
# Depth from disparity, then every pixel back-projected to 3D: $X = (u - c_x) Z / f$, $Y = (v - c_y) Z / f$.
# Only pixels with a confident prediction are drawn.

# %%
panels = [(left, "left"), (colorize_disparity(shipped.disparity, max_disp=np.nanmax(gt)), "disparity (shipped)"),
          (colorize_confidence(shipped.confidence), "confidence (dark: unsure)")]
if own is not None:
    panels.append((colorize_disparity(own, max_disp=np.nanmax(gt)), "disparity (your trained model)"))
fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
for ax, (image, title) in zip(axes, panels, strict=True):
    ax.imshow(image)
    ax.set_title(title)
    ax.axis("off")
plt.show()

depth = disparity_to_depth(shipped.disparity, camera.focal, camera.baseline, camera.doffs)
points = depth_to_points(depth, camera.focal, cx, cy)
keep = np.isfinite(depth) & (shipped.confidence > 0.5)
step = max(1, int(keep.sum()) // 20000)  # at most ~20,000 points keep the plot fast
xyz, rgb = points[keep][::step], left[keep][::step]
ax = plt.figure(figsize=(7, 6)).add_subplot(projection="3d")
ax.scatter(xyz[:, 0], xyz[:, 2], -xyz[:, 1], c=rgb, s=1)
ax.set_xlabel("X (mm)")
ax.set_ylabel("Z, depth (mm)")
ax.set_zlabel("-Y (mm)")
ax.view_init(elev=20, azim=-75)
ax.set_title(f"point cloud: {len(xyz)} of {keep.size} pixels")
plt.show()

# %% [markdown]
# ## 8. Side by side with SGBM
#
# Semi-global block matching (OpenCV's SGBM) is the classical method: block matching costs aggregated along
# several directions with smoothness penalties, no learning. EPE is the mean absolute disparity error, D1 the
# share of pixels wrong by more than 3 px and 5%.

# %%
sgbm = predict_disparity(left, right, method="sgbm", max_disp=max_disp)
results = {"PSMNet (shipped weights)": (shipped.disparity, shipped.seconds), "SGBM": (sgbm.disparity, sgbm.seconds)}
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
axes[0].imshow(colorize_disparity(gt, max_disp=np.nanmax(gt)))
axes[0].set_title("ground truth")
for ax, (name, (disp, seconds)) in zip(axes[1:], results.items(), strict=True):
    m = stereo_metrics(disp, gt, max_disp=max_disp)
    ax.imshow(colorize_disparity(disp, max_disp=np.nanmax(gt)))
    ax.set_title(f"{name}: EPE {m['epe']:.2f} px, D1 {m['d1']:.1f}%")
    print(f"{name:<26} EPE {m['epe']:6.2f} px   D1 {m['d1']:5.1f}%   {seconds:6.2f} s")
for ax in axes:
    ax.axis("off")
plt.show()

# %% [markdown]
# ## 9. Optional: two photos of your own, rectified automatically
#
# Everything above used *rectified* pairs: a point sits on the same row in both views. Two photos from your
# phone are not: the second one is a little turned, tilted or higher. Take two photos of a scene with near and
# far parts, moving the phone 5-10 cm **to the right** between them (no zoom, as little turning as you can),
# and put their paths below. `predict_pair` then
#
# 1. matches SIFT features between the photos and estimates the epipolar geometry (a RANSAC fundamental matrix),
# 2. turns both views by the smallest rotations that put the matches on common rows (`rectify="auto"`),
# 3. checks the result (vertical misalignment, swapped views, disparities beyond the range), and
# 4. runs PSMNet on the rectified pair.
#
# Without a calibration the disparity is *relative*: its offset is unknown, so there is no depth in metres
# (`vislab stereo calibrate` and `--calib` give that; see the documentation's "Your own camera" page). With no
# photos given, the cell makes a pair itself: a synthetic scene whose right camera was turned by a degree or two.

# %%
MY_LEFT, MY_RIGHT = None, None  # e.g. "left.jpg", "right.jpg": the left photo first
if MY_LEFT and MY_RIGHT:
    photo_left, photo_right = as_rgb_image(MY_LEFT), as_rgb_image(MY_RIGHT)
else:
    size = (120, 160) if QUICK else (240, 320)
    scene = render_scene(7, *size, max_disp=48, style="real")
    turned = unrectify(scene["left"], scene["right"], focal=float(size[1]), baseline=0.1,
                       rotation_deg=(1.5, 0.5, 2.0), dy_px=5)
    photo_left, photo_right = turned.left, turned.right

before = check_pair(photo_left, photo_right)
print("the pair as taken:", *(before.lines() or ["passes the checks"]), sep="\n  ")
mine = predict_pair(photo_left, photo_right, rectify="auto", device=str(device))
print("after rectification:", *(mine.prepared.lines() or ["passes the checks"]), sep="\n  ")
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
for ax, (image, title) in zip(axes, [(mine.prepared.left, "rectified left"), (mine.prepared.right, "rectified right"),
                                     (colorize_disparity(mine.prediction.disparity), "relative disparity")],
                              strict=True):
    ax.imshow(image)
    ax.set_title(title)
    ax.axis("off")
plt.show()
