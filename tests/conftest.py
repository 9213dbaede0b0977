"""Shared fixtures: paths to the bundled MNIST copy and to the real stereo pairs in ../shared."""

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = Path(os.environ.get("VISLAB_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))

os.environ.setdefault("VISLAB_NO_PROGRESS", "1")


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    return REPO / "data" / "mnist"


@pytest.fixture(scope="session")
def stereo_samples() -> Path:
    """The real KITTI 2015 / Middlebury 2014 / FlyingThings3D pairs (test fixtures, never training data)."""
    path = SHARED_DATASETS / "stereo"
    if not path.is_dir():
        pytest.skip(f"shared stereo samples not found at {path} (set VISLAB_SHARED_DATASETS)")
    return path


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of small trainings: on a shared, loaded machine two OpenMP threads
    waiting on each other made them ~13x slower (measured). Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
