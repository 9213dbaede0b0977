"""Opening an uploaded image, for either tab: the pixel limit checked before decoding, one-line reasons."""

from __future__ import annotations

import os

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
