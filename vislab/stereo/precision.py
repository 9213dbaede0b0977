"""``--precision fp32|bf16|auto`` for stereo prediction: bfloat16 only where the CPU computes it natively.

oneDNN runs bf16 convolutions on AVX512-BF16 and AMX units; on a CPU without them (e.g. an AMD EPYC before
Zen 4) bf16 is emulated and slower than fp32, so ``bf16`` is refused there and ``auto`` stays in fp32 without
measuring anything. On a CPU with native bf16, ``auto`` checks once per process, on rendered synthetic scenes
(held out: never the shared real pairs), that bf16 is both faster (by ``BF16_MIN_SPEEDUP``) and as accurate
(D1 within ``BF16_MAX_D1_LOSS`` points of fp32), and keeps fp32 otherwise. In bf16 the 2D features and the 3D
network run under ``torch.autocast``; the softmax and disparity regression stay in fp32.
"""

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from vislab.core.errors import VislabError

PRECISIONS = ("auto", "fp32", "bf16")
BF16_MIN_SPEEDUP = 1.1  # timing noise alone must not switch to the less precise format
BF16_MAX_D1_LOSS = 0.1  # points of D1 bf16 may lose against fp32 (issue 26)
_NATIVE_FLAGS = ("avx512_bf16", "amx_bf16")
_AUTO_CACHE: dict[str, tuple[str, str]] = {}


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; empty elsewhere, where bf16 is then not assumed)."""
    if not sys.platform.startswith("linux"):
        return set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_native_bf16(flags: set[str] | None = None) -> bool:
    """True when the CPU has bf16 arithmetic units oneDNN uses (AVX512-BF16 or AMX) and oneDNN is available."""
    flags = cpu_flags() if flags is None else flags
    return torch.backends.mkldnn.is_available() and any(f in flags for f in _NATIVE_FLAGS)


Probe = Callable[[str], tuple[float, float]]  # precision -> (seconds, D1 %) on the probe scenes


def resolve_precision(precision: str, device: torch.device, *, native: bool | None = None,
                      probe: Probe | None = None) -> tuple[str, str]:
    """``(fp32 | bf16, why)`` for a requested ``precision`` on ``device``.

    ``bf16`` where it is not native raises a one-line ``VislabError``. ``auto``: fp32 on a CPU without native
    bf16 and on devices other than CPU and CUDA; CUDA with bf16: bf16; a CPU with native bf16: whatever
    ``probe`` (default: :func:`probe_synthetic`, run once per process) finds faster and as accurate.
    """
    if precision not in PRECISIONS:
        raise VislabError(f"unknown --precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return "fp32", "as requested"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "as requested" if precision == "bf16" else "CUDA with bf16"
        if precision == "bf16":
            raise VislabError("--precision bf16: this GPU has no bf16 support; use fp32 or auto")
        return "fp32", "CUDA without bf16"
    native = (device.type == "cpu" and cpu_has_native_bf16()) if native is None else native
    if precision == "bf16":
        if not native:
            raise VislabError(f"--precision bf16: this {device.type.upper()} has no native bf16 (needs AVX512-BF16 "
                              "or AMX; emulated bf16 is slower than fp32); use fp32 or auto")
        return "bf16", "as requested"
    if not native:
        return "fp32", f"no native bf16 on this {device.type.upper()}"
    key = str(device)
    if probe is None and key in _AUTO_CACHE:
        return _AUTO_CACHE[key]
    measured = {p: (probe or probe_synthetic)(p) for p in ("fp32", "bf16")}
    choice = decide(measured)
    why = (f"measured on synthetic scenes: bf16 {measured['bf16'][0]:.2f} s / D1 {measured['bf16'][1]:.2f} %, "
           f"fp32 {measured['fp32'][0]:.2f} s / D1 {measured['fp32'][1]:.2f} %")
    if probe is None:
        _AUTO_CACHE[key] = (choice, why)
    return choice, why


def decide(measured: dict[str, tuple[float, float]]) -> str:
    """``bf16`` when it is faster by ``BF16_MIN_SPEEDUP`` and its D1 at most ``BF16_MAX_D1_LOSS`` points worse."""
    (t16, d16), (t32, d32) = measured["bf16"], measured["fp32"]
    return "bf16" if t16 * BF16_MIN_SPEEDUP < t32 and d16 <= d32 + BF16_MAX_D1_LOSS else "fp32"


@contextlib.contextmanager
def autocast(precision: str, device: torch.device) -> Iterator[None]:
    """bf16 autocast on ``device`` for ``precision == "bf16"``, nothing for fp32."""
    if precision == "bf16":
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield
    else:
        yield


def probe_synthetic(precision: str, weights: str | Path | None = None, scenes: int = 3) -> tuple[float, float]:
    """(seconds, pixel-mean D1 %) of the shipped model on ``scenes`` rendered 256x512 scenes in ``precision``
    (one untimed warm-up first)."""
    from vislab.stereo.datasets import create_dataset
    from vislab.stereo.evaluate import load_model, psmnet_predict_fn
    from vislab.stereo.metrics import MetricAccumulator

    model, _, device = load_model(weights, device="cpu")
    predict = psmnet_predict_fn(model, device, precision=precision)
    data = create_dataset("synthetic", None, split="testing", size=scenes, height=256, width=512, max_disp=96,
                          seed=2026)
    acc = MetricAccumulator(max_disp=model.max_disp)
    first = data[0]
    predict(first["left"], first["right"])
    start = time.perf_counter()
    for i in range(len(data)):
        sample = data[i]
        acc.update(predict(sample["left"], sample["right"]), sample["disp"], sample["valid"], name=sample["name"])
    return time.perf_counter() - start, float(acc.summary()["pixel_mean"]["d1"])
