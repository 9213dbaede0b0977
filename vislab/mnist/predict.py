"""``vislab mnist predict``: classify photos or drawings of single digits with a trained checkpoint."""

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from vislab.core.device import pick_device
from vislab.core.errors import VislabError, require_file
from vislab.mnist.data import MEAN, STD, preprocess_digit_image
from vislab.mnist.models import load_mnist_model


@dataclass
class Prediction:
    path: str
    digit: int
    probabilities: list[float]


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


@torch.no_grad()
def predict_images(checkpoint: str | Path, paths: list[str], device_name: str = "auto") -> list[Prediction]:
    """The most likely digit and all ten probabilities for each image in ``paths``."""
    device = pick_device(device_name)
    model, _ = load_mnist_model(checkpoint, device)
    batch = torch.stack([read_digit_image(p) for p in paths]).to(device)
    probs = model(batch).float().exp().cpu()
    return [Prediction(str(p), int(pr.argmax()), pr.tolist()) for p, pr in zip(paths, probs, strict=True)]


def run_predict(args: argparse.Namespace) -> int:
    """``vislab mnist predict CHECKPOINT IMAGE...``: one line per image."""
    for pred in predict_images(args.checkpoint, args.images, args.device):
        probs = " ".join(f"{d}:{p:.3f}" for d, p in enumerate(pred.probabilities))
        print(f"{pred.path}: {pred.digit} (p={pred.probabilities[pred.digit]:.3f})  [{probs}]")
    return 0
