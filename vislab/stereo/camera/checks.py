"""Input checks on a stereo pair, before the network runs.

A stereo network assumes a rectified pair (a point appears on the same row in both views, further left in the
right view) whose disparities fit its range. The three commonest reasons for a garbage disparity map break
exactly that, and all three show in a few hundred feature matches:

* not rectified: the matches' vertical offsets (median |dy|) are well above a pixel;
* views swapped: most matches of a rectified pair have a *negative* disparity (the point sits further right in
  the "right" view); in a pair that is not rectified a turned camera shifts the view sideways, so there the
  sign says nothing and only the misalignment is reported;
* disparity beyond the range: matches with a disparity above ``max_disp`` (the network cannot output those).

The checks cost one SIFT pass at <= 960 px (a fraction of a second) and never raise by themselves;
:meth:`PairCheck.raise_for_error` turns the swapped-views finding into an error.
"""

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from vislab.core.errors import VislabError
from vislab.stereo.camera.features import match_features

# Above this median |dy| (px) a pair is not rectified well enough for a row-wise matcher.
MAX_MEDIAN_DY = 1.5
# Fewer matches than this say nothing reliable about the pair (a textureless or tiny image): no finding.
MIN_MATCHES = 20
# A disparity below -1 px cannot be a localisation error of a rectified pair's match.
NEGATIVE_PX = -1.0
# Swapped when more than this fraction of the matches is negative.
SWAPPED_FRACTION = 0.5
# Beyond the range when more than this fraction of the matches is, and at least BEYOND_COUNT of them: a few
# mismatches along the right row survive every filter (one in 27 matches on a small synthetic pair).
BEYOND_FRACTION = 0.01
BEYOND_COUNT = 3


@dataclass
class PairCheck:
    """What the checks found. ``warnings`` and ``error`` are one-line messages (empty / None: none);
    ``notes`` say why a check could not run. The numbers are in full-resolution pixels."""

    n_matches: int = 0
    median_abs_dy: float | None = None
    negative_fraction: float | None = None
    beyond_fraction: float | None = None
    max_match_disparity: float | None = None
    max_disp: int | None = None
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.error is None and not self.warnings

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def raise_for_error(self) -> None:
        if self.error:
            raise VislabError(self.error)

    def lines(self) -> list[str]:
        """What a command prints: the warnings and notes, one line each (nothing for a pair that passes)."""
        return [f"warning: {w}" for w in self.warnings] + [f"check: {n}" for n in self.notes]


def check_pair(left: np.ndarray, right: np.ndarray, max_disp: int | None = None, *,
               rectified_by: str | None = None) -> PairCheck:
    """Check a pair (float RGB or uint8 images of one size) meant for a stereo matcher; see the module doc.

    ``max_disp``: the matcher's disparity range (None: not checked). ``rectified_by``: ``"auto"`` when the
    pair was rectified from its own matches (its disparity is relative, so the swap check says nothing and is
    skipped), ``"calibrated"`` when from a calibration; it picks the advice the messages give.
    """
    start = time.perf_counter()
    matches = match_features(left, right)
    result = PairCheck(max_disp=max_disp)
    inl = matches.inliers
    result.n_matches = int(inl.sum())
    if result.n_matches < MIN_MATCHES:
        result.notes.append(f"only {result.n_matches} features matched between the views (fewer than "
                            f"{MIN_MATCHES}): the pair could not be checked")
        result.seconds = time.perf_counter() - start
        return result
    dx = matches.left[inl, 0] - matches.right[inl, 0]
    dy = matches.left[inl, 1] - matches.right[inl, 1]
    result.median_abs_dy = float(np.median(np.abs(dy)))
    result.negative_fraction = float(np.mean(dx < NEGATIVE_PX))
    result.max_match_disparity = float(np.max(dx))
    mostly_negative = rectified_by != "auto" and result.negative_fraction > SWAPPED_FRACTION
    if result.median_abs_dy > MAX_MEDIAN_DY:
        advice = {"auto": "the automatic rectification did not align it; give --calib",
                  "calibrated": "the calibration does not fit these images (another camera, zoom or focus, or the "
                                "views swapped in it?): calibrate again, or try --rectify auto"}.get(
            rectified_by or "", "rectify it: --rectify auto (from the images) or --calib FILE (from a calibration)")
        # A turned camera shifts the whole view sideways, so an un-rectified pair's disparity sign says nothing
        # about the order of the views (60 % negative on a correctly ordered test pair): no swap finding here;
        # the rectified pair is checked again.
        result.warnings.append(f"the pair is not rectified: matched features are {result.median_abs_dy:.1f} px apart "
                               f"vertically (median; a rectified pair has under {MAX_MEDIAN_DY} px); {advice}")
    elif mostly_negative:
        result.error = (f"the views look swapped: {100 * result.negative_fraction:.0f}% of the matched features "
                        "lie further right in the right image than in the left; give the left image first, or "
                        "add --swap")
    if max_disp is not None:
        result.beyond_fraction = float(np.mean(dx > max_disp))
        if result.beyond_fraction > BEYOND_FRACTION and int(np.sum(dx > max_disp)) >= BEYOND_COUNT:
            result.warnings.append(
                f"{100 * result.beyond_fraction:.1f}% of the matched features have a disparity above the range "
                f"({max_disp} px; the largest is {result.max_match_disparity:.0f} px): those parts come out wrong; "
                f"use a larger --max-disp (a multiple of 4 above {result.max_match_disparity:.0f}) or smaller images")
    result.seconds = time.perf_counter() - start
    return result
