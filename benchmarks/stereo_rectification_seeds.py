"""How well ``--calib`` and ``--rectify auto`` restore turned synthetic pairs, over several scenes (issue 27).

    python benchmarks/stereo_rectification_seeds.py                    # seeds 0-7, SGBM (~1 min on 2 cores)
    python benchmarks/stereo_rectification_seeds.py --psmnet           # also the shipped PSMNet (~10 min)

Each scene (``render_scene(seed, 256, 384, 64, style="real")``) is un-rectified by turning the right camera by
``--rotation`` degrees and moving its principal point ``--dy`` px down (``synthetic_rig.unrectify``), then
rectified back from its exact calibration and automatically. Printed per seed: the automatic rectification's
vertical error at the 90th percentile of all pixels (from the scene's exact correspondences: how right the
geometry is), and D1 (%) of each matcher on the original pair and on both rectified pairs, the latter pulled back
onto the original left grid, each pair of numbers on the pixels the rectified view covers.
"""

from __future__ import annotations

import argparse

import numpy as np

H, W, MAX_DISP = 256, 384, 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--rotation", type=float, nargs=3, default=(0.5, 1.0, 1.5), metavar=("RX", "RY", "RZ"))
    parser.add_argument("--dy", type=float, default=3.0)
    parser.add_argument("--psmnet", action="store_true", help="also the shipped PSMNet (predict_disparity's defaults)")
    args = parser.parse_args()

    from vislab.stereo import predict_disparity
    from vislab.stereo.camera.rectify import auto_rectifier, calibrated_rectifier
    from vislab.stereo.camera.synthetic_rig import disparity_in_original_frame, unrectify
    from vislab.stereo.datasets.synthetic import render_scene
    from vislab.stereo.metrics import stereo_metrics
    from vislab.stereo.sgbm import sgbm_disparity

    matchers = {"sgbm": lambda l, r: sgbm_disparity(l, r, MAX_DISP)}
    if args.psmnet:
        matchers["psmnet"] = lambda l, r: predict_disparity(l, r).disparity

    def d1(disp: np.ndarray, gt: np.ndarray, seen: np.ndarray) -> float:
        return stereo_metrics(np.where(seen, disp, 0), np.where(seen, gt, 0), max_disp=MAX_DISP)["d1"]

    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    within = {name: {"auto": 0, "calib": 0} for name in matchers}
    print("seed  auto_verr90_px  " + "  ".join(f"{n}: orig/auto  orig/calib" for n in matchers))
    for seed in range(args.seeds):
        scene = render_scene(seed, H, W, MAX_DISP, style="real")
        gt = scene["disp"]
        pair = unrectify(scene["left"], scene["right"], focal=float(W), baseline=0.12,
                         rotation_deg=tuple(args.rotation), dy_px=args.dy)
        auto = auto_rectifier(pair.left, pair.right)
        calib = calibrated_rectifier(pair.calibration, W, H)
        r1, r2, p1, p2 = calib.rect
        homographies = {
            "auto": (auto.homographies[0], auto.homographies[1] @ pair.right_warp),
            "calib": (p1[:3, :3] @ r1 @ np.linalg.inv(pair.calibration.k1),
                      p2[:3, :3] @ r2 @ np.linalg.inv(pair.calibration.k2) @ pair.right_warp),
        }
        h1, h2 = homographies["auto"]
        x1 = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=1) @ h1.T
        x2 = np.stack([u.ravel() - gt.ravel(), v.ravel(), np.ones(u.size)], axis=1) @ h2.T
        verr = np.percentile(np.abs(x1[:, 1] / x1[:, 2] - x2[:, 1] / x2[:, 2]), 90)
        rectified = {"auto": auto.apply(pair.left, pair.right), "calib": calib.apply(pair.left, pair.right)}
        cells = []
        for name, match in matchers.items():
            original = match(scene["left"], scene["right"])
            for kind in ("auto", "calib"):
                back = disparity_in_original_frame(match(*rectified[kind]), *homographies[kind], W, H)
                seen = np.isfinite(back)
                before, after = d1(original, gt, seen), d1(back, gt, seen)
                within[name][kind] += after <= before + 1.0
                cells.append(f"{before:5.2f}/{after:5.2f}")
        print(f"{seed:4d}  {verr:14.2f}  " + "  ".join(cells), flush=True)
    for name, counts in within.items():
        print(f"{name}: D1 within 1 point of the original pair: auto {counts['auto']}/{args.seeds}, "
              f"calib {counts['calib']}/{args.seeds}")


if __name__ == "__main__":
    main()
