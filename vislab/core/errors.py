"""The one user-facing error type (and the input check every file reader shares).

Anything the user can cause (a corrupt file, a missing dataset, a wrong checkpoint) raises
``VislabError`` with a message that fits on one line; the CLI prints it as ``error: ...`` and exits
with status 2. Programming errors stay ordinary exceptions with tracebacks.
"""

from pathlib import Path


class VislabError(Exception):
    """An error caused by the user's input, reported as a single line."""

    exit_code = 2

    def __str__(self) -> str:
        return " ".join(super().__str__().split())


def require_file(path: Path, what: str) -> None:
    """Raise VislabError unless ``path`` is an existing file (a folder gets its own message)."""
    if path.is_dir():
        raise VislabError(f"{what} {path} is a folder, not a file")
    if not path.is_file():
        raise VislabError(f"{what} not found: {path}")
