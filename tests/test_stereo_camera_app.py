"""The app's Stereo tab on a pair of your own (issue 27): the input checks' findings in the status and the
JSON, the automatic rectification, and swapped views as a one-line error in the page's words."""

import numpy as np
import pytest
from PIL import Image

from vislab.app.stereo_tab import ExampleRegistry, run_stereo
from vislab.core.errors import VislabError
from vislab.stereo.camera.synthetic_rig import unrectify
from vislab.stereo.datasets.synthetic import render_scene

H, W = 192, 288


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    scene = render_scene(5, H, W, 48, style="real")
    pair = unrectify(scene["left"], scene["right"], focal=float(W), baseline=0.1, rotation_deg=(1.5, 0.5, 2.0),
                     dy_px=6)
    root = tmp_path_factory.mktemp("app")
    out = {}
    for name, img in (("left", scene["left"]), ("right", scene["right"]), ("uleft", pair.left),
                      ("uright", pair.right)):
        out[name] = root / f"{name}.png"
        Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)).save(out[name])
    return out


@pytest.fixture
def fast_psmnet(monkeypatch):
    """PSMNet replaced by SGBM: these tests are about what happens before the matcher runs."""
    import vislab.stereo.predict as predict_module

    real = predict_module.predict_disparity

    def sgbm_instead(left, right, **kwargs):
        result = real(left, right, method="sgbm", max_disp=64)
        return predict_module.StereoPrediction(result.disparity, np.ones_like(result.disparity), result.seconds,
                                               {**result.info, "max_disp": 64})

    monkeypatch.setattr(predict_module, "predict_disparity", sgbm_instead)


def test_uploaded_pairs_are_checked_and_rectified_on_request(files, fast_psmnet):
    ok = run_stereo(files["left"], files["right"], registry=ExampleRegistry(), device="cpu")
    assert "Input checks: the pair looks rectified" in ok.status and ok.data["input"]["checks"]["warnings"] == []
    bad = run_stereo(files["uleft"], files["uright"], registry=ExampleRegistry(), device="cpu")
    assert "the pair is not rectified" in bad.status and "'Rectify automatically'" in bad.status
    fixed = run_stereo(files["uleft"], files["uright"], registry=ExampleRegistry(), device="cpu", rectify="auto")
    assert "rectified automatically" in fixed.status and fixed.data["input"]["relative_disparity"] is True
    assert fixed.data["input"]["checks"]["warnings"] == []
    with pytest.raises(VislabError, match="tick 'Swap the views'"):
        run_stereo(files["right"], files["left"], registry=ExampleRegistry(), device="cpu")
    swapped = run_stereo(files["right"], files["left"], registry=ExampleRegistry(), device="cpu", swap=True)
    assert swapped.data["input"]["swapped"] is True


def test_an_uploaded_pair_with_its_calibration_gets_metric_depth(files, fast_psmnet, tmp_path):
    from vislab.stereo.camera.calibfiles import write_opencv_calibration

    scene = render_scene(5, H, W, 48, style="real")
    pair = unrectify(scene["left"], scene["right"], focal=float(W), baseline=0.1, rotation_deg=(1.5, 0.5, 2.0),
                     dy_px=6)
    calib = write_opencv_calibration(tmp_path / "rig.yaml", pair.calibration)
    out = run_stereo(files["uleft"], files["uright"], registry=ExampleRegistry(), device="cpu", calib=[str(calib)])
    assert "rectified from the calibration" in out.status and out.depth is not None
    assert out.data["input"]["camera"]["unit"] == "m" and out.data["input"]["checks"]["warnings"] == []
    bad = tmp_path / "bad.yaml"
    bad.write_text("%YAML:1.0\nK1: [1, 2")
    with pytest.raises(VislabError, match="bad calibration"):
        run_stereo(files["uleft"], files["uright"], registry=ExampleRegistry(), device="cpu", calib=[str(bad)])


def test_the_page_builds_with_the_calibration_upload():
    from vislab.app.server import build_app

    demo = build_app()
    assert any(getattr(block, "elem_id", None) == "stereo-calib" for block in demo.blocks.values())
