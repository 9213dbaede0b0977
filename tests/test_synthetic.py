"""The synthetic stereo generator: exact ground truth, determinism, sizes, dataset and SceneFlow tree."""

import argparse

import cv2
import numpy as np
import pytest
import torch

from vislab.core.errors import VislabError
from vislab.stereo.datasets import create_dataset
from vislab.stereo.datasets.synthetic import PHOTO_TEXTURES, render_scene, run_synth


def _warp_right_to_left(right: np.ndarray, disp: np.ndarray, offset: float = 0.0) -> np.ndarray:
    h, w = disp.shape
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(right, xs - disp - offset, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _interior(scene: dict) -> np.ndarray:
    """Non-occluded left pixels whose match falls between two right pixels of the same layer."""
    disp, layer_r = scene["disp"], scene["layer_right"]
    h, w = disp.shape
    xr = np.arange(w)[None] - disp
    x0 = np.clip(np.floor(xr).astype(int), 0, w - 2)
    rows = np.arange(h)[:, None]
    same = (layer_r[rows, x0] == scene["layer_left"]) & (layer_r[rows, x0 + 1] == scene["layer_left"])
    return ~scene["occluded"] & same & (xr >= 0) & (xr <= w - 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ground_truth_warps_right_view_onto_left_view(seed):
    scene = render_scene(seed, 96, 160, max_disp=48, photometric=False)
    mask = _interior(scene)
    assert mask.mean() > 0.5
    err = np.abs(_warp_right_to_left(scene["right"], scene["disp"]) - scene["left"]).mean(-1)
    wrong = np.abs(_warp_right_to_left(scene["right"], scene["disp"], offset=1.0) - scene["left"]).mean(-1)
    assert err[mask].mean() < 0.015
    assert np.median(err[mask]) < 0.01
    # The check has teeth: a disparity off by one pixel warps much worse.
    assert wrong[mask].mean() > 3 * err[mask].mean()


def test_occluded_pixels_do_not_match():
    scene = render_scene(5, 96, 160, max_disp=48, photometric=False)
    occ = scene["occluded"] & (np.arange(160)[None] - scene["disp"] >= 0)  # hidden, not out of view
    assert occ.sum() > 20
    err = np.abs(_warp_right_to_left(scene["right"], scene["disp"]) - scene["left"]).mean(-1)
    assert err[occ].mean() > 5 * err[_interior(scene)].mean()


def test_disparity_range_and_right_disparity_consistency():
    scene = render_scene(7, 64, 128, max_disp=32, photometric=False)
    d = scene["disp"]
    assert d.dtype == np.float32 and np.isfinite(d).all()
    assert d.min() >= 0.5 and d.max() <= 0.9 * 32 + 1e-4
    # Left disparity at non-occluded pixels equals the right-view disparity at the matching pixel.
    mask = _interior(scene)
    d_r = _warp_right_to_left(scene["disp_right"][..., None].repeat(3, -1), d)[..., 0]
    assert np.abs(d_r - d)[mask].mean() < 0.05


def test_deterministic_by_seed_and_different_across_seeds():
    a = render_scene(11, 40, 72, max_disp=24)
    b = render_scene(11, 40, 72, max_disp=24)
    c = render_scene(12, 40, 72, max_disp=24)
    for key in ("left", "right", "disp"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["disp"], c["disp"])


@pytest.mark.parametrize("size", [(33, 57), (64, 128), (17, 9)])
def test_any_size_including_odd(size):
    h, w = size
    scene = render_scene(3, h, w, max_disp=16)
    assert scene["left"].shape == (h, w, 3) and scene["right"].shape == (h, w, 3)
    assert scene["disp"].shape == (h, w)
    assert 0 <= scene["left"].min() and scene["left"].max() <= 1


def test_photometric_differences_change_intensities_not_geometry():
    clean = render_scene(4, 64, 96, max_disp=24, photometric=False)
    photo = render_scene(4, 64, 96, max_disp=24, photometric=True)
    np.testing.assert_array_equal(clean["disp"], photo["disp"])
    assert np.abs(clean["right"] - photo["right"]).mean() > 0.005


def test_photo_textures_never_include_the_evaluation_scene():
    assert not any("motorcycle" in name for name in PHOTO_TEXTURES)


def test_dataset_samples_follow_the_stereo_sample_format():
    ds = create_dataset("synthetic", root=None, size=3, height=33, width=65, max_disp=16, seed=5)
    assert len(ds) == 3
    s = ds[1]
    assert s["left"].shape == (3, 33, 65) and s["left"].dtype == torch.float32
    assert s["disp"].shape == (33, 65) and s["valid"].dtype == torch.bool
    assert s["valid"].all() and (s["disp"] > 0).all() and (s["disp"] < 16).all()
    assert isinstance(s["name"], str)
    with pytest.raises(IndexError):
        ds[3]


def test_training_scenes_change_with_epoch_validation_scenes_do_not():
    train = create_dataset("synthetic", root=None, size=2, height=24, width=40, max_disp=16)
    first = train[0]["disp"].clone()
    assert torch.equal(first, train[0]["disp"])
    train.set_epoch(1)
    assert not torch.equal(first, train[0]["disp"])
    val = create_dataset("synthetic", root=None, split="validation", size=2, height=24, width=40, max_disp=16)
    before = val[0]["disp"].clone()
    val.set_epoch(3)
    assert torch.equal(before, val[0]["disp"])


def test_invalid_size_is_a_user_error():
    with pytest.raises(VislabError):
        create_dataset("synthetic", root=None, size=0)


def test_synth_writes_a_tree_the_sceneflow_reader_loads(tmp_path):
    args = argparse.Namespace(n=2, out=str(tmp_path / "synth"), height=40, width=64, max_disp=16, seed=3)
    assert run_synth(args) == 0
    ds = create_dataset("sceneflow", root=tmp_path / "synth")
    assert len(ds) == 2
    s = ds[0]
    expected = render_scene((3, 2, 0), 40, 64, 16)
    assert s["left"].shape == (3, 40, 64)
    np.testing.assert_allclose(s["disp"].numpy(), expected["disp"], atol=1e-5)
    # written scenes are never the held-out evaluation scenes of the same seed and size
    held_out = create_dataset("synthetic", root=None, split="testing", size=2, height=40, width=64, max_disp=16, seed=3)
    assert not any(torch.equal(held_out[i]["disp"], ds[j]["disp"]) for i in range(2) for j in range(2))
    np.testing.assert_allclose(s["left"].numpy().transpose(1, 2, 0), expected["left"], atol=1 / 255 + 1e-6)
