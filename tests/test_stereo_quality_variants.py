"""The helpers behind benchmarks/stereo_quality_variants.py (issue 12's inference-side experiments).

Their measurements are only as good as these pieces: the SPP window swap and the checkpoint average are
checked on hand-built cases here (the left-right check it measures is vislab's own, tests/test_stereo_refine.py).
"""

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vislab.stereo.datasets.synthetic import render_scene
from vislab.stereo.models import create_model, load_stereo_model

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "stereo_quality_variants.py"
_spec = importlib.util.spec_from_file_location("stereo_quality_variants", _PATH)
variants = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(variants)


def test_spp_variants_swap_the_pools_and_plain_restores_the_model():
    torch.manual_seed(0)
    model = create_model("basic", max_disp=16).eval()
    x = torch.randn(1, 3, 256, 512)
    with torch.no_grad():
        before = model.feature_extraction(x)
        variants.set_spp_pools(model, "spp-global")
        changed = model.feature_extraction(x)
        variants.set_spp_pools(model, "plain")
        after = model.feature_extraction(x)
    assert not torch.allclose(before, changed)
    torch.testing.assert_close(after, before)


def test_window_limited_pool_is_clipped_to_the_limit_and_to_the_map():
    x = torch.randn(1, 2, 24, 78)
    pool = variants.WindowLimitedAvgPool2d(64, (24, 48))
    torch.testing.assert_close(pool(x), F.avg_pool2d(x, (24, 48), stride=(24, 48)))
    assert variants.WindowLimitedAvgPool2d(8, (24, 48))(x).shape == (1, 2, 3, 9)


def test_average_checkpoints_averages_floats_and_keeps_the_rest(tmp_path):
    a = {"model": {"w": torch.tensor([1.0, 3.0]).half(), "n": torch.tensor(5)}, "task": "stereo"}
    b = {"model": {"w": torch.tensor([3.0, 5.0]).half(), "n": torch.tensor(7)}, "task": "stereo"}
    torch.save(a, tmp_path / "a.pt")
    torch.save(b, tmp_path / "b.pt")
    out = variants.average_checkpoints([str(tmp_path / "a.pt"), str(tmp_path / "b.pt")], tmp_path / "avg.pt")
    avg = torch.load(out, weights_only=True)
    assert avg["model"]["w"].dtype == torch.float16
    assert avg["model"]["w"].tolist() == [2.0, 4.0]
    assert avg["model"]["n"].item() == 5 and avg["task"] == "stereo"


def test_make_predict_runs_the_dominant_estimator_with_the_given_window():
    # The shipped weights on a rendered scene: a trained softmax, where the window changes the estimate.
    model, _ = load_stereo_model(None, "cpu", max_disp=48)
    scene = render_scene(3, 96, 160, max_disp=48, photometric=False)
    left, right = (torch.from_numpy(scene[k]).permute(2, 0, 1).float() for k in ("left", "right"))
    normalized = [variants.imagenet_normalize(x)[None] for x in (left, right)]
    with torch.no_grad():
        for window in (1, 8):
            expected = model.infer(*normalized, return_confidence=False, estimator="dominant", window=window)[0][0]
            torch.testing.assert_close(variants.make_predict(model, "plain", window)(left, right), expected)
        narrow = variants.make_predict(model, "plain", 1)(left, right)
        wide = variants.make_predict(model, "plain", 8)(left, right)
    assert not torch.allclose(narrow, wide)


def test_single_pass_occlusions_by_hand():
    # landing positions x - d: [0, 1, 2, 0, 4, 5]: pixels 1 and 2 land right of where pixel 3 lands: hidden
    disp = torch.tensor([[[0.0, 0.0, 0.0, 3.0, 0.0, 0.0]]])
    assert variants.single_pass_occlusions(disp, 1.0).tolist() == [[[False, True, True, False, False, False]]]
    # a match left of the right image counts as hidden too
    assert variants.single_pass_occlusions(torch.tensor([[[1.0, 0.0]]]), 1.0).tolist() == [[[True, False]]]


def test_harder_views_change_the_right_view_only_and_reproducibly():
    from vislab.stereo.datasets import create_dataset

    base = create_dataset("synthetic", None, split="testing", size=2, height=32, width=64, max_disp=16)
    harder = variants.HarderViews(base)
    a, b, plain = harder[1], harder[1], base[1]
    torch.testing.assert_close(a["left"], plain["left"])
    torch.testing.assert_close(a["right"], b["right"])
    assert not torch.allclose(a["right"], plain["right"]) and 0 <= a["right"].min() and a["right"].max() <= 1


def test_cut_shares_counts_ground_truth_at_or_above_the_range():
    sample = {"disp": torch.tensor([[10.0, 20.0, 40.0, 0.0]]), "valid": torch.ones(1, 4, dtype=torch.bool)}
    # pixels 0 < gt < 192: three; at or above 20: two of them
    assert variants.cut_shares([sample], [20], 192) == [pytest.approx(2 / 3)]


def test_whole_process_timing_of_a_child():
    import importlib.util as util
    import sys

    spec = util.spec_from_file_location("stereo_inference", _PATH.with_name("stereo_inference.py"))
    inference = util.module_from_spec(spec)
    spec.loader.exec_module(inference)
    seconds, cpu, peak_mb = inference._timed_process([sys.executable, "-c", "x = bytearray(50_000_000)"])
    assert seconds > 0 and cpu > 0 and peak_mb > 50  # the child's own peak: it held 50 MB
