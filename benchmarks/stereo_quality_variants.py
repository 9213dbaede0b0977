"""Inference-side changes tried for issue 12, measured on held-out synthetic scenes (the adopted one: lr-min-2).

Each variant changes how one set of weights is run, never the weights:

- ``plain``: ``model.infer`` with the dominant estimator (+-4 px, or ``--window``), without the left-right check;
- ``lr-min-T``: ``vislab.stereo.refine``'s left-right consistency check at T px (the right view's disparity from
  the mirrored, swapped pair; pixels the two contradict refilled with their row's background);
- ``lr-occ-T``: the same check, but only pixels that look occluded (the right view sees something nearer there)
  get the background; other inconsistent pixels get the mean of their two consistent neighbours;
- ``scale-S``: run at S times the resolution (antialiased), disparities upsampled and divided by S;
- ``spp-global``: the 64- and 32-px SPP windows pool the whole feature map, as they did on 96x192 training crops;
- ``spp-clip-HxW``: every SPP window clipped to the 1/4-scale size of an HxW training crop.

``--average A.pt B.pt ...`` first averages checkpoints of one architecture into one (a "weight soup") and
evaluates that. One JSON line per (set, variant), then a Markdown table. Held-out synthetic scenes only: the
shared real pairs are never used to choose (issue 12).

    OMP_NUM_THREADS=1 python benchmarks/stereo_quality_variants.py
    python benchmarks/stereo_quality_variants.py --average runs/a.pt runs/b.pt --variants plain
"""

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vislab.stereo.datasets import create_dataset
from vislab.stereo.evaluate import evaluate
from vislab.stereo.models import load_stereo_model
from vislab.stereo.models.volume import DEFAULT_ESTIMATOR_WINDOW
from vislab.stereo.refine import left_right_fill, right_view_disparity
from vislab.stereo.transforms import imagenet_normalize

# (label, dataset options, max_disp); the first two are the selection set of docs/stereo-quality.md
SETS = {
    "objects96-all": ({"size": 50, "height": 96, "width": 192, "max_disp": 96}, 96),
    "objects96-visible": ({"size": 50, "height": 96, "width": 192, "max_disp": 96, "nonocc": True}, 96),
    "objects256": ({"size": 12, "height": 256, "width": 512, "max_disp": 192}, 192),
    "real256": ({"size": 12, "height": 256, "width": 512, "max_disp": 192, "style": "real"}, 192),
}
VARIANTS = ["plain", "lr-min-1", "lr-min-2", "lr-min-3", "lr-occ-1", "lr-occ-2", "lr-occ-3", "scale-0.5",
            "spp-global", "spp-clip-96x192"]


class WindowLimitedAvgPool2d(nn.Module):
    """Average pooling whose window (and stride) is ``kernel_size`` clipped to the map and to ``limit``."""

    def __init__(self, kernel_size: int, limit: tuple[int, int]) -> None:
        super().__init__()
        self.kernel_size, self.limit = kernel_size, limit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh = min(self.kernel_size, x.shape[-2], self.limit[0])
        kw = min(self.kernel_size, x.shape[-1], self.limit[1])
        return F.avg_pool2d(x, (kh, kw), stride=(kh, kw))


def set_spp_pools(model: nn.Module, variant: str) -> None:
    """Swap the SPP branches' pooling modules for ``variant`` (``plain`` restores unlimited windows)."""
    features = model.feature_extraction
    for name, kernel in (("branch1", 64), ("branch2", 32), ("branch3", 16), ("branch4", 8)):
        if variant == "spp-global" and kernel >= 32:
            pool: nn.Module = nn.AdaptiveAvgPool2d(1)
        elif variant.startswith("spp-clip-"):
            h, w = (int(v) // 4 for v in variant.removeprefix("spp-clip-").split("x"))
            pool = WindowLimitedAvgPool2d(kernel, (h, w))
        else:
            pool = WindowLimitedAvgPool2d(kernel, (10**6, 10**6))
        getattr(features, name)[0] = pool


def make_predict(model: nn.Module, variant: str,
                 window: int = DEFAULT_ESTIMATOR_WINDOW) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def run(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return model.infer(left, right, return_confidence=False, estimator="dominant", window=window)[0]

    def predict(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        left, right = imagenet_normalize(left.float())[None], imagenet_normalize(right.float())[None]
        if variant.startswith("lr-"):
            _, mode, threshold = variant.split("-")
            disp_right = right_view_disparity(run, left, right)
            return left_right_fill(run(left, right), disp_right, float(threshold), mode == "occ")[0][0]
        if variant.startswith("scale-"):
            scale = float(variant.removeprefix("scale-"))
            h, w = left.shape[-2:]
            size = (round(h * scale), round(w * scale))
            small = [F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
                     for x in (left, right)]
            disp = run(*small)[:, None]
            return F.interpolate(disp, size=(h, w), mode="bilinear", align_corners=False)[0, 0] * (w / size[1])
        return run(left, right)[0]

    return predict


def average_checkpoints(files: list[str], out: Path) -> Path:
    """One checkpoint whose floating-point tensors are the mean of ``files``' (the first file's metadata)."""
    loaded = [torch.load(f, map_location="cpu", weights_only=True) for f in files]
    first = loaded[0]["model"]
    state = {k: (sum(c["model"][k].float() for c in loaded) / len(loaded)).to(v.dtype) if v.is_floating_point()
             else v for k, v in first.items()}
    torch.save({**loaded[0], "model": state, "trained": {"average_of": files}}, out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=None, help="checkpoint (default: the shipped model)")
    p.add_argument("--average", nargs="+", help="average these checkpoints and evaluate the result")
    p.add_argument("--variants", nargs="+", default=VARIANTS)
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    p.add_argument("--window", type=int, default=DEFAULT_ESTIMATOR_WINDOW,
                   help=f"the dominant estimator's half-window, px (default {DEFAULT_ESTIMATOR_WINDOW})")
    args = p.parse_args(argv)
    torch.set_grad_enabled(False)
    weights = args.weights
    if args.average:
        weights = str(average_checkpoints(args.average, Path(tempfile.mkdtemp()) / "average.pt"))
    rows = {}
    for label in args.sets:
        options, max_disp = SETS[label]
        dataset = create_dataset("synthetic", None, split="testing", **options)
        model, _ = load_stereo_model(weights, "cpu", max_disp=max_disp)
        for variant in args.variants:
            set_spp_pools(model, variant if variant.startswith("spp-") else "plain")
            predict = make_predict(model, variant, args.window)
            pm = evaluate(predict, dataset, max_disp=max_disp, progress=False)["pixel_mean"]
            rows[label, variant] = f"{pm['epe']:.3f} / {pm['d1']:.2f} %"
            print(json.dumps({"set": label, "variant": variant, "epe": round(pm["epe"], 3),
                              "d1": round(pm["d1"], 2)}), flush=True)
    print("\n| variant | " + " | ".join(args.sets) + " |\n|---|" + "---|" * len(args.sets))
    for variant in args.variants:
        print(f"| {variant} | " + " | ".join(rows[label, variant] for label in args.sets) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
