"""The MNIST weights shipped with vislab (``mlp`` and ``cnn``; see README.md in this folder for the model card).

They let ``vislab app`` and ``vislab.mnist.predict.predict_digit`` work on a fresh clone. Each file is a
vislab MNIST checkpoint reduced to what inference needs (``export_weights``): the model, its name and
arguments, the training config, epoch and metric history; no optimizer, scheduler or RNG state.
"""

from __future__ import annotations

from pathlib import Path

PRETRAINED_DIR = Path(__file__).resolve().parent
SHIPPED = ("mlp", "cnn")  # the order the app lists them in
# What a shipped file keeps of a training checkpoint: enough to load, and to tell how it was trained.
KEPT_KEYS = ("task", "model", "model_name", "model_kwargs", "config", "epoch", "best_acc", "metrics",
             "vislab_version")


def checkpoint_path(name: str) -> Path:
    """Path of the shipped checkpoint of model ``name`` (it may not exist)."""
    return PRETRAINED_DIR / f"mnist_{name}.pt"


def shipped_checkpoints() -> list[Path]:
    """The shipped checkpoints that exist, ``mlp`` then ``cnn``."""
    return [p for p in (checkpoint_path(n) for n in SHIPPED) if p.is_file()]


def export_weights(src: str | Path, dst: str | Path) -> Path:
    """Write the inference part of the training checkpoint ``src`` to ``dst`` (atomically), as shipped here."""
    from vislab.core.checkpoint import load_checkpoint, save_atomic
    from vislab.mnist.models import load_mnist_model

    load_mnist_model(src)  # refuses anything that is not a loadable MNIST checkpoint, with a one-line error
    ckpt = load_checkpoint(src)
    dst = Path(dst)
    save_atomic({k: ckpt[k] for k in KEPT_KEYS if k in ckpt}, dst)
    return dst
