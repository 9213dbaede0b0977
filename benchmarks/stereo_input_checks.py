"""What the input checks of an own pair cost next to the prediction they guard.

    python benchmarks/stereo_input_checks.py [--kitti-root /work/shared/datasets/stereo/kitti2015] [--repeat 3]

``vislab stereo predict`` checks every pair before PSMNet runs (``vislab.stereo.camera.checks.check_pair``: SIFT
matches, a RANSAC fundamental matrix, the vertical offset, the sign and size of the disparities). This times it
on the KITTI 2015 pair 000046 and scikit-image's Motorcycle pair, each also enlarged three times (a phone photo's
size), as CPU seconds (``time.process_time``, so a busy machine inflates it less than wall time) and wall
seconds, the median of ``--repeat`` runs, next to one default PSMNet prediction of the original pair (model
loaded and warm, as in the app). Target: the checks under 10 % of the prediction's wall time, and under 1 s of CPU
at every size. Nothing else may run meanwhile.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np


def _timed(fn, repeat: int) -> tuple[float, float]:
    """Median (wall s, CPU s) of ``repeat`` calls."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kitti-root", default="/work/shared/datasets/stereo/kitti2015",
                        help="KITTI 2015 folder holding training/image_2/000046_10.png")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per measurement (median)")
    args = parser.parse_args()

    from vislab.stereo import load_example, predict_disparity
    from vislab.stereo.camera.checks import check_pair
    from vislab.stereo.io import read_image

    root = Path(args.kitti_root) / "training"
    left, right, _, _ = load_example("motorcycle")
    pairs = {"Motorcycle": (left, right)}
    if (root / "image_2" / "000046_10.png").is_file():
        pairs["KITTI 000046"] = tuple(read_image(root / f"image_{i}" / "000046_10.png") for i in (2, 3))
    print("| pair | size | checks: wall s / CPU s | x3 size | checks there: wall s / CPU s | PSMNet predict, "
          "wall s | checks / predict |")
    print("|---|---|---|---|---|---|---|")
    predict_disparity(left[:128, :256], right[:128, :256])  # load the model and warm oneDNN
    for name, (left, right) in pairs.items():
        h, w = left.shape[:2]
        big = [cv2.resize(np.ascontiguousarray(img), (3 * w, 3 * h), interpolation=cv2.INTER_CUBIC)
               for img in (left, right)]
        wall, cpu = _timed(lambda l=left, r=right: check_pair(l, r, 192), args.repeat)
        big_wall, big_cpu = _timed(lambda l=big[0], r=big[1]: check_pair(l, r, 576), args.repeat)
        predict, _ = _timed(lambda l=left, r=right: predict_disparity(l, r), 1)
        print(f"| {name} | {w}x{h} | {wall:.2f} / {cpu:.2f} | {3 * w}x{3 * h} | {big_wall:.2f} / {big_cpu:.2f} | "
              f"{predict:.1f} | {100 * max(wall, big_wall) / predict:.1f} % |", flush=True)


if __name__ == "__main__":
    main()
