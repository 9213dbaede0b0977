"""``vislab labs ...``: list the labs, copy a lab's notebook out of the package, grade students' notebooks."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from vislab.core.errors import VislabError
from vislab.labs.build import LABS, VARIANTS
from vislab.labs.sandbox import Limits


def add_parser(labs: argparse._SubParsersAction) -> None:
    p_labs = labs.add_parser("labs", help="the lab course's notebooks: get them, grade them")
    sub = p_labs.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="the labs and their notebooks")
    p.set_defaults(func=run_list)

    p = sub.add_parser("get", help="copy a lab's exercise (or solution) notebook into a folder")
    p.add_argument("lab", choices=sorted(LABS))
    p.add_argument("--solution", action="store_true", help="the solution notebook instead of the exercise")
    p.add_argument("--out", default=".", metavar="DIR", help="destination folder (default: the current folder)")
    p.set_defaults(func=run_get)

    p = sub.add_parser("check", help="grade notebooks: run each in a sandbox (quick mode), decide every check here",
                       description="Runs each notebook in a sandbox of its own (bubblewrap: no network, read-only "
                                   "system, limits) with VISLAB_QUICK=1, then observes the students' classes on "
                                   "inputs and weights drawn now and compares them with the lab's reference in "
                                   "this process. The checks are the lab's, from the packaged exercise notebook "
                                   "(see docs/labs.md).")
    p.add_argument("notebooks", nargs="+", metavar="NOTEBOOK.ipynb")
    p.add_argument("--lab", choices=sorted(LABS), default=None,
                   help="the lab the notebooks belong to (default: recognised from each notebook)")
    p.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON (an object for one "
                                                               "notebook, a list for several)")
    p.add_argument("--csv", default=None, metavar="OUT", help="write the class table as CSV")
    p.add_argument("--timeout", type=float, default=600, metavar="S", help="time limit per cell in seconds "
                                                                          "(default 600)")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="notebooks graded at once (default 1)")
    p.add_argument("--no-sandbox", action="store_true",
                   help="grade without a sandbox where none can be made (the students' code runs with your rights)")
    defaults = Limits()
    p.add_argument("--memory-mb", type=int, default=defaults.memory_mb, metavar="MB",
                   help=f"address space per process in the sandbox (default {defaults.memory_mb})")
    p.add_argument("--max-procs", type=int, default=defaults.max_procs, metavar="N",
                   help=f"processes and threads per sandbox (default {defaults.max_procs})")
    p.add_argument("--max-file-mb", type=int, default=defaults.max_file_mb, metavar="MB",
                   help=f"largest file a notebook may write (default {defaults.max_file_mb})")
    p.add_argument("--cpu-seconds", type=int, default=defaults.cpu_seconds, metavar="S",
                   help=f"CPU time per process, and wall time per notebook (default {defaults.cpu_seconds})")
    p.add_argument("--output-kb", type=int, default=defaults.output_kb, metavar="KB",
                   help=f"captured output kept per cell (default {defaults.output_kb})")
    p.set_defaults(func=run_check)


def run_list(args: argparse.Namespace) -> int:
    """Print each lab with its title and the notebooks ``get`` can copy."""
    for lab in LABS.values():
        print(f"{lab.name}  {lab.title}")
        for variant in VARIANTS:
            flag = " --solution" if variant == "solution" else ""
            print(f"      {lab.notebook(variant).name:<32} vislab labs get {lab.name}{flag}")
    return 0


def copy_notebook(lab_name: str, out_dir: str | Path, solution: bool = False) -> Path:
    """Copy a lab's notebook into ``out_dir`` (created if needed); never overwrites an existing file."""
    if lab_name not in LABS:
        raise VislabError(f"unknown lab {lab_name!r}; choose one of {', '.join(sorted(LABS))}")
    source = LABS[lab_name].notebook("solution" if solution else "exercise")
    if not source.is_file():
        raise VislabError(f"the {lab_name} notebook is missing from the installed package ({source})")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise VislabError(f"--out {out_dir} is a file, not a folder")
    target = out_dir / source.name
    if target.exists():
        raise VislabError(f"{target} already exists; not overwriting it (move it away, or use --out DIR)")
    out_dir.mkdir(parents=True, exist_ok=True)
    # Exclusive creation: a file that appears between the check and the copy is still never overwritten.
    try:
        with source.open("rb") as src, target.open("xb") as dst:
            shutil.copyfileobj(src, dst)
    except FileExistsError:
        raise VislabError(f"{target} already exists; not overwriting it (move it away, or use --out DIR)") from None
    return target


def run_get(args: argparse.Namespace) -> int:
    """Copy the notebook and say how to open it."""
    target = copy_notebook(args.lab, args.out, solution=args.solution)
    print(f"wrote {target}")
    print(f"open it with: jupyter lab {target}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    """Grade, print the table, write JSON/CSV; exit 2 only when no notebook could be graded at all."""
    from vislab.labs.grade import format_table, grade, write_csv, write_json

    if not args.timeout > 0:
        raise VislabError(f"--timeout must be positive, got {args.timeout:g}")
    limits = Limits(memory_mb=args.memory_mb, max_procs=args.max_procs, max_file_mb=args.max_file_mb,
                    cpu_seconds=args.cpu_seconds, output_kb=args.output_kb)
    results = grade(args.notebooks, timeout=args.timeout, lab=args.lab, limits=limits,
                    sandboxed=not args.no_sandbox, jobs=args.jobs)
    print(format_table(results))
    for path, writer in ((args.json, write_json), (args.csv, write_csv)):
        if path:
            try:
                print(f"wrote {writer(results, path)}")
            except OSError as exc:
                raise VislabError(f"cannot write {path}: {exc.strerror or exc}") from None
    if not any(r.graded for r in results):
        reasons = "; ".join(f"{r.notebook}: {r.errors[0]['error']}" for r in results if r.errors)
        raise VislabError(f"nothing could be graded: {reasons}")
    return 0
