"""``vislab stereo ...`` subcommands: argument parsing only; the work lives in the stereo modules."""

import argparse
import importlib
from collections.abc import Callable

from vislab.core.device import DEVICE_CHOICES
from vislab.stereo.configs import LOSSES, SYNTHETIC_STYLES


def _lazy(target: str) -> Callable[[argparse.Namespace], int]:
    """Import ``module:function`` only when the subcommand runs, so ``--help`` stays fast."""
    module_name, func_name = target.split(":")

    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(module_name), func_name)(args)

    return run


def _max_disp(text: str) -> int | str:
    """``--max-disp``: ``auto`` or an integer (checked further where it is used, with one-line errors)."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer, got {text!r}") from None


def _add_checkpoint_args(p: argparse.ArgumentParser, auto_range: bool = False) -> None:
    p.add_argument("--weights", default=None,
                   help="checkpoint: vislab's or an official PSMNet release (default: the shipped model)")
    if auto_range:
        p.add_argument("--max-disp", type=_max_disp, default="auto", metavar="auto|D",
                       help="disparity range: auto (default: each pair's own, from a quarter-size first look, "
                            "up to the checkpoint's) or D, a multiple of 4 (192: the checkpoint's full range)")
    else:
        p.add_argument("--max-disp", type=int, default=None,
                       help="disparity range, a multiple of 4 (default: the checkpoint's, else 192)")
    p.add_argument("--align-corners", action="store_true",
                   help="upsample with align_corners=True, as the first released weights were trained")


def _add_estimator_args(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--estimator", default=None, choices=("softargmin", "dominant"), help=help_text)
    p.add_argument("--estimator-window", type=int, default=None,
                   help="half-width in px of the dominant estimator's window (default 4)")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    _add_checkpoint_args(p, auto_range=True)
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    _add_estimator_args(p, "PSMNet disparity from the softmax: dominant (default: the mean inside the most probable "
                           "+-window) or softargmin (the paper's mean over all disparities)")
    p.add_argument("--lr-check", type=float, default=None, metavar="PX",
                   help="PSMNet left-right consistency check: also predict the right view and refill pixels it "
                        "contradicts by more than PX from their row's background (default 2; 0 turns it off)")
    p.add_argument("--lr-view", default=None, choices=("full", "half", "volume"),
                   help="the check's right view at full size (default: the network's time again), at half the "
                        "size (about a sixth of it) or read from the left pass's cost volume (a second regression "
                        "only); the cheaper views keep less of the check's benefit")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="bf16: bfloat16 networks, only on CPUs/GPUs that compute it natively; auto (default): bf16 "
                        "only where it is measured faster and as accurate, else fp32")


def _add_own_camera_args(p: argparse.ArgumentParser) -> None:
    """A pair of your own: calibration, automatic rectification, swapped views, input checks (issue 27)."""
    p.add_argument("--calib", default=None, action="append", metavar="FILE",
                   help="calibration: OpenCV YAML (from `vislab stereo calibrate`), KITTI calib_cam_to_cam.txt, "
                        "Middlebury calib.txt, or ROS camera_info YAML given twice (--calib left.yaml --calib "
                        "right.yaml); the pair is undistorted and rectified with it, depth is in its unit")
    p.add_argument("--rectify", default="none", choices=("none", "auto"),
                   help="auto: rectify from the images' feature matches (two photos taken side by side); "
                        "disparity is then relative, no metric depth (default: none, the pair is rectified)")
    p.add_argument("--swap", action="store_true", help="the first image is the right view: swap them")
    p.add_argument("--no-checks", action="store_true",
                   help="skip the input checks (vertical misalignment, swapped views, disparity beyond the range)")


def _add_sequence_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--left-dir", default=None, help="a sequence: folder of left images (pairs matched by name)")
    p.add_argument("--right-dir", default=None, help="... and the folder of the right images")
    p.add_argument("--video", nargs=2, default=None, metavar=("LEFT", "RIGHT"), help="a sequence: two videos")
    p.add_argument("--sbs", default=None, metavar="VIDEO", help="a sequence: one side-by-side video (left half left)")
    p.add_argument("--every", type=int, default=1, help="sequences: use every N-th frame (default 1)")
    p.add_argument("--disp-video", action="store_true",
                   help="sequences: also write the colourised disparity as a video (disparity.mp4)")


def add_parser(labs: argparse._SubParsersAction) -> None:
    stereo = labs.add_parser("stereo", help="PSMNet stereo matching")
    sub = stereo.add_subparsers(dest="command", required=True)

    p = sub.add_parser("summary", help="layer-by-layer output shapes and parameter count")
    p.add_argument("--model", default="stackhourglass", choices=("stackhourglass", "basic"))
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--max-disp", type=int, default=192)
    p.set_defaults(func=_lazy("vislab.stereo.summary:run_summary"))

    p = sub.add_parser("eval", help="EPE / D1 / bad-N on a dataset, for a model or SGBM")
    p.add_argument("--dataset", required=True)
    p.add_argument("--root", default=None, help="dataset folder (not for synthetic)")
    _add_model_args(p)
    p.add_argument("--method", default="psmnet", choices=("psmnet", "sgbm"))
    p.add_argument("--split", default=None,
                   help="dataset split (default: the usual evaluation split with ground truth: testing, i.e. "
                        "FlyingThings3D TEST, for sceneflow and a fixed scene set for synthetic; training for the "
                        "others)")
    p.add_argument("--dataset-opt", action="append", default=None, metavar="KEY=VALUE",
                   help="dataset option, repeatable: resolution=F|H|Q, nonocc=true, pass=final, "
                        "subsets=driving,monkaa, occ=false; synthetic: size=N height=H width=W max_disp=D seed=S")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N pairs")
    p.add_argument("--json", dest="json_path", nargs="?", const="-", default=None,
                   help="write results as JSON to this file (or stdout with no value)")
    p.set_defaults(func=_lazy("vislab.stereo.evaluate:run_eval"))

    p = sub.add_parser("predict", help="disparity, confidence, depth and point cloud for a stereo pair")
    p.add_argument("left", nargs="?", default=None)
    p.add_argument("right", nargs="?", default=None)
    p.add_argument("--example", default=None, choices=("motorcycle",),
                   help="predict on a pair bundled with scikit-image instead (with its calibration and GT)")
    _add_model_args(p)
    p.add_argument("--method", default="psmnet", choices=("psmnet", "sgbm"))
    p.add_argument("--out", default="predictions")
    _add_own_camera_args(p)
    p.add_argument("--focal", type=float, default=None, help="focal length in pixels")
    p.add_argument("--baseline", type=float, default=None, help="baseline (depth comes out in its unit)")
    p.add_argument("--ply", action="store_true", help="also write a coloured point cloud")
    p.add_argument("--min-confidence", type=float, default=0.0,
                   help="drop points whose confidence is below this from the point cloud")
    p.add_argument("--drop-discontinuities", action="store_true",
                   help="drop points at depth discontinuities from the point cloud")
    p.add_argument("--onnx", default=None, metavar="MODEL.onnx",
                   help="run a graph made by `vislab stereo export` with ONNX Runtime instead of PyTorch")
    _add_sequence_args(p)
    p.set_defaults(func=_lazy("vislab.stereo.predict:run_predict"))

    p = sub.add_parser("rectify", help="write the rectified pair (from a calibration, or automatic), with checks")
    p.add_argument("left", nargs="?", default=None)
    p.add_argument("right", nargs="?", default=None)
    _add_own_camera_args(p)
    p.add_argument("--max-disp", type=int, default=None, help="disparity range the checks assume (default 192)")
    p.add_argument("--out", default="rectified", help="output folder (default: rectified)")
    p.set_defaults(func=_lazy("vislab.stereo.camera.commands:run_rectify"))

    p = sub.add_parser("calibrate", help="stereo calibration from chessboard photos -> OpenCV YAML")
    p.add_argument("--left-dir", required=True, help="folder of the left camera's photos of the board")
    p.add_argument("--right-dir", required=True, help="folder of the right camera's photos (same file names)")
    p.add_argument("--board", required=True, metavar="COLSxROWS",
                   help="inner corners of the chessboard, e.g. 9x6 (a 10x7-square board)")
    p.add_argument("--square", required=True, metavar="SIZE",
                   help="side of one square with its unit: 25mm, 2.5cm, 0.025m (the calibration is in metres)")
    p.add_argument("--charuco", action="store_true",
                   help="a ChArUco board (ArUco markers in the white squares): --board then counts squares, e.g. 7x5")
    p.add_argument("--marker", default=None, metavar="SIZE",
                   help="ChArUco: side of one marker with its unit (default: 3/4 of --square)")
    p.add_argument("--dictionary", default="DICT_4X4_50",
                   help="ChArUco: OpenCV's ArUco dictionary (default DICT_4X4_50)")
    p.add_argument("--out", default="stereo_calib.yaml", help="calibration file to write (default: stereo_calib.yaml)")
    p.set_defaults(func=_lazy("vislab.stereo.camera.commands:run_calibrate"))

    p = sub.add_parser("export", help="write PSMNet as an ONNX graph (padding and crop inside) for ONNX Runtime")
    p.add_argument("out", metavar="OUT.onnx")
    _add_checkpoint_args(p)
    p.add_argument("--height", type=int, default=None, help="fixed image height of the graph (with --width)")
    p.add_argument("--width", type=int, default=None, help="fixed image width of the graph (with --height)")
    p.add_argument("--dynamic", action="store_true", help="a graph that takes any image size instead")
    p.add_argument("--confidence", action="store_true", help="also output the confidence map")
    _add_estimator_args(p, "disparity from the softmax, fixed in the graph (default: dominant, as predict)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, 17 to 20 (default 17)")
    p.set_defaults(func=_lazy("vislab.stereo.export:run_export"))

    p = sub.add_parser("submit", help="write a KITTI submission folder and zip")
    p.add_argument("--dataset", required=True, choices=("kitti2015", "kitti2012"))
    p.add_argument("--root", required=True)
    _add_model_args(p)
    p.add_argument("--method", default="psmnet", choices=("psmnet", "sgbm"))
    p.add_argument("--split", default="testing", choices=("testing", "training"))
    p.add_argument("--out", required=True, help="submission folder; its zip is written next to it as OUT.zip")
    p.set_defaults(func=_lazy("vislab.stereo.submit:run_submit"))

    p = sub.add_parser("train", help="train or fine-tune PSMNet")
    p.add_argument("--dataset", action="append", default=None,
                   help="dataset name; repeat with --root to mix several (default: the --config's)")
    p.add_argument("--root", action="append", default=None, help="dataset root, one per --dataset")
    p.add_argument("--config", default=None, help="a named training configuration (see README)")
    p.add_argument("--model", default=None, choices=("stackhourglass", "basic"))
    p.add_argument("--max-disp", type=int, default=None)
    p.add_argument("--crop", default=None, help="HxW random crop, e.g. 256x512")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--schedule", default=None, help="none | kitti (lr/10 after epoch 200) | step:E1,E2")
    p.add_argument("--weights", default=None, help="start from these weights (fine-tuning)")
    p.add_argument("--val-dataset", default=None)
    p.add_argument("--val-root", default=None)
    p.add_argument("--out", default="runs/stereo")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--seed", type=int, default=None, help="default 0")
    p.add_argument("--num-workers", type=int, default=None, help="data-loader processes (default 0)")
    p.add_argument("--synthetic-size", type=int, default=None, help="synthetic scenes per epoch (default 1000)")
    p.add_argument("--val-limit", type=int, default=None, help="validate on the first N pairs only")
    p.add_argument("--photometric", action="store_true", help="colour jitter on top of the random crop")
    p.add_argument("--asymmetric", action="store_true",
                   help="colour, gamma and blur drawn independently for each view (replaces --photometric)")
    p.add_argument("--loss", default=None, choices=tuple(LOSSES),
                   help="smoothl1 (the paper, default) or adl (adaptive multi-modal cross-entropy)")
    p.add_argument("--synthetic-style", default=None, choices=SYNTHETIC_STYLES,
                   help="synthetic training scenes: objects (default), real (ground plane, small disparities), mixed")
    p.add_argument("--iters", type=int, default=None, help="stop after N optimizer steps in total")
    p.add_argument("--save-every", type=int, default=None, help="write last.pt every N steps")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under torchrun")
    p.add_argument("--align-corners", action="store_true")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.set_defaults(func=_lazy("vislab.stereo.train:run_train"))

    p = sub.add_parser("curves", help="plot the training curves of one run, or of stages trained in sequence")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="run folders, in training order; RUN_DIR:N stops at step N")
    p.add_argument("--out", default="curves.png", help="PNG to write (default: curves.png)")
    p.add_argument("--smooth", type=int, default=50, help="moving-average window in steps (default: 50)")
    p.add_argument("--labels", nargs="+", default=None, help="one legend label per RUN_DIR (default: folder names)")
    p.set_defaults(func=_lazy("vislab.stereo.curves:run_curves"))

    p = sub.add_parser("synth", help="write synthetic stereo scenes in the SceneFlow layout")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--out", required=True)
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--max-disp", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_lazy("vislab.stereo.datasets.synthetic:run_synth"))
