"""Stereo datasets by name: ``create_dataset("kitti2015", root, split="training", transform=...)``.

Each dataset lives in its own module, imported only when asked for, so a broken or missing module (e.g.
the synthetic generator) cannot break the others. A module registers its class with
``@register_dataset(name)`` from ``vislab.stereo.datasets.base``.
"""

import importlib
from pathlib import Path

from vislab.core.errors import VislabError
from vislab.stereo.datasets.base import DATASET_CLASSES, StereoDataset, StereoPair, register_dataset

# name -> module (relative to this package) that defines it
_MODULES = {
    "kitti2015": "kitti",
    "kitti2012": "kitti",
    "sceneflow": "sceneflow",
    "middlebury2014": "middlebury",
    "eth3d": "eth3d",
    "synthetic": "synthetic",
}

__all__ = ["StereoDataset", "StereoPair", "create_dataset", "dataset_class", "list_datasets", "register_dataset"]


def list_datasets() -> list[str]:
    """Names accepted by ``create_dataset`` (and by ``--dataset`` on the command line)."""
    return sorted(_MODULES)


def dataset_class(name: str) -> type[StereoDataset]:
    """Import the module that defines dataset ``name`` and return its class."""
    if name not in _MODULES:
        raise VislabError(f"unknown dataset {name!r}; choose one of {', '.join(list_datasets())}")
    module_name = f"{__name__}.{_MODULES[name]}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise VislabError(f"dataset {name!r} is not available: module {module_name} is missing") from exc
        raise
    if name in DATASET_CLASSES:
        return DATASET_CLASSES[name]
    # a module that does not use the decorator: take its one StereoDataset subclass
    found = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, StereoDataset)
             and v is not StereoDataset and v.__module__ == module.__name__]
    if len(found) != 1:
        raise VislabError(f"dataset {name!r}: module {module_name} defines no single registered dataset class")
    return found[0]


def create_dataset(name: str, root: str | Path | None, split: str = "training", transform=None,
                   **kwargs) -> StereoDataset:
    """Build dataset ``name`` from its root folder (see each class's docstring for the expected layout).

    ``transform`` is a joint transform called as ``transform(sample, rng)`` (see ``vislab.stereo.transforms``);
    ``kwargs`` are dataset options such as ``pass_="final"``, ``subsets=["driving"]``, ``resolution="H"``,
    ``nonocc=True``, ``occ=False`` or ``seed`` (the augmentation seed).
    """
    cls = dataset_class(name)
    try:
        return cls(root, split=split, transform=transform, **kwargs)
    except TypeError as exc:
        if "argument" in str(exc):  # an option this dataset does not take
            raise VislabError(f"dataset {name!r}: {exc}") from exc
        raise
