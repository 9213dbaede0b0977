"""``vislab stereo summary``: the lab's layer table with real shapes, and the parameter count."""

import pytest

from vislab.cli import main
from vislab.stereo.summary import layer_table


def _by_name(table):
    return {row[0]: row for row in table}


def test_stackhourglass_table_matches_the_lab():
    table, total = layer_table("stackhourglass", 256, 512, 192)
    assert total == 5_224_768
    rows = _by_name(table)
    assert rows["conv0_1"][2].startswith("1/2H x 1/2W x 32  (128x256x32)")
    assert rows["conv2_x"][2].startswith("1/4H x 1/4W x 64  (64x128x64)")
    assert rows["conv4_x"][2].startswith("1/4H x 1/4W x 128")
    assert rows["branch_1"][2] == "1/4H x 1/4W x 32  (64x128x32), pooled 1x2"
    assert rows["concat"][2].startswith("1/4H x 1/4W x 320")
    assert rows["fusion"][2].startswith("1/4H x 1/4W x 32")
    assert rows["cost volume"][2] == "1/4D x 1/4H x 1/4W x 64  (48x64x128x64)"
    assert rows["3Dstack1_1"][2] == "1/8D x 1/8H x 1/8W x 64  (24x32x64x64)"
    assert rows["3Dstack2_2"][2] == "1/16D x 1/16H x 1/16W x 64  (12x16x32x64)"
    assert rows["3Dstack3_4"][2] == "1/4D x 1/4H x 1/4W x 32  (48x64x128x32)"
    assert rows["output_3"][2] == "1/4D x 1/4H x 1/4W x 1  (48x64x128x1)"
    assert rows["regression"][2].startswith("H x W  (256x512)")
    # per-row parameters add up to the model's total
    assert sum(row[3] for row in table) == total


def test_basic_table_and_odd_size():
    table, total = layer_table("basic", 100, 333, 36)
    assert total == 3_672_896
    rows = _by_name(table)
    assert "3Dconv4" in rows and "output" in rows and "3Dstack1_1" not in rows
    assert rows["input"][2] == "H x W x 3  (112x336x3)"  # padded to multiples of 16
    assert rows["branch_1"][2].endswith("pooled 1x1")  # the 64x64 window clipped to the 28x84 map
    assert rows["cost volume"][2] == "1/4D' x 1/4H x 1/4W x 64  (12x28x84x64)"
    assert rows["regression"][2].endswith("cropped to 100x333")


def test_cli_prints_table(capsys):
    assert main(["stereo", "summary", "--model", "stackhourglass"]) == 0
    out = capsys.readouterr().out
    assert "total parameters: 5,224,768" in out
    assert "3Dstack3_4" in out and "1/4D x 1/4H x 1/4W x 64" in out


def test_cli_rejects_bad_max_disp(capsys):
    assert main(["stereo", "summary", "--max-disp", "30"]) == 2
    assert "multiple of 4" in capsys.readouterr().err


@pytest.mark.parametrize("size", [(0, 10), (10, -1)])
def test_bad_size_is_an_error(size):
    from vislab.core.errors import VislabError

    with pytest.raises(VislabError):
        layer_table("basic", *size, 192)


def test_cli_header_notes_padding_and_the_rounded_up_volume(capsys):
    assert main(["stereo", "summary", "--model", "basic", "--height", "100", "--width", "333", "--max-disp", "36"]) == 0
    out = capsys.readouterr().out
    assert "input 100x333 (padded to 112x336), max disparity D = 36" in out
    # D' rounds 36 *up* to the next multiple of 16 (the volume must hold every disparity < D)
    assert "D' = 48 disparities" in out and "D/4 = 9 planes" in out
    assert main(["stereo", "summary", "--model", "basic", "--height", "256", "--width", "512"]) == 0
    out = capsys.readouterr().out
    assert "input 256x512, max disparity" in out and "padded" not in out and "D' =" not in out


def test_describe_writes_non_integer_ratios_as_a_fraction():
    from vislab.stereo.summary import _describe

    # e.g. the cost cropped back to D/4 = 9 of D' = 48 planes: 48/9 is not an integer, so not "1/5D'"
    assert _describe((1, 1, 9, 28, 84), 112, 336, 48, "D'") == "9/48D' x 1/4H x 1/4W x 1  (9x28x84x1)"
    assert _describe((1, 32, 28, 84), 112, 336, 48) == "1/4H x 1/4W x 32  (28x84x32)"
