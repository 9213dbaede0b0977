"""Issue 26's options: ``--max-disp auto``, the cheaper left-right check, ``--precision``, and their plumbing.

Behaviour only (no timing): the range a first look picks, that it never cuts off a shifted pair's disparity,
that a per-call range matches a model built for that range, the precision fallbacks, and the CLI's record.
"""

import json

import numpy as np
import pytest
import torch
from test_stereo_eval_predict import save_random_basic32

from vislab.cli import main
from vislab.core.errors import VislabError
from vislab.stereo import auto_range, precision
from vislab.stereo.auto_range import RangeChoice, choose_range, first_look_scale, parse_max_disp, range_from_estimate
from vislab.stereo.models import create_model, load_stereo_model
from vislab.stereo.predict import predict_disparity, predict_disparity_stages
from vislab.stereo.refine import fill_from_background, left_right_fill, right_view_disparity


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return save_random_basic32(tmp_path_factory.mktemp("ckpt") / "basic32.pt")


# ------------------------------------------------------------------------------------------- auto range

def test_range_from_estimate_adds_the_margin_rounds_up_and_keeps_the_full_range_near_the_top():
    # 1.25 * 40 + 8 = 58 -> 64; 1.25 * 56 + 8 = 78 -> 80; steps of 16
    assert range_from_estimate(40.0, 192) == 64
    assert range_from_estimate(56.0, 192) == 80
    assert range_from_estimate(0.0, 192) == 16
    # 1.25 * 118 + 8 = 155.5 -> 160 > 0.8 * 192 = 153.6: the whole trained range
    assert range_from_estimate(118.0, 192) == 192
    assert range_from_estimate(float("nan"), 192) == 192
    for estimate in np.linspace(0, 200, 81):
        chosen = range_from_estimate(float(estimate), 192)
        assert chosen % 16 == 0 and (chosen == 192 or chosen >= 1.25 * estimate + 8)


def test_first_look_scale_by_image_size():
    assert first_look_scale(375, 1242) == 0.25  # KITTI: 94x310
    assert first_look_scale(200, 400) == 0.5  # a quarter would be 50 px high: half instead
    assert first_look_scale(100, 300) is None  # too small for a first look: the full range (and cheap)


def test_parse_max_disp():
    assert parse_max_disp("auto") == "auto" and parse_max_disp(None) is None
    assert parse_max_disp("96") == 96 and parse_max_disp(192) == 192
    with pytest.raises(VislabError, match="--max-disp must be 'auto' or a positive multiple of 4, got 'lots'"):
        parse_max_disp("lots")


def test_a_per_call_range_equals_a_model_built_for_that_range():
    # The weights do not depend on the range: infer(max_disp=D) must be the model built with max_disp=D.
    torch.manual_seed(0)
    full = create_model("basic", max_disp=64).eval()
    short = create_model("basic", max_disp=32).eval()
    short.load_state_dict(full.state_dict())
    left, right = torch.randn(1, 3, 32, 64), torch.randn(1, 3, 32, 64)
    disp, conf = full.infer(left, right, max_disp=32)
    expected, expected_conf = short.infer(left, right)
    torch.testing.assert_close(disp, expected)
    torch.testing.assert_close(conf, expected_conf)
    assert full.max_disp == 64  # the call did not change the model
    with pytest.raises(VislabError, match="multiple of 4"):
        full.infer(left, right, max_disp=30)


def test_choose_range_covers_the_true_disparities_with_the_shipped_model():
    from vislab.stereo.datasets.synthetic import render_scene
    from vislab.stereo.transforms import imagenet_normalize

    model, _ = load_stereo_model(None, "cpu")
    scene = render_scene(26, 256, 320, max_disp=64)  # disparities up to 0.9 * 64 px
    left, right = (imagenet_normalize(torch.from_numpy(scene[v].transpose(2, 0, 1)))[None] for v in ("left", "right"))
    choice = choose_range(model, left, right, model.max_disp)
    assert not choice.full and choice.max_disp % 16 == 0 and choice.max_disp < model.max_disp
    assert choice.max_disp > scene["disp"].max() and choice.estimate == pytest.approx(scene["disp"].max(), rel=0.3)
    assert "first look" in choice.describe()


def test_choose_range_keeps_the_full_range_when_the_first_look_hits_its_top(monkeypatch):
    model = create_model("basic", max_disp=192).eval()
    # a first look that answers its own range's top: the pair may need more than it can see
    monkeypatch.setattr(model, "infer", lambda left, right, **kw: (torch.full((1, *left.shape[-2:]),
                                                                              kw["max_disp"] - 1.0), None))
    choice = choose_range(model, torch.zeros(1, 3, 256, 512), torch.zeros(1, 3, 256, 512), 192)
    assert choice == RangeChoice(192, choice.estimate, True, choice.seconds) and choice.estimate > 150
    small = choose_range(model, torch.zeros(1, 3, 64, 96), torch.zeros(1, 3, 64, 96), 192)
    assert small.max_disp == 192 and small.estimate is None and "too small" in small.describe()


def test_predict_disparity_auto_uses_one_model_for_every_range(tmp_path, monkeypatch):
    from vislab.stereo import predict as predict_module

    calls = []
    real = predict_module.load_model
    monkeypatch.setattr(predict_module, "load_model", lambda *a, **k: calls.append(k) or real(*a, **k))
    tiny_ckpt = save_random_basic32(tmp_path / "fresh.pt")  # a file the model cache has not seen
    rng = np.random.default_rng(0)
    for width in (160, 176):  # first looks at half size (64 px high): the smallest that get one
        pair = rng.random((2, 128, width, 3), dtype=np.float32)
        result = predict_disparity(pair[0], pair[1], weights=tiny_ckpt, lr_check=0)
        assert result.info["range"] == "auto" and result.info["trained_max_disp"] == 32
        assert result.info["max_disp"] % 4 == 0 and result.info["max_disp"] <= 32
        assert result.disparity.max() <= result.info["max_disp"] - 1
    assert len(calls) == 1 and calls[0]["max_disp"] is None
    fixed = predict_disparity(pair[0], pair[1], weights=tiny_ckpt, lr_check=0, max_disp=None)
    assert fixed.info["range"] == "fixed" and fixed.info["max_disp"] == 32


# ------------------------------------------------------------------------------------- left-right check

def test_fill_from_background_takes_the_smaller_neighbour():
    disp = torch.tensor([[[5.0, 9.0, 9.0, 2.0, 7.0]]])
    keep = torch.tensor([[[True, False, False, True, False]]])
    # x=1, 2: between 5 and 2 -> 2; x=4: only 2 on its left -> 2
    assert fill_from_background(disp, keep).tolist() == [[[5.0, 2.0, 2.0, 2.0, 2.0]]]
    none = torch.zeros_like(keep)
    assert torch.equal(fill_from_background(disp, none), disp)  # a row with nothing kept stays as it was


def test_the_half_size_right_view_doubles_a_half_size_match():
    seen = []

    def run(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(left.shape[-2:]))
        return torch.full((1, *left.shape[-2:]), 3.0)  # 3 px at half size

    left = torch.zeros(1, 3, 32, 64)
    disp = right_view_disparity(run, left, left, 0.5)
    assert seen == [(16, 32)] and disp.shape == (1, 32, 64)
    torch.testing.assert_close(disp, torch.full((1, 32, 64), 6.0))


def test_lr_view_option_reaches_the_check(tiny_ckpt):
    rng = np.random.default_rng(1)
    pair = rng.random((2, 64, 96, 3), dtype=np.float32)
    half = predict_disparity(pair[0], pair[1], weights=tiny_ckpt, lr_view="half")
    full = predict_disparity(pair[0], pair[1], weights=tiny_ckpt, lr_view="full")
    assert half.info["lr_view"] == "half" and full.info["lr_view"] == "full"
    assert not np.array_equal(half.disparity, full.disparity)
    with pytest.raises(VislabError, match="unknown --lr-view 'quarter'"):
        predict_disparity(pair[0], pair[1], weights=tiny_ckpt, lr_view="quarter")


def test_the_stages_give_the_networks_answer_first_then_the_checked_one(tiny_ckpt):
    rng = np.random.default_rng(2)
    pair = rng.random((2, 64, 96, 3), dtype=np.float32)
    stages = list(predict_disparity_stages(pair[0], pair[1], weights=tiny_ckpt))
    assert [s.final for s in stages] == [False, True]
    first, last = stages
    assert first.info["lr_check"] == 0.0 and last.info["lr_check"] == 2.0 and last.info["lr_refilled"] > 0
    assert first.seconds < last.seconds
    # the first is the network alone, the last what predict_disparity answers with its check
    alone = predict_disparity(pair[0], pair[1], weights=tiny_ckpt, lr_check=0)
    checked = predict_disparity(pair[0], pair[1], weights=tiny_ckpt)
    np.testing.assert_array_equal(first.disparity, alone.disparity)
    np.testing.assert_array_equal(first.confidence, alone.confidence)
    np.testing.assert_array_equal(last.disparity, checked.disparity)
    assert not np.array_equal(first.disparity, last.disparity)  # the check refilled pixels of the first answer
    # one answer where there is nothing to wait for: no check, the volume check (one pass), SGBM
    for options in ({"lr_check": 0, "weights": tiny_ckpt}, {"lr_view": "volume", "weights": tiny_ckpt},
                    {"method": "sgbm"}):
        (only,) = predict_disparity_stages(pair[0], pair[1], **options)
        assert only.final is True


def test_the_right_views_logits_are_the_left_volume_sheared():
    from vislab.stereo.models.volume import _right_view_logits

    logits = torch.randn(2, 5, 3, 7)
    sheared = _right_view_logits(logits)
    for d in range(5):
        for x in range(7):  # right pixel x at disparity d is left pixel x + d at disparity d, when it exists
            expected = logits[:, d, :, x + d] if x + d < 7 else torch.full((2, 3), float("-inf"))
            assert torch.equal(sheared[:, d, :, x], expected)


def test_the_volume_right_view_finds_an_occlusion():
    from vislab.stereo.models.volume import regress_views

    # Full-resolution logits (align_corners with as many planes and pixels as the output: no interpolation):
    # background at 2 px, a foreground strip at 10 px on left columns 20..29. Left columns 12..19 land at 10..17
    # in the right view, where the strip (left 20..27 - 10) hides them: the network's guess there is weak.
    width, planes = 48, 16
    logits = torch.full((1, planes, 4, width), -8.0)
    truth = torch.full((width,), 2)
    truth[20:30] = 10
    for x in range(width):
        logits[0, truth[x], :, x] = 2.0 if 12 <= x < 20 else 8.0
    disp, _, disp_right = regress_views(logits, planes, (4, width), (0, 4), (0, width), True, False,
                                        estimator="dominant", window=1)
    torch.testing.assert_close(disp[0, 0], truth.float(), atol=1e-3, rtol=0)
    assert torch.allclose(disp_right[0, 0, 10:20], torch.tensor(10.0), atol=1e-3)  # the right view sees the strip
    assert torch.allclose(disp_right[0, 0, 30:46], torch.tensor(2.0), atol=1e-3)
    _, consistent = left_right_fill(disp, disp_right, 2.0)
    hidden = ~consistent[0, 0]
    assert hidden[12:20].all() and hidden[:2].all()  # the occluded columns, and those matching outside the image
    assert not hidden[2:12].any() and not hidden[20:].any()


def test_the_volume_check_runs_the_network_once_and_keeps_the_left_disparity(tiny_ckpt, monkeypatch):
    from vislab.stereo.models.psmnet import PSMNet

    model, _ = load_stereo_model(tiny_ckpt, "cpu")
    left, right = torch.randn(1, 3, 48, 80), torch.randn(1, 3, 48, 80)
    disp, conf = model.infer(left, right, estimator="dominant")
    views = model.infer_views(left, right, estimator="dominant")
    torch.testing.assert_close(views[0], disp)
    torch.testing.assert_close(views[1], conf)
    assert views[2].shape == disp.shape and views[2].min() >= 0 and views[2].max() <= model.max_disp - 1
    calls = []
    real = PSMNet._costs
    monkeypatch.setattr(PSMNet, "_costs", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    pair = np.random.default_rng(2).random((2, 48, 80, 3), dtype=np.float32)
    result = predict_disparity(pair[0], pair[1], weights=tiny_ckpt, max_disp=None, lr_view="volume")
    assert len(calls) == 1 and result.info["lr_view"] == "volume"


# -------------------------------------------------------------------------------------------- precision

def test_precision_auto_falls_back_to_fp32_without_native_bf16():
    cpu = torch.device("cpu")
    probe_calls = []
    probe = probe_calls.append
    assert precision.resolve_precision("auto", cpu, native=False, probe=probe) == (
        "fp32", "no native bf16 on this CPU")
    assert precision.resolve_precision("fp32", cpu, native=True, probe=probe) == ("fp32", "as requested")
    assert probe_calls == []  # nothing is measured where the answer is known
    with pytest.raises(VislabError, match="--precision bf16: this CPU has no native bf16"):
        precision.resolve_precision("bf16", cpu, native=False)
    assert precision.resolve_precision("bf16", cpu, native=True) == ("bf16", "as requested")
    with pytest.raises(VislabError, match="unknown --precision 'fp16'"):
        precision.resolve_precision("fp16", cpu)


def test_precision_auto_with_native_bf16_keeps_it_only_when_faster_and_as_accurate():
    cpu = torch.device("cpu")

    def probe(results):
        return lambda p: results[p]

    faster_same = {"fp32": (2.0, 10.0), "bf16": (1.0, 10.05)}
    assert precision.resolve_precision("auto", cpu, native=True, probe=probe(faster_same))[0] == "bf16"
    faster_worse = {"fp32": (2.0, 10.0), "bf16": (1.0, 10.2)}  # 0.2 points of D1 lost: too much
    assert precision.resolve_precision("auto", cpu, native=True, probe=probe(faster_worse))[0] == "fp32"
    same_speed = {"fp32": (2.0, 10.0), "bf16": (1.9, 10.0)}  # within the timing-noise margin
    assert precision.resolve_precision("auto", cpu, native=True, probe=probe(same_speed))[0] == "fp32"


def test_native_bf16_is_read_from_the_cpu_flags():
    assert precision.cpu_has_native_bf16({"avx2", "fma"}) is False
    assert precision.cpu_has_native_bf16({"avx512f", "avx512_bf16"}) is torch.backends.mkldnn.is_available()
    assert precision.cpu_has_native_bf16({"amx_bf16", "amx_tile"}) is torch.backends.mkldnn.is_available()


def test_bf16_inference_runs_and_stays_close():
    # bf16 arithmetic itself works on any CPU (emulated where not native): the path is checked, not its speed
    torch.manual_seed(0)
    model = create_model("basic", max_disp=32).eval()
    left, right = torch.randn(1, 3, 32, 64), torch.randn(1, 3, 32, 64)
    fp32, _ = model.infer(left, right, return_confidence=False)
    bf16, _ = model.infer(left, right, return_confidence=False, bf16=True)
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape and torch.isfinite(bf16).all()
    assert (bf16 - fp32).abs().mean() < 2.0


# ------------------------------------------------------------------------------------------------- CLI

def test_cli_predict_prints_and_records_the_auto_range(tiny_ckpt, tmp_path, capsys):
    rng = np.random.default_rng(2)
    from PIL import Image

    for name in ("l.png", "r.png"):
        Image.fromarray((rng.random((128, 160, 3)) * 255).astype(np.uint8)).save(tmp_path / name)
    args = ["stereo", "predict", str(tmp_path / "l.png"), str(tmp_path / "r.png"), "--weights", str(tiny_ckpt),
            "--no-checks", "--out", str(tmp_path / "out")]
    assert main(args) == 0
    out = capsys.readouterr().out
    record = json.loads((tmp_path / "out" / "l_prediction.json").read_text())
    assert record["range"] == "auto" and f"max disparity {record['max_disp']} (auto: " in out
    assert record["precision"] == "fp32" and record["lr_view"] == "full"
    assert main([*args, "--max-disp", "32"]) == 0
    record = json.loads((tmp_path / "out" / "l_prediction.json").read_text())
    assert record["range"] == "fixed" and record["max_disp"] == 32
    capsys.readouterr()
    assert main([*args, "--max-disp", "30"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "multiple of 4" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as exit_info:  # argparse: not a number nor auto
        main([*args, "--max-disp", "wide"])
    assert exit_info.value.code == 2


def test_auto_range_constants_are_consistent():
    assert auto_range.RANGE_STEP % 16 == 0  # whole groups of four 1/4-scale planes
    assert 0 < auto_range.FULL_RANGE_SHARE < 1 and auto_range.RANGE_MARGIN > 1
