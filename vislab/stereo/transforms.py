"""Joint transforms on stereo samples, and ImageNet normalisation.

A transform is called as ``t(sample, rng)`` and returns a new sample dict; it changes left, right, disp and
valid together so they stay aligned. ``rng`` is a ``numpy.random.Generator`` (a ``torch.Generator`` or an int
seed are accepted too); the datasets pass one seeded from ``(seed, epoch, index)``, so every augmentation is
reproducible whatever the number of data-loader workers. Images stay in [0, 1]: normalise the batch with
``imagenet_normalize`` just before the model (``model.infer`` expects normalised input).
"""

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

Sample = dict[str, Any]
RNG = np.random.Generator | torch.Generator | int | None

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_normalize(img: torch.Tensor) -> torch.Tensor:
    """Map ``(..., 3, H, W)`` RGB in [0, 1] to ImageNet mean/std normalised values (as PSMNet was trained)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=img.dtype, device=img.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=img.dtype, device=img.device).view(3, 1, 1)
    return (img - mean) / std


def as_numpy_rng(rng: RNG) -> np.random.Generator:
    """Turn whatever the caller passed into a numpy Generator (a torch.Generator seeds a new one)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, torch.Generator):
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=rng)))
    return np.random.default_rng(rng)


class Compose:
    """Apply transforms in order, all drawing from the same generator."""

    def __init__(self, transforms: Sequence[Callable[[Sample, np.random.Generator], Sample]]):
        self.transforms = list(transforms)

    def __call__(self, sample: Sample, rng: RNG = None) -> Sample:
        gen = as_numpy_rng(rng)
        for t in self.transforms:
            sample = t(sample, gen)
        return sample

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class RandomCrop:
    """Crop a random ``height x width`` window from both views, the disparity and the mask.

    Images smaller than the crop are first padded at the bottom and right (zeros, disparity invalid there);
    no sample is ever skipped, and every output has exactly the crop size so batches stack.
    """

    def __init__(self, height: int, width: int):
        self.height, self.width = int(height), int(width)

    def __call__(self, sample: Sample, rng: RNG = None) -> Sample:
        gen = as_numpy_rng(rng)
        h, w = sample["left"].shape[-2:]
        pad_h, pad_w = max(0, self.height - h), max(0, self.width - w)
        out = dict(sample)
        if pad_h or pad_w:
            for key in ("left", "right", "disp", "valid"):
                out[key] = _pad_bottom_right(out[key], pad_h, pad_w)
            h, w = h + pad_h, w + pad_w
        y = int(gen.integers(0, h - self.height + 1))
        x = int(gen.integers(0, w - self.width + 1))
        for key in ("left", "right", "disp", "valid"):
            out[key] = out[key][..., y:y + self.height, x:x + self.width].contiguous()
        return out

    def __repr__(self) -> str:
        return f"RandomCrop({self.height}, {self.width})"


def _pad_bottom_right(t: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    if t.dtype == torch.bool:
        return F.pad(t.to(torch.uint8), (0, pad_w, 0, pad_h)).bool()
    return F.pad(t, (0, pad_w, 0, pad_h))


class PhotometricAugment:
    """Random brightness, contrast, saturation and gamma; with ``asymmetric_prob`` each view gets its own.

    Asymmetric changes mimic the exposure differences between real stereo cameras. With ``blur_prob`` each
    view is, independently, blurred by a Gaussian of a random sigma in ``blur_sigma`` (focus and motion
    differences between the two cameras). Geometry is untouched, so the disparity and mask pass through
    unchanged.
    """

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2,
                 gamma: tuple[float, float] = (0.8, 1.2), asymmetric_prob: float = 0.2, blur_prob: float = 0.0,
                 blur_sigma: tuple[float, float] = (0.3, 1.5)):
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation
        self.gamma = gamma
        self.asymmetric_prob = asymmetric_prob
        self.blur_prob = blur_prob
        self.blur_sigma = blur_sigma

    def _params(self, gen: np.random.Generator) -> tuple[float, float, float, float]:
        return (float(gen.uniform(1 - self.brightness, 1 + self.brightness)),
                float(gen.uniform(1 - self.contrast, 1 + self.contrast)),
                float(gen.uniform(1 - self.saturation, 1 + self.saturation)),
                float(gen.uniform(*self.gamma)))

    @staticmethod
    def _apply(img: torch.Tensor, params: tuple[float, float, float, float]) -> torch.Tensor:
        b, c, s, g = params
        img = img * b
        grey = (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]).unsqueeze(0)
        img = (img - grey.mean()) * c + grey.mean()
        img = grey + (img - grey) * s
        return img.clamp(0, 1) ** g

    def __call__(self, sample: Sample, rng: RNG = None) -> Sample:
        gen = as_numpy_rng(rng)
        params_left = self._params(gen)
        params_right = self._params(gen) if gen.random() < self.asymmetric_prob else params_left
        out = dict(sample)
        out["left"] = self._apply(sample["left"], params_left)
        out["right"] = self._apply(sample["right"], params_right)
        if self.blur_prob > 0:  # drawn after the colour parameters, so blur_prob=0 keeps the old random stream
            for key in ("left", "right"):
                if gen.random() < self.blur_prob:
                    out[key] = gaussian_blur(out[key], float(gen.uniform(*self.blur_sigma)))
        return out

    def __repr__(self) -> str:
        return (f"PhotometricAugment(brightness={self.brightness}, contrast={self.contrast}, "
                f"saturation={self.saturation}, gamma={self.gamma}, asymmetric_prob={self.asymmetric_prob}, "
                f"blur_prob={self.blur_prob}, blur_sigma={self.blur_sigma})")


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a (C, H, W) image (reflect padding, radius 3 sigma)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=img.dtype, device=img.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = img.shape[0]
    out = img.unsqueeze(0)
    out = F.conv2d(F.pad(out, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1),
                   groups=c)
    out = F.conv2d(F.pad(out, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1),
                   groups=c)
    return out.squeeze(0)


def asymmetric_augment() -> PhotometricAugment:
    """Colour, gamma and blur drawn independently for the two views every time (FCStereo-style asymmetric
    augmentation: the network cannot rely on the views' colours matching exactly, only on structure)."""
    return PhotometricAugment(brightness=0.3, contrast=0.3, saturation=0.3, gamma=(0.7, 1.4), asymmetric_prob=1.0,
                              blur_prob=0.3, blur_sigma=(0.3, 1.2))


def train_transform(crop: tuple[int, int] = (256, 512), photometric: bool = False,
                    asymmetric: bool = False) -> Compose:
    """PSMNet's training augmentation: a random ``crop`` (paper: 256x512), optionally photometric jitter
    (``photometric``: mostly the same for both views) or asymmetric colour/gamma/blur (``asymmetric``)."""
    transforms: list[Callable[[Sample, np.random.Generator], Sample]] = [RandomCrop(*crop)]
    if asymmetric:
        transforms.append(asymmetric_augment())
    elif photometric:
        transforms.append(PhotometricAugment())
    return Compose(transforms)
