"""Inference-side changes tried for issue 12, measured on held-out synthetic scenes (the adopted one: lr-min-2).

Each variant changes how one set of weights is run, never the weights:

- ``plain``: ``model.infer`` with the dominant estimator (+-4 px, or ``--window``), without the left-right check;
- ``lr-min-T``: ``vislab.stereo.refine``'s left-right consistency check at T px (the right view's disparity from
  the mirrored, swapped pair; pixels the two contradict refilled with their row's background);
- ``lr-occ-T``: the same check, but only pixels that look occluded (the right view sees something nearer there)
  get the background; other inconsistent pixels get the mean of their two consistent neighbours;
- ``lr-half-T``: the check with the right view predicted at half the width and height (issue 26: about a
  sixth of the work of the full-size right view), brought back to full size by nearest neighbour; ``lr-halfbl-T``
  the same with bilinear upsampling (the first version: it blends disparities across edges);
- ``lr-vol-T``: the check with the right view's disparity read from the left pass's own cost volume, sheared
  (``model.infer_views``, issue 26: a second regression instead of a second network pass);
- ``lr-feat-T``: the check with the right view's 3D pass run on the left pass's features, mirrored (one feature
  extraction for both views; a CNN's features are not mirror-symmetric, and it shows);
- ``occ1p-T``: a single-pass occlusion test instead of a right view: a left pixel is refilled when a pixel to
  its right lands at least T px further left in the right view (something nearer hides it) or its match
  leaves the right image;
- ``conf-C``: no right view: pixels whose confidence (the softmax mass the estimate stands on) is below C are
  refilled from their row's background;
- ``auto`` / ``auto-V``: ``--max-disp auto`` (``vislab.stereo.auto_range``: the range from a quarter-size
  first look), then nothing or variant V (e.g. ``auto-lr-half-2``);
- ``scale-S``: run at S times the resolution (antialiased), disparities upsampled and divided by S;
- ``spp-global``: the 64- and 32-px SPP windows pool the whole feature map, as they did on 96x192 training crops;
- ``spp-clip-HxW``: every SPP window clipped to the 1/4-scale size of an HxW training crop.

``--average A.pt B.pt ...`` first averages checkpoints of one architecture into one (a "weight soup") and
evaluates that. One JSON line per (set, variant), then a Markdown table. Held-out synthetic scenes only: the
shared real pairs are never used to choose (issue 12). The ``-views`` sets add what real pairs have beyond
the synthetic scenes' own per-view differences: the right view's exposure, gamma, noise and sharpness differ
more (``harder_right_view``); the ``auto`` variants' JSON lines add the ranges chosen and the share of
true disparities at or above them (``cut``).

    OMP_NUM_THREADS=1 python benchmarks/stereo_quality_variants.py
    python benchmarks/stereo_quality_variants.py --average runs/a.pt runs/b.pt --variants plain
    python benchmarks/stereo_quality_variants.py --sets objects256 real256 objects256-views real256-views \
        --variants plain lr-min-2 auto auto-lr-min-2 auto-lr-half-2 auto-lr-half-3 auto-occ1p-1
"""

import argparse
import hashlib
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vislab.stereo.auto_range import choose_range
from vislab.stereo.datasets import create_dataset
from vislab.stereo.evaluate import evaluate
from vislab.stereo.models import load_stereo_model
from vislab.stereo.models.volume import DEFAULT_ESTIMATOR_WINDOW
from vislab.stereo.refine import fill_from_background, left_right_fill, right_view_disparity
from vislab.stereo.transforms import gaussian_blur, imagenet_normalize

# (label, dataset options, max_disp); the first two are the selection set of docs/stereo-quality.md
SETS = {
    "objects96-all": ({"size": 50, "height": 96, "width": 192, "max_disp": 96}, 96),
    "objects96-visible": ({"size": 50, "height": 96, "width": 192, "max_disp": 96, "nonocc": True}, 96),
    "objects256": ({"size": 12, "height": 256, "width": 512, "max_disp": 192}, 192),
    "real256": ({"size": 12, "height": 256, "width": 512, "max_disp": 192, "style": "real"}, 192),
    # the same scenes with harder differences between the views (``harder_right_view``)
    "objects256-views": ({"size": 12, "height": 256, "width": 512, "max_disp": 192}, 192),
    "real256-views": ({"size": 12, "height": 256, "width": 512, "max_disp": 192, "style": "real"}, 192),
    # smaller ranges, where --max-disp auto has most to gain and most to lose (a fresh seed: new scenes)
    "objects256-d96": ({"size": 12, "height": 256, "width": 512, "max_disp": 96, "seed": 26}, 192),
}
DEFAULT_SETS = ["objects96-all", "objects96-visible", "objects256", "real256"]  # issue 12's table
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


class HarderViews(torch.utils.data.Dataset):
    """``dataset`` with the right view's exposure, gamma, noise and sharpness changed (seeded per index)."""

    def __init__(self, dataset: torch.utils.data.Dataset, seed: int = 26) -> None:
        self.dataset, self.seed = dataset, seed
        self.split, self.has_disparity = getattr(dataset, "split", None), True

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        sample = dict(self.dataset[index])
        sample["right"] = harder_right_view(sample["right"], torch.Generator().manual_seed(self.seed * 10007 + index))
        return sample


def harder_right_view(right: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """(3, H, W) in [0, 1]: exposure x0.65-1.5, gamma 0.75-1.3, a slight blur half the time, noise sigma 0.01-0.04
    (what two real cameras or one auto-exposure step differ by, beyond the scenes' own per-view differences)."""
    def uniform(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=gen))

    out = (right * uniform(0.65, 1.5)).clamp(0, 1) ** uniform(0.75, 1.3)
    if uniform(0, 1) < 0.5:
        out = gaussian_blur(out, uniform(0.5, 1.0))
    out = out + torch.randn(out.shape, generator=gen) * uniform(0.01, 0.04)
    return out.clamp(0, 1)


def single_pass_occlusions(disp: torch.Tensor, threshold: float) -> torch.Tensor:
    """(B, H, W) left disparity -> mask of pixels hidden in the right view, from the left view alone.

    Pixel x lands at x - d(x) in the right view; if a pixel to its right lands at least ``threshold`` px
    further left, the two swap order, which only happens when the nearer one hides x. Matches outside the
    right image count too."""
    width = disp.shape[-1]
    x = torch.arange(width, device=disp.device, dtype=disp.dtype).expand_as(disp)
    landing = x - disp
    # the smallest landing position of the pixels strictly to the right (inf for the last column)
    after = landing.flip(-1).cummin(-1).values.flip(-1)
    after = torch.cat([after[..., 1:], torch.full_like(after[..., :1], float("inf"))], dim=-1)
    return (after <= landing - threshold) | (landing < 0)


@torch.inference_mode()
def feature_views(model: nn.Module, left: torch.Tensor, right: torch.Tensor, max_disp: int,
                  window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Both views' disparities from one feature extraction: the right view's 3D pass on the mirrored features."""
    from vislab.stereo.models.psmnet import volume_planes
    from vislab.stereo.models.volume import regress_chunked

    fast = model._fast_copy()
    h, w = left.shape[-2:]
    top, rpad = model._pads(h, w)
    both = torch.cat([F.pad(left, (0, rpad, top, 0)), F.pad(right, (0, rpad, top, 0))])
    left_feat, right_feat = fast.feature_extraction(both.contiguous(memory_format=torch.channels_last)).chunk(2)

    def costs(reference: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        stem = fast._volume_stem(reference, target, True, volume_planes(max_disp))
        return fast._aggregate([stem], False)[-1].squeeze(1)[:, :max_disp // 4].contiguous()

    size = (h + top, w + rpad)
    disp = regress_chunked(costs(left_feat, right_feat), max_disp, size, (top, top + h), (0, w), False, False,
                           estimator="dominant", window=window)[0]
    mirrored = costs(right_feat.flip(-1), left_feat.flip(-1))  # its padding columns now come first
    disp_right = regress_chunked(mirrored, max_disp, size, (top, top + h), (rpad, rpad + w), False, False,
                                 estimator="dominant", window=window)[0]
    return disp, disp_right.flip(-1)


def make_predict(model: nn.Module, variant: str, window: int = DEFAULT_ESTIMATOR_WINDOW,
                 ranges: list | None = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    auto = variant == "auto" or variant.startswith("auto-")
    variant = variant.removeprefix("auto").removeprefix("-") or "plain"
    chosen = {"max_disp": None}

    def run_both(left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        max_disp = chosen["max_disp"]
        if max_disp is not None and left.shape[-1] != chosen["width"]:  # a reduced right view: a reduced range
            max_disp = max(4, 4 * round(max_disp * left.shape[-1] / chosen["width"] / 4))
        # always with the confidence, so that every variant shares one memoised pass per view
        return model.infer(left, right, return_confidence=True, estimator="dominant", window=window,
                           max_disp=max_disp)

    def run(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return run_both(left, right)[0]

    def predict(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        left, right = imagenet_normalize(left.float())[None], imagenet_normalize(right.float())[None]
        if auto:
            choice = choose_range(model, left, right, model.max_disp, window=window)
            chosen.update(max_disp=choice.max_disp, width=left.shape[-1])
            if ranges is not None:
                ranges.append(choice.max_disp)
        if variant.startswith("lr-feat-"):
            disp, disp_right = feature_views(model, left, right, chosen["max_disp"] or model.max_disp, window)
            return left_right_fill(disp, disp_right, float(variant.removeprefix("lr-feat-")))[0][0]
        if variant.startswith("lr-vol-"):
            max_disp = chosen["max_disp"]
            disp, _, disp_right = model.infer_views(left, right, return_confidence=False, estimator="dominant",
                                                    window=window, max_disp=max_disp)
            return left_right_fill(disp, disp_right, float(variant.removeprefix("lr-vol-")))[0][0]
        if variant.startswith("lr-"):
            _, mode, threshold = variant.split("-")
            scale, upsample = (0.5, "bilinear") if mode == "halfbl" else (0.5, "nearest") if mode == "half" else (1, "")
            disp_right = right_view_disparity(run, left, right, scale, upsample or "nearest")
            return left_right_fill(run(left, right), disp_right, float(threshold), mode == "occ")[0][0]
        if variant.startswith("conf-"):  # refill the pixels the network itself is least sure of
            disp, conf = run_both(left, right)
            return fill_from_background(disp, conf >= float(variant.removeprefix("conf-")))[0]
        if variant.startswith("occ1p-"):
            disp = run(left, right)
            hidden = single_pass_occlusions(disp, float(variant.removeprefix("occ1p-")))
            return fill_from_background(disp, ~hidden)[0]
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


class MemoInfer:
    """``model.infer`` that runs each (pair, options) once: the variants differ only after the network, so
    the left pass, the first look and each right view are shared by every variant that needs them."""

    def __init__(self, infer: Callable) -> None:
        self.infer, self.cache = infer, {}

    def __call__(self, left: torch.Tensor, right: torch.Tensor, **options):
        digest = hashlib.blake2b(left.cpu().numpy().tobytes() + right.cpu().numpy().tobytes(), digest_size=16)
        key = (digest.hexdigest(), tuple(left.shape), tuple(sorted(options.items())))
        if key not in self.cache:
            self.cache[key] = self.infer(left, right, **options)
        return self.cache[key]


def cut_shares(dataset: torch.utils.data.Dataset, ranges: list[int], max_disp: int) -> list[float]:
    """Per scene, the share of its evaluated ground-truth pixels at or above the range it was matched over."""
    shares = []
    for i, limit in enumerate(ranges):
        sample = dataset[i]
        gt, valid = sample["disp"], sample["valid"] & (sample["disp"] > 0) & (sample["disp"] < max_disp)
        shares.append(float(((gt >= limit) & valid).sum() / valid.sum().clamp(min=1)))
    return shares


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
    p.add_argument("--sets", nargs="+", default=DEFAULT_SETS, choices=list(SETS))
    p.add_argument("--scenes", type=int, default=None, help="scenes per set (default: each set's own, 12 or 50)")
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
        if args.scenes is not None:
            options = {**options, "size": args.scenes}
        dataset = create_dataset("synthetic", None, split="testing", **options)
        if label.endswith("-views"):
            dataset = HarderViews(dataset)
        model, _ = load_stereo_model(weights, "cpu", max_disp=max_disp)
        if not any(v.startswith("spp-") for v in args.variants):  # (the SPP swap changes the network itself)
            model.infer = MemoInfer(model.infer)
        for variant in args.variants:
            set_spp_pools(model, variant if variant.startswith("spp-") else "plain")
            ranges: list[int] = []
            predict = make_predict(model, variant, args.window, ranges)
            pm = evaluate(predict, dataset, max_disp=max_disp, progress=False)["pixel_mean"]
            rows[label, variant] = f"{pm['epe']:.3f} / {pm['d1']:.2f} %"
            record = {"set": label, "variant": variant, "epe": round(pm["epe"], 3), "d1": round(pm["d1"], 2)}
            if ranges:
                record.update(ranges=ranges, cut=[round(c, 5) for c in cut_shares(dataset, ranges, max_disp)])
            print(json.dumps(record), flush=True)
    print("\n| variant | " + " | ".join(args.sets) + " |\n|---|" + "---|" * len(args.sets))
    for variant in args.variants:
        print(f"| {variant} | " + " | ".join(rows[label, variant] for label in args.sets) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
