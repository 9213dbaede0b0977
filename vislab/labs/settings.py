"""Lab 1's training settings: the lab's own on a GPU, shorter ones that reach the same accuracy on a CPU.

The lab trains each of its four networks for 10 epochs at batch 64 with its own optimizer (SGD for the MLP, Adam
for the others). On a GPU that takes minutes; on a 2-core laptop about two hours, nearly all of it in
``SimpleVGG`` and ``SimpleResNet`` (~220-240 MMAC per image each, near what two cores compute). On a CPU the
notebook therefore trains under a one-cycle learning-rate schedule (a warm-up to a peak, then a decay to almost
zero, once over the whole run), with AdamW (the MLP: the lab's SGD with momentum 0.9 and weight decay), with
which ``vislab mnist train`` took the large networks past the lab's accuracy in 2 epochs; batch 128 and
channels-last (NHWC) convolutions, which oneDNN runs faster; and bfloat16 autocast for the two large networks
where the CPU computes bfloat16 natively and a short probe finds it faster
(:func:`vislab.mnist.precision.resolve_precision`), fp32 elsewhere. The training loop stays the lab's: these are
its arguments. Measured figures: docs/benchmarks.md, "The lab notebooks in full mode".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

NETWORKS = ("MLP", "SimpleCNN", "SimpleVGG", "SimpleResNet")
# vislab.mnist.models names of the same architectures (the bf16 probe times vislab's copy, not the student's).
REGISTRY_NAMES = {"MLP": "mlp", "SimpleCNN": "cnn", "SimpleVGG": "vgg", "SimpleResNet": "resnet"}

LAB_EPOCHS = 10
LAB_BATCH_SIZE = 64
# The CPU settings (measured: docs/benchmarks.md). The MLP costs about a second per epoch: 20 one-cycle epochs
# of SGD gave 97.58-97.81 % over five seeds (AdamW plateaued at 97.4-97.6 %). SimpleVGG and SimpleResNet get
# the fewest epochs that reach the lab's accuracy under a one-cycle schedule: with one epoch each, 98.72 % and
# 99.25 % against the targets' 99.0 % and 99.2 %.
CPU_EPOCHS = {"MLP": 20, "SimpleCNN": 3, "SimpleVGG": 2, "SimpleResNet": 2}
CPU_BATCH_SIZE = 128
# Networks that may train in bf16: the small ones gain nothing (oneDNN's bf16 backward of small convolutions
# is slower than fp32, see vislab.mnist.recipes) and their accuracy margin is the thinnest.
BF16_CANDIDATES = ("SimpleVGG", "SimpleResNet")


@dataclass(frozen=True)
class Lab1Settings:
    """What lab 1's training cells use; ``lab`` True means exactly the lab's settings."""

    lab: bool
    epochs: dict[str, int]
    batch_size: int
    channels_last: bool = False
    bf16: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(NETWORKS, False))
    why: str = ""

    def describe(self) -> str:
        """One line per setting, for the notebook to print."""
        epochs = ", ".join(f"{name} {n}" for name, n in self.epochs.items())
        bf16 = [name for name, on in self.bf16.items() if on]
        lines = [f"settings: {'the lab' if self.lab else 'CPU'} ({self.why})", f"  epochs: {epochs}",
                 f"  batch size {self.batch_size}, channels-last {'on' if self.channels_last else 'off'}, "
                 f"bfloat16 autocast {'for ' + ', '.join(bf16) if bf16 else 'off'}"]
        if not self.lab:
            lines.append("  optimizer: a one-cycle learning-rate schedule; AdamW (the MLP: SGD, momentum 0.9)")
        return "\n".join(lines)


def lab_settings(epochs: int = LAB_EPOCHS, why: str = "as written") -> Lab1Settings:
    """The lab's own settings: ``epochs`` per network, batch 64, each network's own optimizer, fp32."""
    return Lab1Settings(lab=True, epochs=dict.fromkeys(NETWORKS, epochs), batch_size=LAB_BATCH_SIZE, why=why)


def probe_bf16(network: str, batch_size: int) -> bool:
    """True when bf16 autocast trains ``network`` measurably faster than fp32 on this CPU (a few timed steps)."""
    import torch

    from vislab.mnist.precision import resolve_precision

    precision, _ = resolve_precision("auto", torch.device("cpu"), REGISTRY_NAMES[network], batch_size=batch_size)
    return precision == "bf16"


def lab1_settings(device_type: str, *, lab: bool = False, quick: bool = False, native_bf16: bool | None = None,
                  bf16_faster: Callable[[str, int], bool] = probe_bf16) -> Lab1Settings:
    """The settings lab 1 trains with on ``device_type`` ("cpu", "cuda", "mps").

    ``quick`` (the smoke test): the lab's settings with one epoch. ``lab``, or any device but the CPU: the lab's
    settings. On a CPU: the shorter settings of this module; bf16 for the large networks only where the CPU has
    native bf16 (``native_bf16``; None: ask oneDNN) and ``bf16_faster(network, batch_size)`` says it pays.
    """
    if quick:
        return lab_settings(1, "quick mode")
    if lab:
        return lab_settings(why="LAB_SETTINGS = True")
    if device_type != "cpu":
        return lab_settings(why=f"on {device_type}")
    if native_bf16 is None:
        from vislab.mnist.precision import cpu_has_native_bf16

        native_bf16 = cpu_has_native_bf16()
    bf16 = {name: bool(native_bf16 and name in BF16_CANDIDATES and bf16_faster(name, CPU_BATCH_SIZE))
            for name in NETWORKS}
    why = "on a CPU: " + ("native bf16" if native_bf16 else "no native bf16, so fp32")
    return Lab1Settings(lab=False, epochs=dict(CPU_EPOCHS), batch_size=CPU_BATCH_SIZE, channels_last=True,
                        bf16=bf16, why=why)
