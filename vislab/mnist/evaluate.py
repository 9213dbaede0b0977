"""The one evaluation loop (per-epoch validation and ``vislab mnist eval``), and the eval command."""

import argparse
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

NUM_CLASSES = 10


@dataclass
class EvalResult:
    """Mean NLL loss per sample, accuracy in percent, and the predicted class of every sample."""

    loss: float
    accuracy: float
    correct: int
    n: int
    predictions: torch.Tensor


def autocast_context(device: torch.device, precision: str):
    """bf16 autocast on CPU/CUDA when asked for, else a no-op context."""
    if precision == "bf16" and device.type in ("cpu", "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1000,
             precision: str = "fp32") -> EvalResult:
    """Loss and accuracy of ``model`` on normalised images ``x`` (N, 1, 28, 28) and labels ``y``.

    The loss is averaged over samples (the lab divided a sum of batch means by the number of batches,
    which over-weights a short last batch).
    """
    from vislab.mnist.data import iterate_batches

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    preds = []
    for xb, yb in iterate_batches(x, y, batch_size, shuffle=False):
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        with autocast_context(device, precision):
            out = model(xb)
        out = out.float()
        loss_sum += F.nll_loss(out, yb, reduction="sum").double()
        preds.append(out.argmax(1).cpu())
    model.train(was_training)
    predictions = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)
    n = len(y)
    correct = int((predictions == y.cpu()).sum())
    return EvalResult(loss=float(loss_sum) / max(n, 1), accuracy=100.0 * correct / max(n, 1), correct=correct,
                      n=n, predictions=predictions)


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """(true class, predicted class) counts, int64 (num_classes, num_classes)."""
    idx = labels.long() * num_classes + predictions.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(confusion: torch.Tensor) -> list[float]:
    """Percent correct for each true class (NaN for a class with no samples)."""
    totals = confusion.sum(1).double()
    return [float("nan") if t == 0 else float(100.0 * c / t) for c, t in zip(confusion.diag().double(), totals,
                                                                              strict=True)]


def plot_confusion(confusion: torch.Tensor, path: str | Path, title: str = "") -> Path:
    """Save the confusion matrix as an annotated PNG heat map."""
    from matplotlib.colors import LogNorm

    from vislab.core.logging import save_figure, subplots

    cm = confusion.numpy()
    fig, ax = subplots(figsize=(6, 5.5))
    # Log colour scale: the diagonal is ~1000 while errors are single digits.
    im = ax.imshow(cm + 1, cmap="Blues", norm=LogNorm())
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if i == j else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_xticks(range(cm.shape[1]))
    ax.set_yticks(range(cm.shape[0]))
    ax.set_title(title or "confusion matrix")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return save_figure(fig, path)


def evaluate_checkpoint(checkpoint: str | Path, data_dir: str | None = None,
                        device_name: str = "auto") -> dict[str, Any]:
    """Test-set loss, accuracy, per-class accuracy and confusion matrix of a vislab MNIST checkpoint."""
    from vislab.core.device import pick_device
    from vislab.mnist.data import load_mnist, normalize
    from vislab.mnist.models import load_mnist_model

    device = pick_device(device_name)
    model, ckpt = load_mnist_model(checkpoint, device)
    test_images, test_y = load_mnist(data_dir, "test")  # the training files are not needed (nor read)
    precision = ckpt.get("config", {}).get("precision", "fp32")
    result = evaluate(model, normalize(test_images).to(device), test_y.to(device), precision=precision)
    cm = confusion_matrix(test_y, result.predictions)
    return {
        "checkpoint": str(checkpoint),
        "model": ckpt["model_name"],
        # epochs trained (1.5 after a 1.5-epoch run); "epoch" itself counts passes, the last maybe partial
        "epoch": ckpt["metrics"][-1]["epoch"] if ckpt.get("metrics") else ckpt.get("epoch"),
        "n": result.n,
        "test_loss": result.loss,
        "accuracy": result.accuracy,
        "correct": result.correct,
        "per_class_accuracy": per_class_accuracy(cm),
        "confusion_matrix": cm.tolist(),
    }


def run_eval(args: argparse.Namespace) -> int:
    """``vislab mnist eval CHECKPOINT [--data DIR] [--json PATH]``."""
    from vislab.core.logging import write_json

    report = evaluate_checkpoint(args.checkpoint, args.data, args.device)
    print(f"{report['model']} (epoch {report['epoch']}): test loss {report['test_loss']:.4f}, "
          f"accuracy {report['accuracy']:.2f}% ({report['correct']}/{report['n']})")
    print("per-class accuracy: " + "  ".join(f"{c}: {a:.2f}%" for c, a in enumerate(report["per_class_accuracy"])))
    if args.json:
        json_path = Path(args.json)
        png_path = json_path.with_suffix(".png") if json_path.suffix == ".json" else Path(f"{json_path}.png")
    else:
        # beside the checkpoint (runs/x/last.pt -> runs/x/last_confusion.png), not littering the current folder
        checkpoint = Path(args.checkpoint)
        json_path, png_path = None, checkpoint.with_name(f"{checkpoint.stem}_confusion.png")
    report["confusion_png"] = str(png_path)
    plot_confusion(torch.tensor(report["confusion_matrix"]), png_path,
                   title=f"{report['model']}: {report['accuracy']:.2f}% on {report['n']} test images")
    if json_path is not None:
        write_json(report, json_path)
        print(f"wrote {json_path} and {png_path}")
    else:
        print(f"wrote {png_path}")
    return 0
