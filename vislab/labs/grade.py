"""The teacher's grader behind ``vislab labs check``: run students' notebooks headless, collect the checkers' outcomes.

Each notebook runs in its own fresh kernel (nbclient), started with *this* Python (``sys.executable``) through a
kernel spec built here, so that whatever kernels a user-level Jupyter install registers cannot interfere. The
kernel's environment has ``VISLAB_QUICK=1`` (the labs' small settings) and ``VISLAB_CHECK_LOG`` pointing at a
fresh temporary file, into which every checker call appends one JSON line ``{"name", "status", "message"}``.
Cells run with a time limit each; a cell that raises is recorded and the run goes on. A cell that runs past
its limit or a kernel that dies ends that notebook's run (its row says so); a file that is not a notebook is
reported as such; the other notebooks are graded all the same.

The checks a notebook is expected to run are the calls of vislab's checkers (``check_mlp(...)`` ...) in its code
cells; one that never reported (its cell was never reached, or raised before the call) is "not attempted" with a
message saying so.

**Security**: grading executes the students' code with the rights of whoever runs the grader, as nbgrader
does. Grade in a throw-away environment (a container, or a separate user with its own virtual environment).
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vislab.core.errors import VislabError

DEFAULT_TIMEOUT = 600  # seconds per cell
CHECK_CALL = re.compile(r"\b(check_[a-z0-9_]+)\s*\(")
STATUSES = ("passed", "failed", "not attempted")
# Row statuses: how far the run of the notebook itself got.
RAN, TIMED_OUT, KERNEL_DIED, NOT_A_NOTEBOOK, NOT_FOUND = "ran", "timed out", "kernel died", "not a notebook", \
    "not found"


@dataclass
class NotebookResult:
    """What grading one notebook found; ``to_json()`` is the documented JSON object."""

    notebook: str
    status: str = RAN
    checks: list[dict[str, str]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    figures: int = 0  # image outputs the run produced (not in the JSON: a check that plots still show)

    @property
    def graded(self) -> bool:
        """True when the notebook's code ran at all (whatever its results)."""
        return self.status not in (NOT_A_NOTEBOOK, NOT_FOUND)

    def to_json(self) -> dict[str, Any]:
        return {"notebook": self.notebook, "status": self.status, "checks": self.checks, "errors": self.errors,
                "seconds": round(self.seconds, 1)}


def _one_line(text: str, limit: int = 300) -> str:
    """Collapse whitespace (tracebacks, multi-line messages) so a message fits one table or CSV cell."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def expected_checks(nb: Any) -> list[str]:
    """Names of vislab's checkers that the notebook's code cells call, in order of first appearance.

    Only vislab's own checkers count: a student's helper named ``check_something`` is not a check to report.
    """
    from vislab.labs import _CHECKERS  # the names only: importing them would load torch

    names: list[str] = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for line in cell.source.splitlines():
            code = line.split("#", 1)[0]  # a check named in a comment is not a call
            for name in CHECK_CALL.findall(code):
                if name in _CHECKERS and name not in names:
                    names.append(name)
    return names


def read_check_log(path: Path) -> dict[str, dict[str, str]]:
    """The last outcome each checker recorded in the ``VISLAB_CHECK_LOG`` file (bad lines are skipped)."""
    outcomes: dict[str, dict[str, str]] = {}
    if not path.is_file():
        return outcomes
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("name"), str) and rec.get("status") in STATUSES:
            outcomes[rec["name"]] = {"name": rec["name"], "status": rec["status"],
                                     "message": _one_line(rec.get("message", ""))}
    return outcomes


def _cell_errors(nb: Any) -> list[dict[str, Any]]:
    """``{"cell": N, "error": "Name: value"}`` for every cell with an error output (N counts cells from 1)."""
    errors = []
    for index, cell in enumerate(nb.cells, 1):
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.get("output_type") == "error":
                errors.append({"cell": index, "error": _one_line(f"{output.get('ename')}: {output.get('evalue')}")})
    return errors


def _last_words(kernel_log: Path) -> str:
    """The kernel log's last line that says something (ipykernel's routine start-up warnings skipped)."""
    try:
        lines = kernel_log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    lines = [line.strip() for line in lines if line.strip() and "WARNING |" not in line]
    return lines[-1] if lines else ""


def _kernel_manager_class() -> type:
    """An nbclient kernel manager whose only kernel spec runs ipykernel with this interpreter (``sys.executable``).

    Whatever name a notebook asks for ("python3"), the kernel is this Python: a user-level Jupyter install with
    its own "python3" kernel (another environment, another vislab) cannot take the grading over.
    """
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class ThisPythonSpecs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                              display_name=f"Python ({sys.executable})", language="python")

    class ThisPythonKernelManager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _this_python_specs(self) -> KernelSpecManager:
            return ThisPythonSpecs()

    return ThisPythonKernelManager


def grade_notebook(path: str | os.PathLike, timeout: float = DEFAULT_TIMEOUT, quick: bool = True) -> NotebookResult:
    """Run one notebook headless in a fresh kernel and return its checks and errors; never raises for bad notebooks."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    path = Path(path)
    result = NotebookResult(notebook=str(path))
    if not path.is_file():
        result.status = NOT_FOUND
        result.errors.append({"cell": None, "error": f"no such file: {path}"})
        return result
    try:
        nb = nbformat.read(path, as_version=4)
        if not isinstance(nb.get("cells"), list):
            raise ValueError("no cells")
    except Exception as exc:  # noqa: BLE001 -- any unreadable file is reported, never raised
        result.status = NOT_A_NOTEBOOK
        result.errors.append({"cell": None, "error": _one_line(f"not a notebook: {type(exc).__name__}: {exc}")})
        return result

    expected = expected_checks(nb)
    current = {"cell": None}

    def on_cell_execute(cell: Any, cell_index: int) -> None:  # remembers which cell a timeout or crash hit
        current["cell"] = cell_index + 1

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vislab-grade-") as tmp:
        log = Path(tmp) / "checks.jsonl"
        workdir = Path(tmp) / "work"  # files the notebook writes (plots, samples) land here, not beside it
        workdir.mkdir()
        env = {**os.environ, "VISLAB_CHECK_LOG": str(log), "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
        if quick:
            env["VISLAB_QUICK"] = "1"
        client = NotebookClient(nb, kernel_manager_class=_kernel_manager_class(), kernel_name="python3",
                                timeout=max(1, round(timeout)), allow_errors=True, interrupt_on_timeout=False,
                                startup_timeout=120, shutdown_kernel="immediate", on_cell_execute=on_cell_execute,
                                resources={"metadata": {"path": str(workdir)}})
        kernel_log = Path(tmp) / "kernel.log"
        try:
            # The kernel's own stdout/stderr go to a log (not the teacher's terminal); its last words explain a crash.
            with kernel_log.open("wb") as log_file:
                client.execute(env=env, cwd=str(workdir), stdout=log_file, stderr=log_file)
        except CellTimeoutError:
            result.status = TIMED_OUT
            message = f"timed out: the cell ran longer than {timeout:g} s; the rest of the notebook did not run"
            result.errors.append({"cell": current["cell"], "error": message})
        except DeadKernelError as exc:
            result.status = KERNEL_DIED
            last = _last_words(kernel_log)
            result.errors.append({"cell": current["cell"], "error": _one_line(
                f"the kernel died while running this cell ({exc}{'; ' + last if last else ''}); "
                "the rest of the notebook did not run")})
        except Exception as exc:  # noqa: BLE001 -- e.g. the kernel could not start: this notebook's row says so
            result.status = KERNEL_DIED
            result.errors.append({"cell": current["cell"], "error": _one_line(
                f"the notebook could not be run: {type(exc).__name__}: {exc}")})
        result.errors[:0] = _cell_errors(nb)
        result.figures = sum("image/png" in output.get("data", {}) for cell in nb.cells if cell.cell_type == "code"
                             for output in cell.get("outputs", []))
        outcomes = read_check_log(log)
    result.seconds = time.perf_counter() - start
    for name in expected:
        result.checks.append(outcomes.pop(name, None) or {
            "name": name, "status": "not attempted",
            "message": f"{name} never ran: its cell was not reached or stopped before the call"})
    result.checks.extend(outcomes.values())  # checks called in a way the source scan did not see
    return result


def grade(paths: Sequence[str | os.PathLike], timeout: float = DEFAULT_TIMEOUT, quick: bool = True,
          progress: bool = True) -> list[NotebookResult]:
    """Grade every notebook in turn (each in its own kernel); one result per path, in order."""
    try:
        import nbclient  # noqa: F401
        import nbformat  # noqa: F401
    except ImportError as exc:
        raise VislabError(f"grading needs the notebook tools ({exc.name} is missing): "
                          "pip install 'vislab[labs]'") from None
    results = []
    for i, path in enumerate(paths, 1):
        if progress:
            print(f"[{i}/{len(paths)}] {path} ...", file=sys.stderr, flush=True)
        results.append(grade_notebook(path, timeout=timeout, quick=quick))
    return results


# -------------------------------------------------------------------------------------------------- output

_SHORT = {"passed": "passed", "failed": "FAILED", "not attempted": "-"}


def check_columns(results: Sequence[NotebookResult]) -> list[str]:
    """Every check name over all results, in order of first appearance."""
    names: list[str] = []
    for r in results:
        names += [c["name"] for c in r.checks if c["name"] not in names]
    return names


def format_table(results: Sequence[NotebookResult]) -> str:
    """One row per notebook, one column per check (passed / FAILED / - for not attempted), then run and errors."""
    columns = check_columns(results)
    header = ["notebook", *(c.removeprefix("check_") for c in columns), "run", "errors"]
    rows = []
    for r in results:
        status = {c["name"]: _SHORT[c["status"]] for c in r.checks}
        first = f"{len(r.errors)}" + (f" (cell {r.errors[0]['cell']}: {r.errors[0]['error']})" if r.errors else "")
        rows.append([Path(r.notebook).name, *(status.get(c, "") for c in columns), r.status, _one_line(first, 90)])
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(results: Sequence[NotebookResult], path: str | os.PathLike) -> Path:
    """The object for one notebook, a list of objects for several."""
    data: Any = results[0].to_json() if len(results) == 1 else [r.to_json() for r in results]
    path = Path(path)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def write_csv(results: Sequence[NotebookResult], path: str | os.PathLike) -> Path:
    """The class table: notebook, one column per check (its status), run status, error count, first error."""
    columns = check_columns(results)
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["notebook", *columns, "run", "errors", "first_error"])
        for r in results:
            status = {c["name"]: c["status"] for c in r.checks}
            first = f"cell {r.errors[0]['cell']}: {r.errors[0]['error']}" if r.errors else ""
            writer.writerow([r.notebook, *(status.get(c, "") for c in columns), r.status, len(r.errors), first])
    return path
