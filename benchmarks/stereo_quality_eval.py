"""EPE / D1 of PSMNet weights with each disparity estimator, on held-out synthetic scenes and the real pairs.

The measurement behind ``docs/stereo-quality.md``: the same held-out sets as the model card's
``vislab stereo eval`` commands (50 synthetic scenes at 96x192, max_disp 96, all pixels and visible
pixels; the shared KITTI 2015 / Middlebury 2014 Q / FlyingThings3D pairs at max_disp 192), every
(weights, estimator) combination, one JSON line per measurement and a Markdown table at the end.

    OMP_NUM_THREADS=1 python benchmarks/stereo_quality_eval.py --weights shipped --estimators softargmin dominant
    python benchmarks/stereo_quality_eval.py --weights runs/x/final_fp16.pt --sets synthetic   # selection only

Held-out synthetic scenes choose; the real pairs are reported, never used to choose (issue 12).
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from vislab.stereo.datasets import create_dataset
from vislab.stereo.evaluate import evaluate, psmnet_predict_fn
from vislab.stereo.models import load_stereo_model

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "stereo"
SYNTHETIC = {"size": 50, "height": 96, "width": 192, "max_disp": 96}


def eval_sets(names: list[str], shared: Path) -> list[tuple[str, Any, int]]:
    """(label, dataset, max_disp) for each requested set."""
    out: list[tuple[str, Any, int]] = []
    for name in names:
        if name == "synthetic":
            out.append(("synthetic-all", create_dataset("synthetic", None, split="testing", **SYNTHETIC), 96))
            out.append(("synthetic-visible", create_dataset("synthetic", None, split="testing", nonocc=True,
                                                            **SYNTHETIC), 96))
        elif name == "sceneflow":
            out.append((name, create_dataset(name, shared / name, split="testing"), 192))
        else:
            out.append((name, create_dataset(name, shared / name, split="training"), 192))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", nargs="+", default=["shipped"], help="checkpoint files; 'shipped' = the default")
    p.add_argument("--estimators", nargs="+", default=["softargmin", "dominant"])
    p.add_argument("--window", type=int, default=4, help="dominant-mode half-window in px")
    p.add_argument("--sets", nargs="+", default=["synthetic", "kitti2015", "middlebury2014", "sceneflow"])
    p.add_argument("--shared", type=Path, default=SHARED, help="folder holding the real datasets")
    args = p.parse_args(argv)
    torch.set_grad_enabled(False)
    sets = eval_sets(args.sets, args.shared)
    rows = []
    for weights in args.weights:
        for label, dataset, max_disp in sets:
            model, _ = load_stereo_model(None if weights == "shipped" else weights, "cpu", max_disp=max_disp)
            for estimator in args.estimators:
                model.estimator, model.estimator_window = estimator, args.window
                res = evaluate(psmnet_predict_fn(model, "cpu"), dataset, max_disp=max_disp, progress=False)
                pm = res["pixel_mean"]
                row = {"weights": weights, "set": label, "estimator": estimator, "window": args.window,
                       "epe": round(pm["epe"], 3), "d1": round(pm["d1"], 2), "seconds": round(res["seconds"], 1)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    print("\n| weights | estimator | " + " | ".join(label for label, _, _ in sets) + " |")
    print("|---|---|" + "---|" * len(sets))
    for weights in args.weights:
        for estimator in args.estimators:
            cells = [next(f"{r['epe']:.3f} / {r['d1']:.2f} %" for r in rows
                          if r["weights"] == weights and r["set"] == label and r["estimator"] == estimator)
                     for label, _, _ in sets]
            print(f"| {weights} | {estimator} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
