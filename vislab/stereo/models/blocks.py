"""PSMNet's small building blocks: conv+BN pairs, the residual block, and the official weight init.

Module nesting mirrors the official implementation exactly (``nn.Sequential(conv, bn)`` and so on),
because the state-dict names are part of the contract: released checkpoints must load unchanged.
"""

import math

import torch
from torch import nn


def convbn(in_ch: int, out_ch: int, kernel_size: int, stride: int, pad: int, dilation: int) -> nn.Sequential:
    """2D conv (no bias) + BatchNorm; a dilated conv pads by its dilation so the size is kept."""
    padding = dilation if dilation > 1 else pad
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_ch),
    )


def convbn_3d(in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, pad: int = 1) -> nn.Sequential:
    """3D conv (no bias) + BatchNorm3d."""
    return nn.Sequential(
        nn.Conv3d(in_ch, out_ch, kernel_size, stride=stride, padding=pad, bias=False),
        nn.BatchNorm3d(out_ch),
    )


def cbr_3d(in_ch: int, out_ch: int, stride: int = 1) -> list[nn.Module]:
    """``[convbn_3d, ReLU]`` as a list, to be spliced into an ``nn.Sequential``."""
    return [convbn_3d(in_ch, out_ch, 3, stride, 1), nn.ReLU(inplace=True)]


class BasicBlock(nn.Module):
    """ResNet basic block as PSMNet uses it: no ReLU after the residual addition."""

    expansion = 1

    def __init__(self, in_ch: int, out_ch: int, stride: int, downsample: nn.Module | None, pad: int,
                 dilation: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(convbn(in_ch, out_ch, 3, stride, pad, dilation), nn.ReLU(inplace=True))
        self.conv2 = convbn(out_ch, out_ch, 3, 1, pad, dilation)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut


def make_layer(in_ch: int, out_ch: int, blocks: int, stride: int, pad: int, dilation: int) -> nn.Sequential:
    """A stage of ``blocks`` BasicBlocks; the first one changes stride/width through a 1x1 projection."""
    downsample = None
    if stride != 1 or in_ch != out_ch:
        downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))
    layers = [BasicBlock(in_ch, out_ch, stride, downsample, pad, dilation)]
    layers += [BasicBlock(out_ch, out_ch, 1, None, pad, dilation) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def init_official(model: nn.Module) -> None:
    """The official initialisation: conv weights ~ N(0, sqrt(2 / (prod(kernel) * out_channels))), BN = identity.

    Transposed convolutions keep PyTorch's default init, as in the official code (they are not
    ``Conv2d``/``Conv3d`` instances there either).
    """
    for m in model.modules():
        if type(m) in (nn.Conv2d, nn.Conv3d):
            n = math.prod(m.kernel_size) * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
