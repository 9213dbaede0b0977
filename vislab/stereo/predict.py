"""``vislab stereo predict``: disparity, confidence, depth and a point cloud for one stereo pair."""

import argparse
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vislab.core.errors import VislabError
from vislab.core.logging import make_output_dir
from vislab.stereo.evaluate import load_model, sgbm_max_disp
from vislab.stereo.geometry import depth_to_points, discontinuity_mask, disparity_to_depth, write_ply
from vislab.stereo.io import read_calib, read_image, write_image, write_kitti_disparity, write_pfm
from vislab.stereo.metrics import stereo_metrics
from vislab.stereo.transforms import imagenet_normalize
from vislab.stereo.visualize import colorize_confidence, colorize_depth, colorize_disparity


@dataclass(frozen=True)
class Camera:
    """What depth and back-projection need: focal (px), baseline, doffs, principal point (px)."""

    focal: float
    baseline: float
    doffs: float
    cx: float
    cy: float


def camera_from_args(args: argparse.Namespace, width: int, height: int) -> Camera | None:
    """``--calib`` (Middlebury calib.txt) or ``--focal`` + ``--baseline`` (principal point at the centre)."""
    if args.calib:
        calib = read_calib(args.calib)
        if (calib.width, calib.height) != (width, height):
            raise VislabError(f"calibration {args.calib} is for {calib.width}x{calib.height} images, "
                              f"the pair is {width}x{height}")
        return Camera(calib.focal, calib.baseline, calib.doffs, calib.cx, calib.cy)
    if (args.focal is None) != (args.baseline is None):
        raise VislabError("depth needs both --focal and --baseline (or --calib)")
    if args.focal is not None:
        if args.focal <= 0 or args.baseline <= 0:
            raise VislabError(f"--focal and --baseline must be positive, got {args.focal} and {args.baseline}")
        return Camera(args.focal, args.baseline, 0.0, (width - 1) / 2.0, (height - 1) / 2.0)
    return None


def predict_pair(left: np.ndarray, right: np.ndarray, args: argparse.Namespace
                 ) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Run ``--method`` on (H, W, 3) [0, 1] images -> (disparity, confidence or None, info)."""
    if args.method == "sgbm":
        from vislab.stereo.sgbm import sgbm_disparity

        max_disp = sgbm_max_disp(args)
        return sgbm_disparity(left, right, max_disp), None, {"method": "sgbm", "max_disp": max_disp}
    model, info, device = load_model(args)

    def prep(img: np.ndarray) -> torch.Tensor:
        return imagenet_normalize(torch.from_numpy(img.transpose(2, 0, 1)).to(device)).unsqueeze(0)

    disp, conf = model.infer(prep(left), prep(right), return_confidence=True)
    conf_np = conf[0].float().cpu().numpy() if conf is not None else None
    return disp[0].float().cpu().numpy(), conf_np, {"method": "psmnet", **info}


def peak_memory_mb() -> float:
    """Peak resident memory of this process (getrusage: kilobytes on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


# scikit-image's quarter-size Middlebury 2014 "Motorcycle" pair: its calibration, as skimage documents it
# (focal and principal point in px, doffs = the right camera's principal point offset, baseline in mm).
MOTORCYCLE_CAMERA = Camera(focal=994.978, baseline=193.001, doffs=31.086, cx=311.193, cy=254.877)


def load_example(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, Camera]:
    """A stereo pair that ships with an installed package: left, right (float32 RGB in [0, 1]), ground-truth
    disparity (NaN where unknown) and camera. Only ``motorcycle`` (scikit-image's Middlebury pair) for now."""
    if name != "motorcycle":
        raise VislabError(f"unknown example {name!r}; available: motorcycle")
    try:
        from skimage.data import stereo_motorcycle

        left, right, disp = stereo_motorcycle()
    except (ImportError, OSError, ValueError) as exc:
        raise VislabError(f"cannot load the motorcycle example from scikit-image: {exc}") from None
    disp = np.where(np.isfinite(disp), disp, np.nan).astype(np.float32)
    return (left.astype(np.float32) / 255.0, right.astype(np.float32) / 255.0, disp, MOTORCYCLE_CAMERA)


def run_predict(args: argparse.Namespace) -> int:
    """Write disparity (colour PNG, KITTI 16-bit PNG, .npy, .pfm), confidence, depth and a PLY for one pair."""
    example = getattr(args, "example", None)
    gt = None
    if example:
        if args.left or args.right:
            raise VislabError("give either LEFT RIGHT or --example, not both")
        left, right, gt, example_camera = load_example(example)
        args.left = args.right = example  # names the outputs and the report
    elif not (args.left and args.right):
        raise VislabError("give the LEFT and RIGHT images (or --example motorcycle)")
    else:
        left, right = read_image(args.left), read_image(args.right)
    if left.shape != right.shape:
        raise VislabError(f"left/right size mismatch: {args.left} is {left.shape[1]}x{left.shape[0]}, "
                          f"{args.right} is {right.shape[1]}x{right.shape[0]}")
    h, w = left.shape[:2]
    camera = camera_from_args(args, w, h)
    if example and camera is None:
        camera = example_camera
    if args.ply and camera is None:
        raise VislabError("--ply needs the camera: give --calib calib.txt or --focal F --baseline B")

    start = time.perf_counter()
    disp, conf, info = predict_pair(left, right, args)
    seconds = time.perf_counter() - start

    out = make_output_dir(args.out)
    stem = Path(args.left).stem
    written = [
        write_image(out / f"{stem}_disp.png", colorize_disparity(disp)),
        write_kitti_disparity(out / f"{stem}_disp16.png", disp),
        _save_npy(out / f"{stem}_disp.npy", disp),
        write_pfm(out / f"{stem}_disp.pfm", disp),
    ]
    if conf is not None:
        written += [write_image(out / f"{stem}_conf.png", colorize_confidence(conf)),
                    _save_npy(out / f"{stem}_conf.npy", conf)]
    notes = []
    if conf is None:
        notes.append("confidence: not available for sgbm (it has no cost-volume softmax); no conf files written")
    if camera is not None:
        depth = disparity_to_depth(disp, camera.focal, camera.baseline, camera.doffs)
        written += [_save_npy(out / f"{stem}_depth.npy", depth),
                    write_image(out / f"{stem}_depth.png", colorize_depth(depth))]
        if args.ply:
            keep = np.isfinite(depth)
            if conf is not None:
                keep &= conf >= args.min_confidence
            elif args.min_confidence > 0:
                notes.append("--min-confidence ignored: sgbm gives no confidence")
            if args.drop_discontinuities:
                keep &= ~discontinuity_mask(disp)
            points = depth_to_points(depth, camera.focal, camera.cx, camera.cy)[keep]
            colors = np.round(left[keep] * 255).astype(np.uint8)
            written.append(write_ply(out / f"{stem}.ply", points, colors))
            notes.append(f"point cloud: {len(points)} of {h * w} pixels kept")

    print(f"{info['method']} disparity for {args.left} ({w}x{h}, max disparity {info['max_disp']}): "
          f"range {np.nanmin(disp):.2f}..{np.nanmax(disp):.2f} px")
    if gt is not None:
        m = stereo_metrics(disp, gt, max_disp=info["max_disp"])
        print(f"against the example's ground truth ({m['n_valid']} pixels): EPE {m['epe']:.3f} px, "
              f"D1 {m['d1']:.2f}%, bad-1 {m['bad1']:.2f}%")
    for note in notes:
        print(note)
    for path in written:
        print(f"wrote {path}")
    print(f"time {seconds:.2f} s, peak memory {peak_memory_mb():.0f} MB (process maximum resident set size)")
    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MB")
    return 0


def _save_npy(path: Path, array: np.ndarray) -> Path:
    np.save(path, np.asarray(array, dtype=np.float32))
    return path
