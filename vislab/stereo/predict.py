"""``vislab stereo predict``: disparity, confidence, depth and a point cloud for one stereo pair."""

import argparse
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from vislab.core.checkpoint import LoadedCache
from vislab.core.errors import VislabError
from vislab.core.logging import make_output_dir
from vislab.stereo.evaluate import (
    PairMatcher,
    load_model,
    resolve_estimator,
    resolve_lr_check,
    resolve_lr_view,
    resolve_stereo_precision,
    sgbm_max_disp,
)
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


def camera_from_options(width: int, height: int, *, calib: str | Path | None = None, focal: float | None = None,
                        baseline: float | None = None) -> Camera | None:
    """The camera from a Middlebury ``calib.txt``, or from ``focal`` + ``baseline`` (principal point at the
    centre); None when neither is given."""
    if calib:
        c = read_calib(calib)
        if (c.width, c.height) != (width, height):
            raise VislabError(f"calibration {calib} is for {c.width}x{c.height} images, the pair is {width}x{height}")
        return Camera(c.focal, c.baseline, c.doffs, c.cx, c.cy)
    if (focal is None) != (baseline is None):
        raise VislabError("depth needs both --focal and --baseline (or --calib)")
    if focal is not None and baseline is not None:
        if focal <= 0 or baseline <= 0:
            raise VislabError(f"--focal and --baseline must be positive, got {focal} and {baseline}")
        return Camera(focal, baseline, 0.0, (width - 1) / 2.0, (height - 1) / 2.0)
    return None


@dataclass(frozen=True)
class StereoPrediction:
    """What ``predict_disparity`` returns.

    ``disparity``: float32 (H, W) in pixels of the left image; ``confidence``: float32 (H, W) in [0, 1] (the
    network's probability mass around its estimate; None for SGBM); ``seconds``: wall time of the prediction
    (model loading excluded); ``info``: method, max_disp and, for PSMNet, the checkpoint's name/path/source;
    ``final``: False only for the first of ``predict_disparity_stages``' two answers.
    """

    disparity: np.ndarray
    confidence: np.ndarray | None
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)
    final: bool = True


ImageInput = np.ndarray | Image.Image | str | Path


def as_rgb_image(image: ImageInput, what: str = "image") -> np.ndarray:
    """A path, PIL image or array (grey/RGB/RGBA, uint8/uint16 or float in [0, 1]) as float32 RGB (H, W, 3)."""
    if isinstance(image, str | Path):
        return read_image(image)
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB") if image.mode not in ("I;16", "I") else image)
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or min(array.shape[:2]) < 1:
        raise VislabError(f"{what} must be an (H, W), (H, W, 3) or (H, W, 4) image, got shape {array.shape}")
    array = array[..., :3]
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    array = array.astype(np.float32)
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
        raise VislabError(f"{what}: a float image must hold finite values in [0, 1]")
    return np.ascontiguousarray(array)


# Bounded: a long-running app may be given several checkpoints over time.
_MODELS: LoadedCache[tuple[torch.nn.Module, dict[str, Any], torch.device]] = LoadedCache(limit=4)


def predict_disparity(left: ImageInput, right: ImageInput, *, weights: str | Path | None = None,
                      method: str = "psmnet", max_disp: int | str | None = "auto", align_corners: bool = False,
                      device: str = "auto", estimator: str | None = None,
                      estimator_window: int | None = None, lr_check: float | None = None,
                      lr_view: str | None = None, precision: str = "auto",
                      onnx: str | Path | None = None) -> StereoPrediction:
    """Disparity (and, for PSMNet, confidence) of a rectified stereo pair.

    ``left``/``right``: paths, PIL images or arrays of the same size. ``method``: ``psmnet`` (``weights``: a
    checkpoint vislab loads, default the shipped model) or ``sgbm`` (OpenCV's semi-global matching baseline).
    ``max_disp``: the disparity range: ``"auto"`` (default; PSMNet: each pair's own range from a quarter-size
    first look, ``vislab.stereo.auto_range``, never less than it needs; SGBM: 192), an integer (PSMNet: a multiple
    of 4) or None (PSMNet: the checkpoint's range; SGBM: 192).
    ``estimator``: PSMNet's disparity from its softmax, ``"dominant"`` (default: the mean inside the most
    probable ± ``estimator_window`` px, default 4) or ``"softargmin"`` (the paper's); the confidence follows it.
    ``lr_check``: PSMNet's left-right consistency check, in px (default 2; 0 turns it off): the right view's
    disparity is predicted too and pixels it contradicts by more than this are refilled from their row's
    background, with confidence 0 (``vislab.stereo.refine``; SGBM runs its own check). ``lr_view``: that right
    view at ``"full"`` size (default: the network's time again), at ``"half"`` the size (about a sixth of it)
    or read from the left pass's cost volume (``"volume"``: a second regression only); the cheaper views keep
    less of the check's benefit.
    ``precision``: ``"fp32"``, ``"bf16"`` (only where the CPU or GPU computes it natively) or ``"auto"``
    (default: bf16 only where it is measured faster and as accurate, ``vislab.stereo.precision``).
    ``onnx``: run a graph made by ``vislab stereo export`` with ONNX Runtime instead of PyTorch (its weights,
    max_disp and estimator are fixed in the file; options that disagree with it are errors).
    Raises ``VislabError`` with a one-line message on bad input.
    """
    *_, prediction = predict_disparity_stages(
            left, right, weights=weights, method=method, max_disp=max_disp, align_corners=align_corners,
            device=device, estimator=estimator, estimator_window=estimator_window, lr_check=lr_check,
            lr_view=lr_view, precision=precision, onnx=onnx)
    return prediction


def predict_disparity_stages(left: ImageInput, right: ImageInput, *, weights: str | Path | None = None,
                             method: str = "psmnet", max_disp: int | str | None = "auto",
                             align_corners: bool = False, device: str = "auto", estimator: str | None = None,
                             estimator_window: int | None = None, lr_check: float | None = None,
                             lr_view: str | None = None, precision: str = "auto",
                             onnx: str | Path | None = None) -> Iterator[StereoPrediction]:
    """:func:`predict_disparity`'s answers as they come, the same arguments: with PSMNet's left-right check
    at full or half size, first the network's own answer (``final`` False, ``lr_check`` 0 in its info),
    then the checked one (``final`` True; the last answer always is, and equals ``predict_disparity``'s). The
    first costs nothing extra (the check starts from it) and comes in about half the time: the app shows it
    while the check runs. ``seconds`` counts from the start of the prediction to each answer.
    """
    left_rgb, right_rgb = as_rgb_image(left, "left image"), as_rgb_image(right, "right image")
    if left_rgb.shape != right_rgb.shape:
        raise VislabError(f"left/right size mismatch: left is {left_rgb.shape[1]}x{left_rgb.shape[0]}, "
                          f"right is {right_rgb.shape[1]}x{right_rgb.shape[0]}")
    from vislab.stereo.auto_range import AUTO, parse_max_disp

    lr_check, max_disp = resolve_lr_check(lr_check), parse_max_disp(max_disp)
    auto = max_disp == AUTO
    fixed = None if auto else max_disp  # None: the checkpoint's range (ONNX: the graph's, SGBM: 192)
    if onnx is not None:
        from vislab.stereo.export import predict_onnx

        disp, conf, seconds, info = predict_onnx(
            onnx, left_rgb, right_rgb, method=method, weights=weights, max_disp=fixed, align_corners=align_corners,
            device=device, estimator=estimator, estimator_window=estimator_window, lr_check=lr_check,
            lr_view=lr_view)
        yield StereoPrediction(disp, conf, seconds, info)
        return
    if method == "sgbm":
        from vislab.stereo.sgbm import sgbm_disparity

        sgbm_range = sgbm_max_disp(fixed, weights)
        start = time.perf_counter()
        disp = sgbm_disparity(left_rgb, right_rgb, sgbm_range)
        yield StereoPrediction(disp, None, time.perf_counter() - start,
                               {"method": "sgbm", "max_disp": sgbm_range})
        return
    if method != "psmnet":
        raise VislabError(f"unknown method {method!r}; choose psmnet or sgbm")
    # Loaded once per (weights, fixed range, ...): with "auto" one model serves every range (weights do not
    # depend on it), so the app and an eval over many pairs keep it warm.
    model, info, torch_device = _MODELS.get(
        weights, (fixed, align_corners, device),
        lambda: load_model(weights, max_disp=fixed, align_corners=align_corners, device=device))
    estimator, estimator_window = resolve_estimator(estimator, estimator_window)
    lr_view = resolve_lr_view(lr_view)
    precision, precision_why = resolve_stereo_precision(precision, torch_device, weights)
    matcher = PairMatcher(model, auto_range=auto, estimator=estimator, estimator_window=estimator_window,
                          lr_check=lr_check, lr_view=lr_view, precision=precision)

    def prep(img: np.ndarray) -> torch.Tensor:
        return imagenet_normalize(torch.from_numpy(img.transpose(2, 0, 1)).to(torch_device)).unsqueeze(0)

    start = time.perf_counter()
    for stage in matcher.stages(prep(left_rgb), prep(right_rgb), return_confidence=True):
        choice = matcher.last_range
        ranges = ({"max_disp": choice.max_disp, "trained_max_disp": model.max_disp, "range": AUTO,
                   "range_estimate": None if choice.estimate is None else round(choice.estimate, 2),
                   "range_note": choice.describe()} if choice is not None else
                  {"max_disp": model.max_disp, "trained_max_disp": model.max_disp, "range": "fixed"})
        conf_np = stage.confidence[0].float().cpu().numpy() if stage.confidence is not None else None
        yield StereoPrediction(stage.disparity[0].float().cpu().numpy(), conf_np, time.perf_counter() - start,
                               {"method": "psmnet", **info, **ranges, "device": str(torch_device),
                                "estimator": estimator, "estimator_window": estimator_window,
                                "lr_check": lr_check if stage.final else 0.0, "lr_view": lr_view,
                                "lr_refilled": stage.refilled, "precision": precision,
                                "precision_note": precision_why}, final=stage.final)


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
    if getattr(args, "left_dir", None) or getattr(args, "right_dir", None) or getattr(args, "video", None) \
            or getattr(args, "sbs", None):
        from vislab.stereo.camera.commands import run_sequence  # a whole sequence (issue 27)

        return run_sequence(args)
    example = getattr(args, "example", None)
    gt = None
    if example:
        if args.left or args.right:
            raise VislabError("give either LEFT RIGHT or --example, not both")
        if getattr(args, "rectify", "none") != "none" or getattr(args, "swap", False):
            raise VislabError("--rectify and --swap are for a pair of your own; the bundled example is rectified, "
                              "left view first")
        left, right, gt, example_camera = load_example(example)
        args.left = args.right = example  # names the outputs and the report
    elif not (args.left and args.right):
        raise VislabError("give the LEFT and RIGHT images (or --example motorcycle)")
    else:
        left, right = read_image(args.left), read_image(args.right)
    if left.shape != right.shape:
        raise VislabError(f"left/right size mismatch: {args.left} is {left.shape[1]}x{left.shape[0]}, "
                          f"{args.right} is {right.shape[1]}x{right.shape[0]}")
    calib = args.calib[0] if isinstance(args.calib, list) and len(args.calib) == 1 else args.calib
    prepared = None
    if not example:  # swap, rectify and check a pair of your own before the network sees it (issue 27)
        from vislab.stereo.camera.pipeline import prepare_pair

        prepared = prepare_pair(left, right, calib=calib, rectify=getattr(args, "rectify", "none"),
                                swap=bool(getattr(args, "swap", False)), focal=args.focal, baseline=args.baseline,
                                max_disp=args.max_disp if isinstance(args.max_disp, int) else None,
                                check=not getattr(args, "no_checks", False))
        left, right = prepared.left, prepared.right
    h, w = left.shape[:2]
    camera = prepared.camera if prepared is not None else camera_from_options(
        w, h, calib=calib, focal=args.focal, baseline=args.baseline)
    if example and camera is None:
        camera = example_camera
    if args.ply and camera is None:
        raise VislabError("--ply needs the camera: give --calib calib.txt or --focal F --baseline B")

    result = predict_disparity(left, right, weights=args.weights, method=args.method, max_disp=args.max_disp,
                               align_corners=bool(args.align_corners), device=args.device,
                               estimator=getattr(args, "estimator", None),
                               estimator_window=getattr(args, "estimator_window", None),
                               lr_check=getattr(args, "lr_check", None), lr_view=getattr(args, "lr_view", None),
                               precision=getattr(args, "precision", "auto"), onnx=getattr(args, "onnx", None))
    disp, conf, info, seconds = result.disparity, result.confidence, result.info, result.seconds

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
    if prepared is not None:
        from vislab.core.logging import write_json

        if prepared.rectifier is not None:
            written += [write_image(out / f"{stem}_rect_left.png", np.round(left * 255).astype(np.uint8)),
                        write_image(out / f"{stem}_rect_right.png", np.round(right * 255).astype(np.uint8))]
        written.append(write_json(prepared.report(), out / f"{stem}_checks.json"))
        notes += prepared.lines()
    if info.get("onnx"):
        notes.append(f"ONNX Runtime: {info['onnx']} ({', '.join(info['providers'])}), estimator {info['estimator']}")
    if info.get("lr_check"):
        view = info.get("lr_view", "full")  # an ONNX graph checks with the full-size view (others are refused)
        notes.append(f"left-right check ({info['lr_check']:g} px) with the right view at {view} size: "
                     f"{100 * info['lr_refilled']:.1f}% of the pixels refilled from their row's background "
                     "(confidence 0 there); --lr-check 0 turns it off")
    if info.get("precision") == "bf16" or info.get("precision_note", "as requested") != "as requested":
        notes.append(f"precision {info['precision']} ({info['precision_note']})")
    written.append(_write_info(out / f"{stem}_prediction.json", info, seconds))
    if conf is None:
        notes.append(f"confidence: {info['onnx']} was exported without --confidence; no conf files written"
                     if info.get("onnx") else
                     "confidence: not available for sgbm (it has no cost-volume softmax); no conf files written")
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
            if prepared is not None and prepared.rectifier is not None and prepared.rectifier.rect is not None:
                # Rectification turned the left camera by R1 (X_rect = R1 X): undo it, so that the points are in
                # the left camera's own frame, as the calibration describes it (row vectors: X = X_rect R1).
                points = points @ prepared.rectifier.rect[0].astype(np.float32)
            colors = np.round(left[keep] * 255).astype(np.uint8)
            written.append(write_ply(out / f"{stem}.ply", points, colors))
            notes.append(f"point cloud: {len(points)} of {h * w} pixels kept")

    matched = f" ({info['range_note']})" if info.get("range_note") else ""
    print(f"{info['method']} disparity for {args.left} ({w}x{h}, max disparity {info['max_disp']}{matched}): "
          f"range {np.nanmin(disp):.2f}..{np.nanmax(disp):.2f} px")
    if gt is not None:  # scored over the trained range whatever range was matched: auto must not hide pixels
        m = stereo_metrics(disp, gt, max_disp=info.get("trained_max_disp", info["max_disp"]))
        print(f"against the example's ground truth ({m['n_valid']} pixels): EPE {m['epe']:.3f} px, "
              f"D1 {m['d1']:.2f}%, bad-1 {m['bad1']:.2f}%")
    for note in notes:
        print(note)
    for path in written:
        print(f"wrote {path}")
    print(f"time {seconds:.2f} s (prediction, model loading excluded), "
          f"peak memory {peak_memory_mb():.0f} MB (process maximum resident set size)")
    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MB")
    return 0


def _write_info(path: Path, info: dict[str, Any], seconds: float) -> Path:
    """``{stem}_prediction.json``: how the pair was predicted (method, range chosen, check, precision, time)."""
    from vislab.core.logging import write_json

    record = {k: v if isinstance(v, str | int | float | bool | type(None) | list) else str(v) for k, v in info.items()}
    return Path(write_json({**record, "seconds": round(seconds, 3)}, path))


def _save_npy(path: Path, array: np.ndarray) -> Path:
    np.save(path, np.asarray(array, dtype=np.float32))
    return path
