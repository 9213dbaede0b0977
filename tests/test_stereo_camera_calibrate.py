"""``vislab stereo calibrate`` (issue 27): chessboard views rendered through a known virtual rig (intrinsics,
distortion, rotation, baseline) are calibrated back: baseline within 1 %, RMS reprojection error under 0.5 px;
the YAML it writes is OpenCV's (cv2.FileStorage reads it) and rectifies pairs through ``--calib``."""

import cv2
import numpy as np
import pytest
from PIL import Image

from vislab.cli import main
from vislab.stereo.camera.calibfiles import RigCalibration, read_calibration
from vislab.stereo.camera.commands import parse_board, parse_square
from vislab.stereo.camera.synthetic_rig import render_chessboard_views

W, H = 480, 360
BASELINE = 0.06


@pytest.fixture(scope="module")
def views_dir(tmp_path_factory):
    k1 = np.array([[450.0, 0, 242], [0, 452, 178], [0, 0, 1]])
    k2 = np.array([[458.0, 0, 236], [0, 459, 183], [0, 0, 1]])
    rot = cv2.Rodrigues(np.deg2rad([0.5, -1.0, 0.3]).reshape(3, 1))[0]
    t = np.array([-0.0599, 0.001, 0.0025])
    t *= BASELINE / np.linalg.norm(t)
    rig = RigCalibration(k1, np.array([-0.12, 0.05, 0.001, -0.0005, 0]), k2,
                         np.array([-0.1, 0.04, -0.0008, 0.0006, 0]), rot, t, W, H)
    root = tmp_path_factory.mktemp("board")
    for side in ("left", "right"):
        (root / side).mkdir()
    for i, (left, right) in enumerate(render_chessboard_views(rig, (9, 6), 0.025, 10, seed=1)):
        Image.fromarray(left).save(root / "left" / f"view{i:02d}.png")
        Image.fromarray(right).save(root / "right" / f"view{i:02d}.png")
    # one pair without a board: reported as skipped, not fatal
    blank = np.full((H, W), 120, np.uint8)
    Image.fromarray(blank).save(root / "left" / "zz_blank.png")
    Image.fromarray(blank).save(root / "right" / "zz_blank.png")
    return root, rig


def test_calibrate_recovers_the_virtual_rig(views_dir, tmp_path, capsys):
    root, rig = views_dir
    out = tmp_path / "calib" / "rig.yaml"
    assert main(["stereo", "calibrate", "--left-dir", str(root / "left"), "--right-dir", str(root / "right"),
                 "--board", "9x6", "--square", "25mm", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "skipped zz_blank.png: no 9x6 board found in either image" in printed
    assert "from 10 of 11 pairs" in printed
    fs = cv2.FileStorage(str(out), cv2.FILE_STORAGE_READ)  # OpenCV's own reader
    t, rms = fs.getNode("T").mat().ravel(), fs.getNode("rms").real()
    k1 = fs.getNode("K1").mat()
    fs.release()
    assert np.linalg.norm(t) == pytest.approx(BASELINE, rel=0.01)
    assert rms < 0.5
    assert k1[0, 0] == pytest.approx(rig.k1[0, 0], rel=0.02)
    loaded = read_calibration(out)
    assert loaded.rig.width == W and loaded.rig.unit == "m" and loaded.rig.rms == pytest.approx(rms)
    # the rotation between the cameras to a fraction of a degree (it trades off against the principal points)
    angle = np.rad2deg(np.linalg.norm(cv2.Rodrigues(loaded.rig.r @ rig.r.T)[0]))
    assert angle < 0.3
    assert not list(out.parent.glob(".*"))  # no temporary file left


def test_calibrate_errors(views_dir, tmp_path, capsys):
    root, _ = views_dir
    blank = tmp_path / "blank"
    for side in ("l", "r"):
        (blank / side).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((60, 80), 100 + i, np.uint8)).save(blank / side / f"{i}.png")
    out = tmp_path / "o" / "c.yaml"
    cases = [
        (["--left-dir", str(blank / "l"), "--right-dir", str(blank / "r"), "--board", "9x6", "--square", "25mm"],
         "board was found in both images of only 0 pairs"),
        (["--left-dir", str(root / "left"), "--right-dir", str(blank / "r"), "--board", "9x6", "--square", "25mm"],
         "do not pair up by name"),
        (["--left-dir", str(tmp_path / "none"), "--right-dir", str(blank / "r"), "--board", "9x6",
          "--square", "25mm"], "folder not found"),
        (["--left-dir", str(root / "left"), "--right-dir", str(root / "right"), "--board", "9x6", "--square", "25"],
         "with its unit"),
        (["--left-dir", str(root / "left"), "--right-dir", str(root / "right"), "--board", "9", "--square", "1cm"],
         "COLSxROWS"),
    ]
    for args, message in cases:
        assert main(["stereo", "calibrate", *args, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
        assert not out.exists()


def test_parsers():
    assert parse_board("9x6") == (9, 6) and parse_board("7X5") == (7, 5)
    assert parse_square("25mm") == pytest.approx(0.025) and parse_square("2.5cm") == pytest.approx(0.025)
    assert parse_square("0.03m") == pytest.approx(0.03) and parse_square("1in") == pytest.approx(0.0254)


def test_calibrate_with_a_charuco_board(views_dir, tmp_path, capsys):
    from vislab.stereo.camera.calibrate import Charuco

    _, rig = views_dir
    board = Charuco(0.0225).board((7, 5), 0.03)
    pattern = board.generateImage((7 * 60, 5 * 60), marginSize=0)
    root = tmp_path / "charuco"
    for side in ("left", "right"):
        (root / side).mkdir(parents=True)
    for i, (left, right) in enumerate(render_chessboard_views(rig, (6, 4), 0.03, 8, seed=2, pattern=pattern)):
        Image.fromarray(left).save(root / "left" / f"{i}.png")
        Image.fromarray(right).save(root / "right" / f"{i}.png")
    out = tmp_path / "charuco.yaml"
    base = ["stereo", "calibrate", "--left-dir", str(root / "left"), "--right-dir", str(root / "right"),
            "--board", "7x5", "--square", "30mm", "--out", str(out)]
    assert main([*base, "--charuco", "--marker", "22.5mm"]) == 0
    assert "from 8 of 8 pairs" in capsys.readouterr().out
    loaded = read_calibration(out)
    assert loaded.rig.baseline == pytest.approx(BASELINE, rel=0.01) and loaded.rig.rms < 0.5
    out.unlink()
    for extra, message in ((["--charuco", "--marker", "40mm"], "must be smaller than the square"),
                           (["--charuco", "--dictionary", "DICT_NOPE"], "unknown ArUco dictionary"),
                           (["--marker", "20mm"], "add --charuco"),
                           ([], "board was found in both images of only 0 pairs")):
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert not out.exists()


def test_a_partly_hidden_charuco_board_still_calibrates(views_dir, tmp_path, capsys):
    # What ChArUco is for: a board partly hidden (a hand, the image border) still gives corners with their ids.
    # Here the left view loses the board's right quarter and the right view its left quarter, so the two share
    # only the corners of its middle half, and each view is calibrated from the corners that both see.
    from vislab.stereo.camera.calibrate import Charuco

    _, rig = views_dir
    pattern = Charuco(0.0225).board((7, 5), 0.03).generateImage((7 * 60, 5 * 60), marginSize=0)
    root = tmp_path / "hidden"
    background = round(0.45 * 255)  # synthetic_rig's wall
    for i, pair in enumerate(render_chessboard_views(rig, (6, 4), 0.03, 10, seed=3, pattern=pattern)):
        for side, img in zip(("left", "right"), pair, strict=True):
            xs = np.nonzero(np.abs(img.astype(int) - background).max(axis=0) > 40)[0]  # the board's columns
            quarter = (xs.max() - xs.min()) // 4
            hidden = slice(xs.max() - quarter, None) if side == "left" else slice(0, xs.min() + quarter)
            img[:, hidden] = background
            (root / side).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / side / f"{i}.png")
    out = tmp_path / "hidden.yaml"
    assert main(["stereo", "calibrate", "--left-dir", str(root / "left"), "--right-dir", str(root / "right"),
                 "--board", "7x5", "--square", "30mm", "--charuco", "--marker", "22.5mm", "--out", str(out)]) == 0
    assert "from 10 of 10 pairs" in capsys.readouterr().out
    loaded = read_calibration(out)
    assert loaded.rig.baseline == pytest.approx(BASELINE, rel=0.02) and loaded.rig.rms < 0.5
