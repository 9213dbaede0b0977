"""SceneFlow (Mayer et al., CVPR 2016): FlyingThings3D, Driving and Monkaa, clean or final pass.

FlyingThings3D has an official TRAIN/TEST split; Driving and Monkaa have none and belong to training only
(as in PSMNet), so ``split="testing"`` is FlyingThings3D TEST.
"""

from pathlib import Path

import numpy as np

from vislab.core.errors import VislabError
from vislab.stereo.datasets.base import StereoDataset, StereoPair, pair_files, register_dataset
from vislab.stereo.io import read_pfm

SUBSETS = ("flyingthings3d", "driving", "monkaa")
_PASSES = {"clean": "frames_cleanpass", "final": "frames_finalpass"}
_SPLITS = {"training": "TRAIN", "train": "TRAIN", "TRAIN": "TRAIN",
           "testing": "TEST", "test": "TEST", "TEST": "TEST"}


@register_dataset("sceneflow")
class SceneFlow(StereoDataset):
    """SceneFlow stereo. ``root`` is the folder holding one or more of the subsets::

        flyingthings3d/
          frames_cleanpass/{TRAIN,TEST}/{A,B,C}/0000/{left,right}/0006.png   (frames_finalpass/ for pass="final")
          disparity/{TRAIN,TEST}/{A,B,C}/0000/left/0006.pfm
        driving/
          frames_cleanpass/{15mm_focallength,35mm_focallength}/{scene_backwards,scene_forwards}/{fast,slow}/
              {left,right}/0001.png
          disparity/<same sub-folders>/left/0001.pfm
        monkaa/
          frames_cleanpass/<scene>/{left,right}/0000.png
          disparity/<scene>/left/0000.pfm

    Args:
        split: ``training`` (FlyingThings3D TRAIN + Driving + Monkaa) or ``testing`` (FlyingThings3D TEST).
        pass_: ``clean`` or ``final`` rendering pass (``pass`` is accepted as a keyword too).
        subsets: which of flyingthings3d/driving/monkaa to use; default: every one present under ``root``
            (for testing only flyingthings3d). A requested subset that is missing is an error.
    """

    def __init__(self, root: str | Path, split: str = "training", transform=None, pass_: str = "clean",
                 subsets: str | list[str] | tuple[str, ...] | None = None, **kwargs):
        pass_ = kwargs.pop("pass", pass_)
        if pass_ not in _PASSES:
            raise VislabError(f"sceneflow: unknown pass {pass_!r}; choose clean or final")
        if split not in _SPLITS:
            raise VislabError(f"sceneflow: unknown split {split!r}; choose training or testing")
        if isinstance(subsets, str):
            subsets = [s.strip() for s in subsets.split(",") if s.strip()]
        for s in subsets or ():
            if s not in SUBSETS:
                raise VislabError(f"sceneflow: unknown subset {s!r}; choose from {', '.join(SUBSETS)}")
        self.frames_dir = _PASSES[pass_]
        self.pass_ = pass_
        self.requested_subsets = list(subsets) if subsets else None
        super().__init__(root, _canonical_split(split), transform, **kwargs)

    def expected_layout(self) -> str:
        frames = f"{self.root}/flyingthings3d/{self.frames_dir}/{_SPLITS[self.split]}"
        return (f"{frames}/<A|B|C>/<seq>/{{left,right}}/*.png "
                f"with flyingthings3d/disparity/... .pfm (and/or driving/, monkaa/ for training)")

    def discover(self) -> list[StereoPair]:
        wanted = self.requested_subsets
        if wanted is None:
            candidates = ["flyingthings3d"] if self.split == "testing" else list(SUBSETS)
            wanted = [s for s in candidates if (self.root / s).is_dir()]
        elif self.split == "testing" and wanted != ["flyingthings3d"]:
            raise VislabError("sceneflow: the testing split is FlyingThings3D TEST only; use subsets=flyingthings3d")
        pairs: list[StereoPair] = []
        for subset in wanted:
            sub_root = self.root / subset
            frames = sub_root / self.frames_dir
            if not frames.is_dir():
                raise VislabError(f"sceneflow: expected folder {frames} ({subset}, {self.pass_} pass)")
            if subset == "flyingthings3d":
                frames = frames / _SPLITS[self.split]
                if not frames.is_dir():
                    raise VislabError(f"sceneflow: expected folder {frames} (FlyingThings3D {self.split} split)")
            pairs += self._discover_subset(subset, sub_root, frames)
        return pairs

    def _discover_subset(self, subset: str, sub_root: Path, frames: Path) -> list[StereoPair]:
        pairs = []
        # every folder named "left" below the frames folder is one sequence, whatever the nesting depth
        for left_dir in sorted(p for p in frames.rglob("left") if p.is_dir()):
            rel = left_dir.parent.relative_to(sub_root / self.frames_dir)
            disp_dir = sub_root / "disparity" / rel / "left"
            for left, right in pair_files(left_dir, left_dir.parent / "right", "sceneflow"):
                disp = disp_dir / (left.stem + ".pfm")
                if not disp.is_file():
                    raise VislabError(f"sceneflow: disparity missing for {left}: expected {disp}")
                name = f"{subset}/{rel.as_posix()}/{left.stem}"
                pairs.append(StereoPair(name=name, left=left, right=right, disp=disp))
        return pairs

    def read_disparity(self, pair: StereoPair) -> tuple[np.ndarray, np.ndarray]:
        disp = read_pfm(pair.disp)
        if disp.ndim != 2:
            raise VislabError(f"sceneflow: disparity {pair.disp} must be a single-channel (Pf) PFM")
        disp = np.abs(disp)  # some releases store left disparities as negative numbers
        return disp, np.isfinite(disp)


def _canonical_split(split: str) -> str:
    return "testing" if _SPLITS[split] == "TEST" else "training"
