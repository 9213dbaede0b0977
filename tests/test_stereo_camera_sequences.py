"""Sequences (issue 27): a folder of 5 pairs, two videos and a side-by-side video (written here with OpenCV)
give 5 outputs each; an interrupted run, restarted, skips what is done; bad sequences are one-line errors that
write nothing."""

import json

import cv2
import numpy as np
import pytest
from PIL import Image

import vislab.stereo.predict as predict_module
from vislab.cli import main
from vislab.stereo.datasets.synthetic import render_scene

H, W, MAX_DISP, N = 96, 128, 32, 5


@pytest.fixture(scope="module")
def pairs():
    return [render_scene(10 + i, H, W, MAX_DISP) for i in range(N)]


def _u8(img):
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def folders(pairs, tmp_path_factory):
    root = tmp_path_factory.mktemp("seq")
    for side in ("left", "right"):
        (root / side).mkdir()
        for i, scene in enumerate(pairs):
            Image.fromarray(_u8(scene[side])).save(root / side / f"{i:04d}.png")
    return root


def _write_video(path, frames):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (frames[0].shape[1], frames[0].shape[0]))
    assert writer.isOpened()
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


SGBM = ["--method", "sgbm", "--max-disp", str(MAX_DISP)]


def test_folder_sequence_resumes_after_an_interruption(folders, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    args = ["stereo", "predict", "--left-dir", str(folders / "left"), "--right-dir", str(folders / "right"),
            *SGBM, "--out", str(out)]
    real = predict_module.predict_disparity
    calls = []

    def interrupted_after_two(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(predict_module, "predict_disparity", interrupted_after_two)
    assert main(args) == 130
    done = sorted(p.name for p in (out / "frames").glob("*_disp.npy"))
    assert done == ["0000_disp.npy", "0001_disp.npy"]
    assert not list(out.rglob(".*"))  # nothing half-written
    monkeypatch.setattr(predict_module, "predict_disparity", real)
    capsys.readouterr()
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "5 frames: 3 predicted, 2 already done (skipped)" in printed
    assert len(list((out / "frames").glob("*_disp.npy"))) == N == len(list((out / "frames").glob("*_disp.png")))
    report = json.loads((out / "frames" / "0004_checks.json").read_text())
    assert report["info"]["method"] == "sgbm"
    # the same folder with other settings is refused, not mixed
    assert main([*args[:-2], "--swap", "--out", str(out)]) == 2
    assert "other settings" in capsys.readouterr().err


def test_side_by_side_and_two_videos(pairs, tmp_path, capsys):
    sbs = _write_video(tmp_path / "sbs.avi", [np.hstack([_u8(s["left"]), _u8(s["right"])]) for s in pairs])
    out = tmp_path / "sbs_out"
    assert main(["stereo", "predict", "--sbs", str(sbs), *SGBM, "--disp-video", "--out", str(out)]) == 0
    assert "5 frames: 5 predicted" in capsys.readouterr().out
    assert len(list((out / "frames").glob("frame_*_disp.npy"))) == N
    cap = cv2.VideoCapture(str(out / "disparity.mp4"))
    count = 0
    while cap.read()[0]:
        count += 1
    assert count == N
    disp = np.load(out / "frames" / "frame_000000_disp.npy")
    assert disp.shape == (H, W)
    left = _write_video(tmp_path / "l.avi", [_u8(s["left"]) for s in pairs])
    right = _write_video(tmp_path / "r.avi", [_u8(s["right"]) for s in pairs])
    out2 = tmp_path / "two"
    assert main(["stereo", "predict", "--video", str(left), str(right), *SGBM, "--focal", "100", "--baseline", "0.1",
                 "--out", str(out2)]) == 0
    assert len(list((out2 / "frames").glob("*_depth.npy"))) == N


def test_bad_sequences(folders, tmp_path, capsys):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(lonely / "other.png")
    out = tmp_path / "out"
    cases = [
        (["--sbs", str(junk)], "cannot read video"),
        (["--video", str(junk), str(junk)], "cannot read video"),
        (["--sbs", str(tmp_path / "missing.mp4")], "video not found"),
        (["--left-dir", str(folders / "left"), "--right-dir", str(lonely)], "do not pair up by name"),
        (["--left-dir", str(folders / "left")], "needs both --left-dir and --right-dir"),
        (["--sbs", str(junk), "--left-dir", str(folders / "left"), "--right-dir", str(folders / "right")],
         "give one sequence"),
    ]
    for args, message in cases:
        assert main(["stereo", "predict", *args, *SGBM, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
        assert not out.exists()


def test_a_corrupt_video_prints_one_line_even_from_ffmpeg(tmp_path):
    """FFmpeg writes to the process's stderr directly, past Python: check the real stream in a subprocess."""
    import subprocess
    import sys

    junk = tmp_path / "junk.mp4"
    junk.write_bytes(bytes(range(256)) * 20)
    run = subprocess.run([sys.executable, "-m", "vislab", "stereo", "predict", "--sbs", str(junk), "--method", "sgbm",
                          "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stderr.startswith("error: cannot read video") and \
        run.stderr.count("\n") == 1, run.stderr


def test_a_turned_rig_sequence_is_rectified_once(tmp_path, capsys):
    from vislab.stereo.camera.calibfiles import write_opencv_calibration
    from vislab.stereo.camera.synthetic_rig import unrectify

    root = tmp_path / "rig"
    calib = None
    for i in range(3):
        scene = render_scene(20 + i, 192, 288, 48, style="real")
        pair = unrectify(scene["left"], scene["right"], focal=288.0, baseline=0.1)
        for side, img in (("left", pair.left), ("right", pair.right)):
            (root / side).mkdir(parents=True, exist_ok=True)
            Image.fromarray(_u8(img)).save(root / side / f"{i}.png")
        calib = calib or write_opencv_calibration(tmp_path / "rig.yaml", pair.calibration)
    base = ["stereo", "predict", "--left-dir", str(root / "left"), "--right-dir", str(root / "right"), *SGBM]
    assert main([*base, "--calib", str(calib), "--out", str(tmp_path / "metric")]) == 0
    printed = capsys.readouterr().out
    assert "rectified from the calibration" in printed and "used for every frame" in printed
    assert "warning" not in printed
    depth = np.load(tmp_path / "metric" / "frames" / "0_depth.npy")
    assert 0.1 < np.nanmedian(depth) < 100  # metres
    assert main([*base, "--rectify", "auto", "--out", str(tmp_path / "auto")]) == 0
    printed = capsys.readouterr().out
    assert "rectified automatically" in printed and "3 frames: 3 predicted" in printed
    assert not list((tmp_path / "auto" / "frames").glob("*_depth.npy"))
    report = json.loads((tmp_path / "auto" / "frames" / "2_checks.json").read_text())
    assert report["relative_disparity"] is True and report["checks"]["median_abs_dy"] < 1.0
