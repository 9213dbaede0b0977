"""The helpers behind benchmarks/stereo_quality_variants.py (issue 12's inference-side experiments).

Their measurements are only as good as these pieces: the left-right fill, the SPP window swap and the
checkpoint average are checked on hand-built cases here.
"""

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vislab.stereo.models import create_model

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "stereo_quality_variants.py"
_spec = importlib.util.spec_from_file_location("stereo_quality_variants", _PATH)
variants = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(variants)


def _row(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(1, 1, -1)


def _scene() -> tuple[torch.Tensor, torch.Tensor]:
    """A 20-px row: background at 2 px, an object at 6 px seen at x = 10..13 in the left view (4..7 in the
    right); the left view's background at x = 8, 9 is hidden in the right view, and x = 0, 1 see nothing
    there. The left estimate is wrong (4 px) in the occlusion and at the border (5 px)."""
    truth = [5, 5] + [2] * 6 + [4, 4] + [6] * 4 + [2] * 6
    right = [2] * 4 + [6] * 4 + [2] * 12
    return _row(truth), _row(right)


@pytest.mark.parametrize("occlusion_aware", [False, True])
def test_lr_fill_gives_the_occlusion_the_background_and_keeps_consistent_pixels(occlusion_aware):
    left, right = _scene()
    filled = variants.lr_fill(left, right, threshold=1.0, occlusion_aware=occlusion_aware)
    expected = _row([2] * 10 + [6] * 4 + [2] * 6)
    assert torch.equal(filled, expected)


def test_lr_fill_mismatch_gets_the_neighbours_mean_only_when_occlusion_aware():
    # x = 5 claims 3 px, but the right view there (x = 2) says 1 px, farther: a mismatch, not an occlusion;
    # its consistent neighbours are 1 px (x = 4) and 2 px (x = 6)
    left = _row([1, 1, 1, 1, 1, 3, 2, 2, 2, 2])
    right = _row([1, 1, 1, 1, 2, 2, 2, 2, 2, 2])
    assert variants.lr_fill(left, right, 1.0, occlusion_aware=False)[0, 0, 5] == 1
    assert variants.lr_fill(left, right, 1.0, occlusion_aware=True)[0, 0, 5] == 1.5


def test_lr_fill_leaves_a_row_without_consistent_pixels_alone():
    left, right = _row([3, 3, 3]), _row([9, 9, 9])
    assert torch.equal(variants.lr_fill(left, right, 1.0, False), left)


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
