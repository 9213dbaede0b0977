"""Atomic checkpoint writing and safe loading.

A checkpoint is a plain dict of tensors and Python primitives, so it can always be read back with
``torch.load(weights_only=True)``: no pickled classes, and nothing in an untrusted file can run code.
Writes go to a temporary file in the same folder that is renamed into place, so a crash mid-write
leaves the previous checkpoint intact.
"""

import os
import pickle
import struct
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Generic, TypeVar

import torch

from vislab.core.errors import VislabError, require_file


def _umask() -> int:
    try:  # Linux reports it without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_public(fd: int) -> None:
    """Give a ``tempfile.mkstemp`` file (mode 0600) the mode an ordinary new file would get (0666 & ~umask),
    so what is renamed into place is readable by whoever could read a plainly written file."""
    if hasattr(os, "fchmod"):
        os.fchmod(fd, 0o666 & ~_umask())


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(f)`` on a temporary file beside ``path``, fsync it and rename it into place, so ``path`` is
    either the old file or the complete new one, never half-written (the temp file is removed on failure)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    make_public(fd)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_atomic(obj: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``obj`` with ``torch.save`` to ``path`` atomically (temp file + fsync + rename)."""
    return write_atomic(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by vislab or a released model, safely (``weights_only=True``).

    Raises VislabError (one line, naming the file) when the file is missing, is not a torch
    checkpoint, or holds something other than a dict.
    """
    path = Path(path)
    require_file(path, "checkpoint")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    # A short non-checkpoint file can also trip the legacy unpickler into KeyError/IndexError/TypeError/
    # struct.error (b"junk" is read as a 4-byte length that is not there).
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError, ValueError, OSError,
            KeyError, IndexError, TypeError, struct.error) as exc:
        text = str(exc).strip()
        # KeyError(105) alone says nothing: name the exception type with its first line
        first_line = f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
        raise VislabError(f"cannot read checkpoint {path}: not a valid PyTorch checkpoint ({first_line})") from exc
    if not isinstance(obj, dict):
        raise VislabError(f"cannot read checkpoint {path}: expected a dict, found {type(obj).__name__}")
    return obj


T = TypeVar("T")


class LoadedCache(Generic[T]):
    """What was loaded from checkpoint files, kept per process: an app or a notebook predicts many times with
    the same weights, and reloading them would cost more than the prediction. A file rewritten in place
    (another modification time or size) is loaded again; the oldest entry goes beyond ``limit`` entries."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: dict[tuple, T] = {}

    def get(self, path: str | os.PathLike | None, options: tuple, load: Callable[[], T]) -> T:
        """The object ``load()`` gives for ``path`` (None: a default the loader knows) and ``options``."""
        stamp = None
        if path is not None and Path(path).is_file():
            stat = Path(path).stat()
            stamp = (str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)
        key = (str(path), stamp, options)
        if key not in self._items:
            if len(self._items) >= self.limit:
                self._items.pop(next(iter(self._items)))
            self._items[key] = load()
        return self._items[key]


def strip_prefix(state_dict: dict[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Drop a DataParallel/DDP ``module.`` prefix from every key that has it."""
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state_dict.items()}
