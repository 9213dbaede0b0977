"""``vislab stereo rectify|calibrate`` and ``predict`` on sequences: parse the arguments, call the typed
functions of :mod:`vislab.stereo.camera`, print what happened."""

import argparse
from pathlib import Path

import numpy as np

from vislab.core.errors import VislabError


def _calib_arg(args: argparse.Namespace) -> str | list[str] | None:
    calib = getattr(args, "calib", None)
    return calib[0] if isinstance(calib, list) and len(calib) == 1 else calib


def run_rectify(args: argparse.Namespace) -> int:
    """Write the rectified pair (PNG), its camera as a Middlebury calib.txt when metric, and the checks' JSON."""
    from vislab.core.logging import make_output_dir
    from vislab.stereo.camera.pipeline import prepare_pair
    from vislab.stereo.camera.writers import write_rectified_pair

    if not (args.left and args.right):
        raise VislabError("give the LEFT and RIGHT images")
    calib = _calib_arg(args)
    if not calib and args.rectify == "none":
        raise VislabError("give --calib FILE or --rectify auto (what to rectify with)")
    prepared = prepare_pair(args.left, args.right, calib=calib, rectify=args.rectify, swap=bool(args.swap),
                            max_disp=args.max_disp, check=not args.no_checks)
    out = make_output_dir(args.out)
    written = write_rectified_pair(out, Path(args.left).stem, prepared)
    for line in prepared.lines():
        print(line)
    for path in written:
        print(f"wrote {path}")
    return 0


def parse_board(text: str) -> tuple[int, int]:
    """``"9x6"`` -> (9, 6) inner corners; a one-line error otherwise."""
    cols, sep, rows = text.lower().partition("x")
    try:
        board = (int(cols), int(rows))
    except ValueError:
        board = (0, 0)
    if not sep or min(board) < 2:
        raise VislabError(f"--board must be COLSxROWS inner corners with both at least 2, e.g. 9x6; got {text!r}")
    return board


_UNITS = {"mm": 1e-3, "cm": 1e-2, "m": 1.0, "in": 0.0254}


def parse_square(text: str, option: str = "--square") -> float:
    """``"25mm"`` / ``"2.5cm"`` / ``"0.025m"`` / ``"1in"`` -> metres; a bare number is an error (the unit is the
    commonest calibration mistake, so it must be said)."""
    t = text.strip().lower()
    for unit in sorted(_UNITS, key=len, reverse=True):
        if t.endswith(unit):
            try:
                value = float(t[: -len(unit)])
            except ValueError:
                break
            if not value > 0 or not np.isfinite(value):
                break
            return value * _UNITS[unit]
    raise VislabError(f"{option} must be a positive length with its unit (mm, cm, m or in), e.g. 25mm; got {text!r}")


def run_calibrate(args: argparse.Namespace) -> int:
    """Calibrate a stereo rig from chessboard photo pairs and write the OpenCV YAML."""
    from vislab.stereo.camera.calibfiles import write_opencv_calibration
    from vislab.stereo.camera.calibrate import Charuco, calibrate_folders

    board, square = parse_board(args.board), parse_square(args.square)
    charuco = None
    if getattr(args, "charuco", False):
        marker = parse_square(args.marker, "--marker") if args.marker else 0.75 * square
        charuco = Charuco(marker, args.dictionary)
    elif getattr(args, "marker", None):
        raise VislabError("--marker is for a ChArUco board: add --charuco")
    result = calibrate_folders(args.left_dir, args.right_dir, board=board, square=square, charuco=charuco)
    for name, reason in result.skipped:
        print(f"skipped {name}: {reason}")
    path = write_opencv_calibration(args.out, result.rig)
    rig = result.rig
    print(f"stereo calibration from {result.used} of {result.used + len(result.skipped)} pairs "
          f"({rig.width}x{rig.height}): RMS reprojection error {rig.rms:.3f} px, baseline {rig.baseline:.4f} m, "
          f"focal {rig.k1[0, 0]:.1f} / {rig.k2[0, 0]:.1f} px")
    if rig.rms is not None and rig.rms > 1.0:
        print("warning: an RMS error above 1 px usually means blurred photos, a board that is not flat, or a "
              "wrong --board; check the skipped pairs and retake the worst")
    print(f"wrote {path}")
    return 0


def run_sequence(args: argparse.Namespace) -> int:
    """``vislab stereo predict --left-dir/--right-dir | --video L R | --sbs V``: every frame, resumable."""
    from vislab.stereo.camera.sequences import SequenceOptions, open_sequence, predict_sequence

    if args.left or args.right or getattr(args, "example", None):
        raise VislabError("give either LEFT RIGHT images or a sequence (--left-dir/--right-dir, --video, --sbs)")
    source = open_sequence(left_dir=args.left_dir, right_dir=args.right_dir, video=args.video, sbs=args.sbs,
                           every=args.every)
    options = SequenceOptions(
        method=args.method, weights=args.weights, max_disp=args.max_disp, device=args.device,
        align_corners=bool(args.align_corners), estimator=getattr(args, "estimator", None),
        estimator_window=getattr(args, "estimator_window", None), lr_check=getattr(args, "lr_check", None),
        calib=_calib_arg(args), rectify=args.rectify, swap=bool(args.swap), check=not args.no_checks,
        focal=args.focal, baseline=args.baseline, disp_video=bool(args.disp_video))
    summary = predict_sequence(source, args.out, options)
    for line in summary.lines():
        print(line)
    return 0
