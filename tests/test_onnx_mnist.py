"""``vislab mnist export`` and ``vislab mnist predict --onnx``: parity with PyTorch, dynamic batch, errors."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vislab.cli import main
from vislab.core.checkpoint import save_atomic
from vislab.core.errors import VislabError
from vislab.mnist.data import load_mnist, normalize
from vislab.mnist.models import create_model

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from vislab.mnist.export import MnistOnnx, export_mnist  # noqa: E402 -- after the importorskip


def save_random_mnist(path: Path, name: str = "cnn") -> Path:
    """A seeded random-weights MNIST model in vislab's checkpoint format."""
    torch.manual_seed(0)
    model = create_model(name)
    return save_atomic({"task": "mnist", "model": model.state_dict(), "model_name": name, "model_kwargs": {}}, path)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("mnist_onnx")
    out = {}
    for name in ("cnn", "resnet"):  # no BN / BN folded by the exporter
        ckpt = save_random_mnist(tmp / f"{name}.pt", name)
        export_mnist(ckpt, tmp / f"{name}.onnx")
        out[name], out[f"{name}.pt"] = tmp / f"{name}.onnx", ckpt
    return out


@pytest.fixture(scope="module")
def test_images() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_mnist(None, "test")
    return images[:300], labels[:300]


@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_log_probs_match_pytorch_for_any_batch_size(exported, test_images, name):
    from vislab.mnist.models import load_mnist_model

    model, _ = load_mnist_model(exported[f"{name}.pt"])
    runner = MnistOnnx(exported[name], "cpu")
    images = test_images[0]
    for batch in (1, 7, 300):  # the batch axis is dynamic
        with torch.no_grad():
            ref = model(normalize(images[:batch])).numpy()
        # The graph takes [0, 1] images: the (x - MEAN) / STD normalisation is inside it.
        got = runner.log_probs(images[:batch].float().div(255).unsqueeze(1).numpy())
        assert got.shape == (batch, 10) and got.dtype == np.float32
        assert np.abs(got - ref).max() <= 1e-5
        assert (got.argmax(1) == ref.argmax(1)).all()
        np.testing.assert_allclose(np.exp(got).sum(1), 1.0, atol=1e-5)  # log-probabilities, not logits


def test_file_is_checked_opset_17_with_vislab_metadata(exported):
    model = onnx.load(str(exported["cnn"]))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["vislab_task"] == "mnist" and meta["vislab_model"] == "cnn"
    assert [i.name for i in model.graph.input] == ["image"] and [o.name for o in model.graph.output] == ["log_probs"]
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # symbolic: any batch size


def test_cli_export_then_predict_onnx_prints_what_the_checkpoint_prints(exported, tmp_path, test_images, capsys):
    from PIL import Image

    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"d{i}.png"))
        Image.fromarray(test_images[0][i].numpy()).save(paths[-1])
    ckpt, out = str(exported["cnn.pt"]), str(tmp_path / "cli.onnx")
    assert main(["mnist", "export", ckpt, out, "--opset", "18"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["mnist", "predict", ckpt, *paths]) == 0
    with_torch = capsys.readouterr().out
    assert main(["mnist", "predict", "--onnx", out, *paths]) == 0
    assert capsys.readouterr().out == with_torch
    assert main(["mnist", "predict", "--onnx", out, paths[0]]) == 0  # one image: no CHECKPOINT slot to fill
    assert capsys.readouterr().out == with_torch.splitlines(keepends=True)[0]


def _one_line_error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    return err


def test_errors_are_one_line(exported, tmp_path, capsys):
    from test_stereo_eval_predict import save_random_basic32

    stereo_ckpt = save_random_basic32(tmp_path / "stereo.pt")
    assert "not a vislab MNIST checkpoint" in _one_line_error(["mnist", "export", str(stereo_ckpt),
                                                                str(tmp_path / "x.onnx")], capsys)
    assert not (tmp_path / "x.onnx").exists()
    assert "--opset must be between 17" in _one_line_error(["mnist", "export", str(exported["cnn.pt"]),
                                                             str(tmp_path / "x.onnx"), "--opset", "13"], capsys)
    assert "ONNX model not found" in _one_line_error(["mnist", "predict", "--onnx", str(tmp_path / "no.onnx"),
                                                      "a.png"], capsys)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf")
    assert "cannot load ONNX model" in _one_line_error(["mnist", "predict", "--onnx", str(junk), "a.png"], capsys)
    assert "give CHECKPOINT IMAGE" in _one_line_error(["mnist", "predict", "a.png"], capsys)


def test_stereo_graph_is_refused(exported, tmp_path):
    from vislab.core.onnx import export_module

    path = export_module(torch.nn.Identity(), (torch.zeros(1, 3),), tmp_path / "s.onnx", input_names=["x"],
                         output_names=["y"], dynamic_axes={}, metadata={"task": "stereo"})
    with pytest.raises(VislabError, match="not a vislab mnist ONNX model .a vislab stereo model."):
        MnistOnnx(path)
    with pytest.raises(VislabError, match="takes .N, 1, 28, 28. images"):
        MnistOnnx(exported["cnn"]).log_probs(np.zeros((2, 3, 28, 28), np.float32))


@pytest.mark.parametrize("package", ["onnx", "onnxruntime"])
def test_missing_packages_say_how_to_install(exported, tmp_path, monkeypatch, capsys, package):
    monkeypatch.setitem(sys.modules, package, None)  # import now raises ImportError
    err = _one_line_error(["mnist", "export", str(exported["cnn.pt"]), str(tmp_path / "x.onnx")], capsys)
    assert f"the {package!r} package" in err and "pip install 'vislab[onnx]'" in err
    if package == "onnxruntime":
        err = _one_line_error(["mnist", "predict", "--onnx", str(exported["cnn"]), "a.png"], capsys)
        assert "pip install 'vislab[onnx]'" in err
