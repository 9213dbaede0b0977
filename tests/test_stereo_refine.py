"""vislab.stereo.refine: the left-right consistency check and its background fill, on hand-built rows."""

import pytest
import torch

from vislab.stereo.refine import check_left_right, left_right_fill, right_view_disparity


def _row(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(1, 1, -1)


def _scene() -> tuple[torch.Tensor, torch.Tensor]:
    """A 20-px row: background at 2 px, an object at 6 px seen at x = 10..13 in the left view (4..7 in the
    right); the left view's background at x = 6..9 is hidden by it in the right view, and x = 0, 1 fall
    outside the right image. The left estimate is wrong at x = 8, 9 (4 px) and at the border (5 px)."""
    truth = [5, 5] + [2] * 6 + [4, 4] + [6] * 4 + [2] * 6
    right = [2] * 4 + [6] * 4 + [2] * 12
    return _row(truth), _row(right)


@pytest.mark.parametrize("occlusion_aware", [False, True])
def test_lr_fill_gives_the_occlusion_the_background_and_keeps_consistent_pixels(occlusion_aware):
    left, right = _scene()
    filled, consistent = left_right_fill(left, right, threshold=1.0, occlusion_aware=occlusion_aware)
    assert torch.equal(filled, _row([2] * 10 + [6] * 4 + [2] * 6))
    assert consistent[0, 0].tolist() == [False] * 2 + [True] * 4 + [False] * 4 + [True] * 10


def test_lr_fill_mismatch_gets_the_neighbours_mean_only_when_occlusion_aware():
    # x = 5 claims 3 px, but the right view there (x = 2) says 1 px, farther: a mismatch, not an occlusion;
    # its consistent neighbours are 1 px (x = 4) and 2 px (x = 6)
    left = _row([1, 1, 1, 1, 1, 3, 2, 2, 2, 2])
    right = _row([1, 1, 1, 1, 2, 2, 2, 2, 2, 2])
    assert left_right_fill(left, right, 1.0, occlusion_aware=False)[0][0, 0, 5] == 1
    assert left_right_fill(left, right, 1.0, occlusion_aware=True)[0][0, 0, 5] == 1.5


def test_lr_fill_leaves_a_row_without_consistent_pixels_alone():
    left, right = _row([3, 3, 3]), _row([9, 9, 9])
    filled, consistent = left_right_fill(left, right, 1.0, False)
    assert torch.equal(filled, left) and not consistent.any()


def test_lr_fill_threshold_decides_what_is_consistent():
    left, right = _row([2, 2, 2, 2]), _row([2, 2.5, 2, 2])  # x = 3 matches x = 1, off by 0.5 px
    assert left_right_fill(left, right, 1.0)[1][0, 0, 3]
    assert not left_right_fill(left, right, 0.25)[1][0, 0, 3]


def test_right_view_disparity_mirrors_and_swaps_the_pair():
    seen = []

    def matcher(left, right):
        seen.append((left.clone(), right.clone()))
        return left[:, 0] * 10 + right[:, 0]  # depends on which image is which and on the order of columns

    left = torch.arange(6.0).view(1, 1, 1, 6)
    right = 100 + torch.arange(6.0).view(1, 1, 1, 6)
    out = right_view_disparity(matcher, left, right)
    assert torch.equal(seen[0][0], right.flip(-1)) and torch.equal(seen[0][1], left.flip(-1))
    assert torch.equal(out, (right[:, 0] * 10 + left[:, 0]))  # flipped back: column x is the right view's x




@pytest.mark.parametrize("bad", ["-1", "nan", "inf"])
def test_a_bad_lr_check_is_a_one_line_error(bad, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from vislab.cli import main

    image = np.random.default_rng(0).integers(0, 255, (16, 32, 3), dtype=np.uint8)
    for name in ("l.png", "r.png"):
        Image.fromarray(image).save(tmp_path / name)
    code = main(["stereo", "predict", str(tmp_path / "l.png"), str(tmp_path / "r.png"), "--method", "sgbm",
                 "--lr-check", bad, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "--lr-check must be a threshold >= 0 px" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_check_left_right_zeroes_the_confidence_where_it_refills():
    left, right = _scene()  # the matcher below answers with the right view's map for the mirrored pair
    image = torch.zeros(1, 3, 1, 20)
    confidence = torch.full_like(left, 0.9)
    disp, conf, refilled = check_left_right(lambda a, b: right.flip(-1), image, image, left, confidence, 1.0)
    expected, consistent = left_right_fill(left, right, 1.0)
    assert torch.equal(disp, expected)
    assert torch.equal(conf, torch.where(consistent, 0.9, 0.0)) and refilled == pytest.approx(6 / 20)
    assert check_left_right(lambda a, b: right.flip(-1), image, image, left, None, 1.0)[1] is None
