"""The 3D stacked-hourglass block that regularises PSMNet's cost volume (encoder-decoder with skips)."""

import torch
import torch.nn.functional as F
from torch import nn

from vislab.stereo.models.blocks import cbr_3d, convbn_3d


def _deconvbn_3d(in_ch: int, out_ch: int) -> nn.Sequential:
    """Stride-2 transposed 3D conv + BN: exactly doubles D, H and W."""
    return nn.Sequential(
        nn.ConvTranspose3d(in_ch, out_ch, 3, padding=1, output_padding=1, stride=2, bias=False),
        nn.BatchNorm3d(out_ch),
    )


class Hourglass(nn.Module):
    """One hourglass: 1/4 -> 1/8 -> 1/16 -> 1/8 -> 1/4 of the (D, H, W) volume.

    ``presqu``/``postsqu`` are the 1/8-scale tensors of earlier hourglasses, wired as in the paper:
    ``pre`` (after conv2) is added to the previous ``post``, and ``post`` (after conv5) to the
    first hourglass's ``pre``, or to this hourglass's own ``pre`` when there is none.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        c2 = channels * 2
        self.conv1 = nn.Sequential(*cbr_3d(channels, c2, stride=2))
        self.conv2 = convbn_3d(c2, c2, 3, 1, 1)
        self.conv3 = nn.Sequential(*cbr_3d(c2, c2, stride=2))
        self.conv4 = nn.Sequential(*cbr_3d(c2, c2, stride=1))
        self.conv5 = _deconvbn_3d(c2, c2)
        self.conv6 = _deconvbn_3d(c2, channels)

    def forward(self, x: torch.Tensor, presqu: torch.Tensor | None,
                postsqu: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.from_down(self.conv1(x), presqu, postsqu)

    def from_down(self, down: torch.Tensor, presqu: torch.Tensor | None,
                  postsqu: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The hourglass after conv1, so a caller can release the 1/4-scale input right after conv1."""
        # Without autograd the sums can be taken in place, which keeps fewer volumes alive.
        inplace = not torch.is_grad_enabled()
        pre = self.conv2(down)
        if postsqu is not None:
            pre = pre.add_(postsqu) if inplace else pre + postsqu
        pre = F.relu(pre, inplace=inplace)
        post = self.conv5(self.conv4(self.conv3(pre)))
        skip = presqu if presqu is not None else pre
        post = F.relu(post.add_(skip) if inplace else post + skip, inplace=inplace)
        return self.conv6(post), pre, post
