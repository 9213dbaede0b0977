"""Data-parallel training: two gloo processes under torchrun stay in sync, and only rank 0 writes."""

import json
import os
import subprocess
import sys

import pytest
import torch

from vislab.core.checkpoint import load_checkpoint
from vislab.core.logging import read_metrics_csv
from vislab.stereo.models import create_model
from vislab.stereo.train import state_dict_sha256


def _torchrun(out, nproc: int = 2, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "vislab", "stereo", "train", "--dataset", "synthetic", "--model", "basic", "--max-disp", "16",
           "--crop", "32x64", "--batch-size", "4", "--synthetic-size", "8",
           "--seed", "5", "--device", "cpu", "--out", str(out), *extra]
    env = {**os.environ, "VISLAB_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
def test_two_gloo_processes_hold_identical_weights_and_only_rank0_writes(tmp_path):
    out = tmp_path / "ddp"
    proc = _torchrun(out, 2, "--iters", "3", "--save-every", "1")
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-3000:]
    check = json.loads((out / "ddp_check.json").read_text())
    assert check["world_size"] == 2 and check["in_sync"]
    assert check["parameters_sha256"][0] == check["parameters_sha256"][1]
    # Rank 0's checkpoint holds exactly the weights both ranks ended with.
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["iteration"] == 3
    model = create_model("basic", max_disp=16)
    assert state_dict_sha256(ckpt["model"], model) == check["parameters_sha256"][0]
    # Only rank 0 logs: one CSV row per step (two writers would append twice), one TensorBoard file.
    rows = [r for r in read_metrics_csv(out / "metrics.csv") if "loss" in r]
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3]
    assert len(list((out / "tb").glob("events.out.tfevents.*"))) == 1
    assert proc.stdout.count("training basic") == 1
    assert "2 processes" in proc.stdout
    # The weights moved away from the seeded initialisation.
    torch.manual_seed(5)
    assert state_dict_sha256(create_model("basic", max_disp=16).state_dict(), model) != check["parameters_sha256"][0]


def test_batch_size_must_split_over_processes(tmp_path):
    proc = _torchrun(tmp_path / "bad", 2, "--iters", "1", "--batch-size", "3")
    assert proc.returncode != 0
    assert "not divisible by the 2 processes" in proc.stderr
