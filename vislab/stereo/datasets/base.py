"""The stereo dataset base class: subclasses only discover their files and say how to read a disparity map.

A sample is a dict ``{"left", "right": float32 (3, H, W) RGB in [0, 1], "disp": float32 (H, W) with 0 where
unknown, "valid": bool (H, W), "name": str}``. The optional joint transform is called as
``transform(sample, rng)`` with a ``numpy.random.Generator`` seeded from ``(seed, epoch, index)``: the same
index in the same epoch always gets the same augmentation, whichever data-loader worker reads it, so runs are
reproducible and a resumed run continues with the augmentations it would have seen.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vislab.core.errors import VislabError
from vislab.stereo.io import read_image

Sample = dict[str, Any]
Transform = Callable[[Sample, np.random.Generator], Sample]

DATASET_CLASSES: dict[str, type["StereoDataset"]] = {}


def register_dataset(name: str) -> Callable[[type["StereoDataset"]], type["StereoDataset"]]:
    """Class decorator: make a dataset available to ``create_dataset(name, ...)``."""

    def deco(cls: type[StereoDataset]) -> type[StereoDataset]:
        DATASET_CLASSES[name] = cls
        cls.dataset_name = name
        return cls

    return deco


@dataclass(frozen=True)
class StereoPair:
    """One discovered sample: image paths, the ground-truth path (None on test splits) and an optional mask."""

    name: str
    left: Path
    right: Path
    disp: Path | None = None
    mask: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class StereoDataset(torch.utils.data.Dataset):
    """Base class: ``self.samples`` is filled by ``discover()`` at construction; ``read_disparity`` reads GT."""

    dataset_name = "stereo"

    def __init__(self, root: str | Path | None, split: str = "training", transform: Transform | None = None,
                 seed: int = 0):
        self.root = Path(root).expanduser() if root is not None else None
        self.split = split
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0
        if self.root is None:  # only generated datasets (which override __init__) live without files
            raise VislabError(f"{self.dataset_name}: a dataset root folder is required (--root)")
        if not self.root.is_dir():
            raise VislabError(f"{self.dataset_name}: dataset root not found: {self.root}")
        self.samples: list[StereoPair] = list(self.discover())
        if not self.samples:
            raise VislabError(f"{self.dataset_name}: no stereo pairs found under {self.root} "
                              f"(split {split!r}); expected {self.expected_layout()}")

    # -- what subclasses provide -------------------------------------------------------------------

    def discover(self) -> list[StereoPair]:
        """List the pairs of this split; raise VislabError naming the folder when the layout is wrong."""
        raise NotImplementedError

    def expected_layout(self) -> str:
        """A one-line description of the folder layout, used in error messages."""
        return "the dataset's official folder layout"

    def read_disparity(self, pair: StereoPair) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(disp float32 (H, W), valid bool (H, W))`` for a pair that has ground truth."""
        raise NotImplementedError

    # -- shared machinery --------------------------------------------------------------------------

    @property
    def has_disparity(self) -> bool:
        """True when every sample has ground truth (training splits)."""
        return all(p.disp is not None for p in self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation stream (call at the start of every epoch, as with DistributedSampler)."""
        self.epoch = int(epoch)

    def rng_for(self, index: int) -> np.random.Generator:
        """The generator for sample ``index`` in the current epoch (independent of worker and order)."""
        return np.random.default_rng([self.seed, self.epoch, index])

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> Sample:
        """Read sample ``index`` without the transform."""
        pair = self.samples[index]
        left, right = read_image(pair.left), read_image(pair.right)
        if left.shape != right.shape:
            raise VislabError(f"{self.dataset_name}: left/right size mismatch for {pair.name}: "
                              f"{pair.left} is {left.shape[1]}x{left.shape[0]}, "
                              f"{pair.right} is {right.shape[1]}x{right.shape[0]}")
        h, w = left.shape[:2]
        if pair.disp is not None:
            disp, valid = self.read_disparity(pair)
            if disp.shape != (h, w):
                raise VislabError(f"{self.dataset_name}: disparity {pair.disp} is {disp.shape[1]}x{disp.shape[0]}, "
                                  f"image {pair.left} is {w}x{h}")
            valid = valid & np.isfinite(disp) & (disp > 0)
            disp = np.where(valid, disp, 0.0).astype(np.float32)
        else:
            disp = np.zeros((h, w), np.float32)
            valid = np.zeros((h, w), bool)
        return {
            "left": torch.from_numpy(np.ascontiguousarray(left.transpose(2, 0, 1))),
            "right": torch.from_numpy(np.ascontiguousarray(right.transpose(2, 0, 1))),
            "disp": torch.from_numpy(disp),
            "valid": torch.from_numpy(valid),
            "name": pair.name,
        }

    def __getitem__(self, index: int) -> Sample:
        sample = self.load(index)
        if self.transform is not None:
            sample = self.transform(sample, self.rng_for(index))
        return sample

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"


def require_dir(path: Path, dataset: str, what: str) -> Path:
    """Return ``path`` if it is a folder, else raise a one-line VislabError saying what was expected there."""
    if not path.is_dir():
        raise VislabError(f"{dataset}: expected folder {path} ({what})")
    return path


def pair_files(left_dir: Path, right_dir: Path, dataset: str, pattern: str = "*.png") -> list[tuple[Path, Path]]:
    """Match files in ``left_dir`` to same-named files in ``right_dir``; a missing right image is an error."""
    pairs = []
    for left in sorted(left_dir.glob(pattern)):
        right = right_dir / left.name
        if not right.is_file():
            raise VislabError(f"{dataset}: right image missing for {left}: expected {right}")
        pairs.append((left, right))
    return pairs
