"""A pair of your own, from two image files to a checked, rectified pair and (with a calibration) metric depth.

Order of the steps, and why: ``--swap`` first (it only reorders the inputs), then the rectification (the
calibration's, or the automatic one), then the checks on what the matcher will actually see.
"""

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vislab.core.errors import VislabError
from vislab.stereo.camera.calibfiles import LoadedCalibration, RectifiedCamera, read_calibration
from vislab.stereo.camera.checks import PairCheck, check_pair
from vislab.stereo.camera.rectify import Rectifier, auto_rectifier, calibrated_rectifier

RECTIFY_CHOICES = ("none", "auto")
# What the checks assume when no --max-disp is given: PSMNet's and SGBM's default range.
DEFAULT_CHECK_MAX_DISP = 192

CalibInput = str | os.PathLike | list[str | os.PathLike] | tuple[str | os.PathLike, ...] | None


@dataclass
class PreparedPair:
    """A pair ready for the matcher: float32 RGB ``left``/``right`` (rectified when asked), the ``camera`` that
    turns its disparity into depth (a ``vislab.stereo.Camera``; None: no metric depth) in ``unit``, what the
    checks found, the rectifier used (None: the pair was taken as rectified) and notes for the output."""

    left: np.ndarray
    right: np.ndarray
    camera: Any = None
    unit: str | None = None
    checks: PairCheck | None = None
    rectifier: Rectifier | None = None
    swapped: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def relative(self) -> bool:
        """True when the disparity is relative (automatic rectification): no depth can come from it."""
        return self.rectifier is not None and self.rectifier.kind == "auto"

    def report(self) -> dict[str, Any]:
        """What the outputs record about the preparation (JSON-ready)."""
        cam = self.camera
        return {
            "swapped": self.swapped,
            "rectification": None if self.rectifier is None else self.rectifier.kind,
            "relative_disparity": self.relative,
            "camera": None if cam is None else {"focal": cam.focal, "baseline": cam.baseline, "doffs": cam.doffs,
                                                "cx": cam.cx, "cy": cam.cy, "unit": self.unit},
            "checks": None if self.checks is None else self.checks.to_dict(),
            "notes": list(self.notes),
        }

    def lines(self) -> list[str]:
        """The lines a command prints: notes, then the checks' warnings (nothing for a rectified pair that passes)."""
        return list(self.notes) + ([] if self.checks is None else self.checks.lines())


def _camera(c: RectifiedCamera) -> Any:
    from vislab.stereo.predict import Camera

    return Camera(c.focal, c.baseline, c.doffs, c.cx, c.cy)


def build_rectifier(left: np.ndarray, right: np.ndarray, *, calib: CalibInput = None, rectify: str = "none"
                    ) -> tuple[Rectifier | None, RectifiedCamera | None, LoadedCalibration | None]:
    """What a pair of this size needs: a rectifier (from ``calib`` or estimated from this pair with
    ``rectify="auto"``), or the camera of a calibration whose images are rectified already."""
    if rectify not in RECTIFY_CHOICES:
        raise VislabError(f"--rectify must be one of {', '.join(RECTIFY_CHOICES)}, got {rectify!r}")
    h, w = left.shape[:2]
    if calib and rectify == "auto":
        raise VislabError("give --calib or --rectify auto, not both (a calibration rectifies better)")
    if calib:
        loaded = read_calibration(calib, (w, h))
        if loaded.rectified is not None:
            c = loaded.rectified
            if c.width is not None and (c.width, c.height) != (w, h):
                raise VislabError(f"calibration {loaded.source} is for {c.width}x{c.height} images, the pair is "
                                  f"{w}x{h}")
            return None, c, loaded
        assert loaded.rig is not None
        rect = calibrated_rectifier(loaded.rig, w, h)
        return rect, rect.camera, loaded
    if rectify == "auto":
        return auto_rectifier(left, right), None, None
    return None, None, None


def prepare_pair(left: Any, right: Any, *, calib: CalibInput = None, rectify: str = "none", swap: bool = False,
                 max_disp: int | None = None, focal: float | None = None, baseline: float | None = None,
                 check: bool = True, rectifier: Rectifier | None = None) -> PreparedPair:
    """Swap, rectify and check one pair (paths, PIL images or arrays); raises a one-line ``VislabError`` for
    swapped views (unless ``swap``), a bad calibration or a pair that cannot be rectified.

    ``calib``: a calibration file, or two ROS camera_info files (see :mod:`vislab.stereo.camera.calibfiles`);
    ``rectify="auto"``: rectify from the images' own feature matches (relative disparity);
    ``max_disp``: the matcher's range, for the beyond-range check (default 192);
    ``focal``/``baseline``: depth for a pair that is rectified already (not with ``calib`` or ``rectify``);
    ``rectifier``: reuse one built for an earlier pair of the same rig and size (sequences).
    """
    from vislab.stereo.predict import as_rgb_image, camera_from_options

    left_rgb, right_rgb = as_rgb_image(left, "left image"), as_rgb_image(right, "right image")
    if left_rgb.shape != right_rgb.shape:
        raise VislabError(f"left/right size mismatch: left is {left_rgb.shape[1]}x{left_rgb.shape[0]}, "
                          f"right is {right_rgb.shape[1]}x{right_rgb.shape[0]}")
    if swap:
        left_rgb, right_rgb = right_rgb, left_rgb
    if (calib or rectify == "auto" or rectifier is not None) and (focal is not None or baseline is not None):
        raise VislabError("--focal/--baseline are for a pair that is rectified already; with --calib the depth "
                          "comes from the calibration, and --rectify auto gives relative disparity (no depth)")
    prepared = PreparedPair(left_rgb, right_rgb, swapped=swap)
    if swap:
        prepared.notes.append("views swapped (--swap): the second image is used as the left view")
    camera: RectifiedCamera | None = None
    if rectifier is None:
        rectifier, camera, _ = build_rectifier(left_rgb, right_rgb, calib=calib, rectify=rectify)
    elif rectifier.camera is not None:
        camera = rectifier.camera
    if rectifier is not None:
        prepared.left, prepared.right = rectifier.apply(left_rgb, right_rgb)
        prepared.rectifier = rectifier
        prepared.notes.append(rectifier.describe())
    if camera is not None:
        prepared.camera, prepared.unit = _camera(camera), camera.unit
    else:
        h, w = left_rgb.shape[:2]
        prepared.camera = camera_from_options(w, h, focal=focal, baseline=baseline)
        prepared.unit = "the unit of --baseline" if prepared.camera is not None else None
    if check:
        prepared.checks = check_pair(prepared.left, prepared.right,
                                     max_disp if max_disp is not None else DEFAULT_CHECK_MAX_DISP,
                                     rectified_by=rectifier.kind if rectifier is not None else None)
        prepared.checks.raise_for_error()
    return prepared


@dataclass
class PairResult:
    """``predict_pair``'s answer: the prepared pair, the matcher's prediction, and depth (None without a
    camera) in ``prepared.unit``."""

    prepared: PreparedPair
    prediction: Any
    depth: np.ndarray | None


def predict_pair(left: Any, right: Any, *, calib: CalibInput = None, rectify: str = "none", swap: bool = False,
                 check: bool = True, focal: float | None = None, baseline: float | None = None,
                 **predict_options: Any) -> PairResult:
    """Disparity (and depth, with a calibration) of a pair of your own: :func:`prepare_pair`, then
    ``vislab.stereo.predict_disparity`` on the prepared pair with ``predict_options`` (``method``, ``weights``,
    ``max_disp``, ...). The prediction is in the rectified left view's pixels."""
    from vislab.stereo.geometry import disparity_to_depth
    from vislab.stereo.predict import predict_disparity

    max_disp = predict_options.get("max_disp")
    prepared = prepare_pair(left, right, calib=calib, rectify=rectify, swap=swap, check=check, focal=focal,
                            baseline=baseline, max_disp=max_disp if isinstance(max_disp, int) else None)
    prediction = predict_disparity(prepared.left, prepared.right, **predict_options)
    depth = None
    if prepared.camera is not None:
        cam = prepared.camera
        depth = disparity_to_depth(prediction.disparity, cam.focal, cam.baseline, cam.doffs)
    return PairResult(prepared, prediction, depth)
