"""Runs one submitted notebook inside the grader's sandbox: ``python -m vislab.labs.runner`` (not for users).

It runs in the sandbox with the student's code, so nothing it reports decides a grade. Steps:

1. Execute the notebook's cells in a fresh kernel (this Python), each with a time limit; a cell that raises
   is recorded and the run goes on; a cell past its limit is interrupted and the run goes on; captured
   output beyond a per-cell budget is dropped.
2. Print :data:`READY` and wait for the grader's request on stdin: one JSON line with the seed, drawn only
   now, and the classes to observe, by candidate names (``{"seed": 123, "checks": {"check_mlp": ["Net"], ...}}``).
3. Run one more cell in the same kernel: :func:`vislab.labs.verdict.observe` on each class found in the
   notebook's namespace, written to ``.vislab/observations.json``; then ``.vislab/run.json`` (how the run
   went: status, cell errors, figures). The grader judges the observations in its own process.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

READY = "vislab-runner: ready for the probe"
STATE_DIR = ".vislab"  # in the work folder: run.json, observations.json, kernel.log
RAN, TIMED_OUT, KERNEL_DIED = "ran", "timed out", "kernel died"
PROBE_TIMEOUT = 600  # seconds for the observation cell (the feature extractor's probe takes ~5 s)


def _client(nb: Any, timeout: float, output_budget: int) -> Any:
    """An nbclient client whose kernel is this Python and whose captured output per cell stops at a budget."""
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from traitlets import default

    class ThisPythonSpecs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                              display_name="Python", language="python")

    class ThisPythonKernelManager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _this_python_specs(self) -> KernelSpecManager:
            return ThisPythonSpecs()

    class CappedClient(NotebookClient):
        kept: dict[int, int] = {}

        def output(self, outs: list, msg: dict, display_id: str | None, cell_index: int) -> Any:
            size = len(json.dumps(msg.get("content", {}), default=str))
            used = self.kept.get(cell_index, 0)
            self.kept[cell_index] = used + size
            if msg.get("msg_type") != "error" and used + size > output_budget:
                return None  # beyond the budget: dropped, so a cell printing gigabytes cannot fill memory
            return super().output(outs, msg, display_id, cell_index)

    return CappedClient(nb, kernel_manager_class=ThisPythonKernelManager, kernel_name="python3",
                        timeout=max(1, round(timeout)), allow_errors=True, interrupt_on_timeout=True,
                        startup_timeout=120, shutdown_kernel="immediate", resources={"metadata": {"path": "."}})


def _probe_source(checks: dict[str, list[str]], seed: int, out: Path) -> str:
    """The observation cell: for each check, the first of its candidate class names the notebook defines."""
    lookups = ", ".join(f"{check!r}: next((globals()[n] for n in {[n for n in names if n.isidentifier()]!r} "
                        "if n in globals()), None)" for check, names in checks.items())
    return ("import vislab.labs.verdict as _vislab_verdict\n"
            f"_vislab_verdict.write_observations({{{lookups}}}, {seed}, {str(out)!r})\n")


def run(notebook: Path, timeout: float, output_kb: int) -> int:
    import nbformat
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    state = Path(STATE_DIR)
    state.mkdir(exist_ok=True)
    report: dict[str, Any] = {"status": RAN, "errors": [], "figures": 0}
    nb = nbformat.read(notebook, as_version=4)
    client = _client(nb, timeout, output_kb * 1024)
    client.reset_execution_trackers()

    def note(cell: int | None, error: str) -> None:
        # Bounded here; collapsed to one line and cut to a table cell by the grader, which trusts nothing from here.
        report["errors"].append({"cell": cell, "error": str(error)[:4000]})

    start = time.perf_counter()
    with (state / "kernel.log").open("wb") as kernel_log, client.setup_kernel(stdout=kernel_log, stderr=kernel_log):
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            started = time.monotonic()
            try:
                client.execute_cell(cell, index)
            except CellTimeoutError:  # the interrupt did not stop it: the kernel is stuck
                report["status"] = TIMED_OUT
                note(index + 1, f"timed out: the cell ran longer than {timeout:g} s and could not be interrupted")
                break
            except DeadKernelError as exc:
                report["status"] = KERNEL_DIED
                note(index + 1, f"the kernel died while running this cell ({exc}); the rest did not run")
                break
            timed_out = time.monotonic() - started >= timeout
            if timed_out:  # nbclient interrupted it (KeyboardInterrupt) and the run goes on
                report["status"] = TIMED_OUT
                note(index + 1, f"timed out: the cell ran longer than {timeout:g} s and was interrupted")
            for output in cell.get("outputs", []):
                interrupted = timed_out and output.get("ename") == "KeyboardInterrupt"
                if output.get("output_type") == "error" and not interrupted:
                    note(index + 1, f"{output.get('ename')}: {output.get('evalue')}")
                report["figures"] += "image/png" in output.get("data", {})
        print(READY, flush=True)
        request = json.loads(sys.stdin.readline() or "{}")
        if report["status"] != KERNEL_DIED and request:
            probe = nbformat.v4.new_code_cell(_probe_source(request["checks"], int(request["seed"]),
                                                            state / "observations.json"))
            nb.cells.append(probe)
            client.timeout = PROBE_TIMEOUT
            try:
                client.execute_cell(probe, len(nb.cells) - 1)
            except (CellTimeoutError, DeadKernelError) as exc:
                note(None, f"observing the classes failed: {type(exc).__name__}")
    report["seconds"] = time.perf_counter() - start
    (state / "run.json").write_text(json.dumps(report), encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vislab.labs.runner", description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--timeout", type=float, required=True, help="seconds per cell")
    parser.add_argument("--output-kb", type=int, required=True, help="captured output kept per cell")
    args = parser.parse_args(argv)
    return run(args.notebook, args.timeout, args.output_kb)


if __name__ == "__main__":
    sys.exit(main())
