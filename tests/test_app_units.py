"""The functions behind the app's tabs, without a server: the typed digit API, the Digits and Stereo tabs."""

import math
import os

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from vislab.app import digits, stereo_tab
from vislab.app.stereo_tab import (
    ExampleRegistry,
    StereoExample,
    read_upload,
    reduce_for_cpu,
    run_stereo,
    stream_stereo,
)
from vislab.core.errors import VislabError
from vislab.mnist.data import load_mnist
from vislab.mnist.models import load_mnist_model
from vislab.mnist.predict import DigitResult, predict_digit
from vislab.mnist.pretrained import checkpoint_path, export_weights, shipped_checkpoints
from vislab.stereo.datasets.synthetic import render_scene


def drawn_one(size: int = 280) -> np.ndarray:
    """A "1" as the sketchpad sends it: black ink on a transparent RGBA canvas."""
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    ImageDraw.Draw(img).line([(0.53 * size, 0.15 * size), (0.49 * size, 0.85 * size)], fill=(0, 0, 0, 255),
                             width=size // 14)
    return np.asarray(img)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A small synthetic pair saved as PNG files, with its scene (ground truth)."""
    scene = render_scene(5, 64, 96, max_disp=24)
    folder = tmp_path_factory.mktemp("pair")
    paths = []
    for view in ("left", "right"):
        path = folder / f"{view}.png"
        Image.fromarray(stereo_tab.to_uint8(scene[view])).save(path)
        paths.append(path)
    return paths[0], paths[1], scene


# ------------------------------------------------------------------------------------------------- digits

def test_both_models_ship_and_load():
    assert [p.name for p in shipped_checkpoints()] == ["mnist_mlp.pt", "mnist_cnn.pt"]
    for name in ("mlp", "cnn"):
        model, ckpt = load_mnist_model(checkpoint_path(name))
        assert ckpt["model_name"] == name and "optimizer" not in ckpt and "rng" not in ckpt
        assert checkpoint_path(name).stat().st_size < 256 * 1024  # small enough for the package


def test_shipped_models_read_real_test_digits():
    """A sanity check of the shipped files (the model card's full test accuracy comes from `vislab mnist eval`)."""
    images, labels = load_mnist(None, "test")
    for result_index, name in enumerate(("mlp", "cnn")):
        right = sum(predict_digit(images[i].numpy())[result_index].digit == int(labels[i]) for i in range(20))
        assert right >= 19, name


def test_predict_digit_returns_each_model_with_probabilities_and_the_image_seen():
    results = predict_digit(drawn_one(), device="cpu")
    assert [r.model for r in results] == ["mlp", "cnn"]
    for r in results:
        assert isinstance(r, DigitResult) and len(r.probabilities) == 10
        assert math.isclose(sum(r.probabilities), 1.0, abs_tol=1e-4) and r.digit == int(np.argmax(r.probabilities))
        assert r.image.shape == (28, 28) and r.image.dtype == np.float32 and r.image.max() == pytest.approx(1.0)
    assert results[1].digit == 1  # the shipped cnn reads a drawn 1


def test_predict_digit_takes_paths_pil_images_and_given_checkpoints(tmp_path):
    path = tmp_path / "one.png"
    Image.fromarray(drawn_one()).save(path)
    by_path = predict_digit(path, checkpoints=[checkpoint_path("cnn")])
    by_pil = predict_digit(Image.open(path), checkpoints=[checkpoint_path("cnn")])
    assert len(by_path) == 1 and by_path[0].probabilities == pytest.approx(by_pil[0].probabilities)


def test_predict_digit_errors_are_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(VislabError, match="cannot read image .*notes.txt"):
        predict_digit(tmp_path / "notes.txt")
    with pytest.raises(VislabError, match="checkpoint not found"):
        predict_digit(drawn_one(), checkpoints=[tmp_path / "missing.pt"])
    with pytest.raises(VislabError, match="looks empty"):
        predict_digit(np.full((50, 50), 255, np.uint8))


def test_export_weights_keeps_inference_keys_only(tmp_path):
    ckpt = torch.load(checkpoint_path("cnn"), weights_only=True)
    full = {**ckpt, "optimizer": {"state": {}}, "rng": {"torch": torch.zeros(3)}}
    torch.save(full, tmp_path / "full.pt")
    out = torch.load(export_weights(tmp_path / "full.pt", tmp_path / "small.pt"), weights_only=True)
    assert set(out) == set(ckpt) and "optimizer" not in out
    with pytest.raises(VislabError):
        export_weights(tmp_path / "missing.pt", tmp_path / "x.pt")


def test_read_digit_uses_the_drawing_or_the_photo(tmp_path):
    out = digits.read_digit({"background": None, "layers": [], "composite": drawn_one()}, None)
    assert out.data["source"] == "drawing" and "cnn reads 1" in out.status
    assert out.seen.shape == (28 * digits.SEEN_ZOOM,) * 2 and out.seen.dtype == np.uint8
    assert len(out.labels) == 2 and set(out.labels[1]) == {str(d) for d in range(10)}
    assert [m["model"] for m in out.data["models"]] == ["mlp", "cnn"] and out.data["models"][1]["digit"] == 1
    photo = tmp_path / "photo.png"
    Image.alpha_composite(Image.new("RGBA", (280, 280), "white"), Image.fromarray(drawn_one())).save(photo)
    blank = {"background": None, "layers": [], "composite": np.zeros((280, 280, 4), np.uint8)}
    assert digits.read_digit(blank, str(photo)).data["source"] == "photo"  # the photo wins over the canvas


@pytest.mark.parametrize("sketch, message", [
    (None, "nothing to read"),
    ({"background": None, "layers": [], "composite": None}, "nothing to read"),
    ({"background": None, "layers": [], "composite": np.zeros((280, 280, 4), np.uint8)}, "drawing is empty"),
])
def test_read_digit_without_a_digit_says_so(sketch, message):
    with pytest.raises(VislabError, match=message):
        digits.read_digit(sketch, None)


def test_bad_photos_are_refused_with_a_reason(tmp_path, monkeypatch):
    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(VislabError, match="notes.png is not an image this page can read"):
        digits.read_digit(None, str(tmp_path / "notes.png"))
    Image.fromarray(drawn_one()).save(tmp_path / "big.png")
    monkeypatch.setattr(digits, "MAX_DIGIT_PIXELS", 1000)
    with pytest.raises(VislabError, match="280x280 pixels, more than this page reads"):
        digits.read_digit(None, str(tmp_path / "big.png"))


def test_enlarge_keeps_square_pixels():
    seen = np.zeros((28, 28), np.float32)
    seen[3, 5] = 1.0
    big = digits.enlarge(seen, zoom=4)
    assert big.shape == (112, 112) and big[12:16, 20:24].min() == 255 and big.sum() == 255 * 16


# ------------------------------------------------------------------------------------------------- stereo

def test_read_upload_errors(tmp_path, pair, monkeypatch):
    left_path = pair[0]
    assert read_upload(left_path, "left image").dtype == np.uint8
    with pytest.raises(VislabError, match="no left image"):
        read_upload(None, "left image")
    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(VislabError, match=r"the left image \(notes.png\) is not an image"):
        read_upload(tmp_path / "notes.png", "left image")
    data = left_path.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])  # a truncated download
    with pytest.raises(VislabError, match="cut.png"):
        read_upload(tmp_path / "cut.png", "right image")
    monkeypatch.setattr(stereo_tab, "MAX_UPLOAD_PIXELS", 1000)
    with pytest.raises(VislabError, match="96x64 pixels, more than this page reads"):
        read_upload(left_path, "left image")


def test_sixteen_bit_uploads_keep_their_range(tmp_path):
    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    rgb = read_upload(tmp_path / "deep.png", "left image")
    assert rgb.shape == (64, 64, 3) and rgb.max() == 255 and len(np.unique(rgb)) > 200


def test_reduce_for_cpu_shrinks_whole_images_with_gt_and_camera():
    from vislab.stereo import Camera

    left = np.zeros((400, 600, 3), np.uint8)
    gt = np.full((400, 600), 30.0, np.float32)
    gt[0, 0] = np.nan
    camera = Camera(focal=1000.0, baseline=100.0, doffs=20.0, cx=300.0, cy=200.0)
    small_l, small_r, small_gt, small_cam, scale = reduce_for_cpu(left, left, gt, camera, 60_000)
    assert small_l.shape == (200, 300, 3) and small_r.shape == small_l.shape and scale == pytest.approx(0.5)
    assert small_gt.shape == (200, 300) and np.isnan(small_gt[0, 0]) and np.nanmax(small_gt) == pytest.approx(15)
    assert (small_cam.focal, small_cam.doffs, small_cam.cx, small_cam.cy) == (500, 10, 150, 100)
    # Depth is unchanged by the reduction: f' B / (d' + doffs') = f B / (d + doffs).
    assert small_cam.focal * 100 / (15 + small_cam.doffs) == pytest.approx(1000 * 100 / (30 + 20))
    same = reduce_for_cpu(left, left, gt, camera, 10**6)
    assert same[0] is left and same[4] == 1.0


def test_registry_recognises_examples_by_their_pixels():
    registry = ExampleRegistry(capacity=2)
    a = np.zeros((4, 4, 3), np.uint8)
    examples = [StereoExample(f"e{i}", a + i, a + i) for i in range(3)]
    for example in examples:
        registry.remember(example)
    assert registry.lookup(a + 2, a + 2).name == "e2" and registry.lookup(a, a) is None  # the oldest left
    assert registry.lookup(a + 2, a + 1) is None


def test_run_stereo_on_an_upload_has_no_error_maps(pair):
    out = run_stereo(pair[0], pair[1], registry=ExampleRegistry(), device="cpu")
    assert out.psmnet.shape == out.sgbm.shape == (64, 96, 3) and out.confidence.shape == (64, 96, 3)
    assert out.depth is None and out.psmnet_error is None and out.sgbm_error is None
    assert "uploaded pair" in out.status and "No ground truth" in out.status
    assert out.data["psmnet"]["seconds"] > 0 and out.data["sgbm"]["seconds"] > 0 and out.data["scale"] == 1.0


def test_run_stereo_reports_its_progress_in_order(pair):
    steps = []
    run_stereo(pair[0], pair[1], device="cpu", progress=lambda share, what: steps.append((share, what)))
    shares = [share for share, _ in steps]
    assert shares == sorted(shares) and shares[0] == 0.0 and len(steps) >= 4
    assert any("PSMNet" in what for _, what in steps) and any("SGBM" in what for _, what in steps)


def test_stream_stereo_shows_psmnet_first_then_everything(pair):
    registry = ExampleRegistry()
    first, last = stream_stereo(pair[0], pair[1], registry=registry, device="cpu")
    assert first.data["final"] is False and last.data["final"] is True
    assert first.sgbm is None and "sgbm" not in first.data and "first answer" in first.status
    assert first.psmnet.shape == first.confidence.shape == (64, 96, 3)
    assert first.data["psmnet"]["model"]["lr_check"] == 0.0 and last.data["psmnet"]["model"]["lr_check"] == 2.0
    assert last.sgbm.shape == (64, 96, 3) and "first answer" not in last.status
    np.testing.assert_array_equal(last.psmnet, run_stereo(pair[0], pair[1], registry=registry, device="cpu").psmnet)


def test_image_files_are_written_once_and_bounded(tmp_path):
    from vislab.app.uploads import ImageFiles

    files = ImageFiles(keep=2)
    try:
        image = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
        first = files.png(image)
        mtime = os.stat(first).st_mtime_ns
        assert files.png(image.copy()) == first and os.stat(first).st_mtime_ns == mtime  # never rewritten
        np.testing.assert_array_equal(np.asarray(Image.open(first)), image)
        assert files.png(None) is None
        others = [files.png(np.full((4, 4), v, np.uint8)) for v in (1, 2)]
        assert not os.path.exists(first) and all(os.path.exists(p) for p in others)  # only the newest 2 kept
        assert not [n for n in os.listdir(files.folder) if n.endswith(".part")]
    finally:
        files.close()
    assert not os.path.exists(files.folder)


def test_run_stereo_on_a_known_example_scores_it(pair):
    left_path, right_path, scene = pair
    registry = ExampleRegistry()
    registry.remember(StereoExample("my scene", read_upload(left_path, "l"), read_upload(right_path, "r"),
                                    scene["disp"], None))
    out = run_stereo(left_path, right_path, registry=registry, device="cpu")
    assert out.psmnet_error.shape == out.sgbm_error.shape == (64, 96, 3)
    assert "my scene" in out.status and "EPE" in out.status
    assert 0 <= out.data["sgbm"]["epe"] < 24 and 0 <= out.data["psmnet"]["d1"] <= 100


def test_run_stereo_reduces_large_pairs_and_says_so(pair):
    out = run_stereo(pair[0], pair[1], device="cpu", max_pixels=1536)
    assert out.psmnet.shape == (32, 48, 3) and out.data["scale"] == pytest.approx(0.5)
    assert "Reduced from 96x64 to 48x32" in out.status and "not a crop" in out.status


def test_run_stereo_refuses_mismatched_and_tiny_pairs(pair, tmp_path):
    Image.open(pair[1]).crop((0, 0, 80, 64)).save(tmp_path / "narrow.png")
    with pytest.raises(VislabError, match="left/right size mismatch: left is 96x64, right is 80x64"):
        run_stereo(pair[0], tmp_path / "narrow.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "tiny.png")
    with pytest.raises(VislabError, match="at least 16x16"):
        run_stereo(tmp_path / "tiny.png", tmp_path / "tiny.png")


def test_bundled_examples():
    registry = ExampleRegistry()
    synthetic = stereo_tab.load_example_pair("synthetic", registry, seed=3)
    assert synthetic.left.shape == (*stereo_tab.SYNTHETIC_SIZE, 3) and synthetic.left.dtype == np.uint8
    assert synthetic.gt.shape == stereo_tab.SYNTHETIC_SIZE and "seed 3" in synthetic.name
    assert registry.lookup(synthetic.left, synthetic.right) is synthetic
    moto = stereo_tab.motorcycle_example()
    assert moto.left.shape == (500, 741, 3) and moto.camera.focal == pytest.approx(994.978)
    with pytest.raises(VislabError, match="unknown example"):
        stereo_tab.load_example_pair("kitti", registry)
