"""``python -m vislab.mnist.pretrained SRC DST``: shrink a training checkpoint to the shipped form."""

import sys

from vislab.core.errors import VislabError
from vislab.mnist.pretrained import export_weights


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m vislab.mnist.pretrained SRC_CHECKPOINT DST", file=sys.stderr)
        return 2
    try:
        dst = export_weights(argv[0], argv[1])
    except VislabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"wrote {dst} ({dst.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
