"""ONNX Runtime vs vislab's PyTorch path on real data: the numbers quoted in docs/export.md.

    python benchmarks/onnx_parity.py [--stereo-weights CKPT] [--mnist-checkpoints A.pt B.pt] [--skip-stereo]

Stereo: the shipped PSMNet (or ``--stereo-weights``) is exported with ``--dynamic --confidence`` once per
estimator and run on the shared KITTI 2015 pair and the Middlebury Motorcycle pair (``../shared/datasets``,
or ``VISLAB_SHARED_DATASETS``); the reference is ``predict_disparity`` (PyTorch, ``model.infer``) with the same
estimator. MNIST: each checkpoint (default: the shipped ones) is exported and run on the whole test set;
the reference is the PyTorch model on the same normalised images. Prints max |difference| and how many
pixels / images differ.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VISLAB_SHARED_DATASETS", REPO.parent / "shared" / "datasets")) / "stereo"
PAIRS = {
    "KITTI 2015 000046 (375x1242)": ("kitti2015/training/image_2/000046_10.png",
                                     "kitti2015/training/image_3/000046_10.png"),
    "Middlebury Motorcycle Q (741x497)": ("middlebury2014/trainingQ/Motorcycle/im0.png",
                                          "middlebury2014/trainingQ/Motorcycle/im1.png"),
}


def stereo_parity(weights: str | None, tmp: Path) -> None:
    from vislab.stereo.export import export_stereo
    from vislab.stereo.io import read_image
    from vislab.stereo.predict import predict_disparity

    for estimator in ("dominant", "softargmin"):
        path = tmp / f"psmnet_{estimator}.onnx"
        start = time.perf_counter()
        info = export_stereo(path, weights, dynamic=True, confidence=True, estimator=estimator)
        print(f"exported {info['model']} max_disp {info['max_disp']} estimator {estimator} "
              f"({path.stat().st_size / 2**20:.1f} MB, {time.perf_counter() - start:.1f} s)", flush=True)
        for name, (left_rel, right_rel) in PAIRS.items():
            left, right = read_image(SHARED / left_rel), read_image(SHARED / right_rel)
            ref = predict_disparity(left, right, weights=weights, estimator=estimator, device="cpu")
            got = predict_disparity(left, right, onnx=path, device="cpu")
            diff = np.abs(got.disparity - ref.disparity)
            cdiff = np.abs(got.confidence - ref.confidence)
            print(f"  {name}: max |disparity diff| {diff.max():.2e} px (mean {diff.mean():.1e}; "
                  f"{int((diff > 1e-3).sum())} of {diff.size} pixels > 1e-3 px), "
                  f"max |confidence diff| {cdiff.max():.2e} ({int((cdiff > 1e-3).sum())} pixels > 1e-3); "
                  f"PyTorch {ref.seconds:.1f} s, ONNX Runtime {got.seconds:.1f} s", flush=True)


def mnist_parity(checkpoints: list[str], tmp: Path) -> None:
    from vislab.mnist.data import load_mnist, normalize
    from vislab.mnist.export import MnistOnnx, export_mnist
    from vislab.mnist.models import load_mnist_model

    images, labels = load_mnist(None, "test")
    for ckpt in checkpoints:
        path = tmp / f"{Path(ckpt).stem}.onnx"
        export_mnist(ckpt, path)
        model, _ = load_mnist_model(ckpt, "cpu")
        with torch.no_grad():
            ref = torch.cat([model(normalize(images[i:i + 1000])) for i in range(0, len(images), 1000)]).numpy()
        runner = MnistOnnx(path, "cpu")
        got = np.concatenate([runner.log_probs(images[i:i + 1000].float().div(255).unsqueeze(1).numpy())
                              for i in range(0, len(images), 1000)])
        same = int((got.argmax(1) == ref.argmax(1)).sum())
        acc = float((got.argmax(1) == labels.numpy()).mean())
        print(f"mnist {Path(ckpt).name}: max |log-prob diff| {np.abs(got - ref).max():.2e} over {len(images)} test "
              f"images, same prediction for {same}/{len(images)}, ONNX accuracy {acc:.4f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stereo-weights", default=None, help="PSMNet checkpoint (default: the shipped model)")
    parser.add_argument("--mnist-checkpoints", nargs="*", default=None, help="default: the shipped MNIST models")
    parser.add_argument("--skip-stereo", action="store_true")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoints = args.mnist_checkpoints
        if checkpoints is None:
            from vislab.mnist.predict import default_checkpoints

            checkpoints = [str(p) for p in default_checkpoints()]
        mnist_parity(checkpoints, Path(tmp))
        if not args.skip_stereo:
            if not SHARED.is_dir():
                sys.exit(f"shared stereo pairs not found at {SHARED}")
            stereo_parity(args.stereo_weights, Path(tmp))


if __name__ == "__main__":
    main()
