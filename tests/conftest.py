"""Shared fixtures: paths to the bundled MNIST copy and to the real stereo pairs in ../shared."""

import json
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


@pytest.fixture
def check(monkeypatch, capsys, tmp_path):
    """For the lab checkers' tests: ``check(checker, cls)`` -> (result, status, message, printed), the outcome
    read back from the grader's log (exactly one record, under the checker's own name, and no traceback)."""
    from vislab.labs.checkers import CHECK_LOG_ENV

    log = tmp_path / "checks.jsonl"
    monkeypatch.setenv(CHECK_LOG_ENV, str(log))

    def run(checker, cls):
        capsys.readouterr()
        result = checker(cls)
        printed = capsys.readouterr().out
        records = [json.loads(line) for line in log.read_text().splitlines()]
        log.unlink()
        assert len(records) == 1 and records[0]["name"] == checker.__name__
        assert result is (records[0]["status"] == "passed")
        assert "Traceback" not in printed
        return result, records[0]["status"], records[0]["message"], printed

    return run
