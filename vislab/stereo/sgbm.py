"""The classical baseline: OpenCV semi-global block matching, with KITTI-style background hole filling.

Parameters follow OpenCV's documentation and the usual choices for KITTI-like scenes:

- matching on the greyscale images (on the shared KITTI/Middlebury/FlyingThings pairs it was as good as or
  better than colour);
- ``blockSize`` 5 (odd, 3-11): matching window; small keeps thin structures;
- ``P1 = 8 * cn * blockSize**2``, ``P2 = 32 * cn * blockSize**2`` (cn = 1 channel): smoothness penalties for
  disparity changes of 1 and of more than 1 between neighbours, as in OpenCV's stereo_match sample;
- ``uniquenessRatio`` 10 %, ``disp12MaxDiff`` 1 (left-right check), ``preFilterCap`` 63;
- speckle filtering: components under 200 px whose disparity varies by more than 2 are removed;
- ``mode``: ``MODE_HH`` (full 8-direction SGM) when its cost buffer, about ``4 * H * W * numDisparities``
  bytes, stays under ~1 GB (KITTI, Middlebury Q), else ``MODE_SGBM_3WAY`` (3 passes, little memory);
- ``numDisparities`` = ``max_disp`` rounded up to a multiple of 16 (OpenCV's requirement);
- OpenCV leaves the leftmost ``numDisparities`` columns unmatched; both images are padded on the left with
  that many replicated columns and the result cropped, so the left strip gets real matches (on the shared
  pairs: KITTI D1 3.26 -> 2.87 %, Middlebury Q 18.3 -> 8.7 %, FlyingThings 35.1 -> 26.4 %).

SGBM leaves holes (unmatched and occluded pixels, the left border); like the KITTI development kit's
``interpolateBackground`` they are filled from the background side, so every pixel gets a disparity and
SGBM can be compared with a network on exactly the same pixels.
"""

from collections.abc import Callable

import cv2
import numpy as np
import torch

from vislab.core.errors import VislabError

SGBM_PARAMS = {"block_size": 5, "uniqueness_ratio": 10, "disp12_max_diff": 1, "pre_filter_cap": 63,
               "speckle_window_size": 200, "speckle_range": 2}
_HH_MAX_CELLS = 2.5e8  # H * W * numDisparities above which full 8-way SGM (MODE_HH) needs too much memory


def _to_uint8(img: np.ndarray | torch.Tensor) -> np.ndarray:
    """(H, W, 3) or (3, H, W) float in [0, 1] or uint8 -> contiguous (H, W, 3) uint8 (RGB order kept)."""
    if isinstance(img, torch.Tensor):
        img = img.detach().cpu().numpy()
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[0] == 3 and img.shape[2] != 3:
        img = img.transpose(1, 2, 0)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.dtype != np.uint8:
        img = np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)


def sgbm_raw(left: np.ndarray, right: np.ndarray, max_disp: int = 192, block_size: int = 5) -> np.ndarray:
    """OpenCV StereoSGBM disparity in pixels (float32 (H, W)); NaN where it found no match."""
    left8, right8 = _to_uint8(left), _to_uint8(right)
    if left8.shape != right8.shape:
        raise VislabError(f"left/right size mismatch: {left8.shape[1]}x{left8.shape[0]} vs "
                          f"{right8.shape[1]}x{right8.shape[0]}")
    num_disp = max(16, int(np.ceil(max_disp / 16.0)) * 16)
    left8, right8 = (cv2.copyMakeBorder(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), 0, 0, num_disp, 0, cv2.BORDER_REPLICATE)
                     for im in (left8, right8))
    h, w = left8.shape
    mode = cv2.STEREO_SGBM_MODE_HH if h * w * num_disp <= _HH_MAX_CELLS else cv2.STEREO_SGBM_MODE_SGBM_3WAY
    matcher = cv2.StereoSGBM_create(
        minDisparity=0, numDisparities=num_disp, blockSize=block_size,
        P1=8 * block_size**2, P2=32 * block_size**2,
        disp12MaxDiff=SGBM_PARAMS["disp12_max_diff"], preFilterCap=SGBM_PARAMS["pre_filter_cap"],
        uniquenessRatio=SGBM_PARAMS["uniqueness_ratio"], speckleWindowSize=SGBM_PARAMS["speckle_window_size"],
        speckleRange=SGBM_PARAMS["speckle_range"], mode=mode,
    )
    fixed = matcher.compute(left8, right8)[:, num_disp:]  # int16, disparity * 16; (minDisparity - 1) * 16 = unmatched
    disp = fixed.astype(np.float32) / 16.0
    disp[fixed < 0] = np.nan
    return disp


def fill_background(disp: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Fill invalid pixels as the KITTI devkit does (``interpolateBackground``).

    Along each row, an invalid run between two valid pixels takes the smaller of their disparities (the
    farther surface: holes are mostly occlusions, which belong to the background); runs touching the image
    border take the nearest valid value. Rows without any valid pixel are then filled from the nearest row
    above/below. A map without any valid pixel becomes all zeros.
    """
    disp = np.asarray(disp, dtype=np.float32)
    if valid is None:
        valid = np.isfinite(disp) & (disp >= 0)
    valid = valid & np.isfinite(disp)
    if not valid.any():
        return np.zeros_like(disp)
    h, w = disp.shape
    cols = np.arange(w)[None, :].repeat(h, 0)
    # index of the nearest valid pixel at or before / at or after each pixel in its row (-1 / w = none)
    prev_idx = np.maximum.accumulate(np.where(valid, cols, -1), axis=1)
    next_idx = np.minimum.accumulate(np.where(valid, cols, w)[:, ::-1], axis=1)[:, ::-1]
    rows = np.arange(h)[:, None]
    prev_val = np.where(prev_idx >= 0, disp[rows, np.clip(prev_idx, 0, w - 1)], np.inf)
    next_val = np.where(next_idx < w, disp[rows, np.clip(next_idx, 0, w - 1)], np.inf)
    filled = np.minimum(prev_val, next_val)  # interior runs: background; border runs: the one valid end
    filled = np.where(valid, disp, filled)
    empty_rows = ~valid.any(axis=1)
    if empty_rows.any():
        good = np.flatnonzero(~empty_rows)
        # nearest non-empty row (ties go up), as the devkit extends columns to the top and bottom
        nearest = good[np.abs(good[None, :] - np.arange(h)[:, None]).argmin(axis=1)]
        filled[empty_rows] = filled[nearest[empty_rows]]
    return filled.astype(np.float32)


def sgbm_disparity(left: np.ndarray | torch.Tensor, right: np.ndarray | torch.Tensor, max_disp: int = 192,
                   block_size: int = 5, fill: bool = True) -> np.ndarray:
    """Dense SGBM disparity (float32 (H, W), pixels); holes filled from the background unless ``fill=False``."""
    disp = sgbm_raw(left, right, max_disp, block_size)
    return fill_background(disp) if fill else disp


def sgbm_predict_fn(max_disp: int = 192, block_size: int = 5) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A ``predict_fn`` for ``evaluate()``: (3, H, W) [0, 1] left/right tensors -> (H, W) disparity tensor."""

    def predict(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(sgbm_disparity(left, right, max_disp, block_size))

    return predict
