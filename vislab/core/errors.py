"""The one user-facing error type.

Anything the user can cause (a corrupt file, a missing dataset, a wrong checkpoint) raises
``VislabError`` with a message that fits on one line; the CLI prints it as ``error: ...`` and exits
with status 2. Programming errors stay ordinary exceptions with tracebacks.
"""


class VislabError(Exception):
    """An error caused by the user's input, reported as a single line."""

    exit_code = 2

    def __str__(self) -> str:
        return " ".join(super().__str__().split())
