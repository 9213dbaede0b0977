"""From disparity to metric 3-D: depth maps, point clouds and PLY files.

For a rectified pair with focal length ``f`` (pixels), baseline ``B`` and principal-point offset
``doffs = cx1 - cx0`` (0 for most datasets, non-zero for Middlebury), depth is ``Z = f * B / (d + doffs)``
in the unit of ``B``; a pixel (u, v) back-projects to ``X = (u - cx) Z / f``, ``Y = (v - cy) Z / f``.
"""

import os
from pathlib import Path

import numpy as np


def disparity_to_depth(disp: np.ndarray, focal: float, baseline: float, doffs: float = 0.0) -> np.ndarray:
    """Depth map (float32, unit of ``baseline``); NaN where ``d + doffs <= 0`` or disparity is not finite."""
    disp = np.asarray(disp, dtype=np.float64)
    denom = disp + doffs
    ok = np.isfinite(denom) & (denom > 0) & np.isfinite(disp)
    depth = np.full(disp.shape, np.nan)
    depth[ok] = focal * baseline / denom[ok]
    return depth.astype(np.float32)


def depth_to_points(depth: np.ndarray, focal: float, cx: float, cy: float) -> np.ndarray:
    """Back-project every pixel: ``(H, W, 3)`` float32 XYZ in the left camera frame (y down, z forward)."""
    h, w = depth.shape
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    z = depth.astype(np.float64)
    return np.stack([(u - cx) * z / focal, (v - cy) * z / focal, z], axis=-1).astype(np.float32)


def discontinuity_mask(disp: np.ndarray, threshold: float = 1.0) -> np.ndarray:
    """True where a pixel's disparity differs from a 4-neighbour's by more than ``threshold`` pixels.

    Such pixels lie on object boundaries where the network interpolates between foreground and background
    ("flying pixels"); dropping them keeps a point cloud free of streaks between surfaces.
    """
    d = np.asarray(disp, dtype=np.float32)
    jump = np.zeros(d.shape, bool)
    dx = np.abs(np.diff(d, axis=1)) > threshold
    dy = np.abs(np.diff(d, axis=0)) > threshold
    jump[:, 1:] |= dx
    jump[:, :-1] |= dx
    jump[1:, :] |= dy
    jump[:-1, :] |= dy
    return jump


def write_ply(path: str | os.PathLike, points: np.ndarray, colors: np.ndarray | None = None,
              binary: bool = True) -> Path:
    """Write ``(N, 3)`` points and optional ``(N, 3)`` uint8 colours as a PLY (binary little endian or ASCII)."""
    points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    has_color = colors is not None
    header = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0", f"element vertex {len(points)}",
              "property float x", "property float y", "property float z"]
    if has_color:
        colors = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
        if len(colors) != len(points):
            raise ValueError(f"{len(points)} points but {len(colors)} colours")
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    header.append("end_header")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")] + ([("r", "u1"), ("g", "u1"), ("b", "u1")] if has_color else [])
    rec = np.empty(len(points), dtype=fields)
    rec["x"], rec["y"], rec["z"] = points[:, 0], points[:, 1], points[:, 2]
    if has_color:
        rec["r"], rec["g"], rec["b"] = colors[:, 0], colors[:, 1], colors[:, 2]
    with path.open("wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        if binary:
            f.write(rec.tobytes())
        else:
            fmt = "%.6g %.6g %.6g" + (" %d %d %d" if has_color else "")
            np.savetxt(f, np.column_stack([rec[n] for n, _ in fields]), fmt=fmt)
    return path


def read_ply(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Read back a PLY written by ``write_ply`` (binary or ASCII): ``(points (N, 3), colours (N, 3) or None)``."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    n = int(next(line.split()[2] for line in header if line.startswith("element vertex")))
    has_color = any(line.endswith(" red") for line in header)
    binary = any("binary_little_endian" in line for line in header)
    if binary:
        fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")] + ([("r", "u1"), ("g", "u1"), ("b", "u1")]
                                                               if has_color else [])
        rec = np.frombuffer(data[end:], dtype=fields, count=n)
        pts = np.stack([rec["x"], rec["y"], rec["z"]], axis=1)
        cols = np.stack([rec["r"], rec["g"], rec["b"]], axis=1) if has_color else None
    else:
        table = np.loadtxt(data[end:].decode("ascii").splitlines(), ndmin=2) if n else np.zeros((0, 6))
        pts = table[:, :3].astype(np.float32)
        cols = table[:, 3:6].astype(np.uint8) if has_color else None
    return pts, cols
