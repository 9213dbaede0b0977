"""Files in and out of the app: an upload opened with the pixel limit checked before decoding and one-line
reasons; result images written as PNG files Gradio can serve safely under concurrent requests."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
from PIL import Image

from vislab.core.errors import VislabError


def open_upload(path: str | os.PathLike, *, max_pixels: int, name: str, described: str, advice: str) -> Image.Image:
    """The decoded image at ``path`` (a copy that outlives the temporary upload).

    VislabError, one line, when it has more than ``max_pixels`` pixels (checked from the header, before
    decoding: "``name`` is WxH pixels, ...") or cannot be decoded ("``described`` is not an image this page
    can read (...); ``advice``").
    """
    try:
        with Image.open(path) as img:
            if img.width * img.height > max_pixels:
                raise VislabError(f"{name} is {img.width}x{img.height} pixels, more than this page reads "
                                  f"({max_pixels // 1_000_000} MP); send a smaller one")
            img.load()
            return img.copy()
    except VislabError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise VislabError(f"{described} is not an image this page can read ({type(exc).__name__}); {advice}"
                          ) from None


class ImageFiles:
    """Result images handed to Gradio as PNG files written here, each atomically and only once.

    Why not arrays: Gradio saves an array under a name derived from its pixels and rewrites that file on every
    request that produces the same image (truncate, then write). Under a burst of identical requests (a class
    drawing the same digit, the same example clicked at once) one request's download then reads a file that
    another request has just truncated, and the server fails it with "Too little data for declared
    Content-Length". A file path instead is copied into Gradio's cache under a temporary name and renamed into
    place, never rewritten; these source files are written the same way. The folder keeps the ``keep`` newest
    files (Gradio has copied each one as soon as its request returned) and is removed by :meth:`close`.
    """

    def __init__(self, keep: int = 256) -> None:
        self.folder = tempfile.mkdtemp(prefix="vislab_app_")
        self.keep = keep
        self._files: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def png(self, image: Any) -> str | None:
        """The path of a PNG of ``image`` (uint8 (H, W) or (H, W, 3) array), or None for None."""
        if image is None:
            return None
        buffer = io.BytesIO()
        # The fastest compression level: the page waits for these files (0.07 instead of 0.2 s for four of the
        # Motorcycle pair's maps), and they only travel to the browser, about a fifth larger.
        Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG", compress_level=1)
        data = buffer.getvalue()
        path = os.path.join(self.folder, hashlib.blake2b(data, digest_size=16).hexdigest() + ".png")
        with self._lock:
            if path not in self._files:
                fd, staging = tempfile.mkstemp(dir=self.folder, suffix=".part")
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(staging, path)
            self._files[path] = None
            self._files.move_to_end(path)
            while len(self._files) > self.keep:
                old, _ = self._files.popitem(last=False)
                with contextlib.suppress(OSError):
                    os.remove(old)
        return path

    def close(self) -> None:
        """Remove the folder and everything in it."""
        shutil.rmtree(self.folder, ignore_errors=True)
