"""Training curves of one stereo run, or of several runs trained one after another (stages), as a PNG.

``vislab stereo train`` rewrites ``RUN_DIR/curves.png`` after every epoch; ``vislab stereo curves RUN_DIR...``
draws runs that continue each other (each stage started from the previous stage's weights) on one axis of
training pairs seen, since stages may differ in batch size.
"""

import argparse
import json
import math
from pathlib import Path
from typing import Any

from vislab.core.errors import VislabError
from vislab.core.logging import read_metrics_csv, save_figure, subplots
from vislab.stereo.configs import LOSSES


def _moving_average(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _split_until(run_dir: str | Path) -> tuple[Path, float]:
    """``"runs/stage1:1106"`` -> (runs/stage1, 1106): a stage whose shipped weights are those of step 1106."""
    text = str(run_dir)
    head, sep, tail = text.rpartition(":")
    if sep and tail.isdigit() and not Path(text).exists():
        return Path(head), float(tail)
    return Path(text), math.inf


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """Per-step training rows and per-epoch validation rows of a run, x in training pairs seen, and the name
    of the loss it was trained with.

    ``RUN_DIR:N`` keeps the rows up to optimizer step N only.
    """
    run_dir, until = _split_until(run_dir)
    metrics, config = run_dir / "metrics.csv", run_dir / "config.json"
    if not metrics.is_file():
        raise VislabError(f"no training metrics in {run_dir} (expected {metrics.name})")
    try:
        has_config = config.is_file()
        saved = json.loads(config.read_text()) if has_config else {}
        batch = int(saved["batch_size"]) if has_config else 1
        # runs written before --loss existed trained with smooth L1, the only loss then
        loss_name = LOSSES.get(str(saved.get("loss", "smoothl1")), str(saved.get("loss")))
        rows = read_metrics_csv(metrics)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise VislabError(f"cannot read the metrics of {run_dir}: {exc}") from None
    rows = [r for r in rows if r.get("iteration", 0) <= until]
    train = [r for r in rows if "loss" in r and math.isfinite(r["loss"])]
    val = [r for r in rows if "val_epe" in r]
    return {
        "loss_name": loss_name,
        "pairs": [r["iteration"] * batch for r in train],
        "loss": [r["loss"] for r in train],
        "train_epe": [r.get("train_epe", math.nan) for r in train],
        "val_pairs": [r["iteration"] * batch for r in val],
        "val_epe": [r["val_epe"] for r in val],
        "val_d1": [r.get("val_d1", math.nan) for r in val],
    }


def plot_training_curves(run_dirs: list[str | Path], out: str | Path, smooth: int = 50,
                         labels: list[str] | None = None) -> Path:
    """Training loss and EPE (thin: every step; thick: moving average over ``smooth`` steps) and validation
    EPE / D1 of ``run_dirs`` chained in order, with a dashed line where each later run starts."""
    if not run_dirs:
        raise VislabError("no run folders to plot")
    labels = labels or [_split_until(d)[0].name for d in run_dirs]
    if len(labels) != len(run_dirs):
        raise VislabError(f"{len(labels)} labels for {len(run_dirs)} runs")
    fig, (ax_loss, ax_epe, ax_val) = subplots(3, 1, figsize=(8, 9), sharex=True)
    ax_d1 = ax_val.twinx()
    offset = 0.0
    loss_names: list[str] = []
    for i, (run_dir, label) in enumerate(zip(run_dirs, labels, strict=True)):
        run = load_run(run_dir)
        if run["loss_name"] not in loss_names:
            loss_names.append(run["loss_name"])
        if i:
            for ax in (ax_loss, ax_epe, ax_val):
                ax.axvline(offset, color="grey", linestyle="--", linewidth=0.8)
        colour = f"C{i % 10}"
        x = [offset + p for p in run["pairs"]]
        for ax, key in ((ax_loss, "loss"), (ax_epe, "train_epe")):
            ax.plot(x, run[key], color=colour, alpha=0.2, linewidth=0.5)
            ax.plot(x, _moving_average(run[key], smooth), color=colour, linewidth=1.8, label=label)
        vx = [offset + p for p in run["val_pairs"]]
        ax_val.plot(vx, run["val_epe"], color=colour, marker="o", markersize=3, label=f"{label} EPE")
        ax_d1.plot(vx, run["val_d1"], color=colour, marker="s", markersize=3, linestyle=":", label=f"{label} D1")
        offset = (x[-1] if x else offset)
    ax_loss.set_ylabel(f"training loss ({', then '.join(loss_names)})")
    ax_epe.set_ylabel("training EPE (px)")
    ax_val.set_ylabel("validation EPE (px), circles")
    ax_d1.set_ylabel("validation D1 (%), squares")
    ax_val.set_xlabel("training pairs seen")
    for ax in (ax_loss, ax_epe, ax_val):
        ax.grid(True, alpha=0.3)
    ax_loss.legend(loc="upper right", fontsize="small")
    ax_loss.set_title(f"PSMNet training; thick lines: mean over {smooth} steps")
    fig.tight_layout()
    return save_figure(fig, out)


def run_curves(args: argparse.Namespace) -> int:
    """``vislab stereo curves RUN_DIR... [--out PNG] [--smooth N]``."""
    if args.smooth < 1:
        raise VislabError(f"--smooth must be at least 1, got {args.smooth}")
    path = plot_training_curves(args.run_dirs, args.out, smooth=args.smooth, labels=args.labels)
    print(f"wrote {path}")
    return 0
