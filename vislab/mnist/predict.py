"""Classify photos or drawings of single digits: the typed API (``predict_digit``) and ``vislab mnist predict``.

``predict_digit`` is what the app and the notebooks call; the CLI is a thin caller of the same functions::

    from vislab.mnist.predict import predict_digit
    for r in predict_digit("my_digit.png"):        # the shipped mlp and cnn unless checkpoints=[...]
        print(r.model, r.digit, r.probabilities[r.digit])
    r.image                                        # the 28x28 image the model saw (after preprocessing)
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from vislab.core.checkpoint import LoadedCache
from vislab.core.device import pick_device
from vislab.core.errors import VislabError, require_file
from vislab.mnist.data import MEAN, STD, preprocess_digit_image
from vislab.mnist.models import load_mnist_model

DigitInput = str | os.PathLike | Image.Image | np.ndarray


@dataclass
class Prediction:
    path: str
    digit: int
    probabilities: list[float]


@dataclass(frozen=True)
class DigitResult:
    """One model's reading of one digit image.

    Attributes:
        model: the model's registry name (``mlp``, ``cnn``, ...).
        checkpoint: the checkpoint file the weights came from.
        digit: the most likely digit.
        probabilities: the ten class probabilities (sum 1).
        image: float32 (28, 28) in [0, 1], light ink on black: the preprocessed image the model saw,
            before the ``(x - MEAN) / STD`` normalisation.
    """

    model: str
    checkpoint: str
    digit: int
    probabilities: list[float]
    image: np.ndarray


def read_digit_image(path: str | Path) -> torch.Tensor:
    """An image file as a normalised (1, 28, 28) MNIST-like tensor; VislabError naming the file if unreadable."""
    path = Path(path)
    require_file(path, "image")
    try:
        with Image.open(path) as img:
            img.load()
            x = preprocess_digit_image(img)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise VislabError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from None
    except VislabError as exc:
        raise VislabError(f"{path}: {exc}") from None
    return (x - MEAN) / STD


def default_checkpoints() -> list[Path]:
    """The MNIST checkpoints shipped inside the package (``mlp`` and ``cnn``), those that exist."""
    from vislab.mnist.pretrained import shipped_checkpoints

    return shipped_checkpoints()


# Bounded: a long-running app may be given many checkpoints over time.
_MODELS: LoadedCache[tuple[torch.nn.Module, dict]] = LoadedCache(limit=16)


def load_cached_model(checkpoint: str | os.PathLike, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """``load_mnist_model``, loaded once per process (and again when the file is rewritten in place)."""
    require_file(Path(checkpoint), "checkpoint")
    return _MODELS.get(checkpoint, (str(device),), lambda: load_mnist_model(checkpoint, device))


def _as_image(image: DigitInput) -> Image.Image | np.ndarray:
    """A path is opened (VislabError naming it when unreadable); images and arrays pass through."""
    if isinstance(image, (Image.Image, np.ndarray)):
        return image
    path = Path(image)
    require_file(path, "image")
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise VislabError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from None


@torch.no_grad()
def predict_digit(image: DigitInput, *, checkpoints: list[str | os.PathLike] | None = None,
                  device: str = "auto") -> list[DigitResult]:
    """Read one digit image with each model.

    Args:
        image: a path, a PIL image or an array (grey or RGB(A), uint8 or float; dark-on-light or
            light-on-dark), as ``preprocess_digit_image`` accepts.
        checkpoints: vislab MNIST checkpoints to use, in order; None means the shipped ``mlp`` and ``cnn``.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.

    Returns:
        one ``DigitResult`` per checkpoint, in the order given.

    Raises:
        VislabError: the image is unreadable or empty (no digit stands out), a checkpoint is missing or not
            an MNIST checkpoint, or no checkpoint is available at all.
    """
    paths = [Path(c) for c in checkpoints] if checkpoints is not None else default_checkpoints()
    if not paths:
        raise VislabError("no MNIST checkpoint given and none shipped in vislab/mnist/pretrained")
    seen = preprocess_digit_image(_as_image(image))  # (1, 28, 28) in [0, 1], shared by every model
    dev = pick_device(device)
    batch = ((seen - MEAN) / STD).unsqueeze(0).to(dev)
    picture = seen[0].numpy().astype(np.float32)
    results = []
    for path in paths:
        model, ckpt = load_cached_model(path, dev)
        probs = model(batch)[0].float().exp().cpu()
        results.append(DigitResult(str(ckpt.get("model_name", "?")), str(path), int(probs.argmax()),
                                   probs.tolist(), picture))
    return results


@torch.no_grad()
def predict_images(checkpoint: str | Path, paths: list[str], device_name: str = "auto") -> list[Prediction]:
    """The most likely digit and all ten probabilities for each image in ``paths`` (one batch, one model)."""
    device = pick_device(device_name)
    model, _ = load_cached_model(checkpoint, device)
    batch = torch.stack([read_digit_image(p) for p in paths]).to(device)
    probs = model(batch).float().exp().cpu()
    return [Prediction(str(p), int(pr.argmax()), pr.tolist()) for p, pr in zip(paths, probs, strict=True)]


def predict_images_onnx(model: str | Path, paths: list[str], device_name: str = "auto") -> list[Prediction]:
    """``predict_images`` with a graph made by ``vislab mnist export``, run by ONNX Runtime."""
    from vislab.mnist.export import MnistOnnx

    runner = MnistOnnx(model, device_name)
    # The graph normalises its [0, 1] input itself: undo read_digit_image's normalisation (1 ulp at most),
    # so both runtimes read and reject images with the same code and messages.
    batch = torch.stack([read_digit_image(p) * STD + MEAN for p in paths]).numpy()
    probs = np.exp(runner.log_probs(batch).astype(np.float64))
    return [Prediction(str(p), int(pr.argmax()), pr.tolist()) for p, pr in zip(paths, probs, strict=True)]


def run_predict(args: argparse.Namespace) -> int:
    """``vislab mnist predict CHECKPOINT IMAGE...`` (or ``--onnx MODEL.onnx IMAGE...``): one line per image."""
    onnx = getattr(args, "onnx", None)
    if onnx:  # no CHECKPOINT then: argparse gave the first image to that slot
        images = [args.checkpoint, *args.images] if args.checkpoint else list(args.images)
        predictions = predict_images_onnx(onnx, images, args.device)
    elif args.checkpoint is None:
        raise VislabError("give CHECKPOINT IMAGE... (or --onnx MODEL.onnx IMAGE...)")
    else:
        predictions = predict_images(args.checkpoint, args.images, args.device)
    for pred in predictions:
        probs = " ".join(f"{d}:{p:.3f}" for d, p in enumerate(pred.probabilities))
        print(f"{pred.path}: {pred.digit} (p={pred.probabilities[pred.digit]:.3f})  [{probs}]")
    return 0
