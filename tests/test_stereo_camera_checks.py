"""Input checks on a pair (issue 27): a rectified pair passes silently, an un-rectified one warns, swapped views
are an error with the advice (and ``--swap`` fixes them), disparities beyond the range warn."""

import json

import numpy as np
import pytest
from PIL import Image

from vislab.cli import main
from vislab.core.errors import VislabError
from vislab.stereo.camera.checks import check_pair
from vislab.stereo.camera.pipeline import prepare_pair
from vislab.stereo.camera.synthetic_rig import unrectify
from vislab.stereo.datasets.synthetic import render_scene

H, W, MAX_DISP = 256, 384, 64


@pytest.fixture(scope="module")
def scene():
    return render_scene(3, H, W, MAX_DISP, style="real")


def _save(tmp_path, left, right):
    paths = tmp_path / "left.png", tmp_path / "right.png"
    for p, img in zip(paths, (left, right), strict=True):
        Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)).save(p)
    return paths


def test_a_rectified_pair_passes_silently(scene):
    # (what the checks cost next to a prediction: benchmarks/stereo_input_checks.py, not a timed test)
    found = check_pair(scene["left"], scene["right"], 192)
    assert found.passed and found.lines() == [] and found.n_matches >= 20
    assert found.median_abs_dy < 0.5 and found.negative_fraction == 0 and found.beyond_fraction == 0
    assert found.seconds > 0


def test_an_unrectified_pair_warns_with_the_number_and_the_remedies(scene):
    pair = unrectify(scene["left"], scene["right"], focal=W, baseline=0.1, rotation_deg=(1.0, 0.5, 1.0), dy_px=4)
    found = check_pair(pair.left, pair.right, 192)
    assert found.error is None and len(found.warnings) == 1
    warning = found.warnings[0]
    assert f"{found.median_abs_dy:.1f} px" in warning and found.median_abs_dy > 1.5
    assert "--rectify auto" in warning and "--calib" in warning


def test_an_unrectified_pair_is_never_called_swapped(scene):
    # A turned camera shifts its view sideways: the sign of x-disparity means little before rectification.
    pair = unrectify(scene["left"], scene["right"], focal=W, baseline=0.1, rotation_deg=(1.0, 0.5, 1.0), dy_px=4)
    for first, second in ((pair.left, pair.right), (pair.right, pair.left)):
        found = check_pair(first, second, 192)
        assert found.error is None and "not rectified" in found.warnings[0]


def test_swapped_views_are_an_error_that_says_to_swap(scene):
    found = check_pair(scene["right"], scene["left"], 192)
    assert found.error and "swapped" in found.error and "--swap" in found.error
    with pytest.raises(VislabError, match="--swap"):
        prepare_pair(scene["right"], scene["left"])
    fixed = prepare_pair(scene["right"], scene["left"], swap=True)
    assert fixed.checks.passed and fixed.swapped
    np.testing.assert_array_equal(fixed.left, scene["left"])


def test_disparities_beyond_the_range_warn(scene):
    found = check_pair(scene["left"], scene["right"], 16)
    assert found.error is None and len(found.warnings) == 1
    assert "above the range (16 px" in found.warnings[0] and "--max-disp" in found.warnings[0]


def test_too_few_features_is_a_note_not_a_finding():
    flat = np.full((64, 96, 3), 0.5, np.float32)
    found = check_pair(flat, flat, 192)
    assert found.error is None and not found.warnings and "could not be checked" in found.notes[0]


def test_cli_predict_reports_the_checks(scene, tmp_path, capsys):
    pair = unrectify(scene["left"], scene["right"], focal=W, baseline=0.1, rotation_deg=(1.0, 0.5, 1.0), dy_px=4)
    left, right = _save(tmp_path, pair.left, pair.right)
    out = tmp_path / "pred"
    assert main(["stereo", "predict", str(left), str(right), "--method", "sgbm", "--max-disp", "64",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "warning: the pair is not rectified" in printed
    report = json.loads((out / "left_checks.json").read_text())
    assert report["checks"]["median_abs_dy"] > 1.5 and report["rectification"] is None
    # a rectified pair, swapped: one line on stderr, exit status 2, nothing written
    left, right = _save(tmp_path, scene["left"], scene["right"])
    out2 = tmp_path / "pred2"
    assert main(["stereo", "predict", str(right), str(left), "--method", "sgbm", "--out", str(out2)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the views look swapped") and err.count("\n") == 1 and "--swap" in err
    assert not out2.exists()
    # with --swap: passes silently
    assert main(["stereo", "predict", str(right), str(left), "--swap", "--method", "sgbm", "--out", str(out2)]) == 0
    printed = capsys.readouterr().out
    assert "warning" not in printed and "views swapped (--swap)" in printed
    assert json.loads((out2 / "right_checks.json").read_text())["checks"]["warnings"] == []
    # --no-checks skips them
    assert main(["stereo", "predict", str(right), str(left), "--no-checks", "--method", "sgbm",
                 "--out", str(out2)]) == 0
    assert json.loads((out2 / "right_checks.json").read_text())["checks"] is None


def test_a_calibration_that_does_not_fit_says_so(scene):
    from vislab.stereo.camera.calibfiles import RigCalibration
    from vislab.stereo.camera.rectify import calibrated_rectifier

    pair = unrectify(scene["left"], scene["right"], focal=W, baseline=0.1, rotation_deg=(1.0, 0.5, 1.0), dy_px=4)
    c = pair.calibration
    wrong = RigCalibration(c.k1, c.d1, c.k1, c.d2, np.eye(3), c.t, c.width, c.height)  # as if not turned
    assert "rectify it" in prepare_pair(pair.left, pair.right).checks.warnings[0]
    misfit = prepare_pair(pair.left, pair.right, rectifier=calibrated_rectifier(wrong, W, H))
    assert "the calibration does not fit these images" in misfit.checks.warnings[0]
