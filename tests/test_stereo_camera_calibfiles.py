"""Calibration files (issue 27): OpenCV YAML, KITTI calib_cam_to_cam.txt (rectified and raw image sizes),
Middlebury calib.txt, a ROS camera_info pair; each hostile variant is one line ``error: ...``, exit status 2,
and nothing written."""

import cv2
import numpy as np
import pytest
from PIL import Image

from vislab.cli import main
from vislab.core.errors import VislabError
from vislab.stereo.camera.calibfiles import read_calibration, write_opencv_calibration
from vislab.stereo.camera.pipeline import prepare_pair
from vislab.stereo.camera.rectify import calibrated_rectifier
from vislab.stereo.camera.synthetic_rig import unrectify
from vislab.stereo.datasets.synthetic import render_scene

H, W, MAX_DISP = 192, 288, 48
BASELINE = 0.12


@pytest.fixture(scope="module")
def rig():
    scene = render_scene(5, H, W, MAX_DISP, style="real")
    return unrectify(scene["left"], scene["right"], focal=float(W), baseline=BASELINE)


def _fmt(a):
    return " ".join(f"{v:.12e}" for v in np.asarray(a, np.float64).ravel())


def write_kitti(path, rig, rect_size=(W - 10, H - 6)):
    c = rig.calibration
    ref = calibrated_rectifier(c, W, H)
    _, _, p1, p2 = ref.rect
    lines = ["calib_time: 09-Jan-2012 13:57:47", "corner_dist: 9.950000e-02"]
    for cam, k, d, r, t, p in (("00", c.k1, c.d1, np.eye(3), np.zeros(3), p1), ("01", c.k2, c.d2, c.r, c.t, p2),
                               ("02", c.k1, c.d1, np.eye(3), np.zeros(3), p1), ("03", c.k2, c.d2, c.r, c.t, p2)):
        lines += [f"S_{cam}: {W:.6e} {H:.6e}", f"K_{cam}: {_fmt(k)}", f"D_{cam}: {_fmt(d)}", f"R_{cam}: {_fmt(r)}",
                  f"T_{cam}: {_fmt(t)}", f"S_rect_{cam}: {rect_size[0]:.6e} {rect_size[1]:.6e}",
                  f"R_rect_{cam}: {_fmt(np.eye(3))}", f"P_rect_{cam}: {_fmt(p)}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_ros(folder, rig):
    c = rig.calibration
    r1, r2, p1, p2, *_ = cv2.stereoRectify(c.k1, c.d1, c.k2, c.d2, (W, H), c.r, c.t.reshape(3, 1),
                                           flags=cv2.CALIB_ZERO_DISPARITY, alpha=0)
    paths = []
    for name, k, d, r, p in (("left", c.k1, c.d1, r1, p1), ("right", c.k2, c.d2, r2, p2)):
        def block(key, a, rows, cols):
            data = ", ".join(f"{v:.10g}" for v in np.ravel(a))
            return f"{key}:\n  rows: {rows}\n  cols: {cols}\n  data: [{data}]\n"
        text = (f"image_width: {W}\nimage_height: {H}\ncamera_name: {name}\n" + block("camera_matrix", k, 3, 3) +
                "distortion_model: plumb_bob\n" + block("distortion_coefficients", d, 1, 5) +
                block("rectification_matrix", r, 3, 3) + block("projection_matrix", p, 3, 4))
        paths.append(folder / f"{name}.yaml")
        paths[-1].write_text(text)
    return paths


def test_all_formats_give_the_same_metric_camera(rig, tmp_path):
    yaml = write_opencv_calibration(tmp_path / "rig.yaml", rig.calibration)
    ros = write_ros(tmp_path, rig)
    kitti = write_kitti(tmp_path / "calib_cam_to_cam.txt", rig)
    cams = {}
    for name, calib in (("opencv", yaml), ("ros", ros), ("kitti", kitti)):
        prepared = prepare_pair(rig.left, rig.right, calib=calib, max_disp=MAX_DISP)
        assert prepared.rectifier.kind == "calibrated" and prepared.unit == "m"
        assert prepared.checks.error is None and not prepared.checks.warnings, (name, prepared.checks)
        cams[name] = prepared.camera
    for cam in cams.values():
        assert cam.baseline == pytest.approx(BASELINE, rel=1e-6)
        assert cam.focal == pytest.approx(cams["opencv"].focal, rel=1e-6)


def test_kitti_rectified_size_and_middlebury_need_no_warping(rig, tmp_path):
    kitti = write_kitti(tmp_path / "calib_cam_to_cam.txt", rig, rect_size=(W, H))
    loaded = read_calibration(kitti, (W, H))
    assert loaded.format == "kitti" and loaded.rig is None
    assert loaded.rectified.baseline == pytest.approx(BASELINE, rel=1e-6) and loaded.rectified.unit == "m"
    with pytest.raises(VislabError, match="is for rectified 288x192"):
        read_calibration(kitti, (100, 50))
    mb = tmp_path / "calib.txt"
    mb.write_text("cam0=[500 0 140; 0 500 95; 0 0 1]\ncam1=[500 0 150; 0 500 95; 0 0 1]\ndoffs=10\n"
                  "baseline=120\nwidth=288\nheight=192\nndisp=64\n")
    prepared = prepare_pair(rig.left, rig.left, calib=mb, check=False)
    assert prepared.rectifier is None and prepared.unit == "mm" and prepared.camera.doffs == 10


def test_calibration_scaled_to_a_smaller_image(rig, tmp_path):
    yaml = write_opencv_calibration(tmp_path / "rig.yaml", rig.calibration)
    half = [cv2.resize(im, (W // 2, H // 2), interpolation=cv2.INTER_AREA) for im in (rig.left, rig.right)]
    prepared = prepare_pair(*half, calib=yaml, check=False)
    assert prepared.camera.baseline == pytest.approx(BASELINE, rel=1e-6)
    assert prepared.camera.focal == pytest.approx(calibrated_rectifier(rig.calibration, W, H).camera.focal / 2,
                                                  rel=0.01)
    with pytest.raises(VislabError, match="another aspect ratio"):
        prepare_pair(rig.left[:, :100], rig.right[:, :100], calib=yaml)


HOSTILE = {
    "empty.yaml": b"",
    "junk.yaml": bytes(range(256)) * 4,
    "truncated.yaml": b"%YAML:1.0\nK1: !!opencv-matrix\n  rows: 3\n  cols: 3\n  dt: d\n  data: [1,2",
    "notmatrix.yaml": b"%YAML:1.0\nK1: 5\nK2: 5\nR: 1\nT: 2\nimage_width: 10\nimage_height: 10\n",
    "kitti_text.txt": b"calib_time: x\nS_rect_02: 10 10\nP_rect_02: 1 2 three\n",
    "kitti_missing.txt": b"calib_time: x\nS_rect_02: 288 192\nP_rect_02: 1 0 0 0 0 1 0 0 0 0 1 0\n",
    "middlebury_bad.txt": b"cam0=[1 2; 3 4]\ndoffs=0\n",
}


def test_hostile_calibration_files(rig, tmp_path, capsys):
    left, right = tmp_path / "l.png", tmp_path / "r.png"
    Image.fromarray(np.round(rig.left * 255).astype(np.uint8)).save(left)
    Image.fromarray(np.round(rig.right * 255).astype(np.uint8)).save(right)
    good = write_opencv_calibration(tmp_path / "good.yaml", rig.calibration)
    text = good.read_text()
    variants = dict(HOSTILE)
    variants["nosize.yaml"] = text.replace("image_width", "image_widthx").encode()
    k1 = text.split("K1:")[1].split("data: [")[1].split(",")[0]
    variants["negfocal.yaml"] = text.replace(f"data: [{k1},", "data: [ -1.,", 1).encode()
    variants["nan.yaml"] = text.replace(f"data: [{k1},", "data: [ .nan,", 1).encode()
    r_block = text.split("R: !!opencv-matrix")[1].split("data: [")[1].split("]")[0]
    variants["notrotation.yaml"] = text.replace(r_block, " 2., 0., 0., 0., 1., 0., 0., 0., 1. ").encode()
    ros_left, ros_right = write_ros(tmp_path, rig)
    out = tmp_path / "out"
    for name, data in variants.items():
        bad = tmp_path / name
        bad.write_bytes(data)
        for command in (["predict", str(left), str(right), "--method", "sgbm"], ["rectify", str(left), str(right)]):
            assert main(["stereo", *command, "--calib", str(bad), "--out", str(out)]) == 2, name
            err = capsys.readouterr().err
            assert err.startswith("error: ") and err.count("\n") == 1, (name, err)
            assert "calib" in err or "--calib" in err, (name, err)
            assert not out.exists(), name
    for calib, message in (([ros_left], "for one camera"), ([good, ros_left], "must be ROS camera_info"),
                           ([ros_right, ros_left], "give the left camera's file first"),
                           ([tmp_path / "missing.yaml"], "not found")):
        args = [a for c in calib for a in ("--calib", str(c))]
        assert main(["stereo", "rectify", str(left), str(right), *args, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert not out.exists()
