"""The one stereo evaluation loop (``vislab stereo eval`` and training validation both use ``evaluate``)."""

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vislab.core.device import pick_device
from vislab.core.errors import VislabError
from vislab.core.logging import progress as progress_bar
from vislab.core.logging import write_json
from vislab.stereo.datasets import StereoDataset, create_dataset
from vislab.stereo.metrics import METRIC_KEYS, MetricAccumulator
from vislab.stereo.refine import DEFAULT_LR_CHECK, check_left_right, refill_inconsistent
from vislab.stereo.transforms import imagenet_normalize

PredictFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
DEFAULT_MAX_DISP = 192


@dataclass(frozen=True)
class MatchStage:
    """One answer of :meth:`PairMatcher.stages`: (1, H, W) disparity and confidence (or None), the share of pixels
    the check refilled, and whether it is the last answer."""

    disparity: torch.Tensor
    confidence: torch.Tensor | None
    refilled: float
    final: bool


class PairMatcher:
    """One pair through PSMNet the way predict / eval / submit run it: the range (``--max-disp auto`` or fixed),
    the estimator, the precision and the left-right check. ``last_range`` is the last pair's ``RangeChoice``
    (None with a fixed range)."""

    def __init__(self, model: torch.nn.Module, *, auto_range: bool = False, estimator: str | None = None,
                 estimator_window: int | None = None, lr_check: float = 0.0, lr_view: str = "full",
                 precision: str = "fp32") -> None:
        self.model, self.auto_range = model, auto_range
        self.estimator, self.window = estimator, estimator_window
        self.lr_check, self.lr_view, self.bf16 = lr_check, lr_view, precision == "bf16"
        self.last_range = None

    def __call__(self, left: torch.Tensor, right: torch.Tensor, return_confidence: bool = False
                 ) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        """ImageNet-normalised (1, 3, H, W) pair -> (disparity, confidence or None, share refilled by the check)."""
        *_, answer = self.stages(left, right, return_confidence)
        return answer.disparity, answer.confidence, answer.refilled

    def stages(self, left: torch.Tensor, right: torch.Tensor, return_confidence: bool = False
               ) -> Iterator[MatchStage]:
        """The pair's answers as they come: with the full- or half-size check, the network's own answer first
        (``final`` False), then the checked one; otherwise the one answer. The first is what the second pass
        starts from, not extra work, so an interactive caller can show it while the check runs."""
        from vislab.stereo.auto_range import choose_range

        max_disp = self.model.max_disp
        if self.auto_range:
            self.last_range = choose_range(self.model, left, right, max_disp, estimator=self.estimator or "dominant",
                                           window=self.window)
            max_disp = self.last_range.max_disp
        width = left.shape[-1]

        def run(l_in: torch.Tensor, r_in: torch.Tensor, confidence: bool = False):
            # a reduced right view (lr_view "half") needs proportionally fewer disparities
            disp_range = max_disp if l_in.shape[-1] == width else 4 * math.ceil(max_disp * l_in.shape[-1] / width / 4)
            return self.model.infer(l_in, r_in, return_confidence=confidence, estimator=self.estimator,
                                    window=self.window, max_disp=disp_range, bf16=self.bf16)

        if self.lr_check > 0 and self.lr_view == "volume":  # one network pass; the right view from its volume
            disp, conf, disp_right = self.model.infer_views(
                left, right, return_confidence=return_confidence, estimator=self.estimator, window=self.window,
                max_disp=max_disp, bf16=self.bf16)
            yield MatchStage(*refill_inconsistent(disp, disp_right, conf, self.lr_check), final=True)
            return
        disp, conf = run(left, right, return_confidence)
        if self.lr_check <= 0:
            yield MatchStage(disp, conf, 0.0, final=True)
            return
        yield MatchStage(disp, conf, 0.0, final=False)
        yield MatchStage(*check_left_right(lambda a, b: run(a, b)[0], left, right, disp, conf, self.lr_check,
                                           self.lr_view), final=True)


def psmnet_predict_fn(model: torch.nn.Module, device: torch.device | str, estimator: str | None = None,
                      estimator_window: int | None = None, lr_check: float = 0.0, *, auto_range: bool = False,
                      lr_view: str = "full", precision: str = "fp32", ranges: list[int] | None = None) -> PredictFn:
    """Wrap a PSMNet for ``evaluate``: (3, H, W) [0, 1] left/right -> (H, W) disparity on the CPU.

    Normalises with ImageNet statistics, adds the batch dimension and calls ``model.infer`` (eval-mode
    semantics and no autograd, whatever mode the model is in, so training can validate mid-run).
    ``lr_check`` > 0: also predict the right view (``lr_view``: at full or half size) and refill the pixels it
    contradicts by more than that many px (:func:`~vislab.stereo.refine.left_right_fill`); 0, the default
    here, is the network alone. ``auto_range``: each pair's range from a first look
    (:mod:`vislab.stereo.auto_range`), appended to ``ranges`` when given; ``precision``: ``fp32`` or ``bf16``.
    """
    device = torch.device(device)
    matcher = PairMatcher(model, auto_range=auto_range, estimator=estimator, estimator_window=estimator_window,
                          lr_check=lr_check, lr_view=lr_view, precision=precision)

    def predict(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        l_in = imagenet_normalize(left.to(device, torch.float32)).unsqueeze(0)
        r_in = imagenet_normalize(right.to(device, torch.float32)).unsqueeze(0)
        disp = matcher(l_in, r_in)[0]
        if ranges is not None and matcher.last_range is not None:
            ranges.append(matcher.last_range.max_disp)
        return disp[0].float().cpu()

    return predict


def evaluate(predict_fn: PredictFn, dataset: StereoDataset, max_disp: int, limit: int | None = None,
             progress: bool = True) -> dict[str, Any]:
    """Run ``predict_fn`` on every pair of ``dataset`` (or the first ``limit``) and score it.

    Pixels count when ``0 < gt < max_disp`` and the sample's ``valid`` mask is set. Returns
    ``{"per_image": [{"name", "epe", "d1", "bad1", "bad2", "bad3", "n_valid", "seconds"}, ...],
    "pixel_mean": {...}, "image_mean": {...}, "max_disp", "n_images", "seconds"}`` (rates in percent).
    """
    if not getattr(dataset, "has_disparity", True):
        raise VislabError(f"{dataset!r} has no ground-truth disparities to evaluate against (a testing split?)")
    n = len(dataset) if limit is None else max(0, min(int(limit), len(dataset)))
    acc = MetricAccumulator(max_disp=max_disp)
    start = time.perf_counter()
    for i in progress_bar(range(n), desc="evaluating", total=n, enabled=progress):
        sample = dataset[i]
        t0 = time.perf_counter()
        with torch.no_grad():
            pred = predict_fn(sample["left"], sample["right"])
        seconds = time.perf_counter() - t0
        pred = torch.as_tensor(pred).detach().float().cpu()
        if pred.shape != sample["disp"].shape:
            raise VislabError(f"prediction for {sample['name']} is {tuple(pred.shape)}, "
                              f"ground truth is {tuple(sample['disp'].shape)}")
        row = acc.update(pred, sample["disp"], sample["valid"], name=sample["name"])
        row["seconds"] = seconds
    summary = acc.summary()
    return {"per_image": acc.per_image, **summary, "max_disp": max_disp, "n_images": n,
            "seconds": time.perf_counter() - start}


# ----------------------------------------------------------------------------------------------- CLI

def parse_dataset_options(items: list[str] | None) -> dict[str, Any]:
    """``["resolution=H", "nonocc=true", "subsets=driving,monkaa"]`` -> keyword arguments for a dataset."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise VislabError(f"--dataset-opt expects KEY=VALUE, got {item!r}")
        low = value.lower()
        if low in ("true", "yes", "false", "no"):  # not "1"/"0": seed=1 must stay the integer 1
            out[key] = low in ("true", "yes")
        else:
            try:
                out[key] = int(value)
            except ValueError:
                out[key] = value
    return out


def build_predictor(*, method: str = "psmnet", weights: str | Path | None = None,
                    max_disp: int | str | None = "auto", align_corners: bool = False, device: str = "auto",
                    estimator: str | None = None, estimator_window: int | None = None, lr_check: float | None = None,
                    lr_view: str | None = None, precision: str = "auto",
                    ranges: list[int] | None = None) -> tuple[PredictFn, dict[str, Any]]:
    """The predict_fn and a config record for a method (``psmnet`` or ``sgbm``) and its options.

    Shared by ``vislab stereo eval`` and ``submit``; the options mean what the CLI flags of the same names mean
    (``max_disp``: ``"auto"``, a range, or None for the checkpoint's). With ``"auto"`` each pair's range is
    appended to ``ranges`` when given; the record's ``max_disp`` is then the trained range (what scores count).
    """
    from vislab.stereo.auto_range import AUTO, parse_max_disp

    max_disp = parse_max_disp(max_disp)
    auto = max_disp == AUTO
    fixed = None if auto else max_disp
    if method == "sgbm":
        from vislab.stereo.sgbm import SGBM_PARAMS, sgbm_predict_fn

        sgbm_disp = sgbm_max_disp(fixed, weights)  # SGBM costs little at any range: auto is its default, 192
        return sgbm_predict_fn(sgbm_disp), {"method": "sgbm", "max_disp": sgbm_disp, **SGBM_PARAMS}
    if method != "psmnet":
        raise VislabError(f"unknown method {method!r}; choose psmnet or sgbm")
    model, info, torch_device = load_model(weights, max_disp=fixed, align_corners=align_corners, device=device)
    # PSMNet's estimator (None: DEFAULT_ESTIMATOR); SGBM above has no softmax to choose from.
    estimator, estimator_window = resolve_estimator(estimator, estimator_window)
    lr_check, lr_view = resolve_lr_check(lr_check), resolve_lr_view(lr_view)
    precision, _ = resolve_stereo_precision(precision, torch_device, weights)
    return (psmnet_predict_fn(model, torch_device, estimator, estimator_window, lr_check, auto_range=auto,
                              lr_view=lr_view, precision=precision, ranges=ranges),
            {"method": "psmnet", **info, "device": str(torch_device), "estimator": estimator,
             "estimator_window": estimator_window, "lr_check": lr_check, "lr_view": lr_view,
             "range": AUTO if auto else "fixed", "precision": precision})


def resolve_lr_view(view: str | None) -> str:
    """The left-right check's right view, ``full`` or ``half`` (None: the default), validated."""
    from vislab.stereo.refine import DEFAULT_LR_VIEW, LR_VIEWS

    view = DEFAULT_LR_VIEW if view is None else view
    if view not in LR_VIEWS:
        raise VislabError(f"unknown --lr-view {view!r}; choose one of {', '.join(LR_VIEWS)}")
    return view


def resolve_stereo_precision(precision: str, device: torch.device, weights: str | Path | None = None
                             ) -> tuple[str, str]:
    """``--precision`` for PSMNet on ``device``: (fp32 | bf16, why); see :mod:`vislab.stereo.precision`."""
    from vislab.stereo.precision import probe_synthetic, resolve_precision

    return resolve_precision(precision, device, probe=None if weights is None else
                             (lambda p: probe_synthetic(p, weights)))


def resolve_estimator(estimator: str | None, window: int | None) -> tuple[str, int]:
    """``(estimator, window)`` with the defaults filled in, validated (one-line VislabError)."""
    from vislab.stereo.models.volume import DEFAULT_ESTIMATOR, DEFAULT_ESTIMATOR_WINDOW, ESTIMATORS

    estimator = DEFAULT_ESTIMATOR if estimator is None else estimator
    window = DEFAULT_ESTIMATOR_WINDOW if window is None else int(window)
    if estimator not in ESTIMATORS:
        raise VislabError(f"unknown --estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    if window < 0:
        raise VislabError(f"--estimator-window must be >= 0 px, got {window}")
    return estimator, window


def resolve_lr_check(threshold: float | None) -> float:
    """The left-right check threshold in px (None: the default; 0: no check), validated (one-line VislabError)."""
    threshold = DEFAULT_LR_CHECK if threshold is None else float(threshold)
    if not math.isfinite(threshold) or threshold < 0:
        raise VislabError(f"--lr-check must be a threshold >= 0 px (0 turns the check off), got {threshold}")
    return threshold


def sgbm_max_disp(max_disp: int | None = None, weights: str | Path | None = None) -> int:
    """The disparity range for SGBM (default 192), refusing options that only apply to PSMNet."""
    if weights is not None:
        raise VislabError("--weights selects a PSMNet checkpoint; it cannot be combined with --method sgbm")
    if max_disp is None:
        return DEFAULT_MAX_DISP
    if max_disp <= 0:
        raise VislabError(f"--max-disp must be positive, got {max_disp}")
    return max_disp


def load_model(weights: str | Path | None = None, *, max_disp: int | None = None, align_corners: bool = False,
               device: str | torch.device = "auto") -> tuple[torch.nn.Module, dict[str, Any], torch.device]:
    """Load the PSMNet checkpoint ``weights`` (None: the shipped model) on ``device`` (picked once here).

    ``align_corners=True`` forces the upsampling the first released weights were trained with; False keeps
    what the checkpoint records.
    """
    from vislab.stereo.models import load_stereo_model

    torch_device = device if isinstance(device, torch.device) else pick_device(device)
    if max_disp is not None and (max_disp <= 0 or max_disp % 4):
        raise VislabError(f"--max-disp must be a positive multiple of 4, got {max_disp}")
    model, info = load_stereo_model(weights, torch_device, max_disp=max_disp,
                                    align_corners=True if align_corners else None)
    return model, info, torch_device


def _fmt(v: float, pct: bool = False) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "-"
    return f"{v:.2f}" if pct else f"{v:.3f}"


def format_table(results: dict[str, Any]) -> str:
    """Per-image rows, then the pixel mean and the image mean."""
    rows = [(r["name"], r) for r in results["per_image"]]
    width = max([len("image mean")] + [len(n) for n, _ in rows])
    head = f"{'image':<{width}}  {'EPE':>7} {'D1%':>7} {'bad1%':>7} {'bad2%':>7} {'bad3%':>7} {'pixels':>9}"
    lines = [head, "-" * len(head)]

    def line(name: str, r: dict[str, Any], count: str) -> str:
        return (f"{name:<{width}}  {_fmt(r['epe']):>7} " + " ".join(f"{_fmt(r[k], True):>7}" for k in METRIC_KEYS[1:])
                + f" {count:>9}")

    for name, r in rows:
        lines.append(line(name, r, str(r["n_valid"])))
    lines.append("-" * len(head))
    lines.append(line("pixel mean", results["pixel_mean"], str(results["pixel_mean"]["n_valid"])))
    lines.append(line("image mean", results["image_mean"], f"{results['image_mean']['n_images']} img"))
    return "\n".join(lines)


def _json_safe(obj: Any) -> Any:
    """NaN/inf are not JSON: write null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def run_eval(args: argparse.Namespace) -> int:
    """``vislab stereo eval``: print a per-image and overall table; ``--json`` also writes the numbers."""
    options = parse_dataset_options(getattr(args, "dataset_opt", None))
    if args.limit is not None and args.limit < 1:
        raise VislabError(f"--limit must be at least 1, got {args.limit}")
    if args.root is None and args.dataset != "synthetic":
        raise VislabError(f"dataset {args.dataset!r} needs --root DIR")
    split = default_eval_split(args.dataset, getattr(args, "split", None))
    dataset = create_dataset(args.dataset, args.root, split=split, **options)
    ranges: list[int] = []
    predict_fn, config = build_predictor(**predictor_options(args), ranges=ranges)
    max_disp = int(config["max_disp"])
    results = evaluate(predict_fn, dataset, max_disp=max_disp, limit=args.limit)
    for row, chosen in zip(results["per_image"], ranges, strict=False):
        row["max_disp"] = chosen  # the range this pair was matched over (--max-disp auto)
    to_stdout = args.json_path == "-"
    out = sys.stderr if to_stdout else sys.stdout
    method = "sgbm" if config["method"] == "sgbm" else f"psmnet {config['name']} ({config['path']})"
    matched = (f", matched over auto ranges {min(ranges)}-{max(ranges)} (median {sorted(ranges)[len(ranges) // 2]})"
               if ranges else "")
    print(f"{method} on {args.dataset} ({args.root}, {len(results['per_image'])} pairs, "
          f"max disparity {max_disp}{matched}, {results['seconds']:.1f} s)", file=out)
    print(format_table(results), file=out)
    if args.json_path is not None:
        record = _json_safe({
            "config": {"dataset": args.dataset, "root": str(args.root), "split": dataset.split, "options": options,
                       "limit": args.limit, **config},
            "per_image": results["per_image"], "pixel_mean": results["pixel_mean"],
            "image_mean": results["image_mean"], "seconds": results["seconds"],
        })
        if to_stdout:
            print(json.dumps(record, indent=2))
        else:
            write_json(record, args.json_path)
            print(f"wrote {args.json_path}", file=out)
    return 0


def predictor_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``build_predictor`` from the shared model flags of eval/predict/submit."""
    return {"method": getattr(args, "method", "psmnet"), "weights": args.weights, "max_disp": args.max_disp,
            "align_corners": bool(args.align_corners), "device": args.device,
            "estimator": getattr(args, "estimator", None), "estimator_window": getattr(args, "estimator_window", None),
            "lr_check": getattr(args, "lr_check", None), "lr_view": getattr(args, "lr_view", None),
            "precision": getattr(args, "precision", "auto")}


def default_eval_split(dataset: str, split: str | None) -> str:
    """The split to evaluate when none is given: the one benchmarks report on that has ground truth."""
    if split:
        return split
    # synthetic "testing": a fixed scene set drawn from (seed, index), never one of the per-epoch training scenes
    return "testing" if dataset in ("sceneflow", "synthetic") else "training"
