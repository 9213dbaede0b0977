"""Left-right consistency check: find the pixels whose disparity the right view contradicts and refill them.

A disparity ``d`` at left pixel ``x`` says the point is seen at ``x - d`` in the right view. Predicting the
right view's disparity too (the same network on the mirrored, swapped pair) and comparing the two marks the
pixels where they disagree by more than a threshold: mostly pixels the right camera cannot see (occlusions
beside foreground objects, the left image's border strip), where a network's estimate is a guess. Such pixels
are refilled along their row with the smaller of the nearest consistent disparities on each side, i.e. with
the background, which is what an occluded pixel shows (the classic treatment of occlusions after a left-right
check, as in semi-global matching).

Measured on held-out synthetic scenes before it became the default: ``docs/stereo-quality.md``; the right view
at half size (``--lr-view half``, issue 26), and why it is not the default: ``docs/stereo/prediction.md``.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F

Matcher = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (left, right) (B, 3, H, W) -> (B, H, W)

DEFAULT_LR_CHECK = 2.0  # px: chosen on held-out 256x512 synthetic scenes, docs/stereo-quality.md
# How the right view is predicted for the check: "full" (the pair's own size), "half" (half the width and
# height, its disparities doubled: about a sixth of the work) or "volume" (read from the left pass's own cost
# volume: a second regression, no second network pass). On held-out synthetic scenes with occlusions and
# exposure/noise differences between the views the cheaper views kept only part of the check's benefit on the
# "real" style (half: D1 6.31 % at 4 px against 3.84 % with the full-size view, 8.10 % without a check; volume:
# 7.27 % against 6.23 % and 9.33 % on the 12-scene set), so "full" stays the default; docs/stereo/prediction.md.
LR_VIEWS = ("full", "half", "volume")
DEFAULT_LR_VIEW = "full"


def right_view_disparity(run: Matcher, left: torch.Tensor, right: torch.Tensor, scale: float = 1.0,
                         upsample: str = "nearest") -> torch.Tensor:
    """The right image's disparity map from a left-reference matcher ``run(left, right) -> (B, H, W)``.

    Mirroring both images and swapping them makes the right view the reference of a valid rectified pair.
    ``scale`` < 1 predicts it on the pair reduced by that factor (antialiased) and brings the map back to the
    full size (``upsample``: ``nearest`` or ``bilinear``), its disparities divided by ``scale``: the check only
    needs to find where the views disagree by more than its threshold, which a coarser right view still shows, at a
    fraction of the cost.
    """
    if scale == 1.0:
        return run(right.flip(-1), left.flip(-1)).flip(-1)
    h, w = left.shape[-2:]
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    small = [F.interpolate(x.flip(-1), size=size, mode="bilinear", antialias=True, align_corners=False)
             for x in (right, left)]
    disp = run(*small)[:, None]
    # nearest, not bilinear: blending a foreground and a background disparity at an edge would give values that
    # match neither view, and the check would refill the edge's pixels as inconsistent
    disp = F.interpolate(disp, size=(h, w), mode=upsample)[:, 0] * (w / size[1])
    return disp.flip(-1)


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
    if not occlusion_aware:
        return fill_from_background(disp_left, consistent), consistent
    left_value, right_value = _nearest_kept(disp_left, consistent)
    fill = torch.minimum(left_value, right_value)
    occluded = ~inside | (right_there > disp_left + threshold)
    both = torch.isfinite(left_value) & torch.isfinite(right_value)
    fill = torch.where(occluded | ~both, fill, (left_value + right_value) / 2)
    fill = torch.where(torch.isfinite(fill), fill, disp_left)
    return torch.where(consistent, disp_left, fill), consistent


def _nearest_kept(disp: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The disparity of the nearest kept pixel at or before / at or after each pixel of its row (inf: none)."""
    width = disp.shape[-1]
    x = torch.arange(width, device=disp.device).expand_as(disp)
    before = torch.where(keep, x, -1).cummax(-1).values
    after = width - 1 - torch.where(keep, width - 1 - x, -1).flip(-1).cummax(-1).values.flip(-1)
    inf = torch.full_like(disp, float("inf"))
    left_value = torch.where(before >= 0, torch.gather(disp, -1, before.clamp(0, width - 1)), inf)
    right_value = torch.where(after < width, torch.gather(disp, -1, after.clamp(0, width - 1)), inf)
    return left_value, right_value


def fill_from_background(disp: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``disp`` (B, H, W) where ``keep``, elsewhere the smaller of the nearest kept disparities to the left and
    right on the same row (the background); a row with no kept pixel stays as it was."""
    fill = torch.minimum(*_nearest_kept(disp, keep))
    return torch.where(keep | ~torch.isfinite(fill), disp, fill)


def check_left_right(run: Matcher, left: torch.Tensor, right: torch.Tensor, disp: torch.Tensor,
                     confidence: torch.Tensor | None = None, threshold: float = DEFAULT_LR_CHECK,
                     view: str = "full") -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """The check for a left-reference matcher ``run`` whose left-view disparity ``disp`` is already known:
    (refilled disparity, ``confidence`` set to 0 where refilled (None stays None), share of refilled pixels).
    ``view``: the right view at the pair's size (``"full"``) or at half of it (``"half"``)."""
    scale = {"full": 1.0, "half": 0.5}[view]
    return refill_inconsistent(disp, right_view_disparity(run, left, right, scale), confidence, threshold)


def refill_inconsistent(disp: torch.Tensor, disp_right: torch.Tensor, confidence: torch.Tensor | None = None,
                        threshold: float = DEFAULT_LR_CHECK) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """The check once both views' disparities are known: (refilled disparity, ``confidence`` set to 0 where
    refilled (None stays None), share of refilled pixels)."""
    filled, consistent = left_right_fill(disp, disp_right, threshold)
    if confidence is not None:
        confidence = torch.where(consistent, confidence, 0.0)
    return filled, confidence, float((~consistent).float().mean())
