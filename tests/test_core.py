"""vislab.core: atomic, safe checkpoints and JSON, progress/CSV logging, one-line errors, devices, all-reduce."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import vislab
from vislab.core.checkpoint import load_checkpoint, save_atomic
from vislab.core.device import pick_device
from vislab.core.errors import VislabError
from vislab.core.logging import MetricsCSV, progress, read_metrics_csv, write_json


class Payload:
    """A custom class: pickling it into a checkpoint is exactly what weights_only loading must refuse."""


def _fail_midway(data: bytes):
    """A writer that puts part of the file down and then fails, like a full disk or a crash."""
    def write(obj, f, *args, **kwargs):
        f.write(data)
        f.flush()
        raise OSError(28, "No space left on device")
    return write


def test_failed_checkpoint_save_keeps_the_old_one_and_leaves_no_temp(tmp_path, monkeypatch):
    path = save_atomic({"step": 1}, tmp_path / "last.pt")
    monkeypatch.setattr(torch, "save", _fail_midway(b"PK\x03\x04half"))
    with pytest.raises(OSError):
        save_atomic({"step": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path) == {"step": 1}  # written in place, it would now be a torn file
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


@pytest.mark.parametrize("junk", [b"ab", b"\x80", b"junk"])
def test_short_junk_checkpoint_is_a_vislab_error(tmp_path, junk):
    """Such bytes trip the legacy unpickler into IndexError: still a one-line error, not a traceback."""
    (tmp_path / "junk.pt").write_bytes(junk)
    with pytest.raises(VislabError, match="junk.pt: not a valid PyTorch checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


def test_checkpoint_must_hold_a_dict(tmp_path):
    torch.save([1], tmp_path / "list.pt")
    with pytest.raises(VislabError, match="expected a dict, found list"):
        load_checkpoint(tmp_path / "list.pt")


def test_checkpoint_with_pickled_class_is_refused(tmp_path):
    """weights_only loading: an untrusted file cannot make us build (or run) arbitrary objects."""
    torch.save({"x": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(VislabError, match="evil.pt: not a valid PyTorch checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")


def test_failed_json_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = write_json({"a": 1}, tmp_path / "m.json")

    def torn_write(self, text, *args, **kwargs):
        with open(self, "w") as f:
            f.write(text[:3])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", torn_write)
    with pytest.raises(VislabError, match="No space left"):
        write_json({"a": 2}, path)
    monkeypatch.undo()
    assert path.read_text() == '{\n  "a": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_write_json_to_a_folder_says_so(tmp_path):
    with pytest.raises(VislabError, match="it is a folder"):
        write_json({}, tmp_path)


def test_progress_disabled_prints_nothing(monkeypatch, capsys):
    monkeypatch.delenv("VISLAB_NO_PROGRESS", raising=False)  # conftest sets it for the whole suite
    assert list(progress(range(3), desc="quiet", enabled=False)) == [0, 1, 2]
    assert "quiet" not in capsys.readouterr().err
    list(progress(range(3), desc="loud"))
    assert "loud" in capsys.readouterr().err


def test_metrics_csv_keeps_six_significant_digits(tmp_path):
    csv = MetricsCSV(tmp_path / "m.csv", ["step", "loss"])
    csv.append({"step": 1, "loss": 0.123456789})
    assert read_metrics_csv(tmp_path / "m.csv") == [{"step": 1.0, "loss": 0.123457}]


def test_vislab_error_prints_on_one_line():
    assert str(VislabError("cannot read x:\n  bad\tthing ")) == "cannot read x: bad thing"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_vislab_error():
    with pytest.raises(VislabError, match="CUDA is not available"):
        pick_device("cuda")


def test_unknown_device_is_a_vislab_error():
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(VislabError, match="unknown device 'tpu'"):
        pick_device("tpu")


_MEAN_SCRIPT = """
import sys
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from vislab.core.distributed import all_reduce_mean

def worker(rank, folder):
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=2)
    t = torch.tensor([1.0 + 2 * rank])
    mean = all_reduce_mean(t)
    with open(f"{folder}/rank{rank}", "w") as f:
        f.write(f"{mean.item()} {t.item()}")
    dist.destroy_process_group()

if __name__ == "__main__":
    mp.spawn(worker, args=(sys.argv[1],), nprocs=2)
"""


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
def test_all_reduce_mean_averages_over_two_gloo_processes(tmp_path):
    script = tmp_path / "mean.py"
    script.write_text(textwrap.dedent(_MEAN_SCRIPT))
    repo = Path(vislab.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # mean of 1 and 3 on both ranks; each rank's own tensor is left as it was
    assert [(tmp_path / f"rank{r}").read_text() for r in (0, 1)] == ["2.0 1.0", "2.0 3.0"]


def test_saving_figures_leaves_pyplot_alone(tmp_path):
    """vislab's plots are made outside pyplot: no backend switch, so a notebook's inline plots keep showing."""
    code = ("import sys, matplotlib; from vislab.core.logging import plot_curves; "
            f"plot_curves([1, 2], {{'loss': [2.0, 1.0]}}, {str(tmp_path / 'c.png')!r}); "
            "print('matplotlib.pyplot' in sys.modules, matplotlib.rcParams._get_backend_or_none())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "None"]
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_the_command_line_parser_imports_no_heavy_package():
    """``vislab --help`` stays fast: torch, gradio, nbclient and matplotlib load only when a command runs."""
    code = ("import sys, vislab.cli; vislab.cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'gradio', 'nbclient', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
