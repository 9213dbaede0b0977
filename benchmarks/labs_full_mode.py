"""The lab notebooks in full mode (``VISLAB_QUICK`` off), headless: each network's time and accuracy, the total.

    python benchmarks/labs_full_mode.py [--lab lab1|lab2|all] [--networks MLP,SimpleCNN,...] [--lab-settings]
                                        [--estimate STEPS] [--json OUT] [--quick]

1. Runs each lab's *solution* notebook as a student would, top to bottom in a fresh kernel of this Python
   (nbclient), with quick mode off, and prints per network (lab 1: epochs, seconds, final test accuracy, as
   the notebook's closing table) or per step (lab 2: every logged training loss, the training time and the
   slowest cells), and the whole notebook's wall time. ``--networks`` keeps only those lab 1 networks'
   training cells (the others are dropped from the run); ``--lab-settings`` sets the notebooks'
   ``LAB_SETTINGS = True`` (the lab's own settings: lab 1 about 2 hours on two cores). ``--quick`` runs them
   in quick mode instead, a smoke test of this script.
2. ``--estimate STEPS`` instead times STEPS training steps (after 3 warm-up steps) of each network under the
   lab's settings and under the notebook's CPU settings (vislab's copy of each architecture, the notebook's
   loop), each in a process of its own, alternating, plus two of the ten validation batches, and extrapolates
   both full-mode runs of lab 1 from the mean step: a 2-hour run need not be run to be compared. For lab 2 it
   counts the work (FLOPs) of the notebook's training under both settings.

Timings on a shared machine swing with the other users' load (printed at the start and the end); the
accuracies do not depend on it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LAB1_NETWORKS = ("MLP", "SimpleCNN", "SimpleVGG", "SimpleResNet")
SUMMARY_CELL = "import json\nprint('BENCHMARK ' + json.dumps({name: list(row) for name, row in results.items()}))"
ITER_LINE = re.compile(r"Iter (\d+) training loss = ([0-9.]+) , time = ([0-9.]+)")


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def notebook_path(lab: str) -> Path:
    from vislab.labs.build import LABS

    return LABS[lab].notebook("solution")


def prepare(nb: Any, lab: str, networks: list[str], lab_settings: bool) -> Any:
    """The notebook to run: unselected networks' training cells dropped, a results cell appended for lab 1."""
    import nbformat

    cells = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            trained = [name for name in LAB1_NETWORKS if f'results["{name}"] =' in cell.source]
            if lab == "lab1" and trained and trained[0] not in networks:
                continue
            if lab_settings:
                cell.source = cell.source.replace("LAB_SETTINGS = False", "LAB_SETTINGS = True")
        cells.append(cell)
    if lab == "lab1":
        cells.append(nbformat.v4.new_code_cell(SUMMARY_CELL))
    nb.cells = cells
    return nb


def cell_seconds(cell: Any) -> float:
    """Wall time of an executed cell from nbclient's timing metadata."""
    from datetime import datetime

    timing = cell.get("metadata", {}).get("execution", {})
    try:
        start = datetime.fromisoformat(timing["iopub.execute_input"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(timing["shell.execute_reply"].replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return float("nan")
    return (end - start).total_seconds()


def cell_text(cell: Any) -> str:
    return "".join(out.get("text", "") for out in cell.get("outputs", []) if out.get("output_type") == "stream")


def run_notebook(lab: str, networks: list[str], lab_settings: bool, timeout: int,
                 quick: bool = False) -> dict[str, Any]:
    import nbformat
    from nbclient import NotebookClient

    nb = prepare(nbformat.read(notebook_path(lab), as_version=4), lab, networks, lab_settings)
    env_before = os.environ.pop("VISLAB_QUICK", None)  # the kernel inherits this environment: full mode
    if quick:
        os.environ["VISLAB_QUICK"] = "1"
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as work:
            NotebookClient(nb, timeout=timeout, kernel_name="python3",
                           resources={"metadata": {"path": work}}).execute()
    finally:
        os.environ.pop("VISLAB_QUICK", None)
        if env_before is not None:
            os.environ["VISLAB_QUICK"] = env_before
    total = time.perf_counter() - start
    result: dict[str, Any] = {"lab": lab, "seconds": total}
    if lab == "lab1":
        line = next(x for x in cell_text(nb.cells[-1]).splitlines() if x.startswith("BENCHMARK "))
        result["networks"] = {name: dict(zip(("epochs", "seconds", "accuracy"), row, strict=True))
                              for name, row in json.loads(line.removeprefix("BENCHMARK ")).items()}
        result["settings"] = cell_text(next(c for c in nb.cells if "settings.describe()" in c.source)).strip()
    else:
        result["cells"] = []
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            iters = [(int(a), float(b), float(c)) for a, b, c in ITER_LINE.findall(cell_text(cell))]
            if iters:
                result["training"] = {"iterations_logged": [x[0] for x in iters], "losses": [x[1] for x in iters],
                                      "seconds": cell_seconds(cell)}
            result["cells"].append({"cell": i, "seconds": cell_seconds(cell), "first_line": cell.source.split("\n")[0]})
    return result


def print_lab1(result: dict[str, Any]) -> None:
    print(result["settings"])
    print(f"{'network':<14}{'epochs':>7}{'seconds':>10}{'accuracy %':>12}")
    for name, row in result["networks"].items():
        print(f"{name:<14}{row['epochs']:>7}{row['seconds']:>10.1f}{row['accuracy']:>12.2f}")
    print(f"{'training':<14}{'':>7}{sum(r['seconds'] for r in result['networks'].values()):>10.1f}")
    print(f"{'notebook':<14}{'':>7}{result['seconds']:>10.1f}   (whole notebook, wall clock)")


def print_lab2(result: dict[str, Any]) -> None:
    training = result.get("training")
    if training:
        losses = training["losses"]
        print(f"training: {training['seconds']:.1f} s; loss at iterations {training['iterations_logged']}: "
              + " ".join(f"{x:.2f}" for x in losses))
    slow = sorted(result["cells"], key=lambda c: -c["seconds"])[:5]
    for cell in slow:
        print(f"  cell {cell['cell']:>3}: {cell['seconds']:7.1f} s  {cell['first_line'][:70]}")
    print(f"notebook: {result['seconds']:.1f} s (whole notebook, wall clock)")


# ------------------------------------------------------------------------------------------------ estimate

STEP_SCRIPT = r'''
import json, sys, time
import torch, torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from vislab.labs.settings import REGISTRY_NAMES, lab1_settings
from vislab.mnist.data import load_mnist, normalize
from vislab.mnist.models import create_model

network, which, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
settings = lab1_settings("cpu", lab=which == "lab")
if not settings.lab:
    from vislab.core.memory import retain_freed_memory
    retain_freed_memory()
torch.manual_seed(0)
x, y = load_mnist(None, "train")
loader = DataLoader(TensorDataset(normalize(x), y), batch_size=settings.batch_size, shuffle=True)
vx, vy = load_mnist(None, "test")
val_loader = DataLoader(TensorDataset(normalize(vx), vy), batch_size=1000)
fmt = torch.channels_last if settings.channels_last else torch.contiguous_format
model = create_model(REGISTRY_NAMES[network]).to(memory_format=fmt)
if settings.lab:
    opt = (torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5) if network == "MLP"
           else torch.optim.Adam(model.parameters(), lr=1e-3))
    sched = None
else:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=10 ** 6)
bf16 = settings.bf16[network]
model.train()
times, batches = [], iter(loader)
warmup = 3
for i in range(steps + warmup):
    start = time.perf_counter()
    data, target = next(batches)
    opt.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        output = model(data)
    F.nll_loss(output, target).backward()
    opt.step()
    if sched is not None:
        sched.step()
    if i >= warmup:
        times.append(time.perf_counter() - start)
model.eval()
start = time.perf_counter()
with torch.no_grad():  # two of the ten validation batches, scaled: the whole pass costs minutes under load
    for i, (data, target) in enumerate(val_loader):
        model(data).argmax(1)
        if i == 1:
            break
val = (time.perf_counter() - start) * len(val_loader) / 2
print(json.dumps({"step": sorted(times)[len(times) // 2], "mean_step": sum(times) / len(times),
                  "steps_per_epoch": len(loader), "validation": val, "epochs": settings.epochs[network]}))
'''


def estimate(networks: list[str], steps: int) -> dict[str, Any]:
    """Extrapolated full-mode training time of lab 1 under the lab's settings and under the CPU settings."""
    rows: dict[str, Any] = {}
    for name in networks:
        rows[name] = {}
        for which in ("lab", "cpu"):  # alternating per network, each in a fresh process
            out = subprocess.run([sys.executable, "-c", STEP_SCRIPT, name, which, str(steps)], check=True,
                                 capture_output=True, text=True).stdout
            m = json.loads(out.strip().splitlines()[-1])
            m["estimate"] = m["epochs"] * (m["steps_per_epoch"] * m["mean_step"] + m["validation"])
            rows[name][which] = m
            print(f"{name:<14}{which:<5} {m['mean_step'] * 1e3:8.1f} ms/step (median {m['step'] * 1e3:.1f}) x "
                  f"{m['steps_per_epoch']} steps + {m['validation']:.1f} s validation, x {m['epochs']} epochs "
                  f"= {m['estimate']:.0f} s", flush=True)
    totals = {w: sum(r[w]["estimate"] for r in rows.values()) for w in ("lab", "cpu")}
    print(f"estimated training time of lab 1: lab settings {totals['lab']:.0f} s ({totals['lab'] / 60:.1f} min), "
          f"CPU settings {totals['cpu']:.0f} s ({totals['cpu'] / 60:.1f} min): "
          f"{totals['lab'] / totals['cpu']:.1f}x")
    return {"networks": rows, "totals": totals}


def lab2_flops() -> dict[str, float]:
    """Work of lab 2's training (forward + backward, the notebook's ``StudentPSMNet``, all iterations) in TFLOP,
    under the lab's settings and under the CPU settings, counted on the meta device: no compute, no load."""
    import nbformat
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    nb = nbformat.read(notebook_path("lab2"), as_version=4)
    namespace: dict[str, Any] = {}
    for cell in nb.cells:  # the imports and the definitions only (no data, no checkers, no plots)
        if cell.cell_type == "code" and cell.source.startswith(("import os", "class ", "def ", "scores =")):
            with contextlib.redirect_stdout(io.StringIO()):  # the cells' own demo prints
                exec(cell.source, namespace)
    cell = next(c.source for c in nb.cells if "train_h, train_w, train_disp" in c.source)
    rows = re.findall(r"train_h, train_w, train_disp, batch, iterations, log_every = ([0-9, ]+)", cell)
    flops = {}
    for which, row in zip(("lab", "cpu"), rows[1:], strict=True):  # rows[0] is quick mode
        h, w, disp, batch, iterations = (int(v) for v in row.split(",")[:5])
        with torch.device("meta"):
            model = namespace["StudentPSMNet"](max_disp=disp).train()
            left, right = torch.randn(batch, 3, h, w), torch.randn(batch, 3, h, w)
        with FlopCounterMode(display=False) as counter:
            sum(out.mean() for out in model(left, right)).backward()
        flops[which] = counter.get_total_flops() / 1e12 * iterations
        print(f"lab 2 {which:<4} settings: {h} x {w} crops, batch {batch}, range {disp}: "
              f"{flops[which] / iterations:.2f} TFLOP per training iteration, x {iterations} iterations = "
              f"{flops[which]:.1f} TFLOP", flush=True)
    print(f"lab 2: the CPU settings' training is {flops['cpu'] / flops['lab']:.2f}x the lab's work")
    return flops


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lab", choices=("lab1", "lab2", "all"), default="all")
    parser.add_argument("--networks", default=",".join(LAB1_NETWORKS),
                        help="lab 1's networks to train, comma-separated (default: all four)")
    parser.add_argument("--lab-settings", action="store_true", help="lab 1 with LAB_SETTINGS = True")
    parser.add_argument("--estimate", type=int, metavar="STEPS", default=0,
                        help="extrapolate lab 1 from STEPS timed steps per network and settings; runs no notebook")
    parser.add_argument("--timeout", type=int, default=7200, help="seconds per cell (default 7200)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--quick", action="store_true", help="quick mode instead: a smoke test of this benchmark")
    args = parser.parse_args(argv)
    networks = [n.strip() for n in args.networks.split(",") if n.strip()]
    unknown = sorted(set(networks) - set(LAB1_NETWORKS))
    if unknown:
        parser.error(f"unknown network(s) {', '.join(unknown)}; choose from {', '.join(LAB1_NETWORKS)}")
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
          f"load average at the start: {load()}", flush=True)
    results: dict[str, Any] = {}
    if args.estimate:
        if args.lab in ("lab1", "all"):
            results["estimate"] = estimate(networks, args.estimate)
        if args.lab in ("lab2", "all"):
            results["lab2_training_tflop"] = lab2_flops()
    else:
        labs = ("lab1", "lab2") if args.lab == "all" else (args.lab,)
        for lab in labs:
            print(f"\n== {lab} (solution notebook, {'quick' if args.quick else 'full'} mode) ==", flush=True)
            result = run_notebook(lab, networks, args.lab_settings, args.timeout, args.quick)
            (print_lab1 if lab == "lab1" else print_lab2)(result)
            results[lab] = result
        if len(labs) > 1:
            print(f"\ntotal, both notebooks: {sum(r['seconds'] for r in results.values()):.1f} s")
    print(f"load average at the end: {load()}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
