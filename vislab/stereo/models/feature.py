"""PSMNet's 2D feature extractor: a ResNet-like trunk and the spatial pyramid pooling (SPP) module."""

import torch
import torch.nn.functional as F
from torch import nn

from vislab.stereo.models.blocks import convbn, make_layer


class ClippedAvgPool2d(nn.Module):
    """``AvgPool2d(k, stride=k)`` whose window is clipped to the feature map, per dimension.

    The official SPP pools with fixed 64/32/16/8 windows, which fails with a size error once the
    1/4-scale features are smaller than the window (inputs under 256 px for the 64x64 branch).
    Clipping the window (and stride) to the feature size turns an oversized branch into a global
    average along that dimension, the natural limit of "a window as large as the map". Whenever the
    window fits, this is exactly ``AvgPool2d(k, stride=k)``, so the numbers match the official code.
    """

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh = min(self.kernel_size, x.shape[-2])
        kw = min(self.kernel_size, x.shape[-1])
        return F.avg_pool2d(x, (kh, kw), stride=(kh, kw))

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, clipped to the input size"


def _spp_branch(pool: int) -> nn.Sequential:
    return nn.Sequential(ClippedAvgPool2d(pool), convbn(128, 32, 1, 1, 0, 1), nn.ReLU(inplace=True))


class FeatureExtraction(nn.Module):
    """Image (B, 3, H, W) -> matching features (B, 32, H/4, W/4) for H, W multiples of 4."""

    def __init__(self, align_corners: bool = False) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.firstconv = nn.Sequential(
            convbn(3, 32, 3, 2, 1, 1), nn.ReLU(inplace=True),
            convbn(32, 32, 3, 1, 1, 1), nn.ReLU(inplace=True),
            convbn(32, 32, 3, 1, 1, 1), nn.ReLU(inplace=True),
        )
        self.layer1 = make_layer(32, 32, 3, stride=1, pad=1, dilation=1)
        self.layer2 = make_layer(32, 64, 16, stride=2, pad=1, dilation=1)
        self.layer3 = make_layer(64, 128, 3, stride=1, pad=1, dilation=1)
        self.layer4 = make_layer(128, 128, 3, stride=1, pad=1, dilation=2)
        # branch1 has the largest window (64), branch4 the smallest (8), as in the official naming.
        self.branch1 = _spp_branch(64)
        self.branch2 = _spp_branch(32)
        self.branch3 = _spp_branch(16)
        self.branch4 = _spp_branch(8)
        self.lastconv = nn.Sequential(
            convbn(320, 128, 3, 1, 1, 1), nn.ReLU(inplace=True),
            nn.Conv2d(128, 32, kernel_size=1, padding=0, stride=1, bias=False),
        )

    def trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the conv2_16 (layer2, 64 ch) and conv4_3 (layer4, 128 ch) outputs at 1/4 scale."""
        raw = self.layer2(self.layer1(self.firstconv(x)))
        skip = self.layer4(self.layer3(raw))
        return raw, skip

    def spp(self, skip: torch.Tensor) -> list[torch.Tensor]:
        """The four pooled branches upsampled back to ``skip``'s size, in concat order (8, 16, 32, 64)."""
        size = skip.shape[-2:]
        return [F.interpolate(branch(skip), size=size, mode="bilinear", align_corners=self.align_corners)
                for branch in (self.branch4, self.branch3, self.branch2, self.branch1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw, skip = self.trunk(x)
        return self.lastconv(torch.cat([raw, skip, *self.spp(skip)], dim=1))
