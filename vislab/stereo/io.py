"""Readers and writers for the stereo file formats: PFM, KITTI 16-bit disparity PNG, Middlebury calib.txt, images.

Every reader raises ``VislabError`` with one line naming the file when the file is missing or malformed, so a
bad dataset fails loudly at the first sample instead of producing garbage disparities.
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vislab.core.errors import VislabError, require_file

PathLike = str | os.PathLike


# ----------------------------------------------------------------------------------------------- images

def _read_png(path: Path, what: str, decode):
    """Open ``path`` with PIL and return ``decode(image)``; a missing or unreadable file is a VislabError."""
    require_file(path, what)
    try:
        with Image.open(path) as im:
            im.load()
            return decode(im)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise VislabError(f"cannot read {what} {path}: {_first_line(exc)}") from exc


def read_image(path: PathLike) -> np.ndarray:
    """Read a PNG/JPG (grey, RGB, RGBA, 8 or 16 bit) as float32 RGB ``(H, W, 3)`` in [0, 1]."""
    def decode(im: Image.Image) -> np.ndarray:
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            return np.repeat((np.asarray(im, dtype=np.float32) / 65535.0)[..., None], 3, axis=2)
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0

    return np.ascontiguousarray(_read_png(Path(path), "image", decode))


def write_image(path: PathLike, rgb: np.ndarray) -> Path:
    """Write a uint8 ``(H, W)`` or ``(H, W, 3)`` array as PNG (or whatever the suffix says)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(rgb)).save(path)
    return path


def read_mask(path: PathLike) -> np.ndarray:
    """Read an 8-bit mask PNG as a uint8 ``(H, W)`` array (Middlebury/ETH3D ``mask0nocc.png``)."""
    return _read_png(Path(path), "mask", lambda im: np.asarray(im.convert("L"), dtype=np.uint8))


# ----------------------------------------------------------------------------------------------- PFM

_PFM_DIMS = re.compile(rb"^\s*(\d+)\s+(\d+)\s*$")


def read_pfm(path: PathLike) -> np.ndarray:
    """Read a PFM file: ``Pf`` -> float32 ``(H, W)``, ``PF`` -> float32 ``(H, W, 3)``.

    The header is three text lines: ``Pf``/``PF``; ``width height``; a scale whose sign gives the byte
    order (negative = little endian). Rows are stored bottom to top, so they are flipped on reading.
    """
    path = Path(path)
    require_file(path, "PFM file")
    with path.open("rb") as f:
        try:
            kind = f.readline().strip()
            dims = f.readline()
            scale_line = f.readline()
        except OSError as exc:
            raise VislabError(f"cannot read PFM {path}: {_first_line(exc)}") from exc
        if kind not in (b"Pf", b"PF"):
            raise VislabError(f"bad PFM header in {path}: expected 'Pf' or 'PF', found {kind[:16]!r}")
        m = _PFM_DIMS.match(dims)
        if not m:
            raise VislabError(f"bad PFM header in {path}: expected 'width height', found {dims.strip()[:32]!r}")
        width, height = int(m.group(1)), int(m.group(2))
        try:
            scale = float(scale_line.strip())
        except ValueError:
            found = scale_line.strip()[:32]
            raise VislabError(f"bad PFM header in {path}: expected a scale, found {found!r}") from None
        if scale == 0 or width <= 0 or height <= 0:
            raise VislabError(f"bad PFM header in {path}: size {width}x{height}, scale {scale}")
        channels = 3 if kind == b"PF" else 1
        dtype = np.dtype("<f4") if scale < 0 else np.dtype(">f4")
        count = width * height * channels
        raw = f.read(count * 4)
        data = np.frombuffer(raw[: len(raw) // 4 * 4], dtype=dtype)  # a cut mid-float is truncated too
    if data.size != count:
        raise VislabError(f"truncated PFM {path}: expected {count} floats for {width}x{height}x{channels}, "
                          f"found {data.size}")
    shape = (height, width, 3) if channels == 3 else (height, width)
    return np.ascontiguousarray(np.flipud(data.reshape(shape)).astype(np.float32))


def write_pfm(path: PathLike, array: np.ndarray, little_endian: bool = True) -> Path:
    """Write a float ``(H, W)`` or ``(H, W, 3)`` array as PFM (bottom-to-top rows, scale 1)."""
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 2:
        kind = b"Pf"
    elif array.ndim == 3 and array.shape[2] == 3:
        kind = b"PF"
    else:
        raise ValueError(f"PFM holds (H, W) or (H, W, 3) arrays, got shape {array.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = array.shape[:2]
    dtype = "<f4" if little_endian else ">f4"
    scale = b"-1.0" if little_endian else b"1.0"
    with path.open("wb") as f:
        f.write(kind + b"\n" + f"{w} {h}".encode() + b"\n" + scale + b"\n")
        f.write(np.ascontiguousarray(np.flipud(array)).astype(dtype).tobytes())
    return path


# ----------------------------------------------------------------------------------------------- KITTI PNG

def read_kitti_disparity(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a KITTI uint16 disparity PNG: returns ``(disp float32 = value / 256, valid = value > 0)``."""
    path = Path(path)
    mode, arr = _read_png(path, "disparity PNG", lambda im: (im.mode, np.asarray(im)))
    if mode not in ("I;16", "I;16B", "I;16L", "I") or arr.ndim != 2:
        raise VislabError(f"bad KITTI disparity PNG {path}: expected a 16-bit greyscale PNG, found mode {mode}")
    if arr.dtype != np.uint16 and (arr.min() < 0 or arr.max() > 65535):
        raise VislabError(f"bad KITTI disparity PNG {path}: values outside the uint16 range")
    raw = arr.astype(np.float32)
    return raw / 256.0, raw > 0


def write_kitti_disparity(path: PathLike, disp: np.ndarray) -> Path:
    """Write disparity as a KITTI uint16 PNG (value = round(d * 256), clipped; 0, negative, NaN -> 0 = invalid)."""
    disp = np.nan_to_num(np.asarray(disp, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    raw = np.clip(np.round(disp * 256.0), 0, 65535).astype(np.uint16)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(raw).save(path)
    return path


# ----------------------------------------------------------------------------------------------- calib.txt

@dataclass(frozen=True)
class StereoCalibration:
    """Middlebury-style two-view calibration; ``depth = baseline * focal / (disp + doffs)``."""

    cam0: np.ndarray  # 3x3 intrinsics of the left camera
    cam1: np.ndarray  # 3x3 intrinsics of the right camera
    doffs: float      # x-difference of the principal points, cx1 - cx0
    baseline: float   # in the dataset's unit (Middlebury: mm)
    width: int
    height: int
    ndisp: int        # a conservative bound on the disparity range
    extra: dict[str, float]

    @property
    def focal(self) -> float:
        return float(self.cam0[0, 0])

    @property
    def cx(self) -> float:
        return float(self.cam0[0, 2])

    @property
    def cy(self) -> float:
        return float(self.cam0[1, 2])


_CALIB_REQUIRED = ("cam0", "cam1", "doffs", "baseline", "width", "height", "ndisp")


def read_calib(path: PathLike) -> StereoCalibration:
    """Read a Middlebury 2014 / ETH3D ``calib.txt`` (``key=value`` lines; cam matrices as ``[a b c; d e f; g h i]``)."""
    path = Path(path)
    require_file(path, "calibration file")
    values: dict[str, object] = {}
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise VislabError(f"cannot read calibration {path}: {_first_line(exc)}") from exc
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise VislabError(f"bad calibration {path}: line {lineno} is not key=value: {line[:40]!r}")
        key, value = key.strip(), value.strip()
        try:
            if value.startswith("["):
                rows = [r.split() for r in value.strip("[]").split(";")]
                mat = np.array([[float(x) for x in r] for r in rows], dtype=np.float64)
                if mat.shape != (3, 3):
                    raise ValueError(f"expected a 3x3 matrix, found shape {mat.shape}")
                values[key] = mat
            else:
                values[key] = float(value)
        except ValueError as exc:
            raise VislabError(f"bad calibration {path}: cannot parse {key} ({_first_line(exc)})") from exc
    missing = [k for k in _CALIB_REQUIRED if k not in values]
    if missing:
        raise VislabError(f"bad calibration {path}: missing key(s) {', '.join(missing)}")
    for k in ("cam0", "cam1"):
        if not isinstance(values[k], np.ndarray):
            raise VislabError(f"bad calibration {path}: {k} must be a 3x3 matrix [a b c; d e f; g h i]")
    return StereoCalibration(
        cam0=values["cam0"], cam1=values["cam1"], doffs=float(values["doffs"]),  # type: ignore[arg-type]
        baseline=float(values["baseline"]), width=int(values["width"]),  # type: ignore[arg-type]
        height=int(values["height"]), ndisp=int(values["ndisp"]),  # type: ignore[arg-type]
        extra={k: float(v) for k, v in values.items() if k not in _CALIB_REQUIRED},  # type: ignore[arg-type]
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
