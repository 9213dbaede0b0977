"""EPE / D1 / bad-N on tiny hand-checked arrays, and the two ways of averaging over a dataset."""

import math

import numpy as np
import pytest
import torch

from vislab.stereo.metrics import MetricAccumulator, stereo_metrics

# (0,4) has gt 300: outside max_disp 192, counted only with max_disp 400; (1,0) has gt 0: never counted.
PRED = np.array([[1.0, 2.0, 10.0, 50.0, 0.0],
                 [0.0, 5.0, 104.0, 3.0, 7.0]])
GT = np.array([[1.5, 4.0, 6.0, 40.0, 300.0],
               [0.0, 5.0, 100.0, 3.2, np.inf]])
# counted errors: 0.5, 2, 4, 10 | 0, 4, 0.2  -> 7 pixels, sum 20.7
# err > 3 and > 5 % of gt: 4 (gt 6) and 10 (gt 40), not 4 (gt 100) -> D1 = 2/7


def test_hand_checked_metrics():
    m = stereo_metrics(PRED, GT, max_disp=192)
    assert m["n_valid"] == 7
    assert m["epe"] == pytest.approx(20.7 / 7)
    assert m["d1"] == pytest.approx(100 * 2 / 7)
    assert m["bad1"] == pytest.approx(100 * 4 / 7)  # 2, 4, 10, 4 (0.5 and 0.2 and 0 are not > 1)
    assert m["bad2"] == pytest.approx(100 * 3 / 7)  # 4, 10, 4 (an error of exactly 2 is not > 2)
    assert m["bad3"] == pytest.approx(100 * 3 / 7)


def test_valid_mask_and_max_disp():
    valid = np.ones_like(GT, dtype=bool)
    valid[0, 3] = False  # drop the error of 10
    m = stereo_metrics(PRED, GT, valid, max_disp=192)
    assert m["n_valid"] == 6 and m["epe"] == pytest.approx(10.7 / 6) and m["d1"] == pytest.approx(100 / 6)
    wide = stereo_metrics(PRED, GT, max_disp=400)  # now gt 300 with prediction 0 counts
    assert wide["n_valid"] == 8 and wide["epe"] == pytest.approx(320.7 / 8) and wide["d1"] == pytest.approx(300 / 8)
    # gt == max_disp is outside: the range is open
    assert stereo_metrics(np.array([0.0]), np.array([192.0]), max_disp=192)["n_valid"] == 0


def test_torch_and_numpy_agree():
    a = stereo_metrics(torch.tensor(PRED, dtype=torch.float32), torch.tensor(GT, dtype=torch.float32),
                       torch.ones(2, 5, dtype=torch.bool))
    b = stereo_metrics(PRED, GT)
    for k in b:
        assert a[k] == pytest.approx(b[k], rel=1e-6)


def test_no_valid_pixels_gives_nan():
    m = stereo_metrics(np.ones((2, 2)), np.zeros((2, 2)))
    assert m["n_valid"] == 0 and math.isnan(m["epe"]) and math.isnan(m["d1"])


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        stereo_metrics(np.zeros((2, 3)), np.zeros((3, 2)))


def test_accumulator_pixel_and_image_means():
    acc = MetricAccumulator(max_disp=192)
    acc.update(PRED, GT, None, "a")
    row = acc.update(np.array([[2.0]]), np.array([[1.0]]), None, "b")  # error 1: not > 1 px
    assert row == {"name": "b", "epe": 1.0, "d1": 0.0, "bad1": 0.0, "bad2": 0.0, "bad3": 0.0, "n_valid": 1}
    acc.update(np.zeros((2, 2)), np.zeros((2, 2)), None, "empty")  # listed, but in neither mean
    s = acc.summary()
    assert [r["name"] for r in acc.per_image] == ["a", "b", "empty"]
    assert s["pixel_mean"]["n_valid"] == 8 and s["pixel_mean"]["n_images"] == 2
    assert s["pixel_mean"]["epe"] == pytest.approx(21.7 / 8)
    assert s["pixel_mean"]["d1"] == pytest.approx(100 * 2 / 8)
    assert s["image_mean"]["epe"] == pytest.approx((20.7 / 7 + 1.0) / 2)
    assert s["image_mean"]["d1"] == pytest.approx((100 * 2 / 7 + 0.0) / 2)
    assert s["image_mean"]["n_images"] == 2
