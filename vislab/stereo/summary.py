"""``vislab stereo summary``: PSMNet's layer-by-layer output shapes and parameter counts.

Shapes are traced with forward hooks on the ``meta`` device (no memory, no compute), so any input
size and disparity range prints instantly. Rows follow the lab's PSMNet tables (conv0_1 ... output_3).
"""

import argparse
from dataclasses import dataclass, field

import torch
from torch import nn

from vislab.core.errors import VislabError
from vislab.stereo.models import PSMNet, create_model


@dataclass
class _Row:
    name: str
    setting: str
    modules: list[nn.Module]
    take: str = "output"  # "output" or "input" of the hooked module
    hook: nn.Module | None = None  # the module whose output/input is shown (default: the last of modules)
    shape: tuple[int, ...] | None = field(default=None)


def _rows(model: PSMNet) -> list[_Row]:
    fe = model.feature_extraction
    rows = [
        _Row("conv0_1", "3x3, 32, stride 2", [fe.firstconv[0], fe.firstconv[1]]),
        _Row("conv0_2", "3x3, 32", [fe.firstconv[2], fe.firstconv[3]]),
        _Row("conv0_3", "3x3, 32", [fe.firstconv[4], fe.firstconv[5]]),
        _Row("conv1_x", "[3x3, 32; 3x3, 32] x 3", [fe.layer1]),
        _Row("conv2_x", "[3x3, 64; 3x3, 64] x 16, stride 2", [fe.layer2]),
        _Row("conv3_x", "[3x3, 128; 3x3, 128] x 3", [fe.layer3]),
        _Row("conv4_x", "[3x3, 128; 3x3, 128] x 3, dilation 2", [fe.layer4]),
    ]
    for i, pool in ((1, 64), (2, 32), (3, 16), (4, 8)):
        rows.append(_Row(f"branch_{i}", f"{pool}x{pool} avg pool, 1x1, 32 (then bilinear up)",
                         [getattr(fe, f"branch{i}")]))
    rows += [
        _Row("concat", "[conv2_16, conv4_3, branch_4..1]", [fe.lastconv], take="input"),
        _Row("fusion", "3x3, 128; 1x1, 32", [fe.lastconv]),
        # dres0 runs layer by layer (to free the volume early), so hook its first and last layers.
        _Row("cost volume", "concat left and shifted right", [model.dres0], take="input", hook=model.dres0[0]),
        _Row("3Dconv0", "3x3x3, 32; 3x3x3, 32", [model.dres0], hook=model.dres0[-1]),
    ]
    if model.name == "stackhourglass":
        rows.append(_Row("3Dconv1", "[3x3x3, 32; 3x3x3, 32] + skip", [model.dres1]))
        for k, hg in enumerate((model.dres2, model.dres3, model.dres4), start=1):
            rows += [
                _Row(f"3Dstack{k}_1", "3x3x3, 64, stride 2; 3x3x3, 64", [hg.conv1, hg.conv2]),
                _Row(f"3Dstack{k}_2", "3x3x3, 64, stride 2; 3x3x3, 64", [hg.conv3, hg.conv4]),
                _Row(f"3Dstack{k}_3", "deconv 3x3x3, 64 + skip", [hg.conv5]),
                _Row(f"3Dstack{k}_4", "deconv 3x3x3, 32 + 3Dconv1", [hg.conv6]),
            ]
        for k in (1, 2, 3):
            add = f" + output_{k - 1}" if k > 1 else ""
            rows.append(_Row(f"output_{k}", f"3x3x3, 32; 3x3x3, 1{add}", [getattr(model, f"classif{k}")]))
    else:
        for k in range(1, 5):
            rows.append(_Row(f"3Dconv{k}", "[3x3x3, 32; 3x3x3, 32] + skip", [getattr(model, f"dres{k}")]))
        rows.append(_Row("output", "3x3x3, 32; 3x3x3, 1", [model.classify]))
    return rows


def _describe(shape: tuple[int, ...], h: int, w: int, d: int, d_sym: str | None = None) -> str:
    """(B, C, H, W) or (B, C, D, H, W) -> 'D/4 x H/4 x W/4 x C (48x64x128x32)' in the lab's notation."""
    def frac(n: int, full: int, sym: str) -> str:
        if n == full:
            return sym
        ratio = full / n
        return f"1/{round(ratio)}{sym}" if abs(ratio - round(ratio)) < 1e-6 else f"{n}/{full}{sym}"

    dims = shape[2:]
    syms = [frac(dims[-2], h, "H"), frac(dims[-1], w, "W")]
    if len(dims) == 3:
        syms.insert(0, frac(dims[0], d, "D" if d_sym is None else d_sym))
    return f"{' x '.join(syms)} x {shape[1]}  ({'x'.join(map(str, (*dims, shape[1])))})"


def layer_table(name: str = "stackhourglass", height: int = 256, width: int = 512,
                max_disp: int = 192) -> tuple[list[tuple[str, str, str, int]], int]:
    """Rows (name, layer setting, output dimension, parameters) and the total parameter count."""
    if height < 1 or width < 1:
        raise VislabError(f"image size must be positive, got {height}x{width}")
    model = create_model(name, max_disp=max_disp)
    total = sum(p.numel() for p in model.parameters())
    model = model.to("meta").eval()
    rows = _rows(model)
    hooks = []
    for row in rows:
        last = row.hook if row.hook is not None else row.modules[-1]
        if row.take == "input":
            hooks.append(last.register_forward_pre_hook(lambda m, a, row=row: setattr(row, "shape", tuple(a[0].shape))))
        else:
            hooks.append(last.register_forward_hook(lambda m, a, o, row=row: setattr(row, "shape", tuple(o.shape))))
    # Trace with the padded size, which is what the network sees.
    hp, wp = height + (-height) % 16, width + (-width) % 16
    x = torch.zeros(1, 3, hp, wp, device="meta")
    with torch.no_grad():  # up to the matching cost; the regression rows below have no layers
        model._costs(x, x, all_costs=False)
    for h in hooks:
        h.remove()
    # For a max_disp that is not a multiple of 16 the volume holds D' > D disparities (see PSMNet).
    d_vol = 4 * model.volume_disparities
    d_sym = "D'" if d_vol != max_disp else None
    table = [("input", "", f"H x W x 3  ({hp}x{wp}x3)", 0)]
    for row in rows:
        params = 0 if row.take == "input" else sum(p.numel() for m in row.modules for p in m.parameters())
        if row.name.startswith("branch_"):  # shown after the bilinear upsampling, as in the lab's table
            up = (1, row.shape[1], hp // 4, wp // 4)
            out = f"{_describe(up, hp, wp, d_vol)}, pooled {row.shape[2]}x{row.shape[3]}"
        else:
            out = _describe(row.shape, hp, wp, d_vol, d_sym)
        table.append((row.name, row.setting, out, params))
    table += [
        ("upsample", "trilinear to D x H x W", f"D x H x W  ({max_disp}x{hp}x{wp})", 0),
        ("regression", "softmax over D, sum_d d * p(d)", f"H x W  ({hp}x{wp}), cropped to {height}x{width}", 0),
    ]
    return table, total


def run_summary(args: argparse.Namespace) -> int:
    """CLI handler: print the layer table for ``args.model`` at ``args.height`` x ``args.width``."""
    table, total = layer_table(args.model, args.height, args.width, args.max_disp)
    hp, wp = args.height + (-args.height) % 16, args.width + (-args.width) % 16
    pad_note = f" (padded to {hp}x{wp})" if (hp, wp) != (args.height, args.width) else ""
    print(f"PSMNet {args.model}: input {args.height}x{args.width}{pad_note}, max disparity D = {args.max_disp}")
    if args.max_disp % 16:
        d_vol = 16 * -(-args.max_disp // 16)
        print(f"the cost volume holds D' = {d_vol} disparities (the hourglass needs D'/4 divisible by 4); "
              f"the cost is cropped back to D/4 = {args.max_disp // 4} planes before upsampling")
    widths = [max(len(r[0]) for r in table), max(len(r[1]) for r in table), max(len(r[2]) for r in table)]
    header = f"{'name':<{widths[0]}}  {'layer setting':<{widths[1]}}  {'output dimension':<{widths[2]}}  {'params':>9}"
    print(header)
    print("-" * len(header))
    for name, setting, out, params in table:
        print(f"{name:<{widths[0]}}  {setting:<{widths[1]}}  {out:<{widths[2]}}  {params:>9,}")
    print("-" * len(header))
    print(f"total parameters: {total:,}")
    return 0
