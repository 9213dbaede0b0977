"""The teacher's grader behind ``vislab labs check``: a grade that no submission can forge.

For each notebook:

1. **Which checks.** The lab is ``--lab`` or recognised from the notebook (:func:`detect_lab`); the checks it
   is graded on are the checker calls of the lab's *packaged* exercise notebook
   (:func:`vislab.labs.verdict.lab_checks`), whatever the submission kept, moved, deleted or added.
2. **Run it in a sandbox of its own** (:mod:`vislab.labs.sandbox`): ``python -m vislab.labs.runner`` executes
   the cells in a fresh kernel with ``VISLAB_QUICK=1``, a time limit per cell and capped output.
3. **Observe.** When the cells have run, the grader draws a fresh seed and sends it, with the classes to
   observe, to the runner, which runs :func:`vislab.labs.verdict.observe` in the same kernel: data only.
4. **Decide here.** :func:`vislab.labs.verdict.judge` compares that data with the lab's reference on the
   same seed, in this process, and writes the row. What the notebook's own checkers printed or recorded does
   not count.

Every expected check gets one row entry: *passed*, *failed* or *not attempted* (the class is missing or
still has the exercise's blanks). Rows say how the run went (``ran``, ``timed out``, ``kernel died``,
``not a notebook``, ``not found``) and whether it ran sandboxed. ``--jobs N`` grades N notebooks at once.
"""

from __future__ import annotations

import concurrent.futures
import csv
import json
import os
import queue
import re
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vislab.core.errors import VislabError
from vislab.labs import sandbox
from vislab.labs.runner import KERNEL_DIED, RAN, READY, TIMED_OUT
from vislab.labs.sandbox import Limits

DEFAULT_TIMEOUT = 600  # seconds per cell
STATUSES = ("passed", "failed", "not attempted")
# Row statuses: how far the run got (the runner's ran / timed out / kernel died), or why it did not start.
NOT_A_NOTEBOOK, NOT_FOUND, UNKNOWN_LAB = "not a notebook", "not found", "unknown lab"
MAX_NOTEBOOK_MB = 64  # a submission larger than this is not copied into a sandbox
_MAX_RUN_JSON = 1 << 20  # bytes read back from the sandbox: the run report ...
_MAX_OBSERVATIONS = 8 << 20  # ... and the observations
# One judge at a time: judging seeds torch's process-wide RNG (the dropout masks of the training-mode pass), so
# two notebooks judged at once by --jobs threads would draw each other's masks and fail correct classes.
_JUDGING = threading.Lock()


@dataclass
class NotebookResult:
    """What grading one notebook found; ``to_json()`` is the documented JSON object."""

    notebook: str
    status: str = RAN
    lab: str | None = None
    sandboxed: bool = True
    checks: list[dict[str, str]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    figures: int = 0  # image outputs the run produced (not in the JSON)

    @property
    def graded(self) -> bool:
        """True when the notebook's code ran at all (whatever its results)."""
        return self.status not in (NOT_A_NOTEBOOK, NOT_FOUND, UNKNOWN_LAB)

    def to_json(self) -> dict[str, Any]:
        return {"notebook": self.notebook, "lab": self.lab, "status": self.status, "sandboxed": self.sandboxed,
                "checks": self.checks, "errors": self.errors, "seconds": round(self.seconds, 1)}


def _one_line(text: str, limit: int = 300) -> str:
    """Collapse whitespace (tracebacks, multi-line messages) so a message fits one table or CSV cell.

    Control and format characters become spaces: a student's message must not carry terminal escape codes or
    bidirectional overrides that redraw the teacher's table (a row shown "passed" over the real one).
    """
    text = "".join(ch if ch.isprintable() else " " for ch in str(text)[:100_000])
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def detect_lab(nb: Any) -> str | None:
    """The lab a notebook belongs to: the lab whose checkers and graded classes its code names most (None if
    it names none).

    The checker calls alone are not enough: a submission whose checker cells were deleted still imports the
    checkers and defines the lab's classes, and is graded on every check. Only *which* reference applies comes
    from the submission; a notebook dressed up as another lab is graded against that lab's checks, and fails them.
    """
    from vislab.labs.build import LABS
    from vislab.labs.verdict import lab_checks

    cells = nb.get("cells") if isinstance(nb, dict) else None
    code = "\n".join(str(cell.get("source", "")) for cell in cells if isinstance(cell, dict)
                     and cell.get("cell_type") == "code") if isinstance(cells, list) else ""
    metadata = nb.get("metadata") if isinstance(nb, dict) else None
    tag = metadata.get("vislab") if isinstance(metadata, dict) else None
    tag = str(tag.get("lab", "")) if isinstance(tag, dict) else ""
    names = set(re.findall(r"[A-Za-z_]\w*", code))
    votes: Counter[str] = Counter()
    for lab in LABS:
        checks = lab_checks(lab)
        votes[lab] = len(names & {*checks, *checks.values()})
        if lab in tag:
            votes[lab] += 100
    votes = +votes  # the labs it names at all
    return votes.most_common(1)[0][0] if votes else None


_NO_LINKS = hasattr(os, "O_NOFOLLOW") and hasattr(os, "O_DIRECTORY") and os.open in os.supports_dir_fd


def _open_written(path: Path) -> Any:
    """A file the sandbox wrote, opened for reading only if it is a regular file reached without a link.

    The sandbox owns its work folder: in place of ``.vislab`` or a file in it, a submission can leave a symlink
    to a file of the grader's (read with the grader's rights, then shown in the row), ``/dev/zero`` (memory) or
    a FIFO (a hang). Returns a binary file object, or None.
    """
    if not _NO_LINKS:  # no sandbox on such systems: the notebook ran with the grader's rights anyway
        try:
            return path.open("rb")
        except OSError:
            return None
    try:
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fd = os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
    except OSError:
        return None
    finally:
        os.close(folder)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb")


def class_candidates(nb: Any, expected: dict[str, str]) -> dict[str, list[str]]:
    """Per check, the class names to observe: the exercise's (``Net``), then any other name the submission
    hands that checker (``check_mlp(MyNet)``). Which class is observed may come from the submission; whether
    it passes never does."""
    import ast

    candidates = {check: [name] for check, name in expected.items()}
    for cell in nb.get("cells", []) if isinstance(nb, dict) else []:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        try:
            tree = ast.parse(str(cell.get("source", "")))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue  # IPython magics, or junk
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in candidates
                    and node.args and isinstance(node.args[0], ast.Name)
                    and node.args[0].id not in candidates[node.func.id] and len(candidates[node.func.id]) < 5):
                candidates[node.func.id].append(node.args[0].id)
    return candidates


def _read_capped(path: Path, limit: int) -> bytes | None:
    f = _open_written(path)
    if f is None:
        return None
    with f:
        data = f.read(limit + 1)
    return data if len(data) <= limit else None


def _tail(path: Path, size: int = 4096) -> str:
    """The last line that says something in a log the sandbox wrote (ipykernel's start-up warnings skipped)."""
    f = _open_written(path)
    if f is None:
        return ""
    try:
        with f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - size))
            lines = f.read(size).decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    lines = [line.strip() for line in lines if line.strip() and "WARNING |" not in line]
    return lines[-1] if lines else ""


def _run_in_sandbox(notebook: Path, workdir: Path, *, timeout: float, quick: bool, limits: Limits, sandboxed: bool,
                    slot: int, checks: dict[str, list[str]], log: Path) -> tuple[int, str]:
    """Run the runner on the notebook copy in ``workdir``; returns (the seed sent, how it ended)."""

    extra = {"VISLAB_NO_PROGRESS": "1", "MPLBACKEND": "module://matplotlib_inline.backend_inline",
             "OMP_NUM_THREADS": "1", "VISLAB_MNIST_DIR": str(_mnist_dir())}
    if quick:
        extra["VISLAB_QUICK"] = "1"
    argv = [sys.executable, "-m", "vislab.labs.runner", notebook.name, "--timeout", f"{timeout:g}",
            "--output-kb", str(limits.output_kb)]
    env = sandbox.minimal_env(extra)
    if sandboxed:
        cmd, cwd = sandbox.command(argv, workdir, env, slot, tmp_mb=limits.max_file_mb), None
        env = {}
    else:
        cmd, cwd = argv, str(workdir)
        env = {**env, "HOME": str(workdir)}
    seed = secrets.randbelow(2 ** 62)
    wall = max(timeout, limits.cpu_seconds)  # the whole notebook's limit: a run that ignores interrupts ends here
    with log.open("wb") as stderr:  # the runner's (and bwrap's) complaints; its size is capped by the file limit
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=stderr, **sandbox.popen_kwargs(limits))
    ended = "ran"
    deadline = time.monotonic() + wall
    ready = threading.Event()

    def watch_stdout() -> None:
        assert proc.stdout is not None
        while True:
            line = proc.stdout.readline(4096)  # bounded: whatever the sandbox writes here is untrusted
            if not line:
                return
            if line.decode("utf-8", "replace").strip() == READY:
                ready.set()

    reader = threading.Thread(target=watch_stdout, daemon=True)
    reader.start()
    try:
        while proc.poll() is None and not ready.is_set() and time.monotonic() < deadline:
            ready.wait(0.2)
        if ready.is_set() and proc.poll() is None:
            # The seed exists only from now on: the notebook's cells have all run.
            request = json.dumps({"seed": seed, "checks": checks}) + "\n"
            try:
                assert proc.stdin is not None
                proc.stdin.write(request.encode())
                proc.stdin.close()
            except OSError:
                pass
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        ended = TIMED_OUT
    finally:
        if proc.poll() is None:
            _kill(proc)
        reader.join(timeout=5)
    return seed, ended


def _kill(proc: subprocess.Popen) -> None:
    """End the sandbox and everything in it (bwrap's PID namespace dies with its first process)."""
    try:
        os.killpg(proc.pid, 9)
    except OSError:
        proc.kill()
    proc.wait()


def _mnist_dir() -> Path:
    from vislab.mnist.data import default_data_dir

    return Path(default_data_dir()).resolve()


def _memory_note(errors: list[dict[str, Any]], limits: Limits) -> None:
    for e in errors:
        if any(s in e["error"] for s in ("MemoryError", "can't allocate memory", "Cannot allocate memory")):
            e["error"] = _one_line(f"{e['error']} (the memory limit is {limits.memory_mb} MiB per process)")


def grade_notebook(path: str | os.PathLike, timeout: float = DEFAULT_TIMEOUT, quick: bool = True, *,
                   lab: str | None = None, limits: Limits | None = None, sandboxed: bool = True,
                   slot: int = 0) -> NotebookResult:
    """Grade one notebook in a sandbox of its own; never raises for a bad or hostile notebook."""
    import nbformat

    from vislab.labs.verdict import judge, lab_checks

    limits = limits or Limits()
    path = Path(path)
    result = NotebookResult(notebook=str(path), sandboxed=sandboxed)
    if not path.is_file():
        result.status = NOT_FOUND
        result.errors.append({"cell": None, "error": f"no such file: {path}"})
        return result
    try:
        if path.stat().st_size > MAX_NOTEBOOK_MB << 20:
            raise ValueError(f"larger than {MAX_NOTEBOOK_MB} MB")
        nb = nbformat.read(path, as_version=4)
        if not isinstance(nb.get("cells"), list):
            raise ValueError("no cells")
    except Exception as exc:  # noqa: BLE001 -- any unreadable file is reported, never raised
        result.status = NOT_A_NOTEBOOK
        result.errors.append({"cell": None, "error": _one_line(f"not a notebook: {type(exc).__name__}: {exc}")})
        return result
    result.lab = lab or detect_lab(nb)
    if result.lab is None:
        result.status = UNKNOWN_LAB
        result.errors.append({"cell": None, "error": "it names no lab's checkers or classes: pass --lab to say "
                                                     "which lab it is"})
        return result
    expected = lab_checks(result.lab)

    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="vislab-grade-"))
    try:
        work = tmp / "work"
        work.mkdir()
        notebook = work / "submission.ipynb"
        shutil.copyfile(path, notebook)
        if sandboxed and os.geteuid() == 0:
            # The sandbox runs as a uid of its own: it owns its work folder and may only pass through tmp.
            tmp.chmod(0o711)
            for p in (work, notebook):
                os.chown(p, sandbox.sandbox_uid(slot), sandbox.sandbox_uid(slot))
        seed, ended = _run_in_sandbox(notebook, work, timeout=timeout, quick=quick, limits=limits,
                                      sandboxed=sandboxed, slot=slot, checks=class_candidates(nb, expected),
                                      log=tmp / "runner.log")
        state = work / ".vislab"
        report = _parse_json(_read_capped(state / "run.json", _MAX_RUN_JSON))
        observations = _parse_json(_read_capped(state / "observations.json", _MAX_OBSERVATIONS))
        result.status = str(report.get("status", RAN)) if isinstance(report, dict) else KERNEL_DIED
        if result.status not in (RAN, TIMED_OUT, KERNEL_DIED):
            result.status = RAN
        if ended == TIMED_OUT:
            result.status = TIMED_OUT
            result.errors.append({"cell": None, "error": f"the notebook ran past the grader's limit of "
                                                         f"{max(timeout, limits.cpu_seconds):g} s and was stopped"})
        elif not isinstance(report, dict):
            last = _tail(state / "kernel.log") or _tail(tmp / "runner.log")
            result.errors.append({"cell": None, "error": _one_line(
                "the notebook's run ended without a report (killed by a limit?)" + (f": {last}" if last else ""))})
        if isinstance(report, dict):
            result.errors[:0] = _valid_errors(report.get("errors"))
            result.figures = report.get("figures") if isinstance(report.get("figures"), int) else 0
        _memory_note(result.errors, limits)
        if not isinstance(observations, dict):
            observations = {}
        for check, class_name in expected.items():
            if check not in observations:
                why = "the notebook did not get as far as being checked" if result.status != RAN else \
                    "no observation came back"
                result.checks.append({"name": check, "status": "not attempted", "message": f"{class_name}: {why}"})
                continue
            try:
                with _JUDGING:
                    verdict = judge(check, observations[check], seed, class_name).to_json()
            except Exception as exc:  # noqa: BLE001 -- hostile data can only fail its own check
                verdict = {"name": check, "status": "failed",
                           "message": _one_line(f"its observation could not be judged: {type(exc).__name__}")}
            verdict["message"] = _one_line(verdict["message"])
            result.checks.append(verdict)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result.seconds = time.perf_counter() - start
    return result


def _parse_json(data: bytes | None) -> Any:
    if data is None:
        return None
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


def _valid_errors(errors: Any) -> list[dict[str, Any]]:
    """The run report's cell errors, kept only in the documented shape (the report comes from the sandbox)."""
    if not isinstance(errors, list):
        return []
    kept = []
    for e in errors[:1000]:
        if isinstance(e, dict) and (e.get("cell") is None or isinstance(e.get("cell"), int)):
            kept.append({"cell": e.get("cell"), "error": _one_line(e.get("error", ""))})
    return kept


def grade(paths: Sequence[str | os.PathLike], timeout: float = DEFAULT_TIMEOUT, quick: bool = True,
          progress: bool = True, *, lab: str | None = None, limits: Limits | None = None, sandboxed: bool = True,
          jobs: int = 1) -> list[NotebookResult]:
    """Grade every notebook, ``jobs`` at a time, each in a sandbox of its own; one result per path, in order.

    Raises:
        VislabError: the notebook tools are missing, an argument is out of range, or ``sandboxed`` is asked
            for where no sandbox can be made.
    """
    try:
        import nbclient  # noqa: F401
        import nbformat  # noqa: F401
    except ImportError as exc:
        raise VislabError(f"grading needs the notebook tools ({exc.name} is missing): "
                          "pip install 'vislab[labs]'") from None
    from vislab.labs.build import LABS

    limits = limits or Limits()
    limits.check()
    if not 1 <= jobs <= sandbox.MAX_JOBS:
        raise VislabError(f"--jobs must be between 1 and {sandbox.MAX_JOBS}, got {jobs}")
    if lab is not None and lab not in LABS:
        raise VislabError(f"unknown lab {lab!r}; choose one of {', '.join(sorted(LABS))}")
    if sandboxed:
        problem = sandbox.sandbox_problem()
        if problem:
            raise VislabError(f"{problem}; grading without a sandbox runs the students' code with your rights: "
                              "pass --no-sandbox to do it anyway")
    slots: queue.SimpleQueue[int] = queue.SimpleQueue()
    for slot in range(jobs):
        slots.put(slot)
    done = [0]
    lock = threading.Lock()

    def one(path: str | os.PathLike) -> NotebookResult:
        slot = slots.get()
        try:
            result = grade_notebook(path, timeout=timeout, quick=quick, lab=lab, limits=limits,
                                    sandboxed=sandboxed, slot=slot)
        finally:
            slots.put(slot)
        with lock:
            done[0] += 1
            if progress:
                print(f"[{done[0]}/{len(paths)}] {path}: {result.status}", file=sys.stderr, flush=True)
        return result

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, paths))


# -------------------------------------------------------------------------------------------------- output

_SHORT = {"passed": "passed", "failed": "FAILED", "not attempted": "-"}


def check_columns(results: Sequence[NotebookResult]) -> list[str]:
    """Every check name over all results, in order of first appearance."""
    names: list[str] = []
    for r in results:
        names += [c["name"] for c in r.checks if c["name"] not in names]
    return names


def check_summary(results: Sequence[NotebookResult]) -> list[dict[str, Any]]:
    """Per check: how many notebooks passed, failed, did not attempt it, and the commonest failure message."""
    summary = []
    for name in check_columns(results):
        outcomes = [c for r in results for c in r.checks if c["name"] == name]
        counts = Counter(c["status"] for c in outcomes)
        failures = Counter(c["message"] for c in outcomes if c["status"] == "failed")
        commonest = failures.most_common(1)[0] if failures else None
        summary.append({"name": name, **{s: counts.get(s, 0) for s in STATUSES},
                        "commonest_failure": commonest[0] if commonest else "",
                        "commonest_failure_count": commonest[1] if commonest else 0})
    return summary


def format_table(results: Sequence[NotebookResult]) -> str:
    """One row per notebook, one column per check, run status and errors; then the class summary per check."""
    columns = check_columns(results)
    header = ["notebook", *(c.removeprefix("check_") for c in columns), "run", "sandbox", "errors"]
    rows = []
    for r in results:
        status = {c["name"]: _SHORT[c["status"]] for c in r.checks}
        first = f"{len(r.errors)}" + (f" (cell {r.errors[0]['cell']}: {r.errors[0]['error']})" if r.errors else "")
        rows.append([_one_line(Path(r.notebook).name), *(status.get(c, "") for c in columns), r.status,
                     "yes" if r.sandboxed else "NO", _one_line(first, 90)])
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    summary = check_summary(results)
    if summary:
        lines += ["", "per check: passed / failed / not attempted, and the commonest failure"]
        width = max(len(s["name"]) for s in summary)
        for s in summary:
            line = f"  {s['name']:<{width}}  {s['passed']:>3} / {s['failed']:>3} / {s['not attempted']:>3}"
            if s["commonest_failure"]:
                line += f"  ({s['commonest_failure_count']}x) {_one_line(s['commonest_failure'], 110)}"
            lines.append(line)
    if any(not r.sandboxed for r in results):
        lines.append("rows marked sandbox NO ran with the grader's rights (--no-sandbox)")
    return "\n".join(lines)


def write_json(results: Sequence[NotebookResult], path: str | os.PathLike) -> Path:
    """The object for one notebook, a list of objects for several."""
    data: Any = results[0].to_json() if len(results) == 1 else [r.to_json() for r in results]
    path = Path(path)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def write_csv(results: Sequence[NotebookResult], path: str | os.PathLike) -> Path:
    """The class table: notebook, lab, one column per check (its status), run status, sandbox, errors."""
    columns = check_columns(results)
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["notebook", "lab", *columns, "run", "sandboxed", "errors", "first_error"])
        for r in results:
            status = {c["name"]: c["status"] for c in r.checks}
            first = f"cell {r.errors[0]['cell']}: {r.errors[0]['error']}" if r.errors else ""
            writer.writerow([r.notebook, r.lab or "", *(status.get(c, "") for c in columns), r.status,
                             "yes" if r.sandboxed else "no", len(r.errors), first])
    return path
