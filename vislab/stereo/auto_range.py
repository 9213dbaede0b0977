"""``--max-disp auto``: match each pair over the disparity range it needs, not the whole trained range.

PSMNet's 3D part, most of its time, grows linearly with the range; a KITTI pair needs about 70 of the 192
disparities the shipped model was trained for. The range is found with a cheap first look: the same network
on the pair reduced to a quarter of its width and height (1/16 of the pixels, a quarter of the range: about
1/64 of the 3D work), whose 99.9th disparity percentile, scaled back, is widened by a margin and rounded up.
Where that nears the trained range, the trained range is used: a true disparity must never be cut off.

The quantile and margin were chosen on rendered synthetic scenes and checked on held-out ones
(``benchmarks/stereo_quality_variants.py --variants auto ...``); the numbers: docs/stereo/prediction.md.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vislab.core.errors import VislabError

AUTO = "auto"
# The first look's share of the width and height; below FIRST_LOOK_MIN_SIDE px (the reduced image's shorter side)
# it is run at half size instead, and on still smaller pairs not at all (they are cheap at the full range).
FIRST_LOOK_SCALE = 0.25
FIRST_LOOK_MIN_SIDE = 64
# The first look's disparity below which this share of its pixels lie (in percent): its largest values are
# outliers at the image border and in occlusions; widened by the margin below, which covers what it misses.
RANGE_QUANTILE = 99.9
RANGE_MARGIN = 1.25  # x the estimate ...
RANGE_PAD = 8  # ... + this many px
RANGE_STEP = 16  # the volume's disparity planes come in fours (max_disp / 4, a multiple of 4): no cheaper grain
# A chosen range above this share of the trained range gains little time and risks a cut-off: the full range.
FULL_RANGE_SHARE = 0.8


@dataclass(frozen=True)
class RangeChoice:
    """The range one pair is matched over: ``max_disp`` (px), the first look's estimate (px at full size,
    None when no first look ran), whether the trained range ``full`` was kept, and the first look's time."""

    max_disp: int
    estimate: float | None
    full: bool
    seconds: float = 0.0

    def describe(self) -> str:
        """One line for the console, e.g. ``auto: 80 (first look: 58.3 px)``."""
        if self.estimate is None:
            return f"auto: {self.max_disp} (the trained range: the pair is too small for a first look)"
        why = ", near the trained range: kept" if self.full else ""
        return f"auto: {self.max_disp} (first look: {self.estimate:.1f} px{why})"


def parse_max_disp(value: str | int | None) -> int | str | None:
    """A ``--max-disp`` value: ``"auto"``, an integer, or None (the checkpoint's range)."""
    if value is None or value == AUTO:
        return value
    try:
        return int(value)  # its value is checked where it is used (PSMNet: a multiple of 4; SGBM: positive)
    except (TypeError, ValueError):
        raise VislabError(f"--max-disp must be 'auto' or a positive multiple of 4, got {value!r}") from None


def range_from_estimate(estimate: float, trained: int) -> int:
    """The range to match over for a first-look estimate (px): margin, rounded up to ``RANGE_STEP``, or
    ``trained`` when that comes within ``FULL_RANGE_SHARE`` of it (or the estimate is not finite)."""
    if not math.isfinite(estimate):
        return trained
    wanted = RANGE_MARGIN * max(0.0, estimate) + RANGE_PAD
    chosen = RANGE_STEP * math.ceil(wanted / RANGE_STEP)
    return trained if chosen > FULL_RANGE_SHARE * trained else chosen


def first_look_scale(height: int, width: int) -> float | None:
    """The reduction of the first look for an image size, or None when the pair is too small for one."""
    for scale in (FIRST_LOOK_SCALE, 2 * FIRST_LOOK_SCALE):
        if min(height, width) * scale >= FIRST_LOOK_MIN_SIDE:
            return scale
    return None


def choose_range(model: torch.nn.Module, left: torch.Tensor, right: torch.Tensor, trained: int,
                 estimator: str = "dominant", window: int | None = None) -> RangeChoice:
    """The range for one ImageNet-normalised pair (1, 3, H, W) and a PSMNet trained for ``trained`` disparities.

    The first look runs ``model.infer`` on the reduced pair over the reduced trained range (a multiple of 4).
    """
    import time

    start = time.perf_counter()
    h, w = left.shape[-2:]
    scale = first_look_scale(h, w)
    if scale is None:
        return RangeChoice(trained, None, True)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    small = [F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False) for x in (left, right)]
    small_range = max(4, 4 * math.floor(trained * scale / 4))
    disp = model.infer(*small, return_confidence=False, estimator=estimator, window=window, max_disp=small_range)[0]
    # torch.quantile refuses large inputs; kthvalue is exact and has no such limit
    values = disp.flatten().float()
    k = max(1, min(values.numel(), math.ceil(values.numel() * RANGE_QUANTILE / 100)))
    looked = float(values.kthvalue(k).values)
    estimate = looked * (w / size[1])
    if looked >= 0.9 * (small_range - 1):  # the first look's own range was too short to see the top
        return RangeChoice(trained, estimate, True, time.perf_counter() - start)
    chosen = range_from_estimate(estimate, trained)
    return RangeChoice(chosen, estimate, chosen == trained, time.perf_counter() - start)
