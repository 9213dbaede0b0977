"""The MNIST training loop on small subsets of the real data: run files, exact resume, NaN stop, evaluation."""

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import vislab.mnist.train as train_module
from vislab.core.checkpoint import load_checkpoint
from vislab.core.errors import VislabError
from vislab.core.logging import read_metrics_csv
from vislab.mnist.data import MnistSplits, load_splits
from vislab.mnist.evaluate import EvalResult, confusion_matrix, evaluate, evaluate_checkpoint, per_class_accuracy
from vislab.mnist.models import create_model, load_mnist_model
from vislab.mnist.recipes import RECIPES, TrainConfig, resolve_config
from vislab.mnist.train import build_optimizer, build_scheduler, train, training_loss

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def full(mnist_dir) -> MnistSplits:
    return load_splits(mnist_dir, val_size=0)


@pytest.fixture(scope="module")
def small(full) -> MnistSplits:
    """2,000 training and 500 test images of the real data, validation on the test part (val_size 0)."""
    return subset(full, 2000, 500)


def subset(splits: MnistSplits, n_train: int, n_test: int = 100) -> MnistSplits:
    """The first ``n_train`` training and ``n_test`` test images of ``splits``, validating on the test part."""
    return MnistSplits(splits.train_x[:n_train], splits.train_y[:n_train], None, None,
                       splits.test_x[:n_test], splits.test_y[:n_test])


def quiet(_: str) -> None:
    pass


def mlp_config(**kw) -> TrainConfig:
    """A real test of resuming: shuffling, augmentation and dropout all draw random numbers."""
    base = dict(epochs=2, batch_size=100, optimizer="adamw", lr=3e-3, schedule="onecycle", augment=True,
                device="cpu", seed=3)
    return resolve_config("mlp", {**base, **kw})


class StopAfter:
    """A log function that raises KeyboardInterrupt (a Ctrl-C) right after epoch ``n`` has been logged."""

    def __init__(self, n: int):
        self.n = n

    def __call__(self, line: str) -> None:
        if line.startswith(f"epoch {self.n}/"):
            raise KeyboardInterrupt


def test_recipes_resolve_and_flags_override():
    for name in ("mlp", "cnn", "vgg", "resnet"):
        assert resolve_config(name).model == name
    cfg = resolve_config("cnn", {"epochs": 7, "lr": None, "augment": True})
    assert cfg.epochs == 7 and cfg.lr == RECIPES["cnn"]["lr"] and cfg.augment
    with pytest.raises(VislabError, match="unknown optimizer"):
        resolve_config("cnn", {"optimizer": "lbfgs"})
    with pytest.raises(VislabError, match="--augment-strength must be 0 or more"):
        resolve_config("mlp", {"augment_strength": -1.0})
    with pytest.raises(VislabError, match="--batch-size must be at least 1"):
        resolve_config("cnn", {"batch_size": 0})


def test_tiny_run_writes_run_folder(tmp_path, small):
    result = train(mlp_config(), tmp_path / "run", splits=small, log=quiet)
    run = tmp_path / "run"
    for name in ("config.json", "metrics.csv", "curves.png", "last.pt", "best.pt", "result.json"):
        assert (run / name).is_file(), name
    assert json.loads((run / "config.json").read_text())["model"] == "mlp"
    with (run / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[1]["val_loss"]) < float(rows[0]["val_loss"])
    assert result["test_n"] == 500 and result["test_accuracy"] > 50  # 2 epochs on 2k images: far above chance (10%)

    # weights_only=True loading (load_checkpoint) of a complete training state
    ckpt = load_checkpoint(run / "last.pt")
    for key in ("model", "model_name", "model_kwargs", "config", "epoch", "optimizer", "scheduler", "generators",
                "rng", "best_acc", "metrics"):
        assert key in ckpt, key
    assert ckpt["task"] == "mnist" and ckpt["epoch"] == 2 and len(ckpt["metrics"]) == 2
    assert ckpt["best_acc"] == max(m["val_acc"] for m in ckpt["metrics"])
    best = load_checkpoint(run / "best.pt")
    assert best["metrics"][-1]["val_acc"] == ckpt["best_acc"]

    # the run folder is protected against accidental reuse
    with pytest.raises(VislabError, match="already holds a run"):
        train(mlp_config(), run, splits=small, log=quiet)


def test_interrupted_and_resumed_run_matches_uninterrupted(tmp_path, small):
    train(mlp_config(), tmp_path / "straight", splits=small, log=quiet)
    with pytest.raises(KeyboardInterrupt):
        train(mlp_config(), tmp_path / "stopped", splits=small, log=StopAfter(1))
    assert load_checkpoint(tmp_path / "stopped" / "last.pt")["epoch"] == 1
    with pytest.raises(VislabError, match="holds a 'mlp' run"):
        train(resolve_config("cnn", {"device": "cpu"}), tmp_path / "stopped", resume=True, splits=small, log=quiet)
    # Disturb the global RNG as a new process would have it: resuming must restore it.
    torch.manual_seed(12345)
    train(mlp_config(), tmp_path / "stopped", resume=True, splits=small, log=quiet)

    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "stopped" / "last.pt")
    assert a["epoch"] == b["epoch"] == 2
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["metrics"][-1]["val_acc"] == b["metrics"][-1]["val_acc"]
    lines = (tmp_path / "stopped" / "metrics.csv").read_text().splitlines()
    assert len(lines) == 3  # header + one row per epoch, nothing duplicated


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, small):
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(mlp_config(augment=False), run, splits=small, log=StopAfter(1))
    good = (run / "last.pt").read_bytes()
    poisoned_x = small.train_x.clone()
    poisoned_x[:] = float("nan")
    poisoned = MnistSplits(poisoned_x, small.train_y, None, None, small.test_x, small.test_y)
    with pytest.raises(VislabError, match="training loss became nan in epoch 2"):
        train(mlp_config(augment=False), run, resume=True, splits=poisoned, log=quiet)
    assert (run / "last.pt").read_bytes() == good


def test_evaluate_and_confusion_matrix(small):
    torch.manual_seed(0)
    from vislab.mnist.models import create_model

    model = create_model("cnn")
    result = evaluate(model, small.test_x, small.test_y, batch_size=128)
    assert result.n == 500 and len(result.predictions) == 500
    assert result.correct == int((result.predictions == small.test_y).sum())
    cm = confusion_matrix(small.test_y, result.predictions)
    assert cm.shape == (10, 10) and int(cm.sum()) == 500 and int(cm.trace()) == result.correct
    cm_hand = torch.tensor([[3, 1], [0, 2]])
    assert confusion_matrix(torch.tensor([0, 0, 0, 0, 1, 1]), torch.tensor([0, 0, 1, 0, 1, 1]), 2).equal(cm_hand)
    assert per_class_accuracy(cm_hand) == [75.0, 100.0]


def test_checkpoint_reloads_to_same_predictions(tmp_path, small):
    train(mlp_config(epochs=1), tmp_path / "run", splits=small, log=quiet)
    model, ckpt = load_mnist_model(Path(tmp_path / "run" / "last.pt"))
    result = evaluate(model, small.test_x, small.test_y)
    assert result.accuracy == ckpt["metrics"][-1]["val_acc"]


def test_fractional_epochs_stop_the_last_pass_early_and_resume_exactly(tmp_path, small):
    # 2,000 images at batch 100: 20 steps per pass, so 1.5 epochs are 30 optimizer steps in all.
    config = dict(epochs=1.5, augment=False)
    train(mlp_config(**config), tmp_path / "straight", splits=small, log=quiet)
    ckpt = load_checkpoint(tmp_path / "straight" / "last.pt")
    assert [m["epoch"] for m in ckpt["metrics"]] == [1, 1.5]
    assert all(int(s["step"]) == 30 for s in ckpt["optimizer"]["state"].values())
    assert ckpt["scheduler"]["last_epoch"] == 30  # the onecycle schedule ran to its end, not past it
    rows = list(csv.DictReader((tmp_path / "straight" / "metrics.csv").open()))
    assert [float(r["epoch"]) for r in rows] == [1.0, 1.5]

    with pytest.raises(KeyboardInterrupt):
        train(mlp_config(**config), tmp_path / "stopped", splits=small, log=StopAfter(1))
    train(mlp_config(**config), tmp_path / "stopped", resume=True, splits=small, log=quiet)
    resumed = load_checkpoint(tmp_path / "stopped" / "last.pt")
    for key, value in ckpt["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    with pytest.raises(VislabError, match="--epochs must be positive"):
        resolve_config("cnn", {"epochs": 0})


def test_label_smoothing_loss_is_cross_entropy_against_smoothed_targets():
    torch.manual_seed(0)
    logits, target = torch.randn(8, 10), torch.randint(0, 10, (8,))
    log_probs = logits.log_softmax(dim=1)
    smoothed = torch.full((8, 10), 0.1 / 10).scatter_(1, target[:, None], 1 - 0.1 + 0.1 / 10)
    expected = -(smoothed * log_probs).sum(dim=1).mean()
    assert torch.allclose(training_loss(log_probs, target, 0.1), expected)
    assert torch.equal(training_loss(log_probs, target), torch.nn.functional.nll_loss(log_probs, target))
    with pytest.raises(VislabError, match="--label-smoothing"):
        resolve_config("cnn", {"label_smoothing": 1.0})


def test_label_smoothing_reaches_the_training_loop(tmp_path, small):
    train(mlp_config(epochs=1, augment=False), tmp_path / "plain", splits=small, log=quiet)
    train(mlp_config(epochs=1, augment=False, label_smoothing=0.2), tmp_path / "smooth", splits=small, log=quiet)
    plain, smooth = (read_metrics_csv(tmp_path / run / "metrics.csv")[-1]["train_loss"] for run in ("plain", "smooth"))
    # Smoothed targets put 20% of the target mass on the wrong classes: a higher loss (measured 2.00 vs 1.87
    # after these 20 steps) and other updates from the first step on.
    assert smooth > plain + 0.05
    a, b = (load_checkpoint(tmp_path / run / "last.pt")["model"] for run in ("plain", "smooth"))
    assert not torch.equal(a["fc1.weight"], b["fc1.weight"])


def test_muon_run_learns_and_resumes_exactly(tmp_path, small):
    config = dict(optimizer="muon", muon_lr=0.02, label_smoothing=0.1, augment=False)
    result = train(mlp_config(**config), tmp_path / "straight", splits=small, log=quiet)
    assert result["test_accuracy"] > 50  # 2 epochs on 2k images: far above chance (10%)
    with pytest.raises(KeyboardInterrupt):
        train(mlp_config(**config), tmp_path / "stopped", splits=small, log=StopAfter(1))
    torch.manual_seed(12345)
    train(mlp_config(**config), tmp_path / "stopped", resume=True, splits=small, log=quiet)
    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "stopped" / "last.pt")
    assert [g["muon"] for g in a["optimizer"]["param_groups"]] == [True, False]
    # metrics.csv's lr is --lr's group (AdamW) at the start of each epoch: onecycle starts at peak / 25
    assert read_metrics_csv(tmp_path / "straight" / "metrics.csv")[0]["lr"] == pytest.approx(3e-3 / 25)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


# --- what the mutation audit found untested -----------------------------------------------------------------


@pytest.mark.parametrize("flag, value, message", [
    ("lr", 0.0, "--lr must be positive"),
    ("muon_lr", 0.0, "--muon-lr must be positive"),
    ("schedule", "linear", "unknown schedule"),
    ("precision", "fp16", "unknown precision"),
    ("val_size", -1, "--val-size must be 0 or more"),
    ("eval_batch_size", 0, "--eval-batch-size must be at least 1"),
])
def test_config_rejects_each_bad_value_naming_the_flag(flag, value, message):
    with pytest.raises(VislabError, match=message):
        resolve_config("mlp", {flag: value})


def test_build_optimizer_passes_every_setting_to_the_named_optimizer():
    torch.manual_seed(0)
    model = create_model("mlp")
    sgd = build_optimizer(resolve_config("mlp", {"optimizer": "sgd", "lr": 0.1, "momentum": 0.8, "nesterov": True,
                                                 "weight_decay": 0.01}), model)
    group = sgd.param_groups[0]
    assert type(sgd) is torch.optim.SGD
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (0.1, 0.8, True, 0.01)
    plain = build_optimizer(resolve_config("mlp", {"optimizer": "sgd", "lr": 0.1, "momentum": 0.7}), model)
    assert plain.param_groups[0]["momentum"] == 0.7 and not plain.param_groups[0]["nesterov"]
    # exact types: AdamW subclasses Adam, and the two apply weight decay differently
    adam = build_optimizer(resolve_config("mlp", {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.01}), model)
    assert type(adam) is torch.optim.Adam and adam.param_groups[0]["weight_decay"] == 0.01
    adamw = build_optimizer(resolve_config("mlp", {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05}), model)
    assert type(adamw) is torch.optim.AdamW and adamw.param_groups[0]["weight_decay"] == 0.05


def scheduled_lrs(schedule: str, steps: int) -> list[float] | None:
    """The lr before each of ``steps`` scheduler steps and after the last one (peak lr 0.1)."""
    model = create_model("mlp")
    config = resolve_config("mlp", {"optimizer": "sgd", "lr": 0.1, "schedule": schedule})
    optimizer = build_optimizer(config, model)
    scheduler = build_scheduler(config, optimizer, steps)
    if scheduler is None:
        return None
    lrs = [optimizer.param_groups[0]["lr"]]
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


def test_schedules_span_exactly_the_run():
    assert scheduled_lrs("none", 100) is None
    # onecycle: the group's lr is the peak, reached after 30% of the steps, and the run ends far below it
    onecycle = scheduled_lrs("onecycle", 100)
    assert max(onecycle) == pytest.approx(0.1) and 28 <= onecycle.index(max(onecycle)) <= 31
    assert onecycle[-1] < 1e-4
    # cosine: from the lr down to 0 at the last step (not half-way down, not constant)
    cosine = scheduled_lrs("cosine", 100)
    assert cosine[0] == pytest.approx(0.1) and cosine[50] == pytest.approx(0.05) and cosine[-1] < 1e-6


def test_evaluate_averages_the_loss_per_sample_and_honours_precision(small):
    torch.manual_seed(0)
    model = create_model("mlp")
    x, y = small.test_x[:10], small.test_y[:10]
    model.train()
    result = evaluate(model, x, y, batch_size=3)  # batches of 3, 3, 3, 1: a mean of batch means would differ
    assert model.training  # evaluate restores the mode it found
    model.eval()
    assert result.loss == pytest.approx(float(F.nll_loss(model(x).detach(), y)), rel=1e-5)
    assert not model.training
    # bf16 autocast changes the loss's low bits; it must reach the forward pass
    bf16 = evaluate(model, x, y, batch_size=3, precision="bf16").loss
    assert bf16 != result.loss and bf16 == pytest.approx(result.loss, abs=0.05)


def test_evaluate_checkpoint_reports_fractional_epoch_and_per_true_class_accuracy(tmp_path, small, mnist_dir):
    # half an epoch on 400 images: 2 steps, a poor model whose confusion matrix is far from symmetric
    part = subset(small, 400)
    train(mlp_config(epochs=0.5, augment=False), tmp_path / "run", splits=part, log=quiet)
    report = evaluate_checkpoint(tmp_path / "run" / "last.pt", str(mnist_dir), "cpu")
    assert report["epoch"] == 0.5 and report["n"] == 10000
    cm = torch.tensor(report["confusion_matrix"])
    assert not torch.equal(cm.sum(0), cm.sum(1))
    expected = [100.0 * float(cm[c, c]) / float(cm[c].sum()) for c in range(10)]
    assert report["per_class_accuracy"] == pytest.approx(expected)


def test_validation_split_keeps_test_numbers_apart(tmp_path, small, monkeypatch):
    # 1,050 training images at batch 100: the last batch holds 50, and the epoch's loss is the per-image mean
    split = MnistSplits(small.train_x[:1050], small.train_y[:1050], small.train_x[1700:], small.train_y[1700:],
                        small.test_x, small.test_y)
    seen = []

    def recording_loss(log_probs, target, label_smoothing=0.0):
        loss = training_loss(log_probs, target, label_smoothing)
        seen.append((float(loss.detach()), len(target)))
        return loss

    monkeypatch.setattr(train_module, "training_loss", recording_loss)
    result = train(mlp_config(augment=False), tmp_path / "run", splits=split, log=quiet)
    metrics = read_metrics_csv(tmp_path / "run" / "metrics.csv")
    first = seen[:11]
    assert [n for _, n in first] == [100] * 10 + [50]
    assert metrics[0]["train_loss"] == pytest.approx(sum(v * n for v, n in first) / 1050, rel=1e-5)

    # validation on the 300 held-out training images; result.json's test numbers are the test set's
    model, _ = load_mnist_model(tmp_path / "run" / "last.pt")
    val = evaluate(model, split.val_x, split.val_y)
    test = evaluate(model, split.test_x, split.test_y)
    assert metrics[-1]["val_acc"] == pytest.approx(val.accuracy)
    assert result["validated_on"].startswith("last 300")
    assert result["test_n"] == 500
    assert (result["test_accuracy"], result["test_loss"]) == pytest.approx((test.accuracy, test.loss))
    assert result["best_val_accuracy"] == max(m["val_acc"] for m in metrics)
    assert result["test_accuracy"] != result["best_val_accuracy"]  # else the two checks above prove little


def test_best_checkpoint_is_the_epoch_with_highest_validation_accuracy(tmp_path, small, monkeypatch):
    accuracies = iter([60.0, 50.0])

    def fake_evaluate(model, x, y, **_):
        return EvalResult(loss=1.0, accuracy=next(accuracies), correct=0, n=len(y), predictions=y)

    monkeypatch.setattr(train_module, "evaluate", fake_evaluate)
    part = subset(small, 200)
    train(mlp_config(augment=False), tmp_path / "run", splits=part, log=quiet)
    assert load_checkpoint(tmp_path / "run" / "best.pt")["epoch"] == 1
    assert load_checkpoint(tmp_path / "run" / "last.pt")["best_acc"] == 60.0


def test_resuming_from_an_older_checkpoint_rewrites_the_later_metrics_rows(tmp_path, small):
    part = subset(small, 300)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(mlp_config(augment=False), run, splits=part, log=StopAfter(1))
    shutil.copy(run / "last.pt", tmp_path / "epoch1.pt")
    train(mlp_config(augment=False), run, resume=True, splits=part, log=quiet)
    # back to the epoch-1 state (an older last.pt): epoch 2's row must be replaced, not duplicated
    shutil.copy(tmp_path / "epoch1.pt", run / "last.pt")
    train(mlp_config(augment=False), run, resume=True, splits=part, log=quiet)
    assert [m["epoch"] for m in read_metrics_csv(run / "metrics.csv")] == [1, 2]
