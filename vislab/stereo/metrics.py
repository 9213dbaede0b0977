"""Stereo error metrics as pure functions of (prediction, ground truth, mask).

A pixel is evaluated when ``0 < gt < max_disp`` (and the optional validity mask is set). With
``err = |pred - gt|``:

- ``epe``: mean end-point error in pixels;
- ``d1``: KITTI's outlier rate, percentage of pixels with ``err > 3`` AND ``err > 0.05 * gt``;
- ``bad1``, ``bad2``, ``bad3``: percentage of pixels with ``err > 1, 2, 3`` px.

Rates are percentages (0-100). An image without evaluable pixels gives NaN metrics and ``n_valid = 0``.
"""

import math
from typing import Any

import numpy as np
import torch

METRIC_KEYS = ("epe", "d1", "bad1", "bad2", "bad3")
_BAD_THRESHOLDS = {"bad1": 1.0, "bad2": 2.0, "bad3": 3.0}


def _as_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    return torch.as_tensor(np.asarray(x))


def error_counts(pred: Any, gt: Any, valid: Any = None, max_disp: float = 192) -> dict[str, float]:
    """Sums behind the metrics: ``n_valid``, ``err_sum`` and the outlier count for each rate."""
    pred, gt = _as_tensor(pred).double(), _as_tensor(gt).double()
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != ground truth shape {tuple(gt.shape)}")
    mask = torch.isfinite(gt) & (gt > 0) & (gt < max_disp)
    if valid is not None:
        mask &= _as_tensor(valid).bool()
    err = (pred - gt).abs()[mask]
    g = gt[mask]
    counts = {"n_valid": float(mask.sum()), "err_sum": float(err.sum()),
              "d1": float(((err > 3) & (err > 0.05 * g)).sum())}
    for key, thr in _BAD_THRESHOLDS.items():
        counts[key] = float((err > thr).sum())
    return counts


def _metrics_from_counts(c: dict[str, float]) -> dict[str, float]:
    n = c["n_valid"]
    if n == 0:
        return {**{k: math.nan for k in METRIC_KEYS}, "n_valid": 0}
    out = {"epe": c["err_sum"] / n}
    for key in ("d1", *_BAD_THRESHOLDS):
        out[key] = 100.0 * c[key] / n
    out["n_valid"] = int(n)
    return out


def stereo_metrics(pred: Any, gt: Any, valid: Any = None, max_disp: float = 192) -> dict[str, float]:
    """EPE, D1, bad-1/2/3 (percent) and ``n_valid`` of one disparity map (torch or numpy, any matching shape)."""
    return _metrics_from_counts(error_counts(pred, gt, valid, max_disp))


class MetricAccumulator:
    """Collect per-image metrics and average them two ways.

    ``pixel_mean`` pools all evaluated pixels of all images (large images weigh more, as KITTI's server does);
    ``image_mean`` averages the per-image numbers (every image weighs the same). Images without evaluable
    pixels are listed but left out of both means.
    """

    def __init__(self, max_disp: float = 192):
        self.max_disp = max_disp
        self.per_image: list[dict[str, Any]] = []
        self._totals = {"n_valid": 0.0, "err_sum": 0.0, "d1": 0.0, **{k: 0.0 for k in _BAD_THRESHOLDS}}

    def update(self, pred: Any, gt: Any, valid: Any = None, name: str | None = None) -> dict[str, Any]:
        """Add one image; returns its metrics (also appended to ``per_image`` with its name)."""
        counts = error_counts(pred, gt, valid, self.max_disp)
        for k in self._totals:
            self._totals[k] += counts[k]
        row = {"name": name if name is not None else str(len(self.per_image)), **_metrics_from_counts(counts)}
        self.per_image.append(row)
        return row

    def summary(self) -> dict[str, dict[str, float]]:
        """``{"pixel_mean": {...}, "image_mean": {...}}`` with the metric keys and ``n_valid`` / ``n_images``."""
        pixel = _metrics_from_counts(self._totals)
        rows = [r for r in self.per_image if r["n_valid"] > 0]
        image: dict[str, float] = {k: (float(np.mean([r[k] for r in rows])) if rows else math.nan)
                                   for k in METRIC_KEYS}
        image["n_images"] = len(rows)
        pixel["n_images"] = len(rows)
        return {"pixel_mean": pixel, "image_mean": image}
