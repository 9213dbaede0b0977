"""Training and fine-tuning PSMNet: the one training loop, single process or data-parallel under torchrun.

Shape of a run (as in the pytorch/vision references): ``main``-like ``train(cfg)`` builds data, model and
optimizer once, then calls ``train_one_epoch`` and ``validate`` per epoch. Outputs in ``RUN_DIR``:

* ``config.json`` (the resolved config), ``metrics.csv`` (one row per step, one per validation), ``tb/``
  (TensorBoard), ``last.pt`` (atomically, every ``save_every`` steps and at the end of every epoch and of the
  run), ``best.pt`` (lowest validation D1), ``final_fp16.pt`` (fp16 weights only, for shipping).

Exact resume: every random choice of a sample (synthetic scene, crop, colour jitter) is drawn from
``(seed, epoch, index)`` and the sample order of an epoch from ``(seed, epoch)``, so the data never depend on
worker processes or on how often the run was interrupted; ``last.pt`` records the epoch and the number of
batches already consumed in it, and resuming skips exactly those. On a CPU a run killed at any step and
resumed ends with bit-identical weights to one that never stopped.
"""

import argparse
import hashlib
import json
import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vislab.core import distributed as dist_utils
from vislab.core.checkpoint import load_checkpoint, save_atomic, strip_prefix
from vislab.core.device import pick_device
from vislab.core.errors import VislabError
from vislab.core.logging import MetricsCSV, make_output_dir, progress, write_json
from vislab.core.memory import retain_freed_memory
from vislab.core.seed import get_rng_state, seed_everything, set_rng_state
from vislab.stereo.configs import TrainConfig, lr_factor, parse_crop, resolve_config
from vislab.stereo.curves import plot_training_curves
from vislab.stereo.loss import OUTPUT_WEIGHTS, adl_loss, disparity_mask, expected_disparity, psmnet_loss

CSV_FIELDS = ("iteration", "epoch", "loss", "train_epe", "lr", "step_time", "val_epe", "val_d1", "val_bad3")


# ------------------------------------------------------------------------------------------------------ data

def build_train_dataset(cfg: TrainConfig) -> torch.utils.data.Dataset:
    """The training set: every ``--dataset`` with the random-crop transform, concatenated."""
    from vislab.stereo.datasets import create_dataset
    from vislab.stereo.transforms import train_transform

    transform = train_transform(crop=cfg.crop, photometric=cfg.photometric, asymmetric=cfg.asymmetric)
    parts = []
    for name, root in zip(cfg.datasets, cfg.roots, strict=True):
        kwargs: dict[str, Any] = {"seed": cfg.seed}
        if name == "synthetic":
            kwargs.update(size=cfg.synthetic_size, height=cfg.crop[0], width=cfg.crop[1], max_disp=cfg.max_disp)
            if cfg.synthetic_style != "objects":  # (so configs without the field build the same dataset)
                kwargs["style"] = cfg.synthetic_style
        parts.append(create_dataset(name, root, split="training", transform=transform, **kwargs))
    return parts[0] if len(parts) == 1 else torch.utils.data.ConcatDataset(parts)


def build_val_dataset(cfg: TrainConfig) -> torch.utils.data.Dataset | None:
    """The validation set (``--val-dataset``): SceneFlow's TEST split, other datasets' training split."""
    if cfg.val_dataset is None:
        return None
    from vislab.stereo.datasets import create_dataset

    if cfg.val_dataset == "synthetic":
        # A fixed set of scenes, from a seed stream the training scenes never use.
        return create_dataset("synthetic", None, split="validation", seed=cfg.seed + 1_000_003,
                              size=cfg.val_limit or 16, height=cfg.crop[0], width=cfg.crop[1], max_disp=cfg.max_disp)
    split = "testing" if cfg.val_dataset == "sceneflow" else "training"
    return create_dataset(cfg.val_dataset, cfg.val_root, split=split)


def set_epoch(dataset: torch.utils.data.Dataset, epoch: int) -> None:
    """Tell every (sub-)dataset the epoch, which selects its per-sample random streams."""
    for part in getattr(dataset, "datasets", [dataset]):
        if hasattr(part, "set_epoch"):
            part.set_epoch(epoch)


def epoch_indices(n: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> list[int]:
    """This rank's sample order in ``epoch``: a permutation drawn from ``(seed, epoch)``, dealt round-robin.

    Like DistributedSampler, every rank gets the same number of samples (the remainder is dropped), and the
    order depends on nothing but (seed, epoch), so a resumed run sees the same order.
    """
    gen = torch.Generator().manual_seed(int(hashlib.sha256(f"{seed}/{epoch}".encode()).hexdigest()[:15], 16))
    perm = torch.randperm(n, generator=gen).tolist()
    per_rank = n // world
    return perm[:per_rank * world][rank::world]


# --------------------------------------------------------------------------------------------------- the run

@dataclass
class Run:
    """The state one training process carries from step to step."""

    cfg: TrainConfig
    out: Path
    device: torch.device
    model: nn.Module  # what forward is called on (DDP wrapper when distributed)
    net: nn.Module  # the underlying PSMNet
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    per_rank_batch: int
    main: bool
    epoch: int = 0
    step_in_epoch: int = 0  # batches of ``epoch`` already trained on
    iteration: int = 0  # optimizer steps in total
    best_d1: float = math.inf
    stop_requested: bool = False
    writer: Any = None
    csv: MetricsCSV | None = None

    @property
    def done(self) -> bool:
        return self.cfg.iters is not None and self.iteration >= self.cfg.iters


def checkpoint_dict(run: Run) -> dict[str, Any]:
    """The full training state in vislab's stereo checkpoint format (weights_only-loadable)."""
    from vislab.stereo.models import vislab_checkpoint_model_entry

    entry = vislab_checkpoint_model_entry(run.net)
    return {
        "model": strip_prefix(entry["model"]),
        "model_config": entry["model_config"],
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "epoch": run.epoch,
        "step_in_epoch": run.step_in_epoch,
        "iteration": run.iteration,
        "rng": get_rng_state(),
        "config": run.cfg.to_dict(),
        "best_d1": run.best_d1,
        "task": "stereo",
    }


def save_last(run: Run) -> None:
    if run.main:
        save_atomic(checkpoint_dict(run), run.out / "last.pt")


def save_final(run: Run) -> None:
    """``final_fp16.pt``: the run's weights ready to ship (fp16, no optimizer), by the main process only."""
    if run.main:
        save_atomic(fp16_weights(checkpoint_dict(run), run.cfg.export_max_disp), run.out / "final_fp16.pt")


def train_one_epoch(run: Run, dataset: torch.utils.data.Dataset) -> bool:
    """Train on the rest of ``run.epoch`` (from ``run.step_in_epoch``); False when the run stops early."""
    cfg = run.cfg
    world, rank = dist_utils.world_size(), dist_utils.rank()
    indices = epoch_indices(len(dataset), cfg.seed, run.epoch, rank, world)
    steps = len(indices) // run.per_rank_batch
    set_epoch(dataset, run.epoch)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=run.per_rank_batch, sampler=indices[run.step_in_epoch * run.per_rank_batch:],
        drop_last=True, num_workers=cfg.num_workers, pin_memory=run.device.type == "cuda")
    weights = OUTPUT_WEIGHTS[cfg.model]
    run.model.train()
    bar = progress(loader, desc=f"epoch {run.epoch}", total=steps - run.step_in_epoch, enabled=run.main)
    tic = time.perf_counter()
    for batch in bar:
        left, right = (_normalize(batch[k].to(run.device, non_blocking=True)) for k in ("left", "right"))
        disp = batch["disp"].to(run.device, non_blocking=True)
        mask = disparity_mask(disp, batch["valid"].to(run.device), cfg.max_disp)
        if cfg.loss == "adl":
            logits = run.model(left, right, return_logits=True)
            loss = adl_loss(logits, disp, mask, weights)
            with torch.no_grad():  # the logged training EPE stays the soft-argmin's, comparable across losses
                final = expected_disparity(logits[-1])
            del logits
        else:
            outputs = run.model(left, right)
            loss = psmnet_loss(outputs, disp, mask, weights)
            final = outputs[-1]
        with torch.no_grad():
            epe = (final - disp).abs()[mask].mean() if mask.any() else torch.zeros((), device=run.device)
            # One all-reduce per step: the logged mean loss/EPE and whether any rank was asked to stop.
            stats = dist_utils.all_reduce_mean(torch.stack([loss.detach(), epe, torch.tensor(
                float(run.stop_requested), device=run.device)]).float())
        if not torch.isfinite(stats[0]):
            raise VislabError(f"training loss became {stats[0].item()} at iteration {run.iteration + 1} "
                              f"(epoch {run.epoch}); stopped, the last good checkpoint is {run.out / 'last.pt'}")
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        run.iteration += 1
        run.step_in_epoch += 1
        step_time = time.perf_counter() - tic
        tic = time.perf_counter()
        _log_step(run, float(stats[0]), float(stats[1]), step_time)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{float(stats[0]):.3f}", epe=f"{float(stats[1]):.2f}", s_it=f"{step_time:.1f}")
        if cfg.save_every and run.iteration % cfg.save_every == 0:
            save_last(run)
        if run.done or stats[2] > 0:
            run.stop_requested = True
            return run.step_in_epoch >= steps
    return True


def validate(run: Run, dataset: torch.utils.data.Dataset) -> dict[str, float]:
    """EPE / D1 / bad-3 of the current weights on ``dataset`` with the shared evaluation loop (main process)."""
    from vislab.stereo.evaluate import evaluate, psmnet_predict_fn

    result = evaluate(psmnet_predict_fn(run.net, run.device), dataset, max_disp=run.cfg.max_disp,
                      limit=run.cfg.val_limit, progress=False)
    return _summary_metrics(result)


def _summary_metrics(result: dict[str, Any]) -> dict[str, float]:
    """Pick the pooled (all pixels) EPE/D1/bad-3 out of the evaluation result."""
    for key in ("pixel_mean", "mean", "metrics", "summary"):
        if isinstance(result.get(key), dict) and "d1" in result[key]:
            result = result[key]
            break
    return {k: float(result[k]) for k in ("epe", "d1", "bad3") if k in result}


def _normalize(img: torch.Tensor) -> torch.Tensor:
    from vislab.stereo.transforms import imagenet_normalize

    return imagenet_normalize(img)


def _log_step(run: Run, loss: float, epe: float, step_time: float) -> None:
    if not run.main:
        return
    lr = run.optimizer.param_groups[0]["lr"]
    run.csv.append({"iteration": run.iteration, "epoch": run.epoch, "loss": loss, "train_epe": epe, "lr": lr,
                    "step_time": step_time})
    run.writer.add_scalar("train/loss", loss, run.iteration)
    run.writer.add_scalar("train/epe", epe, run.iteration)
    run.writer.add_scalar("train/lr", lr, run.iteration)
    run.writer.add_scalar("train/step_time", step_time, run.iteration)


def _log_validation(run: Run, metrics: dict[str, float]) -> None:
    run.csv.append({"iteration": run.iteration, "epoch": run.epoch,
                    **{f"val_{k}": v for k, v in metrics.items()}})
    for k, v in metrics.items():
        run.writer.add_scalar(f"val/{k}", v, run.iteration)
    run.writer.flush()


# ---------------------------------------------------------------------------------------------- model setup

def build_model(cfg: TrainConfig) -> nn.Module:
    """A fresh PSMNet (seeded init), or the ``--weights`` checkpoint to fine-tune."""
    from vislab.stereo.models import create_model, load_stereo_model

    if cfg.weights is None:
        return create_model(cfg.model, max_disp=cfg.max_disp, align_corners=cfg.align_corners)
    net, info = load_stereo_model(cfg.weights, "cpu", max_disp=cfg.max_disp, align_corners=cfg.align_corners)
    if info["name"] != cfg.model:
        raise VislabError(f"--weights {cfg.weights} holds a {info['name']} model but the run trains "
                          f"{cfg.model}; pass --model {info['name']}")
    return net


def _restore(run: Run, ckpt: dict[str, Any], path: Path) -> None:
    saved = ckpt.get("config", {})
    for key in ("model", "max_disp", "batch_size", "seed"):
        if key in saved and saved[key] != getattr(run.cfg, key):
            raise VislabError(f"cannot resume {path}: it was trained with {key}={saved[key]!r}, "
                              f"this run has {key}={getattr(run.cfg, key)!r}")
    run.net.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.load_state_dict(ckpt["scheduler"])
    set_rng_state(ckpt["rng"])
    run.epoch, run.step_in_epoch = int(ckpt["epoch"]), int(ckpt["step_in_epoch"])
    run.iteration, run.best_d1 = int(ckpt["iteration"]), float(ckpt["best_d1"])
    # The learning rate follows this run's --schedule from the current epoch on (so a resumed run may lower it).
    for group, base_lr in zip(run.optimizer.param_groups, run.scheduler.base_lrs, strict=True):
        group["lr"] = base_lr * lr_factor(run.cfg.schedule, run.epoch)


def state_dict_sha256(state: dict[str, torch.Tensor], params_only_of: nn.Module | None = None) -> str:
    """SHA-256 of a state dict's tensors (names + bytes); with ``params_only_of``, of its parameters only."""
    names = ({n for n, _ in params_only_of.named_parameters()} if params_only_of is not None else None)
    h = hashlib.sha256()
    for key in sorted(state):
        if names is not None and key not in names:
            continue
        h.update(key.encode())
        h.update(state[key].detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _check_ranks_in_sync(run: Run) -> None:
    """All ranks compare their parameters' hashes; rank 0 records them in ``ddp_check.json``.

    (BatchNorm running statistics are not compared: DDP broadcasts rank 0's buffers before every forward, so
    the other ranks' copies differ after the last step and are never used.)
    """
    digest = state_dict_sha256(strip_prefix(run.net.state_dict()), run.net)
    digests: list[Any] = [None] * dist_utils.world_size()
    torch.distributed.all_gather_object(digests, digest)
    if run.main:
        write_json({"world_size": len(digests), "parameters_sha256": digests, "in_sync": len(set(digests)) == 1},
                   run.out / "ddp_check.json")
        if len(set(digests)) != 1:
            raise RuntimeError(f"ranks hold different weights after training: {digests}")


# -------------------------------------------------------------------------------------------------- export

def fp16_weights(ckpt: dict[str, Any], max_disp: int | None = None) -> dict[str, Any]:
    """Shippable weights from a training checkpoint: fp16 floats, model config and provenance, no optimizer."""
    model_config = dict(ckpt["model_config"])
    if max_disp is not None:
        model_config["max_disp"] = int(max_disp)
    return {
        "model": {k: v.half() if v.is_floating_point() else v for k, v in strip_prefix(ckpt["model"]).items()},
        "model_config": model_config,
        "task": "stereo",
        "trained": {"iteration": int(ckpt.get("iteration", 0)), "epoch": int(ckpt.get("epoch", 0)),
                    "train_max_disp": int(ckpt["model_config"]["max_disp"]), "config": ckpt.get("config", {})},
    }


def export_weights(src: str | Path, dst: str | Path, max_disp: int | None = None) -> Path:
    """Write the fp16 weights of checkpoint ``src`` to ``dst`` (e.g. the shipped psmnet_default.pt)."""
    if max_disp is not None and (max_disp <= 0 or max_disp % 4):
        raise VislabError(f"--max-disp must be a positive multiple of 4, got {max_disp}")
    ckpt = load_checkpoint(src)
    if "model" not in ckpt or "model_config" not in ckpt:
        raise VislabError(f"{src} is not a vislab stereo checkpoint (no model/model_config)")
    return save_atomic(fp16_weights(ckpt, max_disp), dst)


# ---------------------------------------------------------------------------------------------------- main

def train(cfg: TrainConfig, out: str | Path, resume: bool = False) -> nn.Module:
    """Run (or resume) a training run into ``out``; returns the trained PSMNet (on every rank)."""
    distributed = dist_utils.init_from_env(cfg.device)
    try:
        net = _train(cfg, Path(out), resume, distributed)
        # Every rank waits for rank 0's last writes: no rank tears its gloo connections down while another
        # may still use them (a rank that left early was seen to abort in CI).
        dist_utils.barrier()
        return net
    finally:
        dist_utils.cleanup()


def _train(cfg: TrainConfig, out: Path, resume: bool, distributed: bool) -> nn.Module:
    device = pick_device(dist_utils.local_device_name(cfg.device))
    world, main = dist_utils.world_size(), dist_utils.is_main_process()
    if cfg.batch_size % world:
        raise VislabError(f"--batch-size {cfg.batch_size} is not divisible by the {world} processes")
    if cfg.sync_bn and device.type != "cuda":
        raise VislabError("--sync-bn needs CUDA devices (SyncBatchNorm does not run on CPU)")
    if main and not resume and (out / "last.pt").exists():
        raise VislabError(f"{out} already holds a run (last.pt); pass --resume to continue it or choose another --out")
    if resume and not (out / "last.pt").is_file():
        raise VislabError(f"nothing to resume: {out / 'last.pt'} does not exist")

    seed_everything(cfg.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    train_set = build_train_dataset(cfg)
    val_set = build_val_dataset(cfg) if main else None
    net = build_model(cfg).to(device).train()
    if device.type == "cpu":
        net.channels_last_3d_()
        retain_freed_memory()  # 1.24x per 256x512 step: activations stop arriving as fresh, page-faulted memory
    model: nn.Module = net
    if distributed:
        if cfg.sync_bn:
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        model = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lr_factor(cfg.schedule, e))
    run = Run(cfg, out, device, model, net, optimizer, scheduler, cfg.batch_size // world, main)
    steps_per_epoch = len(epoch_indices(len(train_set), cfg.seed, 0, 0, world)) // run.per_rank_batch
    if steps_per_epoch == 0:
        raise VislabError(f"the training set ({len(train_set)} pairs) is smaller than one batch of "
                          f"{cfg.batch_size}")
    if resume:
        path = out / "last.pt"
        ckpt = load_checkpoint(path, map_location=device)
        _restore(run, ckpt, path)
        del ckpt
    if main:
        from torch.utils.tensorboard import SummaryWriter

        make_output_dir(out, "run folder")
        write_json(cfg.to_dict(), out / "config.json")
        run.csv = MetricsCSV(out / "metrics.csv", CSV_FIELDS)
        if resume:  # drop log rows written after the checkpoint we resume from
            run.csv.truncate_after("iteration", run.iteration)
        run.writer = SummaryWriter(str(out / "tb"), purge_step=run.iteration + 1 if resume else None)
        print(f"training {cfg.model} (max_disp {cfg.max_disp}) on {'+'.join(cfg.datasets)} "
              f"({len(train_set)} pairs, {steps_per_epoch} steps/epoch, batch {cfg.batch_size} on {world} "
              f"process{'es' if world > 1 else ''}, {device}) -> {out}"
              + (f", resuming at iteration {run.iteration}" if resume else ""), flush=True)

    previous = signal.signal(signal.SIGTERM, lambda *_: setattr(run, "stop_requested", True))
    try:
        _epochs(run, train_set, val_set)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if run.writer is not None:
            run.writer.close()
    if distributed:
        _check_ranks_in_sync(run)
    save_final(run)
    if main:
        print(f"stopped at iteration {run.iteration} (epoch {run.epoch}); checkpoints in {out}", flush=True)
    return net


def _epochs(run: Run, train_set: torch.utils.data.Dataset, val_set: torch.utils.data.Dataset | None) -> None:
    cfg = run.cfg
    while run.epoch < cfg.epochs and not run.done and not run.stop_requested:
        completed = train_one_epoch(run, train_set)
        if not completed:
            save_last(run)
            return
        metrics = validate(run, val_set) if run.main and val_set is not None else {}
        dist_utils.barrier()
        if run.main:
            line = f"epoch {run.epoch} done (iteration {run.iteration})"
            if metrics:
                _log_validation(run, metrics)
                line += f": validation EPE {metrics.get('epe', math.nan):.3f}, D1 {metrics.get('d1', math.nan):.2f}%"
            print(line, flush=True)
        run.scheduler.step()
        run.epoch, run.step_in_epoch = run.epoch + 1, 0
        if run.main:
            plot_training_curves([run.out], run.out / "curves.png")
        if run.main and metrics.get("d1", math.inf) < run.best_d1:
            run.best_d1 = metrics["d1"]
            save_atomic(checkpoint_dict(run), run.out / "best.pt")
        save_last(run)
    if run.main and run.step_in_epoch:  # stopped by --iters / SIGTERM exactly at an epoch's last batch
        save_last(run)


# ----------------------------------------------------------------------------------------------------- CLI

def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Named config (``--config``) overridden by the flags that were given."""
    from vislab.stereo.configs import CONFIGS

    datasets = args.dataset
    roots = None
    if datasets or args.root:  # --root alone gives the roots of the --config's datasets
        roots = _pair_roots(datasets or CONFIGS.get(args.config or "", {}).get("datasets", []), args.root)
    overrides = {
        "datasets": datasets, "roots": roots, "model": args.model, "max_disp": args.max_disp,
        "crop": parse_crop(args.crop) if args.crop else None, "batch_size": args.batch_size,
        "epochs": args.epochs, "lr": args.lr, "schedule": args.schedule, "weights": args.weights,
        "val_dataset": args.val_dataset, "val_root": args.val_root, "seed": args.seed,
        "num_workers": args.num_workers, "iters": args.iters, "save_every": args.save_every,
        "sync_bn": args.sync_bn or None, "align_corners": args.align_corners or None,
        "device": args.device if args.device != "auto" else None,
        "synthetic_size": getattr(args, "synthetic_size", None), "val_limit": getattr(args, "val_limit", None),
        "photometric": getattr(args, "photometric", False) or None,
        "asymmetric": getattr(args, "asymmetric", False) or None, "loss": getattr(args, "loss", None),
        "synthetic_style": getattr(args, "synthetic_style", None),
    }
    return resolve_config(args.config, overrides)


def _pair_roots(datasets: list[str], roots: list[str] | None) -> list[str | None]:
    """Give each non-synthetic ``--dataset`` the next ``--root`` (synthetic needs none)."""
    roots = list(roots or [])
    need = [d for d in datasets if d != "synthetic"]
    if len(roots) == len(datasets):
        return [None if d == "synthetic" else r for d, r in zip(datasets, roots, strict=True)]
    if len(roots) != len(need):
        raise VislabError(f"{len(need)} dataset(s) need a --root ({', '.join(need) or 'none'}), "
                          f"got {len(roots)} --root value(s)")
    it = iter(roots)
    return [None if d == "synthetic" else next(it) for d in datasets]


def run_train(args: argparse.Namespace) -> int:
    """``vislab stereo train``."""
    cfg = config_from_args(args)
    train(cfg, args.out, resume=args.resume)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m vislab.stereo.train export CKPT OUT [--max-disp D]``: fp16 weights from a checkpoint."""
    parser = argparse.ArgumentParser(prog="python -m vislab.stereo.train", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export", help="write fp16 weights (no optimizer state) from a training checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--max-disp", type=int, default=None, help="disparity range recorded for inference")
    args = parser.parse_args(argv)
    try:
        path = export_weights(args.checkpoint, args.out, args.max_disp)
    except VislabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    size = path.stat().st_size / 1e6
    print(json.dumps({"wrote": str(path), "megabytes": round(size, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
