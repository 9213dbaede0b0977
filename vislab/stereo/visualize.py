"""Colour images of disparity, depth, confidence and error maps (uint8 RGB arrays, ready for PNG)."""

import numpy as np
from matplotlib import colormaps


def _apply_cmap(values: np.ndarray, valid: np.ndarray, cmap: str) -> np.ndarray:
    rgb = (colormaps[cmap](np.clip(values, 0, 1))[..., :3] * 255).round().astype(np.uint8)
    rgb[~valid] = 0  # unknown pixels black
    return rgb


def colorize_disparity(disp: np.ndarray, max_disp: float | None = None, cmap: str = "magma") -> np.ndarray:
    """Disparity -> RGB (near = bright). ``max_disp`` fixes the scale (default: the map's 99th percentile),
    so maps of several methods drawn with the same ``max_disp`` compare directly. Invalid/non-finite is black.
    """
    disp = np.asarray(disp, dtype=np.float32)
    valid = np.isfinite(disp) & (disp > 0)
    if max_disp is None:
        max_disp = float(np.percentile(disp[valid], 99)) if valid.any() else 1.0
    return _apply_cmap(disp / max(max_disp, 1e-6), valid, cmap)


def colorize_depth(depth: np.ndarray, cmap: str = "turbo_r") -> np.ndarray:
    """Depth -> RGB on a log scale between the 1st and 99th percentile (near = red); invalid is black."""
    depth = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    if not valid.any():
        return np.zeros((*depth.shape, 3), np.uint8)
    logd = np.log(np.where(valid, depth, 1.0))
    lo, hi = np.percentile(logd[valid], [1, 99])
    return _apply_cmap((logd - lo) / max(hi - lo, 1e-6), valid, cmap)


def colorize_confidence(conf: np.ndarray) -> np.ndarray:
    """Confidence in [0, 1] -> RGB (viridis: dark = unsure, yellow = sure)."""
    conf = np.asarray(conf, dtype=np.float32)
    return _apply_cmap(conf, np.isfinite(conf), "viridis")


def colorize_error(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None,
                   max_error: float = 5.0) -> np.ndarray:
    """Absolute disparity error -> RGB (black = correct, red = ``max_error`` px or more); no ground truth = grey."""
    pred, gt = np.asarray(pred, np.float32), np.asarray(gt, np.float32)
    mask = np.isfinite(gt) & (gt > 0)
    if valid is not None:
        mask &= np.asarray(valid, bool)
    rgb = _apply_cmap(np.abs(pred - gt) / max_error, mask, "hot")
    rgb[~mask] = 64
    return rgb
