"""``vislab mnist show`` writes a labelled PNG grid; bad input gives a one-line error."""

import numpy as np
import torch
from PIL import Image

from vislab.cli import main
from vislab.mnist.show import save_digit_grid


def test_show_writes_a_png_grid_with_the_labels(tmp_path, capsys):
    out = tmp_path / "grid" / "samples.png"
    assert main(["mnist", "show", "--n", "12", "--split", "test", "--out", str(out)]) == 0
    # The first twelve test labels, printed and used as titles.
    assert "7 2 1 0 4 1 4 9 5 9 0 6" in capsys.readouterr().out
    with Image.open(out) as img:
        assert img.format == "PNG"
        width, height = img.size
        pixels = np.asarray(img.convert("L"))
    assert width > 2 * height  # 10 columns x 2 rows
    assert (pixels < 30).mean() > 0.2 and (pixels > 200).mean() > 0.05  # black panels, white digits and margin


def test_show_reads_another_copy_and_reports_bad_input(tmp_path, capsys, mnist_dir):
    out = tmp_path / "one.png"
    assert main(["mnist", "show", "--n", "1", "--data", str(mnist_dir), "--out", str(out)]) == 0
    assert out.is_file()
    assert main(["mnist", "show", "--n", "0", "--out", str(tmp_path / "x.png")]) == 2
    assert "error: --n must be between 1 and 60000" in capsys.readouterr().err
    assert main(["mnist", "show", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: MNIST data folder not found") and err.count("\n") == 1
    assert not (tmp_path / "x.png").exists()
    assert main(["mnist", "show", "--n", "1", "--out", str(tmp_path / "grid.jpgx")]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert main(["mnist", "show", "--n", "1", "--out", str(tmp_path / "grid")]) == 0
    assert f"wrote {tmp_path / 'grid.png'} " in capsys.readouterr().out and (tmp_path / "grid.png").is_file()


def grid_pixels(images: torch.Tensor, labels: list[int], path, columns: int = 10) -> np.ndarray:
    """``save_digit_grid``'s PNG as grey levels (int16, so that differences can be negative)."""
    with Image.open(save_digit_grid(images, torch.tensor(labels), path, columns=columns)) as img:
        return np.asarray(img.convert("L"), dtype=np.int16)


def test_grid_draws_each_label_and_each_digit_in_its_panel(tmp_path):
    digits = torch.zeros(3, 28, 28, dtype=torch.uint8)
    digits[:, 4:24, 12:16] = 255  # three white bars

    def render(images, labels, name):
        return grid_pixels(images, labels, tmp_path / name, columns=3)

    base = render(digits, [1, 2, 3], "base.png")
    assert np.array_equal(base, render(digits, [1, 2, 3], "again.png"))
    relabelled = np.abs(render(digits, [1, 7, 3], "relabelled.png") - base) > 64
    moved = digits.clone()
    moved[1] = 0
    blanked = np.abs(render(moved, [1, 2, 3], "blanked.png") - base) > 64
    # a new label changes a little text above the middle panel; a blank digit, its white bar inside it
    for changed in (relabelled, blanked):
        cols = np.nonzero(changed.any(0))[0]
        assert 0 < changed.sum() < 0.05 * changed.size
        assert base.shape[1] / 3 < cols.min() and cols.max() < 2 * base.shape[1] / 3
    assert np.nonzero(relabelled.any(1))[0].max() < np.nonzero(blanked.any(1))[0].min()  # title above digit


def test_grid_shape_follows_the_digit_count_and_shows_ink_on_a_fixed_scale(tmp_path):
    def render(images, name, columns=10):
        return grid_pixels(images, list(range(len(images))), tmp_path / name, columns=columns)

    bright = torch.zeros(2, 28, 28, dtype=torch.uint8)
    bright[:, 4:24, 12:16] = 255
    # two digits make a two-column grid, not ten columns of mostly empty panels
    assert render(bright, "two.png").shape == render(bright, "two_cols.png", columns=2).shape
    assert render(bright, "two.png").shape[1] < 3 * render(bright, "two.png").shape[0]
    # 0..255 is fixed: a dim (100) stroke is drawn dimmer than a full one, not stretched to white
    dim = bright // 255 * 100
    assert (np.abs(render(dim, "dim.png") - render(bright, "bright.png")) > 64).any()
    # the last panel is drawn too
    last_blank = bright.clone()
    last_blank[1] = 0
    assert (np.abs(render(last_blank, "last.png") - render(bright, "bright2.png")) > 64).any()
