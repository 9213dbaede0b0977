"""Pick the compute device once, from a user-facing name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vislab.core.errors import VislabError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def pick_device(name: str = "auto") -> torch.device:
    """Return the device for ``name`` (auto prefers cuda, then mps, then cpu)."""
    import torch  # here, not at the top: the CLIs import DEVICE_CHOICES, and `vislab --help` should stay fast
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise VislabError(f"device {name!r} requested but CUDA is not available on this machine")
        return torch.device(name)
    if name == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise VislabError("device 'mps' requested but MPS is not available on this machine")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise VislabError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")
