"""Random stereo scenes with exact ground truth, in the spirit of FlyingThings3D, generated on the fly.

A scene is a stack of textured layers seen by a rectified stereo pair: a background plane that fills the view
and several foreground objects (ellipses, convex polygons, smooth blobs). Layer ``k`` has

* a shape ``M_k(x, y)`` and a texture ``T_k(x, y)``, both defined in *left-view* coordinates, and
* a planar, optionally slanted disparity ``d_k(x, y) = a_k + b_k x + c_k y`` (larger disparity = closer).

Rendering (vectorised numpy, no loops over pixels):

* Left view: each pixel shows the covering layer with the largest disparity (a z-buffer on disparity); the
  ground-truth disparity is that layer's ``d_k`` at the pixel, so it is exact by construction.
* Right view, by inverse warping: right pixel ``x_r`` sees the point of layer ``k`` at left coordinate ``x_l``
  with ``x_l - d_k(x_l, y) = x_r``; for a plane that is ``x_l = (x_r + a_k + c_k y) / (1 - b_k)`` exactly.
  Every layer is evaluated there (shape test on continuous coordinates, texture by linear interpolation along
  the row) and the same z-buffer picks the closest one. Textures extend ``max_disp`` pixels beyond the left
  view's right border, so the right view has no holes.

Occlusion and ``valid``: the disparity is known exactly at every left pixel, including pixels that are
occluded in the right view (hidden behind a closer object or outside its field of view), as in
FlyingThings3D; ``valid`` is therefore ``0 < disp < max_disp`` everywhere. :func:`render_scene` also returns
``occluded`` (left pixels with no correspondence in the right view) for callers that need non-occluded
evaluation. Photometric differences (per-view gain, bias, gamma, noise) are applied after rendering, so they
never affect the geometry.

Textures are procedural (multi-octave value noise, checkerboards, stripes, gradients) or crops of the sample
photographs bundled with scikit-image (nothing is downloaded; the Middlebury "motorcycle" pair that
scikit-image also ships is excluded because it is one of vislab's evaluation scenes).
"""

import argparse
import functools
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from vislab.core.errors import VislabError
from vislab.stereo.configs import SYNTHETIC_STYLES
from vislab.stereo.datasets.base import Sample, StereoDataset, Transform, register_dataset

# scikit-image's bundled photographs used as textures (the motorcycle pair is an evaluation scene: excluded).
PHOTO_TEXTURES = ("astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png",
                  "coffee.png", "coins.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png",
                  "moon.png", "page.png", "retina.jpg", "rocket.jpg", "text.png")


# ------------------------------------------------------------------------------------------------ textures

@functools.lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
    """The bundled photographs as float32 RGB, at most 640 px on a side (loaded once per process)."""
    import skimage

    folder = Path(skimage.__file__).resolve().parent / "data"
    photos = []
    for name in PHOTO_TEXTURES:
        path = folder / name
        if not path.is_file():  # a trimmed scikit-image install: use what is there
            continue
        with Image.open(path) as im:  # PIL, not cv2: libpng would warn about some files' colour profiles
            img = np.asarray(im.convert("RGB"))
        scale = 640 / max(img.shape[:2])
        if scale < 1:
            img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        photos.append(np.ascontiguousarray(img, dtype=np.float32) / 255.0)
    return tuple(photos)


def _value_noise(rng: np.random.Generator, h: int, w: int, channels: int = 3) -> np.ndarray:
    """Multi-octave value noise in [0, 1]: random grids upsampled bicubically and summed with halving weights."""
    out = np.zeros((h, w, channels), np.float32)
    total = 0.0
    cell = float(rng.uniform(8, 48))
    amp = 1.0
    while cell >= 1.5:
        gh, gw = max(2, int(np.ceil(h / cell)) + 1), max(2, int(np.ceil(w / cell)) + 1)
        grid = rng.random((gh, gw, channels), dtype=np.float32)
        up = cv2.resize(grid, (int(gw * cell), int(gh * cell)), interpolation=cv2.INTER_CUBIC)
        out += amp * up.reshape(up.shape[0], up.shape[1], channels)[:h, :w]
        total += amp
        amp *= float(rng.uniform(0.5, 0.8))
        cell /= 2
    out /= total
    lo, hi = out.min(), out.max()
    return (out - lo) / max(hi - lo, 1e-6)


def _colourise(rng: np.random.Generator, grey: np.ndarray) -> np.ndarray:
    """Map a (H, W) pattern in [0, 1] to RGB between two random colours."""
    c0, c1 = rng.random(3, dtype=np.float32), rng.random(3, dtype=np.float32)
    return c0 + grey[..., None] * (c1 - c0)


def _photo_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    photos = _photos()
    if not photos:
        return _value_noise(rng, h, w)
    img = photos[int(rng.integers(len(photos)))]
    # A random crop at a random scale, resized to the canvas, randomly flipped and colour-shifted.
    scale = float(rng.uniform(0.4, 1.0))
    ch, cw = max(8, int(img.shape[0] * scale)), max(8, int(img.shape[1] * scale))
    y0, x0 = int(rng.integers(img.shape[0] - ch + 1)), int(rng.integers(img.shape[1] - cw + 1))
    crop = cv2.resize(img[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if rng.random() < 0.5:
        crop = crop[..., rng.permutation(3)]
    return np.clip(crop * rng.uniform(0.6, 1.3, 3).astype(np.float32), 0, 1)


def _pattern_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Checkerboard, stripes or a gradient, rotated by a random angle."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    u = xx * np.cos(theta) + yy * np.sin(theta)
    v = -xx * np.sin(theta) + yy * np.cos(theta)
    kind = rng.integers(3)
    if kind == 0:
        period = rng.uniform(4, 32)
        grey = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    elif kind == 1:
        grey = 0.5 + 0.5 * np.sin(u * 2 * np.pi / rng.uniform(3, 24) + rng.uniform(0, 2 * np.pi))
    else:
        grey = (u - u.min()) / max(float(np.ptp(u)), 1e-6)
    return _colourise(rng, grey.astype(np.float32))


def random_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A float32 (h, w, 3) texture in [0, 1]: noise, pattern or photo, always with some fine detail."""
    kind = rng.random()
    if kind < 0.35:
        tex = _value_noise(rng, h, w)
    elif kind < 0.6:
        tex = _pattern_texture(rng, h, w)
    else:
        tex = _photo_texture(rng, h, w)
    # Fine noise so that no layer is perfectly textureless, then a light blur against aliasing when the
    # right view resamples it at fractional positions.
    tex = tex + rng.normal(0, rng.uniform(0.01, 0.06), tex.shape).astype(np.float32)
    tex = cv2.GaussianBlur(tex, (0, 0), 0.6)
    return np.clip(tex, 0, 1).astype(np.float32)


# -------------------------------------------------------------------------------------------------- shapes

def _random_shape(rng: np.random.Generator, cx: float, cy: float, radius: float) -> dict[str, Any]:
    kind = ("ellipse", "polygon", "blob")[int(rng.integers(3))]
    shape: dict[str, Any] = {"kind": kind, "cx": cx, "cy": cy, "r": radius, "theta": rng.uniform(0, np.pi)}
    if kind == "ellipse":
        shape["aspect"] = rng.uniform(0.35, 1.0)
    elif kind == "polygon":
        # Convex: vertices at sorted angles on an ellipse, tested as an intersection of half-planes.
        n = int(rng.integers(3, 9))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        aspect = rng.uniform(0.4, 1.0)
        shape["vx"] = cx + radius * np.cos(ang)
        shape["vy"] = cy + radius * aspect * np.sin(ang)
    else:
        k = np.arange(1, 5)
        shape["amp"] = rng.uniform(0, 0.25, 4) / k
        shape["phase"] = rng.uniform(0, 2 * np.pi, 4)
    return shape


def _inside(shape: dict[str, Any], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Point-in-shape test on continuous coordinates (same function for the left and right views)."""
    kind = shape["kind"]
    if kind == "background":
        return np.ones(np.broadcast(x, y).shape, bool)
    dx, dy = x - shape["cx"], y - shape["cy"]
    if kind == "ellipse":
        c, s = np.cos(shape["theta"]), np.sin(shape["theta"])
        u, v = dx * c + dy * s, (-dx * s + dy * c) / shape["aspect"]
        return u * u + v * v <= shape["r"] ** 2
    if kind == "polygon":
        vx, vy = shape["vx"], shape["vy"]
        inside = np.ones(np.broadcast(x, y).shape, bool)
        for i in range(len(vx)):
            j = (i + 1) % len(vx)
            # Counter-clockwise vertices: inside is to the left of every edge.
            inside &= (vx[j] - vx[i]) * (y - vy[i]) - (vy[j] - vy[i]) * (x - vx[i]) >= 0
        return inside
    phi = np.arctan2(dy, dx) - shape["theta"]
    k = np.arange(1, 5)
    radius = shape["r"] * (1 + np.tensordot(np.cos(k[None, None] * phi[..., None] + shape["phase"]),
                                            shape["amp"], axes=([-1], [0])))
    return dx * dx + dy * dy <= radius * radius


def _plane(rng: np.random.Generator, centre: tuple[float, float], extent: float, d_lo: float, d_hi: float,
           max_slant: float) -> tuple[float, float, float]:
    """Plane ``d = a + b x + c y`` whose values within ``extent`` of ``centre`` stay inside [d_lo, d_hi]."""
    dc = rng.uniform(d_lo, d_hi)
    room = min(dc - d_lo, d_hi - dc)
    change = rng.uniform(0, min(room, max_slant)) if rng.random() < 0.7 else 0.0
    # Gradient magnitude change/extent in a random direction, capped so that x_l = f(x_r) stays monotonic.
    g = min(change / max(extent, 1.0), 0.3)
    phi = rng.uniform(0, 2 * np.pi)
    b, c = g * np.cos(phi), g * np.sin(phi)
    a = dc - b * centre[0] - c * centre[1]
    return float(a), float(b), float(c)


# ----------------------------------------------------------------------------------------------- the scene

def _sample_row(tex: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``tex`` (H, Wc, 3) along each row at float columns ``xs`` (H, W)."""
    wc = tex.shape[1]
    xs = np.clip(xs, 0, wc - 1)
    x0 = np.minimum(np.floor(xs).astype(np.int64), wc - 2)
    frac = (xs - x0)[..., None].astype(np.float32)
    rows = np.arange(tex.shape[0])[:, None]
    return tex[rows, x0] * (1 - frac) + tex[rows, x0 + 1] * frac


def _check_style(style: str) -> None:
    if style not in SYNTHETIC_STYLES:
        raise VislabError(f"synthetic: unknown style {style!r}; choose one of {', '.join(SYNTHETIC_STYLES)}")


def render_scene(seed: int | tuple[int, ...] | np.random.Generator, height: int, width: int, max_disp: int = 64,
                 n_objects: tuple[int, int] = (4, 12), photometric: bool = True,
                 style: str = "objects") -> dict[str, np.ndarray]:
    """Render one random scene.

    Args:
        seed: an int/tuple seed or a ``numpy.random.Generator``; the same seed always gives the same scene.
        height, width: image size (any size, odd included).
        max_disp: disparities lie in ``[0.5, 0.9 * max_disp]``.
        n_objects: inclusive range of the number of foreground objects.
        photometric: apply per-view gain/bias/gamma/noise differences (off: right = left warped exactly).
        style: ``"objects"`` (the original scenes: objects anywhere in the disparity range, FlyingThings3D-like),
            ``"real"`` (disparity statistics closer to driving and indoor scenes: a far background, a slanted
            ground plane below a horizon in most scenes, objects whose disparities are mostly small, so far
            fewer pixels lack a match), or ``"mixed"`` (either, with equal probability, drawn from the seed).

    Returns:
        ``left``, ``right``: float32 (H, W, 3) in [0, 1]; ``disp``: float32 (H, W) left disparity, exact;
        ``disp_right``: float32 (H, W) right-view disparity; ``occluded``: bool (H, W), left pixels not seen by
        the right view; ``layer_left``, ``layer_right``: int (H, W) index of the visible layer.
    """
    if height < 1 or width < 1 or max_disp < 2:
        raise VislabError(f"synthetic: invalid scene size {width}x{height} or max_disp {max_disp}")
    _check_style(style)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if style == "mixed":
        style = "real" if rng.random() < 0.5 else "objects"
    if style == "real":
        layers, canvas_w = _real_layers(rng, height, width, max_disp, n_objects)
        return _render(rng, layers, height, width, canvas_w, photometric)
    d_min, d_max = 0.5, 0.9 * max_disp
    canvas_w = width + int(np.ceil(d_max)) + 2  # the right view looks up to d_max px right of the left view
    diag = float(np.hypot(canvas_w, height))

    # Background: a plane filling the view, in the far half of the disparity range.
    bg_hi = d_min + rng.uniform(0.15, 0.6) * (d_max - d_min)
    layers = [{"shape": {"kind": "background"},
               "plane": _plane(rng, (canvas_w / 2, height / 2), diag / 2, d_min, bg_hi, 0.5 * (bg_hi - d_min)),
               "tex": random_texture(rng, height, canvas_w)}]
    size = min(height, width)
    for _ in range(int(rng.integers(n_objects[0], n_objects[1] + 1))):
        cx = rng.uniform(-0.1 * width, width + 0.5 * d_max)
        cy = rng.uniform(-0.1 * height, 1.1 * height)
        radius = size * rng.uniform(0.06, 0.4)
        lo = d_min + rng.uniform(0.0, 0.5) * (d_max - d_min)
        plane = _plane(rng, (cx, cy), 1.3 * radius, lo, d_max, 0.3 * (d_max - d_min))
        layers.append({"shape": _random_shape(rng, cx, cy, radius), "plane": plane,
                       "tex": random_texture(rng, height, canvas_w)})
    return _render(rng, layers, height, width, canvas_w, photometric)


def _real_layers(rng: np.random.Generator, height: int, width: int, max_disp: int,
                 n_objects: tuple[int, int]) -> tuple[list[dict[str, Any]], int]:
    """Layers of a ``style="real"`` scene (see :func:`render_scene`); returns (layers, canvas width).

    Real pairs (KITTI, Middlebury, most indoor and driving scenes) have most pixels at small disparities, a
    large slanted ground plane whose disparity grows linearly towards the bottom of the image, and few large
    disparities; the "objects" scenes spread disparities uniformly up to 0.9 * max_disp, so about 30 % of their
    pixels have no match in the right view.
    """
    d_min, d_max = 0.5, 0.9 * max_disp
    span = d_max - d_min
    canvas_w = width + int(np.ceil(d_max)) + 2
    diag = float(np.hypot(canvas_w, height))
    # Far background: the smallest disparities, nearly fronto-parallel.
    bg_hi = d_min + rng.uniform(0.02, 0.15) * span
    layers = [{"shape": {"kind": "background"},
               "plane": _plane(rng, (canvas_w / 2, height / 2), diag / 2, d_min, bg_hi, 0.5 * (bg_hi - d_min)),
               "tex": random_texture(rng, height, canvas_w)}]
    d_far = layers[0]["plane"][0] + layers[0]["plane"][2] * height / 2 + layers[0]["plane"][1] * canvas_w / 2
    if rng.random() < 0.8:
        # Ground plane: a full-cover layer with d = d_far at the horizon row, rising to d_bottom at the last
        # row; above the horizon its disparity is below the background's, so the z-buffer hides it there.
        horizon = rng.uniform(0.25, 0.65) * height
        d_bottom = d_min + rng.uniform(0.1, 0.6) * span
        c = (d_bottom - d_far) / max(height - horizon, 1.0)
        b = float(rng.uniform(-0.02, 0.02))  # a slight roll/yaw of the road against the camera
        a = d_far - c * horizon - b * canvas_w / 2
        layers.append({"shape": {"kind": "background"}, "plane": (float(a), b, float(c)),
                       "tex": random_texture(rng, height, canvas_w)})
    size = min(height, width)
    for _ in range(int(rng.integers(max(1, n_objects[0] - 2), max(2, n_objects[1] - 4) + 1))):
        cx = rng.uniform(-0.1 * width, width + 0.2 * d_max)
        cy = rng.uniform(0.0, 1.05 * height)
        radius = size * rng.uniform(0.08, 0.45)
        # Mostly small disparities: u**2 puts half the objects in the nearest quarter of the range's far end.
        lo = d_min + (rng.uniform(0.02, 0.7) ** 2) * span
        hi = min(d_max, lo + 0.35 * span)
        plane = _plane(rng, (cx, cy), 1.3 * radius, lo, hi, 0.3 * span)
        layers.append({"shape": _random_shape(rng, cx, cy, radius), "plane": plane,
                       "tex": random_texture(rng, height, canvas_w)})
    return layers, canvas_w


def _render(rng: np.random.Generator, layers: list[dict[str, Any]], height: int, width: int, canvas_w: int,
            photometric: bool) -> dict[str, np.ndarray]:
    """Z-buffer the layers into both views (the geometry described in the module docstring)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)

    def zbuffer(x_of_layer: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        best_d = np.full((height, width), -np.inf)
        best_k = np.zeros((height, width), np.int64)
        for k, (layer, xl) in enumerate(zip(layers, x_of_layer, strict=True)):
            a, b, c = layer["plane"]
            d = a + b * xl + c * ys
            cover = _inside(layer["shape"], xl, ys) & (xl >= 0) & (xl <= canvas_w - 1) & (d > best_d)
            best_d = np.where(cover, d, best_d)
            best_k = np.where(cover, k, best_k)
        return best_d, best_k, x_of_layer

    # Left view: every layer is looked at the pixel itself.
    disp, layer_left, _ = zbuffer([xs] * len(layers))
    # Right view: layer k is looked at x_l = (x_r + a + c y) / (1 - b), the exact inverse of x_l - d(x_l) = x_r.
    x_right = [(xs + a + c * ys) / (1 - b) for a, b, c in (layer["plane"] for layer in layers)]
    disp_right, layer_right, _ = zbuffer(x_right)

    left = np.zeros((height, width, 3), np.float32)
    right = np.zeros((height, width, 3), np.float32)
    for k, layer in enumerate(layers):
        sel = layer_left == k
        if sel.any():
            left[sel] = layer["tex"][:, :width][sel]
        sel = layer_right == k
        if sel.any():
            right[sel] = _sample_row(layer["tex"], x_right[k])[sel]

    # A left pixel is occluded when its match leaves the right view or a closer layer covers the match.
    xr = xs - disp
    occluded = xr < 0
    for k, layer in enumerate(layers):
        a, b, c = layer["plane"]
        xl = (xr + a + c * ys) / (1 - b)
        dk = a + b * xl + c * ys
        occluded |= (layer_left != k) & _inside(layer["shape"], xl, ys) & (xl >= 0) & (dk > disp + 1e-6)

    if photometric:
        left, right = _photometric(rng, left), _photometric(rng, right)
    return {"left": left, "right": right, "disp": disp.astype(np.float32),
            "disp_right": disp_right.astype(np.float32), "occluded": occluded,
            "layer_left": layer_left, "layer_right": layer_right}


def _photometric(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Per-view camera differences: gain and bias per channel, gamma, sensor noise."""
    gain = rng.uniform(0.85, 1.15, 3).astype(np.float32)
    bias = rng.uniform(-0.05, 0.05, 3).astype(np.float32)
    gamma = float(rng.uniform(0.85, 1.15))
    out = np.clip(img * gain + bias, 0, 1) ** gamma
    out = out + rng.normal(0, rng.uniform(0, 0.02), out.shape).astype(np.float32)
    return np.clip(out, 0, 1).astype(np.float32)


# ------------------------------------------------------------------------------------------------- dataset

@register_dataset("synthetic")
class SyntheticStereo(StereoDataset):
    """``size`` random scenes of ``height x width``, generated on the fly (no files; ``root`` is ignored).

    Scene ``index`` is rendered from the seed ``(seed, epoch, index)`` when ``resample_each_epoch`` is true
    (training: a fresh scene every epoch, identical whichever worker or resumed run renders it) and from
    ``(seed, index)`` otherwise (validation: a fixed set).
    """

    def __init__(self, root: str | Path | None = None, split: str = "training", transform: Transform | None = None,
                 seed: int = 0, size: int = 1000, height: int = 256, width: int = 512, max_disp: int = 64,
                 photometric: bool = True, resample_each_epoch: bool | None = None, nonocc: bool = False,
                 style: str = "objects"):
        # No files to discover: the base class's constructor is not used.
        self.root = None
        self.split = split
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0
        self.size, self.height, self.width, self.max_disp = int(size), int(height), int(width), int(max_disp)
        if self.size < 1:
            raise VislabError(f"synthetic: size must be positive, got {size}")
        self.photometric = photometric
        _check_style(style)
        self.style = style  # "objects" (the original held-out scenes), "real" or "mixed": see render_scene
        self.nonocc = bool(nonocc)  # ground truth only where the left pixel is visible in the right view
        self.resample_each_epoch = split == "training" if resample_each_epoch is None else resample_each_epoch
        self.samples = []

    def __len__(self) -> int:
        return self.size

    def scene_seed(self, index: int) -> tuple[int, ...]:
        """The seed of scene ``index`` in the current epoch (stream 1; transforms use the base's stream)."""
        return (self.seed, 1, self.epoch, index) if self.resample_each_epoch else (self.seed, 1, index)

    def load(self, index: int) -> Sample:
        if not 0 <= index < self.size:
            raise IndexError(index)
        scene = render_scene(self.scene_seed(index), self.height, self.width, self.max_disp,
                             photometric=self.photometric, style=self.style)
        disp = scene["disp"]
        valid = (disp > 0) & (disp < self.max_disp)
        if self.nonocc:
            valid &= ~scene["occluded"]
        return {
            "left": torch.from_numpy(np.ascontiguousarray(scene["left"].transpose(2, 0, 1))),
            "right": torch.from_numpy(np.ascontiguousarray(scene["right"].transpose(2, 0, 1))),
            "disp": torch.from_numpy(np.where(valid, disp, 0).astype(np.float32)),
            "valid": torch.from_numpy(valid),
            "name": f"synthetic/{self.seed}/{self.epoch if self.resample_each_epoch else 'fixed'}/{index:06d}",
        }

    def __repr__(self) -> str:
        style = "" if self.style == "objects" else f", style={self.style}"
        return (f"SyntheticStereo(n={self.size}, size={self.width}x{self.height}, max_disp={self.max_disp}, "
                f"seed={self.seed}{style})")


# ------------------------------------------------------------------------------------------ SceneFlow tree

def write_sceneflow_tree(out: str | os.PathLike, n: int, height: int, width: int, max_disp: int, seed: int = 0,
                         split: str = "TRAIN", progress: bool = True) -> Path:
    """Write ``n`` scenes as ``flyingthings3d/{frames_cleanpass,disparity}/SPLIT/A/NNNN/{left,right}/0000.*``."""
    from vislab.core.logging import make_output_dir
    from vislab.core.logging import progress as bar
    from vislab.stereo.io import write_image, write_pfm

    root = make_output_dir(Path(out) / "flyingthings3d")
    for i in bar(range(n), desc="synth", total=n, enabled=progress):
        # Stream 2: never the held-out scenes of ``--dataset synthetic`` (stream 1), which written files
        # would otherwise duplicate whenever the sizes match -- a test set leaking into training data.
        scene = render_scene((seed, 2, i), height, width, max_disp)
        seq = f"{i:04d}"
        for view, disp_key in (("left", "disp"), ("right", "disp_right")):
            img = np.round(scene[view] * 255).astype(np.uint8)
            write_image(root / "frames_cleanpass" / split / "A" / seq / view / "0000.png", img)
            write_pfm(root / "disparity" / split / "A" / seq / view / "0000.pfm", scene[disp_key])
    return Path(out)


def run_synth(args: argparse.Namespace) -> int:
    """``vislab stereo synth``: write synthetic scenes readable by ``--dataset sceneflow``."""
    if args.n < 1:
        raise VislabError(f"--n must be positive, got {args.n}")
    if args.height < 8 or args.width < 8:
        raise VislabError(f"--height/--width must be at least 8, got {args.width}x{args.height}")
    out = write_sceneflow_tree(args.out, args.n, args.height, args.width, args.max_disp, args.seed)
    print(f"wrote {args.n} synthetic scenes of {args.width}x{args.height} (max disparity {args.max_disp}) "
          f"under {out / 'flyingthings3d'}")
    return 0
