"""``--precision auto``: train in bf16 autocast only where it is faster, measured on the model itself.

Native bf16 instructions do not make bf16 training faster on every CPU. On the AMD EPYC of earlier sessions
``vgg``/``resnet`` steps ran 1.6-2x faster in bf16; on an Intel Xeon with AVX-512 bf16 but no usable AMX they
ran 1.4-1.7x *slower* (oneDNN's bf16 convolution backward). No CPU flag tells the two apart, so on a CPU
``auto`` times a few training steps of the run's own model and batch size in both precisions and keeps bf16
only when it is clearly faster. The probe uses a throw-away copy of the model, random inputs from its own
generator and leaves the global RNG untouched, so the run itself is seeded exactly as with a fixed
precision. The resolved value is what ``config.json`` and the checkpoints record, so ``--resume`` never
re-measures; pass ``--precision fp32|bf16`` to pin it.
"""

import time

import torch
import torch.nn.functional as F

from vislab.mnist.evaluate import autocast_context
from vislab.mnist.models import create_model

# bf16 must beat fp32 by this factor: timing noise alone must not flip a run to the less accurate precision.
BF16_MIN_SPEEDUP = 1.1
PROBE_STEPS = 2  # timed steps per precision (after one warm-up step); the fastest one counts


def cpu_has_native_bf16() -> bool:
    """True when oneDNN has bf16 kernels on this CPU (AVX-512 bf16 or AMX)."""
    return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def step_seconds(model: torch.nn.Module, batch: torch.Tensor, target: torch.Tensor, device: torch.device,
                 precision: str, steps: int = PROBE_STEPS) -> float:
    """Fastest of ``steps`` forward+backward passes of ``model`` on ``batch`` (after one warm-up pass)."""
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        with autocast_context(device, precision):
            out = model(batch)
        F.nll_loss(out.float(), target).backward()
        model.zero_grad(set_to_none=True)
        if i > 0:
            times.append(time.perf_counter() - start)
    return min(times)


def faster_precision(seconds: dict[str, float], min_speedup: float = BF16_MIN_SPEEDUP) -> str:
    """``"bf16"`` when its step time beats fp32's by ``min_speedup``, else ``"fp32"``."""
    return "bf16" if seconds["bf16"] * min_speedup < seconds["fp32"] else "fp32"


def measure_precisions(model_name: str, model_kwargs: dict, batch_size: int, device: torch.device,
                       channels_last: bool = True) -> dict[str, float]:
    """Training-step seconds of a fresh ``model_name`` at ``batch_size`` in fp32 and in bf16."""
    with torch.random.fork_rng(devices=[]):  # model init and dropout must not shift the run's RNG stream
        model = create_model(model_name, **model_kwargs).to(device).train()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        gen = torch.Generator().manual_seed(0)
        batch = torch.randn(batch_size, 1, 28, 28, generator=gen).to(device)
        target = torch.randint(0, 10, (batch_size,), generator=gen).to(device)
        return {p: step_seconds(model, batch, target, device, p) for p in ("fp32", "bf16")}


def resolve_precision(precision: str, device: torch.device, model_name: str, model_kwargs: dict | None = None,
                      batch_size: int = 128, channels_last: bool = True) -> tuple[str, str]:
    """Turn ``"auto"`` into ``"fp32"`` or ``"bf16"`` for this device; returns (precision, why).

    CUDA: bf16 where the GPU supports it (tensor cores make it faster). CPU: fp32 without native bf16,
    otherwise whichever :func:`measure_precisions` finds faster (bf16 by at least ``BF16_MIN_SPEEDUP``).
    Anything else (MPS): fp32. An explicit fp32/bf16 is returned as given.
    """
    if precision != "auto":
        return precision, "as requested"
    if device.type == "cuda":
        return ("bf16", "CUDA with bf16") if torch.cuda.is_bf16_supported() else ("fp32", "CUDA without bf16")
    if device.type != "cpu":
        return "fp32", f"no bf16 autocast on {device.type}"
    if not cpu_has_native_bf16():
        return "fp32", "this CPU has no native bf16"
    seconds = measure_precisions(model_name, model_kwargs or {}, batch_size, device, channels_last=channels_last)
    why = (f"measured training step: bf16 {seconds['bf16'] * 1e3:.0f} ms, fp32 {seconds['fp32'] * 1e3:.0f} ms "
           f"at batch {batch_size}")
    return faster_precision(seconds), why
