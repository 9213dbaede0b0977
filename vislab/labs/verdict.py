"""The grade's verdict: observe a student's class on the grader's draw, decide in the grader's own process.

A check's outcome must not be something a submission can write. So grading splits in two halves:

* :func:`observe` runs where the student's class lives (the student's kernel, inside the grader's sandbox;
  or the notebook's own checker). It builds the class, loads weights drawn from a seed into it, runs it on
  inputs drawn from the same seed and returns **data only**: fingerprints of the outputs (eval mode, and
  training mode under a seeded RNG where the lab uses dropout) and of every parameter's gradient.
* :func:`judge` runs in the grader's process. It makes the same observation of the lab's reference (the
  class of the packaged solution notebook, :func:`reference_classes`), with the same seed, and compares.

A fingerprint is a few random projections of a tensor (plus its shape and RMS); the projection vectors come
from the seed too. The seed is drawn by the grader when it asks for the observation, after the student's
cells have run. Whatever a submission prints, writes or patches, the data it hands back only matches the
reference when its code computes the lab's function on those weights and inputs.

The weights are loaded by name when the student's layers have the reference's names and shapes (the
exercise's naming), otherwise by the order in which the forward pass first calls each layer, matched by the
layer's type and its parameters' shapes.
"""

from __future__ import annotations

import ast
import functools
import json
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PROJECTIONS = 8  # random projections per output tensor
GRAD_PROJECTIONS = 2  # per gradient (the feature extractor's 3M parameters: keep the probe light)
RTOL = 1e-3  # relative to the reference tensor's RMS: float32 round-off is ~1e-6, a wrong layer ~1


@dataclass(frozen=True)
class CheckSpec:
    """How the grader exercises one checker's class: constructor cases, input shape, call modes, dropout."""

    name: str
    lab: str
    cases: tuple[tuple[int, ...], ...] = ((),)  # constructor arguments, one observation each
    input_shape: Callable[[tuple[int, ...]], tuple[int, ...]] = lambda args: (4, 1, 28, 28)
    dropout: bool = False  # compare a training-mode pass under a seeded RNG too
    hourglass: bool = False  # forward(x, presqu, postsqu) -> (out, pre, post), called as dres2 and as dres3
    variants: tuple[Callable[[], Callable[..., Any]], ...] = ()  # other answers the lab accepts (same layers)

    def describe(self, args: tuple[int, ...], cls_name: str) -> str:
        return f"{cls_name}({', '.join(str(a) for a in args)})"


def _vgg_relu_between_pairs() -> Callable[..., Any]:
    from vislab.mnist.models import SimpleVGG

    return functools.partial(SimpleVGG, relu_between_pairs=True)


@functools.cache
def _plain_residual_classes() -> tuple[type, type]:
    """The lab slide's basic block (biased convolutions, no BatchNorm in the residual branch) and a SimpleResNet
    built from it: the checkers count only conv/linear weights, so both are accepted answers."""
    import torch.nn.functional as F
    from torch import nn

    class PlainResBlock(nn.Module):
        def __init__(self, in_channels: int, out_channels: int):
            super().__init__()
            self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
            self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
            self.shortcut = nn.Identity() if in_channels == out_channels else nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))

        def forward(self, x: Any) -> Any:
            return F.relu(self.conv2(F.relu(self.conv1(x))) + self.shortcut(x))

    class PlainResNet(reference_classes("lab1")["SimpleResNet"]):  # the solution's stem, pool and head
        def __init__(self) -> None:
            super().__init__()
            self.layer1, self.layer2 = PlainResBlock(64, 64), PlainResBlock(64, 128)
            self.layer3, self.layer4 = PlainResBlock(128, 256), PlainResBlock(256, 512)

    return PlainResBlock, PlainResNet


SPECS: dict[str, CheckSpec] = {spec.name: spec for spec in (
    CheckSpec("check_mlp", "lab1", dropout=True),
    CheckSpec("check_simple_cnn", "lab1"),
    # The lab's table reads "conv + conv + ReLU"; a ReLU between the two convolutions of a stage is accepted too.
    CheckSpec("check_vgg", "lab1", dropout=True, variants=(_vgg_relu_between_pairs,)),
    CheckSpec("check_resblock", "lab1", cases=((8, 8), (8, 16)), input_shape=lambda args: (2, args[0], 7, 6),
              variants=(lambda: _plain_residual_classes()[0],)),
    CheckSpec("check_resnet", "lab1", input_shape=lambda args: (2, 1, 28, 28),
              variants=(lambda: _plain_residual_classes()[1],)),
    CheckSpec("check_spp", "lab2", input_shape=lambda args: (1, 3, 256, 288)),
    CheckSpec("check_hourglass", "lab2", cases=((8,),), input_shape=lambda args: (1, args[0], 8, 16, 20),
              hourglass=True),
)}


# ---------------------------------------------------------------------------------------------- the lab's side


def _notebook_cells(lab: str, variant: str) -> list[ast.Module]:
    """The code cells of a packaged notebook, parsed (cells with IPython magics, such as %pip, skipped)."""
    from vislab.labs.build import LABS

    notebook = json.loads(LABS[lab].notebook(variant).read_text(encoding="utf-8"))
    trees = []
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            try:
                trees.append(ast.parse("".join(cell["source"])))
            except SyntaxError:
                continue
    return trees


@functools.cache
def lab_checks(lab: str) -> dict[str, str]:
    """``{checker name: class name}`` of the checker calls in the lab's packaged exercise notebook, in order.

    This is what a submission is graded on: the teacher's notebook, whatever the student's copy says.
    """
    checks: dict[str, str] = {}
    for tree in _notebook_cells(lab, "exercise"):
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in SPECS
                    and node.args and isinstance(node.args[0], ast.Name)):
                checks.setdefault(node.func.id, node.args[0].id)
    return checks


@functools.cache
def reference_classes(lab: str) -> dict[str, type]:
    """The classes the lab's solution notebook defines, built from its top-level definitions.

    Only the imports, classes and functions at the top of its cells run (the exercises' answers and what
    they use); the statements that load data, train or plot do not.
    """
    namespace: dict[str, Any] = {"__name__": f"vislab_reference_{lab}"}
    kinds = (ast.Import, ast.ImportFrom, ast.ClassDef, ast.FunctionDef)
    for tree in _notebook_cells(lab, "solution"):
        definitions = ast.Module(body=[node for node in tree.body if isinstance(node, kinds)], type_ignores=[])
        exec(compile(definitions, f"<{lab} solution>", "exec"), namespace)  # noqa: S102 -- vislab's own notebook
    return {k: v for k, v in namespace.items() if isinstance(v, type)}


def reference_for(check: str) -> type:
    """The solution's class that ``check`` is graded against."""
    spec = SPECS[check]
    return reference_classes(spec.lab)[lab_checks(spec.lab)[check]]


# ---------------------------------------------------------------------------------------------- drawing


def _generator(seed: int, label: str):
    import torch

    return torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(label.encode())) % (2 ** 63))


def _draw_weights(model: Any, seed: int) -> None:
    """Every float parameter and buffer drawn from the seed, BatchNorm away from the identity."""
    import torch

    gen = _generator(seed, "weights")
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=True).items():
            if not tensor.is_floating_point():
                continue
            leaf = name.rsplit(".", 1)[-1]
            shape = tensor.shape
            if leaf == "running_var":
                tensor.copy_(torch.rand(shape, generator=gen) + 0.5)
            elif leaf == "running_mean":
                tensor.copy_(torch.randn(shape, generator=gen) * 0.1)
            elif tensor.dim() == 1 and leaf == "weight":  # a norm layer's scale
                tensor.copy_(torch.rand(shape, generator=gen) + 0.5)
            elif tensor.dim() == 1:  # biases
                tensor.copy_(torch.randn(shape, generator=gen) * 0.1)
            else:
                fan_in = max(1, tensor[0].numel())
                tensor.copy_(torch.randn(shape, generator=gen) * math.sqrt(2.0 / fan_in))


def _fingerprint(tensor: Any, seed: int, label: str, projections: int = PROJECTIONS) -> dict[str, Any]:
    """Shape, RMS and ``projections`` random projections (scaled by 1/sqrt(n)) of a tensor; or its type."""
    import torch

    if not isinstance(tensor, torch.Tensor):
        return {"type": type(tensor).__name__}
    flat = tensor.detach().to(torch.float64).flatten()
    n = max(1, flat.numel())
    gen = _generator(seed, "projection:" + label)
    proj = [float(torch.dot(torch.randn(flat.numel(), generator=gen, dtype=torch.float64), flat)) / math.sqrt(n)
            for _ in range(projections)]
    return {"shape": list(tensor.shape), "rms": float(flat.square().mean().sqrt()) if flat.numel() else 0.0,
            "proj": proj}


# ---------------------------------------------------------------------------------------------- observing


def _own_tensors(module: Any) -> list[tuple[str, Any]]:
    return [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]


def _signature(module: Any) -> tuple:
    return type(module).__name__, tuple((n, tuple(t.shape)) for n, t in _own_tensors(module))


def _layers_in_call_order(model: Any, run: Callable[[], Any]) -> list[tuple[str, Any]]:
    """The modules holding parameters or buffers, in the order the forward pass first calls them."""
    import torch

    holders = {id(m): (name, m) for name, m in model.named_modules() if _own_tensors(m)}
    order: list[tuple[str, Any]] = []
    seen: set[int] = set()

    def hook(module: Any, args: Any) -> None:
        if id(module) in holders and id(module) not in seen:
            seen.add(id(module))
            order.append(holders[id(module)])

    handles = [m.register_forward_pre_hook(hook) for _, m in holders.values()]
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return order


def _describe_layer(name: str, module: Any) -> str:
    shapes = ", ".join(f"{n} {tuple(t.shape)}" for n, t in _own_tensors(module))
    return f"{name} ({type(module).__name__}: {shapes})"


def _load_reference_weights(model: Any, reference: Any, run_model: Callable[[], Any],
                            run_reference: Callable[[], Any]) -> dict[str, Any]:
    """Copy the reference's tensors into ``model``; returns ``{reference parameter name: model parameter}``.

    Raises ``LookupError`` with the first layer that has no counterpart.
    """
    import torch

    ref_state = reference.state_dict()
    mine = model.state_dict()
    if {k: tuple(v.shape) for k, v in mine.items()} == {k: tuple(v.shape) for k, v in ref_state.items()}:
        model.load_state_dict(ref_state)
        params = dict(model.named_parameters())
        return {name: params.get(name) for name, _ in reference.named_parameters()}
    ref_layers = _layers_in_call_order(reference, run_reference)
    my_layers = _layers_in_call_order(model, run_model)
    pairs: dict[int, tuple[str, Any]] = {}
    for ref_name, ref_module in ref_layers:
        match = next((i for i, (_, m) in enumerate(my_layers)
                      if i not in pairs and _signature(m) == _signature(ref_module)), None)
        if match is None:
            raise LookupError(f"the lab's layer {_describe_layer(ref_name, ref_module)} has no counterpart "
                              "in your network's forward pass")
        pairs[match] = (ref_name, ref_module)
    extra = [my_layers[i] for i in range(len(my_layers)) if i not in pairs]
    if extra:
        raise LookupError(f"{_describe_layer(*extra[0])} is a layer the lab's network does not have")
    called = {id(m) for _, m in my_layers}
    unused = [n for n, m in model.named_modules() if _own_tensors(m) and id(m) not in called]
    if unused:
        raise LookupError(f"{unused[0]} holds parameters but the forward pass never calls it")
    mapping: dict[str, Any] = {}
    with torch.no_grad():
        for i, (ref_name, ref_module) in pairs.items():
            mine_module = my_layers[i][1]
            for (n, target), (_, source) in zip(_own_tensors(mine_module), _own_tensors(ref_module), strict=True):
                target.copy_(source)
                if isinstance(target, torch.nn.Parameter):
                    mapping[f"{ref_name}.{n}" if ref_name else n] = target
    return mapping


def _flatten(out: Any) -> list[Any]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _observe_case(cls: Any, spec: CheckSpec, args: tuple[int, ...], seed: int, reference: Any) -> dict[str, Any]:
    import torch

    from vislab.labs.checkers.probe import describe_exception, is_not_attempted_error, not_implemented_attributes

    torch.manual_seed(seed)
    ref = reference(*args)
    _draw_weights(ref, seed)
    ref.eval()
    x = torch.randn(spec.input_shape(args), generator=_generator(seed, "input"))
    modes: list[tuple[Any, ...]] = [(x,)]
    if spec.hourglass:
        modes = [(x, None, None)]
        with torch.no_grad():
            out1, pre1, post1 = ref(x, None, None)
        modes.append((out1, pre1, post1))

    def call(model: Any, inputs: tuple[Any, ...]) -> Any:
        return model(*[t.clone() if isinstance(t, torch.Tensor) else t for t in inputs])

    try:
        torch.manual_seed(seed)
        model = cls(*args)
    except Exception as exc:  # noqa: BLE001 -- the student's error is the observation
        return {"error": f"building it raised {describe_exception(exc)}", "not_attempted": is_not_attempted_error(exc)}
    if not isinstance(model, torch.nn.Module):
        return {"error": f"it built a {type(model).__name__}, not a torch.nn.Module"}
    if not_implemented_attributes(model):
        return {"error": f"{not_implemented_attributes(model)[0]} is still NotImplemented", "not_attempted": True}
    model.eval()
    try:
        mapping = _load_reference_weights(model, ref, lambda: call(model, modes[0]), lambda: call(ref, modes[0]))
    except LookupError as exc:
        return {"layout": str(exc)}
    except Exception as exc:  # noqa: BLE001
        return {"error": f"its forward pass raised {describe_exception(exc)}",
                "not_attempted": is_not_attempted_error(exc)}
    observation: dict[str, Any] = {"outputs": []}
    try:
        with torch.no_grad():
            for m, inputs in enumerate(modes):
                outs = _flatten(call(model, inputs))
                observation["outputs"].append([_fingerprint(t, seed, f"out{m}.{i}") for i, t in enumerate(outs)])
        model.zero_grad(set_to_none=True)
        outs = _flatten(call(model, modes[0]))
        loss = sum((t * torch.randn(t.shape, generator=_generator(seed, f"cotangent{i}"))).sum()
                   for i, t in enumerate(outs) if isinstance(t, torch.Tensor) and t.is_floating_point())
        if isinstance(loss, torch.Tensor) and loss.requires_grad:
            loss.backward()
        observation["grads"] = {name: None if p is None or p.grad is None
                                else _fingerprint(p.grad, seed, "grad:" + name, GRAD_PROJECTIONS)
                                for name, p in mapping.items()}
        if spec.dropout:
            model.train()
            torch.manual_seed(seed + 1)
            with torch.no_grad():
                observation["train"] = [_fingerprint(t, seed, f"train.{i}")
                                        for i, t in enumerate(_flatten(call(model, modes[0])))]
    except Exception as exc:  # noqa: BLE001
        return {"error": f"running it raised {describe_exception(exc)}", "not_attempted": is_not_attempted_error(exc)}
    return observation


def references(check: str) -> list[Any]:
    """The answers ``check`` accepts: the solution notebook's class, then the variants the lab allows."""
    return [reference_for(check), *(variant() for variant in SPECS[check].variants)]


def observe(cls: Any, check: str, seed: int, against: list[Any] | None = None) -> dict[str, Any]:
    """The data the grader judges ``cls`` by, for checker ``check`` and ``seed``: JSON-ready, no verdict.

    One observation per accepted answer (``against``, default :func:`references`), each with that answer's
    weights. Never raises on the student's code; the caller's RNG state and thread count are restored.
    """
    import torch

    spec = SPECS[check]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny inputs: one thread is fastest and never waits on a busy core
    try:
        with torch.random.fork_rng(devices=[]), torch.enable_grad():
            return {"check": check, "references": [
                {"cases": [_observe_case(cls, spec, args, seed, reference) for args in spec.cases]}
                for reference in (against or references(check))]}
    finally:
        torch.set_num_threads(threads)


def write_observations(classes: dict[str, Any], seed: int, path: str) -> None:
    """The grader's probe, run in the student's kernel: observe each class (None: not defined) into ``path``."""
    from pathlib import Path

    data = {check: None if cls is None else observe(cls, check, seed) for check, cls in classes.items()}
    Path(path).write_text(json.dumps(data), encoding="utf-8")


# ---------------------------------------------------------------------------------------------- judging


@dataclass(frozen=True)
class Verdict:
    """A check's outcome as the grader decides it."""

    name: str
    status: str  # "passed", "failed" or "not attempted"
    message: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "message": self.message}


class _Mismatch(Exception):
    pass


def _close(mine: Any, ref: dict[str, Any], what: str) -> None:
    """Raise ``_Mismatch`` naming ``what`` unless fingerprint ``mine`` matches ``ref``."""
    if "type" in ref:
        return
    if not isinstance(mine, dict) or "shape" not in mine:
        got = mine.get("type", "nothing") if isinstance(mine, dict) else "nothing"
        raise _Mismatch(f"{what} is a {got}, the lab's network gives a tensor of shape {tuple(ref['shape'])}")
    if list(mine["shape"]) != ref["shape"]:
        raise _Mismatch(f"{what} has shape {tuple(mine['shape'])}, the lab's network's {tuple(ref['shape'])}")
    scale = float(ref["rms"]) or 1.0
    values = [float(v) for v in mine["proj"]] + [float(mine["rms"])]
    wanted = list(ref["proj"]) + [ref["rms"]]
    if len(values) != len(wanted):
        raise _Mismatch(f"{what}: malformed data")
    diffs = [abs(a - b) / scale for a, b in zip(values, wanted, strict=True)]
    worst = math.nan if any(math.isnan(d) for d in diffs) else max(diffs)  # max() skips a NaN after the first
    if not worst <= RTOL:
        raise _Mismatch(f"{what} differs from the lab's network with the same weights "
                        f"(relative difference {worst:.2g})")


def _judge_case(mine: Any, ref: dict[str, Any], spec: CheckSpec, label: str) -> None:
    if not isinstance(mine, dict):
        raise _Mismatch("no data came back for it")
    if "error" in ref or "layout" in ref:  # the reference itself must observe cleanly
        raise RuntimeError(f"the reference {label} failed: {ref}")
    if "error" in mine:
        raise _Mismatch(f"{label}: {str(mine['error'])[:300]}")
    if "layout" in mine:
        raise _Mismatch(f"{label}: {str(mine['layout'])[:300]}")
    outputs, ref_outputs = mine.get("outputs"), ref["outputs"]
    if not isinstance(outputs, list) or len(outputs) != len(ref_outputs):
        raise _Mismatch(f"{label}: no outputs came back")
    for m, (got, want) in enumerate(zip(outputs, ref_outputs, strict=True)):
        mode = " called as forward(out1, pre1, post1)" if m else ""
        if not isinstance(got, list) or len(got) != len(want):
            raise _Mismatch(f"{label}{mode} returns {len(got) if isinstance(got, list) else 'no'} output(s), "
                            f"the lab's network {len(want)}")
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _close(g, w, f"{label}'s output{f' {i + 1}' if len(want) > 1 else ''}{mode}")
    grads, ref_grads = mine.get("grads"), ref["grads"]
    if not isinstance(grads, dict):
        raise _Mismatch(f"{label}: no gradients came back")
    for name, want in ref_grads.items():
        got = grads.get(name)
        if got is None:
            raise _Mismatch(f"{label}: {name} receives no gradient")
        _close(got, want, f"{label}: the gradient of {name}")
    if spec.dropout:
        train = mine.get("train")
        if not isinstance(train, list) or len(train) != len(ref["train"]):
            raise _Mismatch(f"{label}: no training-mode output came back")
        for g, w in zip(train, ref["train"], strict=True):
            try:
                _close(g, w, f"{label}'s output in training mode")
            except _Mismatch as exc:
                raise _Mismatch(f"{exc}: the dropout (p=0.2) is not where the lab's network has it") from None


def judge(check: str, observation: Any, seed: int, class_name: str | None = None) -> Verdict:
    """Decide ``check`` from a student's ``observation`` (untrusted data) against the reference's, same seed."""
    spec = SPECS[check]
    class_name = class_name or lab_checks(spec.lab).get(check, "the class")
    if observation is None:
        return Verdict(check, "not attempted", f"{class_name} is not defined when the notebook has run")
    accepted = references(check)
    observed = observation.get("references") if isinstance(observation, dict) else None
    if not isinstance(observed, list) or len(observed) != len(accepted) or not all(
            isinstance(o, dict) and isinstance(o.get("cases"), list) and len(o["cases"]) == len(spec.cases)
            for o in observed):
        return Verdict(check, "failed", "the observation of the class was malformed")
    cases = observed[0]["cases"]
    if all(isinstance(c, dict) and c.get("not_attempted") for c in cases):
        return Verdict(check, "not attempted", f"{spec.describe(spec.cases[0], class_name)}: "
                                               f"{str(cases[0].get('error', ''))[:200]}")
    first_mismatch = ""
    for reference, mine in zip(accepted, observed, strict=True):
        expected = observe(reference, check, seed, against=[reference])["references"][0]
        try:
            for args, got, want in zip(spec.cases, mine["cases"], expected["cases"], strict=True):
                _judge_case(got, want, spec, spec.describe(args, class_name))
        except _Mismatch as exc:
            first_mismatch = first_mismatch or str(exc)
            continue
        except (TypeError, ValueError, OverflowError, KeyError, IndexError, AttributeError, RecursionError) as exc:
            first_mismatch = first_mismatch or f"the observation of the class was malformed ({type(exc).__name__})"
            continue
        return Verdict(check, "passed", f"{class_name} computes the lab's function on the grader's inputs "
                                        "(outputs and gradients with weights drawn at grading time)")
    return Verdict(check, "failed", first_mismatch)
