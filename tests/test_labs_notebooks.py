"""The lab notebooks: the build step (exercise/solution from one source) and headless runs of all four notebooks.

The full-lab runs execute each notebook in a fresh kernel of this test environment's own Python (the grader's
explicit kernel spec) in quick mode (``VISLAB_QUICK=1``), through the same code as ``vislab labs check``.
"""

import json

import nbformat
import pytest

from vislab.labs import build
from vislab.labs.build import LABS, VARIANTS, exercise_stub, render_lab, strip_solutions
from vislab.labs.grade import grade_notebook

# Figures each solution notebook draws in quick mode (digit grid + four curve pairs; pair, three result plots).
EXPECTED_FIGURES = {"lab1": 5, "lab2": 5}  # lab2: + the optional own-photos section (issue 27)
EXPECTED_CHECKS = {
    "lab1": ["check_mlp", "check_simple_cnn", "check_vgg", "check_resblock", "check_resnet"],
    "lab2": ["check_spp", "check_hourglass"],
}

# ------------------------------------------------------------------------------------------------- build


@pytest.mark.parametrize("lab", sorted(LABS))
def test_committed_notebooks_are_what_the_build_makes(lab):
    for path, text in render_lab(LABS[lab]).items():
        assert path.is_file(), f"{path.name} missing: run python -m vislab.labs.build"
        assert path.read_text(encoding="utf-8") == text, f"{path.name} is stale: run python -m vislab.labs.build"


def test_build_check_reports_nothing_to_do(capsys):
    assert build.main(["--check"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_build_is_deterministic():
    lab = LABS["lab1"]
    assert render_lab(lab) == render_lab(lab)


@pytest.mark.parametrize("lab", sorted(LABS))
@pytest.mark.parametrize("variant", VARIANTS)
def test_notebook_is_clean(lab, variant):
    path = LABS[lab].notebook(variant)
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    assert [c.id for c in nb.cells] == [f"cell-{i:03d}" for i in range(len(nb.cells))]
    for cell in nb.cells:
        assert "SOLUTION" not in cell.source
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    # Every checker the lab has is called, once, after the class it checks.
    for name in EXPECTED_CHECKS[lab]:
        assert code.count(f"{name}(") == 1
    stubs = code.count("= NotImplemented") + code.count("raise NotImplementedError(")
    assert (stubs > 0) == (variant == "exercise")


def test_exercise_hides_the_answers():
    exercise = LABS["lab1"].notebook("exercise").read_text(encoding="utf-8")
    solution = LABS["lab1"].notebook("solution").read_text(encoding="utf-8")
    for answer in ("nn.Conv2d(1, 20, 3)", "nn.Linear(3 * 3 * 20, 100)", "nn.Conv2d(1, 64, 3, padding=2)",
                   "self.shortcut(x)"):
        assert answer in solution and answer not in exercise
    lab2 = LABS["lab2"].notebook("exercise").read_text(encoding="utf-8")
    assert "nn.AvgPool2d((64, 64)" not in lab2 and "ConvTranspose3d(inplanes" not in lab2


def test_solution_block_becomes_not_implemented_assignments_with_hints():
    src = "\n".join([
        "class Net(nn.Module):",
        "    def __init__(self):",
        "        # BEGIN SOLUTION hint: pick the kernel size so 28 -> 26",
        "        self.conv1 = nn.Conv2d(1, 20, 3)  # 28 -> 26",
        "        self.block = nn.Sequential(",
        "            nn.ReLU())  # a multi-line statement",
        "        self.a = self.b = nn.ReLU()",
        "        # END SOLUTION",
        "        self.kept = 1",
    ])
    assert strip_solutions(src, "exercise").split("\n") == [
        "class Net(nn.Module):",
        "    def __init__(self):",
        "        # hint: pick the kernel size so 28 -> 26",
        "        self.conv1 = NotImplemented  # 28 -> 26",
        "        self.block = NotImplemented  # a multi-line statement",
        "        self.a = self.b = NotImplemented",
        "        self.kept = 1",
    ]
    solution = strip_solutions(src, "solution")
    assert "SOLUTION" not in solution and "self.conv1 = nn.Conv2d(1, 20, 3)  # 28 -> 26" in solution


def test_function_body_becomes_raise_not_implemented_error():
    src = "\n".join([
        "def forward(self, x):",
        "    # BEGIN SOLUTION hint: add the \"shortcut\" then ReLU",
        "    out = self.conv(x)",
        "    return F.relu(out + x)",
        "    # END SOLUTION",
    ])
    assert strip_solutions(src, "exercise") == ("def forward(self, x):\n"
                                                "    raise NotImplementedError(\"add the \\\"shortcut\\\" then ReLU\")")
    assert exercise_stub(["x = compute()", "print(x)"], "  ", None) == \
        ['  raise NotImplementedError("your implementation here")']


@pytest.mark.parametrize("src, message", [
    ("# BEGIN SOLUTION\nx = 1", "never closed"),
    ("x = 1\n# END SOLUTION", "without a BEGIN"),
    ("# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION", "inside another"),
])
def test_unbalanced_markers_are_refused(src, message):
    with pytest.raises(ValueError, match=message):
        strip_solutions(src, "exercise")


# ------------------------------------------------------------------------------------ headless full runs


def _run(lab, variant):
    result = grade_notebook(LABS[lab].notebook(variant), timeout=900)
    print(json.dumps(result.to_json(), indent=1))
    return result


@pytest.mark.slow
@pytest.mark.parametrize("lab", sorted(LABS))
def test_solution_notebook_runs_with_every_check_passed(lab):
    result = _run(lab, "solution")
    assert result.status == "ran"
    assert result.errors == []
    assert [c["name"] for c in result.checks] == EXPECTED_CHECKS[lab]
    assert all(c["status"] == "passed" for c in result.checks), result.checks
    assert result.figures == EXPECTED_FIGURES[lab]  # inline plots work (nothing switched matplotlib to Agg)


@pytest.mark.slow
@pytest.mark.parametrize("lab", sorted(LABS))
def test_exercise_notebook_runs_with_every_check_not_attempted(lab):
    result = _run(lab, "exercise")
    assert result.status == "ran"
    assert result.errors == []
    assert [c["name"] for c in result.checks] == EXPECTED_CHECKS[lab]
    assert all(c["status"] == "not attempted" for c in result.checks), result.checks
    # Reported by the checkers themselves (the class is unfinished), not by the grader (the call never ran).
    assert not any("never ran" in c["message"] for c in result.checks)
