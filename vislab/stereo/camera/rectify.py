"""Rectification: warp a stereo pair so that every point lies on the same row in both views.

* From a calibration (:func:`calibrated_rectifier`): OpenCV's ``stereoRectify`` turns both cameras into one
  virtual rig with parallel axes (``CALIB_ZERO_DISPARITY``: the same principal point, so ``doffs`` is 0), and
  ``initUndistortRectifyMap`` builds the per-pixel maps that also remove lens distortion. The rectified
  projection ``P2`` gives the metric baseline, so depth comes out in the calibration's unit. ``alpha=0`` keeps
  only pixels both views see: no black borders for the network to match.
* From the images alone (:func:`auto_rectifier`): SIFT matches filtered by a RANSAC fundamental matrix, then
  the smallest rotations of the two views (about their centres, with one fitted focal length) that put the
  matches on common rows, and an x shift of the right view that puts the smallest matched disparity near 2 px.
  Hartley's projective homographies (``cv2.stereoRectifyUncalibrated``) were tried first: on near-rectified
  pairs they sheared and stretched the views, doubling the disparity range and leaving 1-3 px of vertical
  error away from the matches, which took SGBM's D1 from 3 % to 25 % on a test scene. Without a calibration the
  offset of disparity is unknown: it is *relative*, and there is no metric depth.
"""

from dataclasses import dataclass

import cv2
import numpy as np

from vislab.core.errors import VislabError
from vislab.stereo.camera.calibfiles import RectifiedCamera, RigCalibration
from vislab.stereo.camera.features import match_features

# The automatic rectification needs this many matches consistent with one fundamental matrix.
MIN_INLIERS = 30
# Matched points must end up this close to one row (median |dy|, px) or the rectification failed.
MAX_RESIDUAL_DY = 1.0
# Weight of the pull towards no rotation (per radian, in units of f0 px). When the matches lie nearly on one
# plane (a far background) the rows can be aligned by several rotations; 0.05 let one synthetic scene of twelve
# end up 13 px off away from its matches, 0.5 keeps all twelve within 0.4 px (90th percentile) and still follows
# rotations of several degrees (2-4 degrees: within 0.7 px); 2.0 starts to hold true rotations back.
PRIOR_WEIGHT = 0.5
# Where the automatic rectification puts the smallest matched disparity (1st percentile), px.
AUTO_MIN_DISPARITY = 2.0


@dataclass(frozen=True)
class Rectifier:
    """How to rectify pairs of one size: ``kind`` is ``"calibrated"`` or ``"auto"``.

    Calibrated: ``maps`` (left x, left y, right x, right y, float32 for ``cv2.remap``), ``rect`` (R1, R2, P1, P2)
    and ``camera`` (metric). Auto: ``homographies`` (H1, H2) and ``offset``, the x shift (px) given to the right
    view; ``camera`` is None (relative disparity).
    """

    kind: str
    width: int
    height: int
    camera: RectifiedCamera | None = None
    maps: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
    rect: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
    homographies: tuple[np.ndarray, np.ndarray] | None = None
    offset: float = 0.0
    inliers: int = 0
    residual_dy: float | None = None

    def apply(self, left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rectified pair (same dtype and size as the input, which must be this rectifier's size)."""
        h, w = left.shape[:2]
        if (w, h) != (self.width, self.height) or right.shape[:2] != left.shape[:2]:
            raise VislabError(f"the rectification is for {self.width}x{self.height} pairs; this pair is "
                              f"{w}x{h} and {right.shape[1]}x{right.shape[0]}")
        size = (self.width, self.height)
        # Bicubic: bilinear interpolation blurs the views enough to cost SGBM about half a point of D1.
        if self.maps is not None:
            m1x, m1y, m2x, m2y = self.maps
            out = (cv2.remap(left, m1x, m1y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT),
                   cv2.remap(right, m2x, m2y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT))
        else:
            assert self.homographies is not None
            h1, h2 = self.homographies
            out = (cv2.warpPerspective(left, h1, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT),
                   cv2.warpPerspective(right, h2, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT))
        if np.issubdtype(left.dtype, np.floating):  # bicubic overshoots: keep images in [0, 1]
            out = (np.clip(out[0], 0.0, 1.0), np.clip(out[1], 0.0, 1.0))
        return out

    def describe(self) -> str:
        """One line for the command's output."""
        if self.kind == "auto":
            return (f"rectified automatically ({self.inliers} matched features, residual vertical offset "
                    f"{self.residual_dy:.2f} px): disparity is relative (its scale and offset are unknown "
                    "without a calibration), so there is no metric depth")
        cam = self.camera
        assert cam is not None
        return (f"rectified from the calibration: focal {cam.focal:.1f} px, baseline {cam.baseline:.4g} {cam.unit}; "
                f"depth in {cam.unit}")


def scale_rig(rig: RigCalibration, width: int, height: int) -> RigCalibration:
    """The calibration for images of ``width`` x ``height``: the same, or resized intrinsics when the pair is a
    uniformly scaled copy of the calibrated size (a phone's video mode, a half-size export); else an error."""
    if (width, height) == (rig.width, rig.height):
        return rig
    sx, sy = width / rig.width, height / rig.height
    if abs(sx - sy) > 0.01 * max(sx, sy):
        raise VislabError(f"the calibration is for {rig.width}x{rig.height} images, the pair is {width}x{height} "
                          "(another aspect ratio: calibrate at this size)")
    # Pixel centres scale about -0.5: x' + 0.5 = s (x + 0.5).
    s = np.array([[sx, 0, 0.5 * (sx - 1)], [0, sy, 0.5 * (sy - 1)], [0, 0, 1]])
    rect = None
    if rig.rect is not None:
        r1, r2, p1, p2 = rig.rect
        rect = (r1, r2, s @ p1, s @ p2)
    return RigCalibration(s @ rig.k1, rig.d1, s @ rig.k2, rig.d2, rig.r, rig.t, width, height, rig.unit, rig.rms,
                          rect)


def calibrated_rectifier(rig: RigCalibration, width: int, height: int, alpha: float = 0.0) -> Rectifier:
    """Rectification maps and the rectified camera for ``width`` x ``height`` pairs from a calibration."""
    rig = scale_rig(rig, width, height)
    size = (width, height)
    if rig.rect is not None:
        r1, r2, p1, p2 = rig.rect
    else:
        try:
            r1, r2, p1, p2, *_ = cv2.stereoRectify(rig.k1, rig.d1, rig.k2, rig.d2, size, rig.r,
                                                    rig.t.reshape(3, 1), flags=cv2.CALIB_ZERO_DISPARITY,
                                                    alpha=alpha)
        except (cv2.error, SystemError) as exc:  # the binding may wrap cv2.error in SystemError
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            detail = (str(cause).strip().splitlines() or [type(cause).__name__])[-1]
            raise VislabError(f"cannot rectify with this calibration: {detail}") from None
    if abs(p2[1, 3]) > abs(p2[0, 3]):
        raise VislabError("the calibration describes cameras one above the other; vislab's matchers need a "
                          "side-by-side pair (rotate both images by 90 degrees and calibrate again)")
    baseline = -p2[0, 3] / p2[0, 0]
    if not baseline > 0:
        raise VislabError("the calibration puts the right camera to the left of the left one: swap the images "
                          "(--swap), or the cameras in the calibration")
    maps = []
    for k, d, r, p in ((rig.k1, rig.d1, r1, p1), (rig.k2, rig.d2, r2, p2)):
        maps += list(cv2.initUndistortRectifyMap(k, d, r, p[:3, :3], size, cv2.CV_32FC1))
    camera = RectifiedCamera(float(p1[0, 0]), float(baseline), float(p2[0, 2] - p1[0, 2]), float(p1[0, 2]),
                             float(p1[1, 2]), width, height, rig.unit)
    return Rectifier("calibrated", width, height, camera=camera, maps=tuple(maps), rect=(r1, r2, p1, p2))


def _apply_h(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    q = np.c_[pts, np.ones(len(pts))] @ h.T
    return q[:, :2] / q[:, 2:3]


def _fit_rotations(p1: np.ndarray, p2: np.ndarray, w: int, h: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Homographies ``K R_i K^-1`` (plus a vertical shift of the right view) that put matched points on one row.

    Both views are turned about their centres by the smallest rotations that align the rows (the left view's
    rotation about x is fixed: the pair may turn up or down together freely), with one shared focal length
    ``f``: the quasi-Euclidean model of Fusiello and Irsara (2011). Unlike Hartley's projective homographies it
    cannot shear or squash the views, so the rectified images look like photographs and disparity keeps its
    scale. Returns (H1, H2, the median |dy| of the matches after rectification).
    """
    from scipy.optimize import least_squares

    f0 = float(max(w, h))  # a phone's or webcam's horizontal field of view is ~50-70 degrees: f ~ 0.8-1.2 w
    x1, x2 = np.c_[p1, np.ones(len(p1))], np.c_[p2, np.ones(len(p2))]

    def homographies(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        yl, zl, xr, yr, zr, ty, log_f = q
        f = f0 * np.exp(log_f)
        k = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]])
        k_inv = np.linalg.inv(k)
        r1 = cv2.Rodrigues(np.array([0.0, yl, zl]).reshape(3, 1))[0]
        r2 = cv2.Rodrigues(np.array([xr, yr, zr]).reshape(3, 1))[0]
        shift = np.array([[1, 0, 0], [0, 1, ty], [0, 0, 1]])
        return k @ r1 @ k_inv, shift @ k @ r2 @ k_inv

    def residuals(q: np.ndarray) -> np.ndarray:
        h1, h2 = homographies(q)
        a, b = x1 @ h1.T, x2 @ h2.T
        dy = a[:, 1] / a[:, 2] - b[:, 1] / b[:, 2]
        # A pull towards no rotation and f0 fixes the directions the matches leave free.
        prior = PRIOR_WEIGHT * np.array([f0 * q[0], f0 * q[1], f0 * q[2], f0 * q[3], f0 * q[4], 0.0, 10 * q[6]])
        return np.concatenate([dy, prior])

    fit = least_squares(residuals, np.zeros(7), loss="soft_l1", f_scale=0.5, max_nfev=200)
    h1, h2 = homographies(fit.x)
    a, b = _apply_h(h1, p1), _apply_h(h2, p2)
    return h1, h2, float(np.median(np.abs(a[:, 1] - b[:, 1])))


def auto_rectifier(left: np.ndarray, right: np.ndarray) -> Rectifier:
    """Rectifying homographies estimated from the pair itself (see the module doc); one-line errors when the
    pair gives too few matches or cannot be rectified."""
    h, w = left.shape[:2]
    m = match_features(left, right, max_side=1600, max_features=3000)  # more and finer matches: a fit, not a check
    if m.fundamental is None or m.n < MIN_INLIERS:
        raise VislabError(f"--rectify auto found only {m.n} consistent feature matches between the views (needs "
                          f"{MIN_INLIERS}): photograph a textured scene that both photos show, or give --calib")
    p1, p2 = m.left[m.inliers], m.right[m.inliers]
    h1, h2, residual = _fit_rotations(p1, p2, w, h)
    if residual > MAX_RESIDUAL_DY:
        raise VislabError(f"--rectify auto: the matched features stay {residual:.1f} px apart vertically after "
                          "rectification (did the camera move forward rather than sideways, or zoom?); give --calib")
    q1, q2 = _apply_h(h1, p1), _apply_h(h2, p2)
    offset = float(np.percentile(q1[:, 0] - q2[:, 0], 1) - AUTO_MIN_DISPARITY)
    h2 = np.array([[1, 0, offset], [0, 1, 0], [0, 0, 1]]) @ h2
    return Rectifier("auto", w, h, homographies=(h1, h2), offset=offset, inliers=m.n, residual_dy=residual)
