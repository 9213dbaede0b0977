"""The Stereo tab: PSMNet and SGBM side by side on an uploaded pair or a bundled example.

Pure functions of plain values (no Gradio import), so the tab is unit-testable; ``server.py`` wires them up.
Every user mistake (not an image, corrupt, too large, left/right sizes differ) raises ``VislabError`` with a
one-line message that the page shows; the next request works as usual.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vislab.app.uploads import open_upload
from vislab.core.errors import VislabError

# PSMNet on a CPU costs about 11 s for the 741x500 Motorcycle pair on 2 cores (docs/app.md); pairs with more pixels
# are reduced to this budget so that the page answers in seconds. On a GPU the budget is larger.
MAX_PIXELS_CPU = 400_000
MAX_PIXELS_GPU = 2_000_000
# Refused before decoding: a decompression bomb or a panorama would take minutes and gigabytes to read.
MAX_UPLOAD_PIXELS = 40_000_000
SYNTHETIC_SIZE = (240, 320)  # (height, width) of the random scene: about a second of PSMNet on a CPU
SYNTHETIC_MAX_DISP = 64
EXAMPLES = ("motorcycle", "synthetic")


@dataclass(frozen=True)
class StereoExample:
    """A bundled pair: uint8 RGB images, ground truth (float32 px, NaN unknown) and camera when known."""

    name: str
    left: np.ndarray
    right: np.ndarray
    gt: np.ndarray | None = None
    camera: Any = None  # vislab.stereo.Camera (focal, baseline, doffs, cx, cy) or None


@dataclass
class StereoOutput:
    """What the Stereo tab shows. Images are uint8 RGB; those that do not apply (no GT, no camera) are None."""

    status: str
    psmnet: np.ndarray
    sgbm: np.ndarray | None  # None in a first answer: SGBM has not run yet
    confidence: np.ndarray | None
    depth: np.ndarray | None
    psmnet_error: np.ndarray | None
    sgbm_error: np.ndarray | None
    data: dict[str, Any] = field(default_factory=dict)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float [0, 1] or uint8 RGB -> uint8 RGB (what the page shows and sends back unchanged as PNG)."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def pair_key(left: np.ndarray, right: np.ndarray) -> str:
    """A digest of a pair's pixels: how a bundled example is recognised when the page sends it back."""
    digest = hashlib.blake2b(digest_size=16)
    for image in (left, right):
        digest.update(str(image.shape).encode())
        digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


class ExampleRegistry:
    """The examples handed out recently, by the digest of their pixels, so that ground truth and camera are
    found again when the pair comes back for prediction (from the page or from an API client). Bounded: each
    random synthetic scene adds one entry."""

    def __init__(self, capacity: int = 32):
        self.capacity = capacity
        self._items: OrderedDict[str, StereoExample] = OrderedDict()

    def remember(self, example: StereoExample) -> StereoExample:
        key = pair_key(example.left, example.right)
        self._items[key] = example
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return example

    def lookup(self, left: np.ndarray, right: np.ndarray) -> StereoExample | None:
        return self._items.get(pair_key(left, right))


def motorcycle_example() -> StereoExample:
    """scikit-image's quarter-size Middlebury 2014 Motorcycle pair with its ground truth and calibration."""
    from vislab.stereo import load_example

    left, right, gt, camera = load_example("motorcycle")
    return StereoExample("Middlebury Motorcycle", to_uint8(left), to_uint8(right), gt, camera)


def synthetic_example(seed: int | None = None) -> StereoExample:
    """A random scene of vislab's synthetic generator (textured planes), with its exact ground truth."""
    from vislab.stereo.datasets.synthetic import render_scene

    seed = int(np.random.default_rng().integers(0, 2**31)) if seed is None else seed
    scene = render_scene(seed, *SYNTHETIC_SIZE, max_disp=SYNTHETIC_MAX_DISP)
    return StereoExample(f"synthetic scene (seed {seed})", to_uint8(scene["left"]), to_uint8(scene["right"]),
                         scene["disp"].astype(np.float32), None)


def read_upload(path: str | os.PathLike | None, what: str) -> np.ndarray:
    """An uploaded image as uint8 RGB (H, W, 3); VislabError with a one-line reason when it cannot be used."""
    if path is None:
        raise VislabError(f"no {what}: upload a left and a right image, or pick an example")
    img = open_upload(path, max_pixels=MAX_UPLOAD_PIXELS, name=f"the {what}",
                      described=f"the {what} ({Path(path).name})", advice="upload PNG or JPEG files")
    if img.mode.startswith("I;16"):  # 16-bit PNGs: keep the range instead of clipping at 255
        return np.repeat(to_uint8(np.asarray(img, np.float32) / 65535.0)[..., None], 3, axis=2)
    return np.asarray(img.convert("RGB"), np.uint8).copy()


def reduce_for_cpu(left: np.ndarray, right: np.ndarray, gt: np.ndarray | None, camera: Any, max_pixels: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, Any, float]:
    """Shrink a pair with more than ``max_pixels`` pixels (whole images, never cropped), with its ground
    truth (nearest neighbour, disparities scaled) and camera (focal, principal point and doffs scaled).

    Returns the (possibly unchanged) left, right, gt, camera and the linear scale factor (1.0 = unchanged).
    """
    h, w = left.shape[:2]
    if h * w <= max_pixels:
        return left, right, gt, camera, 1.0
    scale = math.sqrt(max_pixels / (h * w))
    new_w, new_h = max(8, int(w * scale)), max(8, int(h * scale))
    sx, sy = new_w / w, new_h / h

    def shrink(img: np.ndarray) -> np.ndarray:
        return cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_AREA)

    if gt is not None:
        # Nearest neighbour: averaging would blend foreground and background disparities at edges.
        gt = cv2.resize(gt, (new_w, new_h), interpolation=cv2.INTER_NEAREST) * np.float32(sx)
    if camera is not None:
        camera = type(camera)(focal=camera.focal * sx, baseline=camera.baseline, doffs=camera.doffs * sx,
                              cx=camera.cx * sx, cy=camera.cy * sy)
    return shrink(left), shrink(right), gt, camera, sx


def default_max_pixels(device: str = "auto") -> int:
    """The pixel budget of one prediction on the device the app runs on."""
    from vislab.core.device import pick_device

    return MAX_PIXELS_CPU if pick_device(device).type == "cpu" else MAX_PIXELS_GPU


def _fmt_metric(value: float, unit: str) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.2f}{unit}"


def run_stereo(left_path: str | os.PathLike | None, right_path: str | os.PathLike | None, *,
               registry: ExampleRegistry | None = None, weights: str | os.PathLike | None = None,
               device: str = "auto", max_pixels: int | None = None, rectify: str = "none", swap: bool = False,
               calib: str | os.PathLike | list[str] | None = None,
               progress: Callable[[float, str], Any] | None = None) -> StereoOutput:
    """Predict the pair with PSMNet and SGBM and build everything the tab shows: the last of
    :func:`stream_stereo`'s outputs (the same arguments)."""
    *_, out = stream_stereo(left_path, right_path, registry=registry, weights=weights, device=device,
                            max_pixels=max_pixels, rectify=rectify, swap=swap, calib=calib, progress=progress)
    return out


def stream_stereo(left_path: str | os.PathLike | None, right_path: str | os.PathLike | None, *,
                  registry: ExampleRegistry | None = None, weights: str | os.PathLike | None = None,
                  device: str = "auto", max_pixels: int | None = None, rectify: str = "none", swap: bool = False,
                  calib: str | os.PathLike | list[str] | None = None,
                  progress: Callable[[float, str], Any] | None = None) -> Iterator[StereoOutput]:
    """Predict the pair with PSMNet and SGBM, yielding what the tab shows as it comes: PSMNet's own answer as
    soon as the network has it (``data["final"]`` False; SGBM's panels empty, the status saying that the
    left-right check runs), then everything (``final`` True). The first answer costs nothing extra: the check
    starts from it (``vislab.stereo.predict_disparity_stages``).

    Args:
        left_path, right_path: the uploaded images (any format Pillow reads).
        registry: bundled examples handed out by this app; a pair found there brings its ground truth
            (error maps, EPE/D1) and camera (depth).
        weights: a PSMNet checkpoint (None: the shipped one).
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        max_pixels: larger pairs are reduced to this many pixels (None: the device's default budget).
        rectify: ``"auto"`` rectifies an uploaded pair from its own feature matches (relative disparity);
        swap: the uploaded left image is the right view. Uploaded pairs are checked (vertical misalignment,
            swapped views, disparity beyond the range) before matching; the findings are in the status.
        calib: a calibration file (or a ROS camera_info pair) for an uploaded pair: it is rectified with it and
            the Depth map is in the calibration's unit (``vislab.stereo.camera.calibfiles``).
        progress: called with (share done, what runs now) before each step, for the page's progress bar.

    PSMNet matches each pair over its own disparity range (``max_disp="auto"``); the model is loaded once
    per process and kept (``vislab.stereo.predict``'s cache).
    """
    def step(share: float, what: str) -> None:
        if progress is not None:
            progress(share, what)

    from vislab.stereo import predict_disparity, predict_disparity_stages

    step(0.0, "reading the pair")
    left, right = read_upload(left_path, "left image"), read_upload(right_path, "right image")
    if left.shape != right.shape:
        raise VislabError(f"left/right size mismatch: left is {left.shape[1]}x{left.shape[0]}, right is "
                          f"{right.shape[1]}x{right.shape[0]}; a rectified pair has two images of one size")
    if min(left.shape[:2]) < 16:
        raise VislabError(f"the images are {left.shape[1]}x{left.shape[0]}; a stereo pair needs at least 16x16")
    example = registry.lookup(left, right) if registry is not None else None
    gt, camera = (example.gt, example.camera) if example is not None else (None, None)
    prepared = None
    if example is None:  # a pair of your own: swapped, rectified and checked as `vislab stereo predict` does it
        prepared = _prepare_upload(left, right, rectify, swap, calib)
        left, right = to_uint8(prepared.left), to_uint8(prepared.right)
        camera = prepared.camera  # from the calibration, when one was given: depth in its unit
    h, w = left.shape[:2]
    budget = default_max_pixels(device) if max_pixels is None else max_pixels
    left, right, gt, camera, scale = reduce_for_cpu(left, right, gt, camera, budget)
    pair = _Pair(example.name if example else None, left.shape[1], left.shape[0], w, h, scale, gt, camera,
                 prepared.report() if prepared is not None else None,
                 prepared.lines() if prepared is not None else None)

    step(0.05, "PSMNet: choosing the disparity range, then matching")
    for net in predict_disparity_stages(left, right, weights=weights, method="psmnet", device=device,
                                        max_disp="auto"):
        if not net.final:
            yield _stereo_output(pair, net, None)
            step(0.5, "PSMNet: the left-right check (the right view's disparity)")
    step(0.85, "SGBM")
    sgbm = predict_disparity(left, right, method="sgbm")
    step(0.95, "drawing the maps")
    yield _stereo_output(pair, net, sgbm)


@dataclass(frozen=True)
class _Pair:
    """What the outputs of one request share: the pair as matched, and what is known about it."""

    example: str | None  # the bundled example's name; None for an upload
    width: int
    height: int
    original_width: int
    original_height: int
    scale: float
    gt: np.ndarray | None
    camera: Any
    input_report: dict[str, Any] | None  # an upload's input checks
    input_lines: list[str] | None


def _stereo_output(pair: _Pair, net: Any, sgbm: Any | None) -> StereoOutput:
    """The tab's panels for PSMNet's prediction ``net`` and SGBM's (None: not yet, its panels stay empty)."""
    from vislab.stereo import stereo_metrics
    from vislab.stereo.geometry import disparity_to_depth
    from vislab.stereo.visualize import colorize_confidence, colorize_depth, colorize_disparity, colorize_error

    gt, camera, final = pair.gt, pair.camera, sgbm is not None
    # One colour scale for both maps so that they compare directly: the ground truth's when known.
    ref = gt if gt is not None else net.disparity
    finite = ref[np.isfinite(ref) & (ref > 0)]
    scale_max = float(np.percentile(finite, 99)) if finite.size else 1.0

    lines = [f"**{pair.example or 'uploaded pair'}**, {pair.width}x{pair.height} pixels; "
             f"PSMNet matched disparities 0-{net.info['max_disp'] - 1} ({net.info.get('range_note', 'fixed')})."]
    if not final:
        lines.append(f"PSMNet's first answer, after {net.seconds:.1f} s: the left-right check and SGBM run now "
                     f"(about as long again); this page updates when they are done.")
    if pair.scale != 1.0:
        lines.append(f"Reduced from {pair.original_width}x{pair.original_height} to {pair.width}x{pair.height} "
                     f"(x{pair.scale:.2f}) so that the CPU answers in seconds: the whole image, not a crop; "
                     f"disparities are in pixels of the reduced pair.")
    data: dict[str, Any] = {
        "pair": pair.example or "upload", "size": [pair.width, pair.height],
        "original_size": [pair.original_width, pair.original_height], "scale": pair.scale, "final": final,
    }
    if pair.input_report is not None:
        data["input"] = pair.input_report
        lines.append("Input checks: " + (" ".join(pair.input_lines or []) or "the pair looks rectified, left "
                                         "view first, within the disparity range."))
    errors: dict[str, np.ndarray | None] = {"psmnet": None, "sgbm": None}
    rows = ["| method | time | EPE | D1 |", "|---|---|---|---|"]
    for name, pred in (("psmnet", net), ("sgbm", sgbm)):
        if pred is None:
            continue
        row = {"seconds": round(pred.seconds, 3)}
        if gt is not None:
            metrics = stereo_metrics(pred.disparity, gt)
            row.update({"epe": metrics["epe"], "d1": metrics["d1"], "n_valid": metrics["n_valid"]})
            errors[name] = colorize_error(pred.disparity, gt)
        data[name] = row
        rows.append(f"| {'PSMNet' if name == 'psmnet' else 'SGBM'} | {pred.seconds:.2f} s | "
                    f"{_fmt_metric(row.get('epe', math.nan), ' px')} | {_fmt_metric(row.get('d1', math.nan), ' %')} |")
    lines.append("\n".join(rows))
    if gt is None:
        lines.append("No ground truth for an uploaded pair: pick an example to see error maps, EPE and D1.")
    else:
        lines.append("EPE: mean absolute error in px; D1: % of pixels off by more than 3 px and 5 %.")
    depth_rgb = None
    if camera is not None:
        depth = disparity_to_depth(net.disparity, camera.focal, camera.baseline, camera.doffs)
        depth_rgb = colorize_depth(depth)
        data["camera"] = {"focal": camera.focal, "baseline": camera.baseline, "doffs": camera.doffs}
    # Renamed keys: gradio_client takes any dict with a "path" key for a file to download.
    data["psmnet"]["model"] = {("weights" if k == "path" else k): v for k, v in net.info.items()
                               if isinstance(v, str | int | float | bool)}
    return StereoOutput(
        status="\n\n".join(lines),
        psmnet=colorize_disparity(net.disparity, scale_max),
        sgbm=colorize_disparity(sgbm.disparity, scale_max) if sgbm is not None else None,
        confidence=colorize_confidence(net.confidence) if net.confidence is not None else None,
        depth=depth_rgb, psmnet_error=errors["psmnet"], sgbm_error=errors["sgbm"], data=data)


def _prepare_upload(left: np.ndarray, right: np.ndarray, rectify: str, swap: bool,
                    calib: str | os.PathLike | list[str] | None = None) -> Any:
    """``vislab.stereo.camera.pipeline.prepare_pair`` with the page's words for its advice (issue 27)."""
    from vislab.stereo.camera.pipeline import prepare_pair

    def page_words(text: str) -> str:  # the page has check boxes where the command line has options
        return text.replace("add --swap", "tick 'Swap the views'").replace("--rectify auto",
                                                                           "'Rectify automatically'")

    try:
        prepared = prepare_pair(left, right, rectify=rectify, swap=swap, calib=calib or None)
    except VislabError as exc:
        raise VislabError(page_words(str(exc))) from None
    if prepared.checks is not None:
        prepared.checks.warnings = [page_words(w) for w in prepared.checks.warnings]
    return prepared


def load_example_pair(name: str, registry: ExampleRegistry, seed: int | None = None) -> StereoExample:
    """A bundled example by name (``motorcycle`` or ``synthetic``), remembered in ``registry``."""
    if name == "motorcycle":
        return registry.remember(motorcycle_example())
    if name == "synthetic":
        return registry.remember(synthetic_example(seed))
    raise VislabError(f"unknown example {name!r}; choose one of {', '.join(EXAMPLES)}")

