"""Left-right consistency check: find the pixels whose disparity the right view contradicts and refill them.

A disparity ``d`` at left pixel ``x`` says the point is seen at ``x - d`` in the right view. Predicting the
right view's disparity too (the same network on the mirrored, swapped pair) and comparing the two marks the
pixels where they disagree by more than a threshold: mostly pixels the right camera cannot see (occlusions
beside foreground objects, the left image's border strip), where a network's estimate is a guess. Such pixels
are refilled along their row with the smaller of the nearest consistent disparities on each side, i.e. with
the background, which is what an occluded pixel shows (the classic treatment of occlusions after a left-right
check, as in semi-global matching).

Measured on held-out synthetic scenes before it became the default: ``docs/stereo-quality.md``.
"""

from collections.abc import Callable

import torch

Matcher = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (left, right) (B, 3, H, W) -> (B, H, W)

DEFAULT_LR_CHECK = 2.0  # px: chosen on held-out 256x512 synthetic scenes, docs/stereo-quality.md


def right_view_disparity(run: Matcher, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """The right image's disparity map from a left-reference matcher ``run(left, right) -> (B, H, W)``.

    Mirroring both images and swapping them makes the right view the reference of a valid rectified pair.
    """
    return run(right.flip(-1), left.flip(-1)).flip(-1)


def left_right_fill(disp_left: torch.Tensor, disp_right: torch.Tensor, threshold: float = DEFAULT_LR_CHECK,
                    occlusion_aware: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(filled disparity, consistent mask), both (B, H, W), from the left and right views' disparities.

    A pixel is consistent when its match lies inside the right image and the right view's disparity there is
    within ``threshold`` px. Inconsistent pixels get the smaller of the nearest consistent disparities to
    their left and right on the same row (the background); with ``occlusion_aware`` only those the right view
    sees something nearer at (occlusions) do, and the others (mismatches) get the mean of the two. A row with
    no consistent pixel is left as it was.
    """
    width = disp_left.shape[-1]
    x = torch.arange(width, device=disp_left.device).expand_as(disp_left)
    x_right = (x - disp_left).round().long()
    inside = x_right >= 0
    right_there = torch.gather(disp_right, -1, x_right.clamp(0, width - 1))
    consistent = inside & ((disp_left - right_there).abs() <= threshold)
    # index of the nearest consistent pixel at or before x (-1: none), and at or after x (width: none)
    before = torch.where(consistent, x, -1).cummax(-1).values
    after = width - 1 - torch.where(consistent, width - 1 - x, -1).flip(-1).cummax(-1).values.flip(-1)
    inf = torch.full_like(disp_left, float("inf"))
    left_value = torch.where(before >= 0, torch.gather(disp_left, -1, before.clamp(0, width - 1)), inf)
    right_value = torch.where(after < width, torch.gather(disp_left, -1, after.clamp(0, width - 1)), inf)
    fill = torch.minimum(left_value, right_value)
    if occlusion_aware:
        occluded = ~inside | (right_there > disp_left + threshold)
        both = torch.isfinite(left_value) & torch.isfinite(right_value)
        fill = torch.where(occluded | ~both, fill, (left_value + right_value) / 2)
    fill = torch.where(torch.isfinite(fill), fill, disp_left)
    return torch.where(consistent, disp_left, fill), consistent


def check_left_right(run: Matcher, left: torch.Tensor, right: torch.Tensor, disp: torch.Tensor,
                     confidence: torch.Tensor | None = None, threshold: float = DEFAULT_LR_CHECK
                     ) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """The check for a left-reference matcher ``run`` whose left-view disparity ``disp`` is already known:
    (refilled disparity, ``confidence`` set to 0 where refilled (None stays None), share of refilled pixels)."""
    filled, consistent = left_right_fill(disp, right_view_disparity(run, left, right), threshold)
    if confidence is not None:
        confidence = torch.where(consistent, confidence, 0.0)
    return filled, confidence, float((~consistent).float().mean())
