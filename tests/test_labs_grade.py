"""``vislab labs check``: the grader on small hand-made notebooks (passing, failing, hanging, crashing, not one).

All the notebooks of one class are graded by a single command (module fixture), each in its own sandbox and
fresh kernel, so the slow part -- starting kernels -- happens once per notebook. They call only ``check_mlp``:
the grader still reports all five of lab 1's checks (the lab's, not the notebook's). Hostile notebooks are in
``test_labs_grade_hostile.py``.
"""

import contextlib
import csv
import io
import json
import sys

import nbformat
import pytest

from vislab.cli import main
from vislab.labs.grade import NotebookResult, format_table, grade_notebook
from vislab.labs.sandbox import sandbox_problem

LAB1_CHECKS = ["check_mlp", "check_simple_cnn", "check_vgg", "check_resblock", "check_resnet"]

PASSING_MLP = """
import torch.nn.functional as F
from torch import nn

from vislab.labs import check_mlp


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc1_drop = nn.Linear(784, 50), nn.Dropout(0.2)
        self.fc2, self.fc2_drop = nn.Linear(50, 50), nn.Dropout(0.2)
        self.fc3 = nn.Linear(50, 10)

    def forward(self, x):
        x = self.fc1_drop(F.relu(self.fc1(x.flatten(1))))
        x = self.fc2_drop(F.relu(self.fc2(x)))
        return F.log_softmax(self.fc3(x), dim=1)
"""


def _notebook(path, *cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# a student's notebook")]
    nb.cells += [nbformat.v4.new_code_cell(src) for src in cells]
    nbformat.write(nb, path)
    return str(path)


def _sandbox_flag():
    """[] where a sandbox can be made, else ['--no-sandbox'] (the verdict is decided outside the notebook anyway)."""
    return [] if sandbox_problem() is None else ["--no-sandbox"]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """One `vislab labs check` over four files; returns (exit code, JSON list by file name, CSV rows, stdout)."""
    d = tmp_path_factory.mktemp("class")
    files = [
        # Her class has a name of her own: the grader observes the class she hands the checker.
        _notebook(d / "alice.ipynb", PASSING_MLP.replace("class Net", "class MyNet"),
                  "ok = check_mlp(MyNet)\nassert ok"),
        # A wrong hidden size (the checker fails it), a cell that raises, and the run goes on to the end.
        _notebook(d / "bob.ipynb", PASSING_MLP.replace("nn.Linear(784, 50)", "nn.Linear(784, 40)"),
                  "check_mlp(Net)", "1 / 0", "print('still running')"),
        _notebook(d / "dave.ipynb", "import os\nos._exit(1)", PASSING_MLP + "\ncheck_mlp(Net)"),
    ]
    not_a_notebook = d / "erin.ipynb"
    not_a_notebook.write_text("this is my homework, I promise\n")
    files.append(str(not_a_notebook))
    out_json, out_csv = d / "grades.json", d / "grades.csv"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["labs", "check", *files, "--json", str(out_json), "--csv", str(out_csv), "--timeout", "120",
                     "--jobs", "2", *_sandbox_flag()])
    data = json.loads(out_json.read_text())
    with out_csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return code, {r["notebook"].rsplit("/", 1)[-1]: r for r in data}, rows, stdout.getvalue()


@pytest.mark.slow
def test_grading_runs_and_exits_zero_whatever_the_results(graded):
    code, by_name, rows, stdout = graded
    assert code == 0
    assert sorted(by_name) == ["alice.ipynb", "bob.ipynb", "dave.ipynb", "erin.ipynb"]
    assert [r["notebook"].rsplit("/", 1)[-1] for r in rows] == sorted(by_name)
    # One table row per notebook, one column for each of the lab's checks, then the per-check summary.
    lines = stdout.splitlines()
    assert lines[0].split()[:7] == ["notebook", "mlp", "simple_cnn", "vgg", "resblock", "resnet", "run"]
    assert sum(line.startswith(("alice", "bob", "dave", "erin")) for line in lines) == 4
    summary = next(line for line in lines if line.strip().startswith("check_mlp"))
    assert summary.split()[1:6] == ["1", "/", "1", "/", "1"]  # alice passed, bob failed, dave never got there


@pytest.mark.slow
def test_passing_notebook(graded):
    alice = graded[1]["alice.ipynb"]
    assert alice["status"] == "ran" and alice["errors"] == [] and alice["lab"] == "lab1"
    assert [c["name"] for c in alice["checks"]] == LAB1_CHECKS
    assert [c["status"] for c in alice["checks"]] == ["passed"] + ["not attempted"] * 4
    assert "computes the lab's function" in alice["checks"][0]["message"]
    assert "SimpleCNN is not defined" in alice["checks"][1]["message"]


@pytest.mark.slow
def test_failing_notebook_records_the_check_and_the_cell_error(graded):
    bob = graded[1]["bob.ipynb"]
    assert bob["status"] == "ran"
    assert [c["status"] for c in bob["checks"]] == ["failed"] + ["not attempted"] * 4
    assert "shapes cannot be multiplied" in bob["checks"][0]["message"]
    # Cell 4: the markdown cell counts as cell 1.
    assert bob["errors"] == [{"cell": 4, "error": "ZeroDivisionError: division by zero"}]
    row = next(r for r in graded[2] if r["notebook"].endswith("bob.ipynb"))
    assert row["check_mlp"] == "failed" and row["errors"] == "1" and "ZeroDivisionError" in row["first_error"]


# What the old grader trusted: a line in $VISLAB_CHECK_LOG. Now it is only a file the notebook writes.
FORGED_LOG = """
import json, os

with open(os.environ.get("VISLAB_CHECK_LOG", "checks.jsonl"), "a") as f:
    for name in ("check_mlp", "check_bonus"):
        f.write(json.dumps({"name": name, "status": "passed", "message": "public checks passed"}) + "\\n")
"""


@pytest.mark.slow
def test_hanging_cell_is_interrupted_the_run_goes_on_and_the_next_notebook_is_graded(tmp_path, capsys):
    carol = _notebook(tmp_path / "carol.ipynb", "import time\ntime.sleep(120)", PASSING_MLP, "check_mlp(Net)")
    frank = _notebook(tmp_path / "frank.ipynb", FORGED_LOG)
    out = tmp_path / "grades.json"
    # 15 s: enough for the cell that imports torch on a busy machine, far below the sleeping cell's 120 s.
    assert main(["labs", "check", carol, frank, "--lab", "lab1", "--json", str(out), "--timeout", "15",
                 *_sandbox_flag()]) == 0
    carol_result, frank_result = json.loads(out.read_text())
    assert carol_result["status"] == "timed out"
    assert carol_result["errors"] == [{"cell": 2, "error": "timed out: the cell ran longer than 15 s and was "
                                                           "interrupted"}]
    # The cells after the interrupted one ran: Net is defined and passes.
    assert carol_result["checks"][0]["status"] == "passed"
    assert frank_result["status"] == "ran"
    assert [c["status"] for c in frank_result["checks"]] == ["not attempted"] * 5
    assert [c["name"] for c in frank_result["checks"]] == LAB1_CHECKS  # no "check_bonus"
    assert "timed out" in capsys.readouterr().out


@pytest.mark.slow
def test_notebook_that_kills_its_kernel(graded):
    dave = graded[1]["dave.ipynb"]
    assert dave["status"] == "kernel died"
    assert dave["errors"][-1]["cell"] == 2 and "kernel died" in dave["errors"][-1]["error"]
    assert [c["status"] for c in dave["checks"]] == ["not attempted"] * 5


@pytest.mark.slow
def test_file_that_is_not_a_notebook(graded):
    erin = graded[1]["erin.ipynb"]
    assert erin["status"] == "not a notebook" and erin["checks"] == []
    assert erin["errors"][0]["cell"] is None and erin["errors"][0]["error"].startswith("not a notebook")


def test_nothing_gradable_exits_2_with_one_line_and_a_json_object(tmp_path, capsys):
    bad = tmp_path / "x.ipynb"
    bad.write_text("{ not json")
    out = tmp_path / "one.json"
    assert main(["labs", "check", str(bad), str(tmp_path / "missing.ipynb"), "--json", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # progress lines, then the error
    assert err[-1].startswith("error: nothing could be graded") and "not a notebook" in err[-1]
    data = json.loads(out.read_text())
    assert [d["status"] for d in data] == ["not a notebook", "not found"]
    assert main(["labs", "check", str(bad), "--json", str(out)]) == 2
    assert json.loads(out.read_text())["status"] == "not a notebook"  # one notebook: an object, not a list


def test_the_lab_is_recognised_from_its_checker_calls_and_the_checks_are_the_lab_s():
    from vislab.labs.grade import detect_lab
    from vislab.labs.verdict import lab_checks

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("call check_spp(FeatureExtraction) below"),
        nbformat.v4.new_code_cell("ok = check_simple_cnn(SimpleCNN)  # then check_vgg(...)\ncheck_mlp (Net)"),
        nbformat.v4.new_code_cell("def check_my_shapes(m):\n    return True\n\ncheck_my_shapes(Net)"),
    ])
    assert detect_lab(nb) == "lab1"
    assert detect_lab(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])) is None
    assert list(lab_checks("lab1")) == LAB1_CHECKS
    assert lab_checks("lab2") == {"check_spp": "FeatureExtraction", "check_hourglass": "Hourglass"}


def test_table_has_a_column_per_check():
    results = [
        NotebookResult("a.ipynb", checks=[{"name": "check_mlp", "status": "passed", "message": ""},
                                          {"name": "check_vgg", "status": "failed", "message": ""}]),
        NotebookResult("b.ipynb", status="timed out", errors=[{"cell": 3, "error": "timed out"}],
                       checks=[{"name": "check_mlp", "status": "not attempted", "message": ""}]),
    ]
    lines = format_table(results).splitlines()
    assert lines[0].split() == ["notebook", "mlp", "vgg", "run", "sandbox", "errors"]
    assert lines[2].split() == ["a.ipynb", "passed", "FAILED", "ran", "yes", "0"]
    assert lines[3].split()[:4] == ["b.ipynb", "-", "timed", "out"]
    assert "cell 3: timed out" in lines[3]


@pytest.mark.slow
def test_kernel_is_this_python_whatever_jupyter_has_registered(tmp_path, monkeypatch):
    # A user-level "python3" kernel that cannot start: the grader must not use it.
    spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": ["/nonexistent/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "someone else's Python", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter"))
    which = "import sys\nraise RuntimeError('kernel ' + sys.executable)"
    result = grade_notebook(_notebook(tmp_path / "which.ipynb", which), timeout=60, lab="lab1",
                            sandboxed=sandbox_problem() is None)
    assert result.status == "ran", result.errors
    assert result.errors[0]["error"] == f"RuntimeError: kernel {sys.executable}"
