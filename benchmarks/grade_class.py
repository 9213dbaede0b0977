"""Grading a class: ``vislab labs check`` on N copies of the lab-1 solution, sandboxed and not.

    python benchmarks/grade_class.py [--n 40] [--out grade_class.json]

Three runs over the same N notebooks (copies of the packaged lab-1 solution), quick mode, in this order:

1. ``--no-sandbox --jobs 1``: the unsandboxed reference (what grading cost before the sandbox);
2. ``--jobs 1``: one bubblewrap sandbox per notebook, one at a time;
3. ``--jobs 2``: two sandboxes at a time.

Each run is a fresh ``vislab labs check`` process. Printed per run: wall seconds, notebooks per minute, the CPU
seconds of the whole grading (grader, sandboxes, kernels: sampled from /proc), the grader's own peak memory
(``ru_maxrss`` of the grading process) and the largest peak of any process under it (a kernel); then the sandbox's
overhead, sandboxed ``--jobs 1`` over unsandboxed ``--jobs 1``, in wall time (issue 25's target: at most 1.20)
and in CPU time (less sensitive to other users' load on a shared machine: the load average is printed too).
Every notebook must pass its five checks in every run, or the figures do not count (exit 1).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from vislab.labs.build import LABS
from vislab.labs.sandbox import sandbox_problem

# The grader as a process that reports its own peak memory on its last stderr line.
GRADER = ("import resource, sys\nfrom vislab.cli import main\nrc = main(sys.argv[1:])\n"
          "print('grader-maxrss-kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
          "sys.exit(rc)\n")
RUNS = (("unsandboxed, --jobs 1", 1, False), ("sandboxed, --jobs 1", 1, True), ("sandboxed, --jobs 2", 2, True))


class TreeSampler:
    """CPU seconds and peak RSS of a process and all its descendants, sampled from /proc every ``interval`` s.

    ``wait4``'s rusage cannot be used: the processes in a sandbox are reaped inside its PID namespace (or die
    with it), so their CPU time never reaches the grader. A process's figures are its last sample (CPU time
    after that is missed: under ``interval`` per process); the peak RSS is the kernel's own high-water mark.
    """

    def __init__(self, root: int, interval: float = 0.2) -> None:
        self.root, self.interval = root, interval
        self.seen: dict[tuple[int, str], tuple[float, int]] = {}  # (pid, start time) -> (CPU s, peak RSS kB)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.interval)

    def sample(self) -> None:
        parents: dict[int, int] = {}
        stats: dict[int, list[str]] = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    raw = Path(f"/proc/{name}/stat").read_text()
                except OSError:
                    continue
                fields = raw[raw.rindex(")") + 2:].split()  # after "pid (comm) "
                parents[int(name)], stats[int(name)] = int(fields[1]), fields
        tree, grew = {self.root}, True
        while grew:
            more = {pid for pid, parent in parents.items() if parent in tree} - tree
            tree |= more
            grew = bool(more)
        tick = os.sysconf("SC_CLK_TCK")
        for pid in tree & stats.keys():
            fields = stats[pid]
            cpu = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            try:
                hwm = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                           if line.startswith("VmHWM:"))
            except (OSError, StopIteration):
                hwm = 0
            self.seen[(pid, fields[19])] = (cpu, max(hwm, self.seen.get((pid, fields[19]), (0, 0))[1]))

    def close(self) -> tuple[float, int]:
        """(CPU seconds over the tree, the largest peak RSS of one process in kB)."""
        self.stop.set()
        self.thread.join()
        return sum(c for c, _ in self.seen.values()), max((m for _, m in self.seen.values()), default=0)


def grade_once(files: list[str], jobs: int, sandboxed: bool, workdir: Path, timeout: float) -> dict:
    """One ``vislab labs check`` process over ``files``: its figures, and whether every check passed."""
    out = workdir / f"grades-j{jobs}-{'sandbox' if sandboxed else 'nosandbox'}.json"
    cmd = [sys.executable, "-c", GRADER, "labs", "check", *files, "--jobs", str(jobs), "--timeout", f"{timeout:g}",
           "--json", str(out), *([] if sandboxed else ["--no-sandbox"])]
    env = {**os.environ, "VISLAB_NO_PROGRESS": "1"}
    with (workdir / "stdout.txt").open("wb") as stdout, (workdir / "stderr.txt").open("wb") as stderr:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, env=env)
        sampler = TreeSampler(proc.pid)
        proc.wait()
        wall = time.perf_counter() - start
        cpu, largest_kb = sampler.close()
    err = (workdir / "stderr.txt").read_text(errors="replace")
    grader_kb = next((int(line.split()[1]) for line in reversed(err.splitlines())
                      if line.startswith("grader-maxrss-kb ")), None)
    results = json.loads(out.read_text()) if out.exists() else []
    results = results if isinstance(results, list) else [results]
    passed = sum(all(c["status"] == "passed" for c in r["checks"]) and len(r["checks"]) == 5 for r in results)
    failures = [{"notebook": Path(r["notebook"]).name, "status": r["status"], "errors": r["errors"][:3],
                 "checks": [c for c in r["checks"] if c["status"] != "passed"]}
                for r in results if len(r["checks"]) != 5 or any(c["status"] != "passed" for c in r["checks"])]
    return {"jobs": jobs, "sandboxed": sandboxed, "exit_code": proc.returncode, "wall_s": round(wall, 2),
            "notebooks_per_min": round(60 * len(files) / wall, 2), "cpu_s": round(cpu, 2),
            "grader_peak_mb": round(grader_kb / 1024, 1) if grader_kb else None,
            "largest_process_peak_mb": round(largest_kb / 1024, 1), "notebooks": len(files),
            "all_passed": passed, "failures": failures, "stderr_tail": err.strip().splitlines()[-3:]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="notebooks in the class (default 40)")
    parser.add_argument("--timeout", type=float, default=600, help="the grader's time limit per cell (default 600)")
    parser.add_argument("--out", default=None, metavar="JSON", help="also write the figures here")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be at least 1")
    problem = sandbox_problem()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    figures: dict = {"n": args.n, "cpus": os.cpu_count(), "machine": platform.platform(),
                     "load_before": [round(x, 2) for x in load_before], "runs": {}}
    with tempfile.TemporaryDirectory(prefix="vislab-grade-class-") as tmp:
        tmp_path = Path(tmp)
        files = []
        for i in range(args.n):
            target = tmp_path / f"student{i + 1:02d}.ipynb"
            shutil.copyfile(LABS["lab1"].notebook("solution"), target)
            files.append(str(target))
        print(f"{args.n} copies of the lab-1 solution; load average {load_before[0]:.2f} on {os.cpu_count()} CPUs",
              flush=True)
        print(f"{'run':<24}{'wall s':>9}{'nb/min':>9}{'CPU s':>9}{'grader MB':>11}{'largest MB':>12}{'passed':>9}")
        for label, jobs, sandboxed in RUNS:
            run = grade_once(files, jobs, sandboxed, tmp_path, args.timeout)
            figures["runs"][label] = run
            print(f"{label:<24}{run['wall_s']:>9.1f}{run['notebooks_per_min']:>9.2f}{run['cpu_s']:>9.1f}"
                  f"{run['grader_peak_mb'] or float('nan'):>11.1f}{run['largest_process_peak_mb']:>12.1f}"
                  f"{run['all_passed']:>6}/{args.n}", flush=True)
    runs = figures["runs"]
    base, sandboxed = runs["unsandboxed, --jobs 1"], runs["sandboxed, --jobs 1"]
    figures["overhead_wall"] = round(sandboxed["wall_s"] / base["wall_s"], 3)
    figures["overhead_cpu"] = round(sandboxed["cpu_s"] / base["cpu_s"], 3) if base["cpu_s"] else None
    figures["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(f"sandbox overhead (sandboxed --jobs 1 / unsandboxed --jobs 1): wall {figures['overhead_wall']:.3f}, "
          f"CPU {figures['overhead_cpu']:.3f} (target: at most 1.20); load average now {figures['load_after'][0]:.2f}")
    ok = all(r["all_passed"] == args.n and r["exit_code"] == 0 for r in runs.values())
    if not ok:
        for label, r in runs.items():
            if r["all_passed"] != args.n or r["exit_code"] != 0:
                print(f"{label}: exit {r['exit_code']}, {r['all_passed']}/{args.n} passed: {r['stderr_tail']}",
                      file=sys.stderr)
                for failure in r["failures"]:
                    print(f"  {json.dumps(failure)[:400]}", file=sys.stderr)
        print("not every notebook passed: the figures do not count", file=sys.stderr)
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
