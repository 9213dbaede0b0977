"""Make the pictures of the README and the documentation site (``docs/images/``) with vislab's public API.

    python docs/make_images.py                 # all pictures (trains two short MNIST runs first, ~2-5 min on 2 cores)
    python docs/make_images.py --only stereo   # only the disparity-map comparison (~10 s)
    python docs/make_images.py --only notebook # the lab-notebook screenshot (~2 min)

* ``mnist_curves.png``: validation loss and accuracy per epoch of the ``mlp`` and ``cnn`` recipes, 6 epochs each,
  validated on the last 5,000 training images (``--val-size 5000``), read back from each run's ``metrics.csv``.
  The runs go to ``runs/docs_mnist_*`` and are reused when they exist.
* ``stereo_motorcycle.png``: scikit-image's Middlebury "Motorcycle" pair (``load_example("motorcycle")``), the
  shipped PSMNet's disparity and SGBM's (``predict_disparity``) next to the ground truth, with EPE / D1 scored
  on the same pixels (``stereo_metrics``).
* ``lab_notebook.png``: exercise 1-1 of lab 1's solution notebook (the simple CNN: the task, the answer and the
  checker's report), run in quick mode (~2 min), rendered with ``jupyter nbconvert --to
  html`` and shot with Debian's headless Chromium (``apt-get install chromium``); skipped with a message when
  either is missing.

The app screenshots (``app_*.png``) are made by the app's own documented command (see ``docs/app.md``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

IMAGES = Path(__file__).resolve().parent / "images"
ROOT = Path(__file__).resolve().parent.parent


def shrink(path: Path) -> Path:
    """Store a picture with a 256-colour palette: a third of the bytes, no visible change for these plots."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(256)
    small.save(path, optimize=True)
    return path


def mnist_curves(epochs: float = 6, out: Path = IMAGES / "mnist_curves.png") -> Path:
    """Train (or reuse) short ``mlp`` and ``cnn`` runs with a held-out validation set and plot their curves."""
    from vislab.core.logging import pyplot, read_metrics_csv, save_figure
    from vislab.mnist.recipes import resolve_config
    from vislab.mnist.train import train

    plt = pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(8, 3))
    for model in ("mlp", "cnn"):
        run = ROOT / "runs" / f"docs_mnist_{model}"
        if not (run / "result.json").exists():
            config = resolve_config(model, {"epochs": epochs, "val_size": 5000, "device": "cpu"})
            train(config, run, resume=True)
        rows = read_metrics_csv(run / "metrics.csv")
        epoch = [r["epoch"] for r in rows]
        ax_loss.plot(epoch, [r["val_loss"] for r in rows], marker="o", label=model)
        ax_acc.plot(epoch, [r["val_acc"] for r in rows], marker="o", label=model)
    ax_loss.set(xlabel="epoch", ylabel="validation loss", yscale="log")
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"MNIST: the mlp and cnn recipes run for {epochs:g} epochs, validated on 5,000 held-out "
                 "training images\n(the cnn trains with label smoothing, so its loss stays higher)", fontsize=10)
    fig.tight_layout()
    return shrink(save_figure(fig, out))


def stereo_motorcycle(out: Path = IMAGES / "stereo_motorcycle.png") -> Path:
    """Left image, ground truth, shipped PSMNet and SGBM disparities on the Motorcycle pair, one scale."""
    from vislab.core.logging import pyplot, save_figure
    from vislab.stereo import load_example, predict_disparity, stereo_metrics
    from vislab.stereo.visualize import colorize_disparity

    left, right, gt, _camera = load_example("motorcycle")
    valid = np.isfinite(gt)
    scale = float(np.nanmax(gt))
    panels = [("left image", left), ("ground truth", colorize_disparity(np.nan_to_num(gt), scale))]
    for method, name in (("psmnet", "shipped PSMNet"), ("sgbm", "OpenCV SGBM")):
        pred = predict_disparity(left, right, method=method).disparity
        m = stereo_metrics(pred, np.nan_to_num(gt), valid)
        panels.append((f"{name}: EPE {m['epe']:.2f} px, D1 {m['d1']:.1f} %", colorize_disparity(pred, scale)))
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(12, 2.6))
    for ax, (title, image) in zip(axes, panels, strict=True):
        ax.imshow(image)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return shrink(save_figure(fig, out))


def lab_notebook(notebook: Path, start: str = "**Exercise 1-1.**", out: Path = IMAGES / "lab_notebook.png"
                 ) -> Path | None:
    """Screenshot one exercise of an executed lab notebook: run it top to bottom in quick mode
    (``VISLAB_QUICK=1``: a few hundred images, one epoch), keep the cells from the markdown cell that starts
    with ``start`` to the next ``##`` heading, render them with ``jupyter nbconvert --to html`` and shoot the
    top of the page with headless Chromium."""
    import os

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None or shutil.which("jupyter") is None:
        print("lab_notebook.png skipped: needs `jupyter nbconvert` and Chromium (apt-get install chromium)")
        return None
    import nbformat

    with tempfile.TemporaryDirectory() as tmp:
        executed = Path(tmp) / "executed.ipynb"
        env = {**os.environ, "VISLAB_QUICK": "1"}
        subprocess.run(["jupyter", "nbconvert", "--to", "notebook", "--execute", "--output", str(executed),
                        "--ExecutePreprocessor.timeout=900", str(Path(notebook).resolve())],
                       check=True, cwd=tmp, env=env)
        nb = nbformat.read(executed, as_version=4)
        markdown = [i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"]
        first = next(i for i in markdown if nb.cells[i].source.startswith(start))
        last = next(i for i, c in enumerate(nb.cells) if i > first and "check_" in c.source) + 1  # the checker cell
        nb.cells = nb.cells[first:last]
        part = Path(tmp) / "section.ipynb"
        nbformat.write(nb, part)
        subprocess.run(["jupyter", "nbconvert", "--to", "html", str(part)], check=True, cwd=tmp)
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=1000,1500", "--virtual-time-budget=15000", f"--screenshot={out}",
                        part.with_suffix(".html").as_uri()], check=True, cwd=tmp)
    return shrink(trim(out))


def trim(path: Path, margin: int = 16) -> Path:
    """Cut the blank page below (and beside) a screenshot's content, keeping a small margin."""
    from PIL import Image, ImageChops

    with Image.open(path) as image:
        rgb = image.convert("RGB")
    box = ImageChops.difference(rgb, Image.new("RGB", rgb.size, (255, 255, 255))).getbbox()
    if box:
        left, top, right, bottom = box
        rgb = rgb.crop((max(left - margin, 0), max(top - margin, 0), min(right + margin, rgb.width),
                        min(bottom + margin, rgb.height)))
    rgb.save(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("mnist", "stereo", "notebook"), help="make one picture only")
    parser.add_argument("--epochs", type=float, default=6, help="epochs of the two MNIST runs (default 6)")
    parser.add_argument("--notebook", type=Path, default=ROOT / "vislab/labs/notebooks/lab1_mnist_solution.ipynb",
                        help="the lab notebook to run and screenshot (default: lab 1's solution)")
    args = parser.parse_args()
    IMAGES.mkdir(exist_ok=True)
    if args.only in (None, "stereo"):
        print(stereo_motorcycle())
    if args.only in (None, "mnist"):
        print(mnist_curves(args.epochs))
    if args.only in (None, "notebook"):
        print(lab_notebook(args.notebook))


if __name__ == "__main__":
    main()
