"""``vislab mnist show``: a PNG grid of MNIST digits, each titled with its label."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from vislab.core.errors import VislabError
from vislab.core.logging import save_figure, subplots
from vislab.mnist.data import load_mnist


def save_digit_grid(images: torch.Tensor, labels: torch.Tensor, path: str | Path, columns: int = 10,
                    title: str | None = None) -> Path:
    """Save uint8 (N, 28, 28) ``images`` as a grid, each panel titled with its label, to a PNG at ``path``."""
    n = len(images)
    columns = min(columns, n)
    rows = math.ceil(n / columns)
    fig, axes = subplots(rows, columns, figsize=(1.1 * columns, 1.3 * rows + (0.4 if title else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i].numpy(), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_title(str(int(labels[i])), fontsize=10)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def run_show(args: argparse.Namespace) -> int:
    """CLI handler: ``vislab mnist show [--n 10] [--data DIR] [--split train|test] [--out PNG]``."""
    images, labels = load_mnist(args.data, args.split)
    if not 1 <= args.n <= len(images):
        raise VislabError(f"--n must be between 1 and {len(images)}, got {args.n}")
    out = save_digit_grid(images[:args.n], labels[:args.n], args.out,
                          title=f"first {args.n} MNIST {args.split} digits")
    print(f"wrote {out} ({args.n} {args.split} digits; labels: {' '.join(str(int(v)) for v in labels[:args.n])})")
    return 0
