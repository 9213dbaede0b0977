"""``vislab mnist ...`` end to end through ``vislab.cli.main``, on a small IDX copy of the real MNIST data."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vislab.cli import build_parser, main
from vislab.core.checkpoint import save_atomic
from vislab.mnist.data import load_mnist

pytestmark = pytest.mark.usefixtures("one_thread")


def write_idx(path: Path, array: np.ndarray) -> None:
    magic = 0x803 if array.ndim == 3 else 0x801
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes(), compresslevel=1))


@pytest.fixture(scope="module")
def small_data(mnist_dir, tmp_path_factory) -> Path:
    """The first 5,000 training and 500 test images of MNIST, written in the IDX layout."""
    out = tmp_path_factory.mktemp("mnist_small")
    for split, stem, n in (("train", "train", 5000), ("test", "t10k", 500)):
        x, y = load_mnist(mnist_dir, split)
        write_idx(out / f"{stem}-images-idx3-ubyte.gz", x[:n].numpy())
        write_idx(out / f"{stem}-labels-idx1-ubyte.gz", y[:n].numpy())
    return out


@pytest.fixture(scope="module")
def trained(small_data, tmp_path_factory) -> Path:
    """A cnn trained from the command line for 3 epochs on 5,000 images (a few seconds)."""
    run = tmp_path_factory.mktemp("run") / "cnn"
    code = main(["mnist", "train", "--model", "cnn", "--epochs", "3", "--data", str(small_data), "--out", str(run),
                 "--device", "cpu", "--seed", "0", "--batch-size", "64", "--precision", "fp32"])
    assert code == 0
    return run


def test_parser_wires_every_subcommand():
    parser = build_parser()
    for argv in (["mnist", "train", "--model", "vgg"], ["mnist", "eval", "c.pt"], ["mnist", "predict", "c.pt", "a.png"],
                 ["mnist", "summary", "--model", "resnet"], ["mnist", "show"], ["mnist", "download", "dest"]):
        assert callable(parser.parse_args(argv).func)
    args = parser.parse_args(["mnist", "download", "d", "--mirror", "http://a/", "--mirror", "http://b/"])
    assert args.mirror == ["http://a/", "http://b/"] and args.retries == 3 and args.timeout == 30
    args = parser.parse_args(["mnist", "show"])
    assert (args.n, args.split, args.out, args.data) == (10, "train", "mnist_samples.png", None)
    args = parser.parse_args(["mnist", "train", "--model", "cnn", "--no-augment", "--val-size", "5000"])
    assert args.augment is False and args.val_size == 5000 and args.epochs is None


def test_train_from_cli_writes_run(trained):
    config = json.loads((trained / "config.json").read_text())
    assert config["model"] == "cnn" and config["epochs"] == 3 and config["val_size"] == 0
    result = json.loads((trained / "result.json").read_text())
    assert result["test_n"] == 500 and result["test_accuracy"] > 90
    assert {p.name for p in trained.iterdir()} >= {"config.json", "metrics.csv", "curves.png", "last.pt", "best.pt"}


def test_eval_json_and_confusion_matrix(trained, small_data, tmp_path, capsys):
    out = tmp_path / "report.json"
    assert main(["mnist", "eval", str(trained / "last.pt"), "--data", str(small_data), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    for key in ("test_loss", "accuracy", "per_class_accuracy", "confusion_matrix", "n", "model"):
        assert key in report, key
    cm = np.array(report["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == report["n"] == 500 and np.trace(cm) == report["correct"]
    assert report["accuracy"] == json.loads((trained / "result.json").read_text())["test_accuracy"]
    assert len(report["per_class_accuracy"]) == 10
    assert (tmp_path / "report.png").is_file()
    assert "accuracy" in capsys.readouterr().out


def test_eval_needs_only_the_test_files(trained, small_data, tmp_path, capsys):
    import shutil

    test_only = tmp_path / "test_only"
    test_only.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(small_data / name, test_only / name)
    (test_only / "train-labels-idx1-ubyte.gz").write_bytes(b"corrupt")  # never read by eval
    report = tmp_path / "r.json"
    assert main(["mnist", "eval", str(trained / "last.pt"), "--data", str(test_only), "--json", str(report)]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["n"] == 500
    capsys.readouterr()
    # without --json the confusion matrix goes beside the checkpoint, not into the current folder
    assert main(["mnist", "eval", str(trained / "last.pt"), "--data", str(test_only)]) == 0
    assert f"wrote {trained / 'last_confusion.png'}" in capsys.readouterr().out
    assert (trained / "last_confusion.png").is_file()


def test_eval_rejects_a_stereo_checkpoint(tmp_path, capsys):
    save_atomic({"task": "stereo", "model": {"w": torch.zeros(1)}, "max_disp": 192}, tmp_path / "psmnet.pt")
    assert main(["mnist", "eval", str(tmp_path / "psmnet.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "psmnet.pt" in err[0]


def test_predict_real_digits(trained, mnist_dir, tmp_path, capsys):
    x, y = load_mnist(mnist_dir, "test")
    paths = []
    for i in (0, 1, 2, 3):  # 7, 2, 1, 0: the first test digits, saved as ordinary PNGs
        path = tmp_path / f"digit{i}.png"
        Image.fromarray(x[i].numpy()).save(path)
        paths.append(str(path))
    assert main(["mnist", "predict", str(trained / "best.pt"), *paths]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [int(line.split(": ")[1].split()[0]) for line in lines] == y[:4].tolist()


def test_predict_unreadable_image_is_one_line_error(trained, tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_text("this is not an image")
    assert main(["mnist", "predict", str(trained / "last.pt"), str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "broken.png" in err[0]
    assert main(["mnist", "predict", str(trained / "last.pt"), str(tmp_path / "missing.png")]) == 2
    assert "missing.png" in capsys.readouterr().err


def test_summary_prints_lab_table(capsys):
    assert main(["mnist", "summary", "--model", "vgg"]) == 0
    out = capsys.readouterr().out
    assert "(1, 64, 30, 30)" in out and "(1, 512, 1, 1)" in out and "total parameters: 9,281,738" in out
    for bad in ("0", "-3"):
        assert main(["mnist", "summary", "--model", "cnn", "--batch-size", bad]) == 2
        assert "--batch-size must be at least 1" in capsys.readouterr().err


def test_checkpoint_with_foreign_model_kwargs_is_one_line_error(trained, tmp_path, capsys):
    ckpt = torch.load(trained / "last.pt", weights_only=True)
    ckpt["model_kwargs"] = {"width": 3}
    save_atomic(ckpt, tmp_path / "odd.pt")
    assert main(["mnist", "eval", str(tmp_path / "odd.pt")]) == 2
    err = capsys.readouterr().err
    assert "weights do not fit model 'cnn'" in err and err.count("\n") == 1


def test_output_piped_into_a_reader_that_stops_is_not_a_traceback():
    import os
    import subprocess
    import sys

    # stdout is a pipe whose reader has already gone (as after `| head -1`): every write fails with EPIPE.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "vislab", "mnist", "summary", "--model", "vgg"],
                              stdout=write_end, stderr=subprocess.PIPE, timeout=60, check=False)
    finally:
        os.close(write_end)
    stderr = done.stderr.decode()
    assert done.returncode == 141
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    """Ctrl-C inside a command is not an error of the user's: the shell convention 128 + SIGINT, no traceback."""
    import vislab.mnist.summary

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(vislab.mnist.summary, "run_summary", interrupted)  # the handler main() dispatches to
    assert main(["mnist", "summary", "--model", "cnn"]) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_predict_prints_probabilities_and_names_an_empty_image(trained, mnist_dir, tmp_path, capsys):
    from vislab.mnist.predict import predict_images

    x, _ = load_mnist(mnist_dir, "test")
    Image.fromarray(x[7].numpy()).save(tmp_path / "nine.png")  # a 9: the last of the ten probabilities
    pred = predict_images(trained / "best.pt", [str(tmp_path / "nine.png")], "cpu")[0]
    assert pred.digit == 9
    # probabilities (the model's log-probabilities exponentiated), not log-probabilities
    assert min(pred.probabilities) >= 0 and sum(pred.probabilities) == pytest.approx(1.0, abs=1e-4)
    assert main(["mnist", "predict", str(trained / "best.pt"), str(tmp_path / "nine.png")]) == 0
    out = capsys.readouterr().out
    assert f": 9 (p={pred.probabilities[9]:.3f})" in out and f"9:{pred.probabilities[9]:.3f}]" in out
    # an image with no digit: the one-line error names the file, not just the problem
    Image.fromarray(np.full((40, 40), 255, np.uint8)).save(tmp_path / "blank.png")
    assert main(["mnist", "predict", str(trained / "best.pt"), str(tmp_path / "blank.png")]) == 2
    err = capsys.readouterr().err
    assert "blank.png" in err and "empty" in err and err.count("\n") == 1


def test_parser_keeps_fractional_values_and_the_auto_device():
    parser = build_parser()
    # --epochs 1.5 stops halfway through the second pass; --timeout takes seconds with a fraction
    assert parser.parse_args(["mnist", "train", "--model", "cnn", "--epochs", "1.5"]).epochs == 1.5
    assert parser.parse_args(["mnist", "download", "d", "--timeout", "2.5"]).timeout == 2.5
    for argv in (["mnist", "predict", "c.pt", "a.png"], ["mnist", "eval", "c.pt"]):
        assert parser.parse_args(argv).device == "auto"
