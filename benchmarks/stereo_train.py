"""CPU training benchmark: one PSMNet optimizer step with vislab's training path vs a naive reference.

    python benchmarks/stereo_train.py [--size 256x512] [--max-disp 192] [--model stackhourglass] [--repeat 2]

One iteration = forward in training mode (batch 1), the paper's loss (0.5/0.7/1.0 smooth-L1 over
0 < gt < max_disp), backward and an Adam step. vislab runs what ``vislab stereo train`` runs on a CPU:
the model with channels-last 3D weights and volumes, the concatenation volume built without a loop, the
soft-argmin regression fused band by band with an analytic backward, and glibc's malloc told to keep freed
blocks (``vislab.core.memory``) instead of page-faulting fresh memory every step. The reference is the model
written the straightforward way (``reference_forward`` of ``stereo_inference.py``: a Python loop over
disparities, the contiguous layout, each output's full (D, H, W) volume upsampled, soft-maxed and kept for
autograd). Both start from the same seeded, conditioned weights (``stereo_inference._random_weights``) and
train on the same synthetic scene; each runs in its own subprocess so that its peak RSS (``VmHWM``) is its
own. The first step's loss and gradients of the two are printed side by side. In float32 they differ by
rounding (about 1 % of the gradient's norm: BatchNorm on batch statistics and sharp softmaxes amplify it);
``tests/test_psmnet_parity.py`` runs both in float64, where outputs and gradients agree to 1e-7.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from stereo_inference import _random_weights, _rss_mb, reference_forward


def _scene(h: int, w: int, max_disp: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One synthetic scene at full size: ImageNet-normalised left/right (1, 3, H, W) and disparity (1, H, W)."""
    from vislab.stereo.datasets.synthetic import render_scene
    from vislab.stereo.transforms import imagenet_normalize

    scene = render_scene(0, h, w, max_disp)
    left, right = (imagenet_normalize(torch.from_numpy(scene[k]).permute(2, 0, 1)).unsqueeze(0)
                   for k in ("left", "right"))
    return left, right, torch.from_numpy(scene["disp"]).unsqueeze(0)


def _reference_loss(outputs: list[torch.Tensor], disp: torch.Tensor, max_disp: int) -> torch.Tensor:
    mask = (disp > 0) & (disp < max_disp)
    weights = (0.5, 0.7, 1.0) if len(outputs) == 3 else (1.0,)
    return sum(wt * F.smooth_l1_loss(out[mask], disp[mask]) for wt, out in zip(weights, outputs, strict=True))


def _worker(args: argparse.Namespace) -> None:
    from vislab.core.memory import retain_freed_memory
    from vislab.stereo.loss import OUTPUT_WEIGHTS, disparity_mask, psmnet_loss
    from vislab.stereo.models import create_model

    torch.manual_seed(0)
    h, w = (int(v) for v in args.size.split("x"))
    model = create_model(args.model, max_disp=args.max_disp)
    model.load_state_dict(torch.load(args.weights, weights_only=True))
    model.train()
    if args.worker == "vislab":  # as vislab.stereo.train does on a CPU
        model.channels_last_3d_()
        retain_freed_memory()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999))
    left, right, disp = _scene(h, w, args.max_disp)
    baseline = _rss_mb()

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        if args.worker == "vislab":
            mask = disparity_mask(disp, torch.ones_like(disp, dtype=torch.bool), args.max_disp)
            loss = psmnet_loss(model(left, right), disp, mask, OUTPUT_WEIGHTS[args.model])
        else:
            loss = _reference_loss(reference_forward(model, left, right, all_outputs=True), disp, args.max_disp)
        loss.backward()
        if not grads:  # the first step's gradients, for the comparison
            grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
            losses.append(loss.item())
        optimizer.step()
        return loss.item()

    grads: list[torch.Tensor] = []
    losses: list[float] = []
    times = []
    for i in range(args.warmup + args.repeat):
        start = time.perf_counter()
        step()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    torch.save({"grad": grads[0], "loss": losses[0]}, args.save)
    print(json.dumps({"seconds": statistics.median(times), "all_seconds": times, "peak_rss_mb": _rss_mb(),
                      "baseline_rss_mb": baseline}))


def _run_child(impl: str, args: argparse.Namespace, save: Path, weights: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", impl, "--size", args.size, "--max-disp", str(args.max_disp),
           "--model", args.model, "--repeat", str(args.repeat), "--warmup", str(args.warmup), "--save", str(save),
           "--weights", str(weights)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{impl} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="256x512", help="HxW of the training crop")
    parser.add_argument("--max-disp", type=int, default=192)
    parser.add_argument("--model", default="stackhourglass", choices=("stackhourglass", "basic"))
    parser.add_argument("--repeat", type=int, default=2, help="timed iterations per implementation (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations first (oneDNN primitive caches)")
    parser.add_argument("--worker", default=None, choices=("vislab", "reference"), help=argparse.SUPPRESS)
    parser.add_argument("--save", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--weights", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return

    print(f"PSMNet {args.model} training step: batch 1, {args.size}, max_disp {args.max_disp}, Adam; "
          f"CPU threads {torch.get_num_threads()}; median of {args.repeat} after {args.warmup} warm-up")
    header = f"{'impl':>9} {'s/iter':>8} {'peak RSS MB':>12} {'(model+libs)':>12}  all timed iterations"
    rows = [header, "-" * len(header)]
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "weights.pt"
        _random_weights(args, weights)
        res = {}
        for impl in ("reference", "vislab"):
            res[impl] = r = _run_child(impl, args, Path(tmp) / f"{impl}.pt", weights)
            rows.append(f"{impl:>9} {r['seconds']:8.2f} {r['peak_rss_mb']:12.0f} {r['baseline_rss_mb']:12.0f}  "
                        + " ".join(f"{t:.2f}" for t in r["all_seconds"]))
        ours, ref = (torch.load(Path(tmp) / f"{impl}.pt") for impl in ("vislab", "reference"))
    grad_rel = ((ours["grad"] - ref["grad"]).norm() / ref["grad"].norm()).item()
    print("\n".join(rows))
    vis, base = res["vislab"], res["reference"]
    print(f"vislab: {base['seconds'] / vis['seconds']:.2f}x faster per iteration, peak RSS "
          f"{vis['peak_rss_mb'] / base['peak_rss_mb']:.2f}x of the reference; first-step loss "
          f"{ours['loss']:.5f} vs {ref['loss']:.5f}, gradient relative difference {grad_rel:.1e}")


if __name__ == "__main__":
    main()
