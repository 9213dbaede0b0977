"""Middlebury 2014 stereo (Scharstein et al., GCPR 2014) at full, half or quarter resolution."""

from pathlib import Path

import numpy as np

from vislab.core.errors import VislabError
from vislab.stereo.datasets.base import StereoDataset, StereoPair, register_dataset
from vislab.stereo.io import StereoCalibration, read_calib, read_mask, read_pfm

RESOLUTIONS = ("F", "H", "Q")
_AUTO_ORDER = ("Q", "H", "F")  # smallest first: what fits in memory for a full cost volume


class CalibratedPfmDataset(StereoDataset):
    """Middlebury-style scenes: ``disp0GT.pfm`` (inf = unknown), optional ``mask0nocc.png``, a ``calib.txt``.

    Subclasses list the pairs with ``extra={"calib": path}`` and set ``self.nonocc``.
    """

    nonocc: bool = False

    def calibration(self, index: int) -> StereoCalibration:
        """The ``calib.txt`` of sample ``index`` (focal, baseline, doffs, ndisp for depth and disparity range)."""
        return read_calib(self.samples[index].extra["calib"])

    def read_disparity(self, pair: StereoPair) -> tuple[np.ndarray, np.ndarray]:
        return read_masked_pfm(pair, self.nonocc)


@register_dataset("middlebury2014")
class Middlebury2014(CalibratedPfmDataset):
    """Middlebury 2014. ``root`` is the folder holding ``trainingQ/`` (and/or ``trainingH/``, ``trainingF/``)::

        trainingQ/
          Adirondack/
            im0.png  im1.png   left and right image
            disp0GT.pfm        left disparity, inf = unknown
            mask0nocc.png      255 = non-occluded, 128 = occluded, 0 = unknown
            calib.txt          cam0, cam1, doffs, baseline, width, height, ndisp, ...
          Motorcycle/ ...
        testQ/<Scene>/{im0.png, im1.png, calib.txt}      (split="testing": no ground truth)

    Args:
        resolution: ``F``, ``H`` or ``Q``; default: the first of Q, H, F present under ``root``.
        nonocc: use only non-occluded pixels (``mask0nocc.png == 255``) as valid.
    """

    def __init__(self, root: str | Path, split: str = "training", transform=None, resolution: str | None = None,
                 nonocc: bool = False, **kwargs):
        if split not in ("training", "testing"):
            raise VislabError(f"middlebury2014: unknown split {split!r}; choose training or testing")
        if resolution is not None and resolution.upper() not in RESOLUTIONS:
            raise VislabError(f"middlebury2014: unknown resolution {resolution!r}; choose F, H or Q")
        self.resolution = resolution.upper() if resolution else None
        self.nonocc = bool(nonocc)
        super().__init__(root, split, transform, **kwargs)

    def _folder(self, res: str) -> Path:
        return self.root / (("training" if self.split == "training" else "test") + res)

    def expected_layout(self) -> str:
        res = self.resolution or "Q"
        gt = ", disp0GT.pfm, calib.txt" if self.split == "training" else ", calib.txt"
        return f"{self._folder(res)}/<Scene>/{{im0.png, im1.png{gt}}}"

    def discover(self) -> list[StereoPair]:
        if self.resolution is None:
            found = [r for r in _AUTO_ORDER if self._folder(r).is_dir()]
            if not found:
                raise VislabError(f"middlebury2014: no {self._folder('Q').name[:-1]}{{F,H,Q}}/ folder under "
                                  f"{self.root}; expected {self.expected_layout()}")
            self.resolution = found[0]
        folder = self._folder(self.resolution)
        if not folder.is_dir():
            raise VislabError(f"middlebury2014: expected folder {folder} (resolution {self.resolution})")
        pairs = []
        for scene in sorted(p for p in folder.iterdir() if p.is_dir()):
            left, right = scene / "im0.png", scene / "im1.png"
            for f in (left, right):
                if not f.is_file():
                    raise VislabError(f"middlebury2014: missing {f}")
            disp = mask = None
            if self.split == "training":
                disp = scene / "disp0GT.pfm"
                if not disp.is_file():
                    raise VislabError(f"middlebury2014: missing ground truth {disp}")
                mask = scene / "mask0nocc.png"
                if self.nonocc and not mask.is_file():
                    raise VislabError(f"middlebury2014: nonocc=True needs {mask}")
            pairs.append(StereoPair(name=scene.name, left=left, right=right, disp=disp, mask=mask,
                                    extra={"calib": scene / "calib.txt"}))
        return pairs



def read_masked_pfm(pair: StereoPair, nonocc: bool) -> tuple[np.ndarray, np.ndarray]:
    """Read a Middlebury/ETH3D ``disp0GT.pfm`` (inf = unknown), optionally restricted to ``mask0nocc == 255``."""
    disp = read_pfm(pair.disp)
    if disp.ndim != 2:
        raise VislabError(f"disparity {pair.disp} must be a single-channel (Pf) PFM")
    valid = np.isfinite(disp)
    if nonocc:
        mask = read_mask(pair.mask)
        if mask.shape != disp.shape:
            raise VislabError(f"mask {pair.mask} is {mask.shape[1]}x{mask.shape[0]}, "
                              f"disparity is {disp.shape[1]}x{disp.shape[0]}")
        valid &= mask == 255
    return disp, valid
