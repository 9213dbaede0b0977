"""Feature matches between the two views: what the input checks and the automatic rectification measure.

SIFT rather than ORB: its keypoints are localised to a fraction of a pixel, which the vertical-misalignment
check (a 1.5 px threshold) and the fundamental matrix need; ORB's are not. Large photos are matched at a
reduced size (the longer side at most ``max_side`` px) with at most ``max_features`` keypoints per view (the
brute-force matching grows with their square: 4,000 cost 8x the time of 1,500 for 1.6x the matches), and the
coordinates scaled back, which keeps a phone photo's check well under a second.
"""

from dataclasses import dataclass

import cv2
import numpy as np

# Lowe's ratio test: a match counts when its descriptor distance is below this fraction of the runner-up's.
RATIO = 0.75
# SIFT's contrast threshold, a quarter of OpenCV's default 0.04: small or smoothly textured images gave 15
# matches instead of 130 (a 160x120 synthetic pair), too few to check or rectify; RANSAC removes what the
# extra, weaker keypoints add in mismatches, and ``max_features`` caps the cost on large photos.
CONTRAST_THRESHOLD = 0.01


@dataclass(frozen=True)
class Matches:
    """Matched points in full-resolution pixel coordinates: ``left``/``right`` (N, 2) float64 (x, y);
    ``inliers`` (N,) bool, consistent with one fundamental matrix (all True when too few to fit one);
    ``fundamental``: the 3x3 matrix (None when it could not be fitted); ``scale``: the matching size over the
    image size (1 when matched at full size)."""

    left: np.ndarray
    right: np.ndarray
    inliers: np.ndarray
    fundamental: np.ndarray | None
    scale: float

    @property
    def n(self) -> int:
        return int(self.inliers.sum())


def to_grey_uint8(image: np.ndarray) -> np.ndarray:
    """float RGB in [0, 1] (or uint8 RGB / grey) -> uint8 grey, what OpenCV's detectors take."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = np.clip(np.round(img.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    if img.ndim == 3:
        img = cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_RGB2GRAY)
    return img


def _grey_at(image: np.ndarray, scale: float) -> np.ndarray:
    """uint8 grey at ``scale``: grey and reduced *before* the uint8 conversion, so a large photo's full-size float
    work is one OpenCV colour conversion (the conversion first took 0.3 s of a 2223x1491 pair's 0.8 s check)."""
    img = np.asarray(image)
    if img.dtype != np.uint8 and img.ndim == 3:
        img = cv2.cvtColor(np.ascontiguousarray(img[..., :3], dtype=np.float32), cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return to_grey_uint8(img)


def match_features(left: np.ndarray, right: np.ndarray, *, max_side: int = 960, max_features: int = 1500,
                   ransac_px: float = 1.0) -> Matches:
    """SIFT matches (ratio test) between two images, filtered by a RANSAC fundamental matrix.

    ``ransac_px`` is the epipolar distance threshold at the matching size. Never raises on images without
    texture: it returns fewer (possibly zero) matches and lets the caller decide what is enough.
    """
    scale = min(1.0, max_side / max(left.shape[:2] + right.shape[:2]))
    g1, g2 = _grey_at(left, scale), _grey_at(right, scale)
    sift = cv2.SIFT_create(nfeatures=max_features, contrastThreshold=CONTRAST_THRESHOLD)
    k1, d1 = sift.detectAndCompute(g1, None)
    k2, d2 = sift.detectAndCompute(g2, None)
    empty = np.zeros((0, 2))
    if d1 is None or d2 is None or len(k1) < 2 or len(k2) < 2:
        return Matches(empty, empty, np.zeros(0, bool), None, scale)
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    pairs = matcher.knnMatch(d1, d2, k=2)
    # Mutual best matches only: the fundamental matrix cannot reject a wrong match along the right row (in a
    # rectified pair every point of the row fits it), and such matches made disparities beyond the range appear
    # on repetitive texture; a match both views agree on rarely is one.
    back = {m.queryIdx: m.trainIdx for m in matcher.match(d2, d1)}
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO * p[1].distance
            and back.get(p[0].trainIdx) == p[0].queryIdx]
    p1 = np.array([k1[m.queryIdx].pt for m in good], np.float64).reshape(-1, 2)
    p2 = np.array([k2[m.trainIdx].pt for m in good], np.float64).reshape(-1, 2)
    inliers = np.ones(len(good), bool)
    fundamental = None
    if len(good) >= 15:  # RANSAC needs a margin over the 8 points of one hypothesis
        f, mask = cv2.findFundamentalMat(p1, p2, cv2.FM_RANSAC, ransac_px, 0.999)
        if f is not None and mask is not None and f.shape == (3, 3):
            inliers = mask.ravel().astype(bool)
            # F maps full-size points once the scaling is folded in: x_s = S x, so F_full = S^T F S.
            s = np.diag([scale, scale, 1.0])
            fundamental = s.T @ f @ s
    return Matches(p1 / scale, p2 / scale, inliers, fundamental, scale)
