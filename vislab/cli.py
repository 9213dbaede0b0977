"""The ``vislab`` command: one entry point, each lab adds its own subcommands."""

import argparse
import os
import sys

from vislab import __version__
from vislab.core.errors import VislabError


def build_parser() -> argparse.ArgumentParser:
    from vislab.app.cli import add_parser as add_app
    from vislab.labs.cli import add_parser as add_labs
    from vislab.mnist.cli import add_parser as add_mnist
    from vislab.stereo.cli import add_parser as add_stereo

    parser = argparse.ArgumentParser(prog="vislab", description=__doc__)
    parser.add_argument("--version", action="version", version=f"vislab {__version__}")
    labs = parser.add_subparsers(dest="lab", required=True, metavar="{mnist,stereo,app,labs}")
    add_mnist(labs)
    add_stereo(labs)
    add_app(labs)
    add_labs(labs)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse, run, and turn user errors into one line on stderr and a non-zero exit."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except VislabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading: not an error of ours
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 -- so the interpreter's final flush cannot fail again
        return 141


if __name__ == "__main__":
    sys.exit(main())
