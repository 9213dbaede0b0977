"""``vislab stereo submit``: the KITTI 2015/2012 submission folder and its zip.

Layout written (what the KITTI server expects inside the zip)::

    OUT/disp_0/000000_10.png ...     uint16 disparity * 256, full original size, named as the left images
    OUT.zip                          the same, with disp_0/ at the top level of the archive
"""

import argparse
import zipfile
from pathlib import Path

import numpy as np

from vislab.core.errors import VislabError
from vislab.core.logging import make_output_dir, progress
from vislab.stereo.datasets import StereoDataset, create_dataset
from vislab.stereo.evaluate import PredictFn, build_predictor, predictor_options
from vislab.stereo.io import write_kitti_disparity
from vislab.stereo.metrics import MetricAccumulator


def write_submission(predict_fn: PredictFn, dataset: StereoDataset, out: str | Path,
                     max_disp: int = 192) -> tuple[Path, Path, MetricAccumulator | None]:
    """Predict every pair of ``dataset`` into ``out/disp_0/<left name>.png`` and zip it as ``out.zip``.

    Returns (folder, zip path, metrics on the way when the split has ground truth, else None).
    """
    out = Path(out)
    if out.suffix == ".zip":
        raise VislabError(f"--out is the submission folder; the zip is written next to it (got {out})")
    disp_dir = out / "disp_0"
    make_output_dir(disp_dir)
    acc = MetricAccumulator(max_disp) if dataset.has_disparity else None
    files = []
    for i in progress(range(len(dataset)), desc="predicting", total=len(dataset)):
        sample = dataset[i]
        pred = np.asarray(predict_fn(sample["left"], sample["right"]), dtype=np.float32)
        if pred.shape != tuple(sample["left"].shape[-2:]):
            raise VislabError(f"prediction for {sample['name']} is {pred.shape}, image is "
                              f"{tuple(sample['left'].shape[-2:])}")
        files.append(write_kitti_disparity(disp_dir / f"{sample['name']}.png", pred))
        if acc is not None:
            acc.update(pred, sample["disp"], sample["valid"], sample["name"])
    zip_path = out.parent / f"{out.name}.zip"
    tmp = zip_path.with_name(f".{zip_path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            zf.write(f, arcname=f"disp_0/{f.name}")
    tmp.replace(zip_path)
    return disp_dir, zip_path, acc


def run_submit(args: argparse.Namespace) -> int:
    """Write the submission folder and zip; on ``--split training`` also print D1/EPE of what was written."""
    dataset = create_dataset(args.dataset, args.root, split=args.split)
    predict_fn, config = build_predictor(**predictor_options(args))
    disp_dir, zip_path, acc = write_submission(predict_fn, dataset, args.out, int(config["max_disp"]))
    print(f"{config['method']}: wrote {len(dataset)} disparity maps to {disp_dir}")
    print(f"wrote {zip_path} (upload this to the KITTI {args.dataset[-4:]} stereo benchmark)")
    if acc is not None:
        pm = acc.summary()["pixel_mean"]
        print(f"on the {args.split} split: EPE {pm['epe']:.3f} px, "
              f"D1 {pm['d1']:.2f} %")
    return 0
