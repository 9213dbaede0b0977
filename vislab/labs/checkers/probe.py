"""Running a student's module under observation: build it, trace its layers with hooks, explain errors.

Nothing here raises on a student's mistake: building and running return the exception instead, and the
helpers turn it into a one-line, cause-pointing hint (the output-size formula, channel counts, a missing
``else``), never a traceback.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

_NOT_ATTEMPTED_TYPE = "NotImplementedType"
_CHECKERS_DIR = str(Path(__file__).resolve().parent)
_TORCH_DIR = str(Path(torch.__file__).resolve().parent)

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
TCONV_TYPES = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
POOL_TYPES = (nn.MaxPool2d, nn.AvgPool2d, nn.MaxPool3d, nn.AvgPool3d)
GLOBAL_POOL_TYPES = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


# ---------------------------------------------------------------------------------------------- not attempted


def is_not_attempted_error(exc: BaseException) -> bool:
    """True for the errors an untouched exercise raises: NotImplementedError, or using a NotImplemented layer."""
    return isinstance(exc, NotImplementedError) or _NOT_ATTEMPTED_TYPE in str(exc)


def not_implemented_attributes(model: nn.Module) -> list[str]:
    """Qualified names of attributes still set to ``NotImplemented`` (the exercise notebooks' blanks)."""
    found = []
    for prefix, module in model.named_modules():
        for key, value in vars(module).items():
            if value is NotImplemented:
                found.append(f"{prefix}.{key}" if prefix else key)
    return found


def none_attributes(model: nn.Module, required: tuple[str, ...]) -> list[str]:
    """The ``required`` layers left ``None``: the original PSMNet lab marked its blanks that way."""
    return [name for name in required
            if (name in vars(model) and vars(model)[name] is None) or (name in model._modules
                                                                       and model._modules[name] is None)]


def describe_exception(exc: BaseException) -> str:
    """``TypeError: message`` (first line only), plus the student's source line where the error happened."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    desc = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    line = student_line(exc)
    return f"{desc} (at `{line}`)" if line else desc


def student_line(exc: BaseException) -> str:
    """The last line of the traceback that is neither torch's nor the checkers' own code ('' if none)."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        filename = str(frame.filename)
        if filename.startswith(_TORCH_DIR) or filename.startswith(_CHECKERS_DIR):
            continue
        return (frame.line or "").strip()
    return ""


def build(cls: object, args: tuple = ()) -> tuple[nn.Module | None, BaseException | None]:
    """``cls(*args)``, returning ``(module, None)`` or ``(None, exception)``; never raises ``Exception``."""
    try:
        model = cls(*args)  # type: ignore[operator]
    except Exception as exc:  # noqa: BLE001 -- any student error becomes feedback
        return None, exc
    if not isinstance(model, nn.Module):
        return None, TypeError(f"it returned a {type(model).__name__}, not a torch.nn.Module: "
                               "does the class inherit from nn.Module?")
    return model, None


def build_error_hint(cls: object, call: str, exc: BaseException) -> str:
    """A hint for an exception raised while building the student's class."""
    if isinstance(cls, nn.Module):
        return f"pass the class itself ({type(cls).__name__}), not an instance of it."
    text = str(exc)
    if "before Module.__init__() call" in text:
        return "call super().__init__() at the start of __init__, before assigning any layer."
    if isinstance(exc, TypeError) and ("positional argument" in text or "unexpected keyword" in text):
        return f"the checker builds {call}: check the arguments of __init__."
    return "fix the error in __init__ (the line is quoted above)."


# ---------------------------------------------------------------------------------------------- tracing


@dataclass
class Call:
    """One call of one sub-module during a traced forward pass."""

    name: str
    module: nn.Module
    in_shape: tuple[int, ...] | None
    in_min: float | None = None
    out_shape: tuple[int, ...] | None = None
    done: bool = False


@dataclass
class Trace:
    """The calls of a forward pass in the order they started; ``error`` is what the pass raised, if anything."""

    calls: list[Call] = field(default_factory=list)
    output: object = None
    error: BaseException | None = None

    def finished(self) -> list[Call]:
        return [c for c in self.calls if c.done]

    def failing_call(self) -> Call | None:
        """The innermost module that had started but not finished when the error was raised."""
        open_calls = [c for c in self.calls if not c.done]
        return open_calls[-1] if open_calls else None

    def count(self, module: nn.Module) -> int:
        return sum(1 for c in self.calls if c.module is module)


def _first_tensor(value: object) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    return None


@contextmanager
def traced(model: nn.Module) -> Iterator[Trace]:
    """Record every sub-module call (name, input shape and minimum, output shape) while the block runs."""
    trace = Trace()
    names = {id(m): n for n, m in model.named_modules() if n}
    stack: list[Call] = []

    def pre(module: nn.Module, args: tuple) -> None:
        x = _first_tensor(args)
        in_min = float(x.detach().min()) if x is not None and x.numel() and x.is_floating_point() else None
        call = Call(names.get(id(module), type(module).__name__), module,
                    tuple(x.shape) if x is not None else None, in_min)
        trace.calls.append(call)
        stack.append(call)

    def post(module: nn.Module, args: tuple, output: object) -> None:
        # Pop the innermost open call of this module (a module may be re-entered while it runs).
        for i in range(len(stack) - 1, -1, -1):
            if stack[i].module is module:
                call = stack.pop(i)
                y = _first_tensor(output)
                call.out_shape = tuple(y.shape) if y is not None else None
                call.done = True
                return

    handles = []
    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_pre_hook(pre))
            handles.append(module.register_forward_hook(post))
    try:
        yield trace
    finally:
        for h in handles:
            h.remove()


def run_traced(model: nn.Module, fn: Callable[[], object]) -> Trace:
    """Run ``fn()`` (a forward pass of ``model``) under :func:`traced`, catching any exception into the trace."""
    with traced(model) as trace:
        try:
            trace.output = fn()
        except Exception as exc:  # noqa: BLE001 -- a student's error is feedback, not a crash
            trace.error = exc
    return trace


# ---------------------------------------------------------------------------------------------- formula hints


def _pick(value: int | tuple[int, ...], dim: int) -> int:
    return value[dim] if isinstance(value, tuple) else int(value)


def conv_out(size: int, k: int, p: int, s: int, d: int = 1) -> int:
    """O = 1 + (I - K + 2P) / S, rounded down (with dilation, K becomes d (K - 1) + 1)."""
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def tconv_out(size: int, k: int, p: int, s: int, op: int, d: int = 1) -> int:
    """Transposed convolution: O = (I - 1) S - 2P + d (K - 1) + output_padding + 1."""
    return (size - 1) * s - 2 * p + d * (k - 1) + op + 1


def layer_params(module: nn.Module, dim: int) -> dict[str, int] | None:
    """Kernel, padding, stride (and dilation, output_padding) of a conv/pool layer along spatial ``dim``."""
    if not isinstance(module, CONV_TYPES + TCONV_TYPES + POOL_TYPES):
        return None
    padding = module.padding
    if isinstance(padding, str):  # padding="same" keeps the size; there is no number to report
        return None
    stride = module.stride if module.stride is not None else module.kernel_size
    params = {"kernel": _pick(module.kernel_size, dim), "padding": _pick(padding, dim), "stride": _pick(stride, dim),
              "dilation": _pick(getattr(module, "dilation", 1), dim)}
    if isinstance(module, TCONV_TYPES):
        params["output_padding"] = _pick(module.output_padding, dim)
    return params


def size_hint(module: nn.Module, size_in: int, want: int, got: int, ref: dict[str, int] | None = None,
              dim: int = 0) -> str:
    """Explain with the output-size formula why ``module`` turns ``size_in`` into ``got`` instead of ``want``.

    ``ref`` holds the reference layer's kernel/padding/stride: the hint names the parameters that differ
    from it ("28->26 needs kernel 3 with padding 0; yours gives 24 (kernel 5)"). Without ``ref`` the
    kernel that would work with the student's own padding and stride is computed.
    """
    mine = layer_params(module, dim)
    if mine is None:
        return f"{size_in}->{want} expected; yours gives {got}."
    transposed = "output_padding" in mine
    what = "window" if isinstance(module, POOL_TYPES) else "kernel"
    arrow = f"{size_in}->{want}"
    if ref is None:
        if transposed:
            return (f"{arrow}: O = (I - 1) S - 2P + K + output_padding; yours gives {got} (stride {mine['stride']}, "
                    f"{what} {mine['kernel']}, padding {mine['padding']}, output_padding {mine['output_padding']}).")
        k = size_in + 2 * mine["padding"] - mine["stride"] * (want - 1)
        if k >= 1 and conv_out(size_in, k, mine["padding"], mine["stride"]) == want:
            return (f"{arrow} needs {what} {k} with padding {mine['padding']}; "
                    f"yours gives {got} ({what} {mine['kernel']}).")
        return f"{arrow}: O = 1 + (I - K + 2P) / S; yours gives {got}."
    labels = {"kernel": what, "padding": "padding", "stride": "stride", "dilation": "dilation",
              "output_padding": "output_padding"}
    differ = [key for key in ref if key in mine and mine[key] != ref[key]]
    if not differ:
        return f"{arrow} expected; yours gives {got}."
    if differ == ["kernel"]:
        need = f"{what} {ref['kernel']} with padding {ref.get('padding', 0)}"
    elif differ == ["padding"]:
        need = f"padding {ref['padding']} with {what} {ref.get('kernel')}"
    elif len(differ) == 1:
        need = f"{labels[differ[0]]} {ref[differ[0]]}"
    else:
        need = ", ".join(f"{labels[key]} {ref[key]}" for key in ref)
    yours = ", ".join(f"{labels[key]} {mine[key]}" for key in differ)
    formula = ("O = (I - 1) S - 2P + K + output_padding" if transposed else "O = 1 + (I - K + 2P) / S")
    return f"{arrow} needs {need}; yours gives {got} ({yours}). [{formula}]"


def shape_hint(call: Call, want: tuple[int, ...], ref: dict[str, int] | None = None) -> str:
    """Why ``call`` produced its output shape instead of ``want`` (channels, features, or a spatial size)."""
    got = call.out_shape
    module = call.module
    if got is None:
        return f"{call.name} returned no tensor."
    if len(got) != len(want):
        return f"{call.name} gives a {len(got)}-D output {tuple(got)}; expected {len(want)}-D {tuple(want)}."
    if got[0] != want[0]:
        return (f"{call.name}'s output has batch size {got[0]} instead of {want[0]}: a reshape before it mixes "
                "the samples; flatten each sample (x.flatten(1)) instead of view(-1, N).")
    if got[1] != want[1]:
        unit = "features" if len(want) == 2 else "channels"
        return f"{call.name} outputs {got[1]} {unit}; the lab's table has {want[1]} here."
    for dim in range(2, len(want)):
        if got[dim] != want[dim] and call.in_shape is not None and len(call.in_shape) == len(want):
            return f"{call.name}: " + size_hint(module, call.in_shape[dim], want[dim], got[dim], ref, dim - 2)
    return f"{call.name} gives {tuple(got)}; expected {tuple(want)}."


def error_hint(trace: Trace) -> str:
    """Turn an exception raised inside the forward pass into a hint naming the layer and the cause."""
    exc = trace.error
    assert exc is not None
    call = trace.failing_call()
    text = str(exc)
    if call is not None and call.in_shape is not None:
        m, shape = call.module, call.in_shape
        if isinstance(m, nn.Linear):
            if len(shape) > 2:
                return (f"{call.name} (Linear) receives a {len(shape)}-D map {shape}: flatten each sample "
                        "to one vector before the Linear layers.")
            if shape[-1] != m.in_features:
                return f"{call.name} (Linear) expects {m.in_features} inputs but the flattened map has {shape[-1]}."
        if isinstance(m, CONV_TYPES + TCONV_TYPES) and len(shape) > 1 and shape[1] != m.in_channels:
            return (f"{call.name} expects {m.in_channels} input channels but receives {shape[1]} "
                    "(the output channels of the layer before it).")
        if isinstance(m, BN_TYPES) and len(shape) > 1 and shape[1] != m.num_features:
            return f"{call.name} (BatchNorm) expects {m.num_features} channels but receives {shape[1]}."
        if isinstance(m, CONV_TYPES + POOL_TYPES) and ("size" in text.lower()):
            params = layer_params(m, 0)
            if params is not None:
                return (f"{call.name}'s input {shape} is too small for its {params['kernel']}-wide "
                        f"{'window' if isinstance(m, POOL_TYPES) else 'kernel'} (padding {params['padding']}, "
                        f"stride {params['stride']}): an earlier layer shrinks the map too much.")
        return f"{call.name} ({type(m).__name__}) raised {describe_exception(exc)}"
    done = trace.finished()
    where = f" after {done[-1].name} (output {done[-1].out_shape})" if done else ""
    if "is invalid for input of size" in text and done and done[-1].out_shape:
        per_sample = 1
        for s in done[-1].out_shape[1:]:
            per_sample *= s
        return (f"reshaping failed{where}: the map holds {per_sample} values per sample; "
                f"{describe_exception(exc)}")
    return f"forward raised {describe_exception(exc)}{where}."
