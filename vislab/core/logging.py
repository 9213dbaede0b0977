"""Progress bars, machine-readable metrics (CSV/JSON) and curve plots."""

import csv
import json
import math
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from tqdm.auto import tqdm

from vislab.core.errors import VislabError

T = TypeVar("T")


def progress(iterable: Iterable[T], *, desc: str = "", total: int | None = None,
             enabled: bool = True, leave: bool = False) -> Iterable[T]:
    """A tqdm bar on stderr; silent when disabled (non-main ranks) or when VISLAB_NO_PROGRESS is set."""
    disable = not enabled or bool(os.environ.get("VISLAB_NO_PROGRESS"))
    return tqdm(iterable, desc=desc, total=total, disable=disable, leave=leave, file=sys.stderr,
                dynamic_ncols=True)


class MetricsCSV:
    """Append rows of metrics to a CSV file, one row per call, header written once.

    On resume the file is truncated to the rows whose ``key`` column is at most ``keep_upto``, so a
    run killed between a checkpoint and a log line never ends with duplicated or orphaned rows.
    """

    def __init__(self, path: str | os.PathLike, fieldnames: Sequence[str]):
        self.path = Path(path)
        self.fieldnames = list(fieldnames)

    def truncate_after(self, key: str, keep_upto: float) -> None:
        if not self.path.exists():
            return
        with self.path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if float(r[key]) <= keep_upto]
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fieldnames)
            writer.writeheader()
            writer.writerows(rows)

    def append(self, row: dict[str, Any]) -> None:
        new_file = not self.path.exists() or self.path.stat().st_size == 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fieldnames, extrasaction="ignore")
            if new_file:
                writer.writeheader()
            writer.writerow({k: _fmt(v) for k, v in row.items()})


def read_metrics_csv(path: str | os.PathLike) -> list[dict[str, float]]:
    """Read a metrics CSV back as a list of rows of floats."""
    with Path(path).open(newline="") as f:
        return [{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(f)]


def make_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create the folder ``path`` (and its parents); an existing file or an unwritable place is a VislabError."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise VislabError(f"{what} {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VislabError(f"cannot create {what} {path}: {exc.strerror or exc}") from None
    return path


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON (atomically: temp file + rename); an unwritable path is a VislabError."""
    path = Path(path)
    if path.is_dir():
        raise VislabError(f"cannot write {path}: it is a folder (give a file name)")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise VislabError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def subplots(*args: Any, figsize: tuple[float, float] | None = None, **kwargs: Any) -> tuple[Any, Any]:
    """A new figure and its axes, like ``plt.subplots``, but outside pyplot: no backend is chosen and no global
    state changes, so it needs no display and leaves a notebook's inline plots alone."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kwargs)


def pyplot():
    """matplotlib.pyplot for scripts: the non-interactive Agg backend (no display needed), except inside an
    IPython kernel, whose inline backend must stay (switching it would silence every later plot there)."""
    import matplotlib

    if "ipykernel" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike) -> Path:
    """Save ``fig`` as PNG (creating the folder) and close it; an unwritable path is a VislabError."""
    path = Path(path)
    if not path.suffix:  # matplotlib would write NAME.png; return the name actually written
        path = path.with_name(path.name + ".png")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise VislabError(f"cannot write {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # matplotlib: an image format it does not know (the file suffix)
        raise VislabError(f"cannot write {path}: {exc}") from None
    finally:
        if "matplotlib.pyplot" in sys.modules:  # a figure made through pyplot stays registered until closed
            sys.modules["matplotlib.pyplot"].close(fig)
    return path


def plot_curves(x: Sequence[float], series: dict[str, Sequence[float]], path: str | os.PathLike,
                xlabel: str = "epoch", title: str | None = None) -> Path:
    """One small panel per series (e.g. validation loss and validation accuracy), saved as PNG."""
    fig, axes = subplots(len(series), 1, figsize=(5, 3 * len(series)), squeeze=False)
    for ax, (name, ys) in zip(axes[:, 0], series.items(), strict=True):
        ax.plot(list(x), list(ys), marker="o")
        ax.set_title(name)
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.6g}" if math.isfinite(v) else str(v)
    return v


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
