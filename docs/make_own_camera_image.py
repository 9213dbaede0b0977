"""Make the picture and the numbers of the "Your own camera" page (``docs/images/own_camera.png``).

    python docs/make_own_camera_image.py        # ~2 min on 2 CPU cores

A synthetic scene with exact disparity (``render_scene(3, 256, 384, 64, style="real")``) is seen by a rig whose
right camera is turned by (0.5, 1.0, 1.5) degrees and whose principal point sits 3 px lower
(``vislab.stereo.camera.synthetic_rig.unrectify``, focal 384 px, baseline 0.12 m). The script

* checks the pair as taken (``check_pair``: the vertical misalignment it reports),
* rectifies it from its calibration (written as OpenCV YAML and read back, as ``--calib`` does) and
  automatically (``--rectify auto``),
* predicts each pair with SGBM and the shipped PSMNet and scores the disparity, pulled back onto the original
  left grid, against the scene's exact disparity (D1, on the pixels every variant sees),

prints a Markdown table of the results, and draws the pair as taken, the rectified pair (rows drawn across
both views) and the metric depth of the calibrated PSMNet prediction.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

IMAGES = Path(__file__).resolve().parent / "images"
H, W, MAX_DISP, FOCAL, BASELINE = 256, 384, 64, 384.0, 0.12


def main() -> None:
    from PIL import Image

    from vislab.core.logging import save_figure, subplots
    from vislab.stereo import predict_disparity
    from vislab.stereo.camera.calibfiles import write_opencv_calibration
    from vislab.stereo.camera.checks import check_pair
    from vislab.stereo.camera.pipeline import prepare_pair
    from vislab.stereo.camera.synthetic_rig import disparity_in_original_frame, unrectify
    from vislab.stereo.datasets.synthetic import render_scene
    from vislab.stereo.geometry import disparity_to_depth
    from vislab.stereo.metrics import stereo_metrics
    from vislab.stereo.visualize import colorize_depth

    scene = render_scene(3, H, W, MAX_DISP, style="real")
    taken = unrectify(scene["left"], scene["right"], focal=FOCAL, baseline=BASELINE)
    found = check_pair(taken.left, taken.right, 192)
    print(f"the pair as taken: median |dy| {found.median_abs_dy:.2f} px; {found.lines()}")
    calib = write_opencv_calibration(Path(tempfile.mkdtemp()) / "rig.yaml", taken.calibration)
    variants = {
        "original rectified pair": (scene["left"], scene["right"], np.eye(3), np.eye(3)),
        "as taken (not rectified)": (taken.left, taken.right, np.eye(3), taken.right_warp),
    }
    calibrated = prepare_pair(taken.left, taken.right, calib=calib)
    r1, r2, p1, p2 = calibrated.rectifier.rect
    k1, k2 = taken.calibration.k1, taken.calibration.k2
    variants["--calib (OpenCV YAML)"] = (calibrated.left, calibrated.right, p1[:3, :3] @ r1 @ np.linalg.inv(k1),
                                         p2[:3, :3] @ r2 @ np.linalg.inv(k2) @ taken.right_warp)
    auto = prepare_pair(taken.left, taken.right, rectify="auto")
    h1, h2 = auto.rectifier.homographies
    variants["--rectify auto"] = (auto.left, auto.right, h1, h2 @ taken.right_warp)
    print(f"calibrated: {calibrated.lines()}\nauto: {auto.lines()}")

    results: dict[str, dict[str, np.ndarray]] = {}
    for name, (left, right, left_h, right_h) in variants.items():
        results[name] = {}
        for method in ("sgbm", "psmnet"):
            disp = predict_disparity(left, right, method=method, max_disp=MAX_DISP if method == "sgbm" else None
                                     ).disparity
            results[name][method] = disparity_in_original_frame(disp, left_h, right_h, W, H)
            if name == "--calib (OpenCV YAML)" and method == "psmnet":
                cam = calibrated.camera
                depth = disparity_to_depth(disp, cam.focal, cam.baseline, cam.doffs)
    seen = np.ones((H, W), bool)
    for per_method in results.values():
        for back in per_method.values():
            seen &= np.isfinite(back)
    gt = np.where(seen, scene["disp"], 0)
    print(f"\nD1 (%) on the {100 * seen.mean():.0f}% of the left view's pixels that every variant sees:\n")
    print("| pair | SGBM | PSMNet (shipped) |\n|---|---|---|")
    for name, per_method in results.items():
        d1 = {m: stereo_metrics(np.where(seen, b, 0), gt, max_disp=MAX_DISP)["d1"] for m, b in per_method.items()}
        print(f"| {name} | {d1['sgbm']:.2f} | {d1['psmnet']:.2f} |")

    fig, axes = subplots(2, 2, figsize=(11, 6.4))
    rows = np.arange(24, H, 40)

    def show(ax, image, title, lines=True):
        ax.imshow(image)
        if lines:
            for r in rows:
                ax.axhline(r, color="#00e5ff", lw=0.6)
        ax.set_title(title, fontsize=10)
        ax.axis("off")

    show(axes[0, 0], np.hstack([taken.left, taken.right]),
         f"as taken: rows disagree (median |dy| {found.median_abs_dy:.1f} px)")
    show(axes[0, 1], np.hstack([calibrated.left, calibrated.right]), "rectified from the calibration (--calib)")
    show(axes[1, 0], np.hstack([auto.left, auto.right]), "rectified automatically (--rectify auto)")
    show(axes[1, 1], colorize_depth(depth), f"PSMNet depth after --calib: {np.nanpercentile(depth, 5):.1f}-"
         f"{np.nanpercentile(depth, 95):.1f} m (5-95 %)", lines=False)
    fig.tight_layout()
    out = save_figure(fig, IMAGES / "own_camera.png")
    with Image.open(out) as image:
        image.convert("RGB").quantize(256).save(out, optimize=True)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
