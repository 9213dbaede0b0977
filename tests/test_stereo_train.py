"""The PSMNet training loop on tiny synthetic scenes: checkpoints, exact resume, NaN stop, configs, export."""

import json
import math

import pytest
import torch

from vislab.cli import main as cli
from vislab.core.checkpoint import load_checkpoint
from vislab.core.errors import VislabError
from vislab.core.logging import read_metrics_csv
from vislab.stereo import train as train_module
from vislab.stereo.configs import lr_factor, parse_crop, resolve_config
from vislab.stereo.loss import OUTPUT_WEIGHTS, disparity_mask, psmnet_loss
from vislab.stereo.models import load_stereo_model


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a shared, oversubscribed CPU two spinning OpenMP threads are ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# 3 steps per epoch (6 scenes, batch 2), so 4 steps cross an epoch boundary.
TINY = ["stereo", "train", "--dataset", "synthetic", "--model", "basic", "--max-disp", "16", "--crop", "32x64",
        "--batch-size", "2", "--synthetic-size", "6", "--epochs", "5", "--seed", "3"]


def _train(out, *extra: str) -> int:
    return cli([*TINY, "--out", str(out), *extra])


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """4 uninterrupted steps (crossing an epoch end, with validation after epoch 0), shared by several tests."""
    out = tmp_path_factory.mktemp("train") / "base"
    assert _train(out, "--iters", "4", "--val-dataset", "synthetic", "--val-limit", "2") == 0
    return out


def test_resume_after_a_stop_gives_bit_identical_weights(tmp_path, base_run):
    assert _train(tmp_path / "b", "--iters", "2", "--save-every", "1") == 0
    mid = load_checkpoint(tmp_path / "b" / "last.pt")
    assert (mid["iteration"], mid["epoch"], mid["step_in_epoch"]) == (2, 0, 2)  # stopped mid-epoch
    assert _train(tmp_path / "b", "--iters", "4", "--save-every", "1", "--resume") == 0
    a, b = load_checkpoint(base_run / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert a["iteration"] == b["iteration"] == 4 and a["epoch"] == b["epoch"] == 1
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for state_a, state_b in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert torch.equal(state_a["exp_avg_sq"], state_b["exp_avg_sq"])
    # The resumed run's log has no duplicated steps.
    rows = [r for r in read_metrics_csv(tmp_path / "b" / "metrics.csv") if "loss" in r]
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4]
    # And the weights did move.
    fresh = train_module.build_model(resolve_config(None, {"datasets": ["synthetic"], "model": "basic",
                                                           "max_disp": 16}))
    assert not torch.equal(fresh.state_dict()["classify.2.weight"], a["model"]["classify.2.weight"])


def test_checkpoints_logs_and_exported_weights(base_run):
    out = base_run
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert {"model", "model_config", "optimizer", "scheduler", "epoch", "iteration", "rng", "config", "best_d1",
            "task"} <= set(ckpt)
    assert ckpt["task"] == "stereo" and ckpt["model_config"]["name"] == "basic"
    assert ckpt["config"]["crop"] == [32, 64]
    # One validation after epoch 0 (3 steps): best.pt holds its D1.
    best = load_checkpoint(out / "best.pt")
    assert best["iteration"] == 3 and math.isfinite(best["best_d1"])
    rows = read_metrics_csv(out / "metrics.csv")
    assert [int(r["iteration"]) for r in rows if "loss" in r] == [1, 2, 3, 4]
    val_rows = [r for r in rows if "val_d1" in r]
    assert len(val_rows) == 1 and val_rows[0]["val_d1"] == pytest.approx(best["best_d1"], rel=1e-4)
    assert all(math.isfinite(r["loss"]) and r["step_time"] > 0 for r in rows if "loss" in r)
    assert list((out / "tb").glob("events.out.tfevents.*"))
    # final_fp16.pt: fp16 weights, no optimizer, loadable as the model the predict/eval commands use.
    final = torch.load(out / "final_fp16.pt", weights_only=True)
    assert "optimizer" not in final and final["model_config"]["name"] == "basic"
    floats = [v for v in final["model"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    model, info = load_stereo_model(out / "final_fp16.pt")
    assert info["name"] == "basic"
    ref = ckpt["model"]["classify.2.weight"]
    torch.testing.assert_close(model.state_dict()["classify.2.weight"], ref, atol=1e-3, rtol=1e-3)


def test_curves_smoothing_is_a_trailing_mean():
    from vislab.stereo.curves import _moving_average

    assert _moving_average([0.0, 2.0, 4.0, 6.0], 2) == [0.0, 1.0, 3.0, 5.0]
    assert _moving_average([3.0, 6.0], 50) == [3.0, 4.5]  # fewer steps than the window: mean so far
    assert _moving_average([1.0, 2.0], 1) == [1.0, 2.0]


def test_training_curves_png_and_chained_stages(tmp_path, base_run, capsys):
    from PIL import Image

    from vislab.stereo.curves import load_run

    assert Image.open(base_run / "curves.png").size[0] > 100  # rewritten by train after every epoch
    run = load_run(base_run)
    assert run["pairs"] == [2, 4, 6, 8] and run["val_pairs"] == [6]  # iterations x batch 2
    assert load_run(f"{base_run}:2")["pairs"] == [2, 4]
    out = tmp_path / "stages.png"
    assert cli(["stereo", "curves", f"{base_run}:3", str(base_run), "--out", str(out), "--smooth", "2"]) == 0
    assert Image.open(out).format == "PNG" and f"wrote {out}" in capsys.readouterr().out
    assert cli(["stereo", "curves", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "no training metrics" in capsys.readouterr().err
    assert cli(["stereo", "curves", str(base_run), "--labels", "a", "b", "--out", str(out)]) == 2
    assert "2 labels for 1 runs" in capsys.readouterr().err


def test_export_command_writes_fp16_weights_with_the_given_range(tmp_path, base_run):
    dst = tmp_path / "shipped.pt"
    assert train_module.main(["export", str(base_run / "last.pt"), str(dst), "--max-disp", "64"]) == 0
    model, info = load_stereo_model(dst)
    assert info["max_disp"] == 64 and model.max_disp == 64
    assert dst.stat().st_size < 0.6 * (base_run / "last.pt").stat().st_size
    assert train_module.main(["export", str(tmp_path / "missing.pt"), str(dst)]) == 2
    # a range no model can be built with is refused before anything is written
    assert train_module.main(["export", str(base_run / "last.pt"), str(tmp_path / "odd.pt"), "--max-disp", "30"]) == 2
    assert not (tmp_path / "odd.pt").exists()


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0, "explode_at": 3}

    def loss_that_explodes(*args, **kwargs):
        calls["n"] += 1
        loss = psmnet_loss(*args, **kwargs)
        return loss * float("nan") if calls["n"] == calls["explode_at"] else loss

    monkeypatch.setattr(train_module, "psmnet_loss", loss_that_explodes)
    with pytest.raises(VislabError, match=r"loss became nan at iteration 3"):
        train_module.run_train(_args(tmp_path / "run", iters=5, save_every=1))
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    # Through the CLI the same failure is one line and exit status 2.
    calls.update(n=0, explode_at=1)
    assert _train(tmp_path / "run2", "--iters", "5") == 2


def _args(out, **overrides):
    import argparse

    from vislab.cli import build_parser

    args = build_parser().parse_args([*TINY, "--out", str(out)])
    assert isinstance(args, argparse.Namespace)
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def test_fine_tuning_starts_from_the_given_weights(tmp_path, base_run):
    start = load_checkpoint(base_run / "final_fp16.pt")["model"]
    assert _train(tmp_path / "ft", "--iters", "1", "--weights", str(base_run / "final_fp16.pt"), "--lr", "1e-9") == 0
    tuned = load_checkpoint(tmp_path / "ft" / "last.pt")["model"]
    for key in ("feature_extraction.firstconv.0.0.weight", "classify.2.weight"):
        torch.testing.assert_close(tuned[key], start[key].float(), atol=1e-3, rtol=1e-3)
    # The wrong variant is refused with one line.
    assert _train(tmp_path / "bad", "--iters", "1", "--weights", str(base_run / "final_fp16.pt"),
                  "--model", "stackhourglass") == 2


def test_resume_with_a_new_schedule_lowers_the_learning_rate_at_once(tmp_path):
    assert _train(tmp_path / "run", "--iters", "4") == 0  # ends in epoch 1
    assert _train(tmp_path / "run", "--iters", "5", "--resume", "--schedule", "step:1") == 0
    rows = [r for r in read_metrics_csv(tmp_path / "run" / "metrics.csv") if "loss" in r]
    assert [r["lr"] for r in rows] == pytest.approx([1e-3] * 4 + [1e-4])


def test_step_schedule_lowers_the_lr_in_a_fresh_run_and_across_a_resume(tmp_path):
    """step:2 drops the lr at iteration 7, the first step of epoch 2 (3 steps per epoch), also when the run
    was stopped in epoch 1 and resumed: the scheduler's own state must come back with the checkpoint."""
    expected = pytest.approx([1e-3] * 6 + [1e-4])
    assert _train(tmp_path / "fresh", "--iters", "7", "--schedule", "step:2") == 0
    assert [r["lr"] for r in read_metrics_csv(tmp_path / "fresh" / "metrics.csv") if "loss" in r] == expected
    assert _train(tmp_path / "resumed", "--iters", "4", "--schedule", "step:2") == 0
    assert _train(tmp_path / "resumed", "--iters", "7", "--schedule", "step:2", "--resume") == 0
    assert [r["lr"] for r in read_metrics_csv(tmp_path / "resumed" / "metrics.csv") if "loss" in r] == expected


def test_best_checkpoint_keeps_the_lowest_validation_d1_across_a_resume(tmp_path, monkeypatch):
    d1_per_validation = iter([5.0, 7.0, 6.0])  # after iterations 3, 6 and 9
    monkeypatch.setattr(train_module, "validate", lambda run, val_set: {"epe": 1.0, "d1": next(d1_per_validation)})
    val = ("--val-dataset", "synthetic", "--val-limit", "1")
    assert _train(tmp_path / "run", "--iters", "6", *val) == 0
    assert _train(tmp_path / "run", "--iters", "9", *val, "--resume") == 0
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert (best["iteration"], best["best_d1"]) == (3, 5.0)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["best_d1"] == 5.0


def test_resuming_an_older_checkpoint_rewinds_the_csv_and_tensorboard_logs(tmp_path):
    """A run killed after logging steps its last.pt does not hold yet: on resume those rows are dropped
    and logged again, once, in metrics.csv and in TensorBoard."""
    import shutil

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert _train(out, "--iters", "2", "--save-every", "1") == 0
    shutil.copy(out / "last.pt", tmp_path / "iteration2.pt")
    assert _train(out, "--iters", "3", "--resume") == 0  # logs step 3 ...
    shutil.copy(tmp_path / "iteration2.pt", out / "last.pt")  # ... which the checkpoint then lacks
    assert _train(out, "--iters", "4", "--resume") == 0
    assert [int(r["iteration"]) for r in read_metrics_csv(out / "metrics.csv") if "loss" in r] == [1, 2, 3, 4]
    events = EventAccumulator(str(out / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4]
    assert {"train/epe", "train/lr", "train/step_time"} <= set(events.Tags()["scalars"])


def test_only_the_main_process_writes_checkpoints(tmp_path):
    from vislab.stereo.models import create_model

    net = create_model("basic", max_disp=16)
    optimizer = torch.optim.Adam(net.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0)
    cfg = resolve_config(None, {"datasets": ["synthetic"], "model": "basic", "max_disp": 16})
    for main, folder in ((False, "rank1"), (True, "rank0")):
        (tmp_path / folder).mkdir()
        run = train_module.Run(cfg, tmp_path / folder, torch.device("cpu"), net, net, optimizer, scheduler, 1, main)
        train_module.save_last(run)
        train_module.save_final(run)
    assert sorted(p.name for p in (tmp_path / "rank0").iterdir()) == ["final_fp16.pt", "last.pt"]
    assert not any((tmp_path / "rank1").iterdir())


def test_refuses_to_overwrite_a_run_and_to_resume_nothing(tmp_path, base_run):
    assert _train(base_run, "--iters", "1") == 2
    assert _train(tmp_path / "empty", "--iters", "1", "--resume") == 2


def test_named_config_and_overrides():
    cfg = resolve_config("cpu-synth-basic", {"batch_size": 4, "crop": (64, 128)})
    assert cfg.model == "basic" and cfg.datasets == ["synthetic"]
    assert cfg.batch_size == 4 and cfg.crop == (64, 128)
    paper = resolve_config("sceneflow", {"roots": ["/data/sceneflow"]})
    assert (paper.model, paper.max_disp, paper.lr, paper.batch_size, paper.crop) == (
        "stackhourglass", 192, 1e-3, 12, (256, 512))
    with pytest.raises(VislabError, match="unknown training config"):
        resolve_config("nope", {})
    with pytest.raises(VislabError, match="multiple of 4"):
        resolve_config(None, {"datasets": ["synthetic"], "max_disp": 30})
    with pytest.raises(VislabError, match="no training data"):
        resolve_config(None, {})
    assert parse_crop("96x192") == (96, 192)
    with pytest.raises(VislabError):
        parse_crop("96-192")


def test_learning_rate_schedules():
    assert lr_factor("none", 500) == 1.0
    assert lr_factor("kitti", 199) == 1.0 and lr_factor("kitti", 200) == pytest.approx(0.1)
    assert [lr_factor("step:2,4", e) for e in range(6)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    with pytest.raises(VislabError):
        lr_factor("cosine", 0)


def test_epoch_order_is_a_function_of_seed_and_epoch_and_ranks_share_it_out():
    order = train_module.epoch_indices(10, seed=1, epoch=0)
    assert sorted(order) == list(range(10))
    assert order == train_module.epoch_indices(10, seed=1, epoch=0)
    assert order != train_module.epoch_indices(10, seed=1, epoch=1)
    r0 = train_module.epoch_indices(11, seed=1, epoch=2, rank=0, world=2)
    r1 = train_module.epoch_indices(11, seed=1, epoch=2, rank=1, world=2)
    assert len(r0) == len(r1) == 5 and not set(r0) & set(r1)


def test_roots_pair_with_the_datasets_that_need_them():
    assert train_module._pair_roots(["synthetic", "sceneflow"], ["/d"]) == [None, "/d"]
    assert train_module._pair_roots(["kitti2015", "sceneflow"], ["/k", "/s"]) == ["/k", "/s"]
    with pytest.raises(VislabError, match="need a --root"):
        train_module._pair_roots(["kitti2015", "sceneflow"], ["/k"])
    # --root alone names the roots of the --config's datasets; a missing root is a one-line error.
    from vislab.cli import build_parser

    parse = build_parser().parse_args
    cfg = train_module.config_from_args(parse(["stereo", "train", "--config", "sceneflow", "--root", "/sf"]))
    assert cfg.datasets == ["sceneflow"] and cfg.roots == ["/sf"]
    with pytest.raises(VislabError, match="needs --root"):
        train_module.config_from_args(parse(["stereo", "train", "--config", "kitti2015"]))


def test_mixed_datasets_are_concatenated(tmp_path):
    import argparse

    from vislab.stereo.datasets.synthetic import run_synth

    run_synth(argparse.Namespace(n=3, out=str(tmp_path / "sf"), height=40, width=72, max_disp=16, seed=0))
    cfg = resolve_config(None, {"datasets": ["synthetic", "sceneflow"], "roots": [None, str(tmp_path / "sf")],
                                "crop": (32, 64), "max_disp": 16, "synthetic_size": 5})
    ds = train_module.build_train_dataset(cfg)
    assert len(ds) == 8
    assert ds[0]["left"].shape == ds[7]["left"].shape == (3, 32, 64)
    # The epoch reaches every part: new synthetic scenes and new crops of the SceneFlow pairs.
    first = [ds[i]["left"] for i in (0, 7)]
    train_module.set_epoch(ds, 1)
    assert not any(torch.equal(a, ds[i]["left"]) for a, i in zip(first, (0, 7), strict=True))


def test_loss_weights_and_mask():
    assert OUTPUT_WEIGHTS == {"stackhourglass": (0.5, 0.7, 1.0), "basic": (1.0,)}  # the paper's weights
    gt = torch.tensor([[[0.0, 1.0, 5.0, 16.0, 20.0]]])
    valid = torch.tensor([[[True, True, False, True, True]]])
    assert disparity_mask(gt, valid, 16).tolist() == [[[False, True, False, False, False]]]  # 0 < gt < max_disp
    gt = torch.tensor([[[1.0, 5.0, 20.0]]])
    mask = disparity_mask(gt, torch.ones_like(gt, dtype=torch.bool), 16)
    outs = (gt + 1, gt + 2, gt)
    loss = psmnet_loss(outs, gt, mask, (0.5, 0.7, 1.0))
    # smooth-L1 of an error of 1 is 0.5, of 2 is 1.5; the 20 px pixel (>= max_disp) is ignored.
    assert loss.item() == pytest.approx(0.5 * 0.5 + 0.7 * 1.5)
    out = torch.zeros(1, 1, 3, requires_grad=True)
    empty = psmnet_loss((out,), gt, torch.zeros_like(mask), (1.0,))
    empty.backward()
    assert empty.item() == 0 and out.grad is not None


def _metrics_run(folder, rows, batch_size=None, loss=None):
    folder.mkdir(parents=True)
    if batch_size is not None:
        config = {"batch_size": batch_size} | ({"loss": loss} if loss else {})
        (folder / "config.json").write_text(json.dumps(config))
    lines = ["iteration,loss,train_epe,val_epe,val_d1"] + [",".join(map(str, r)) for r in rows]
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_curves_load_run_and_chained_offsets_on_hand_written_metrics(tmp_path, monkeypatch, capsys):
    from vislab.stereo import curves

    # a folder whose own name ends in ":7" is a folder, not "stage1 up to step 7"
    s1 = _metrics_run(tmp_path / "stage1:7", [(1, 1.0, 2.0, "", ""), (2, "nan", "nan", "", ""),
                                              (3, 0.5, 1.5, "", ""), (3, "", "", 4.0, 20.0)], batch_size=2)
    s2 = _metrics_run(tmp_path / "stage2", [(1, 0.4, 1.0, "", ""), (2, 0.3, 0.9, 3.0, 15.0)])  # no config.json
    s3 = _metrics_run(tmp_path / "stage3", [(1, 0.2, 0.8, "", "")], batch_size=1, loss="adl")
    run = curves.load_run(s1)
    assert run["pairs"] == [2, 6] and run["loss"] == [1.0, 0.5]  # x in pairs (batch 2); the NaN step dropped
    assert run["val_pairs"] == [6] and run["val_epe"] == [4.0] and run["val_d1"] == [20.0]
    assert curves.load_run(s2)["pairs"] == [1, 2] and curves.load_run(s2)["val_pairs"] == [2]  # batch 1
    figs = []
    monkeypatch.setattr(curves, "save_figure", lambda fig, out: figs.append(fig) or out)
    # stage "b" (stage2 up to step 0) has no rows: the next stage still starts where stage "a" ended
    curves.plot_training_curves([s1, f"{s2}:0", s2], tmp_path / "c.png", smooth=1, labels=["a", "b", "c"])
    lines = {ln.get_label(): ln for ax in figs[0].axes for ln in ax.get_lines()}
    assert list(lines["c"].get_xdata()) == [7, 8] and list(lines["c EPE"].get_xdata()) == [8]
    # the loss axis names the loss each run trained with (runs from before --loss: smooth L1)
    assert figs[0].axes[0].get_ylabel() == "training loss (smooth L1)"
    curves.plot_training_curves([s1, s3], tmp_path / "c.png", smooth=1)
    assert figs[1].axes[0].get_ylabel() == "training loss (smooth L1, then ADL cross-entropy)"
    curves.plot_training_curves([s3], tmp_path / "c.png", smooth=1)
    assert figs[2].axes[0].get_ylabel() == "training loss (ADL cross-entropy)"
    # the CLI's defaults reach the plot, and bad values / unreadable configs are one-line errors
    calls = []
    monkeypatch.setattr(curves, "plot_training_curves", lambda dirs, out, **kw: calls.append((dirs, out, kw)) or out)
    assert cli(["stereo", "curves", str(s1), str(s2)]) == 0
    assert calls[-1] == ([str(s1), str(s2)], "curves.png", {"smooth": 50, "labels": None})
    assert cli(["stereo", "curves", str(s1), "--labels", "x", "y z"]) == 0 and calls[-1][2]["labels"] == ["x", "y z"]
    assert cli(["stereo", "curves", str(s1), "--smooth", "0"]) == 2 and len(calls) == 2
    (s1 / "config.json").write_text('{"batch": 2}')
    with pytest.raises(VislabError, match="cannot read the metrics"):
        curves.load_run(s1)
