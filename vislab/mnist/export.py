"""``vislab mnist export``: a trained MNIST checkpoint as an ONNX graph, and running it with ONNX Runtime.

The graph takes what :func:`vislab.mnist.data.preprocess_digit_image` produces, batched: ``image``, float32
``(N, 1, 28, 28)`` in [0, 1], light ink on black, any batch size N. The ``(x - MEAN) / STD`` normalisation
the models were trained with is folded into the graph, so a deployment only has to do MNIST's
preprocessing. Output: ``log_probs``, float32 ``(N, 10)`` log-probabilities (``exp`` gives the
probabilities), as the PyTorch models return them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vislab.core.errors import VislabError
from vislab.core.onnx import DEFAULT_OPSET, export_module, open_session, require_task
from vislab.mnist.data import MEAN, SIZE, STD
from vislab.mnist.models import load_mnist_model

INPUT_NAME, OUTPUT_NAME = "image", "log_probs"


class NormalisedClassifier(nn.Module):
    """``model((x - MEAN) / STD)``: an MNIST classifier that takes [0, 1] images, for export."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - MEAN) / STD)


def export_mnist(checkpoint: str | os.PathLike, out: str | os.PathLike, opset: int = DEFAULT_OPSET) -> dict[str, Any]:
    """Write the model of a vislab MNIST ``checkpoint`` to ``out`` as ONNX; returns what was written.

    Raises:
        VislabError: the checkpoint is missing or not a vislab MNIST checkpoint (e.g. a stereo one), the
            opset is outside what the exporter writes, or onnx/onnxruntime are not installed.
    """
    model, ckpt = load_mnist_model(checkpoint, "cpu")
    model = model.float().eval()
    example = torch.zeros(2, 1, SIZE, SIZE)
    meta = {"task": "mnist", "model": ckpt["model_name"], "checkpoint": Path(checkpoint).name,
            "input": f"{INPUT_NAME}: float32 (N, 1, {SIZE}, {SIZE}) in [0, 1], light ink on black "
                     "(preprocess_digit_image's output); normalisation folded in",
            "output": f"{OUTPUT_NAME}: float32 (N, 10) log-probabilities",
            "mean": MEAN, "std": STD}
    path = export_module(NormalisedClassifier(model), (example,), out, input_names=[INPUT_NAME],
                         output_names=[OUTPUT_NAME], dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                         metadata=meta, opset=opset)
    return {"path": str(path), "model": ckpt["model_name"], "opset": opset}


class MnistOnnx:
    """An exported MNIST graph in an ONNX Runtime session: ``runner(images)`` -> log-probabilities."""

    def __init__(self, path: str | os.PathLike, device: str = "auto") -> None:
        self.path = Path(path)
        self.session = open_session(self.path, device)
        self.meta = require_task(self.session, self.path, "mnist")

    @property
    def model_name(self) -> str:
        return self.meta.get("model", "?")

    def log_probs(self, images: torch.Tensor | np.ndarray) -> np.ndarray:
        """``(N, 1, 28, 28)`` (or ``(N, 28, 28)``) [0, 1] images, not normalised -> ``(N, 10)`` float32."""
        x = np.asarray(images, dtype=np.float32)
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4 or x.shape[1:] != (1, SIZE, SIZE):
            raise VislabError(f"{self.path} takes (N, 1, {SIZE}, {SIZE}) images, got shape {x.shape}")
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x)})[0]


def run_export(args: argparse.Namespace) -> int:
    """``vislab mnist export CHECKPOINT OUT.onnx [--opset N]``."""
    info = export_mnist(args.checkpoint, args.out, opset=args.opset)
    print(f"wrote {info['path']} (mnist {info['model']}, opset {info['opset']}, input {INPUT_NAME} float32 "
          f"(N, 1, {SIZE}, {SIZE}) in [0, 1], normalisation folded in; output {OUTPUT_NAME} (N, 10))")
    return 0
