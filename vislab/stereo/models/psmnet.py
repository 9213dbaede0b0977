"""PSMNet (Chang & Chen, "Pyramid Stereo Matching Network", CVPR 2018): stacked-hourglass and basic variants.

Pipeline: shared 2D feature extractor with SPP -> concatenation cost volume (B, 64, D/4, H/4, W/4) ->
3D CNN -> matching cost (B, D/4, H/4, W/4) -> trilinear upsample to (D, H, W) -> softmax over
disparity -> disparity = sum_d d * p(d).

Beyond the paper, the model accepts any input size: images are zero-padded at the top and right to a
multiple of 16 (as the official test scripts do) and the output is cropped back, so it always has the
input's size. A ``max_disp`` that is a multiple of 4 but not of 16 is handled the same way along the
disparity axis: the volume gets extra disparity planes up to a multiple of 16 (which the hourglass
needs) and the cost is cropped back to ``max_disp / 4`` planes before upsampling. For multiples of 16
and image sizes the official code accepts, the numbers are the official ones.
"""

import copy
import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from vislab.core.errors import VislabError
from vislab.stereo.models.blocks import cbr_3d, convbn_3d, init_official
from vislab.stereo.models.fast import fused_inference_copy
from vislab.stereo.models.feature import FeatureExtraction
from vislab.stereo.models.hourglass import Hourglass
from vislab.stereo.models.volume import (
    DEFAULT_ESTIMATOR_WINDOW,
    ESTIMATORS,
    build_concat_volume,
    regress_views,
    soft_argmin,
    upsampled_logits,
)

PAD_MULTIPLE = 16


def volume_planes(max_disp: int) -> int:
    """Disparity planes of the 1/4-scale volume for a range ``max_disp``: max_disp / 4 rounded up to a multiple
    of 4 (the hourglass halves the disparity axis twice)."""
    return 4 * math.ceil(max_disp / 16)


def _check_max_disp(max_disp: int) -> None:
    if not isinstance(max_disp, int) or isinstance(max_disp, bool) or max_disp <= 0 or max_disp % 4:
        raise VislabError(f"max_disp must be a positive multiple of 4, got {max_disp}")


def _classifier() -> nn.Sequential:
    return nn.Sequential(*cbr_3d(32, 32), nn.Conv3d(32, 1, kernel_size=3, padding=1, stride=1, bias=False))


def _add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a + b``, in place into ``a`` when no autograd graph is being recorded (saves one volume)."""
    return a.add_(b) if not torch.is_grad_enabled() else a + b


class PSMNet(nn.Module):
    """Common part of both variants: feature extraction, padding, cost volume, regression.

    Args:
        max_disp: disparity range D (outputs lie in [0, D - 1]); a positive multiple of 4.
        align_corners: upsample with ``align_corners=True`` (PyTorch < 0.4 behaviour, which the first
            released weights were trained with); the default ``False`` is the official code on
            current PyTorch.
    """

    name = "psmnet"

    def __init__(self, max_disp: int = 192, align_corners: bool = False) -> None:
        super().__init__()
        _check_max_disp(max_disp)
        self.max_disp = max_disp
        self.align_corners = bool(align_corners)
        self.feature_extraction = FeatureExtraction(self.align_corners)
        # How ``infer`` turns the softmax over disparities into one value (not part of the weights): the
        # paper's soft-argmin by default, so official checkpoints keep their published numbers.
        self.estimator = "softargmin"
        self.estimator_window = DEFAULT_ESTIMATOR_WINDOW
        # (key, fused copy) for the inference fast path; a tuple so nn.Module does not register it.
        self._fast_cache: tuple | None = None

    # -- subclasses --------------------------------------------------------------------------------
    def _aggregate(self, handover: list[torch.Tensor], all_costs: bool) -> list[torch.Tensor]:
        """3D CNN after dres0 (its output popped from ``handover``) -> list of (B, 1, D', H/4, W/4) costs
        (all three outputs, or the final one)."""
        raise NotImplementedError

    # -- geometry ----------------------------------------------------------------------------------
    @property
    def volume_disparities(self) -> int:
        """Disparity planes in the 1/4-scale volume: max_disp / 4 rounded up to a multiple of 4."""
        return volume_planes(self.max_disp)

    @staticmethod
    def _check_pair(left: torch.Tensor, right: torch.Tensor) -> None:
        if left.dim() != 4 or left.shape[1] != 3:
            raise VislabError(f"expected images of shape (B, 3, H, W), got {tuple(left.shape)}")
        if left.shape != right.shape:
            raise VislabError(f"left and right images differ in size: {tuple(left.shape)} vs {tuple(right.shape)}")

    @staticmethod
    def _pads(h: int, w: int) -> tuple[int, int]:
        return (-h) % PAD_MULTIPLE, (-w) % PAD_MULTIPLE

    # -- forward -----------------------------------------------------------------------------------
    def _costs(self, left: torch.Tensor, right: torch.Tensor, all_costs: bool,
               channels_last: bool = False, max_disp: int | None = None) -> list[torch.Tensor]:
        """Matching costs (B, D/4, Hp/4, Wp/4) for the padded pair (padding already applied); ``max_disp``
        (default ``self.max_disp``) is the range D of this call."""
        # The stem's result is handed over inside a list that _aggregate empties: a plain argument stays
        # referenced by this frame's call for the whole 3D CNN (one 184 MB volume at KITTI size).
        max_disp = self.max_disp if max_disp is None else max_disp
        handover = [self._stem(left, right, channels_last, volume_planes(max_disp))]
        return [c.squeeze(1)[:, :max_disp // 4] for c in self._aggregate(handover, all_costs)]

    def _stem(self, left: torch.Tensor, right: torch.Tensor, channels_last: bool,
              num_disp: int | None = None) -> torch.Tensor:
        """Features of both images -> concatenation volume -> dres0 (B, 32, D', H/4, W/4)."""
        if self.training:  # separately, so BatchNorm sees per-image batch statistics as in the paper
            left_feat, right_feat = self.feature_extraction(left), self.feature_extraction(right)
        else:  # one batch of 2B images: the same numbers with running statistics, half the calls
            both = torch.cat([left, right])
            if channels_last:
                both = both.contiguous(memory_format=torch.channels_last)
            left_feat, right_feat = self.feature_extraction(both).chunk(2)
        return self._volume_stem(left_feat, right_feat, channels_last, num_disp)

    def _volume_stem(self, left_feat: torch.Tensor, right_feat: torch.Tensor, channels_last: bool,
                     num_disp: int | None = None) -> torch.Tensor:
        """Features of the reference (left) and target (right) view -> concatenation volume -> dres0."""
        num_disp = self.volume_disparities if num_disp is None else num_disp
        x = build_concat_volume(left_feat, right_feat, num_disp, channels_last)
        # dres0 layer by layer, so the 64-channel volume is released after its first convolution.
        for layer in self.dres0:
            x = layer(x)
        return x

    def forward(self, left: torch.Tensor, right: torch.Tensor,
                return_logits: bool = False) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """(B, 3, H, W) ImageNet-normalised RGB pair -> disparity (B, H, W) of the left image.

        In training mode returns a tuple of full-resolution predictions (3 for stackhourglass, 1 for
        basic); in eval mode the final prediction. With ``return_logits`` (training mode only) the tuple
        holds the full-resolution logits (B, D, H, W) instead, whose softmax over D the soft-argmin
        averages: for losses on the whole distribution (ADL).
        """
        if not self.training:
            if torch.is_grad_enabled():
                return self._predict_autograd(left, right)
            return self._predict(left, right, return_confidence=False)[0]
        self._check_pair(left, right)
        h, w = left.shape[-2:]
        top, rpad = self._pads(h, w)
        left, right = F.pad(left, (0, rpad, top, 0)), F.pad(right, (0, rpad, top, 0))
        size = (h + top, w + rpad)
        h4, w4 = size[0] // 4, size[1] // 4
        if left.shape[0] == 1 and (h4 // min(64, h4)) * (w4 // min(64, w4)) == 1:
            # SPP's 64x64 branch then pools to one value per channel, which BatchNorm cannot normalise.
            raise VislabError(f"training on {h}x{w} images needs a batch size above 1, or crops of at least 512 px "
                              "in height or width (the 64x64 SPP branch would pool to a single value)")
        costs = self._costs(left, right, all_costs=True, channels_last=left.device.type == "cpu")
        if return_logits:
            return tuple(upsampled_logits(c, self.max_disp, size, (top, top + h), (0, w), self.align_corners)
                         for c in costs)
        return tuple(soft_argmin(c, self.max_disp, size, (top, top + h), (0, w), self.align_corners) for c in costs)

    def _predict_autograd(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """Eval-mode prediction that keeps the autograd graph (the literal formulation)."""
        self._check_pair(left, right)
        h, w = left.shape[-2:]
        top, rpad = self._pads(h, w)
        left, right = F.pad(left, (0, rpad, top, 0)), F.pad(right, (0, rpad, top, 0))
        cost = self._costs(left, right, all_costs=False, channels_last=left.device.type == "cpu")[-1]
        return soft_argmin(cost, self.max_disp, (h + top, w + rpad), (top, top + h), (0, w), self.align_corners)

    def _predict(self, left: torch.Tensor, right: torch.Tensor, return_confidence: bool,
                 estimator: str | None = None, window: int | None = None,
                 max_disp: int | None = None, bf16: bool = False, right_view: bool = False
                 ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The lean path (no autograd): fused BN, channels-last 3D on CPU, chunked regression; with
        ``right_view`` also the right image's disparity from the same volume (else None)."""
        estimator = self.estimator if estimator is None else estimator
        window = self.estimator_window if window is None else window
        max_disp = self.max_disp if max_disp is None else max_disp
        if estimator not in ESTIMATORS:
            raise VislabError(f"unknown disparity estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
        _check_max_disp(max_disp)
        self._check_pair(left, right)
        h, w = left.shape[-2:]
        top, rpad = self._pads(h, w)
        left, right = F.pad(left, (0, rpad, top, 0)), F.pad(right, (0, rpad, top, 0))
        fast = self._fast_copy()
        channels_last = left.device.type == "cpu"
        with torch.autocast(left.device.type, dtype=torch.bfloat16, enabled=bf16):
            cost = fast._costs(left, right, all_costs=False, channels_last=channels_last, max_disp=max_disp)[-1]
        del left, right
        if bf16:  # the softmax and regression in fp32 whatever the network ran in
            cost = cost.float()
        cost = cost.contiguous()
        return regress_views(cost, max_disp, (h + top, w + rpad), (top, h + top), (0, w), self.align_corners,
                             return_confidence, estimator=estimator, window=int(window), right_view=right_view)

    @torch.inference_mode()
    def infer(self, left: torch.Tensor, right: torch.Tensor, return_confidence: bool = True,
              estimator: str | None = None, window: int | None = None,
              max_disp: int | None = None, bf16: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Disparity (B, H, W) and confidence (B, H, W) in [0, 1] (or None) for any image size.

        ``max_disp``: the disparity range of this call (a positive multiple of 4; default ``self.max_disp``).
        The weights do not depend on it (the 3D convolutions slide along disparity), so a pair known to need
        fewer disparities can be matched over fewer, in proportionally less time; outputs lie in [0, max_disp - 1].
        ``bf16``: run the 2D and 3D networks under bfloat16 autocast (see ``vislab.stereo.precision``).

        Always uses eval-mode semantics (BatchNorm running statistics), whatever ``self.training``
        is. ``estimator`` (default ``self.estimator``, itself ``"softargmin"`` unless set) is
        ``"softargmin"`` or ``"dominant"`` with a ``window`` of ± that many px (default
        ``self.estimator_window``); see :func:`~vislab.stereo.models.volume.regress_chunked`. Confidence
        follows it: the probability mass within ±2 px of the soft-argmin, or inside the dominant window.
        """
        return self._predict(left, right, return_confidence, estimator, window, max_disp, bf16)[:2]

    @torch.inference_mode()
    def infer_views(self, left: torch.Tensor, right: torch.Tensor, return_confidence: bool = True,
                    estimator: str | None = None, window: int | None = None, max_disp: int | None = None,
                    bf16: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """:meth:`infer`, plus the right image's disparity (B, H, W) read from the same cost volume.

        Left pixel x at disparity d and right pixel x - d are one match, so the final matching cost, sheared
        along its rows, scores the right view's candidates as well (``vislab.stereo.models.volume``): a second
        regression, not a second network pass. It is the left view's evidence seen from the right, not an
        independent prediction: a left-right check with it finds occlusions but not the left view's confident
        mismatches, and keeps part of a full right pass's benefit (docs/stereo/prediction.md).
        """
        return self._predict(left, right, return_confidence, estimator, window, max_disp, bf16, right_view=True)

    def channels_last_3d_(self) -> "PSMNet":
        """Store the 3D convolutions' weights in ``torch.channels_last_3d`` layout, in place; returns self.

        For CPU training: with the volumes channels-last (as ``forward`` builds them on CPU), channels-last
        weights spare oneDNN a reorder in every forward and backward call. The function computed and the
        state-dict names and shapes are unchanged; ``load_state_dict`` keeps the layout.
        """
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
                    module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last_3d)
        return self

    def _fast_copy(self) -> "PSMNet":
        """A BN-folded, eval-mode copy of this model, rebuilt whenever the weights change."""
        tensors = list(itertools.chain(self.parameters(), self.buffers()))
        device = tensors[0].device
        # the modules' identities too: swapping in a module that reuses the same weights must rebuild the copy
        key = (device, tuple(map(id, self.modules())), tuple((t.data_ptr(), t._version) for t in tensors))
        if self._fast_cache is None or self._fast_cache[0] != key:
            # deepcopy, not a fresh model + load_state_dict: a sub-module swapped in by the user (a lab student's
            # feature extractor or hourglass) must stay in the copy, not be replaced by vislab's own class.
            clone = copy.deepcopy(self)
            self._fast_cache = (key, fused_inference_copy(clone, channels_last=device.type == "cpu"))
        return self._fast_cache[1]

    def __getstate__(self) -> dict:
        state = super().__getstate__().copy()
        state["_fast_cache"] = None  # never deep-copy or pickle the derived copy
        return state


class PSMNetStackHourglass(PSMNet):
    """PSMNet with three stacked hourglasses and intermediate supervision (the paper's main model)."""

    name = "stackhourglass"

    def __init__(self, max_disp: int = 192, align_corners: bool = False) -> None:
        super().__init__(max_disp, align_corners)
        self.dres0 = nn.Sequential(*cbr_3d(64, 32), *cbr_3d(32, 32))
        self.dres1 = nn.Sequential(*cbr_3d(32, 32), convbn_3d(32, 32, 3, 1, 1))
        self.dres2 = Hourglass(32)
        self.dres3 = Hourglass(32)
        self.dres4 = Hourglass(32)
        self.classif1 = _classifier()
        self.classif2 = _classifier()
        self.classif3 = _classifier()
        init_official(self)

    def _aggregate(self, handover: list[torch.Tensor], all_costs: bool) -> list[torch.Tensor]:
        # References are dropped as soon as possible: at KITTI size each 32-channel 1/4-scale volume
        # is 184 MB, and without autograd only the skip (cost0) and the current stage need to live.
        cost0 = handover.pop()
        cost0 = _add(self.dres1(cost0), cost0)
        out1, pre1, post1 = self.dres2(cost0, None, None)
        out1 = _add(out1, cost0)
        cost1 = self.classif1(out1)
        down = self.dres3.conv1(out1)
        del out1  # (autograd keeps what it needs; without it, one 1/4-scale volume less from here on)
        out2, _, post2 = self.dres3.from_down(down, pre1, post1)
        del down, post1
        out2 = _add(out2, cost0)
        cost2 = _add(self.classif2(out2), cost1)
        down = self.dres4.conv1(out2)
        del out2
        out3, _, _ = self.dres4.from_down(down, pre1, post2)
        del down, pre1, post2
        out3 = _add(out3, cost0)
        del cost0
        cost3 = _add(self.classif3(out3), cost2)
        return [cost1, cost2, cost3] if all_costs else [cost3]


class PSMNetBasic(PSMNet):
    """PSMNet with a plain stack of residual 3D blocks instead of hourglasses (the paper's ablation)."""

    name = "basic"

    def __init__(self, max_disp: int = 192, align_corners: bool = False) -> None:
        super().__init__(max_disp, align_corners)
        self.dres0 = nn.Sequential(*cbr_3d(64, 32), *cbr_3d(32, 32))
        for i in range(1, 5):
            setattr(self, f"dres{i}", nn.Sequential(*cbr_3d(32, 32), convbn_3d(32, 32, 3, 1, 1)))
        self.classify = _classifier()
        init_official(self)

    def _aggregate(self, handover: list[torch.Tensor], all_costs: bool) -> list[torch.Tensor]:
        cost = handover.pop()
        for block in (self.dres1, self.dres2, self.dres3, self.dres4):
            cost = _add(block(cost), cost)
        return [self.classify(cost)]
