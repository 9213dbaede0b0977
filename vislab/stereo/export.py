"""``vislab stereo export``: PSMNet as an ONNX graph, and running such a graph with ONNX Runtime.

The graph (``PSMNetOnnx``) takes ``left`` and ``right``, float32 ``(N, 3, H, W)`` RGB in [0, 1], and
returns ``disparity`` ``(N, H, W)`` in pixels (and, with ``--confidence``, ``confidence`` ``(N, H, W)``,
the same map ``model.infer`` returns). Everything ``model.infer`` does around the network is inside the
graph: ImageNet normalisation, zero padding at the top and right to a multiple of 16, and the crop back.
A ``--dynamic`` graph takes any size, odd ones included; a fixed one only the size it was exported for.

Why a wrapper rather than exporting ``model.infer``: the fast PyTorch path calls oneDNN internals, writes
the cost volume into slices of an empty tensor and regresses the disparity in a Python loop over row bands,
none of which the exporter can express; and the SPP's clipped pooling window (``min(64, H/4)``) and the
padding depend on the image size, which a traced graph must compute as values, not Python integers. So
``PSMNetOnnx`` reuses the model's layers (feature trunk, SPP convolutions, the whole 3D CNN) and writes only
the size-dependent parts again in export-friendly form:

* the SPP pooling as crop + reshape + mean, with the window clipped to the feature map like
  ``ClippedAvgPool2d`` (so sizes under 256 px work in a dynamic graph too);
* the concatenation volume as a broadcast product (left) and one gather (right);
* the regression as the same separable upsampling as ``regress_chunked`` (interpolation matrices for W,
  H and D, built in the graph from the image size, only over the output window), then the softmax over
  all disparities at once (no bands: ONNX Runtime holds the whole (D, H, W) volume) and the estimator,
  ``dominant`` (vislab's default) or ``softargmin``, fixed at export and recorded as ``vislab_estimator``
  in the file's metadata.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vislab.core.checkpoint import LoadedCache
from vislab.core.errors import VislabError
from vislab.core.onnx import DEFAULT_OPSET, export_module, open_session, require_task
from vislab.stereo.models.psmnet import PAD_MULTIPLE, PSMNet
from vislab.stereo.models.volume import (
    CONFIDENCE_RADIUS,
    DEFAULT_ESTIMATOR,
    DEFAULT_ESTIMATOR_WINDOW,
    ESTIMATORS,
    dominant_mode,
)
from vislab.stereo.refine import check_left_right
from vislab.stereo.transforms import IMAGENET_MEAN, IMAGENET_STD

INPUT_NAMES = ("left", "right")
# Traced at this size: odd, so the padding is not a no-op, and small, so the trace is quick. A --dynamic
# graph computes every size-dependent value from its input, so the trace size does not limit it.
TRACE_SIZE = (37, 61)

Size = int | torch.Tensor  # a Python int in eager mode; a 0-dim int64 tensor (a graph value) while tracing


def _tensor(v: Size) -> torch.Tensor:
    """``v`` as a 0-dim tensor; a graph value stays that value (``torch.as_tensor`` would make it a constant)."""
    return v if isinstance(v, torch.Tensor) else torch.full((), v, dtype=torch.int64)


def _as_float64(v: Size) -> torch.Tensor:
    return _tensor(v).to(torch.float64)


def interp_weights(in_size: Size, out_size: Size, start: Size, count: Size, align_corners: bool,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(count, in_size) matrix of linear-interpolation weights for output positions
    ``start .. start + count - 1`` of an ``in_size -> out_size`` upsampling, with PyTorch's source-index
    formula (``F.interpolate``); two non-zeros per row. Sizes may be graph values (see ``Size``)."""
    dst = torch.arange(count).to(torch.float64) + _as_float64(start)
    n_in, n_out = _as_float64(in_size), _as_float64(out_size)
    if align_corners:
        src = dst * ((n_in - 1) / torch.clamp(n_out - 1, min=1))
    else:
        src = torch.clamp((dst + 0.5) * (n_in / n_out) - 0.5, min=0)
    i0 = torch.minimum(torch.floor(src), n_in - 1)
    i1 = torch.minimum(i0 + 1, n_in - 1)
    lam = (src - i0).unsqueeze(1)
    cols = torch.arange(in_size).to(torch.float64).unsqueeze(0)
    # i0 == i1 at the clamped border: the two terms then add up to weight 1, as F.interpolate has it.
    first, second = (cols == i0.unsqueeze(1)).to(torch.float64), (cols == i1.unsqueeze(1)).to(torch.float64)
    weights = first * (1 - lam) + second * lam
    return weights.to(dtype)


def clipped_avg_pool(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """``ClippedAvgPool2d(kernel)`` as crop + reshape + mean, so the window can be a graph value."""
    b, c, h, w = x.shape
    kh, kw = torch.clamp(_tensor(h), max=kernel), torch.clamp(_tensor(w), max=kernel)
    nh, nw = _tensor(h) // kh, _tensor(w) // kw
    x = x[:, :, :nh * kh, :nw * kw]  # floor mode: the rows/columns past the last whole window are dropped
    return x.reshape(b, c, nh, kh, nw, kw).mean(dim=(3, 5))


def concat_volume(left: torch.Tensor, right: torch.Tensor, num_disp: int) -> torch.Tensor:
    """``build_concat_volume`` without writes into slices: (B, 2C, num_disp, H, W), zero where x < d."""
    b, c, h, w = left.shape
    d = torch.arange(num_disp).view(num_disp, 1, 1)
    shifted = torch.arange(w).view(1, 1, w) - d  # (D, 1, W): source column in the right image
    valid = (shifted >= 0).to(left.dtype)
    left_part = left.unsqueeze(2) * valid
    # Right features zero-padded by num_disp columns on the left and flattened over (H, W): one gather
    # with index row * (W + D) + (x - d + D) gives (B, C, D, H, W) directly, without a transpose.
    padded = F.pad(right, (num_disp, 0)).flatten(2)
    rows = torch.arange(h).view(1, h, 1)
    index = (rows * (w + num_disp) + shifted + num_disp).reshape(-1)
    right_part = padded.index_select(2, index).reshape(b, c, num_disp, h, w)
    return torch.cat([left_part, right_part], dim=1)


class PSMNetOnnx(nn.Module):
    """A PSMNet's eval-mode inference for export: [0, 1] RGB pair -> disparity (and confidence), any size.

    Computes what ``model.infer(imagenet_normalize(left), imagenet_normalize(right))`` returns with the
    soft-argmin estimator, up to float rounding (see the module docstring for what is written anew).
    """

    def __init__(self, model: PSMNet, confidence: bool = False, estimator: str = DEFAULT_ESTIMATOR,
                 window: int = DEFAULT_ESTIMATOR_WINDOW) -> None:
        super().__init__()
        if estimator not in ESTIMATORS:
            raise VislabError(f"unknown --estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
        if window < 0:
            raise VislabError(f"--estimator-window must be >= 0 px, got {window}")
        self.estimator, self.window = estimator, int(window)
        net = copy.deepcopy(model).cpu().eval()
        for p in net.parameters():
            p.requires_grad_(False)
        self.net = net
        self.confidence = confidence
        self.max_disp = net.max_disp
        dt = next(net.parameters()).dtype  # the model's (float32 for export; float64 in exactness tests)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN, dtype=dt).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD, dtype=dt).view(1, 3, 1, 1))
        self.register_buffer("disp_values", torch.arange(net.max_disp, dtype=dt))
        d4 = net.max_disp // 4
        self.register_buffer("d_matrix", interp_weights(d4, net.max_disp, 0, net.max_disp, net.align_corners, dt))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``FeatureExtraction.forward`` with :func:`clipped_avg_pool` in the SPP branches."""
        fe = self.net.feature_extraction
        raw, skip = fe.trunk(x)
        size = skip.shape[-2:]
        branches = []
        for branch in (fe.branch4, fe.branch3, fe.branch2, fe.branch1):  # concat order, as in the model
            y = branch[1:](clipped_avg_pool(skip, branch[0].kernel_size))
            branches.append(F.interpolate(y, size=size, mode="bilinear", align_corners=fe.align_corners))
        return fe.lastconv(torch.cat([raw, skip, *branches], dim=1))

    def regress(self, cost: torch.Tensor, top: Size, h: Size, w: Size) -> tuple[torch.Tensor, torch.Tensor | None]:
        """1/4-scale cost (B, D/4, Hp/4, Wp/4) -> disparity (and confidence) of output rows ``top .. top + h - 1``
        and columns ``0 .. w - 1``: separable upsampling (W, H, then D), softmax over D, expectation."""
        b, d4, h4, w4 = cost.shape
        ac = self.net.align_corners
        w_matrix = interp_weights(w4, w4 * 4, 0, w, ac, cost.dtype)  # (w, W/4)
        h_matrix = interp_weights(h4, h4 * 4, top, h, ac, cost.dtype)  # (h, H/4)
        x = torch.matmul(h_matrix, torch.matmul(cost, w_matrix.t()))  # (B, D/4, h, w)
        logits = torch.matmul(self.d_matrix, x.reshape(b, d4, -1))  # (B, D, h * w): the one full-D tensor
        weights = torch.exp(logits - logits.amax(dim=1, keepdim=True))
        total = weights.sum(dim=1)
        confidence = None
        if self.estimator == "dominant":
            disparity, mass = dominant_mode(weights, self.window)
            if self.confidence:
                confidence = (mass / total).reshape(b, h, w)
            return disparity.reshape(b, h, w), confidence
        disparity = torch.matmul(self.disp_values, weights) / total  # (B, h * w)
        if self.confidence:  # the same set of disparities as _mass_near: integers within the radius
            near = (self.disp_values.view(1, -1, 1) - disparity.unsqueeze(1)).abs() <= CONFIDENCE_RADIUS
            confidence = (weights * near.to(weights.dtype)).sum(dim=1) / total
            confidence = confidence.reshape(b, h, w)
        return disparity.reshape(b, h, w), confidence

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = left.shape
        top, rpad = (-_tensor(h)) % PAD_MULTIPLE, (-_tensor(w)) % PAD_MULTIPLE
        pair = torch.cat([left, right]).sub(self.mean).div(self.std)
        pair = F.pad(pair, (0, rpad, top, 0))  # top and right, as the official test scripts and model.infer
        feats = self.features(pair)
        volume = concat_volume(feats[:b], feats[b:], self.net.volume_disparities)
        cost = self.net.dres0(volume)
        cost = self.net._aggregate([cost], all_costs=False)[-1]
        cost = cost.squeeze(1)[:, :self.max_disp // 4]  # the planes past max_disp/4 only fed the hourglass
        disparity, confidence = self.regress(cost, top, h, w)
        return (disparity, confidence) if confidence is not None else disparity


def _check_size(height: int | None, width: int | None, dynamic: bool) -> tuple[int, int]:
    if dynamic:
        if height is not None or width is not None:
            raise VislabError("give --height H --width W (a fixed size) or --dynamic (any size), not both")
        return TRACE_SIZE
    if height is None or width is None:
        raise VislabError("give --height H --width W for a graph of that fixed size, or --dynamic for any size")
    if height <= 0 or width <= 0:
        raise VislabError(f"--height and --width must be positive, got {height}x{width}")
    return height, width


def export_stereo(out: str | os.PathLike, weights: str | os.PathLike | None = None, *, max_disp: int | None = None,
                  align_corners: bool | None = None, height: int | None = None, width: int | None = None,
                  dynamic: bool = False, confidence: bool = False, estimator: str | None = None,
                  estimator_window: int | None = None, opset: int = DEFAULT_OPSET) -> dict[str, Any]:
    """Export a PSMNet (``weights``: any checkpoint vislab loads; None: the shipped model) to ``out`` as ONNX.

    Args:
        max_disp, align_corners: override the checkpoint's (as ``vislab stereo predict`` does).
        height, width: the fixed image size of the graph; or ``dynamic=True`` for any size.
        confidence: also output the confidence map.
        estimator, estimator_window: how the disparity is read from the softmax, as for ``predict_disparity``
            (default: vislab's default, the dominant mode within ±4 px); recorded in the file's metadata.

    Returns:
        what was written: path, model name, max_disp, size ("dynamic" or "HxW"), outputs, opset.

    Raises:
        VislabError: a max-disp that is not a positive multiple of 4, no size / both kinds of size / a
            non-positive size, a checkpoint that is not PSMNet (e.g. an MNIST one), or no onnx/onnxruntime.
    """
    from vislab.stereo.models import load_stereo_model

    if max_disp is not None and (max_disp <= 0 or max_disp % 4):
        raise VislabError(f"--max-disp must be a positive multiple of 4, got {max_disp}")
    h, w = _check_size(height, width, dynamic)
    estimator = DEFAULT_ESTIMATOR if estimator is None else estimator
    window = DEFAULT_ESTIMATOR_WINDOW if estimator_window is None else int(estimator_window)
    model, info = load_stereo_model(weights, "cpu", max_disp=max_disp, align_corners=align_corners)
    wrapper = PSMNetOnnx(model, confidence=confidence, estimator=estimator, window=window)
    outputs = ["disparity", "confidence"] if confidence else ["disparity"]
    axes = {0: "batch", 1: "height", 2: "width"} if dynamic else {0: "batch"}
    in_axes = {0: "batch", 2: "height", 3: "width"} if dynamic else {0: "batch"}
    dynamic_axes = {**{n: in_axes for n in INPUT_NAMES}, **{n: axes for n in outputs}}
    example = tuple(torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(i)) for i in range(2))
    size = "dynamic" if dynamic else f"{h}x{w}"
    meta = {"task": "stereo", "model": info["name"], "max_disp": info["max_disp"],
            "align_corners": info["align_corners"], "estimator": estimator,
            "estimator_window": window if estimator == "dominant" else "", "size": size,
            "weights": Path(info["path"]).name, "weights_source": info["source"],
            "input": "left, right: float32 (N, 3, H, W) RGB in [0, 1]; ImageNet normalisation, padding to a "
                     "multiple of 16 and the crop back are in the graph",
            "output": "disparity: float32 (N, H, W) px" + (", confidence: float32 (N, H, W) in [0, 1]"
                                                            if confidence else "")}
    path = export_module(wrapper, example, out, input_names=INPUT_NAMES, output_names=outputs,
                         dynamic_axes=dynamic_axes, metadata=meta, opset=opset)
    return {"path": str(path), "model": info["name"], "max_disp": info["max_disp"], "size": size,
            "outputs": outputs, "opset": opset, "weights": info["path"], "estimator": estimator,
            "estimator_window": window}


class StereoOnnx:
    """An exported PSMNet graph in an ONNX Runtime session.

    ``runner(left, right)`` with (H, W, 3) float32 RGB in [0, 1] -> (disparity, confidence or None), as
    numpy arrays of shape (H, W); ``info`` has what ``predict`` reports (method, max_disp, model, ...).
    """

    def __init__(self, path: str | os.PathLike, device: str = "auto", threads: int | None = None) -> None:
        self.path = Path(path)
        self.session = open_session(self.path, device, threads)
        self.meta = require_task(self.session, self.path, "stereo")
        self.max_disp = int(self.meta["max_disp"])
        self.estimator = self.meta.get("estimator", "softargmin")
        window = self.meta.get("estimator_window", "")
        self.estimator_window = int(window) if window else None
        self.outputs = [o.name for o in self.session.get_outputs()]
        shape = self.session.get_inputs()[0].shape  # [N, 3, H, W]; names where dynamic
        self.size = tuple(shape[2:]) if all(isinstance(s, int) for s in shape[2:]) else None

    @property
    def has_confidence(self) -> bool:
        return "confidence" in self.outputs

    @property
    def info(self) -> dict[str, Any]:
        return {"method": "psmnet", "runtime": "onnxruntime", "onnx": str(self.path), "name": self.meta.get("model"),
                "max_disp": self.max_disp, "align_corners": self.meta.get("align_corners") == "True",
                "estimator": self.estimator, "estimator_window": self.estimator_window,
                "providers": self.session.get_providers()}

    def check_size(self, height: int, width: int) -> None:
        """VislabError unless the graph takes ``height`` x ``width`` images."""
        if self.size is not None and (height, width) != self.size:
            raise VislabError(f"{self.path} was exported for {self.size[0]}x{self.size[1]} images, this pair is "
                              f"{height}x{width}; export with --height {height} --width {width}, or --dynamic")

    def run_batch(self, left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, 3, H, W) float32 [0, 1] pairs -> disparity (N, H, W) and confidence (N, H, W) or None."""
        if left.shape != right.shape or left.ndim != 4 or left.shape[1] != 3:
            raise VislabError(f"expected left and right of one shape (N, 3, H, W), got {left.shape} and {right.shape}")
        self.check_size(*left.shape[2:])
        feeds = {"left": np.ascontiguousarray(left, dtype=np.float32),
                 "right": np.ascontiguousarray(right, dtype=np.float32)}
        result = self.session.run(self.outputs, feeds)
        disp = result[0]
        conf = result[1] if self.has_confidence else None
        return disp, conf

    def __call__(self, left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if left.shape != right.shape:
            raise VislabError(f"left and right images differ in size: {left.shape} vs {right.shape}")
        disp, conf = self.run_batch(left.transpose(2, 0, 1)[None], right.transpose(2, 0, 1)[None])
        return disp[0], (conf[0] if conf is not None else None)


# Bounded: sessions take a while to build, and a long-running app may be given several files over time.
_RUNNERS: LoadedCache[StereoOnnx] = LoadedCache(limit=4)


def cached_runner(path: str | os.PathLike, device: str = "auto") -> StereoOnnx:
    """A ``StereoOnnx`` per (file, its modification time and size, device), built once per process."""
    return _RUNNERS.get(path, (device,), lambda: StereoOnnx(path, device))


def predict_onnx(path: str | os.PathLike, left: np.ndarray, right: np.ndarray, *, method: str = "psmnet",
                 weights: str | os.PathLike | None = None, max_disp: int | None = None, align_corners: bool = False,
                 device: str = "auto", estimator: str | None = None, estimator_window: int | None = None,
                 lr_check: float = 0.0, lr_view: str | None = None
                 ) -> tuple[np.ndarray, np.ndarray | None, float, dict[str, Any]]:
    """``predict_disparity(..., onnx=path)``: (disparity, confidence or None, seconds, info) from ONNX Runtime.

    The options that ``predict_disparity`` takes for PyTorch are fixed inside the exported file; giving one
    that disagrees with it is a one-line VislabError rather than being silently ignored. ``lr_check`` > 0 runs
    the graph on the mirrored, swapped pair too and applies the same left-right check as PyTorch, with the
    full-size right view (``lr_view`` None or ``"full"``; the cheaper views need the PyTorch model).
    """
    if lr_view not in (None, "full"):
        raise VislabError(f"--onnx checks with the full-size right view; --lr-view {lr_view} needs the PyTorch model "
                          f"(drop --onnx)")
    if method != "psmnet":
        raise VislabError(f"--onnx runs an exported PSMNet; it cannot be combined with --method {method}")
    if weights is not None:
        raise VislabError("--onnx and --weights exclude each other: the weights are inside the ONNX file")
    runner = cached_runner(path, device)
    fixed = {"--max-disp": (max_disp, runner.max_disp), "--estimator": (estimator, runner.estimator)}
    if runner.estimator == "dominant":
        fixed["--estimator-window"] = (estimator_window, runner.estimator_window)
    if align_corners and runner.info["align_corners"] is not True:
        raise VislabError(f"{path} was exported without --align-corners; export again with it")
    for flag, (given, exported) in fixed.items():
        if given is not None and given != exported:
            raise VislabError(f"{path} was exported with {flag} {exported}; {flag} {given} needs a new export")
    runner.check_size(*left.shape[:2])
    start = time.perf_counter()
    disp, conf = runner(left, right)
    info = {**runner.info, "lr_check": lr_check, "lr_refilled": 0.0}
    if lr_check > 0:
        def run(left_batch: torch.Tensor, right_batch: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(runner.run_batch(left_batch.numpy(), right_batch.numpy())[0])

        def as_batch(image: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]

        filled, checked_conf, info["lr_refilled"] = check_left_right(
            run, as_batch(left), as_batch(right), torch.from_numpy(disp)[None],
            None if conf is None else torch.from_numpy(conf)[None], lr_check)
        disp, conf = filled[0].numpy(), (None if checked_conf is None else checked_conf[0].numpy())
    return disp, conf, time.perf_counter() - start, info


def run_export(args: argparse.Namespace) -> int:
    """``vislab stereo export OUT.onnx [--weights] [--max-disp] [--height --width | --dynamic] [--confidence]``."""
    info = export_stereo(args.out, args.weights, max_disp=args.max_disp,
                         align_corners=True if args.align_corners else None, height=args.height, width=args.width,
                         dynamic=args.dynamic, confidence=args.confidence, estimator=args.estimator,
                         estimator_window=args.estimator_window, opset=args.opset)
    estimator = info["estimator"] + (f" +-{info['estimator_window']} px" if info["estimator"] == "dominant" else "")
    print(f"wrote {info['path']} (PSMNet {info['model']}, max disparity {info['max_disp']}, size {info['size']}, "
          f"outputs {', '.join(info['outputs'])}, estimator {estimator}, opset {info['opset']}; "
          f"from {info['weights']})")
    return 0
