"""Known virtual rigs for testing rectification and calibration against exact answers.

* :func:`unrectify` takes a rectified synthetic scene (exact disparity) and turns the right camera by a small
  rotation and shifts its principal point vertically. Both are homographies of the right image
  (``K2 R K^-1``), exact for any scene, so the un-rectified pair and its calibration are exact too.
* :func:`disparity_in_original_frame` pulls a disparity predicted on a re-rectified pair back onto the original
  left grid through the rectifying homographies, where the scene's exact disparity can score it.
* :func:`render_chessboard_views` renders a chessboard through a rig with lens distortion (anti-aliased), for
  calibrating back a rig whose parameters are known.
"""

from dataclasses import dataclass

import cv2
import numpy as np

from vislab.stereo.camera.calibfiles import RigCalibration


@dataclass(frozen=True)
class UnrectifiedPair:
    """``left`` as rendered, ``right`` turned; ``calibration`` describes that rig exactly; ``right_warp`` maps the
    original right view's pixels to the turned one's."""

    left: np.ndarray
    right: np.ndarray
    calibration: RigCalibration
    right_warp: np.ndarray


def intrinsics(width: int, height: int, focal: float) -> np.ndarray:
    return np.array([[focal, 0, (width - 1) / 2], [0, focal, (height - 1) / 2], [0, 0, 1]], np.float64)


def unrectify(left: np.ndarray, right: np.ndarray, *, focal: float, baseline: float,
              rotation_deg: tuple[float, float, float] = (0.5, 1.0, 1.5), dy_px: float = 3.0) -> UnrectifiedPair:
    """Turn the right camera of a rectified pair (focal ``focal`` px, baseline ``baseline`` m) by
    ``rotation_deg`` (a rotation vector, degrees) and move its principal point down by ``dy_px``."""
    h, w = left.shape[:2]
    k = intrinsics(w, h, focal)
    k2 = k.copy()
    k2[1, 2] += dy_px
    rot = cv2.Rodrigues(np.deg2rad(np.asarray(rotation_deg, np.float64)).reshape(3, 1))[0]
    warp = k2 @ rot @ np.linalg.inv(k)
    turned = cv2.warpPerspective(right, warp, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    if np.issubdtype(turned.dtype, np.floating):
        turned = np.clip(turned, 0.0, 1.0)
    # X_right = R X_left + T: the original right camera sat at +baseline on x, then turned by rot.
    t = -rot @ np.array([baseline, 0.0, 0.0])
    calib = RigCalibration(k, np.zeros(5), k2, np.zeros(5), rot, t, w, h, unit="m")
    return UnrectifiedPair(left, turned, calib, warp)


def disparity_in_original_frame(disp_rect: np.ndarray, left_h: np.ndarray, right_h: np.ndarray,
                                width: int, height: int) -> np.ndarray:
    """A disparity map predicted on a rectified pair, as disparities of the original rectified pair's left grid.

    ``left_h`` maps original left pixels to rectified left ones; ``right_h`` original right pixels to rectified
    right ones (for an un-rectified test pair: the rectifier's homography times ``right_warp``). NaN where the
    rectified view does not cover the pixel."""
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    pts = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=1)
    q = pts @ left_h.T
    qx, qy = q[:, 0] / q[:, 2], q[:, 1] / q[:, 2]
    rh, rw = disp_rect.shape
    d = cv2.remap(disp_rect.astype(np.float32), qx.reshape(height, width).astype(np.float32),
                  qy.reshape(height, width).astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                  borderValue=np.nan).ravel()
    inside = (qx >= 0) & (qx <= rw - 1) & (qy >= 0) & (qy <= rh - 1)
    back = np.c_[qx - d, qy, np.ones(qx.size)] @ np.linalg.inv(right_h).T
    x2 = back[:, 0] / back[:, 2]
    out = np.where(inside & np.isfinite(d), u.ravel() - x2, np.nan)
    return out.reshape(height, width).astype(np.float32)


def render_chessboard_views(rig: RigCalibration, board: tuple[int, int], square: float, n_views: int,
                            seed: int = 0, pattern: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_views`` (left, right) uint8 grey images of a chessboard with ``board`` = (columns, rows) inner corners
    and ``square`` (the rig's unit) squares, in random poses that show the whole board in both views.

    Each pixel's ray (through the camera's distortion, inverted by ``cv2.undistortPoints``) is intersected with
    the board plane; the checker pattern is anti-aliased by the pixel's footprint on the board, so OpenCV finds
    the corners to a small fraction of a pixel, as on a sharp photo. ``pattern``: draw this uint8 image of the
    (columns + 1) x (rows + 1) squares instead of a plain checker (a ChArUco board's ``generateImage``); it is
    blurred by about a pixel footprint and sampled bilinearly.
    """
    rng = np.random.default_rng(seed)
    cols, rows = board
    w, h = rig.width, rig.height
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    pix = np.stack([u.ravel(), v.ravel()], axis=1).reshape(-1, 1, 2)
    rays = [cv2.undistortPoints(pix, k, d).reshape(-1, 2) for k, d in ((rig.k1, rig.d1), (rig.k2, rig.d2))]
    board_w, board_h = (cols + 1) * square, (rows + 1) * square
    views = []
    while len(views) < n_views:
        # Board frame: x right, y down, z into the board; origin at the top-left outer corner of the squares.
        rvec = np.deg2rad(rng.uniform([-30, -30, -15], [30, 30, 15]))
        rot = cv2.Rodrigues(rvec.reshape(3, 1))[0]
        dist = rng.uniform(2.2, 3.2) * max(board_w, board_h) * rig.k1[0, 0] / w
        centre = np.array([rng.uniform(-0.15, 0.15) * dist, rng.uniform(-0.1, 0.1) * dist, dist])
        origin = centre - rot @ np.array([board_w / 2, board_h / 2, 0])
        pair = []
        for cam, ray in enumerate(rays):
            # Camera frame of camera 1 or 2: X_cam = R_c X_left + T_c.
            r_c, t_c = (np.eye(3), np.zeros(3)) if cam == 0 else (rig.r, rig.t.ravel())
            o_c, n_c = r_c @ origin + t_c, r_c @ rot[:, 2]
            ex, ey = r_c @ rot[:, 0], r_c @ rot[:, 1]
            dirs = np.c_[ray, np.ones(len(ray))]
            denom = dirs @ n_c
            lam = (o_c @ n_c) / np.where(np.abs(denom) > 1e-12, denom, np.nan)
            hit = dirs * lam[:, None] - o_c
            bx, by = (hit @ ex) / square, (hit @ ey) / square  # board coordinates in squares
            bx, by = bx.reshape(h, w), by.reshape(h, w)
            fx = np.hypot(*np.gradient(bx)) + 1e-9  # pixel footprint in squares, for the anti-aliasing
            fy = np.hypot(*np.gradient(by)) + 1e-9

            def soft_square_wave(t: np.ndarray, foot: np.ndarray) -> np.ndarray:
                # +1 / -1 on alternate squares, ramping linearly across one pixel footprint at each edge.
                frac = t - np.floor(t)
                dist_edge = np.minimum(frac, 1 - frac)
                sign = np.where(np.floor(t) % 2 == 0, 1.0, -1.0)
                return sign * np.clip(dist_edge / foot * 2, 0, 1)

            if pattern is None:
                checker = soft_square_wave(bx, fx) * soft_square_wave(by, fy)
            else:
                ppx = pattern.shape[1] / (cols + 1)  # pattern pixels per square
                blur = max(0.5, 0.5 * ppx * float(np.median(fx)))  # ~ half a camera pixel, in pattern pixels
                soft = cv2.GaussianBlur(pattern.astype(np.float32) / 255.0, (0, 0), blur)
                checker = 2.0 * cv2.remap(soft, (bx * ppx - 0.5).astype(np.float32),
                                          (by * ppx - 0.5).astype(np.float32), cv2.INTER_LINEAR,
                                          borderMode=cv2.BORDER_REPLICATE) - 1.0
            inside = (bx > 0) & (bx < cols + 1) & (by > 0) & (by < rows + 1)
            paper = (bx > -0.8) & (bx < cols + 1.8) & (by > -0.8) & (by < rows + 1.8) & (lam.reshape(h, w) > 0)
            img = np.full((h, w), 0.45)
            img = np.where(paper, 0.92, img)
            img = np.where(inside & paper, 0.5 + 0.42 * checker, img)
            img = img + rng.normal(0, 0.005, img.shape)
            pair.append(np.clip(np.round(img * 255), 0, 255).astype(np.uint8))
        # Keep views where the whole board (with its white margin) is inside both images.
        corners = np.array([[x, y, 0] for x in (-0.8 * square, board_w + 0.8 * square)
                            for y in (-0.8 * square, board_h + 0.8 * square)])
        seen = True
        for k, d, r_c, t_c in ((rig.k1, rig.d1, np.eye(3), np.zeros(3)), (rig.k2, rig.d2, rig.r, rig.t.ravel())):
            rv = cv2.Rodrigues(r_c @ rot)[0]
            pts = cv2.projectPoints(corners, rv, r_c @ origin + t_c, k, d)[0].reshape(-1, 2)
            seen &= bool(np.all((pts > 5) & (pts < [w - 6, h - 6])))
        if seen:
            views.append((pair[0], pair[1]))
    return views
