"""Checkers for lab 1 (MNIST): MLP, SimpleCNN, SimpleVGG, ResBlock, SimpleResNet.

Each checker compares the student's forward pass, layer by layer, with the lab's table of output shapes,
then tests behaviour the shapes cannot show: log-probabilities out, logits not clipped by a ReLU, ReLUs
where the lab has them, dropout, parameter counts, gradients reaching every parameter, and for the
residual block the shortcut (identity when the channels match, a projection of its own otherwise).

Layers are matched by their order in the forward pass, not by attribute name, so that both the lab's
naming (``Linear1``, ``layer1``) and vislab's reference classes (``linear1``, ``blocks.0``) are accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vislab.labs.checkers.probe import (
    BN_TYPES,
    GLOBAL_POOL_TYPES,
    POOL_TYPES,
    Call,
    Trace,
    build,
    build_error_hint,
    describe_exception,
    error_hint,
    is_not_attempted_error,
    none_attributes,
    not_implemented_attributes,
    run_traced,
    shape_hint,
    size_hint,
)
from vislab.labs.checkers.report import NOT_ATTEMPTED, Report, Row, fmt_shape

BATCH = 2
SEED = 0


@dataclass(frozen=True)
class Layer:
    """One row of a lab table: kind, output shape without the batch, the reference's kernel/padding/stride.

    ``params`` is the reference layer's parameter count (``weights``: only conv/linear weights are counted,
    because the lab leaves bias and BatchNorm to the student); ``relu_in``: a ReLU precedes this layer in
    the lab, so its input must have no negative values.
    """

    kind: str
    shape: tuple[int, ...]
    ref: dict[str, int] | None = None
    params: int | None = None
    relu_in: bool = False


def _conv(cin: int, cout: int, size: int, k: int, p: int = 0, relu_in: bool = False) -> Layer:
    return Layer("conv", (cout, size, size), {"kernel": k, "padding": p, "stride": 1}, cin * cout * k * k + cout,
                 relu_in)


def _pool(ch: int, size: int) -> Layer:
    return Layer("pool", (ch, size, size), {"kernel": 2, "padding": 0, "stride": 2})


def _linear(fin: int, fout: int, relu_in: bool = True) -> Layer:
    return Layer("linear", (fout,), None, fin * fout + fout, relu_in)


MLP_TABLE = (_linear(784, 50, relu_in=False), _linear(50, 50), _linear(50, 10))

CNN_TABLE = (
    _conv(1, 20, 26, 3), _pool(20, 13),
    _conv(20, 50, 11, 3, relu_in=True), _pool(50, 5),
    _conv(50, 20, 3, 3, relu_in=True),
    _linear(180, 100), _linear(100, 10),
)

# The lab's SimpleVGG: padding 2 grows the map at conv1..conv3 (28->30, 15->17, 8->10), padding 1 keeps it.
# Inside a two-conv stage the lab puts the ReLU after the second conv only, so the second conv's input
# may be negative (relu_in False); a ReLU between them is accepted too.
VGG_TABLE = (
    _conv(1, 64, 30, 3, 2), _pool(64, 15),
    _conv(64, 128, 17, 3, 2, relu_in=True), _pool(128, 8),
    _conv(128, 256, 10, 3, 2, relu_in=True), _conv(256, 256, 10, 3, 1), _pool(256, 5),
    _conv(256, 512, 5, 3, 1, relu_in=True), _conv(512, 512, 5, 3, 1), _pool(512, 2),
    _conv(512, 512, 2, 3, 1, relu_in=True), _conv(512, 512, 2, 3, 1), _pool(512, 1),
    _linear(512, 100), _linear(100, 100), _linear(100, 10),
)


def _block_weights(cin: int, cout: int) -> int:
    """Conv weights of the lab's basic block: two 3x3 convs, plus a 1x1 projection when the channels change."""
    return 9 * cin * cout + 9 * cout * cout + (cin * cout if cin != cout else 0)


RESNET_TABLE = (
    Layer("conv", (64, 14, 14), {"kernel": 7, "padding": 3, "stride": 2}, 49 * 64),
    Layer("pool", (64, 7, 7), {"kernel": 3, "padding": 1, "stride": 2}),
    Layer("block", (64, 7, 7), None, _block_weights(64, 64), relu_in=True),
    Layer("block", (128, 7, 7), None, _block_weights(64, 128), relu_in=True),
    Layer("block", (256, 7, 7), None, _block_weights(128, 256), relu_in=True),
    Layer("block", (512, 7, 7), None, _block_weights(256, 512), relu_in=True),
    Layer("pool", (512, 1, 1)),
    Layer("linear", (10,), None, 512 * 10, relu_in=True),
)

_KIND_WORD = {"conv": "a convolution", "pool": "a pooling layer", "linear": "a Linear layer",
              "block": "a residual block"}


# ---------------------------------------------------------------------------------------------- helpers


def _is_user_block(module: nn.Module) -> bool:
    """A module of the student's own class (a residual block), as opposed to a torch.nn layer or container."""
    return not type(module).__module__.startswith("torch.")


def _kind(module: nn.Module, blocks: bool) -> str | None:
    if blocks and _is_user_block(module):
        return "block"
    if isinstance(module, nn.Conv2d):
        return "conv"
    if isinstance(module, POOL_TYPES + GLOBAL_POOL_TYPES):
        return "pool"
    if isinstance(module, nn.Linear):
        return "linear"
    return None


def _rows(trace: Trace, blocks: bool) -> list[Call]:
    """The calls that make table rows, in forward order (with ``blocks``, a block's insides are hidden)."""
    rows: list[Call] = []
    block_names: list[str] = []
    for call in trace.calls:
        if any(call.name.startswith(b + ".") for b in block_names):
            continue
        kind = _kind(call.module, blocks)
        if kind == "block":
            block_names.append(call.name)
        if kind is not None:
            rows.append(call)
    return rows


def _align(table: tuple[Layer, ...], rows: list[Call], blocks: bool) -> tuple[list[tuple[Layer, Call | None]],
                                                                            list[Call]]:
    """Pair the table's layers with the student's rows; a pooling done functionally (F.max_pool2d) is skipped."""
    pairs: list[tuple[Layer, Call | None]] = []
    j = 0
    for i, layer in enumerate(table):
        act = rows[j] if j < len(rows) else None
        if layer.kind == "pool" and act is not None and _kind(act.module, blocks) != "pool" and i + 1 < len(table):
            nxt = table[i + 1]
            if _kind(act.module, blocks) == nxt.kind and act.out_shape is not None and act.out_shape[1:] == nxt.shape:
                continue
        pairs.append((layer, act))
        j += 1
    return pairs, rows[j:]


def _param_count(module: nn.Module, weights_only: bool) -> int:
    if not weights_only:
        return sum(p.numel() for p in module.parameters())
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def _inner_size_hint(trace: Trace, block: Call) -> str:
    """For a block whose map size changed: the inner conv that changes it, explained with the formula."""
    for call in trace.calls:
        if (call.name.startswith(block.name + ".") and isinstance(call.module, nn.Conv2d) and call.done
                and call.in_shape is not None and call.out_shape is not None
                and call.in_shape[2:] != call.out_shape[2:]):
            k = call.module.kernel_size[0]
            for dim in (0, 1):
                if call.in_shape[2 + dim] != call.out_shape[2 + dim]:
                    ref = {"kernel": k, "padding": (k - 1) // 2, "stride": 1}
                    return (f"{call.name} changes the map size ({call.in_shape[2]}x{call.in_shape[3]} -> "
                            f"{call.out_shape[2]}x{call.out_shape[3]}); a residual block keeps H x W: "
                            + size_hint(call.module, call.in_shape[2 + dim], call.in_shape[2 + dim],
                                        call.out_shape[2 + dim], ref, dim))
    return ""


def _reused_conv(trace: Trace) -> Call | None:
    """A convolution called more than once in one forward pass (the lab answer's shortcut reuses conv1)."""
    for call in trace.calls:
        if isinstance(call.module, nn.Conv2d) and trace.count(call.module) > 1:
            return call
    return None


REUSE_HINT = ("{name} runs twice in one forward pass: the shortcut reuses the residual branch's convolution. "
              "The shortcut needs a layer of its own: the identity when the channels match, a separate 1x1 "
              "projection (conv + BatchNorm) when they change.")


def _compare_table(report: Report, table: tuple[Layer, ...], trace: Trace, batch: int, blocks: bool) -> bool:
    """Fill the report's table up to the first difference; False (report failed) on a difference or error."""
    pairs, extra = _align(table, _rows(trace, blocks), blocks)
    for layer, call in pairs:
        want = (batch, *layer.shape)
        if call is None:
            report.rows.append(Row("(missing)", fmt_shape(want), "-", ok=False))
            if trace.error is not None:
                report.fail("the forward pass stopped with an error.", error_hint(trace))
            else:
                report.fail(f"the forward pass ran fewer layers than the lab's table: {_KIND_WORD[layer.kind]} "
                            f"with output {fmt_shape(want)} is missing.",
                            "compare your layers and forward with the lab's table, in order.")
            return False
        kind = _kind(call.module, blocks)
        actual = fmt_shape(call.out_shape) if call.done else "error"
        if kind != layer.kind:
            report.rows.append(Row(call.name, fmt_shape(want), f"{actual} [{type(call.module).__name__}]", ok=False))
            report.fail(f"{call.name} is {_KIND_WORD.get(kind or '', type(call.module).__name__)}, where the lab's "
                        f"table has {_KIND_WORD[layer.kind]}.",
                        "a layer is missing, extra, or out of order in forward; compare with the lab's table.")
            return False
        if not call.done:
            report.rows.append(Row(call.name, fmt_shape(want), "error", ok=False))
            hint = ""
            if kind == "block":
                # Inside a block the root cause is usually a conv that changes the map, or a missing projection.
                hint = _inner_size_hint(trace, call)
                if not hint and trace.error is not None and "must match the size of tensor" in str(trace.error):
                    hint = (f"adding {call.name}'s shortcut failed: when the channels change, the shortcut needs a "
                            "projection of its own (a 1x1 conv + BatchNorm).")
            report.fail("the forward pass stopped with an error.", hint or error_hint(trace))
            return False
        if call.out_shape != want:
            report.rows.append(Row(call.name, fmt_shape(want), actual, ok=False))
            hint = shape_hint(call, want, layer.ref)
            if kind == "block" and call.out_shape is not None and call.out_shape[2:] != want[2:]:
                hint = _inner_size_hint(trace, call) or hint
            report.fail(f"{call.name} gives {actual}, the lab's table {fmt_shape(want)}.", hint)
            return False
        report.rows.append(Row(call.name, fmt_shape(want), actual))
    if trace.error is not None:
        report.fail("the forward pass stopped with an error after the lab's last layer.", error_hint(trace))
        return False
    if extra:
        report.fail(f"forward runs layers beyond the lab's table, starting with {extra[0].name} "
                    f"({type(extra[0].module).__name__}).", "remove the extra layer, or check the order.")
        return False
    return True


def _logits_check(model: nn.Module, x: torch.Tensor, last: Call) -> str:
    """'' if the output is log_softmax over the classes of the last Linear's output, else the cause.

    The last Linear's output is replaced (by a forward hook) with logits that include negative values:
    a ReLU on the logits (the lab's VGG answer) would turn them into 0 and show up here.
    """
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(x.shape[0], 10, generator=gen) * 3
    logits[:, 0] = -abs(logits[:, 0]) - 1  # at least one clearly negative logit per sample
    handle = last.module.register_forward_hook(lambda m, a, out: logits.clone())
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:  # noqa: BLE001
        return f"the forward pass failed when the logits were probed: {describe_exception(exc)}"
    finally:
        handle.remove()
    if not isinstance(out, torch.Tensor) or out.shape != logits.shape:
        return ""  # a wrong output shape is reported by the table
    out = out.float()

    def close(a: torch.Tensor) -> bool:
        return torch.allclose(out, a, atol=1e-5, rtol=1e-5)

    if close(F.log_softmax(logits, dim=1)):
        return ""
    if close(F.log_softmax(F.relu(logits), dim=1)):
        return (f"an activation (ReLU) is applied to {last.name}'s output before log_softmax: negative logits "
                "are clipped to 0, so the network cannot push a wrong class down. The last Linear layer's "
                "output goes straight into log_softmax.")
    if close(logits):
        return "the output is the raw logits: end forward with log_softmax over the classes (dim=1)."
    if close(F.softmax(logits, dim=1)):
        return ("the output is softmax probabilities; the lab trains with nll_loss, which expects "
                "log-probabilities (log_softmax).")
    if close(F.log_softmax(logits, dim=0)):
        return "log_softmax normalises over the batch (dim=0); the classes are dim=1."
    sums = out.exp().sum(dim=1)
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
        return (f"the output is not log-probabilities: exp(output) sums to {float(sums[0]):.3g} per sample, "
                "not 1. End forward with log_softmax over the classes (dim=1).")
    return (f"the output is not log_softmax of {last.name}'s output: something after the last Linear layer "
            "changes the logits.")


def _missing_grads(model: nn.Module, x: torch.Tensor) -> tuple[list[str] | str, torch.Tensor | None]:
    """Names of parameters without a gradient after a training-mode backward (or the error), and the output."""
    model.train()
    model.zero_grad(set_to_none=True)
    try:
        out = model(x)
        # Any loss that depends on every output works; this one is nll_loss-like on the student's outputs.
        loss = out.float().logsumexp(dim=1).mean() - out.float()[:, 0].mean()
        loss.backward()
    except Exception as exc:  # noqa: BLE001
        return f"the backward pass failed: {describe_exception(exc)}", None
    finally:
        model.eval()
    return [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None], out.detach()


def _grad_hint(names: list[str]) -> str:
    module = names[0].rsplit(".", 1)[0]
    more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
    return (f"{names[0]}{more} gets no gradient: {module} is defined in __init__ but never used in forward "
            "(or its output is detached).")


def _outcome_of_build(report: Report, cls: object, args: tuple, call: str,
                      required: tuple[str, ...] = ()) -> nn.Module | None:
    """Build the class; on failure fill the report (not attempted / failed) and return None."""
    model, exc = build(cls, args)
    if exc is not None:
        if is_not_attempted_error(exc):
            report.fail(f"{call} raises {describe_exception(exc)}: the exercise is not done yet.",
                        status=NOT_ATTEMPTED)
        else:
            report.fail(f"{call} failed: {describe_exception(exc)}", build_error_hint(cls, call, exc))
        return None
    assert model is not None
    parts = []
    for what, names in (("NotImplemented", not_implemented_attributes(model)),
                        ("None", none_attributes(model, required))):
        if names:
            parts.append(f"still {what}: " + ", ".join(names[:6])
                         + (f" and {len(names) - 6} more" if len(names) > 6 else ""))
    if parts:
        report.fail("; ".join(parts) + ".", status=NOT_ATTEMPTED)
        return None
    # The checks run on the CPU, also for a class that moves itself to a GPU in __init__.
    return model.cpu().eval()


def _forward_not_attempted(report: Report, trace: Trace) -> bool:
    if trace.error is not None and is_not_attempted_error(trace.error):
        report.fail(f"forward raises {describe_exception(trace.error)}: the exercise is not done yet.",
                    status=NOT_ATTEMPTED)
        return True
    return False


def _subject(cls: object) -> str:
    return getattr(cls, "__name__", type(cls).__name__)


# ---------------------------------------------------------------------------------------------- classifiers


def _check_classifier(name: str, cls: object, table: tuple[Layer, ...], *, blocks: bool = False,
                      dropout: bool = False, weights_only: bool = False) -> Report:
    """The common checks of the four MNIST classifiers; returns the filled report."""
    report = Report(name, _subject(cls))
    torch.manual_seed(SEED)
    model = _outcome_of_build(report, cls, (), f"{_subject(cls)}()")
    if model is None:
        return report
    x = torch.randn(BATCH, 1, 28, 28, generator=torch.Generator().manual_seed(SEED))
    with torch.no_grad():
        trace = run_traced(model, lambda: model(x))
    if _forward_not_attempted(report, trace):
        return report
    if not _compare_table(report, table, trace, BATCH, blocks):
        return report
    report.rows = []  # the shapes all match: later failures are about behaviour, the table would only be noise
    out = trace.output
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (BATCH, 10):
        got = fmt_shape(tuple(out.shape)) if isinstance(out, torch.Tensor) else type(out).__name__
        return report.fail(f"forward returns {got}, expected ({BATCH}, 10).",
                           "return the (batch, 10) log-probabilities of the last layer.")
    pairs = [(layer, c) for layer, c in _align(table, _rows(trace, blocks), blocks)[0] if c is not None]
    layers, rows = [layer for layer, _ in pairs], [c for _, c in pairs]
    reused = _reused_conv(trace)
    if reused is not None:
        return report.fail(f"{reused.name} is called {trace.count(reused.module)} times per forward pass.",
                           REUSE_HINT.format(name=reused.name))
    for layer, call in zip(layers, rows, strict=True):
        if layer.relu_in and call.in_min is not None and call.in_min < 0:
            return report.fail(f"{call.name} receives negative values (min {call.in_min:.3g}).",
                               f"a ReLU is missing before {call.name} (after the layer that feeds it).")
    problem = _logits_check(model, x, rows[-1])
    if problem:
        return report.fail("the output is not log-probabilities of unclipped logits.", problem)
    with torch.no_grad():
        same = torch.equal(model(x), out)
    if not same:
        return report.fail("in eval mode two forward passes on the same input differ.",
                           "dropout must be off in eval mode: use nn.Dropout, or F.dropout(..., "
                           "training=self.training).")
    for layer, call in zip(layers, rows, strict=True):
        if layer.params is None:
            continue
        n = _param_count(call.module, weights_only)
        if n != layer.params:
            what = "conv/linear weights" if weights_only else "parameters"
            return report.fail(f"{call.name} has {n:,} {what}, the lab's layer {layer.params:,}.",
                               _param_hint(call.module, layer, weights_only))
    missing, train_out = _missing_grads(model, x)
    if isinstance(missing, str):
        return report.fail("the backward pass failed.", missing)
    if missing:
        return report.fail("not every parameter receives a gradient.", _grad_hint(missing))
    if dropout:
        bad_p = [m.p for m in model.modules() if isinstance(m, nn.Dropout) and abs(m.p - 0.2) > 1e-9]
        model.train()
        with torch.no_grad():
            differ = not torch.equal(model(x), train_out)
        model.eval()
        if not differ:
            return report.fail("in training mode two forward passes on the same input are identical.",
                               "the lab's network uses dropout (p=0.2) between its Linear layers.")
        if bad_p:
            return report.fail(f"a dropout layer has p={bad_p[0]}.", "the lab uses dropout with p=0.2.")
    total = sum(p.numel() for p in model.parameters())
    chain = " -> ".join(str(layer.shape[1]) if len(layer.shape) == 3 else str(layer.shape[0]) for layer in table)
    report.notes = [f"layer outputs match the lab's table (28 -> {chain})",
                    "log-probabilities out, logits not clipped" + (", dropout on in training only" if dropout else ""),
                    f"{total:,} parameters; every parameter receives a gradient"]
    return report


def _param_hint(module: nn.Module, layer: Layer, weights_only: bool) -> str:
    if isinstance(module, (nn.Conv2d, nn.Linear)) and not weights_only:
        if module.bias is None:
            return "the lab's layers have a bias (bias=True, the default)."
        return "check the layer's input and output sizes against the table."
    if layer.kind == "block":
        convs = [f"{m.in_channels}->{m.out_channels} {m.kernel_size[0]}x{m.kernel_size[1]}"
                 for m in module.modules() if isinstance(m, nn.Conv2d)]
        return ("the lab's block has two 3x3 convs, plus a 1x1 projection when the channels change; yours: "
                + (", ".join(convs) or "no convs") + ".")
    if isinstance(module, nn.Conv2d) and layer.ref is not None and module.kernel_size[0] != layer.ref["kernel"]:
        return f"the lab's layer here is a {layer.ref['kernel']}x{layer.ref['kernel']} convolution."
    return "check the layer's sizes against the lab's table."


def check_mlp_report(cls: object) -> Report:
    """The checks of :func:`vislab.labs.checkers.check_mlp`, as a report."""
    return _check_classifier("check_mlp", cls, MLP_TABLE, dropout=True)


def check_simple_cnn_report(cls: object) -> Report:
    """The checks of :func:`vislab.labs.checkers.check_simple_cnn`, as a report."""
    return _check_classifier("check_simple_cnn", cls, CNN_TABLE)


def check_vgg_report(cls: object) -> Report:
    """The checks of :func:`vislab.labs.checkers.check_vgg`, as a report."""
    return _check_classifier("check_vgg", cls, VGG_TABLE, dropout=True)


def check_resnet_report(cls: object) -> Report:
    """The checks of :func:`vislab.labs.checkers.check_resnet`, as a report."""
    return _check_classifier("check_resnet", cls, RESNET_TABLE, blocks=True, weights_only=True)


# ---------------------------------------------------------------------------------------------- residual block

RESBLOCK_CASES = ((8, 8), (8, 16))
RESBLOCK_HW = (7, 6)


def _identity_bn(model: nn.Module) -> None:
    """BatchNorm layers as exact identities in eval mode (weight 1, bias 0, mean 0, var 1 - eps)."""
    for m in model.modules():
        if isinstance(m, BN_TYPES):
            if m.weight is not None:
                m.weight.fill_(1.0)
                m.bias.fill_(0.0)
            if m.running_mean is not None:
                m.running_mean.zero_()
                m.running_var.fill_(1.0 - m.eps)


def _set_center(conv: nn.Conv2d, sign: float) -> None:
    """conv(x) = sign * x (channels kept): a centred one-hot kernel on the diagonal, no bias."""
    conv.weight.zero_()
    kh, kw = conv.kernel_size
    for c in range(min(conv.in_channels, conv.out_channels)):
        conv.weight[c, c, kh // 2, kw // 2] = sign
    if conv.bias is not None:
        conv.bias.zero_()


def _resblock_probe(model: nn.Module, x: torch.Tensor, convs: list[nn.Conv2d], call: str) -> tuple[str, str] | None:
    """Equal channels: the residual branch zeroed must give relu(x); conv1 = -id, conv2 = +id must too."""
    want = F.relu(x)
    with torch.no_grad():
        _identity_bn(model)
        for conv in (m for m in model.modules() if isinstance(m, nn.Conv2d)):
            conv.weight.zero_()
            if conv.bias is not None:
                conv.bias.zero_()
        try:
            out = model(x)
        except Exception as exc:  # noqa: BLE001
            return "the forward pass failed with zeroed weights.", describe_exception(exc)
        if not torch.allclose(out, want, atol=1e-5):
            if torch.allclose(out, x, atol=1e-5):
                return (f"with its convolutions zeroed, {call} returns x instead of relu(x).",
                        "the block must apply a ReLU after adding the shortcut.")
            if torch.allclose(out, torch.zeros_like(out), atol=1e-6):
                return (f"with its convolutions zeroed, {call} returns 0 instead of relu(x).",
                        "when the channels match the shortcut must be the identity (x itself); yours goes "
                        "through a convolution (conv1 again, or a projection that is not needed).")
            return (f"with its convolutions zeroed, {call} does not return relu(x).",
                    "the block computes relu(F(x) + x): the residual branch F plus the identity shortcut, "
                    "then one ReLU.")
        if len(convs) == 2:
            _set_center(convs[0], -1.0)
            _set_center(convs[1], 1.0)
            out = model(x)
            if torch.allclose(out, torch.zeros_like(out), atol=1e-6):
                return (f"{call} has no ReLU between its two convolutions.",
                        "the residual branch is conv, (BatchNorm,) ReLU, conv, (BatchNorm); the first "
                        "ReLU is missing.")
    return None


def check_resblock_report(cls: object) -> Report:
    """The checks of :func:`vislab.labs.checkers.check_resblock`, as a report."""
    report = Report("check_resblock", _subject(cls))
    notes = []
    for cin, cout in RESBLOCK_CASES:
        call = f"{_subject(cls)}({cin}, {cout})"
        report.rows = []
        torch.manual_seed(SEED)
        model = _outcome_of_build(report, cls, (cin, cout), call)
        if model is None:
            return report
        x = torch.randn(BATCH, cin, *RESBLOCK_HW, generator=torch.Generator().manual_seed(SEED))
        with torch.no_grad():
            trace = run_traced(model, lambda m=model, x=x: m(x))
        if _forward_not_attempted(report, trace):
            return report
        want = (BATCH, cout, *RESBLOCK_HW)
        reused = _reused_conv(trace)
        if trace.error is not None:
            text = str(trace.error)
            if "must match the size of tensor" in text and cin != cout:
                return report.fail(f"{call}: adding the shortcut failed ({describe_exception(trace.error)}).",
                                   f"the residual branch has {cout} channels and the input {cin}: when the "
                                   "channels change, the shortcut needs a projection of its own (a 1x1 conv "
                                   "+ BatchNorm).")
            if isinstance(trace.error, AttributeError) and "has no attribute" in text:
                return report.fail(f"{call}: {describe_exception(trace.error)}",
                                   "an attribute used in forward is not set for these channels: is it "
                                   "assigned in only one branch of an if (an `else` missing)?")
        if reused is not None:
            return report.fail(f"{call}: {reused.name} is called {trace.count(reused.module)} times per "
                               "forward pass.", REUSE_HINT.format(name=reused.name))
        convs = [c for c in trace.calls if isinstance(c.module, nn.Conv2d)]
        for c in convs:
            k = c.module.kernel_size[0]
            ref = {"kernel": k, "padding": (k - 1) // 2, "stride": 1}
            if not c.done:
                break
            if c.out_shape != want:
                report.rows.append(Row(f"{call}.{c.name}", fmt_shape(want), fmt_shape(c.out_shape), ok=False))
                return report.fail(f"{c.name} gives {fmt_shape(c.out_shape)}; the block keeps H x W and "
                                   f"outputs {cout} channels.", shape_hint(c, want, ref))
            report.rows.append(Row(f"{call}.{c.name}", fmt_shape(want), fmt_shape(c.out_shape)))
        if trace.error is not None:
            return report.fail(f"{call}: the forward pass stopped with an error.", error_hint(trace))
        out = trace.output
        got = fmt_shape(tuple(out.shape)) if isinstance(out, torch.Tensor) else type(out).__name__
        report.rows.append(Row(f"{call} output", fmt_shape(want), got, ok=got == fmt_shape(want)))
        if got != fmt_shape(want):
            return report.fail(f"{call} returns {got}, expected {fmt_shape(want)}.",
                               "the block keeps H x W and outputs out_channels channels.")
        report.rows = []
        weights = _param_count(model, weights_only=True)
        if weights != _block_weights(cin, cout):
            layer = Layer("block", (cout, *RESBLOCK_HW), None, _block_weights(cin, cout))
            return report.fail(f"{call} has {weights:,} conv weights, the lab's block {_block_weights(cin, cout):,}.",
                               _param_hint(model, layer, True))
        missing, _ = _missing_grads(model, x)
        if isinstance(missing, str):
            return report.fail(f"{call}: the backward pass failed.", missing)
        if missing:
            return report.fail(f"{call}: not every parameter receives a gradient.", _grad_hint(missing))
        if cin == cout:
            problem = _resblock_probe(model, x, [c.module for c in convs], call)
            if problem:
                return report.fail(*problem)
            notes.append(f"{call}: keeps {RESBLOCK_HW[0]}x{RESBLOCK_HW[1]}, identity shortcut, ReLU after the sum")
        else:
            notes.append(f"{call}: keeps {RESBLOCK_HW[0]}x{RESBLOCK_HW[1]}, a projection shortcut of its own")
    report.rows = []
    report.notes = [*notes, "conv weights as the lab's block; every parameter receives a gradient"]
    return report
