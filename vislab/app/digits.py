"""The Digits tab: read a drawing (or a photo) of one digit with each available MNIST model.

Pure functions of plain values (no Gradio import), so the tab is unit-testable; ``server.py`` wires them up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vislab.app.uploads import open_upload
from vislab.core.errors import VislabError
from vislab.mnist.predict import predict_digit

# The 28x28 image is shown enlarged by an integer factor, nearest-neighbour, so each MNIST pixel stays a square.
SEEN_ZOOM = 8
# A drawing or photo larger than this is refused before it is decoded (a decompression bomb, a panorama).
MAX_DIGIT_PIXELS = 40_000_000


@dataclass
class DigitsOutput:
    """What the Digits tab shows: a status line, the enlarged 28x28 input, one probability dict per model,
    and the JSON the ``predict_digit`` endpoint returns."""

    status: str
    seen: np.ndarray
    labels: list[dict[str, float]]
    data: dict[str, Any] = field(default_factory=dict)


def sketch_to_image(sketch: Any) -> np.ndarray | None:
    """The image a sketchpad value stands for, or None when there is none.

    ``sketch`` is Gradio's ImageEditor value, ``{"background", "layers", "composite"}`` with RGBA arrays; the
    composite already holds the strokes over the background (an untouched canvas sends a blank one, which
    ``preprocess_digit_image`` then finds empty). A plain array passes through.
    """
    if sketch is None:
        return None
    if isinstance(sketch, dict):
        composite = sketch.get("composite")
        return None if composite is None else np.asarray(composite)
    return np.asarray(sketch)


def open_photo(path: str | os.PathLike) -> Image.Image:
    """An uploaded photo of a digit, decoded; VislabError with a one-line reason when it is not a usable image."""
    return open_upload(path, max_pixels=MAX_DIGIT_PIXELS, name="the photo", described=Path(path).name,
                       advice="upload a PNG or JPEG photo of one digit")


def enlarge(seen: np.ndarray, zoom: int = SEEN_ZOOM) -> np.ndarray:
    """(28, 28) floats in [0, 1] -> uint8 (28*zoom, 28*zoom) grey, each pixel a zoom x zoom square."""
    grey = np.clip(np.round(np.asarray(seen, np.float32) * 255), 0, 255).astype(np.uint8)
    return np.kron(grey, np.ones((zoom, zoom), np.uint8))


def read_digit(sketch: Any, photo: str | os.PathLike | None, checkpoints: list[Path] | None = None,
               device: str = "auto") -> DigitsOutput:
    """Classify the uploaded photo if there is one, else the drawing, with every model in ``checkpoints``.

    Raises:
        VislabError: nothing drawn or uploaded, an unreadable or empty image, a bad checkpoint.
    """
    if photo:
        image: Any = open_photo(photo)
        source = f"the uploaded photo ({Path(photo).name}; clear it to read the drawing)"
    else:
        image = sketch_to_image(sketch)
        if image is None:
            raise VislabError("nothing to read: draw a digit on the sketchpad (or upload a photo), then Predict")
        source = "the drawing"
    try:
        results = predict_digit(image, checkpoints=checkpoints, device=device)
    except VislabError as exc:
        if "looks empty" in str(exc) and not photo:
            raise VislabError("the drawing is empty: draw a digit with the brush, then Predict") from None
        raise
    verdicts = ", ".join(f"{r.model} reads {r.digit} (p={r.probabilities[r.digit]:.2f})" for r in results)
    data = {"source": "photo" if photo else "drawing",
            "models": [{"model": r.model, "checkpoint": Path(r.checkpoint).name, "digit": r.digit,
                        "probabilities": [round(p, 6) for p in r.probabilities]} for r in results]}
    return DigitsOutput(status=f"Read {source}: {verdicts}.", seen=enlarge(results[0].image),
                        labels=[{str(d): float(p) for d, p in enumerate(r.probabilities)} for r in results],
                        data=data)
