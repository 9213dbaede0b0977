"""``vislab mnist ...`` subcommands: argument parsing only; the work lives in the mnist modules."""

import argparse
import importlib
from collections.abc import Callable

from vislab.core.device import DEVICE_CHOICES

MODEL_NAMES = ("mlp", "cnn", "vgg", "resnet")  # the registry's names, listed here so --help needs no torch


def _lazy(target: str) -> Callable[[argparse.Namespace], int]:
    """Import ``module:function`` only when the subcommand runs, so ``--help`` stays fast."""
    module_name, func_name = target.split(":")

    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(module_name), func_name)(args)

    return run


def add_parser(labs: argparse._SubParsersAction) -> None:
    mnist = labs.add_parser("mnist", help="MNIST digit classification")
    sub = mnist.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model (defaults: the model's recipe; flags override it)")
    p.add_argument("--model", required=True, choices=MODEL_NAMES)
    p.add_argument("--epochs", type=float, default=None,
                   help="passes over the training set; a fraction stops the last one early (e.g. 1.5)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="learning rate (the peak under onecycle)")
    p.add_argument("--optimizer", default=None, choices=("sgd", "adam", "adamw", "muon"),
                   help="muon: Muon on the weight matrices, AdamW (at --lr) on biases and the output layer")
    p.add_argument("--muon-lr", type=float, default=None, help="muon: peak learning rate of the weight matrices")
    p.add_argument("--schedule", default=None, choices=("none", "onecycle", "cosine"))
    p.add_argument("--augment", default=None, action=argparse.BooleanOptionalAction,
                   help="random shift/rotation/scale of training images")
    p.add_argument("--augment-strength", type=float, default=None,
                   help="scale of the warp ranges (1.0: shift 2 px, rotation 10 degrees, scale 10%%)")
    p.add_argument("--label-smoothing", type=float, default=None, metavar="EPS",
                   help="train towards 1-EPS on the label and EPS/10 on every class (0: plain NLL)")
    p.add_argument("--precision", default=None, choices=("auto", "fp32", "bf16"),
                   help="bf16: bfloat16 autocast (faster than fp32 on GPUs and some CPUs, slower on others); "
                        "auto: bf16 where a short measurement finds it faster (see README)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None, choices=DEVICE_CHOICES)
    p.add_argument("--out", default=None, help="run folder (default runs/mnist_MODEL)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    p.add_argument("--data", default=None, help="MNIST folder (default: the bundled copy)")
    p.add_argument("--val-size", type=int, default=None,
                   help="hold out the last N training images for validation; 0 validates on the test set")
    p.set_defaults(func=_lazy("vislab.mnist.train:run_train"))

    p = sub.add_parser("eval", help="test loss, accuracy, per-class accuracy and confusion matrix of a checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("--data", default=None, help="MNIST folder (default: the bundled copy)")
    p.add_argument("--json", default=None, help="write the report here (and the confusion matrix PNG next to it)")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.set_defaults(func=_lazy("vislab.mnist.evaluate:run_eval"))

    p = sub.add_parser("predict", help="classify images of single digits")
    p.add_argument("checkpoint", nargs="?", default=None, help="vislab MNIST checkpoint (not with --onnx)")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--onnx", default=None, metavar="MODEL.onnx",
                   help="run a graph made by `vislab mnist export` with ONNX Runtime instead of a checkpoint")
    p.set_defaults(func=_lazy("vislab.mnist.predict:run_predict"))

    p = sub.add_parser("export", help="write a checkpoint's model as ONNX (dynamic batch, log-probabilities out)")
    p.add_argument("checkpoint")
    p.add_argument("out", metavar="OUT.onnx")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, 17 to 20 (default 17)")
    p.set_defaults(func=_lazy("vislab.mnist.export:run_export"))

    p = sub.add_parser("summary", help="every layer's output shape and parameter count")
    p.add_argument("--model", required=True, choices=MODEL_NAMES)
    p.add_argument("--batch-size", type=int, default=1, help="batch size shown in the shapes")
    p.set_defaults(func=_lazy("vislab.mnist.summary:run_summary"))

    p = sub.add_parser("show", help="save a grid of sample digits with their labels")
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--data", default=None, help="MNIST folder (default: the bundled copy)")
    p.add_argument("--split", default="train", choices=("train", "test"))
    p.add_argument("--out", default="mnist_samples.png")
    p.set_defaults(func=_lazy("vislab.mnist.show:run_show"))

    p = sub.add_parser("download", help="download MNIST into DEST, verifying checksums")
    p.add_argument("dest")
    p.add_argument("--mirror", action="append", default=None, metavar="URL",
                   help="base URL to try (repeatable; default: the known mirrors)")
    p.add_argument("--checksums", default=None, metavar="FILE", help="JSON file of expected MD5s per file name")
    p.add_argument("--retries", type=int, default=3)
    p.add_argument("--timeout", type=float, default=30)
    p.set_defaults(func=_lazy("vislab.mnist.download:run_download"))
