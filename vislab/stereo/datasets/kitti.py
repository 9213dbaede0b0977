"""KITTI Stereo 2015 and 2012: one reader, two folder-name tables.

Only the reference frames ``XXXXXX_10.png`` are stereo pairs with ground truth (``_11`` is the next frame,
used by the optical-flow benchmark). The testing split has no disparities; its samples carry ``valid = False``.
"""

from pathlib import Path

import numpy as np

from vislab.core.errors import VislabError
from vislab.stereo.datasets.base import StereoDataset, StereoPair, register_dataset, require_dir
from vislab.stereo.io import read_kitti_disparity


class _Kitti(StereoDataset):
    """Shared discovery for both KITTI stereo benchmarks; subclasses name their folders."""

    left_dir = ""
    right_dir = ""
    disp_dirs: dict[str, str] = {}

    def __init__(self, root: str | Path, split: str = "training", transform=None, occ: bool = True, **kwargs):
        if split not in ("training", "testing"):
            raise VislabError(f"{self.dataset_name}: unknown split {split!r}; choose training or testing")
        self.disp_dir = self.disp_dirs["occ" if occ else "noc"]
        super().__init__(root, split, transform, **kwargs)

    def expected_layout(self) -> str:
        gt = f", {self.disp_dir}/" if self.split == "training" else ""
        return f"{self.root}/{self.split}/{{{self.left_dir}, {self.right_dir}{gt}}}/XXXXXX_10.png"

    def discover(self) -> list[StereoPair]:
        base = require_dir(self.root / self.split, self.dataset_name, f"the {self.split} split of the official layout")
        left_dir = require_dir(base / self.left_dir, self.dataset_name, "left images")
        right_dir = require_dir(base / self.right_dir, self.dataset_name, "right images")
        disp_dir = None
        if self.split == "training":
            disp_dir = require_dir(base / self.disp_dir, self.dataset_name, "ground-truth disparities")
        pairs = []
        for left in sorted(left_dir.glob("*_10.png")):
            right = right_dir / left.name
            if not right.is_file():
                raise VislabError(f"{self.dataset_name}: right image missing for {left}: expected {right}")
            disp = None
            if disp_dir is not None:
                disp = disp_dir / left.name
                if not disp.is_file():
                    raise VislabError(f"{self.dataset_name}: disparity missing for {left}: expected {disp}")
            pairs.append(StereoPair(name=left.stem, left=left, right=right, disp=disp))
        return pairs

    def read_disparity(self, pair: StereoPair) -> tuple[np.ndarray, np.ndarray]:
        return read_kitti_disparity(pair.disp)


@register_dataset("kitti2015")
class Kitti2015(_Kitti):
    """KITTI Stereo 2015 (200 training + 200 testing pairs, 1242x375 or so). ``root`` is the folder holding::

        training/
          image_2/000000_10.png ...      left colour images
          image_3/000000_10.png ...      right colour images
          disp_occ_0/000000_10.png ...   uint16 disparity * 256, 0 = no ground truth (disp_noc_0 with occ=False)
        testing/
          image_2/  image_3/
    """

    left_dir, right_dir = "image_2", "image_3"
    disp_dirs = {"occ": "disp_occ_0", "noc": "disp_noc_0"}


@register_dataset("kitti2012")
class Kitti2012(_Kitti):
    """KITTI Stereo 2012 (194 training + 195 testing pairs). ``root`` is the folder holding::

        training/
          colored_0/000000_10.png ...   left colour images
          colored_1/000000_10.png ...   right colour images
          disp_occ/000000_10.png ...    uint16 disparity * 256, 0 = no ground truth (disp_noc with occ=False)
        testing/
          colored_0/  colored_1/
    """

    left_dir, right_dir = "colored_0", "colored_1"
    disp_dirs = {"occ": "disp_occ", "noc": "disp_noc"}
