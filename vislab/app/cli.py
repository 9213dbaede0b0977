"""``vislab app``: argument parsing only; gradio is imported when the command runs (``--help`` stays fast)."""

import argparse

from vislab.core.device import DEVICE_CHOICES
from vislab.core.errors import VislabError


def run_app(args: argparse.Namespace) -> int:
    """Start the page and block until Ctrl-C."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise VislabError("vislab app needs Gradio: pip install -e '.[app]' (or pip install -r requirements.txt)"
                          ) from None
    from vislab.app.server import serve

    if not 0 <= args.port <= 65535:
        raise VislabError(f"--port must be between 0 and 65535, got {args.port}")
    return serve(args.mnist_checkpoint, args.stereo_weights, args.host, args.port, args.device)


def add_parser(labs: argparse._SubParsersAction) -> None:
    p = labs.add_parser("app", help="a local web page showing both labs (draw a digit, compare stereo methods)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; never a public share link)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860; 0 picks a free one)")
    p.add_argument("--mnist-checkpoint", action="append", default=[], metavar="PATH",
                   help="another trained MNIST checkpoint to show beside the shipped mlp and cnn (repeatable)")
    p.add_argument("--stereo-weights", default=None, metavar="PATH",
                   help="PSMNet checkpoint for the Stereo tab (default: the shipped one)")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.set_defaults(func=run_app)
