"""An inference-only copy of a model: BatchNorm folded into the preceding convolution, 3D weights channels-last.

Folding removes a full pass over every activation (BN in eval mode is an affine map per channel, so it
can be merged into the conv's weight and bias); channels-last 3D lets oneDNN pick much faster CPU
kernels (measured on a 2-core AVX-512 CPU: Conv3d about 1.7x, ConvTranspose3d 2.7x, Conv2d 1.5-2x faster).
The copy computes the same function up to float rounding (~1e-6 relative).
"""

import torch
import torch.nn.functional as F
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


def _has_onednn_ops() -> bool:
    try:
        return (hasattr(torch.ops.mkldnn, "_convolution_pointwise")
                and hasattr(torch.ops.mkldnn, "_convolution_transpose_pointwise"))
    except (AttributeError, RuntimeError):
        return False


class OneDNNConv(nn.Module):
    """A (BN-folded) conv, optionally with its ReLU fused, run through oneDNN directly on CPU float32.

    PyTorch's dispatcher sends batch-1 3D convolutions with small volumes (the hourglass's 1/16 scale)
    to a slow im2col path and transposed ones always there (measured 3-6x slower than oneDNN), and eager
    mode cannot fuse the following ReLU. Other devices and dtypes use the ordinary functional path.
    """

    def __init__(self, conv: nn.Module, relu: bool) -> None:
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias
        self.transposed = isinstance(conv, nn.ConvTranspose3d)
        self.stride, self.padding, self.dilation = list(conv.stride), list(conv.padding), list(conv.dilation)
        self.output_padding = list(getattr(conv, "output_padding", [0] * len(self.stride)))
        self.groups = conv.groups
        self.relu = relu

    def extra_repr(self) -> str:
        kind = "transposed " if self.transposed else ""
        return f"{kind}{tuple(self.weight.shape)}, stride={self.stride}, relu={self.relu}"

    # These are PyTorch-internal ops (the ones its compiler emits for CPU); should a PyTorch version
    # change them, the first failing call switches every OneDNNConv to the functional path for good.
    onednn_ok = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Under bf16 autocast the functional path below is what autocast converts (these direct calls it skips).
        if OneDNNConv.onednn_ok and x.device.type == "cpu" and x.dtype == torch.float32 \
                and not torch.is_autocast_enabled("cpu"):
            attr = "relu" if self.relu else "none"
            try:
                if self.transposed:
                    return torch.ops.mkldnn._convolution_transpose_pointwise(
                        x, self.weight, self.bias, self.padding, self.output_padding, self.stride, self.dilation,
                        self.groups, attr, [], "")
                return torch.ops.mkldnn._convolution_pointwise(
                    x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups, attr, [], "")
            except (RuntimeError, TypeError, AttributeError):
                OneDNNConv.onednn_ok = False
        if self.transposed:
            y = F.conv_transpose3d(x, self.weight, self.bias, self.stride, self.padding, self.output_padding,
                                   self.groups, self.dilation)
        else:
            conv = F.conv3d if self.weight.dim() == 5 else F.conv2d
            y = conv(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return F.relu(y) if self.relu else y


def _conv_slot(module: nn.Module) -> tuple[nn.Module, int | None]:
    """(container, index) of the conv in ``module`` if it is a conv or a folded ``Sequential(conv, Identity)``."""
    if isinstance(module, nn.Sequential) and len(module) and isinstance(module[0], _CONV) \
            and all(isinstance(m, nn.Identity) for m in module[1:]):
        return module, 0
    return module, None


def use_onednn_(model: nn.Module) -> nn.Module:
    """In place: every conv becomes a ``OneDNNConv``, absorbing the ReLU that directly follows it."""
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq)):
            container, j = _conv_slot(seq[i])
            if j is None and isinstance(seq[i], _CONV):
                container, j = seq, i
            if j is None:
                continue
            relu = i + 1 < len(seq) and isinstance(seq[i + 1], nn.ReLU)
            container[j] = OneDNNConv(container[j], relu)
            if relu:
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
            if _has_onednn_ops() and torch.backends.mkldnn.is_available():
                use_onednn_(model)
    return model
