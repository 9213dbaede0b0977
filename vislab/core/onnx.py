"""ONNX export and ONNX Runtime sessions, shared by both labs.

``onnx`` and ``onnxruntime`` are an optional extra (``pip install 'vislab[onnx]'``); they are imported only
when a function here needs them, and their absence is a one-line :class:`VislabError` that says how to
install them. Every vislab graph carries ``vislab_*`` metadata (task, model, sizes, ...) so that a file
given to the wrong command, or made by another tool, is refused with one line instead of an ONNX Runtime
shape error.

Export goes through PyTorch's TorchScript-based exporter (``dynamo=False``): it needs nothing beyond
``onnx`` (the torch.export-based one also needs ``onnxscript``), and it records the image size as graph
values, so the stereo graph pads and crops any size (see ``vislab/stereo/export.py``).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from vislab.core.checkpoint import write_atomic
from vislab.core.errors import VislabError, require_file

INSTALL_HINT = "pip install 'vislab[onnx]' (or: pip install onnx onnxruntime)"
DEFAULT_OPSET = 17
# 17: LayerNormalization and the current Resize/Pad forms; 20: the newest the TorchScript exporter writes.
OPSET_RANGE = (17, 20)
METADATA_PREFIX = "vislab_"


def require(package: str) -> ModuleType:
    """Import ``onnx`` or ``onnxruntime``; VislabError with the install command when it is missing."""
    try:
        if package == "onnx":
            import onnx

            return onnx
        if package == "onnxruntime":
            import onnxruntime

            return onnxruntime
    except ImportError:
        raise VislabError(f"this needs the {package!r} package, which is not installed: {INSTALL_HINT}") from None
    raise ValueError(f"not an ONNX package: {package!r}")


def check_opset(opset: int) -> int:
    """``opset`` if vislab can export it, else VislabError."""
    lo, hi = OPSET_RANGE
    if not lo <= opset <= hi:
        raise VislabError(f"--opset must be between {lo} and {hi} (the range PyTorch's exporter writes), got {opset}")
    return opset


def export_module(module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], path: str | os.PathLike, *,
                  input_names: Sequence[str], output_names: Sequence[str],
                  dynamic_axes: Mapping[str, Mapping[int, str]], metadata: Mapping[str, Any],
                  opset: int = DEFAULT_OPSET) -> Path:
    """Export ``module`` (eval mode) to ``path``, checked with ``onnx.checker``, with ``vislab_*`` metadata.

    The file is written to a temporary name beside ``path`` and renamed into place, so a failed export
    never leaves a half-written model behind.
    """
    onnx = require("onnx")
    require("onnxruntime")  # an exported file nobody here can run is not what the user asked for
    check_opset(opset)
    path = Path(path)
    if path.is_dir():
        raise VislabError(f"output {path} is a folder; give a file name such as model.onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
        raw = Path(tmp) / "raw.onnx"
        with warnings.catch_warnings():
            # The exporter announces its own deprecation in favour of the torch.export one (see the module doc).
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            # Slices with a step are left to ONNX Runtime to fold; nothing to act on.
            warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
            torch.onnx.export(module, example_inputs, str(raw), dynamo=False, opset_version=opset,
                              input_names=list(input_names), output_names=list(output_names),
                              dynamic_axes={k: dict(v) for k, v in dynamic_axes.items()}, do_constant_folding=True)
        model = onnx.load(str(raw))
        for key, value in metadata.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = METADATA_PREFIX + key, str(value)
        model.producer_name = "vislab"
        onnx.checker.check_model(model, full_check=True)
        write_atomic(path, lambda f: f.write(model.SerializeToString()))
    return path


def providers_for(device: str = "auto") -> list[str]:
    """ONNX Runtime execution providers for a vislab ``--device`` name: CUDA first when it is available."""
    ort = require("onnxruntime")
    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise VislabError(f"device {device!r} requested but this onnxruntime has no CUDA provider "
                              "(install onnxruntime-gpu)")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "auto":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"] if "CUDAExecutionProvider" in available \
            else ["CPUExecutionProvider"]
    raise VislabError(f"device {device!r} is not available for ONNX Runtime; use auto, cpu or cuda")


def open_session(path: str | os.PathLike, device: str = "auto", threads: int | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``path``; VislabError if the file is missing or not ONNX.

    ``threads`` (default: ``torch.get_num_threads()``, so both runtimes use the same number of cores and
    follow ``OMP_NUM_THREADS`` alike) sets ONNX Runtime's intra-op thread pool.
    """
    ort = require("onnxruntime")
    path = Path(path)
    require_file(path, "ONNX model")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads if threads is not None else torch.get_num_threads()
    options.log_severity_level = 3  # errors only: ORT's warnings about unused initialisers are noise here
    # Without the arena each tensor's memory goes back when it dies: PSMNet's peak RSS at 384x1248 fell from
    # 2.7 to 2.0 GB (256x512: 0.99 to 0.62 GB), with the same time per run after the first.
    options.enable_cpu_mem_arena = False
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers_for(device))
    except VislabError:
        raise
    except Exception as exc:  # ORT raises its own classes (Fail, InvalidProtobuf, ...), not all exported
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VislabError(f"cannot load ONNX model {path}: {first}") from None


def vislab_metadata(session: Any) -> dict[str, str]:
    """The ``vislab_*`` metadata of a session's model, without the prefix."""
    props = session.get_modelmeta().custom_metadata_map
    return {k[len(METADATA_PREFIX):]: v for k, v in props.items() if k.startswith(METADATA_PREFIX)}


def require_task(session: Any, path: str | os.PathLike, task: str) -> dict[str, str]:
    """The model's vislab metadata; VislabError unless it was exported by ``vislab TASK export``."""
    meta = vislab_metadata(session)
    found = meta.get("task")
    if found != task:
        what = f"a vislab {found} model" if found else "no vislab metadata"
        raise VislabError(f"{path} is not a vislab {task} ONNX model ({what}); make one with `vislab {task} export`")
    return meta
