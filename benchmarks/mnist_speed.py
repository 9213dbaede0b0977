"""MNIST training speed: vislab's loop vs. the lab's original recipe, in the same run, on the same `cnn`.

    python benchmarks/mnist_speed.py [--repeats 1] [--threads N] [--skip-time-to-accuracy]

1. Throughput (training images per second over one epoch of the 60k training set):
   * lab recipe: a ``Dataset`` of individual normalised images, a per-sample ``DataLoader`` (batch 32,
     shuffled), SGD lr 0.01 momentum 0.5, NCHW fp32 -- the lab notebook's loop;
   * vislab: ``vislab.mnist.train.train`` itself (the real loop, default ``cnn`` recipe, one epoch), whose
     per-epoch ``train_images_per_s`` excludes the validation pass, like the lab figure.
   The ratio vislab / lab is printed; with ``--repeats`` the two alternate and the medians are compared.
2. Time to 99.0% test accuracy: the full default ``cnn`` recipe through ``train``, wall-clock seconds from
   the call to the end of the first epoch whose test accuracy (validated each epoch) reaches 99.0%.

Every measurement runs in a fresh process (vislab's ``train`` tunes the process's C allocator, which must
not leak into the lab recipe's figures). Every figure is given per wall-clock second and per CPU-second of
that process: on a shared machine the wall-clock figures swing with the other users' load (printed), the
CPU-second ones much less.
"""

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from vislab.core.logging import read_metrics_csv
from vislab.mnist.data import MnistSplits, load_splits
from vislab.mnist.models import create_model
from vislab.mnist.recipes import resolve_config
from vislab.mnist.train import train

TARGET_ACCURACY = 99.0


class SingleImages(Dataset):
    """The lab's data path: one normalised image and one label per ``__getitem__``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.images = list(x.unbind(0))
        self.labels = y.tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], self.labels[i]


def lab_epoch(splits: MnistSplits, seed: int = 0) -> tuple[float, float]:
    """One epoch of the lab's recipe on ``cnn``; training images per wall-clock and per CPU second."""
    torch.manual_seed(seed)
    model = create_model("cnn").train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
    loader = DataLoader(SingleImages(splits.train_x, splits.train_y), batch_size=32, shuffle=True)
    start, cpu_start = time.perf_counter(), time.process_time()
    seen = 0
    for data, target in loader:
        optimizer.zero_grad()
        loss = F.nll_loss(model(data), target)
        loss.backward()
        optimizer.step()
        seen += len(target)
    return seen / (time.perf_counter() - start), seen / (time.process_time() - cpu_start)


def vislab_epoch(splits: MnistSplits, seed: int = 0) -> tuple[float, float]:
    """One epoch of vislab's loop (default cnn recipe): training images per wall-clock and per CPU second.

    The wall figure is the loop's own (training pass only); the CPU figure charges the whole ``train`` call,
    validation pass and checkpoint writing included, so it favours the lab recipe.
    """
    config = resolve_config("cnn", {"epochs": 1, "seed": seed, "device": "cpu"})
    with tempfile.TemporaryDirectory() as tmp:
        cpu_start = time.process_time()
        train(config, Path(tmp) / "run", splits=splits, log=lambda _: None)
        cpu = time.process_time() - cpu_start
        wall_ips = read_metrics_csv(Path(tmp) / "run" / "metrics.csv")[-1]["train_images_per_s"]
    return wall_ips, len(splits.train_x) / cpu


def time_to_accuracy(splits: MnistSplits,
                     target: float = TARGET_ACCURACY) -> tuple[float | None, float | None, list[str]]:
    """Wall and CPU seconds from calling ``train`` (cnn recipe) to the end of the first epoch at ``target`` %."""
    config = resolve_config("cnn", {"device": "cpu"})
    stamps: list[tuple[float, float, str]] = []

    def log(line: str) -> None:
        if line.startswith("epoch "):
            stamps.append((time.perf_counter(), time.process_time(), line))

    with tempfile.TemporaryDirectory() as tmp:
        start, cpu_start = time.perf_counter(), time.process_time()
        train(config, Path(tmp) / "run", splits=splits, log=log)
        rows = read_metrics_csv(Path(tmp) / "run" / "metrics.csv")
    lines = [line for _, _, line in stamps]
    for row, (t, cpu, _) in zip(rows, stamps, strict=True):
        if row["val_acc"] >= target:
            return t - start, cpu - cpu_start, lines
    return None, None, lines


def _measure(name: str, threads: int | None, seed: int):
    """Child process: load the data, then run one measurement (its own process, its own allocator state)."""
    os.environ.setdefault("VISLAB_NO_PROGRESS", "1")
    if threads:
        torch.set_num_threads(threads)
    splits = load_splits(None, val_size=0)
    if name == "lab":
        return lab_epoch(splits, seed)
    if name == "vislab":
        return vislab_epoch(splits, seed)
    return time_to_accuracy(splits)


def in_fresh_process(name: str, threads: int | None, seed: int = 0):
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_measure, name, threads, seed).result()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=1, help="alternate lab/vislab epochs this many times")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--skip-time-to-accuracy", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    lab, ours = [], []
    for r in range(args.repeats):
        lab.append(in_fresh_process("lab", args.threads, seed=r))
        print(f"  lab recipe epoch {r + 1}: {lab[-1][0]:,.0f} img/s wall, {lab[-1][1]:,.0f} img/CPU-s", flush=True)
        ours.append(in_fresh_process("vislab", args.threads, seed=r))
        print(f"  vislab loop epoch {r + 1}: {ours[-1][0]:,.0f} img/s wall, {ours[-1][1]:,.0f} img/CPU-s", flush=True)
    for i, unit in enumerate(("img/s wall-clock", "img per CPU-second")):
        lab_ips, our_ips = statistics.median(x[i] for x in lab), statistics.median(x[i] for x in ours)
        print(f"cnn training throughput ({unit}): lab recipe {lab_ips:,.0f}, vislab {our_ips:,.0f}, "
              f"ratio {our_ips / lab_ips:.2f}x (target >= 3x)")

    if not args.skip_time_to_accuracy:
        seconds, cpu_seconds, lines = in_fresh_process("time-to-accuracy", args.threads)
        for line in lines:
            print(f"  {line}")
        if seconds is None:
            print(f"cnn default recipe never reached {TARGET_ACCURACY}% test accuracy")
        else:
            print(f"cnn time to {TARGET_ACCURACY}% test accuracy: {seconds:.1f} s wall, {cpu_seconds:.1f} CPU-s "
                  f"(target <= 10 s wall)")
    print(f"load average {os.getloadavg()[0]:.1f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
