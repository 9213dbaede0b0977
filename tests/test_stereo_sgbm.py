"""The SGBM baseline: KITTI-devkit background filling by hand, a known shift, and the real KITTI frame."""

import cv2
import numpy as np
import pytest

from vislab.core.errors import VislabError
from vislab.stereo.datasets import create_dataset
from vislab.stereo.metrics import stereo_metrics
from vislab.stereo.sgbm import _to_uint8, fill_background, sgbm_disparity, sgbm_raw

nan = np.nan


def test_fill_background_by_hand():
    disp = np.array([[5, nan, nan, 3, nan],
                     [nan, 2, nan, nan, 7],
                     [nan, nan, nan, nan, nan],
                     [1, -1, 4, 9, nan]], dtype=np.float32)
    valid = np.isfinite(disp) & (disp >= 0)
    out = fill_background(disp, valid)
    expected = np.array([[5, 3, 3, 3, 3],      # interior run -> min(5, 3); right border -> last valid
                         [2, 2, 2, 2, 7],      # left border -> first valid; interior -> min(2, 7)
                         [2, 2, 2, 2, 7],      # empty row -> nearest row (ties go up)
                         [1, 1, 4, 9, 9]],     # negative = invalid -> min(1, 4)
                        dtype=np.float32)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(fill_background(np.full((2, 3), nan)), np.zeros((2, 3)))


def texture(h, w, seed=0):
    """Blurred colour noise in [0, 1]: texture SGBM can match."""
    tex = cv2.GaussianBlur(np.random.default_rng(seed).uniform(0, 1, (h, w, 3)), (0, 0), 1.0)
    return (tex - tex.min()) / (tex.max() - tex.min())


def test_sgbm_recovers_a_constant_shift():
    shift, h, w = 9, 60, 160
    tex = texture(h, w + shift)
    left, right = tex[:, :w], tex[:, shift:shift + w]  # left[x] == right[x - shift]
    raw = sgbm_raw(left, right, max_disp=32)
    inner = raw[10:-10, 40:-10]
    assert np.isfinite(inner).mean() > 0.9
    assert np.nanmedian(inner) == pytest.approx(shift, abs=0.25)
    dense = sgbm_disparity(left, right, max_disp=32)
    assert np.isfinite(dense).all() and np.median(dense) == pytest.approx(shift, abs=0.25)


def test_max_disp_not_a_multiple_of_16_is_rounded_up():
    """max_disp=200 must search 208 disparities (rounding down to 192 would miss a 200-px shift)."""
    shift, h, w = 200, 40, 400
    tex = texture(h, w + shift)
    left, right = tex[:, :w], tex[:, shift:shift + w]
    inner = sgbm_raw(left, right, max_disp=200)[10:-10, shift + 10:-10]
    assert np.isfinite(inner).mean() > 0.9
    assert np.nanmedian(inner) == pytest.approx(shift, abs=0.25)


def test_unmatched_pixels_are_nan_and_fill_false_keeps_them():
    # Unrelated left/right textures: most pixels fail the uniqueness / left-right checks (measured ~87 %).
    # (A flat image is no good here: OpenCV answers disparity 0 everywhere on it.)
    left, right = texture(60, 160, seed=1), texture(60, 160, seed=2)
    raw = sgbm_raw(left, right, max_disp=32)
    assert np.isnan(raw).mean() > 0.5
    assert (raw[np.isfinite(raw)] >= 0).all()  # OpenCV's -1 "no match" code never leaks out
    holes = sgbm_disparity(left, right, max_disp=32, fill=False)
    np.testing.assert_array_equal(holes, raw)  # NaN positions included
    assert np.isfinite(sgbm_disparity(left, right, max_disp=32, fill=True)).all()


def test_float_images_are_scaled_by_255():
    """Float [0, 1] -> uint8 must invert read_image's / 255 exactly, so float and uint8 inputs match alike."""
    levels = np.arange(256, dtype=np.uint8)
    grey = np.tile(levels, (2, 1))  # (2, 256)
    np.testing.assert_array_equal(_to_uint8(grey.astype(np.float32) / 255.0)[..., 0], grey)
    np.testing.assert_array_equal(_to_uint8(np.array([[1.0, 0.5, 0.0]]))[0, :, 0], [255, 128, 0])
    chw = np.stack([grey / 255.0] * 3)  # (3, H, W) tensor layout
    np.testing.assert_array_equal(_to_uint8(chw), np.repeat(grey[..., None], 3, axis=2))


def test_sgbm_size_mismatch():
    with pytest.raises(VislabError, match="size mismatch"):
        sgbm_raw(np.zeros((10, 20, 3)), np.zeros((10, 21, 3)))


def test_sgbm_on_real_kitti(stereo_samples):
    s = create_dataset("kitti2015", stereo_samples / "kitti2015")[0]
    m = stereo_metrics(sgbm_disparity(s["left"], s["right"], 192), s["disp"], s["valid"], 192)
    # measured: D1 2.87 %, EPE 0.82 px (README); a broken matcher or filler lands far outside this band
    assert 1.5 < m["d1"] < 6.0
    assert m["epe"] < 1.5
