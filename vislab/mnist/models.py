"""The four MNIST classifiers of the lab, in a name -> factory registry.

Every model maps a normalised ``(B, 1, 28, 28)`` batch to ``(B, 10)`` log-probabilities (``log_softmax``),
so ``F.nll_loss`` is the training loss, as in the lab. Each class docstring lists where the model departs
from the lab's text and why (the lab's tables and answers contain a few slips).

Order in this file: registry, building blocks, models, factories.
"""

import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vislab.core.checkpoint import load_checkpoint
from vislab.core.errors import VislabError

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: make the factory ``fn`` available to :func:`create_model` under its own name."""
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_MODELS)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the registered model ``name`` with keyword arguments ``kwargs``.

    Raises:
        VislabError: ``name`` is not registered.
    """
    if name not in _MODELS:
        raise VislabError(f"unknown model {name!r}; choose one of {', '.join(list_models())}")
    return _MODELS[name](**kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ---------------------------------------------------------------------------------------------- blocks


def conv_bn(in_chs: int, out_chs: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    """Conv (no bias: the BatchNorm after it has one) followed by BatchNorm; 'same' padding for odd kernels."""
    return nn.Sequential(
        nn.Conv2d(in_chs, out_chs, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_chs),
    )


class ResBlock(nn.Module):
    """Basic residual block: conv3x3-BN-ReLU-conv3x3-BN, plus a shortcut, then ReLU.

    The shortcut is the identity when the channel count is kept and a 1x1 conv + BN projection when it
    changes. Spatial size is always kept (stride 1).
    """

    def __init__(self, in_chs: int, out_chs: int):
        super().__init__()
        self.conv1 = conv_bn(in_chs, out_chs, 3)
        self.conv2 = conv_bn(out_chs, out_chs, 3)
        self.shortcut = nn.Identity() if in_chs == out_chs else conv_bn(in_chs, out_chs, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv1(x))
        out = self.conv2(out)
        return F.relu(out + self.shortcut(x))


# ---------------------------------------------------------------------------------------------- models


class MLP(nn.Module):
    """Lab 1-0 multi-layer perceptron: 784-50-50-10, ReLU, dropout after each hidden layer.

    Departures from the lab: ``log_softmax`` is given ``dim=1`` explicitly (the lab's implicit-dim call is
    deprecated and ambiguous).
    """

    def __init__(self, hidden: int = 50, dropout: float = 0.2):
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, hidden)
        self.fc1_drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc2_drop = nn.Dropout(dropout)
        self.fc3 = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        x = self.fc1_drop(F.relu(self.fc1(x)))
        x = self.fc2_drop(F.relu(self.fc2(x)))
        return F.log_softmax(self.fc3(x), dim=1)


class SimpleCNN(nn.Module):
    """Lab 1-1 simple CNN: three unpadded 3x3 convs and two 2x2 max-pools, then two linear layers.

    Size chain (stride 1, no padding, as the lab demands): 28 -conv-> 26 -pool-> 13 -conv-> 11 -pool-> 5
    -conv-> 3, flattened to 3*3*20 = 180, fc 100, fc 10. ReLU after every conv and after fc1.
    Departures from the lab: ``flatten(1)`` instead of ``view(-1, 180)``, which would silently fold a
    wrongly sized input into the batch dimension instead of failing.
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 3)
        self.maxpool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(20, 50, 3)
        self.maxpool2 = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(50, 20, 3)
        self.fc1 = nn.Linear(3 * 3 * 20, 100)
        self.fc2 = nn.Linear(100, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Pool, then ReLU: the same values and gradients as the lab's relu-then-pool (ReLU is monotonic, so
        # it commutes with max), on a quarter of the elements -- ReLU passes are a large share of CPU time here.
        x = F.relu(self.maxpool1(self.conv1(x)))
        x = F.relu(self.maxpool2(self.conv2(x)))
        x = F.relu(self.conv3(x)).flatten(1)
        x = F.relu(self.fc1(x))
        return F.log_softmax(self.fc2(x), dim=1)


class SimpleVGG(nn.Module):
    """Lab 1-2 VGG-like CNN: eight 3x3 convs in five stages, each stage ending in a 2x2 max-pool.

    Channels 1-64 | 64-128 | 128-256, 256-256 | 256-512, 512-512 | 512-512, 512-512, and spatial chain
    28 -c1-> 30 -p-> 15 -c2-> 17 -p-> 8 -c3-> 10 -c4-> 10 -p-> 5 -c5-> 5 -c6-> 5 -p-> 2 -c7-> 2 -c8-> 2
    -p-> 1. The lab's table grows the map by 2 at c1, c2 and c3, so those convs use padding 2; every later
    conv keeps the size, so padding 1. Head: Linear 512-100, ReLU, dropout, Linear 100-100, ReLU, dropout,
    Linear 100-10, log_softmax.

    Kept from the lab: inside a two-conv stage ReLU follows only the second conv (the lab's forward is
    ``act(conv4(conv3(x)))`` and its table reads "Conv + Conv + ReLU"); ``relu_between_pairs=True``
    inserts the usual ReLU between them instead.
    Corrected slips:
      * The table's row 1 says 64x28x28 after conv1 but row 2 says 15x15 after the pool, which needs 30x30;
        we follow the pool rows (padding 2), which is also what the size chain 17 -> 8 -> 10 requires.
      * The table lists 128 channels after stage 3, contradicting the 256 it feeds into stage 4; stage 3
        is 128 -> 256 -> 256.
      * The lab's answer applies ReLU to the logits before log_softmax, which clips every negative logit
        to 0 and stalls learning; no activation on the last Linear here.
      * ``flatten(1)`` instead of ``view(-1, 512)``.
    No BatchNorm: the lab's VGG has none, and the default recipe trains it without.
    """

    def __init__(self, dropout: float = 0.2, relu_between_pairs: bool = False):
        super().__init__()
        self.relu_between_pairs = relu_between_pairs
        self.conv1 = nn.Conv2d(1, 64, 3, padding=2)
        self.conv2 = nn.Conv2d(64, 128, 3, padding=2)
        self.conv3 = nn.Conv2d(128, 256, 3, padding=2)
        self.conv4 = nn.Conv2d(256, 256, 3, padding=1)
        self.conv5 = nn.Conv2d(256, 512, 3, padding=1)
        self.conv6 = nn.Conv2d(512, 512, 3, padding=1)
        self.conv7 = nn.Conv2d(512, 512, 3, padding=1)
        self.conv8 = nn.Conv2d(512, 512, 3, padding=1)
        self.maxpool2d = nn.MaxPool2d(2, 2)
        self.linear1 = nn.Linear(512, 100)
        self.drop1 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(100, 100)
        self.drop2 = nn.Dropout(dropout)
        self.last_linear = nn.Linear(100, 10)

    def _pair(self, first: nn.Conv2d, second: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        x = first(x)
        if self.relu_between_pairs:
            x = F.relu(x)
        return F.relu(second(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool2d(F.relu(self.conv1(x)))
        x = self.maxpool2d(F.relu(self.conv2(x)))
        x = self.maxpool2d(self._pair(self.conv3, self.conv4, x))
        x = self.maxpool2d(self._pair(self.conv5, self.conv6, x))
        x = self.maxpool2d(self._pair(self.conv7, self.conv8, x))
        x = x.flatten(1)
        x = self.drop1(F.relu(self.linear1(x)))
        x = self.drop2(F.relu(self.linear2(x)))
        return F.log_softmax(self.last_linear(x), dim=1)


class SimpleResNet(nn.Module):
    """Lab 1-3 ResNet: 7x7/2 stem, 3x3/2 max-pool, four residual blocks at 7x7, global pool, Linear 512-10.

    Chain: 28 -stem-> 14 -pool-> 7, then blocks 64-64, 64-128, 128-256, 256-512, all on 7x7 maps.
    Corrected slips of the lab's answer:
      * ``ResBlock(in_chs, stride)`` used its ``stride`` argument as the channel multiplier while keeping
        stride 1; here blocks take explicit ``in_chs, out_chs`` and keep stride 1 (the maps stay 7x7).
      * Its shortcut re-applied the block's ``conv1`` to the input instead of a separate projection, and
        sized it with an ``in_chs+stride`` typo; here the shortcut is the identity or its own 1x1 conv + BN.
    """

    def __init__(self, channels: tuple[int, ...] = (64, 64, 128, 256, 512)):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, channels[0], 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        pairs = zip(channels[:-1], channels[1:], strict=False)
        self.blocks = nn.Sequential(*(ResBlock(cin, cout) for cin, cout in pairs))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels[-1], 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        x = self.pool(x).flatten(1)
        return F.log_softmax(self.fc(x), dim=1)


# ---------------------------------------------------------------------------------------------- factories


@register_model
def mlp(**kwargs) -> MLP:
    return MLP(**kwargs)


@register_model
def cnn(**kwargs) -> SimpleCNN:
    return SimpleCNN(**kwargs)


@register_model
def vgg(**kwargs) -> SimpleVGG:
    return SimpleVGG(**kwargs)


@register_model
def resnet(**kwargs) -> SimpleResNet:
    return SimpleResNet(**kwargs)


# ---------------------------------------------------------------------------------------------- checkpoints

CHECKPOINT_KEYS = ("task", "model", "model_name", "model_kwargs")


def load_mnist_model(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model stored in a vislab MNIST checkpoint (in eval mode) and return it with the checkpoint.

    Raises:
        VislabError: the file is unreadable, is not a vislab MNIST checkpoint (e.g. a stereo one), lacks
            keys, or its weights do not fit the named model.
    """
    ckpt = load_checkpoint(path)
    if ckpt.get("task") != "mnist":
        found = ckpt.get("task")
        what = f"a vislab {found!r} checkpoint" if isinstance(found, str) else "not a vislab checkpoint"
        raise VislabError(f"{path} is not a vislab MNIST checkpoint ({what}; no task 'mnist')")
    missing = [k for k in CHECKPOINT_KEYS if k not in ckpt]
    if missing:
        raise VislabError(f"{path} is not a complete vislab MNIST checkpoint: missing {', '.join(missing)}")
    try:
        model = create_model(ckpt["model_name"], **dict(ckpt["model_kwargs"]))
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VislabError(f"{path}: weights do not fit model {ckpt['model_name']!r} ({first})") from None
    return model.to(device).eval(), ckpt
