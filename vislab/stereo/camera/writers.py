"""Atomic writers for what the own-camera commands produce: every file is written to a temporary name beside
it and renamed into place, so an interrupted run never leaves a half-written image, array or calibration."""

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vislab.core.checkpoint import write_atomic
from vislab.core.errors import VislabError


def _atomic(path: Path, data: bytes) -> Path:
    try:
        return write_atomic(path, lambda f: f.write(data))
    except OSError as exc:
        raise VislabError(f"cannot write {path}: {exc.strerror or exc}") from None


def save_png(path: Path, image: np.ndarray) -> Path:
    """uint8 image, or float RGB in [0, 1], as PNG."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img)).save(buf, format="PNG")
    return _atomic(path, buf.getvalue())


def save_npy(path: Path, array: np.ndarray) -> Path:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array, dtype=np.float32))
    return _atomic(path, buf.getvalue())


def save_json(path: Path, obj: Any) -> Path:
    return _atomic(path, (json.dumps(obj, indent=2, default=_plain) + "\n").encode())


def _plain(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    return str(o)


def middlebury_calib_text(camera: Any, width: int, height: int, unit: str, ndisp: int = 192) -> str:
    """A Middlebury-style ``calib.txt`` for a rectified camera, baseline in mm as Middlebury's own files have it
    (so ``predict --calib`` on the rectified pair gives depth in mm)."""
    scale = {"m": 1000.0, "mm": 1.0, "cm": 10.0}.get(unit)
    if scale is None:
        raise VislabError(f"cannot write a calib.txt for a baseline in {unit!r}")
    k0 = f"[{camera.focal:.6f} 0 {camera.cx:.6f}; 0 {camera.focal:.6f} {camera.cy:.6f}; 0 0 1]"
    k1 = f"[{camera.focal:.6f} 0 {camera.cx + camera.doffs:.6f}; 0 {camera.focal:.6f} {camera.cy:.6f}; 0 0 1]"
    return (f"cam0={k0}\ncam1={k1}\ndoffs={camera.doffs:.6f}\nbaseline={camera.baseline * scale:.6f}\n"
            f"width={width}\nheight={height}\nndisp={ndisp}\n")


def write_rectified_pair(out: Path, stem: str, prepared: Any) -> list[Path]:
    """``{stem}_left.png``, ``{stem}_right.png``, ``calib.txt`` (when the camera is metric) and
    ``{stem}_checks.json`` into ``out``."""
    h, w = prepared.left.shape[:2]
    written = [save_png(out / f"{stem}_left.png", prepared.left), save_png(out / f"{stem}_right.png", prepared.right)]
    if prepared.camera is not None and prepared.unit in ("m", "mm", "cm"):
        written.append(_atomic(out / "calib.txt",
                               middlebury_calib_text(prepared.camera, w, h, prepared.unit).encode()))
    written.append(save_json(out / f"{stem}_checks.json", prepared.report()))
    return written
