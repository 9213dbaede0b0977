"""Layer-by-layer output shapes and parameter counts (the lab's tables), from forward hooks."""

import argparse
from dataclasses import dataclass

import torch
from torch import nn

from vislab.core.errors import VislabError
from vislab.mnist.models import ResBlock, count_parameters, create_model


@dataclass
class LayerRow:
    """One call of a module during the forward pass; ``params`` is None for a block (its layers have rows)."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int | None


def summarize(model: nn.Module, batch_size: int = 1) -> list[LayerRow]:
    """Run one (batch_size, 1, 28, 28) input through ``model`` and record every leaf module's output.

    A module called several times (VGG's shared max-pool) gets one row per call, in execution order;
    residual blocks also get a row for their output (the 7x7 maps of the lab's ResNet).
    """
    rows: list[LayerRow] = []
    handles = []
    for name, module in model.named_modules():
        is_leaf = next(iter(module.children()), None) is None
        if not (is_leaf or isinstance(module, ResBlock)) or module is model:
            continue
        params = None if isinstance(module, ResBlock) else sum(p.numel() for p in module.parameters())

        def hook(mod: nn.Module, inputs, output, name=name, params=params) -> None:
            rows.append(LayerRow(name, type(mod).__name__, tuple(output.shape), params))

        handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(batch_size, 1, 28, 28))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return rows


def format_summary(model_name: str, model: nn.Module, rows: list[LayerRow], batch_size: int = 1) -> str:
    """The table as text: layer, type, output shape, parameters; then the total."""
    header = ("layer", "type", "output shape", "params")
    body = [(r.name, r.kind, str(r.output_shape), "(block)" if r.params is None else f"{r.params:,}") for r in rows]
    body.insert(0, ("input", "", str((batch_size, 1, 28, 28)), ""))
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(4)]
    lines = [f"{model_name} ({type(model).__name__})"]
    for line in [header, *body]:
        lines.append("  ".join(cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in
                               enumerate(zip(line, widths, strict=True))))
        if line is header:
            lines.append("-" * (sum(widths) + 6))
    lines.append(f"total parameters: {count_parameters(model):,}")
    return "\n".join(lines)


def run_summary(args: argparse.Namespace) -> int:
    """``vislab mnist summary --model NAME``."""
    if args.batch_size < 1:
        raise VislabError(f"--batch-size must be at least 1, got {args.batch_size}")
    model = create_model(args.model)
    print(format_summary(args.model, model, summarize(model, args.batch_size), args.batch_size))
    return 0
