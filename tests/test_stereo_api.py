"""The typed stereo API under the CLI: ``vislab.stereo.predict_disparity`` and the options it shares with the CLI."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_stereo_eval_predict import save_random_basic32

from vislab.core.errors import VislabError
from vislab.stereo import predict as predict_module
from vislab.stereo import predict_disparity
from vislab.stereo.evaluate import build_predictor
from vislab.stereo.predict import as_rgb_image, camera_from_options


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    return save_random_basic32(tmp_path_factory.mktemp("ckpt") / "basic32.pt")


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """A textured 32x64 pair whose right view is the left shifted by 4 px."""
    rng = np.random.default_rng(0)
    left = rng.random((32, 72, 3), dtype=np.float32)
    return np.ascontiguousarray(left[:, 4:68]), np.ascontiguousarray(left[:, 8:72])


def test_psmnet_matches_the_model_called_by_hand(tiny_ckpt, pair):
    from vislab.stereo.models import load_stereo_model
    from vislab.stereo.refine import DEFAULT_LR_CHECK, left_right_fill
    from vislab.stereo.transforms import imagenet_normalize

    model, _ = load_stereo_model(tiny_ckpt)
    left, right = [imagenet_normalize(torch.from_numpy(im.transpose(2, 0, 1))).unsqueeze(0) for im in pair]
    disp, conf = model.infer(left, right, return_confidence=True)

    bare = predict_disparity(*pair, weights=tiny_ckpt, device="cpu", lr_check=0)
    np.testing.assert_allclose(bare.disparity, disp[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(bare.confidence, conf[0].numpy(), atol=1e-6)
    assert bare.disparity.shape == (32, 64) and bare.disparity.dtype == np.float32
    assert bare.info["method"] == "psmnet" and bare.info["max_disp"] == 32 and bare.seconds > 0

    # the left-right check: the right view from the mirrored, swapped pair (here at full size; half: below)
    disp_right, _ = model.infer(right.flip(-1), left.flip(-1), return_confidence=False)
    filled, consistent = left_right_fill(disp, disp_right.flip(-1), DEFAULT_LR_CHECK)
    checked = predict_disparity(*pair, weights=tiny_ckpt, device="cpu", lr_view="full")
    np.testing.assert_allclose(checked.disparity, filled[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(checked.confidence, np.where(consistent[0], conf[0], 0), atol=1e-6)
    assert checked.info["lr_check"] == DEFAULT_LR_CHECK == 2.0 and checked.info["lr_refilled"] == pytest.approx(
        1 - consistent.float().mean().item())
    assert 0 < checked.info["lr_refilled"] < 1  # a random network: some pixels are refilled, not all

    # at half size: the reduced pair over half the range, its disparities doubled (refine.right_view_disparity)
    small = [torch.nn.functional.interpolate(x.flip(-1), size=(16, 32), mode="bilinear", antialias=True,
                                             align_corners=False) for x in (right, left)]
    half_right, _ = model.infer(*small, return_confidence=False, max_disp=16)
    half_right = torch.nn.functional.interpolate(half_right[:, None], size=(32, 64), mode="nearest")[:, 0] * 2
    filled, _ = left_right_fill(disp, half_right.flip(-1), DEFAULT_LR_CHECK)
    halved = predict_disparity(*pair, weights=tiny_ckpt, device="cpu", lr_view="half")
    np.testing.assert_allclose(halved.disparity, filled[0].numpy(), atol=1e-5)


def test_inputs_as_uint8_pil_and_paths_give_the_same_disparity(tiny_ckpt, pair, tmp_path):
    as_uint8 = [np.round(im * 255).astype(np.uint8) for im in pair]
    paths = []
    for name, im in zip(("l.png", "r.png"), as_uint8, strict=True):
        Image.fromarray(im).save(tmp_path / name)
        paths.append(tmp_path / name)
    from_arrays = predict_disparity(*as_uint8, weights=tiny_ckpt).disparity
    from_pil = predict_disparity(*(Image.fromarray(im) for im in as_uint8), weights=tiny_ckpt).disparity
    from_paths = predict_disparity(*paths, weights=tiny_ckpt).disparity
    np.testing.assert_array_equal(from_arrays, from_pil)
    np.testing.assert_array_equal(from_arrays, from_paths)


def test_the_model_is_loaded_once_and_reloaded_when_the_file_changes(tiny_ckpt, pair, tmp_path, monkeypatch):
    calls = []
    real = predict_module.load_model
    monkeypatch.setattr(predict_module, "load_model", lambda *a, **k: calls.append(a) or real(*a, **k))
    ckpt = save_random_basic32(tmp_path / "c.pt")
    predict_disparity(*pair, weights=ckpt)
    predict_disparity(*pair, weights=ckpt)
    assert len(calls) == 1
    first = predict_disparity(*pair, weights=ckpt).disparity
    save_random_basic32(ckpt, last_layer_scale=1e-6)  # same path, new weights: must not serve the stale model
    second = predict_disparity(*pair, weights=ckpt).disparity
    assert len(calls) == 2 and not np.array_equal(first, second)


def test_sgbm_through_the_api(pair):
    result = predict_disparity(*pair, method="sgbm", max_disp=16)
    assert result.confidence is None and result.info == {"method": "sgbm", "max_disp": 16}
    assert abs(float(np.median(result.disparity[:, 20:])) - 4.0) < 0.5


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "census"}, "unknown method 'census'"),
    ({"method": "sgbm", "weights": "x.pt"}, "cannot be combined with --method sgbm"),
    ({"method": "sgbm", "max_disp": 0}, "--max-disp must be positive"),
    ({"max_disp": 30}, "multiple of 4"),
    ({"weights": "/nonexistent/w.pt"}, "/nonexistent/w.pt"),
])
def test_bad_options_are_one_line_errors(pair, kwargs, message):
    with pytest.raises(VislabError, match=message.replace("(", r"\(")):
        predict_disparity(*pair, **kwargs)


def test_bad_images_are_one_line_errors(pair):
    left, right = pair
    with pytest.raises(VislabError, match="size mismatch: left is 64x32, right is 60x32"):
        predict_disparity(left, right[:, :60])
    with pytest.raises(VislabError, match=r"finite values in \[0, 1\]"):
        predict_disparity(left * 255, right)
    with pytest.raises(VislabError, match="shape"):
        as_rgb_image(np.zeros((4, 4, 2)))
    assert as_rgb_image(np.full((2, 3), 65535, np.uint16)).shape == (2, 3, 3)
    assert as_rgb_image(np.zeros((2, 3, 4), np.uint8)).shape == (2, 3, 3)


def test_camera_from_options():
    cam = camera_from_options(64, 32, focal=100.0, baseline=0.5)
    assert (cam.focal, cam.baseline, cam.doffs, cam.cx, cam.cy) == (100.0, 0.5, 0.0, 31.5, 15.5)
    assert camera_from_options(64, 32) is None
    with pytest.raises(VislabError, match="needs both --focal and --baseline"):
        camera_from_options(64, 32, focal=100.0)
    with pytest.raises(VislabError, match="must be positive"):
        camera_from_options(64, 32, focal=100.0, baseline=-1.0)


def test_build_predictor_takes_typed_options(tiny_ckpt, pair):
    fn, config = build_predictor(weights=tiny_ckpt, device="cpu")
    left, right = (torch.from_numpy(im.transpose(2, 0, 1)) for im in pair)
    np.testing.assert_allclose(fn(left, right).numpy(), predict_disparity(*pair, weights=tiny_ckpt).disparity,
                               atol=1e-5)
    assert config["method"] == "psmnet" and config["max_disp"] == 32 and config["device"] == "cpu"


def test_importing_the_stereo_package_does_not_import_torch():
    code = "import sys, vislab.stereo; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_infer_uses_a_sub_module_swapped_in_by_the_user(tiny_ckpt, pair):
    """The lean inference path copies the model: a swapped-in module (a lab student's) must be the one used."""
    from vislab.stereo.models import load_stereo_model
    from vislab.stereo.transforms import imagenet_normalize

    class Mirrored(torch.nn.Module):  # same weights, another forward: only the module's identity changes
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x).flip(-1)

    model, _ = load_stereo_model(tiny_ckpt)
    left, right = (imagenet_normalize(torch.from_numpy(im.transpose(2, 0, 1))).unsqueeze(0) for im in pair)
    before = model.infer(left, right)[0]
    model.feature_extraction = Mirrored(model.feature_extraction)
    after = model.infer(left, right)[0]
    with torch.no_grad():
        reference = model.eval()(left, right)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, reference.reshape(after.shape), atol=1e-3, rtol=0)
