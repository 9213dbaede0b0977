"""``--precision auto``: the decision rule, the CPU probe (real timing, RNG untouched) and what a run records."""

import json

import pytest
import torch

from vislab.core.checkpoint import load_checkpoint
from vislab.mnist import precision as precision_mod
from vislab.mnist.data import MnistSplits
from vislab.mnist.evaluate import autocast_context
from vislab.mnist.precision import faster_precision, measure_precisions, resolve_precision
from vislab.mnist.recipes import resolve_config
from vislab.mnist.train import train

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")


def refuse_to_measure(*args, **kwargs):
    raise AssertionError("resolve_precision measured when it should not have")


def test_bf16_must_be_clearly_faster():
    assert faster_precision({"fp32": 1.0, "bf16": 0.5}) == "bf16"
    assert faster_precision({"fp32": 1.0, "bf16": 0.95}) == "fp32"  # within the noise margin
    assert faster_precision({"fp32": 1.0, "bf16": 1.6}) == "fp32"


def test_explicit_precision_is_kept_without_measuring(monkeypatch):
    monkeypatch.setattr(precision_mod, "measure_precisions", refuse_to_measure)
    for p in ("fp32", "bf16"):
        assert resolve_precision(p, CPU, "cnn")[0] == p


def test_cpu_without_native_bf16_is_fp32_without_measuring(monkeypatch):
    monkeypatch.setattr(precision_mod, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(precision_mod, "measure_precisions", refuse_to_measure)
    assert resolve_precision("auto", CPU, "vgg") == ("fp32", "this CPU has no native bf16")


@pytest.mark.parametrize("bf16_seconds, expected", [(0.4, "bf16"), (0.7, "fp32")])
def test_cpu_with_native_bf16_follows_the_measurement(monkeypatch, bf16_seconds, expected):
    monkeypatch.setattr(precision_mod, "cpu_has_native_bf16", lambda: True)
    calls = []

    def fake_measure(name, kwargs, batch_size, device, channels_last=True):
        calls.append((name, batch_size))
        return {"fp32": 0.6, "bf16": bf16_seconds}

    monkeypatch.setattr(precision_mod, "measure_precisions", fake_measure)
    chosen, why = resolve_precision("auto", CPU, "resnet", batch_size=32)
    assert chosen == expected and calls == [("resnet", 32)]
    assert "bf16 400 ms" in why or "bf16 700 ms" in why


def test_probe_times_both_precisions_and_leaves_the_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(4)
    torch.manual_seed(123)
    seconds = measure_precisions("mlp", {}, 16, CPU)
    assert set(seconds) == {"fp32", "bf16"} and all(0 < s < 5 for s in seconds.values())
    assert torch.equal(torch.rand(4), expected_next)


def test_run_records_the_resolved_precision(tmp_path, mnist_dir, monkeypatch):
    from vislab.mnist.data import load_splits

    full = load_splits(mnist_dir, val_size=0)
    small = MnistSplits(full.train_x[:300], full.train_y[:300], None, None, full.test_x[:100], full.test_y[:100])
    monkeypatch.setattr(precision_mod, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision_mod, "measure_precisions", lambda *a, **k: {"fp32": 1.0, "bf16": 0.5})
    lines: list[str] = []
    config = resolve_config("mlp", {"epochs": 1, "batch_size": 100, "device": "cpu", "precision": "auto"})
    train(config, tmp_path / "run", splits=small, log=lines.append)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["precision"] == "bf16"
    assert any(line.startswith("precision auto -> bf16 (measured training step") for line in lines)
    # ... and the run really trained in bf16: the same run in fp32 ends with other weights
    config.precision = "fp32"
    train(config, tmp_path / "fp32", splits=small, log=lines.append)
    bf16_weights = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    fp32_weights = load_checkpoint(tmp_path / "fp32" / "last.pt")["model"]
    assert not torch.equal(bf16_weights["fc1.weight"], fp32_weights["fc1.weight"])
    assert torch.allclose(bf16_weights["fc1.weight"], fp32_weights["fc1.weight"], atol=0.05)  # same run otherwise


def test_autocast_context_computes_in_bf16_only_when_asked():
    layer, x = torch.nn.Linear(4, 3), torch.randn(2, 4)
    with autocast_context(CPU, "bf16"):
        assert layer(x).dtype == torch.bfloat16
    with autocast_context(CPU, "fp32"):
        assert layer(x).dtype == torch.float32


def test_step_time_is_the_fastest_timed_step_after_the_warm_up(monkeypatch):
    from types import SimpleNamespace

    # a fake clock: the warm-up step reads it once (start only), then timed steps of 1 s and 2 s
    ticks = iter([0.0, 10.0, 11.0, 20.0, 22.0])
    monkeypatch.setattr(precision_mod, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10), torch.nn.LogSoftmax(1))
    batch, target = torch.randn(2, 1, 28, 28), torch.tensor([1, 2])
    assert precision_mod.step_seconds(model, batch, target, CPU, "fp32", steps=2) == 1.0


def test_auto_on_a_device_without_bf16_autocast_is_fp32_without_measuring(monkeypatch):
    monkeypatch.setattr(precision_mod, "cpu_has_native_bf16", lambda: True)  # must not be consulted for MPS
    monkeypatch.setattr(precision_mod, "measure_precisions", refuse_to_measure)
    assert resolve_precision("auto", torch.device("mps"), "cnn") == ("fp32", "no bf16 autocast on mps")
