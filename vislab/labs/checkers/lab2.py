"""Checkers for lab 2 (PSMNet): the feature extractor with spatial pyramid pooling, and the hourglass.

These two exercises have exact answers, so the checks compare numbers: vislab's reference weights are
loaded into the student's module by the official attribute names, both modules run on the same input in
eval mode, and the first sub-module whose output differs is reported (forward hooks on both models,
compared in the order the reference runs its layers). Outputs are compared through small fingerprints
(shape, per-channel and per-column sums, sum of squares), so no feature map has to be kept.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from vislab.labs.checkers.lab1 import _outcome_of_build, _subject
from vislab.labs.checkers.probe import (
    BN_TYPES,
    CONV_TYPES,
    TCONV_TYPES,
    describe_exception,
    is_not_attempted_error,
    layer_params,
    size_hint,
)
from vislab.labs.checkers.report import NOT_ATTEMPTED, Report, Row, fmt_shape
from vislab.stereo.models.blocks import init_official
from vislab.stereo.models.feature import ClippedAvgPool2d, FeatureExtraction
from vislab.stereo.models.hourglass import Hourglass

SPP_NAMES = ("firstconv", "layer1", "layer2", "layer3", "layer4", "branch1", "branch2", "branch3", "branch4",
             "lastconv")
HOURGLASS_NAMES = ("conv1", "conv2", "conv3", "conv4", "conv5", "conv6")
SPP_INPUT = (1, 3, 256, 288)  # 1/4 scale 64x72: the 64x64 window of branch1 fits (the official pool needs it)
HOURGLASS_PLANES = 8  # not PSMNet's 32, so that a hard-coded channel count shows up
HOURGLASS_INPUT = (1, HOURGLASS_PLANES, 8, 16, 20)
SEED = 0
_RTOL = 1e-4

SPP_ORDER_HINT = ("the concatenation is [layer2 output (64 ch), layer4 output (128 ch), branch4, branch3, branch2, "
                  "branch1] along the channels, each branch upsampled bilinearly (align_corners=False) to the "
                  "layer4 map size.")


# ---------------------------------------------------------------------------------------------- reference models


def _randomise_bn(model: nn.Module, gen: torch.Generator) -> None:
    """BatchNorm statistics and affine parameters away from the identity, so that BN mistakes change numbers."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, BN_TYPES):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)


@functools.cache
def _reference_feature_state() -> dict[str, torch.Tensor]:
    """The feature extractor's weights: the shipped pretrained model's if present, else a seeded random init."""
    model = FeatureExtraction()
    try:
        from vislab.stereo.pretrained import default_weights_path

        ckpt = torch.load(default_weights_path(), map_location="cpu", weights_only=True)
        prefix = "feature_extraction."
        state = {k[len(prefix):]: v.float() for k, v in ckpt["model"].items() if k.startswith(prefix)}
        model.load_state_dict(state)
    except Exception:  # noqa: BLE001 -- no shipped weights (fresh checkout): a seeded init is as exact a test
        gen = torch.Generator().manual_seed(SEED)
        torch.manual_seed(SEED)
        init_official(model)
        _randomise_bn(model, gen)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _spp_input() -> torch.Tensor:
    return torch.randn(*SPP_INPUT, generator=torch.Generator().manual_seed(SEED))


@functools.cache
def _reference_spp_run() -> tuple[Recorder, torch.Tensor]:
    """The reference's fingerprints and output on the fixed input, computed once per process (the slow part)."""
    model = FeatureExtraction()
    model.load_state_dict(_reference_feature_state())
    model.eval()
    x = _spp_input()
    rec, out, err = _run(model, lambda: model(x))
    assert err is None and isinstance(out, torch.Tensor)
    return rec, out


def _reference_hourglass() -> Hourglass:
    torch.manual_seed(SEED)
    model = Hourglass(HOURGLASS_PLANES)
    init_official(model)
    _randomise_bn(model, torch.Generator().manual_seed(SEED + 1))
    return model.eval()


# ---------------------------------------------------------------------------------------------- fingerprints


@dataclass
class Print:
    """A feature map summarised: shape, per-channel sums, per-column sums (last dim) and its norm.

    Per-channel and per-column sums see a swapped concatenation or a shifted border; three contiguous
    reductions keep the hooks cheap next to the convolutions they observe.
    """

    shape: tuple[int, ...]
    channels: torch.Tensor
    columns: torch.Tensor
    norm: float

    @classmethod
    def of(cls, t: torch.Tensor) -> Print:
        t = t.detach().float()
        if t.dim() < 2:
            t = t.reshape(1, 1, -1)
        # Sums as matrix products: much faster on CPU than sum() over a non-contiguous or short dimension.
        flat = t.reshape(t.shape[0] * t.shape[1], -1)
        channels = (flat @ torch.ones(flat.shape[1])).reshape(t.shape[0], t.shape[1]).sum(dim=0)
        rows = t.reshape(-1, t.shape[-1])
        columns = torch.ones(rows.shape[0]) @ rows
        return cls(tuple(t.shape), channels, columns, float(torch.linalg.vector_norm(t)))

    def differs(self, other: Print) -> bool:
        if self.shape != other.shape:
            return True
        if abs(self.norm - other.norm) > _RTOL * (other.norm + 1e-6):
            return True
        # A sum of L values is bounded by sqrt(L) times their norm; legitimate differences (thread counts,
        # kernel choice) are rounding, far below 1e-5 of that bound, while a real mistake is far above it.
        numel = max(1, int(torch.tensor(self.shape).prod()))
        for a, b in ((self.channels, other.channels), (self.columns, other.columns)):
            per_entry = numel / max(1, b.numel())
            if float((a - b).abs().max()) > 1e-5 * (other.norm + 1e-6) * per_entry ** 0.5:
                return True
        return False


@dataclass
class Seen:
    """One call of one sub-module: its input and output fingerprints."""

    name: str
    index: int
    module: nn.Module
    in_shape: tuple[int, ...] | None = None
    inp: Print | None = None
    out: Print | None = None


class Recorder:
    """Forward hooks on every named sub-module, recording fingerprints in the order the calls finish."""

    def __init__(self, model: nn.Module) -> None:
        self.done: list[Seen] = []
        self.started: dict[tuple[str, int], Seen] = {}
        self._open: list[Seen] = []
        self._counts: dict[str, int] = {}
        self._handles = []
        for name, module in model.named_modules():
            if name:
                self._handles.append(module.register_forward_pre_hook(self._pre(name)))
                self._handles.append(module.register_forward_hook(self._post(name)))

    def _pre(self, name: str) -> Callable:
        def hook(module: nn.Module, args: tuple) -> None:
            index = self._counts.get(name, 0)
            self._counts[name] = index + 1
            x = args[0] if args and isinstance(args[0], torch.Tensor) else None
            # Inputs are summarised for the top-level layers only: inside a Sequential a layer's input is
            # its predecessor's output, so functional steps (ReLU, +, cat) can only sit between top-level layers.
            top = "." not in name and x is not None
            seen = Seen(name, index, module, tuple(x.shape) if x is not None else None,
                        Print.of(x) if top else None)
            self.started[(name, index)] = seen
            self._open.append(seen)
        return hook

    def _post(self, name: str) -> Callable:
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            for i in range(len(self._open) - 1, -1, -1):
                if self._open[i].name == name:
                    seen = self._open.pop(i)
                    y = output[0] if isinstance(output, (tuple, list)) and output else output
                    seen.out = Print.of(y) if isinstance(y, torch.Tensor) else None
                    self.done.append(seen)
                    return
        return hook

    def failing(self) -> Seen | None:
        """The innermost module that started and did not finish (where an exception came from)."""
        return self._open[-1] if self._open else None

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def _run(model: nn.Module, fn: Callable[[], object]) -> tuple[Recorder, object, BaseException | None]:
    rec = Recorder(model)
    try:
        with torch.no_grad():
            out = fn()
        err = None
    except Exception as exc:  # noqa: BLE001 -- a student's error becomes feedback
        out, err = None, exc
    finally:
        rec.close()
    return rec, out, err


# ---------------------------------------------------------------------------------------------- diagnosis


def _ref_params(module: nn.Module, dim: int) -> dict[str, int] | None:
    if isinstance(module, ClippedAvgPool2d):
        return {"kernel": module.kernel_size, "padding": 0, "stride": module.kernel_size}
    params = layer_params(module, dim)
    if params is not None and params.get("dilation", 1) == 1:
        params.pop("dilation")
    return params


def _spatial_hint(name: str, ref: Seen, mine: Seen) -> str:
    """Why the student's layer ``name`` gives another shape than the reference's, from the size formula."""
    want, got = ref.out.shape, mine.out.shape
    if len(want) != len(got):
        return f"{name} gives a {len(got)}-D output; the reference {len(want)}-D."
    if want[1] != got[1]:
        return f"{name} outputs {got[1]} channels; the reference {want[1]}."
    if mine.in_shape is not None and len(mine.in_shape) == len(want):
        for dim in range(2, len(want)):
            if want[dim] != got[dim]:
                return f"{name}: " + size_hint(mine.module, mine.in_shape[dim], want[dim], got[dim],
                                               _ref_params(ref.module, dim - 2), dim - 2)
    return f"{name} gives {fmt_shape(got)}; the reference {fmt_shape(want)}."


def _top(name: str) -> str:
    return name.split(".", 1)[0]


def _relu_count(module: nn.Module) -> int:
    return sum(1 for m in module.modules() if isinstance(m, nn.ReLU))


def _compare(ref: Recorder, mine: Recorder, report: Report, mode: str, between: Callable[[str, str], str],
             stopped: bool = False) -> bool:
    """Report the first sub-module (in the reference's order) whose output differs; False if one does.

    ``stopped``: the student's pass raised, so layers after the error did not run; the caller reports the
    error itself when everything that did run matches.
    """
    mine_by_key = {(s.name, s.index): s for s in mine.done}
    previous_top = ""
    for r in ref.done:
        m = mine_by_key.get((r.name, r.index))
        if m is None:
            if stopped and (r.name, r.index) not in mine.started:
                return True
            if r.index == 0 and (r.name, 0) not in mine.started and _top(r.name) == r.name:
                report.rows.append(Row(r.name, fmt_shape(r.out.shape if r.out else None), "not run", ok=False))
                report.fail(f"{r.name} never runs{mode}.", f"forward must call {r.name}.")
                return False
            continue
        if r.out is None or m.out is None or not m.out.differs(r.out):
            if r.name == _top(r.name):  # the table lists the top-level layers only, to stay short
                report.rows.append(Row(r.name, fmt_shape(r.out.shape if r.out else None),
                                       fmt_shape(m.out.shape if m.out else None)))
                previous_top = r.name
            continue
        same_shape = m.out.shape == r.out.shape
        report.rows.append(Row(r.name, fmt_shape(r.out.shape),
                               fmt_shape(m.out.shape) + (" other values" if same_shape else ""), ok=False))
        if not same_shape:
            report.fail(f"{r.name} gives {fmt_shape(m.out.shape)}, the reference {fmt_shape(r.out.shape)}{mode}.",
                        _spatial_hint(r.name, r, m))
            return False
        children = [c for c in r.module.children()]
        if children:
            hint = (f"each layer inside {r.name} gives the reference's numbers, but {r.name}'s output differs: "
                    "a step between or after its layers is missing or extra")
            if _relu_count(r.module) != _relu_count(m.module):
                hint += (f" (the reference's {r.name} has {_relu_count(r.module)} ReLU, yours "
                         f"{_relu_count(m.module)})")
            report.fail(f"{r.name}'s output differs from the reference{mode}.", hint + ".")
            return False
        top_ref, top_mine = ref.started.get((_top(r.name), 0)), mine.started.get((_top(r.name), 0))
        if top_ref is not None and top_mine is not None and top_ref.inp is not None and top_mine.inp is not None \
                and top_mine.inp.differs(top_ref.inp):
            report.fail(f"{r.name} receives a different input than the reference{mode}, although every layer "
                        "before it gives the reference's numbers.", between(previous_top, _top(r.name)))
            return False
        ref_repr, my_repr = r.module.extra_repr(), m.module.extra_repr()
        detail = (f"yours is {type(m.module).__name__}({my_repr}), the reference {type(r.module).__name__}"
                  f"({ref_repr})") if (ref_repr != my_repr or type(r.module) is not type(m.module)) else \
            "its settings look the same; check what forward does around it"
        report.fail(f"{r.name} gives other numbers than the reference on the same input{mode}.", detail + ".")
        return False
    return True


def _load_reference(report: Report, model: nn.Module, state: dict[str, torch.Tensor], what: str) -> bool:
    """Load ``state`` by name; a clear failure naming missing / unexpected / misshapen keys otherwise."""
    mine = model.state_dict()

    def keep(key: str) -> bool:
        return not key.endswith("num_batches_tracked")

    missing = [k for k in state if keep(k) and k not in mine]
    unexpected = [k for k in mine if keep(k) and k not in state]
    wrong = [f"{k} is {tuple(mine[k].shape)}, the reference {tuple(v.shape)}" for k, v in state.items()
             if k in mine and tuple(mine[k].shape) != tuple(v.shape)]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}" + (f" (+{len(missing) - 3})" if len(missing) > 3 else ""))
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}"
                         + (f" (+{len(unexpected) - 3})" if len(unexpected) > 3 else ""))
        report.fail(f"the {what} weights do not load by the official names: {'; '.join(parts)}.",
                    "keep the official layout: the attribute names and the nesting of the Sequentials "
                    "(convbn(...) is a Sequential of a conv and a BatchNorm) decide the weight names.")
        return False
    if wrong:
        report.fail(f"a weight has the wrong shape: {wrong[0]}" + (f" (+{len(wrong) - 1} more)." if len(wrong) > 1
                                                                   else "."),
                    "check the channel counts and kernel size of that layer against the lab's table.")
        return False
    try:
        model.load_state_dict({k: v for k, v in state.items() if k in mine}, strict=False)
    except Exception as exc:  # noqa: BLE001
        report.fail(f"loading the reference weights failed: {describe_exception(exc)}")
        return False
    return True


def _error_report(report: Report, rec: Recorder, exc: BaseException, mode: str) -> Report:
    if is_not_attempted_error(exc):
        return report.fail(f"forward raises {describe_exception(exc)}: the exercise is not done yet.",
                           status=NOT_ATTEMPTED)
    where = rec.failing()
    text = str(exc)
    if isinstance(exc, (UnboundLocalError, NameError)):
        hint = ("a variable is assigned only inside an `if`, and this call takes the other way: is an `else:` "
                "branch missing?")
    elif where is not None and isinstance(where.module, CONV_TYPES + TCONV_TYPES) and where.in_shape is not None \
            and where.in_shape[1] != where.module.in_channels:
        hint = (f"{where.name} expects {where.module.in_channels} input channels but receives "
                f"{where.in_shape[1]}.")
    elif isinstance(exc, TypeError) and "positional argument" in text and where is None:
        hint = "the checker calls forward(x, presqu, postsqu), as PSMNet does: check forward's arguments."
    elif "must match the size" in text or "Sizes of tensors must match" in text:
        hint = "two tensors that forward adds or concatenates have different shapes: check strides and padding."
    else:
        hint = f"{where.name} ({type(where.module).__name__}) failed." if where is not None else \
            "fix the error in forward."
    return report.fail(f"forward{mode} raised {describe_exception(exc)}", hint)


# ---------------------------------------------------------------------------------------------- SPP


def check_spp_report(cls: object) -> Report:
    """The checks of :func:`vislab.labs.checkers.check_spp`, as a report."""
    report = Report("check_spp", _subject(cls), expected_label="reference")
    torch.manual_seed(SEED)
    model = _outcome_of_build(report, cls, (), f"{_subject(cls)}()", SPP_NAMES)
    if model is None:
        return report
    absent = [n for n in SPP_NAMES if not isinstance(getattr(model, n, None), nn.Module)]
    if absent:
        return report.fail(f"no sub-module named {', '.join(absent)}.",
                           "the checker loads the reference weights by the official names: firstconv, "
                           "layer1..layer4, branch1..branch4, lastconv.")
    if not _load_reference(report, model, _reference_feature_state(), "feature-extractor"):
        return report
    model.eval()
    x = _spp_input()
    ref_rec, ref_out = _reference_spp_run()
    my_rec, my_out, err = _run(model, lambda: model(x.clone()))
    mode = f" (input {fmt_shape(SPP_INPUT)})"

    def between(before: str, layer: str) -> str:
        if layer == "lastconv":
            return f"{layer}'s input is the concatenation: {SPP_ORDER_HINT}"
        return f"check what forward does between {before or 'the input'} and {layer}."

    if not _compare(ref_rec, my_rec, report, mode, between, stopped=err is not None):
        return report
    if err is not None:
        return _error_report(report, my_rec, err, mode)
    want = tuple(ref_out.shape)
    if not isinstance(my_out, torch.Tensor) or tuple(my_out.shape) != want:
        got = fmt_shape(tuple(my_out.shape)) if isinstance(my_out, torch.Tensor) else type(my_out).__name__
        return report.fail(f"forward returns {got}; expected {fmt_shape(want)} (B, 32, H/4, W/4).",
                           "return lastconv's output.")
    if not torch.allclose(my_out, ref_out, rtol=_RTOL, atol=_RTOL * float(ref_out.abs().max())):
        return report.fail("every layer matches the reference, but forward returns other numbers.",
                           "return lastconv's output, unchanged.")
    report.rows = []
    report.notes = [f"the reference weights load by the official names ({len(_reference_feature_state())} tensors)",
                    f"{fmt_shape(SPP_INPUT)} -> {fmt_shape(want)}, the reference's numbers at every layer "
                    "(branch1..4 pools 64/32/16/8, lastconv 320 -> 128 -> 32)"]
    return report


# ---------------------------------------------------------------------------------------------- hourglass


def _hourglass_between(mode: str) -> Callable[[str, str], str]:
    def between(before: str, layer: str) -> str:
        what = {"conv3": "pre (the ReLU, and adding postsqu when it is given)",
                "conv6": "post (adding presqu when it is given, else pre; then the ReLU)"}.get(layer, "the tensors")
        return f"check what forward does between {before or 'the input'} and {layer}: {what}."
    return between


def check_hourglass_report(cls: object) -> Report:
    """The checks of :func:`vislab.labs.checkers.check_hourglass`, as a report."""
    report = Report("check_hourglass", _subject(cls), expected_label="reference")
    call = f"{_subject(cls)}({HOURGLASS_PLANES})"
    torch.manual_seed(SEED)
    model = _outcome_of_build(report, cls, (HOURGLASS_PLANES,), call, HOURGLASS_NAMES)
    if model is None:
        return report
    absent = [n for n in HOURGLASS_NAMES if not isinstance(getattr(model, n, None), nn.Module)]
    if absent:
        return report.fail(f"no sub-module named {', '.join(absent)}.",
                           "the checker loads the reference weights by the official names conv1..conv6.")
    reference = _reference_hourglass()
    if not _load_reference(report, model, reference.state_dict(), "hourglass"):
        return report
    model.eval()
    x = torch.randn(*HOURGLASS_INPUT, generator=torch.Generator().manual_seed(SEED))
    with torch.no_grad():
        out1, pre1, post1 = reference(x, None, None)
    # The ways PSMNet calls an hourglass: dres2(x, None, None), then dres3(out1, pre1, post1) and
    # dres4(out2, pre1, post2) -- presqu and postsqu both given, and different tensors.
    modes = [((x, None, None), " (called as forward(x, presqu=None, postsqu=None), as dres2 is)"),
             ((out1, pre1, post1), " (called as forward(out1, presqu=pre1, postsqu=post1), as dres3/dres4 are)")]
    for args, mode in modes:
        ref_rec, ref_out, _ = _run(reference, lambda a=args: reference(*[t.clone() if t is not None else None
                                                                          for t in a]))
        my_rec, my_out, err = _run(model, lambda a=args: model(*[t.clone() if t is not None else None for t in a]))
        report.rows = []
        if not _compare(ref_rec, my_rec, report, mode, _hourglass_between(mode), stopped=err is not None):
            return report
        if err is not None:
            return _error_report(report, my_rec, err, mode)
        if not isinstance(my_out, (tuple, list)) or len(my_out) != 3:
            return report.fail(f"{mode.strip()} returns {type(my_out).__name__}, not (out, pre, post).",
                               "forward returns the three tensors out, pre, post.")
        for label, mine, ref in zip(("out", "pre", "post"), my_out, ref_out, strict=True):
            if not isinstance(mine, torch.Tensor) or mine.shape != ref.shape or not torch.allclose(
                    mine, ref, rtol=_RTOL, atol=_RTOL * float(ref.abs().max())):
                got = fmt_shape(tuple(mine.shape)) if isinstance(mine, torch.Tensor) else type(mine).__name__
                report.rows.append(Row(f"returned {label}", fmt_shape(tuple(ref.shape)), got, ok=False))
                return report.fail(f"the returned {label} differs from the reference{mode}.",
                                   {"out": "out is conv6's output.",
                                    "pre": "pre is conv2's output, plus postsqu when given, after a ReLU.",
                                    "post": "post is conv5's output plus presqu (or pre when presqu is None), "
                                            "after a ReLU."}[label])
    model.train()
    try:
        outs = model(x.clone().requires_grad_(), None, None)
        sum(o.float().square().mean() for o in outs).backward()
        missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    except Exception as exc:  # noqa: BLE001
        return report.fail(f"the backward pass failed: {describe_exception(exc)}",
                           "an in-place operation on a tensor autograd needs? Use inplace only on fresh sums.")
    finally:
        model.eval()
    if missing:
        return report.fail("not every parameter receives a gradient.", f"{missing[0]} gets no gradient.")
    report.rows = []
    report.notes = ["the reference weights load by the official names conv1..conv6",
                    f"{fmt_shape(HOURGLASS_INPUT)}: the reference's numbers at every layer for presqu/postsqu None "
                    "(dres2) and given (dres3/dres4), out/pre/post returned",
                    "every parameter receives a gradient"]
    return report
