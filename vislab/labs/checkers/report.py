"""Outcomes of a check: the printed report, the JSON line for the grader, and ``strict`` mode.

A report is plain ASCII text, so it reads the same in a terminal (whatever its encoding) and in a Jupyter
output cell: one header line with the outcome, the per-layer table up to the first difference, one hint.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field

CHECK_LOG_ENV = "VISLAB_CHECK_LOG"

PASSED = "passed"
FAILED = "failed"
NOT_ATTEMPTED = "not attempted"
STATUSES = (PASSED, FAILED, NOT_ATTEMPTED)


def record_outcome(name: str, status: str, message: str) -> None:
    """Append one JSON line ``{"name", "status", "message"}`` to the file named by ``$VISLAB_CHECK_LOG``.

    Does nothing when the variable is unset or empty. A record for the user's own tools: the teacher's
    grader decides every check itself and never reads it. A file that cannot be written prints a warning
    instead of raising, so that a logging problem never stops a student's notebook.

    Args:
        name: the checker's function name, e.g. ``"check_simple_cnn"``.
        status: ``"passed"``, ``"failed"`` or ``"not attempted"``.
        message: a one-paragraph summary of the outcome.
    """
    path = os.environ.get(CHECK_LOG_ENV)
    if not path:
        return
    line = json.dumps({"name": name, "status": status, "message": message})
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    except OSError as exc:
        print(f"(vislab: could not append to ${CHECK_LOG_ENV}={path}: {exc})", file=sys.stderr)


@dataclass
class Row:
    """One line of the per-layer table: the student's layer, the lab's expected output, the student's output."""

    layer: str
    expected: str
    actual: str
    ok: bool = True


@dataclass
class Report:
    """Everything a checker found; :meth:`finish` prints it, records it and turns it into True/False."""

    name: str
    subject: str
    status: str = PASSED
    summary: str = ""
    hint: str = ""
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    expected_label: str = "expected (lab)"

    def fail(self, summary: str, hint: str = "", status: str = FAILED) -> Report:
        """Mark the report failed (or not attempted) with a one-line summary and a hint; returns self."""
        self.status, self.summary, self.hint = status, summary, hint
        return self

    @property
    def message(self) -> str:
        """The one-paragraph summary written to the grader's log (and raised by ``strict=True``)."""
        if self.status == PASSED:
            text = f"public checks passed: {'; '.join(self.notes)}" if self.notes else "public checks passed"
        else:
            text = f"{self.status}: {self.summary}"
            if self.hint:
                text += f" Hint: {self.hint}"
        return " ".join(text.split())

    def render(self) -> str:
        """The printed report: header, table up to the first difference, hint (passed: the checks done)."""
        head = {PASSED: "public checks passed", FAILED: "FAILED", NOT_ATTEMPTED: "not attempted"}[self.status]
        lines = [f"{self.name}({self.subject}): {head}"]
        if self.status == PASSED:
            lines += [f"  + {note}" for note in self.notes]
            return "\n".join(lines)
        if self.rows:
            lines += _table(self.rows, self.expected_label)
        lines.append(f"  {self.summary}")
        if self.hint:
            lines.append(f"  Hint: {self.hint}")
        return "\n".join(lines)

    def finish(self, strict: bool) -> bool:
        """Print, record for the grader, and return ``status == passed`` (``strict``: raise AssertionError)."""
        text = self.render()
        try:
            print(text)
        except UnicodeEncodeError:  # a student's non-ASCII error text on a console that cannot show it
            print(text.encode("ascii", "replace").decode("ascii"))
        record_outcome(self.name, self.status, self.message)
        if strict and self.status != PASSED:
            raise AssertionError(self.message)
        return self.status == PASSED


def _table(rows: list[Row], expected_label: str) -> list[str]:
    header = Row("layer", expected_label, "yours")
    widths = [max(len(getattr(r, f)) for r in [header, *rows]) for f in ("layer", "expected", "actual")]
    out = []
    for r in [header, *rows]:
        mark = "" if r.ok else "   <-- differs"
        out.append(f"  {r.layer:<{widths[0]}}  {r.expected:<{widths[1]}}  {r.actual:<{widths[2]}}{mark}".rstrip())
    return out


def fmt_shape(shape: tuple[int, ...] | None) -> str:
    """``(2, 20, 26, 26)`` for a shape, ``-`` for none (the layer did not run)."""
    return "-" if shape is None else "(" + ", ".join(str(s) for s in shape) + ")"
