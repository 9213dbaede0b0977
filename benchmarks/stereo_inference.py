"""CPU inference benchmark: vislab's PSMNet ``model.infer`` vs a naive reference forward, same weights.

    python benchmarks/stereo_inference.py [--sizes 384x1248,256x512] [--max-disp 192] [--model stackhourglass]
    python benchmarks/stereo_inference.py --whole-process [--kitti-root /work/shared/datasets/stereo/kitti2015]

``--whole-process`` (issue 26) times whole processes instead, on the shipped weights: ``vislab stereo predict``
on the KITTI pair and on the Motorcycle example with today's defaults, with the previous defaults
(``--max-disp 192``: the whole trained range), with the check's right view read from the cost volume
(``--lr-view volume``), without the left-right check, with the paper's method (soft
argmin, 192, no check), and ``--method sgbm``; and the literal re-implementation below
(``reference_forward``: the official code's computation) run as its own process on the same weights, standing
in for the official code. Wall time from start to exit (imports, model loading, image reading, writing the
outputs), its CPU time (user + system), peak resident memory of that process, and D1 over the trained range
against the pair's ground truth.

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
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
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


# (label, extra arguments of `vislab stereo predict`, or None for the literal re-implementation's process)
WHOLE_PROCESS_ROWS = [
    ("previous default (192, check)", ["--max-disp", "192"]),
    ("default (auto range, check)", []),
    ("auto range, check with the volume's right view", ["--lr-view", "volume"]),
    ("auto range, no check", ["--lr-check", "0"]),
    ("paper (soft argmin, 192, no check)", ["--max-disp", "192", "--estimator", "softargmin", "--lr-check", "0"]),
    ("official code, literal re-implementation", None),
    ("SGBM", ["--method", "sgbm"]),
]


def _pairs(kitti_root: Path, folder: Path) -> list[tuple[str, Path, Path, np.ndarray]]:
    """(name, left, right, ground truth with NaN where unknown): the KITTI pair and the Motorcycle example."""
    from vislab.stereo.io import read_kitti_disparity, write_image
    from vislab.stereo.predict import load_example

    pairs = []
    left = kitti_root / "training" / "image_2" / "000046_10.png"
    if left.is_file():
        gt, valid = read_kitti_disparity(kitti_root / "training" / "disp_occ_0" / left.name)
        pairs.append(("KITTI 000046", left, kitti_root / "training" / "image_3" / left.name,
                      np.where(valid, gt, np.nan).astype(np.float32)))
    else:
        print(f"no KITTI pair at {left}: Motorcycle only")
    moto_left, moto_right, moto_gt, _ = load_example("motorcycle")
    # the example as PNG files (lossless: it is 8-bit), so every row reads the same two files
    as_uint8 = [np.round(image * 255).astype(np.uint8) for image in (moto_left, moto_right)]
    pairs.append(("Motorcycle", write_image(folder / "motorcycle_left.png", as_uint8[0]),
                  write_image(folder / "motorcycle_right.png", as_uint8[1]), moto_gt))
    return pairs


def _timed_process(cmd: list[str]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS MB) of one child process run to its end (``wait4``: that child's own).

    CPU seconds (user + system, all threads) barely change when other jobs share the cores, wall time does:
    on a busy machine their ratios between rows are the better guide."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr.read().decode()}")
    proc.stderr.close()
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0  # ru_maxrss: kB on Linux


def official_predict(left: str, right: str, out: str) -> None:
    """The literal re-implementation as a process of its own, like the official ``Test_img.py``: shipped weights,
    max_disp 192, ImageNet normalisation, padding to a multiple of 16, soft argmin; writes the disparity .npy."""
    from vislab.stereo.io import read_image
    from vislab.stereo.models import load_stereo_model
    from vislab.stereo.transforms import imagenet_normalize

    model, _ = load_stereo_model(None, "cpu", max_disp=192)
    model.eval()
    tensors = [imagenet_normalize(torch.from_numpy(read_image(p).transpose(2, 0, 1)))[None] for p in (left, right)]
    with torch.no_grad():
        disp = reference_forward(model, *tensors)
    np.save(out, disp[0].numpy())


def whole_process(kitti_root: Path) -> None:
    """The issue-26 table: whole ``vislab stereo predict`` processes and the official code's stand-in."""
    from vislab.stereo.metrics import stereo_metrics

    print(f"whole process, shipped weights, {torch.get_num_threads()} CPU threads; D1 over disparities < 192")
    header = "| pair | method | wall s | CPU s | peak RSS MB | D1 % |\n|---|---|---|---|---|---|"
    lines = [header]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, left, right, gt in _pairs(kitti_root, folder):
            for label, extra in WHOLE_PROCESS_ROWS:
                out = folder / "out"
                if extra is None:
                    disp_file = out / "official.npy"
                    out.mkdir(exist_ok=True)
                    cmd = [sys.executable, __file__, "--official-predict", str(left), str(right), str(disp_file)]
                else:
                    disp_file = out / f"{left.stem}_disp.npy"
                    cmd = [sys.executable, "-m", "vislab", "stereo", "predict", str(left), str(right), "--out",
                           str(out), *extra]
                seconds, cpu, peak = _timed_process(cmd)
                d1 = stereo_metrics(np.load(disp_file), gt, max_disp=192)["d1"]
                lines.append(f"| {name} | {label} | {seconds:.1f} | {cpu:.1f} | {peak:.0f} | {d1:.2f} |")
                print(lines[-1], flush=True)
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--whole-process", action="store_true",
                        help="time whole `vislab stereo predict` processes on the KITTI and Motorcycle pairs")
    parser.add_argument("--kitti-root", default="/work/shared/datasets/stereo/kitti2015",
                        help="KITTI 2015 folder holding training/image_2/000046_10.png (--whole-process)")
    parser.add_argument("--official-predict", nargs=3, default=None, help=argparse.SUPPRESS)
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
    if args.official_predict:
        official_predict(*args.official_predict)
        return
    if args.whole_process:
        whole_process(Path(args.kitti_root))
        return
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
