"""Stereo calibration files in the common formats, read into one typed form; and vislab's own, written.

* OpenCV YAML/XML/JSON (``cv2.FileStorage``): ``K1 D1 K2 D2 R T`` (``M1``/``M2`` accepted for the intrinsics, as
  OpenCV's stereo sample names them), ``image_width``/``image_height``; what ``vislab stereo calibrate`` writes,
  with ``rms`` and ``units`` too. ``R, T`` map left-camera to right-camera coordinates: ``X2 = R X1 + T``.
* KITTI ``calib_cam_to_cam.txt``: cameras 02/03 (the colour pair; 00/01 when those are missing). Images of the
  rectified size ``S_rect_02`` are taken as rectified already (``P_rect_02/03`` give focal, principal point and
  baseline); images of the raw size ``S_02`` are rectified from ``K, D, R, T``.
* Middlebury ``calib.txt`` (``cam0=[...]``, ``baseline=``, ``doffs=``): rectified already, baseline in mm.
* ROS ``camera_info`` YAML, one file per camera (``camera_matrix``, ``distortion_coefficients``,
  ``rectification_matrix``, ``projection_matrix``): rectified with the files' own R and P, as ROS does; the
  baseline is ``-P_right[0, 3] / P_right[0, 0]``.

Every reader raises ``VislabError`` with one line naming the file when it is missing, unparsable, or holds
values no camera can have (a non-positive focal length, a rotation that is not one, NaN).
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vislab.core.checkpoint import write_atomic
from vislab.core.errors import VislabError, require_file

PathLike = str | os.PathLike


@dataclass(frozen=True)
class RigCalibration:
    """A stereo rig that still has to be rectified: intrinsics ``k1, k2`` (3x3), distortion ``d1, d2``
    (OpenCV's order k1 k2 p1 p2 [k3 ...]), ``r`` (3x3) and ``t`` (3,) with ``X_right = r X_left + t`` in ``unit``,
    the image size the intrinsics are for, and the calibration's RMS reprojection error (px) when known.

    ``rect``: the rectification a file prescribes, ``(R1, R2, P1, P2)`` (ROS camera_info); None means
    ``cv2.stereoRectify`` computes it.
    """

    k1: np.ndarray
    d1: np.ndarray
    k2: np.ndarray
    d2: np.ndarray
    r: np.ndarray
    t: np.ndarray
    width: int
    height: int
    unit: str = "m"
    rms: float | None = None
    rect: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def baseline(self) -> float:
        return float(np.linalg.norm(self.t))


@dataclass(frozen=True)
class RectifiedCamera:
    """A rectified pair's camera (the images need no warping): depth = focal * baseline / (d + doffs)."""

    focal: float
    baseline: float
    doffs: float
    cx: float
    cy: float
    width: int | None
    height: int | None
    unit: str


@dataclass(frozen=True)
class LoadedCalibration:
    """A calibration file (or a ROS pair) read: exactly one of ``rig`` and ``rectified`` is set."""

    source: str
    format: str
    rig: RigCalibration | None = None
    rectified: RectifiedCamera | None = None


def read_calibration(paths: PathLike | list[PathLike] | tuple[PathLike, ...],
                     image_size: tuple[int, int] | None = None) -> LoadedCalibration:
    """Read one calibration file (OpenCV, KITTI, Middlebury; the format is told from the content) or two ROS
    ``camera_info`` files (left, right). ``image_size`` (width, height) picks KITTI's rectified or raw
    cameras."""
    items = [Path(p) for p in ([paths] if isinstance(paths, str | os.PathLike) else list(paths))]
    if not items or len(items) > 2:
        raise VislabError(f"--calib takes one file, or two ROS camera_info files (left right); got {len(items)}")
    for p in items:
        require_file(p, "calibration file")
    texts = [_read_text(p) for p in items]
    if len(items) == 2:
        if not all(_looks_ros(t) for t in texts):
            raise VislabError(f"two calibration files must be ROS camera_info YAML (left, right): "
                              f"{items[0]}, {items[1]}")
        return LoadedCalibration(f"{items[0]},{items[1]}", "ros", rig=_read_ros_pair(items, texts))
    path, text = items[0], texts[0]
    if _looks_ros(text):
        raise VislabError(f"{path} is a ROS camera_info file for one camera: give both, --calib LEFT.yaml RIGHT.yaml")
    if "S_rect_0" in text or "P_rect_0" in text or "calib_time" in text:
        return _read_kitti(path, text, image_size)
    if "cam0=" in text.replace(" ", ""):
        return LoadedCalibration(str(path), "middlebury", rectified=_read_middlebury(path))
    return LoadedCalibration(str(path), "opencv", rig=_read_opencv(path))


# ----------------------------------------------------------------------------------------------- helpers

def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise VislabError(f"cannot read calibration {path}: {exc.strerror or exc}") from None
    if not data.strip():
        raise VislabError(f"bad calibration {path}: the file is empty")
    if len(data) > 10_000_000:  # calibrations are a few kB; refuse to parse a big blob
        raise VislabError(f"bad calibration {path}: {len(data)} bytes is not a calibration file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise VislabError(f"bad calibration {path}: not a text file") from None


def _looks_ros(text: str) -> bool:
    return "camera_matrix" in text and "projection_matrix" in text


def _check_matrix(path: PathLike, name: str, m: object, shape: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(m, dtype=np.float64) if m is not None else None
    if a is None or a.size != int(np.prod(shape)):
        found = "nothing" if a is None else f"{a.size} values"
        raise VislabError(f"bad calibration {path}: {name} must hold {int(np.prod(shape))} values, found {found}")
    a = a.reshape(shape)
    if not np.isfinite(a).all():
        raise VislabError(f"bad calibration {path}: {name} holds a value that is not a finite number")
    return a


def _check_intrinsics(path: PathLike, name: str, k: np.ndarray) -> np.ndarray:
    if k[0, 0] <= 0 or k[1, 1] <= 0 or abs(k[2, 2] - 1) > 1e-6 or np.any(k[2, :2] != 0) or k[1, 0] != 0:
        raise VislabError(f"bad calibration {path}: {name} is not a camera matrix [fx 0 cx; 0 fy cy; 0 0 1] with "
                          "positive focal lengths")
    return k


def _check_rotation(path: PathLike, name: str, r: np.ndarray) -> np.ndarray:
    if r.shape == (3, 1) or r.shape == (1, 3):  # a Rodrigues vector, as some tools store it
        r = cv2.Rodrigues(r.reshape(3, 1))[0]
    if np.abs(r @ r.T - np.eye(3)).max() > 1e-3 or np.linalg.det(r) < 0:
        raise VislabError(f"bad calibration {path}: {name} is not a rotation matrix")
    return r


def _check_distortion(path: PathLike, name: str, d: object) -> np.ndarray:
    a = np.zeros(5) if d is None else np.asarray(d, dtype=np.float64).ravel()
    if a.size not in (4, 5, 8, 12, 14) or not np.isfinite(a).all():
        raise VislabError(f"bad calibration {path}: {name} must hold 4, 5, 8, 12 or 14 finite coefficients, "
                          f"found {a.size}")
    return a


def _check_size(path: PathLike, width: float, height: float) -> tuple[int, int]:
    if not (np.isfinite(width) and np.isfinite(height)) or width < 1 or height < 1 or width > 1e5 or height > 1e5:
        raise VislabError(f"bad calibration {path}: image size {width}x{height}")
    return int(width), int(height)


# ----------------------------------------------------------------------------------------------- OpenCV

def _open_storage(path: Path, text: str | None = None) -> "cv2.FileStorage":
    """A FileStorage on ``path`` (or on ``text`` in memory); OpenCV's parse errors become one-line VislabErrors."""
    try:
        if text is None:
            fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
        else:
            fs = cv2.FileStorage(text, cv2.FILE_STORAGE_READ | cv2.FILE_STORAGE_MEMORY)
    except (cv2.error, SystemError) as exc:  # the binding wraps cv2.error in SystemError
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        detail = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
        detail = re.sub(r"^.*error: \([^)]*\)\s*", "", detail)  # drop OpenCV's version and source location
        raise VislabError(f"bad calibration {path}: cannot parse it ({detail[:160]})") from None
    if not fs.isOpened():
        raise VislabError(f"bad calibration {path}: not a YAML, XML or JSON file OpenCV can read")
    return fs


def _node_matrix(fs: "cv2.FileStorage", *names: str) -> np.ndarray | None:
    for name in names:
        node = fs.getNode(name)
        if not node.isNone():
            try:
                if node.isSeq():
                    return np.array([node.at(i).real() for i in range(node.size())], np.float64)
                m = node.mat()
            except (cv2.error, SystemError):
                return None
            return None if m is None else np.asarray(m, np.float64)
    return None


def _node_number(fs: "cv2.FileStorage", name: str) -> float | None:
    node = fs.getNode(name)
    if node.isNone() or not (node.isInt() or node.isReal()):
        return None
    return float(node.real())


def _read_opencv(path: Path) -> RigCalibration:
    fs = _open_storage(path)
    try:
        k1 = _check_intrinsics(path, "K1", _check_matrix(path, "K1", _node_matrix(fs, "K1", "M1",
                                                                               "cameraMatrix1"), (3, 3)))
        k2 = _check_intrinsics(path, "K2", _check_matrix(path, "K2", _node_matrix(fs, "K2", "M2",
                                                                               "cameraMatrix2"), (3, 3)))
        d1 = _check_distortion(path, "D1", _node_matrix(fs, "D1", "distCoeffs1"))
        d2 = _check_distortion(path, "D2", _node_matrix(fs, "D2", "distCoeffs2"))
        r_raw = _node_matrix(fs, "R")
        r = _check_rotation(path, "R", _check_matrix(path, "R", r_raw, (3, 1) if r_raw is not None
                                                     and r_raw.size == 3 else (3, 3)))
        t = _check_matrix(path, "T", _node_matrix(fs, "T"), (3,))
        width, height = _node_number(fs, "image_width"), _node_number(fs, "image_height")
        size = _node_matrix(fs, "imageSize", "image_size")
        unit_node = fs.getNode("units")
        unit = unit_node.string() if not unit_node.isNone() and unit_node.isString() else "m"
        rms = _node_number(fs, "rms")
    finally:
        fs.release()
    if (width is None or height is None) and size is not None and size.size == 2:
        width, height = float(size.ravel()[0]), float(size.ravel()[1])
    if width is None or height is None:
        raise VislabError(f"bad calibration {path}: no image size (image_width and image_height)")
    w, h = _check_size(path, width, height)
    if not np.linalg.norm(t) > 0:
        raise VislabError(f"bad calibration {path}: T is zero (the two cameras in one place)")
    return RigCalibration(k1, d1, k2, d2, r, t, w, h, unit=unit or "m", rms=rms)


def write_opencv_calibration(path: PathLike, rig: RigCalibration) -> Path:
    """Write ``rig`` as OpenCV YAML (readable by ``cv2.FileStorage`` and by ``read_calibration``), atomically."""
    path = Path(path)
    if path.suffix.lower() not in (".yaml", ".yml", ".xml", ".json"):
        raise VislabError(f"calibration file {path}: give a .yaml, .yml, .xml or .json name")
    tmp_dir = path.parent if str(path.parent) else Path(".")

    def write(f) -> None:
        # FileStorage writes by name only; write a scratch file beside the target, then copy its bytes in.
        scratch = tmp_dir / f".{path.stem}.scratch{path.suffix}"
        try:
            fs = cv2.FileStorage(str(scratch), cv2.FILE_STORAGE_WRITE)
            for name, value in (("K1", rig.k1), ("D1", rig.d1.reshape(1, -1)), ("K2", rig.k2),
                                ("D2", rig.d2.reshape(1, -1)), ("R", rig.r), ("T", rig.t.reshape(3, 1))):
                fs.write(name, np.asarray(value, np.float64))
            fs.write("image_width", int(rig.width))
            fs.write("image_height", int(rig.height))
            fs.write("units", rig.unit)
            if rig.rms is not None:
                fs.write("rms", float(rig.rms))
            fs.release()
            f.write(scratch.read_bytes())
        finally:
            scratch.unlink(missing_ok=True)

    try:
        return write_atomic(path, write)
    except OSError as exc:
        raise VislabError(f"cannot write {path}: {exc.strerror or exc}") from None


# ----------------------------------------------------------------------------------------------- ROS

def _read_ros_one(path: Path, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    body = text if text.lstrip().startswith("%YAML") else "%YAML:1.0\n" + text
    fs = _open_storage(path, body)
    try:
        def data(name: str) -> np.ndarray | None:
            node = fs.getNode(name)
            if node.isNone():
                return None
            inner = node.getNode("data") if node.isMap() else node
            if inner.isNone() or not inner.isSeq():
                return None
            values = [inner.at(i) for i in range(inner.size())]
            if not all(v.isInt() or v.isReal() for v in values):
                return None
            return np.array([v.real() for v in values], np.float64)

        k = _check_intrinsics(path, "camera_matrix",
                              _check_matrix(path, "camera_matrix", data("camera_matrix"), (3, 3)))
        d = _check_distortion(path, "distortion_coefficients", data("distortion_coefficients"))
        r = _check_rotation(path, "rectification_matrix",
                            _check_matrix(path, "rectification_matrix", data("rectification_matrix"), (3, 3)))
        p = _check_matrix(path, "projection_matrix", data("projection_matrix"), (3, 4))
        width, height = _node_number(fs, "image_width"), _node_number(fs, "image_height")
    finally:
        fs.release()
    if width is None or height is None:
        raise VislabError(f"bad calibration {path}: no image_width / image_height")
    if p[0, 0] <= 0 or p[1, 1] <= 0:
        raise VislabError(f"bad calibration {path}: projection_matrix has a non-positive focal length")
    return k, d, r, p, _check_size(path, width, height)


def _read_ros_pair(paths: list[Path], texts: list[str]) -> RigCalibration:
    k1, d1, r1, p1, size1 = _read_ros_one(paths[0], texts[0])
    k2, d2, r2, p2, size2 = _read_ros_one(paths[1], texts[1])
    if size1 != size2:
        raise VislabError(f"ROS camera_info files disagree on the image size: {size1} and {size2}")
    if p1[0, 3] != 0 and p2[0, 3] == 0:
        raise VislabError(f"{paths[0]} is the right camera (its projection_matrix has the baseline term): give "
                          "the left camera's file first")
    tx = -p2[0, 3] / p2[0, 0]  # the right camera's x offset, in the rectified left frame (ROS: metres)
    if not tx > 0:
        raise VislabError(f"bad calibration {paths[1]}: projection_matrix[0][3] must be -fx * baseline < 0 for the "
                          "right camera of a horizontal pair")
    # ROS's R_i turns camera i's frame into its rectified frame, and the two rectified frames differ by a pure x
    # translation: X_rect2 = X_rect1 - (tx, 0, 0). In the raw frames that is X2 = (R2^T R1) X1 - R2^T (tx, 0, 0).
    r = r2.T @ r1
    t = r2.T @ np.array([-tx, 0.0, 0.0])
    return RigCalibration(k1, d1, k2, d2, r, t, size1[0], size1[1], unit="m", rect=(r1, r2, p1, p2))


# ----------------------------------------------------------------------------------------------- KITTI

def _read_kitti(path: Path, text: str, image_size: tuple[int, int] | None) -> LoadedCalibration:
    values: dict[str, np.ndarray] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, rest = line.partition(":")
        if not sep:
            raise VislabError(f"bad calibration {path}: line {lineno} is not 'KEY: values': {line[:40]!r}")
        if key.strip() == "calib_time":
            continue
        try:
            values[key.strip()] = np.array([float(x) for x in rest.split()], np.float64)
        except ValueError:
            raise VislabError(f"bad calibration {path}: line {lineno} ({key.strip()}) holds a value that is not "
                              "a number") from None
    a, b = ("02", "03") if "P_rect_02" in values or "K_02" in values else ("00", "01")

    def get(name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name not in values:
            raise VislabError(f"bad calibration {path}: missing {name}")
        return _check_matrix(path, name, values[name], shape)

    rect_size = _check_size(path, *get(f"S_rect_{a}", (2,))) if f"S_rect_{a}" in values else None
    raw_size = _check_size(path, *get(f"S_{a}", (2,))) if f"S_{a}" in values else None
    use_raw = image_size is not None and raw_size is not None and tuple(image_size) == raw_size \
        and tuple(image_size) != rect_size
    if not use_raw:
        if image_size is not None and rect_size is not None and tuple(image_size) != rect_size:
            sizes = f"rectified {rect_size[0]}x{rect_size[1]}" + (
                f" or raw {raw_size[0]}x{raw_size[1]}" if raw_size else "")
            raise VislabError(f"calibration {path} is for {sizes} images (cameras {a}/{b}); the pair is "
                              f"{image_size[0]}x{image_size[1]}")
        pa, pb = get(f"P_rect_{a}", (3, 4)), get(f"P_rect_{b}", (3, 4))
        f = pa[0, 0]
        if f <= 0:
            raise VislabError(f"bad calibration {path}: P_rect_{a} has a non-positive focal length")
        baseline = (pa[0, 3] - pb[0, 3]) / f  # P_rect[0, 3] = -f * (camera's x offset from camera 0)
        if not baseline > 0:
            raise VislabError(f"bad calibration {path}: camera {b} is not to the right of camera {a}")
        w, h = rect_size if rect_size else (None, None)
        return LoadedCalibration(str(path), "kitti", rectified=RectifiedCamera(
            f, baseline, pb[0, 2] - pa[0, 2], pa[0, 2], pa[1, 2], w, h, "m"))
    ka = _check_intrinsics(path, f"K_{a}", get(f"K_{a}", (3, 3)))
    kb = _check_intrinsics(path, f"K_{b}", get(f"K_{b}", (3, 3)))
    ra = _check_rotation(path, f"R_{a}", get(f"R_{a}", (3, 3)))
    rb = _check_rotation(path, f"R_{b}", get(f"R_{b}", (3, 3)))
    ta, tb = get(f"T_{a}", (3,)), get(f"T_{b}", (3,))
    # KITTI's R_x, T_x map camera 0 to camera x (X_x = R_x X_0 + T_x); between a and b: X_b = R X_a + T.
    r = rb @ ra.T
    t = tb - r @ ta
    rig = RigCalibration(ka, _check_distortion(path, f"D_{a}", values.get(f"D_{a}")), kb,
                         _check_distortion(path, f"D_{b}", values.get(f"D_{b}")), r, t, raw_size[0], raw_size[1],
                         unit="m")
    return LoadedCalibration(str(path), "kitti", rig=rig)


# ----------------------------------------------------------------------------------------------- Middlebury

def _read_middlebury(path: Path) -> RectifiedCamera:
    from vislab.stereo.io import read_calib

    c = read_calib(path)
    if c.focal <= 0 or c.baseline <= 0:
        raise VislabError(f"bad calibration {path}: focal length and baseline must be positive")
    return RectifiedCamera(c.focal, c.baseline, c.doffs, c.cx, c.cy, c.width, c.height, "mm")
