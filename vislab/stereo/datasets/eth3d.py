"""ETH3D two-view stereo (Schöps et al., CVPR 2017): 27 training + 20 test greyscale pairs."""

from pathlib import Path

from vislab.core.errors import VislabError
from vislab.stereo.datasets.base import StereoPair, register_dataset, require_dir
from vislab.stereo.datasets.middlebury import CalibratedPfmDataset


@register_dataset("eth3d")
class ETH3D(CalibratedPfmDataset):
    """ETH3D two-view. ``root`` is the folder holding::

        two_view_training/<scene>/{im0.png, im1.png, calib.txt}
        two_view_training_gt/<scene>/{disp0GT.pfm, mask0nocc.png}     (disp inf = unknown)
        two_view_test/<scene>/{im0.png, im1.png, calib.txt}           (split="testing")

    The images are greyscale; they are returned as three identical RGB channels.

    Args:
        nonocc: use only non-occluded pixels (``mask0nocc.png == 255``) as valid.
    """

    def __init__(self, root: str | Path, split: str = "training", transform=None, nonocc: bool = False, **kwargs):
        if split not in ("training", "testing"):
            raise VislabError(f"eth3d: unknown split {split!r}; choose training or testing")
        self.nonocc = bool(nonocc)
        super().__init__(root, split, transform, **kwargs)

    def expected_layout(self) -> str:
        if self.split == "training":
            return (f"{self.root}/two_view_training/<scene>/{{im0.png, im1.png}} and "
                    f"{self.root}/two_view_training_gt/<scene>/disp0GT.pfm")
        return f"{self.root}/two_view_test/<scene>/{{im0.png, im1.png}}"

    def discover(self) -> list[StereoPair]:
        images = require_dir(self.root / ("two_view_training" if self.split == "training" else "two_view_test"),
                             "eth3d", "the image pairs")
        gt_root = None
        if self.split == "training":
            gt_root = require_dir(self.root / "two_view_training_gt", "eth3d", "the ground-truth disparities")
        pairs = []
        for scene in sorted(p for p in images.iterdir() if p.is_dir()):
            left, right = scene / "im0.png", scene / "im1.png"
            for f in (left, right):
                if not f.is_file():
                    raise VislabError(f"eth3d: missing {f}")
            disp = mask = None
            if gt_root is not None:
                disp, mask = gt_root / scene.name / "disp0GT.pfm", gt_root / scene.name / "mask0nocc.png"
                if not disp.is_file():
                    raise VislabError(f"eth3d: missing ground truth {disp}")
                if self.nonocc and not mask.is_file():
                    raise VislabError(f"eth3d: nonocc=True needs {mask}")
            pairs.append(StereoPair(name=scene.name, left=left, right=right, disp=disp, mask=mask,
                                    extra={"calib": scene / "calib.txt"}))
        return pairs

