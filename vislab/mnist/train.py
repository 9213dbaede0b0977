"""The one MNIST training loop: in-memory batches, per-epoch validation, resumable full-state checkpoints.

A run folder holds ``config.json`` (the resolved config), ``metrics.csv`` (one row per epoch),
``curves.png`` (validation loss and accuracy per epoch, as in the lab), ``last.pt`` (written atomically at
the end of every epoch) and ``best.pt`` (highest validation accuracy), and at the end ``result.json``.
A fractional ``epochs`` (1.5) cuts the last pass short; that partial pass is validated and saved like any
other, and recorded as epoch 1.5.

Resuming is exact: the checkpoint holds the model, optimizer, scheduler, epoch, the data-order and
augmentation generators and the global RNG state (dropout), so on a CPU a run killed after any epoch and
resumed ends with the same weights as one never stopped.
"""

import argparse
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vislab import __version__
from vislab.core.checkpoint import load_checkpoint, save_atomic
from vislab.core.device import pick_device
from vislab.core.errors import VislabError
from vislab.core.logging import MetricsCSV, make_output_dir, plot_curves, progress, write_json
from vislab.core.memory import retain_freed_memory
from vislab.core.optim import MuonAdamW, muon_param_groups
from vislab.core.seed import get_rng_state, seed_everything, set_rng_state
from vislab.mnist.data import MnistSplits, augment_batch, iterate_batches, load_splits
from vislab.mnist.evaluate import autocast_context, evaluate
from vislab.mnist.models import count_parameters, create_model
from vislab.mnist.precision import resolve_precision
from vislab.mnist.recipes import TrainConfig, resolve_config

METRIC_FIELDS = ("epoch", "train_loss", "val_loss", "val_acc", "lr", "train_images_per_s", "epoch_time_s")
NAN_CHECK_EVERY = 25  # steps between finiteness checks of the running loss (each check is a host sync)


@dataclass
class TrainState:
    """Everything that changes during training and goes into a checkpoint."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    data_gen: torch.Generator
    aug_gen: torch.Generator
    epoch: int = 0  # epochs completed
    best_acc: float = -1.0
    metrics: list[dict[str, float]] = field(default_factory=list)


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = model.parameters()
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                               weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "muon":
        return MuonAdamW(muon_param_groups(model, config.lr, config.muon_lr, config.weight_decay))
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def build_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer,
                    total_steps: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Per-step schedules: onecycle peaks at each group's lr after 30% of the steps; cosine decays to 0."""
    if config.schedule == "onecycle":
        peaks = [group["lr"] for group in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peaks, total_steps=total_steps)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    return None


def describe_optimizer(config: TrainConfig) -> str:
    """``adamw lr 0.001``, or for Muon both learning rates, plus label smoothing when on."""
    text = (f"muon lr {config.muon_lr:g} (AdamW lr {config.lr:g})" if config.optimizer == "muon"
            else f"{config.optimizer} lr {config.lr:g}")
    return text + (f", label smoothing {config.label_smoothing:g}" if config.label_smoothing else "")


def total_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    """Optimizer steps of the whole run; a fractional ``epochs`` cuts the last pass short."""
    return max(1, math.ceil(config.epochs * steps_per_epoch))


def init_state(config: TrainConfig, device: torch.device, steps_per_epoch: int) -> TrainState:
    """A fresh model/optimizer/scheduler, all seeded from ``config.seed``."""
    seed_everything(config.seed)
    model = create_model(config.model, **config.model_kwargs).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(config, model)
    scheduler = build_scheduler(config, optimizer, total_steps(config, steps_per_epoch))
    # Own generators for data order and augmentation; dropout uses the global RNG, saved separately.
    data_gen = torch.Generator().manual_seed(config.seed)
    aug_gen = torch.Generator().manual_seed(config.seed + 1)
    return TrainState(model, optimizer, scheduler, data_gen, aug_gen)


def state_to_checkpoint(state: TrainState, config: TrainConfig) -> dict[str, Any]:
    """The checkpoint dict: only tensors and primitives, so ``torch.load(weights_only=True)`` reads it."""
    return {
        "task": "mnist",
        "vislab_version": __version__,
        "model": {k: v.detach().cpu() for k, v in state.model.state_dict().items()},
        "model_name": config.model,
        "model_kwargs": dict(config.model_kwargs),
        "config": config.to_dict(),
        "epoch": state.epoch,
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict() if state.scheduler is not None else None,
        "generators": {"data": state.data_gen.get_state(), "augment": state.aug_gen.get_state()},
        "rng": get_rng_state(),
        "best_acc": state.best_acc,
        "metrics": list(state.metrics),
    }


def restore_state(state: TrainState, ckpt: dict[str, Any]) -> None:
    """Load a checkpoint written by :func:`state_to_checkpoint` into a freshly built ``state``."""
    state.model.load_state_dict(ckpt["model"])
    # The scheduler was built first (it rewrites the optimizer's lr); the saved optimizer groups win.
    state.optimizer.load_state_dict(ckpt["optimizer"])
    if state.scheduler is not None and ckpt.get("scheduler") is not None:
        state.scheduler.load_state_dict(ckpt["scheduler"])
    state.data_gen.set_state(ckpt["generators"]["data"])
    state.aug_gen.set_state(ckpt["generators"]["augment"])
    set_rng_state(ckpt["rng"])
    state.epoch = int(ckpt["epoch"])
    state.best_acc = float(ckpt["best_acc"])
    state.metrics = [dict(m) for m in ckpt["metrics"]]


def training_loss(log_probs: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean NLL of the labels, or with label smoothing ``eps`` the cross-entropy against the target
    ``(1 - eps) * onehot + eps / C``: ``(1 - eps) * NLL + eps * mean over classes of -log p``."""
    nll = F.nll_loss(log_probs, target)
    if label_smoothing == 0.0:
        return nll
    return (1.0 - label_smoothing) * nll - label_smoothing * log_probs.mean(dim=1).mean()


def train_one_epoch(state: TrainState, config: TrainConfig, x: torch.Tensor, y: torch.Tensor,
                    device: torch.device, desc: str = "", max_steps: int | None = None) -> tuple[float, float]:
    """One pass over (x, y), or its first ``max_steps`` batches; returns (mean training loss, images per second).

    Raises:
        VislabError: the loss became NaN or infinite (nothing is saved for this epoch).
    """
    model, optimizer, scheduler = state.model, state.optimizer, state.scheduler
    model.train()
    n_steps = math.ceil(len(x) / config.batch_size)
    if max_steps is not None:
        n_steps = min(n_steps, max_steps)
    loss_sum = torch.zeros((), device=device)
    seen = 0
    start = time.perf_counter()
    bar = progress(iterate_batches(x, y, config.batch_size, shuffle=True, generator=state.data_gen),
                   desc=desc, total=n_steps)
    for step, (xb, yb) in enumerate(bar, 1):
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        if config.augment:
            k = config.augment_strength
            xb = augment_batch(xb, state.aug_gen, max_shift=2.0 * k, max_rotate_deg=10.0 * k, max_scale=0.1 * k)
        with autocast_context(device, config.precision):
            out = model(xb)
        loss = training_loss(out.float(), yb, config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        loss_sum += loss.detach() * len(yb)
        seen += len(yb)
        if step % NAN_CHECK_EVERY == 0 or step == n_steps:
            running = float(loss_sum) / seen
            if not math.isfinite(running):
                raise VislabError(f"training loss became {running} in epoch {state.epoch + 1} near step {step}; "
                                  f"stopped, the last good checkpoint is kept (try a lower --lr)")
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{running:.4f}", refresh=False)
        if step == n_steps:
            break
    elapsed = time.perf_counter() - start
    return float(loss_sum) / max(seen, 1), seen / max(elapsed, 1e-9)


def _write_run_files(out_dir: Path, state: TrainState, on_test: bool) -> None:
    epochs = [float(m["epoch"]) for m in state.metrics]
    label = "test" if on_test else "validation"
    plot_curves(epochs, {f"{label} loss": [m["val_loss"] for m in state.metrics],
                         f"{label} accuracy (%)": [m["val_acc"] for m in state.metrics]},
                out_dir / "curves.png")


def train(config: TrainConfig, out_dir: str | Path, *, resume: bool = False, splits: MnistSplits | None = None,
          log=print) -> dict[str, Any]:
    """Train ``config.model`` into ``out_dir`` and return the final test metrics.

    Args:
        config: the resolved configuration.
        out_dir: run folder (created); holds config.json, metrics.csv, curves.png, last.pt, best.pt.
        resume: continue from ``out_dir/last.pt`` with its saved config (a fresh start if there is none).
        splits: data to use instead of loading ``config.data`` (tests pass small subsets).
        log: where per-epoch lines go.

    Raises:
        VislabError: NaN/inf loss, a run folder that already holds a run (without ``resume``), bad data.
    """
    out_dir = Path(out_dir)
    last_path = out_dir / "last.pt"
    ckpt = None
    if resume and last_path.exists():
        ckpt = load_checkpoint(last_path)
        if ckpt.get("task") != "mnist" or "config" not in ckpt:
            raise VislabError(f"{last_path} is not a vislab MNIST training checkpoint; cannot resume")
        saved = TrainConfig.from_dict(ckpt["config"])
        if saved.model != config.model:
            raise VislabError(f"{last_path} holds a {saved.model!r} run, not {config.model!r}; "
                              f"resume it with --model {saved.model}")
        saved.device, saved.data = config.device, config.data if config.data is not None else saved.data
        config = saved
    elif resume:
        log(f"no {last_path} to resume from: starting a fresh run")
    elif last_path.exists():
        raise VislabError(f"{out_dir} already holds a run (last.pt); pass --resume or choose another --out")
    config.validate()

    device = pick_device(config.device)
    if device.type == "cpu":
        retain_freed_memory()
    requested = config.precision
    config.precision, why = resolve_precision(config.precision, device, config.model, config.model_kwargs,
                                              config.batch_size, config.channels_last)
    if requested == "auto":
        log(f"precision auto -> {config.precision} ({why})")
    if splits is None:
        splits = load_splits(config.data, config.val_size)
    on_test = splits.val_x is None
    val_x, val_y = (splits.test_x, splits.test_y) if on_test else (splits.val_x, splits.val_y)
    train_x, train_y = splits.train_x.to(device), splits.train_y.to(device)
    val_x, val_y = val_x.to(device), val_y.to(device)
    steps_per_epoch = math.ceil(len(train_x) / config.batch_size)

    state = init_state(config, device, steps_per_epoch)
    make_output_dir(out_dir, "run folder")
    metrics_csv = MetricsCSV(out_dir / "metrics.csv", METRIC_FIELDS)
    if ckpt is not None:
        restore_state(state, ckpt)
        metrics_csv.truncate_after("epoch", state.epoch)
        log(f"resuming {config.model} from {last_path} after epoch {state.epoch}/{config.epochs:g}")
    else:
        metrics_csv.path.unlink(missing_ok=True)
    write_json(config.to_dict(), out_dir / "config.json")

    if state.epoch == 0:
        log(f"{config.model}: {count_parameters(state.model):,} parameters, {len(train_x):,} training images, "
            f"device {device}, {describe_optimizer(config)} {config.schedule}, batch {config.batch_size}, "
            f"{config.epochs:g} epochs, augment {'on' if config.augment else 'off'}, {config.precision}")
        if on_test:
            log("validating on the TEST set each epoch (--val-size 0, as the lab does); "
                "pass --val-size 5000 for a held-out validation split")

    last_val = None
    try:
        run_steps = total_steps(config, steps_per_epoch)
        while state.epoch * steps_per_epoch < run_steps:
            epoch = state.epoch + 1
            t0 = time.perf_counter()
            # the group --lr sets: the only one, or under Muon the AdamW group (listed last)
            lr = state.optimizer.param_groups[-1]["lr"]
            train_loss, ips = train_one_epoch(state, config, train_x, train_y, device,
                                              desc=f"epoch {epoch}/{math.ceil(config.epochs)}",
                                              max_steps=run_steps - state.epoch * steps_per_epoch)
            val = evaluate(state.model, val_x, val_y, batch_size=config.eval_batch_size,
                           precision=config.precision)
            state.epoch, last_val = epoch, val
            # the epochs trained so far: 2 for a full second pass, 1.5 when a 1.5-epoch run ends half-way
            epochs_done = min(epoch, config.epochs)
            row = {"epoch": epochs_done, "train_loss": train_loss, "val_loss": val.loss, "val_acc": val.accuracy,
                   "lr": lr, "train_images_per_s": ips, "epoch_time_s": time.perf_counter() - t0}
            state.metrics.append(row)
            is_best = val.accuracy > state.best_acc
            state.best_acc = max(state.best_acc, val.accuracy)
            ckpt_dict = state_to_checkpoint(state, config)
            save_atomic(ckpt_dict, last_path)
            if is_best:
                save_atomic(ckpt_dict, out_dir / "best.pt")
            metrics_csv.append(row)
            _write_run_files(out_dir, state, on_test)
            log(f"epoch {epochs_done:g}/{config.epochs:g}: train loss {train_loss:.4f}, "
                f"{'test' if on_test else 'validation'} loss {val.loss:.4f}, accuracy {val.accuracy:.2f}% "
                f"({val.correct}/{val.n}), {ips:.0f} img/s, {row['epoch_time_s']:.1f} s")
    except KeyboardInterrupt:
        log(f"interrupted: {last_path} holds epoch {state.epoch}; continue with --resume")
        raise

    if on_test and last_val is not None:
        test = last_val  # the last epoch was already evaluated on the test set
    else:
        test = evaluate(state.model, splits.test_x.to(device), splits.test_y.to(device),
                        batch_size=config.eval_batch_size, precision=config.precision)
    epochs_trained = state.metrics[-1]["epoch"] if state.metrics else 0  # 1.5 after a 1.5-epoch run
    result = {"model": config.model, "epochs": epochs_trained, "test_loss": test.loss, "test_accuracy": test.accuracy,
              "test_correct": test.correct, "test_n": test.n, "best_val_accuracy": state.best_acc,
              "validated_on": "test" if on_test else f"last {len(val_x)} training images",
              "train_time_s": sum(m["epoch_time_s"] for m in state.metrics)}
    write_json(result, out_dir / "result.json")
    log(f"test accuracy {test.accuracy:.2f}% ({test.correct}/{test.n}), test loss {test.loss:.4f} "
        f"(weights after epoch {epochs_trained:g}; run folder {out_dir})")
    return result


def run_train(args: argparse.Namespace) -> int:
    """``vislab mnist train``: resolve the config from the model's recipe and the flags, then train."""
    overrides = {name: getattr(args, name) for name in
                 ("epochs", "batch_size", "lr", "muon_lr", "optimizer", "schedule", "augment", "augment_strength",
                  "label_smoothing", "seed", "device", "val_size", "precision", "data")}
    config = resolve_config(args.model, overrides)
    out = args.out or f"runs/mnist_{args.model}"
    train(config, out, resume=args.resume)
    return 0
