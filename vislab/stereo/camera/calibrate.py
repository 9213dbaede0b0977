"""Stereo calibration from chessboard (or ChArUco) photo pairs (``vislab stereo calibrate``).

Each camera is calibrated on its own first (``cv2.calibrateCamera``: intrinsics and distortion from every view
in which it found the board), then ``cv2.stereoCalibrate`` refines both with the rotation and translation
between them from the pairs in which both found it. Fitting the intrinsics jointly from scratch would let an
error in one camera's focal length leak into the baseline; starting from the single-camera fits does not.
The radial term k3 is fixed at 0: with the 10-20 views people take it is poorly determined and tends to run
away at the image corners.
"""

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from vislab.core.errors import VislabError
from vislab.stereo.camera.calibfiles import RigCalibration

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# Fewer usable pairs than this cannot pin down 2 x 9 intrinsics, 5 distortion terms and 6 of pose.
MIN_PAIRS = 5


@dataclass
class CalibrationResult:
    """The calibrated rig (``rig.rms`` is stereoCalibrate's RMS reprojection error, px), the number of pairs
    used and ``skipped``: (file name, why) for every pair that could not be used."""

    rig: RigCalibration
    used: int
    skipped: list[tuple[str, str]] = field(default_factory=list)


def list_pairs(left_dir: str | Path, right_dir: str | Path) -> list[tuple[Path, Path]]:
    """Image pairs matched by file name (without suffix) in two folders; a one-line error when a folder is
    missing or empty or when the names do not match."""
    folders = [Path(left_dir), Path(right_dir)]
    listed = []
    for folder, which in zip(folders, ("left", "right"), strict=True):
        if not folder.is_dir():
            raise VislabError(f"{which} folder not found: {folder}")
        files = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()}
        if not files:
            raise VislabError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in the {which} folder {folder}")
        listed.append(files)
    left, right = listed
    only_left, only_right = sorted(set(left) - set(right)), sorted(set(right) - set(left))
    if only_left or only_right:
        def some(names: list[str]) -> str:
            return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")

        parts = ([f"{len(only_left)} only in {folders[0]} ({some(only_left)})"] if only_left else []) + \
                ([f"{len(only_right)} only in {folders[1]} ({some(only_right)})"] if only_right else [])
        raise VislabError(f"the folders' images do not pair up by name: {'; '.join(parts)}")
    return [(left[k], right[k]) for k in sorted(left)]


def read_grey(path: Path) -> np.ndarray | None:
    """uint8 grey image, or None when the file is not a readable image (the caller says which was skipped)."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


def find_board(grey: np.ndarray, board: tuple[int, int]) -> np.ndarray | None:
    """Chessboard inner corners (N, 1, 2) float32, refined to a fraction of a pixel; None when not found."""
    flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
    found, corners = cv2.findChessboardCorners(grey, board, flags=flags)
    if not found or corners is None:
        return None
    # The refinement window must stay inside one square: half the smallest corner spacing, at most 11 px.
    grid = corners.reshape(board[1], board[0], 2)
    spacing = min(np.linalg.norm(np.diff(grid, axis=0), axis=2).min(), np.linalg.norm(np.diff(grid, axis=1),
                                                                                   axis=2).min())
    win = int(max(2, min(11, spacing / 2 - 1)))
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-4)
    return cv2.cornerSubPix(grey, corners, (win, win), (-1, -1), criteria)


@dataclass(frozen=True)
class Charuco:
    """A ChArUco board (a chessboard with ArUco markers in its white squares): ``marker`` side in metres and
    OpenCV's dictionary name. With it, ``board`` counts *squares* (OpenCV's ``CharucoBoard`` convention), and a
    view counts when both cameras see at least ``MIN_CHARUCO`` of the same corners: a partly hidden board works."""

    marker: float
    dictionary: str = "DICT_4X4_50"

    def board(self, board: tuple[int, int], square: float) -> "cv2.aruco.CharucoBoard":
        names = sorted(n for n in dir(cv2.aruco) if n.startswith("DICT_") and "ARUCO_MIP" not in n)
        if self.dictionary not in names:
            raise VislabError(f"unknown ArUco dictionary {self.dictionary!r}; e.g. {', '.join(names[:4])}")
        if not 0 < self.marker < square:
            raise VislabError(f"the ArUco marker ({self.marker * 1000:g} mm) must be smaller than the square "
                              f"({square * 1000:g} mm)")
        if min(board) < 3:
            raise VislabError(f"a ChArUco board needs at least 3x3 squares; got {board[0]}x{board[1]}")
        d = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))
        return cv2.aruco.CharucoBoard(board, square, self.marker, d)


MIN_CHARUCO = 6  # corners both views share; fewer do not constrain a pose


def find_charuco(grey: np.ndarray, detector: "cv2.aruco.CharucoDetector") -> tuple[np.ndarray, np.ndarray] | None:
    """(ids (N,), corners (N, 1, 2) float32) of the ChArUco corners found, or None when fewer than MIN_CHARUCO."""
    corners, ids, _, _ = detector.detectBoard(grey)
    if corners is None or ids is None or len(ids) < MIN_CHARUCO:
        return None
    return ids.ravel(), np.asarray(corners, np.float32).reshape(-1, 1, 2)


def board_points(board: tuple[int, int], square: float) -> np.ndarray:
    """The board's inner corners in its own plane (z = 0), row by row as OpenCV orders them, in metres."""
    cols, rows = board
    grid = np.mgrid[0:cols, 0:rows].T.reshape(-1, 2).astype(np.float32)
    return np.c_[grid * square, np.zeros(len(grid), np.float32)].astype(np.float32)


def _same_order(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``b`` in the corner order of ``a``: a symmetric-looking view can be detected from the opposite corner,
    which would pair every corner with the wrong one; the first-to-last direction tells."""
    da = a.reshape(-1, 2)[-1] - a.reshape(-1, 2)[0]
    db = b.reshape(-1, 2)[-1] - b.reshape(-1, 2)[0]
    return b[::-1].copy() if float(da @ db) < 0 else b


def calibrate_pairs(pairs: list[tuple[str, np.ndarray | None, np.ndarray | None]], board: tuple[int, int],
                    square: float, charuco: Charuco | None = None) -> CalibrationResult:
    """Calibrate from (name, left grey, right grey) pairs (None: an unreadable image); ``board`` is the
    chessboard's inner corners, or with ``charuco`` the ChArUco board's squares."""
    obj = board_points(board, square)
    if charuco is not None:
        charuco_board = charuco.board(board, square)
        detector = cv2.aruco.CharucoDetector(charuco_board)
        corner_xyz = np.asarray(charuco_board.getChessboardCorners(), np.float32).reshape(-1, 3)
    what = f"{board[0]}x{board[1]} {'ChArUco ' if charuco else ''}board"
    size: tuple[int, int] | None = None
    used_obj, used_l, used_r, skipped = [], [], [], []
    for name, left, right in pairs:
        if left is None or right is None:
            skipped.append((name, "not a readable image"))
            continue
        if left.shape != right.shape:
            skipped.append((name, f"left and right sizes differ ({left.shape[1]}x{left.shape[0]} and "
                                  f"{right.shape[1]}x{right.shape[0]})"))
            continue
        this = (left.shape[1], left.shape[0])
        if size is None:
            size = this
        elif this != size:
            skipped.append((name, f"{this[0]}x{this[1]}, not {size[0]}x{size[1]} like the first pair"))
            continue
        if charuco is not None:
            fl, fr = find_charuco(left, detector), find_charuco(right, detector)
        else:
            fl, fr = find_board(left, board), find_board(right, board)
        if fl is None or fr is None:
            where = "either image" if fl is None and fr is None else ("the left image" if fl is None else
                                                                     "the right image")
            skipped.append((name, f"no {what} found in {where}"))
            continue
        if charuco is not None:
            (ids_l, cl), (ids_r, cr) = fl, fr
            common = np.intersect1d(ids_l, ids_r)
            if len(common) < MIN_CHARUCO:
                skipped.append((name, f"the two views share only {len(common)} ChArUco corners"))
                continue
            pick_l = np.array([np.flatnonzero(ids_l == i)[0] for i in common])
            pick_r = np.array([np.flatnonzero(ids_r == i)[0] for i in common])
            used_obj.append(corner_xyz[common])
            used_l.append(cl[pick_l])
            used_r.append(cr[pick_r])
            continue
        used_obj.append(obj)
        used_l.append(fl)
        used_r.append(_same_order(fl, fr))
    if len(used_obj) < MIN_PAIRS:
        reasons = "; ".join(f"{n}: {why}" for n, why in skipped[:2])
        hint = ("--board (squares, e.g. 7x5), --marker and --dictionary" if charuco else
                "--board (inner corners, e.g. 9x6 for a 10x7-square board)")
        raise VislabError(f"a {what} was found in both images of only {len(used_obj)} pairs (needs {MIN_PAIRS})"
                          + (f"; e.g. {reasons}" if reasons else "") + f". Check {hint}")
    assert size is not None
    flags = cv2.CALIB_FIX_K3
    _, k1, d1, _, _ = cv2.calibrateCamera(used_obj, used_l, size, None, None, flags=flags)
    _, k2, d2, _, _ = cv2.calibrateCamera(used_obj, used_r, size, None, None, flags=flags)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 200, 1e-9)
    rms, k1, d1, k2, d2, r, t, _, _ = cv2.stereoCalibrate(
        used_obj, used_l, used_r, k1, d1, k2, d2, size, flags=cv2.CALIB_USE_INTRINSIC_GUESS | flags,
        criteria=criteria)
    rig = RigCalibration(k1, d1.ravel(), k2, d2.ravel(), r, t.ravel(), size[0], size[1], unit="m", rms=float(rms))
    return CalibrationResult(rig, len(used_obj), skipped)


def calibrate_folders(left_dir: str | Path, right_dir: str | Path, *, board: tuple[int, int],
                      square: float, charuco: Charuco | None = None) -> CalibrationResult:
    """``calibrate_pairs`` on the images of two folders, paired by name; ``square`` in metres."""
    if charuco is not None:
        charuco.board(board, square)  # a bad dictionary or marker size fails before any image is read
    pairs = list_pairs(left_dir, right_dir)
    return calibrate_pairs([(lp.name, read_grey(lp), read_grey(rp)) for lp, rp in pairs], board, square, charuco)
