"""Stereo file formats: PFM, KITTI 16-bit PNG, Middlebury calib.txt, images; malformed files fail in one line."""

import struct

import numpy as np
import pytest
from PIL import Image

from vislab.core.errors import VislabError
from vislab.stereo.io import (
    read_calib,
    read_image,
    read_kitti_disparity,
    read_mask,
    read_pfm,
    write_kitti_disparity,
    write_pfm,
)

# ------------------------------------------------------------------------------------------------ PFM


def test_pfm_hand_written_little_endian_is_bottom_to_top(tmp_path):
    # 2x2 grey image stored bottom row first: file rows (3, 4) then (1, 2) -> top row is (1, 2)
    path = tmp_path / "a.pfm"
    path.write_bytes(b"Pf\n2 2\n-1.0\n" + struct.pack("<4f", 3, 4, 1, 2))
    np.testing.assert_array_equal(read_pfm(path), [[1, 2], [3, 4]])


def test_pfm_hand_written_big_endian_colour(tmp_path):
    path = tmp_path / "c.pfm"
    # 1 row, 2 pixels, RGB; positive scale = big endian
    path.write_bytes(b"PF\n2 1\n1.0\n" + struct.pack(">6f", 1, 2, 3, 4, 5, 6))
    out = read_pfm(path)
    assert out.shape == (1, 2, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], [[1, 2, 3], [4, 5, 6]])


def test_pfm_header_with_trailing_spaces_as_in_sceneflow(tmp_path):
    path = tmp_path / "s.pfm"
    path.write_bytes(b"Pf \n2 1 \n-1.0\n" + struct.pack("<2f", 7.5, np.inf))
    out = read_pfm(path)
    assert out[0, 0] == 7.5 and np.isinf(out[0, 1])


@pytest.mark.parametrize("little", [True, False])
@pytest.mark.parametrize("shape", [(5, 7), (4, 3, 3)])
def test_pfm_roundtrip(tmp_path, little, shape):
    arr = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    arr.flat[0] = np.inf
    path = write_pfm(tmp_path / "x.pfm", arr, little_endian=little)
    assert path.read_bytes()[:2] == (b"Pf" if len(shape) == 2 else b"PF")
    np.testing.assert_array_equal(read_pfm(path), arr)


@pytest.mark.parametrize("content, message", [
    (b"P5\n2 2\n255\n" + bytes(4), "bad PFM header"),
    (b"Pf\ntwo two\n-1.0\n", "bad PFM header"),
    (b"Pf\n2 2\nabc\n", "bad PFM header"),
    (b"Pf\n2 2\n0.0\n" + struct.pack("<4f", 1, 2, 3, 4), "bad PFM header.*scale 0"),  # no byte order
    (b"Pf\n2 2\n-1.0\n" + struct.pack("<3f", 1, 2, 3), "truncated PFM"),
    (b"Pf\n2 2\n-1.0\n" + struct.pack("<3f", 1, 2, 3) + b"\x00\x00", "truncated PFM"),  # cut mid-float
])
def test_pfm_malformed(tmp_path, content, message):
    path = tmp_path / "bad.pfm"
    path.write_bytes(content)
    with pytest.raises(VislabError, match=message) as info:
        read_pfm(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_pfm_missing(tmp_path):
    with pytest.raises(VislabError, match="not found"):
        read_pfm(tmp_path / "nope.pfm")
    with pytest.raises(VislabError, match="is a folder, not a file"):
        read_pfm(tmp_path)


def test_real_pfms(stereo_samples):
    ft = read_pfm(stereo_samples / "sceneflow/flyingthings3d/disparity/TEST/A/0032/left/0006.pfm")
    assert ft.shape == (540, 960) and np.isfinite(ft).all() and 0 < ft.min() < ft.max() < 300
    mb = read_pfm(stereo_samples / "middlebury2014/trainingQ/Motorcycle/disp0GT.pfm")
    assert mb.shape == (497, 741)
    finite = mb[np.isfinite(mb)]
    assert np.isinf(mb).any() and 0 < finite.min() and finite.max() < 70  # calib: ndisp=70 at quarter size
    # rows are flipped: the bottom of Motorcycle is the floor, close to the camera (large disparity)
    assert np.nanmean(np.where(np.isfinite(mb[-20:]), mb[-20:], np.nan)) > np.nanmean(
        np.where(np.isfinite(mb[:20]), mb[:20], np.nan))


# ------------------------------------------------------------------------------------------------ KITTI PNG


def test_kitti_png_roundtrip_and_invalid(tmp_path):
    disp = np.array([[0.0, 1.5, 255.99], [np.nan, -3.0, 10.25]], dtype=np.float32)
    path = write_kitti_disparity(tmp_path / "d.png", disp)
    with Image.open(path) as im:
        assert im.mode.startswith("I;16")
        raw = np.asarray(im)
    np.testing.assert_array_equal(raw, [[0, 384, 65533], [0, 0, 2624]])
    back, valid = read_kitti_disparity(path)
    np.testing.assert_array_equal(valid, [[False, True, True], [False, False, True]])
    np.testing.assert_allclose(back[valid], [1.5, 65533 / 256, 10.25])


def test_kitti_png_rejects_8bit(tmp_path):
    path = tmp_path / "d8.png"
    Image.fromarray(np.zeros((3, 4), np.uint8)).save(path)
    with pytest.raises(VislabError, match="16-bit") as info:
        read_kitti_disparity(path)
    assert str(path) in str(info.value)


def test_kitti_png_truncated(tmp_path):
    good = write_kitti_disparity(tmp_path / "g.png", np.random.default_rng(0).uniform(1, 90, (60, 80)))
    bad = tmp_path / "t.png"
    bad.write_bytes(good.read_bytes()[:200])
    with pytest.raises(VislabError, match="cannot read disparity PNG") as info:
        read_kitti_disparity(bad)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_real_kitti_disparity(stereo_samples):
    disp, valid = read_kitti_disparity(stereo_samples / "kitti2015/training/disp_occ_0/000046_10.png")
    assert disp.shape == (375, 1242) and 0.05 < valid.mean() < 0.5
    assert (disp[~valid] == 0).all() and 1 < disp[valid].max() < 256


# ------------------------------------------------------------------------------------------------ calib.txt


def test_real_calib(stereo_samples):
    c = read_calib(stereo_samples / "middlebury2014/trainingQ/Motorcycle/calib.txt")
    assert c.focal == pytest.approx(999.421) and c.cx == pytest.approx(294.182) and c.cy == pytest.approx(252.932)
    assert c.cam1[0, 2] == pytest.approx(326.96)
    assert (c.doffs, c.baseline, c.width, c.height, c.ndisp) == (pytest.approx(32.778), pytest.approx(193.001),
                                                                 741, 497, 70)
    assert c.extra["vmax"] == 65


def test_calib_missing_key_and_bad_matrix(tmp_path):
    path = tmp_path / "calib.txt"
    path.write_text("cam0=[1 0 2; 0 1 3; 0 0 1]\ncam1=[1 0 2; 0 1 3; 0 0 1]\ndoffs=0\nwidth=4\nheight=3\nndisp=16\n")
    with pytest.raises(VislabError, match="missing key.*baseline") as info:
        read_calib(path)
    assert str(path) in str(info.value)
    path.write_text("cam0=[1 0; 0 1]\n")
    with pytest.raises(VislabError, match="cam0"):
        read_calib(path)
    path.write_text("just words\n")
    with pytest.raises(VislabError, match="key=value"):
        read_calib(path)


# ------------------------------------------------------------------------------------------------ images


def test_read_image_modes(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_allclose(read_image(tmp_path / "rgb.png"), rgb / 255.0, atol=1e-7)
    rgba = np.concatenate([rgb, np.full((5, 6, 1), 7, np.uint8)], axis=2)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_allclose(read_image(tmp_path / "rgba.png"), rgb / 255.0, atol=1e-7)
    grey = rgb[..., 0]
    Image.fromarray(grey).save(tmp_path / "grey.png")
    out = read_image(tmp_path / "grey.png")
    assert out.shape == (5, 6, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[..., 2], grey / 255.0, atol=1e-7)
    Image.fromarray(rgb).save(tmp_path / "rgb.jpg")
    assert read_image(tmp_path / "rgb.jpg").shape == (5, 6, 3)
    write_kitti_disparity(tmp_path / "sixteen.png", np.full((2, 2), 128.0))  # raw 32768
    np.testing.assert_allclose(read_image(tmp_path / "sixteen.png"), 32768 / 65535, atol=1e-6)


def test_read_image_errors(tmp_path):
    with pytest.raises(VislabError, match="not found"):
        read_image(tmp_path / "missing.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(VislabError, match="cannot read image") as info:
        read_image(bad)
    assert str(bad) in str(info.value)


def test_read_mask(stereo_samples):
    mask = read_mask(stereo_samples / "middlebury2014/trainingQ/Motorcycle/mask0nocc.png")
    assert mask.shape == (497, 741) and set(np.unique(mask)) <= {0, 128, 255}


def test_kitti_png_rounds_to_nearest_and_inf_is_invalid(tmp_path):
    # round(d * 256), not truncation: 1.999 px is 511.7 -> 512; +inf is as invalid as NaN, not clipped to 65535
    path = write_kitti_disparity(tmp_path / "r.png", np.array([[1.999, 2.001, np.inf, 300.0]]))
    with Image.open(path) as im:
        np.testing.assert_array_equal(np.asarray(im), [[512, 512, 0, 65535]])
    assert read_kitti_disparity(path)[1].tolist() == [[True, True, False, True]]


def test_read_mask_saved_as_rgb_is_single_channel(tmp_path):
    # a mask re-saved by an editor as RGB is still read as one (H, W) channel
    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[1] = 255
    Image.fromarray(rgb).save(tmp_path / "m.png")
    mask = read_mask(tmp_path / "m.png")
    assert mask.shape == (3, 4) and mask.dtype == np.uint8 and mask[1].tolist() == [255] * 4 and mask[0].max() == 0
