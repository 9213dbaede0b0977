"""CPU inference benchmark: vislab's PSMNet ``model.infer`` vs a naive reference forward, same weights.

    python benchmarks/stereo_inference.py [--sizes 384x1248,256x512] [--max-disp 192] [--model stackhourglass]

The reference is the model written the straightforward way, as the official code does it: the cost
volume filled by a Python loop over disparities, BatchNorm as separate layers, the contiguous memory
layout, and the whole (D, H, W) volume upsampled, soft-maxed and multiplied by the disparities at once.
Each (implementation, size) runs in its own subprocess, so the peak RSS of that child (``VmHWM``; see
``_rss_mb``) is measured separately. Weights are random (seeded; the speed and memory do not depend on them) and
both implementations get the same weights and images; the table also shows how far apart their
disparities are.

With ``onnxruntime`` installed (``vislab[onnx]``) a third row per size runs the same weights exported by
``vislab stereo export --dynamic`` (soft-argmin, as ``model.infer`` here) in ONNX Runtime's CPU provider, with
as many intra-op threads as torch uses; it is compared with vislab's PyTorch path (``--no-onnx`` skips it).
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from vislab.core.errors import VislabError


def _basic_block(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = block.conv2(block.conv1(x))
    return out + (x if block.downsample is None else block.downsample(x))


def _features(fe: torch.nn.Module, x: torch.Tensor, align_corners: bool) -> torch.Tensor:
    """Feature extractor with fixed AvgPool2d(k, stride=k) windows, as published."""
    for layer in (fe.firstconv,):
        x = layer(x)
    for stage in (fe.layer1, fe.layer2):
        for block in stage:
            x = _basic_block(block, x)
    raw = x
    for stage in (fe.layer3, fe.layer4):
        for block in stage:
            x = _basic_block(block, x)
    skip = x
    branches = []
    for branch, k in ((fe.branch4, 8), (fe.branch3, 16), (fe.branch2, 32), (fe.branch1, 64)):
        y = branch[2](branch[1](F.avg_pool2d(skip, k, stride=k)))
        branches.append(F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=align_corners))
    return fe.lastconv(torch.cat([raw, skip, *branches], dim=1))


def _hourglass(hg: torch.nn.Module, x, presqu, postsqu):
    out = hg.conv1(x)
    pre = hg.conv2(out)
    pre = F.relu(pre + postsqu) if postsqu is not None else F.relu(pre)
    out = hg.conv4(hg.conv3(pre))
    post = F.relu(hg.conv5(out) + (presqu if presqu is not None else pre))
    return hg.conv6(post), pre, post


def reference_forward(model: torch.nn.Module, left: torch.Tensor, right: torch.Tensor,
                      all_outputs: bool = False) -> torch.Tensor | list[torch.Tensor]:
    """Naive forward of a stackhourglass/basic PSMNet (max_disp a multiple of 16, H, W >= 256): the final
    disparity, or with ``all_outputs`` every supervised output (training: 3 for stackhourglass)."""
    h, w = left.shape[-2:]
    top, rpad = (-h) % 16, (-w) % 16
    left, right = F.pad(left, (0, rpad, top, 0)), F.pad(right, (0, rpad, top, 0))
    ac, maxdisp = model.align_corners, model.max_disp
    fl = _features(model.feature_extraction, left, ac)
    fr = _features(model.feature_extraction, right, ac)
    b, c, h4, w4 = fl.shape
    cost = fl.new_zeros(b, 2 * c, maxdisp // 4, h4, w4)
    for i in range(maxdisp // 4):
        if i > 0:
            cost[:, :c, i, :, i:] = fl[:, :, :, i:]
            cost[:, c:, i, :, i:] = fr[:, :, :, :-i]
        else:
            cost[:, :c, i] = fl
            cost[:, c:, i] = fr
    cost0 = model.dres0(cost)
    if model.name == "basic":
        for block in (model.dres1, model.dres2, model.dres3, model.dres4):
            cost0 = block(cost0) + cost0
        costs = [model.classify(cost0)]
    else:
        cost0 = model.dres1(cost0) + cost0
        out1, pre1, post1 = _hourglass(model.dres2, cost0, None, None)
        out1 = out1 + cost0
        out2, pre2, post2 = _hourglass(model.dres3, out1, pre1, post1)
        out2 = out2 + cost0
        out3, pre3, post3 = _hourglass(model.dres4, out2, pre1, post2)
        out3 = out3 + cost0
        cost1 = model.classif1(out1)
        cost2 = model.classif2(out2) + cost1
        costs = [cost1, cost2, model.classif3(out3) + cost2]
    disps = []
    for cost in costs if all_outputs else costs[-1:]:
        up = F.interpolate(cost, [maxdisp, left.shape[2], left.shape[3]], mode="trilinear", align_corners=ac)
        prob = F.softmax(up.squeeze(1), dim=1)
        disp = torch.sum(prob * torch.arange(maxdisp, dtype=prob.dtype).view(1, maxdisp, 1, 1), dim=1)
        disps.append(disp[:, top:, :w])
    return disps if all_outputs else disps[0]


def _rss_mb() -> float:
    """Peak resident memory of this process in MB.

    On Linux ``ru_maxrss`` survives ``execve``: a child inherits the high-water mark of the parent
    at fork time. ``VmHWM`` belongs to the process's own address space, so it is used when present.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def _worker(args: argparse.Namespace) -> None:
    """Run one implementation at one size; print a JSON line; save the disparity for comparison."""
    from vislab.stereo.models import create_model

    torch.manual_seed(0)
    h, w = (int(v) for v in args.size.split("x"))
    model = create_model(args.model, max_disp=args.max_disp)
    model.load_state_dict(torch.load(args.weights, weights_only=True))
    model.eval()
    left, right = torch.randn(1, 3, h, w), torch.randn(1, 3, h, w)
    if args.worker == "onnxruntime":
        from vislab.stereo.export import StereoOnnx
        from vislab.stereo.transforms import IMAGENET_MEAN, IMAGENET_STD

        del model  # this process runs the exported graph only
        runner = StereoOnnx(args.onnx, "cpu")
        # The graph normalises its [0, 1] input itself: feed the images whose normalisation is left/right.
        mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        feeds = ((left * std + mean).numpy(), (right * std + mean).numpy())
    baseline = _rss_mb()

    def run() -> torch.Tensor:
        if args.worker == "onnxruntime":
            return torch.from_numpy(runner.run_batch(*feeds)[0])
        if args.worker == "vislab":
            return model.infer(left, right, return_confidence=False)[0]
        with torch.no_grad():
            return reference_forward(model, left, right)

    times = []
    for i in range(args.warmup + args.repeat):
        start = time.perf_counter()
        disp = run()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    torch.save(disp, args.save)
    print(json.dumps({"seconds": statistics.median(times), "peak_rss_mb": _rss_mb(), "baseline_rss_mb": baseline}))


def _random_weights(args: argparse.Namespace, path: Path) -> None:
    """Seeded random weights, conditioned like a trained network rather than a raw init.

    With the raw init (BN = identity) the cost logits reach ~1e7, where float32 rounding alone flips
    soft-argmin ties by up to a pixel between any two implementations. BN statistics from two
    training-mode passes on random images and a smaller final classifier keep the costs moderate,
    so the printed disparity difference measures the implementations, not rounding.
    """
    from vislab.stereo.models import create_model

    torch.manual_seed(0)
    model = create_model(args.model, max_disp=args.max_disp)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(2, 3, 128, 256), torch.randn(2, 3, 128, 256))
        for m in model.modules():
            if isinstance(m, torch.nn.Sequential) and isinstance(m[-1], torch.nn.Conv3d) and m[-1].out_channels == 1:
                m[-1].weight.mul_(0.1)
    torch.save(model.state_dict(), path)


def _run_child(impl: str, size: str, args: argparse.Namespace, save: Path, weights: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", impl, "--size", size, "--max-disp", str(args.max_disp),
           "--model", args.model, "--repeat", str(args.repeat), "--warmup", str(args.warmup), "--save", str(save),
           "--weights", str(weights), "--onnx", str(weights.with_suffix(".onnx"))]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{impl} at {size} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="384x1248,256x512", help="comma-separated HxW list")
    parser.add_argument("--max-disp", type=int, default=192)
    parser.add_argument("--model", default="stackhourglass", choices=("stackhourglass", "basic"))
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per implementation (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (oneDNN primitive caches)")
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime row")
    parser.add_argument("--worker", default=None, choices=("vislab", "reference", "onnxruntime"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--onnx", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--size", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--save", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--weights", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return

    print(f"PSMNet {args.model}, max_disp {args.max_disp}, CPU threads {torch.get_num_threads()}, "
          f"random weights (conditioned), batch 1, median of {args.repeat} run(s) after {args.warmup} warm-up")
    header = f"{'size':>10} {'impl':>11} {'seconds':>8} {'peak RSS MB':>12} {'(model+libs)':>12}"
    rows, ratios = [header, "-" * len(header)], []
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "weights.pt"
        _random_weights(args, weights)
        impls = ["reference", "vislab"]
        if not args.no_onnx:
            try:
                from vislab.stereo.export import export_stereo

                export_stereo(weights.with_suffix(".onnx"), weights, max_disp=args.max_disp, dynamic=True,
                              estimator="softargmin")
                impls.append("onnxruntime")
            except VislabError as exc:  # no onnx/onnxruntime: the PyTorch rows only
                print(f"no ONNX Runtime row: {exc}")
        for size in args.sizes.split(","):
            res = {}
            for impl in impls:
                res[impl] = _run_child(impl, size, args, Path(tmp) / f"{impl}.pt", weights)
                r = res[impl]
                rows.append(f"{size:>10} {impl:>11} {r['seconds']:8.2f} {r['peak_rss_mb']:12.0f} "
                            f"{r['baseline_rss_mb']:12.0f}")
            diff = (torch.load(Path(tmp) / "vislab.pt") - torch.load(Path(tmp) / "reference.pt")).abs().max().item()
            ref, vis = res["reference"], res["vislab"]
            above = (vis["peak_rss_mb"] - vis["baseline_rss_mb"]) / max(
                1.0, ref["peak_rss_mb"] - ref["baseline_rss_mb"])
            ratios.append(f"{size:>10}: {ref['seconds'] / vis['seconds']:.2f}x faster, peak RSS "
                          f"{vis['peak_rss_mb'] / ref['peak_rss_mb']:.2f}x of the reference "
                          f"(above the model+libs baseline: {above:.2f}x), max |disparity difference| {diff:.2e} px")
            if "onnxruntime" in res:
                ort = res["onnxruntime"]
                diff = (torch.load(Path(tmp) / "onnxruntime.pt") - torch.load(Path(tmp) / "vislab.pt")).abs().max()
                ratios.append(f"{size:>10}: ONNX Runtime takes {ort['seconds'] / vis['seconds']:.2f}x vislab's time, "
                              f"peak RSS {ort['peak_rss_mb'] / vis['peak_rss_mb']:.2f}x of vislab's, "
                              f"max |disparity difference| {diff.item():.2e} px")
    print("\n".join(rows))
    print("\n".join(ratios))


if __name__ == "__main__":
    main()
