"""MNIST data: validated IDX reading, in-memory splits, index batching, batch augmentation, user digits.

The whole training set lives in memory as one tensor (60,000 x 28 x 28 bytes = 47 MB) and batches are
taken by indexing it, which on MNIST is far faster than a per-sample ``DataLoader``. Every random
choice (shuffling, augmentation) comes from an explicit ``torch.Generator`` so that a run can be
reproduced, and resumed by saving and restoring the generator state.

The bundled copy lives in ``<repo>/data/mnist`` (wheels install it under ``<prefix>/share/vislab/mnist``);
``VISLAB_MNIST_DIR`` or ``--data DIR`` point elsewhere.
Folder layout (each file either gzip-compressed with ``.gz`` or raw without it)::

    DIR/
      train-images-idx3-ubyte.gz   60000 x 28 x 28 uint8
      train-labels-idx1-ubyte.gz   60000 labels 0..9
      t10k-images-idx3-ubyte.gz    10000 x 28 x 28 uint8
      t10k-labels-idx1-ubyte.gz    10000 labels 0..9
"""

from __future__ import annotations

import gzip
import math
import os
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from scipy import ndimage

from vislab.core.errors import VislabError

MEAN, STD = 0.1307, 0.3081
SIZE = 28  # MNIST images are 28 x 28
NUM_CLASSES = 10
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801  # unsigned-byte data with 3 and 1 dimensions
_GZIP_MAGIC = b"\x1f\x8b"
_DOWNLOAD_HINT = "pass --data DIR or fetch a copy with `vislab mnist download DIR`"


def default_data_dir() -> Path:
    """``$VISLAB_MNIST_DIR`` if set, else the bundled copy: ``<repo root>/data/mnist`` in a source checkout or
    editable install, ``<prefix>/share/vislab/mnist`` where a wheel installed it."""
    env = os.environ.get("VISLAB_MNIST_DIR")
    if env:
        return Path(env).expanduser()
    checkout = Path(__file__).resolve().parents[2] / "data" / "mnist"
    installed = Path(sys.prefix) / "share" / "vislab" / "mnist"
    return installed if not checkout.is_dir() and installed.is_dir() else checkout


def read_idx(path: str | Path) -> np.ndarray:
    """Read one MNIST IDX file (gzip-compressed or raw) into a uint8 array, validating it completely.

    Checks the magic number (0x803 images with 3 dimensions, 0x801 labels with 1), 28 x 28 images,
    a file length of exactly header + data (truncated or trailing bytes are corruption), and labels
    in 0..9. Any problem raises ``VislabError`` naming the file.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise VislabError(f"MNIST file not found: {path}; {_DOWNLOAD_HINT}") from None
    except OSError as exc:
        raise VislabError(f"cannot read MNIST file {path}: {exc.strerror or exc}") from None
    # Sniff the content as well as the name: download temp files have no .gz suffix.
    if path.suffix == ".gz" or raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise VislabError(f"corrupt MNIST file {path}: bad gzip stream ({exc})") from None
    return _parse_idx(raw, path)


def _parse_idx(data: bytes, path: Path) -> np.ndarray:
    def corrupt(problem: str) -> VislabError:
        return VislabError(f"corrupt MNIST file {path}: {problem}")

    if len(data) < 4:
        raise corrupt(f"only {len(data)} bytes, too short for an IDX header")
    magic = int.from_bytes(data[:4], "big")
    if magic not in (IMAGES_MAGIC, LABELS_MAGIC):
        raise corrupt(f"bad magic number 0x{magic:08x} (expected 0x{IMAGES_MAGIC:08x} for images "
                      f"or 0x{LABELS_MAGIC:08x} for labels)")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise corrupt(f"truncated header ({len(data)} of {header} bytes)")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if ndim == 3 and dims[1:] != (SIZE, SIZE):
        raise corrupt(f"images are {dims[1]}x{dims[2]}, expected {SIZE}x{SIZE}")
    expected = header + math.prod(dims)
    if len(data) < expected:
        raise corrupt(f"truncated: {len(data)} bytes, header says {expected}")
    if len(data) > expected:
        raise corrupt(f"{len(data) - expected} trailing bytes after the {expected} the header announces")
    # copy() makes the array writable (torch.from_numpy warns on read-only buffers).
    array = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()
    if ndim == 1 and array.size and int(array.max()) >= NUM_CLASSES:
        bad = int(np.argmax(array >= NUM_CLASSES))
        raise corrupt(f"label {int(array[bad])} at index {bad} is outside 0..{NUM_CLASSES - 1}")
    return array


def find_file(data_dir: str | Path, stem: str) -> Path:
    """The path of ``stem.gz`` or raw ``stem`` in ``data_dir``; VislabError with a hint if neither exists."""
    data_dir = Path(data_dir)
    for name in (f"{stem}.gz", stem):
        if (data_dir / name).is_file():
            return data_dir / name
    if not data_dir.is_dir():
        raise VislabError(f"MNIST data folder not found: {data_dir}; {_DOWNLOAD_HINT}")
    raise VislabError(f"MNIST file {stem}.gz (or raw {stem}) not found in {data_dir}; {_DOWNLOAD_HINT}")


def load_mnist(data_dir: str | Path | None, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 (N, 28, 28) and labels int64 (N,) of ``split`` ("train" or "test").

    ``data_dir`` None means ``default_data_dir()``. Nothing is cached on disk: reading the 60k
    training set takes about a quarter of a second, almost all of it gzip.
    """
    if split not in SPLIT_FILES:
        raise VislabError(f"unknown MNIST split {split!r}; expected one of {', '.join(SPLIT_FILES)}")
    data_dir = default_data_dir() if data_dir is None else Path(data_dir)
    images_path, labels_path = (find_file(data_dir, stem) for stem in SPLIT_FILES[split])
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise VislabError(f"corrupt MNIST file {images_path}: holds labels, expected images")
    if labels.ndim != 1:
        raise VislabError(f"corrupt MNIST file {labels_path}: holds images, expected labels")
    if len(images) != len(labels):
        raise VislabError(f"MNIST count mismatch: {images_path} has {len(images)} images but "
                          f"{labels_path} has {len(labels)} labels")
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


def normalize(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) or (N, 1, 28, 28) to float32 (N, 1, 28, 28) as (x / 255 - MEAN) / STD."""
    x = images_uint8.to(torch.float32)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    return x.div_(255.0).sub_(MEAN).div_(STD)


@dataclass
class MnistSplits:
    """Normalised float32 images (N, 1, 28, 28) and int64 labels; ``val_*`` is None without a validation split."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor | None
    val_y: torch.Tensor | None
    test_x: torch.Tensor
    test_y: torch.Tensor


def load_splits(data_dir: str | Path | None = None, val_size: int = 0) -> MnistSplits:
    """Train / validation / test, normalised; the validation set is the LAST ``val_size`` training images."""
    train_x, train_y = load_mnist(data_dir, "train")
    test_x, test_y = load_mnist(data_dir, "test")
    if not 0 <= val_size < len(train_x):
        raise VislabError(f"validation size {val_size} must be between 0 and {len(train_x) - 1}")
    cut = len(train_x) - val_size
    val_x = normalize(train_x[cut:]) if val_size else None
    val_y = train_y[cut:].clone() if val_size else None
    return MnistSplits(normalize(train_x[:cut]), train_y[:cut].clone(), val_x, val_y,
                       normalize(test_x), test_y)


def iterate_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool,
                    generator: torch.Generator | None = None,
                    drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x[idx], y[idx])`` batches covering every sample once (a permutation when ``shuffle``).

    The permutation is drawn from ``generator`` when the iterator starts, so saving the generator
    state before an epoch is enough to replay that epoch exactly.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
    n = len(x)
    order = torch.randperm(n, generator=generator).to(x.device) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        if order is None:  # slices are views: no copy for evaluation passes
            yield x[start:start + batch_size], y[start:start + batch_size]
        else:
            idx = order[start:start + batch_size]
            yield x[idx], y[idx.to(y.device)]


def augment_batch(x: torch.Tensor, generator: torch.Generator, max_shift: float = 2.0,
                  max_rotate_deg: float = 10.0, max_scale: float = 0.1) -> torch.Tensor:
    """A random small affine warp per image (shift in pixels, rotation, scale), for a whole batch at once.

    Args:
        x: images (N, 1, H, W), normalised or not; the area uncovered by the warp is filled with each
            image's minimum (its background).
        generator: source of all randomness (CPU or on x's device); same state gives the same output.
        max_shift: largest translation in pixels along each axis.
        max_rotate_deg: largest rotation in degrees, either direction.
        max_scale: relative zoom range, e.g. 0.1 for 0.9 .. 1.1.
    """
    n, _, h, w = x.shape
    u = torch.rand(n, 4, generator=generator, device=generator.device).to(x.device, torch.float32) * 2 - 1
    angle = u[:, 0] * math.radians(max_rotate_deg)
    scale = 1 + u[:, 1] * max_scale
    # affine_grid maps output to input coordinates in [-1, 1]: one pixel is 2 / size.
    tx, ty = u[:, 2] * max_shift * 2 / w, u[:, 3] * max_shift * 2 / h
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    background = x.amin(dim=(1, 2, 3), keepdim=True)
    # Zero padding of (x - background) fills with the background value, normalised or not.
    return F.grid_sample(x - background, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False) + background


def preprocess_digit_image(img: Image.Image | np.ndarray) -> torch.Tensor:
    """Turn a user's photo or drawing of one digit into an MNIST-like float32 (1, 28, 28) in [0, 1].

    Follows how MNIST itself was made: turned upright (EXIF orientation), grayscale, light digit on dark
    (inverted when the pixels that depart most from the border's level are darker than it), background
    (lighting, noise) removed, cropped to the digit's bounding box, resized anti-aliased to fit 20 x 20
    keeping the aspect ratio, its brightest ink set to 1, and placed in 28 x 28 so that its centre of mass
    lies at the centre (pixel 14, 14, as in MNIST).
    Not normalised: apply ``(x - MEAN) / STD`` before a model.
    """
    gray = _to_gray(img)
    if gray.ndim != 2 or min(gray.shape) < 2:
        raise VislabError(f"expected a 2-D image of a digit, got shape {gray.shape}")
    if max(gray.shape) > 1024:  # a camera photo: 1024 px is plenty for a 20 px digit and much faster
        f = 1024 / max(gray.shape)
        size = (max(2, round(gray.shape[0] * f)), max(2, round(gray.shape[1] * f)))
        gray = F.interpolate(torch.from_numpy(gray)[None, None], size=size, mode="area")[0, 0].numpy()
    ink = _ink_layer(gray)
    rows, cols = np.nonzero(ink.any(axis=1))[0], np.nonzero(ink.any(axis=0))[0]
    ink = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]

    h, w = ink.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    box = F.interpolate(torch.from_numpy(ink)[None, None].float(), size=size, mode="bilinear",
                        align_corners=False, antialias=True)[0, 0].clamp_(0, 1)
    # Shrinking averages a stroke that is thin for the digit's size (a pen on a large page) into a faint
    # smear; MNIST's strokes peak at full ink (9 in 10 test digits reach 255), so the peak goes back to 1.
    box = (box / box.max()).clamp_(0, 1)

    mass = box.sum()
    cy = float((box.sum(1) * torch.arange(size[0])).sum() / mass)
    cx = float((box.sum(0) * torch.arange(size[1])).sum() / mass)
    # Integer shift like MNIST (no resampling blur); clamp so no ink is pushed out of the frame.
    top = min(max(round(SIZE / 2 - cy), 0), SIZE - size[0])
    left = min(max(round(SIZE / 2 - cx), 0), SIZE - size[1])
    out = torch.zeros(1, SIZE, SIZE)
    out[0, top:top + size[0], left:left + size[1]] = box
    return out


def _ink_layer(gray: np.ndarray) -> np.ndarray:
    """Light-on-dark ink in [0, 1] with the background at exactly 0, intensities kept (no binarisation).

    The border is taken as paper: a plane fitted to it absorbs uneven lighting, a floor (four times the
    border's robust noise sigma, at least 5% of the contrast) is subtracted, and specks much smaller
    than the digit's largest stroke are dropped, so the bounding box is the digit's, not the noise's.
    """
    border_mask = np.zeros(gray.shape, bool)
    border_mask[[0, -1], :] = border_mask[:, [0, -1]] = True
    paper = np.median(gray[border_mask])
    if paper - gray.min() > gray.max() - paper:  # the ink departs from the paper downwards: dark on light
        gray = 1.0 - gray
    rr, cc = np.nonzero(border_mask)
    design = np.stack([np.ones(len(rr)), rr / gray.shape[0], cc / gray.shape[1]], 1)
    values = gray[rr, cc]
    keep = np.ones(len(values), bool)
    for _ in range(2):  # refit without outliers (ink touching the border, dust)
        coef = np.linalg.lstsq(design[keep], values[keep], rcond=None)[0]
        resid = values - design @ coef
        sigma = 1.4826 * np.median(np.abs(resid[keep] - np.median(resid[keep])))
        keep = np.abs(resid) <= max(3 * sigma, 1e-6)
    yy, xx = np.mgrid[0:gray.shape[0], 0:gray.shape[1]]
    plane = coef[0] + coef[1] * yy / gray.shape[0] + coef[2] * xx / gray.shape[1]
    ink = gray - plane
    # The floor also absorbs faint halos (JPEG ringing, a pasted patch's slightly different paper).
    ink = np.clip(ink - max(4 * sigma, 0.05 * ink.max(), 1e-6), 0.0, None)
    if ink.max() <= 0:
        raise VislabError("the image looks empty: no digit stands out from the background")
    labels, count = ndimage.label(ink > 0, structure=np.ones((3, 3)))
    if count > 1:
        mass = ndimage.sum_labels(ink, labels, index=np.arange(1, count + 1))
        small = np.nonzero(mass < 0.05 * mass.max())[0] + 1
        ink[np.isin(labels, small)] = 0.0
    return ink / ink.max()


def _to_gray(img: Image.Image | np.ndarray) -> np.ndarray:
    """Float64 grayscale in [0, 1], upright; transparent areas count as white paper."""
    if isinstance(img, Image.Image):
        # Phones store photos sideways and set the EXIF Orientation tag: a digit read raw lies on its side.
        img = ImageOps.exif_transpose(img)
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        if img.mode.startswith(("I", "F")):  # 16-bit or float scans: converting to "L" would clip them
            arr = np.asarray(img, dtype=np.float64)
            top = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
            return arr / top
        return np.asarray(img.convert("L"), dtype=np.float64) / 255.0
    arr = np.asarray(img)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.float64)
    elif np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.float64) / (65535.0 if arr.dtype == np.uint16 else 255.0)
    else:
        arr = arr.astype(np.float64)
        if arr.size and np.nanmax(arr) > 1.0:  # float images given on a 0..255 scale
            arr = arr / 255.0
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        rgb, alpha = arr[..., :3], (arr[..., 3:] if arr.shape[2] == 4 else 1.0)
        arr = (rgb * alpha + (1.0 - alpha)) @ np.array([0.299, 0.587, 0.114])
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    return np.nan_to_num(arr, nan=0.0)
