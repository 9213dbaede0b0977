"""evaluate(), `vislab stereo eval / predict / submit` end to end, depth/point-cloud geometry and colour maps."""

import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vislab.cli import main
from vislab.core.checkpoint import save_atomic
from vislab.core.errors import VislabError
from vislab.stereo.datasets import create_dataset
from vislab.stereo.evaluate import build_predictor, evaluate, parse_dataset_options, psmnet_predict_fn
from vislab.stereo.geometry import depth_to_points, discontinuity_mask, disparity_to_depth, read_ply, write_ply
from vislab.stereo.io import read_kitti_disparity, read_pfm, write_kitti_disparity
from vislab.stereo.metrics import stereo_metrics
from vislab.stereo.models.weights import load_stereo_model
from vislab.stereo.sgbm import sgbm_predict_fn
from vislab.stereo.transforms import imagenet_normalize
from vislab.stereo.visualize import colorize_confidence, colorize_depth, colorize_disparity, colorize_error


def save_random_basic32(path: Path, last_layer_scale: float = 1.0) -> Path:
    """A seeded random-weights basic PSMNet (max_disp 32) in vislab's checkpoint format."""
    from vislab.stereo.models import create_model

    torch.manual_seed(0)
    model = create_model("basic", max_disp=32)
    with torch.no_grad():
        model.classify[-1].weight.mul_(last_layer_scale)
    return save_atomic({"model": model.state_dict(),
                        "model_config": {"name": "basic", "max_disp": 32, "align_corners": False}}, path)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    return save_random_basic32(tmp_path_factory.mktemp("ckpt") / "basic32.pt")


@pytest.fixture(scope="module")
def soft_ckpt(tmp_path_factory) -> Path:
    """tiny_ckpt's model with its last cost layer scaled by 1e-6: random weights give a one-hot softmax
    (confidence exactly 1 everywhere), this one spreads confidence over [0, 1] so thresholds drop pixels."""
    return save_random_basic32(tmp_path_factory.mktemp("ckpt") / "soft32.pt", last_layer_scale=1e-6)


@pytest.fixture(scope="module")
def crops(stereo_samples, tmp_path_factory) -> tuple[Path, Path, Path]:
    """32x64 crops of the real Middlebury pair (+ a calib.txt rewritten for the crop): small keeps PSMNet fast."""
    src = stereo_samples / "middlebury2014/trainingQ/Motorcycle"
    out = tmp_path_factory.mktemp("crops")
    box = (330, 220, 394, 252)
    for name in ("im0", "im1"):
        Image.open(src / f"{name}.png").crop(box).save(out / f"{name}.png")
    calib = (src / "calib.txt").read_text().replace("width=741", "width=64").replace("height=497", "height=32")
    (out / "calib.txt").write_text(calib)
    return out / "im0.png", out / "im1.png", out / "calib.txt"


def make_tiny_kitti(root: Path, sizes: list[tuple[int, int]], stereo_samples: Path) -> Path:
    """A KITTI 2015 tree whose images are crops of the real frame 000046 (training with GT, testing without)."""
    src = stereo_samples / "kitti2015/training"
    disp, _ = read_kitti_disparity(src / "disp_occ_0/000046_10.png")
    for i, (h, w) in enumerate(sizes):
        x0, y0 = 400 + 20 * i, 215  # rows where the ground truth lies within 15-31 px (fits max_disp 32)
        for split in ("training", "testing"):
            for folder in ("image_2", "image_3"):
                d = root / split / folder
                d.mkdir(parents=True, exist_ok=True)
                Image.open(src / folder / "000046_10.png").crop((x0, y0, x0 + w, y0 + h)).save(d / f"{i:06d}_10.png")
        write_kitti_disparity(root / "training/disp_occ_0" / f"{i:06d}_10.png", disp[y0:y0 + h, x0:x0 + w])
    return root


# ------------------------------------------------------------------------------------------------ evaluate()


def test_evaluate_with_exact_and_offset_predictions(tmp_path, stereo_samples):
    ds = create_dataset("kitti2015", make_tiny_kitti(tmp_path / "k", [(40, 60), (48, 64)], stereo_samples))
    gts = [ds[i]["disp"] for i in range(len(ds))]
    calls = iter(gts)

    def plus_four(left, right):  # error 4 px everywhere: bad1-3 = 100 %, D1 = share of gt < 80
        return next(calls) + 4.0

    res = evaluate(plus_four, ds, max_disp=192, progress=False)
    assert [r["name"] for r in res["per_image"]] == ["000000_10", "000001_10"]
    assert res["pixel_mean"]["epe"] == pytest.approx(4.0) and res["image_mean"]["bad3"] == pytest.approx(100.0)
    valid = torch.cat([(g > 0).flatten() for g in gts])
    near = torch.cat([g.flatten() for g in gts])[valid]
    assert res["pixel_mean"]["d1"] == pytest.approx(100 * float((near < 80).float().mean()))
    assert res["pixel_mean"]["n_valid"] == int(valid.sum())
    only_one = evaluate(lambda left, right: gts[0], ds, max_disp=192, limit=1, progress=False)
    assert only_one["n_images"] == 1 and only_one["pixel_mean"]["epe"] == 0.0


def test_evaluate_refuses_testing_split(tmp_path, stereo_samples):
    ds = create_dataset("kitti2015", make_tiny_kitti(tmp_path / "k", [(40, 60)], stereo_samples), split="testing")
    with pytest.raises(VislabError, match="no ground-truth"):
        evaluate(lambda l, r: l[0], ds, max_disp=192, progress=False)


def test_evaluate_sgbm_on_the_three_real_pairs(stereo_samples):
    sets = [create_dataset("kitti2015", stereo_samples / "kitti2015"),
            create_dataset("middlebury2014", stereo_samples / "middlebury2014"),
            create_dataset("sceneflow", stereo_samples / "sceneflow", split="testing")]
    res = [evaluate(sgbm_predict_fn(192), ds, max_disp=192, progress=False) for ds in sets]
    kitti, mb, ft = (r["pixel_mean"] for r in res)
    # measured (README): KITTI D1 2.87 % EPE 0.82; Middlebury Q D1 8.67 % EPE 1.65; FlyingThings D1 26.4 % EPE 6.7
    assert 1.5 < kitti["d1"] < 6 and kitti["epe"] < 1.5
    assert 4 < mb["d1"] < 15 and mb["epe"] < 3
    assert 15 < ft["d1"] < 35 and ft["epe"] < 10


def test_psmnet_predict_fn_matches_model_infer(tiny_ckpt):
    from vislab.stereo.models import load_stereo_model

    model, info = load_stereo_model(tiny_ckpt, "cpu")
    assert info["max_disp"] == 32
    left, right = torch.rand(3, 20, 36), torch.rand(3, 20, 36)
    out = psmnet_predict_fn(model, "cpu")(left, right)
    ref, _ = model.infer(imagenet_normalize(left)[None], imagenet_normalize(right)[None], return_confidence=False)
    assert out.shape == (20, 36) and torch.allclose(out, ref[0])


def test_parse_dataset_options():
    assert parse_dataset_options(["resolution=H", "nonocc=true", "subsets=driving,monkaa", "seed=3"]) == {
        "resolution": "H", "nonocc": True, "subsets": "driving,monkaa", "seed": 3}
    assert parse_dataset_options(["seed=1", "seed2=0", "occ=no"]) == {"seed": 1, "seed2": 0, "occ": False}
    assert type(parse_dataset_options(["seed=1"])["seed"]) is int  # not True
    with pytest.raises(VislabError, match="KEY=VALUE"):
        parse_dataset_options(["resolution"])


# ------------------------------------------------------------------------------------------------ CLI: eval


def test_cli_eval_sgbm_json(stereo_samples, tmp_path, capsys):
    out = tmp_path / "res.json"
    rc = main(["stereo", "eval", "--dataset", "kitti2015", "--root", str(stereo_samples / "kitti2015"),
               "--method", "sgbm", "--json", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "000046_10" in printed and "pixel mean" in printed and "image mean" in printed
    rec = json.loads(out.read_text())
    assert set(rec) >= {"config", "per_image", "pixel_mean", "image_mean"}
    assert rec["config"]["method"] == "sgbm" and rec["config"]["max_disp"] == 192
    assert rec["per_image"][0]["name"] == "000046_10" and rec["pixel_mean"]["d1"] < 6


def test_cli_eval_sceneflow_defaults_to_its_test_split(stereo_samples, tmp_path):
    # The shared FlyingThings3D sample is in TEST/, the split SceneFlow results are reported on.
    out = tmp_path / "sf.json"
    rc = main(["stereo", "eval", "--dataset", "sceneflow", "--root", str(stereo_samples / "sceneflow"),
               "--method", "sgbm", "--json", str(out)])
    assert rc == 0
    rec = json.loads(out.read_text())
    assert rec["config"]["split"] == "testing"
    assert rec["per_image"][0]["name"].startswith("flyingthings3d/TEST")


def test_cli_eval_synthetic_held_out_scenes_all_and_non_occluded_pixels(tmp_path):
    from vislab.stereo.datasets.synthetic import render_scene

    opts = ["--dataset-opt", "size=2", "--dataset-opt", "height=48", "--dataset-opt", "width=96",
            "--dataset-opt", "max_disp=32", "--dataset-opt", "seed=5"]
    counts = {}
    for name, extra in (("all", []), ("noc", ["--dataset-opt", "nonocc=true"])):
        out = tmp_path / f"{name}.json"
        assert main(["stereo", "eval", "--dataset", "synthetic", *opts, *extra, "--method", "sgbm",
                     "--max-disp", "32", "--json", str(out)]) == 0
        rec = json.loads(out.read_text())
        assert rec["config"]["split"] == "testing"  # the fixed set, not per-epoch training scenes
        assert [r["name"] for r in rec["per_image"]] == ["synthetic/5/fixed/000000", "synthetic/5/fixed/000001"]
        counts[name] = [r["n_valid"] for r in rec["per_image"]]
    scenes = [render_scene((5, 1, i), 48, 96, 32) for i in range(2)]
    assert counts["all"] == [int(((s["disp"] > 0) & (s["disp"] < 32)).sum()) for s in scenes]
    assert counts["noc"] == [int(((s["disp"] > 0) & (s["disp"] < 32) & ~s["occluded"]).sum()) for s in scenes]
    assert all(n < a for n, a in zip(counts["noc"], counts["all"], strict=True))


def test_cli_eval_psmnet_json_to_stdout(tmp_path, stereo_samples, tiny_ckpt, capsys):
    root = make_tiny_kitti(tmp_path / "k", [(32, 64)], stereo_samples)
    rc = main(["stereo", "eval", "--dataset", "kitti2015", "--root", str(root), "--weights", str(tiny_ckpt),
               "--device", "cpu", "--json"])
    assert rc == 0
    captured = capsys.readouterr()
    rec = json.loads(captured.out)  # stdout holds only the JSON; the table went to stderr
    assert "pixel mean" in captured.err
    assert rec["config"]["method"] == "psmnet" and rec["config"]["max_disp"] == 32
    assert rec["per_image"][0]["n_valid"] > 0 and rec["pixel_mean"]["epe"] > 0


def test_cli_eval_psmnet_max_disp_limit_means_and_empty_images(tmp_path, stereo_samples, tiny_ckpt, capsys):
    # four crops of different sizes (so different pixel counts and errors); --limit 3 scores the first three
    root = make_tiny_kitti(tmp_path / "k", [(32, 64), (24, 48), (32, 40), (16, 32)], stereo_samples)
    # image 2 gets an empty ground truth: listed with no numbers, which must be JSON null (NaN is not JSON)
    write_kitti_disparity(root / "training/disp_occ_0/000002_10.png", np.zeros((32, 40), np.float32))
    out = tmp_path / "res.json"
    assert main(["stereo", "eval", "--dataset", "kitti2015", "--root", str(root), "--weights", str(tiny_ckpt),
                 "--device", "cpu", "--max-disp", "48", "--limit", "3", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    text = out.read_text()
    assert "NaN" not in text
    rec = json.loads(text)
    # --max-disp overrides the checkpoint's 32 for the model and the scored range; the limit is recorded
    assert rec["config"]["max_disp"] == 48 and rec["config"]["limit"] == 3
    rows = rec["per_image"]
    assert [r["name"] for r in rows] == ["000000_10", "000001_10", "000002_10"]
    assert rows[2]["n_valid"] == 0 and rows[2]["epe"] is None and rows[2]["d1"] is None
    a, b = rows[:2]
    assert a["n_valid"] != b["n_valid"] and a["epe"] != b["epe"]
    # pixel mean: weighted by valid pixels; image mean: each (evaluable) image counts once
    pixel_epe = (a["epe"] * a["n_valid"] + b["epe"] * b["n_valid"]) / (a["n_valid"] + b["n_valid"])
    assert rec["pixel_mean"]["epe"] == pytest.approx(pixel_epe, rel=1e-5)
    assert rec["image_mean"]["epe"] == pytest.approx((a["epe"] + b["epe"]) / 2, rel=1e-5)
    assert rec["pixel_mean"]["n_valid"] == a["n_valid"] + b["n_valid"] and rec["image_mean"]["n_images"] == 2
    table = {line[:10]: line.split() for line in printed.splitlines() if line.startswith(("pixel mean", "image mean"))}
    assert float(table["pixel mean"][2]) == pytest.approx(rec["pixel_mean"]["epe"], abs=1e-3)
    assert float(table["image mean"][2]) == pytest.approx(rec["image_mean"]["epe"], abs=1e-3)
    assert "max disparity 48" in printed


def test_evaluate_refuses_a_prediction_of_the_wrong_size(tmp_path, stereo_samples):
    ds = create_dataset("kitti2015", make_tiny_kitti(tmp_path / "k", [(40, 60)], stereo_samples))
    with pytest.raises(VislabError, match=r"is \(40, 59\), ground truth is \(40, 60\)"):
        evaluate(lambda left, right: torch.zeros(40, 59), ds, max_disp=192, progress=False)


def test_cli_eval_errors(tmp_path, capsys):
    assert main(["stereo", "eval", "--dataset", "kitti2015", "--root", str(tmp_path / "none"),
                 "--method", "sgbm"]) == 2
    assert "root not found" in capsys.readouterr().err
    assert main(["stereo", "eval", "--dataset", "nosuch", "--root", str(tmp_path), "--method", "sgbm"]) == 2
    assert "unknown dataset" in capsys.readouterr().err
    assert main(["stereo", "eval", "--dataset", "kitti2015", "--method", "sgbm"]) == 2
    assert "needs --root" in capsys.readouterr().err
    synthetic = ["stereo", "eval", "--dataset", "synthetic", "--dataset-opt", "size=1", "--dataset-opt", "height=16",
                 "--dataset-opt", "width=32", "--dataset-opt", "max_disp=8"]
    for flags, message in ((["--method", "sgbm", "--max-disp", "-16"], "--max-disp must be positive"),
                           # PSMNet's 1/4-scale volume; refused from the flag itself, before any checkpoint is read
                           (["--weights", str(tmp_path / "absent.pt"), "--max-disp", "30"],
                            "--max-disp must be a positive multiple of 4, got 30"),
                           (["--method", "sgbm", "--weights", str(tmp_path / "x.pt")], "cannot be combined"),
                           (["--method", "sgbm", "--limit", "0"], "--limit must be at least 1"),
                           (["--method", "sgbm", "--json", str(tmp_path)], "is a folder")):
        assert main([*synthetic, *flags]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not list(tmp_path.glob(".*.tmp"))  # the refused --json left no temp file behind


# ------------------------------------------------------------------------------------------------ CLI: predict


def test_cli_predict_sgbm_with_calibration(stereo_samples, tmp_path, capsys):
    src = stereo_samples / "middlebury2014/trainingQ/Motorcycle"
    out = tmp_path / "pred"
    rc = main(["stereo", "predict", str(src / "im0.png"), str(src / "im1.png"), "--method", "sgbm",
               "--max-disp", "80", "--calib", str(src / "calib.txt"), "--ply", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "confidence: not available for sgbm" in printed and "peak memory" in printed
    disp = np.load(out / "im0_disp.npy")
    assert disp.shape == (497, 741) and np.isfinite(disp).all()
    np.testing.assert_array_equal(read_pfm(out / "im0_disp.pfm"), disp)
    d16, _ = read_kitti_disparity(out / "im0_disp16.png")
    assert np.abs(d16 - disp).max() <= 1 / 512 + 1e-6
    depth = np.load(out / "im0_depth.npy")
    np.testing.assert_allclose(depth, 999.421 * 193.001 / (disp + 32.778), rtol=1e-5)
    assert not (out / "im0_conf.npy").exists()
    assert Image.open(out / "im0_disp.png").size == (741, 497)
    pts, cols = read_ply(out / "im0.ply")
    assert len(pts) == 497 * 741 and cols.shape == (len(pts), 3)
    # the point behind pixel (u, v) = (0, 0) sits at X = (0 - cx) Z / f
    np.testing.assert_allclose(pts[0], [-294.182 * depth[0, 0] / 999.421, -252.932 * depth[0, 0] / 999.421,
                                        depth[0, 0]], rtol=1e-4)
    # the motorcycle (a metre or two from a 19 cm baseline rig) is nearer than the wall behind it
    assert 1000 < np.median(depth) < 4000


def test_cli_predict_psmnet_confidence_and_point_filters(crops, soft_ckpt, tmp_path, capsys):
    left, right, calib = crops
    out = tmp_path / "p"
    args = ["stereo", "predict", str(left), str(right), "--weights", str(soft_ckpt), "--device", "cpu",
            "--calib", str(calib), "--ply", "--out", str(out)]
    assert main(args) == 0  # default: with the left-right check
    assert "left-right check (2 px)" in capsys.readouterr().out
    checked_conf = np.load(out / "im0_conf.npy")
    args += ["--lr-check", "0"]  # the network's own maps from here on
    assert main(args) == 0
    conf = np.load(out / "im0_conf.npy")
    assert np.all((checked_conf == conf) | (checked_conf == 0)) and (checked_conf == 0).sum() > (conf == 0).sum()
    disp = np.load(out / "im0_disp.npy")
    assert conf.shape == disp.shape == (32, 64) and 0 <= conf.min() and conf.max() <= 1
    assert 0 <= disp.min() and disp.max() <= 32
    # the saved maps are the model's own (confidence, not e.g. 1 - confidence)
    model = load_stereo_model(soft_ckpt, "cpu")[0]
    prep = [imagenet_normalize(torch.from_numpy(np.asarray(Image.open(p).convert("RGB"), np.float32)
                                                .transpose(2, 0, 1) / 255))[None] for p in (left, right)]
    # (the CLI's default estimator is the dominant mode, window +-4 px; issue 12)
    ref_disp, ref_conf = model.infer(*prep, return_confidence=True, estimator="dominant", window=4)
    np.testing.assert_allclose(conf, ref_conf[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(disp, ref_disp[0].numpy(), atol=1e-4)
    full, colours = read_ply(out / "im0.ply")
    # PLY colours are the left image's RGB (in that order) of the kept pixels, here all of them
    rgb = np.asarray(Image.open(left).convert("RGB"))
    assert len(full) == 32 * 64
    np.testing.assert_array_equal(colours, rgb.reshape(-1, 3))
    threshold = float(np.median(conf))
    assert 0 < (conf >= threshold).sum() < conf.size  # the threshold really drops pixels
    assert main(args + ["--min-confidence", str(threshold)]) == 0
    by_conf, colours = read_ply(out / "im0.ply")
    assert len(by_conf) == int((conf >= threshold).sum())
    np.testing.assert_array_equal(colours, rgb[conf >= threshold])
    assert main(args + ["--min-confidence", str(threshold), "--drop-discontinuities"]) == 0
    filtered, _ = read_ply(out / "im0.ply")
    expected = (conf >= threshold) & ~discontinuity_mask(disp)
    assert len(filtered) == int(expected.sum()) < len(by_conf)
    assert "point cloud" in capsys.readouterr().out


def test_cli_predict_errors(crops, tmp_path, capsys, stereo_samples):
    left, right, calib = crops
    small = tmp_path / "small.png"
    Image.open(right).crop((0, 0, 60, 32)).save(small)
    assert main(["stereo", "predict", str(left), str(small), "--method", "sgbm", "--out", str(tmp_path)]) == 2
    assert "size mismatch" in capsys.readouterr().err
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG garbage")
    assert main(["stereo", "predict", str(broken), str(right), "--method", "sgbm", "--out", str(tmp_path)]) == 2
    assert "cannot read image" in capsys.readouterr().err
    bad_ckpt = tmp_path / "bad.pt"
    bad_ckpt.write_bytes(b"definitely not a checkpoint")
    assert main(["stereo", "predict", str(left), str(right), "--weights", str(bad_ckpt), "--out", str(tmp_path)]) == 2
    assert "bad.pt" in capsys.readouterr().err
    other = tmp_path / "other.pt"
    save_atomic({"weights": torch.zeros(3)}, other)
    assert main(["stereo", "predict", str(left), str(right), "--weights", str(other), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "other.pt" in err and err.count("\n") == 1
    assert main(["stereo", "predict", str(left), str(right), "--method", "sgbm", "--ply", "--out", str(tmp_path)]) == 2
    assert "--ply needs" in capsys.readouterr().err
    full_calib = stereo_samples / "middlebury2014/trainingQ/Motorcycle/calib.txt"
    assert main(["stereo", "predict", str(left), str(right), "--method", "sgbm", "--calib", str(full_calib),
                 "--out", str(tmp_path)]) == 2
    assert "741x497" in capsys.readouterr().err
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert main(["stereo", "predict", str(left), str(right), "--method", "sgbm", "--out", str(a_file)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(["stereo", "predict", str(tmp_path), str(right), "--method", "sgbm", "--out", str(tmp_path)]) == 2
    assert "is a folder, not a file" in capsys.readouterr().err


def test_cli_predict_bundled_example_with_its_calibration_and_ground_truth(tmp_path, capsys):
    rc = main(["stereo", "predict", "--example", "motorcycle", "--method", "sgbm", "--ply", "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("against the example's ground truth"))
    epe = float(line.split("EPE ")[1].split(" px")[0])
    assert 0.5 < epe < 3.0  # SGBM on this pair: ~1.5 px; a wrong camera/GT pairing would be far off
    assert (tmp_path / "motorcycle_disp.png").is_file() and (tmp_path / "motorcycle.ply").is_file()
    depth = np.load(tmp_path / "motorcycle_depth.npy")
    disp = np.load(tmp_path / "motorcycle_disp.npy")
    # Z = f * B / (d + doffs) with skimage's documented calibration (mm)
    np.testing.assert_allclose(depth[250, 370], 994.978 * 193.001 / (disp[250, 370] + 31.086), rtol=1e-5)
    assert main(["stereo", "predict", "left.png", "--example", "motorcycle", "--method", "sgbm"]) == 2
    assert "either LEFT RIGHT or --example" in capsys.readouterr().err
    for option in (["--rectify", "auto"], ["--swap"]):  # refused, not silently ignored
        assert main(["stereo", "predict", "--example", "motorcycle", "--method", "sgbm", *option]) == 2
        assert "--rectify and --swap are for a pair of your own" in capsys.readouterr().err
    assert main(["stereo", "predict", "--method", "sgbm"]) == 2
    assert "give the LEFT and RIGHT images" in capsys.readouterr().err


def test_cli_predict_focal_baseline(crops, tmp_path, capsys):
    left, right, _ = crops
    out = tmp_path / "fb"
    assert main(["stereo", "predict", str(left), str(right), "--method", "sgbm", "--max-disp", "32",
                 "--focal", "100", "--baseline", "0.5", "--ply", "--out", str(out)]) == 0
    disp, depth = np.load(out / "im0_disp.npy"), np.load(out / "im0_depth.npy")
    ok = disp > 0
    np.testing.assert_allclose(depth[ok], 50.0 / disp[ok], rtol=1e-5)  # no doffs without a calib.txt
    pts, _ = read_ply(out / "im0.ply")
    finite = np.isfinite(depth)
    assert len(pts) == int(finite.sum())
    # principal point at the image centre: cx = (64 - 1) / 2 along u (X), cy = (32 - 1) / 2 along v (Y)
    v, u = np.mgrid[0:32, 0:64]
    np.testing.assert_allclose(pts[:, 0], ((u - 31.5) * depth / 100)[finite], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pts[:, 1], ((v - 15.5) * depth / 100)[finite], rtol=1e-5, atol=1e-6)
    assert main(["stereo", "predict", str(left), str(right), "--method", "sgbm", "--focal", "100",
                 "--out", str(out)]) == 2
    assert "both --focal and --baseline" in capsys.readouterr().err
    for focal, baseline in (("100", "-0.5"), ("-100", "0.5")):
        assert main(["stereo", "predict", str(left), str(right), "--method", "sgbm", "--focal", focal,
                     "--baseline", baseline, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "--focal and --baseline must be positive" in err and err.count("\n") == 1


# ------------------------------------------------------------------------------------------------ CLI: submit


def test_cli_submit_psmnet_on_testing_split(tmp_path, stereo_samples, tiny_ckpt, capsys):
    sizes = [(32, 64), (36, 52)]  # different sizes: each prediction keeps its image's size
    root = make_tiny_kitti(tmp_path / "kitti", sizes, stereo_samples)
    out = tmp_path / "submission"
    assert main(["stereo", "submit", "--dataset", "kitti2015", "--root", str(root), "--weights", str(tiny_ckpt),
                 "--device", "cpu", "--out", str(out)]) == 0
    files = sorted(p.name for p in (out / "disp_0").iterdir())
    assert files == ["000000_10.png", "000001_10.png"]
    predict, config = build_predictor(weights=tiny_ckpt, device="cpu")  # the CLI's defaults
    assert config["lr_check"] == 2.0 and config["estimator"] == "dominant"
    testing = create_dataset("kitti2015", root, split="testing")
    for i, (name, (h, w)) in enumerate(zip(files, sizes, strict=True)):
        disp, _ = read_kitti_disparity(out / "disp_0" / name)
        assert disp.shape == (h, w) and disp.max() <= 32
        expected = predict(testing[i]["left"], testing[i]["right"]).numpy()
        assert np.abs(disp - expected).max() <= 0.5 / 256 + 1e-6  # the model's maps, rounded to 1/256 px
    with zipfile.ZipFile(tmp_path / "submission.zip") as zf:
        assert sorted(zf.namelist()) == ["disp_0/000000_10.png", "disp_0/000001_10.png"]
        assert zf.read("disp_0/000000_10.png") == (out / "disp_0/000000_10.png").read_bytes()
    assert "submission.zip" in capsys.readouterr().out


def test_cli_submit_sgbm_training_split_reports_d1(tmp_path, stereo_samples, capsys):
    root = tmp_path / "kitti2012"
    for src, dst in (("image_2", "colored_0"), ("image_3", "colored_1"), ("disp_occ_0", "disp_occ")):
        (root / "training" / dst).mkdir(parents=True)
        (root / "training" / dst / "000046_10.png").write_bytes(
            (stereo_samples / "kitti2015/training" / src / "000046_10.png").read_bytes())
    out = tmp_path / "sub"
    assert main(["stereo", "submit", "--dataset", "kitti2012", "--root", str(root), "--split", "training",
                 "--method", "sgbm", "--out", str(out)]) == 0
    d1 = float(re.search(r"D1 ([0-9.]+) %", capsys.readouterr().out).group(1))
    assert 1.5 < d1 < 6  # the same frame as test_sgbm_on_real_kitti (measured 2.87 %)
    # The printed D1 is that of the file written (the upload), not only of the map in memory.
    written, _ = read_kitti_disparity(out / "disp_0" / "000046_10.png")
    gt, valid = read_kitti_disparity(root / "training" / "disp_occ" / "000046_10.png")
    assert stereo_metrics(written, gt, valid)["d1"] == pytest.approx(d1, abs=0.01)
    with zipfile.ZipFile(tmp_path / "sub.zip") as zf:
        assert zf.read("disp_0/000046_10.png") == (out / "disp_0" / "000046_10.png").read_bytes()


# ------------------------------------------------------------------------------------------------ geometry / colours


def test_depth_and_points_by_hand():
    disp = np.array([[10.0, 0.0], [-5.0, np.nan]])
    depth = disparity_to_depth(disp, focal=100.0, baseline=0.5, doffs=0.0)
    assert depth[0, 0] == pytest.approx(5.0) and np.isnan(depth[0, 1]) and np.isnan(depth[1]).all()
    assert disparity_to_depth(np.array([[0.0]]), 100.0, 0.5, doffs=10.0)[0, 0] == pytest.approx(5.0)
    pts = depth_to_points(np.full((2, 3), 4.0, np.float32), focal=2.0, cx=1.0, cy=0.5)
    np.testing.assert_allclose(pts[1, 2], [(2 - 1) * 4 / 2, (1 - 0.5) * 4 / 2, 4])


def test_discontinuity_mask():
    disp = np.array([[1, 1, 5, 5], [1, 1, 5, 5], [1, 1.5, 5, 5.5]], dtype=np.float32)
    np.testing.assert_array_equal(discontinuity_mask(disp, 1.0), [[0, 1, 1, 0], [0, 1, 1, 0], [0, 1, 1, 0]])
    # a horizontal edge marks the pixels on both sides of it (upper and lower neighbour)
    edge = np.array([[1, 1], [1, 1], [5, 5], [5, 5]], dtype=np.float32)
    np.testing.assert_array_equal(discontinuity_mask(edge, 1.0), [[0, 0], [1, 1], [1, 1], [0, 0]])
    # a jump of exactly the threshold is not "more than" it, across and along rows
    exact = np.array([[1, 2, 2], [1, 2, 2], [2, 3, 3]], dtype=np.float32)
    assert not discontinuity_mask(exact, 1.0).any()
    assert discontinuity_mask(exact, 0.5).any()


@pytest.mark.parametrize("binary", [True, False])
def test_ply_roundtrip(tmp_path, binary):
    pts = np.random.default_rng(0).normal(size=(7, 3)).astype(np.float32)
    cols = np.random.default_rng(1).integers(0, 256, (7, 3)).astype(np.uint8)
    path = write_ply(tmp_path / "c.ply", pts, cols, binary=binary)
    assert path.read_bytes().startswith(b"ply\nformat " + (b"binary_little_endian" if binary else b"ascii"))
    back, back_cols = read_ply(path)
    np.testing.assert_allclose(back, pts, rtol=1e-5)
    np.testing.assert_array_equal(back_cols, cols)


def test_colour_maps():
    disp = np.array([[0.0, 10.0], [20.0, np.nan]], dtype=np.float32)
    rgb = colorize_disparity(disp, max_disp=20)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert (rgb[0, 0] == 0).all() and (rgb[1, 1] == 0).all() and rgb[1, 0].sum() > rgb[0, 1].sum()
    depth = colorize_depth(np.array([[1.0, 10.0, 100.0, np.nan]]))
    assert depth.shape == (1, 4, 3) and (depth[0, 3] == 0).all()
    assert (depth[0, :3].sum(-1) > 0).all()  # every valid depth visible, never black
    assert depth[0, 0, 0] > depth[0, 0, 2] and depth[0, 2, 2] > depth[0, 2, 0]  # near red, far blue
    assert (colorize_depth(np.array([[np.nan, 0.0]])) == 0).all()
    assert colorize_confidence(np.array([[0.0, 1.0]]))[0, 1].sum() > colorize_confidence(np.array([[0.0]]))[0, 0].sum()
    err = colorize_error(np.array([[1.0, 9.0, 3.0]]), np.array([[1.0, 2.0, 0.0]]))
    assert err[0, 0].sum() < 40 and err[0, 1, 0] == 255 and (err[0, 2] == 64).all()


def test_colour_map_scales_and_masks():
    # default scale: the 99th percentile, so one outlier does not turn the whole map dark
    disp = np.arange(1, 201, dtype=np.float32)[None]
    disp[0, -1] = 1e4
    top = colorize_disparity(np.array([[1.0]]), max_disp=1.0)[0, 0]  # the colour map's brightest colour
    assert np.array_equal(colorize_disparity(disp)[0, 198], top)
    # an explicit max_disp is used as given: 20 px at max_disp=40 looks like 10 px at max_disp=20
    two = np.array([[10.0, 20.0]], dtype=np.float32)
    assert np.array_equal(colorize_disparity(two, max_disp=40)[0, 1], colorize_disparity(two, max_disp=20)[0, 0])
    assert not np.array_equal(colorize_disparity(two, max_disp=40)[0, 1], colorize_disparity(two)[0, 1])
    # max_error sets where the error colour saturates; `valid` greys out pixels even where gt exists
    gt = np.array([[1.0, 1.0]])
    assert np.array_equal(colorize_error(np.array([[3.0, 1.0]]), gt, max_error=2.0)[0, 0],
                          colorize_error(np.array([[6.0, 1.0]]), gt)[0, 0])
    masked = colorize_error(np.array([[1.0, 9.0]]), gt, valid=np.array([[True, False]]))
    assert (masked[0, 1] == 64).all() and masked[0, 0].sum() < 40
