"""MNIST data layer: the real bundled files, corrupt-file detection, splits, batching, augmentation, user digits."""

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from skimage.morphology import skeletonize

from vislab.core.errors import VislabError
from vislab.mnist.data import (
    MEAN,
    STD,
    augment_batch,
    default_data_dir,
    iterate_batches,
    load_mnist,
    load_splits,
    normalize,
    preprocess_digit_image,
    read_idx,
)
from vislab.mnist.predict import read_digit_image

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """An IDX file of uint8 ``array``: magic 0x08nn then one big-endian uint32 per dimension."""
    array = np.asarray(array, dtype=np.uint8)
    magic = 0x0800 | array.ndim if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def write_split(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray, gz: bool = True) -> None:
    for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
        data = idx_bytes(array)
        name = f"{prefix}-{kind}-ubyte"
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)


@pytest.fixture(scope="module")
def train(mnist_dir):
    return load_mnist(mnist_dir, "train")


@pytest.fixture(scope="module")
def test_set(mnist_dir):
    return load_mnist(mnist_dir, "test")


# --- the real bundled files ---------------------------------------------------------------------------


def test_bundled_train_and_test_shapes_and_class_counts(train, test_set):
    (xtr, ytr), (xte, yte) = train, test_set
    assert xtr.shape == (60000, 28, 28) and xtr.dtype == torch.uint8
    assert ytr.shape == (60000,) and ytr.dtype == torch.int64
    assert xte.shape == (10000, 28, 28) and yte.shape == (10000,)
    assert torch.bincount(ytr, minlength=10).tolist() == TRAIN_COUNTS
    assert torch.bincount(yte, minlength=10).tolist() == TEST_COUNTS


def test_pixel_statistics_match_the_normalisation_constants(train):
    x = train[0].float() / 255
    assert x.mean().item() == pytest.approx(MEAN, abs=5e-4)
    assert x.std().item() == pytest.approx(STD, abs=5e-4)
    z = normalize(train[0])
    assert z.shape == (60000, 1, 28, 28) and z.dtype == torch.float32
    assert z.mean().item() == pytest.approx(0.0, abs=2e-3)
    assert z.std().item() == pytest.approx(1.0, abs=2e-3)


def test_default_dir_is_the_bundled_copy_and_env_overrides_it(monkeypatch, mnist_dir, tmp_path):
    monkeypatch.delenv("VISLAB_MNIST_DIR", raising=False)
    assert default_data_dir() == mnist_dir.resolve()
    monkeypatch.setenv("VISLAB_MNIST_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    with pytest.raises(VislabError, match="t10k-images-idx3-ubyte.*--data DIR.*vislab mnist download"):
        load_mnist(None, "test")


def test_raw_uncompressed_files_read_the_same(mnist_dir, tmp_path, test_set):
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(mnist_dir / f"{stem}.gz") as src, (tmp_path / stem).open("wb") as dst:
            shutil.copyfileobj(src, dst)
    x, y = load_mnist(tmp_path, "test")
    assert torch.equal(x, test_set[0]) and torch.equal(y, test_set[1])


# --- corrupt files ---------------------------------------------------------------------------------------

GOOD_IMAGES = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
GOOD_LABELS = np.array([0, 9, 4], dtype=np.uint8)


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_accepts_a_valid_file(tmp_path, gz):
    data = idx_bytes(GOOD_IMAGES)
    path = tmp_path / ("x.gz" if gz else "x")
    path.write_bytes(gzip.compress(data) if gz else data)
    assert np.array_equal(read_idx(path), GOOD_IMAGES)


@pytest.mark.parametrize("content, problem", [
    (idx_bytes(GOOD_IMAGES, magic=0x0802), "bad magic"),
    (idx_bytes(GOOD_IMAGES, magic=0x0D03), "bad magic"),
    (idx_bytes(GOOD_IMAGES)[:-1], "truncated"),
    (idx_bytes(GOOD_IMAGES)[:10], "truncated header"),
    (idx_bytes(GOOD_IMAGES) + b"\0", "trailing bytes"),
    (idx_bytes(np.zeros((2, 28, 27))), "28x27"),
    (idx_bytes(np.array([1, 10, 2])), "label 10"),
    (b"\0\0", "too short"),
])
@pytest.mark.parametrize("gz", [True, False])
def test_corrupt_files_raise_naming_the_file(tmp_path, content, problem, gz):
    path = tmp_path / ("broken-idx.gz" if gz else "broken-idx")
    path.write_bytes(gzip.compress(content) if gz else content)
    with pytest.raises(VislabError, match=problem) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


@pytest.mark.parametrize("mangle", [
    lambda gz: gz[: len(gz) // 2],                      # stream cut short
    lambda gz: gz[:20] + bytes(b ^ 0xFF for b in gz[20:40]) + gz[40:],  # flipped bytes
    lambda gz: b"not gzip at all" + gz,                 # .gz name, no gzip magic
])
def test_bad_gzip_stream_raises_naming_the_file(tmp_path, mangle):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(mangle(gzip.compress(idx_bytes(GOOD_IMAGES))))
    with pytest.raises(VislabError, match="train-images-idx3-ubyte.gz.*(gzip|corrupt)"):
        read_idx(path)


def test_count_mismatch_and_swapped_files_are_reported(tmp_path):
    write_split(tmp_path, "t10k", GOOD_IMAGES, GOOD_LABELS[:2])
    with pytest.raises(VislabError, match="t10k-images-idx3-ubyte.gz has 3 images.*2 labels"):
        load_mnist(tmp_path, "test")
    # A labels file where the images belong (and vice versa) is caught by its dimensionality.
    write_split(tmp_path, "t10k", GOOD_IMAGES, GOOD_LABELS)
    shutil.copy(tmp_path / "t10k-labels-idx1-ubyte.gz", tmp_path / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(VislabError, match="t10k-images-idx3-ubyte.gz: holds labels"):
        load_mnist(tmp_path, "test")


def test_missing_folder_file_and_bad_split(tmp_path):
    with pytest.raises(VislabError, match="folder not found.*--data DIR"):
        load_mnist(tmp_path / "nope", "train")
    write_split(tmp_path, "train", GOOD_IMAGES, GOOD_LABELS)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(VislabError, match="train-labels-idx1-ubyte.gz .*not found in .*vislab mnist download"):
        load_mnist(tmp_path, "train")
    with pytest.raises(VislabError, match="unknown MNIST split 'val'"):
        load_mnist(tmp_path, "val")


# --- splits and batching ---------------------------------------------------------------------------------


def test_validation_split_is_the_last_images_of_train(mnist_dir, train):
    splits = load_splits(mnist_dir, val_size=5000)
    assert splits.train_x.shape == (55000, 1, 28, 28) and splits.train_y.shape == (55000,)
    assert splits.val_x.shape == (5000, 1, 28, 28) and splits.val_y.shape == (5000,)
    assert splits.test_x.shape == (10000, 1, 28, 28)
    assert torch.equal(splits.val_y, train[1][-5000:])
    assert torch.equal(splits.val_x, normalize(train[0][-5000:]))
    assert torch.equal(splits.train_x[-1], normalize(train[0][54999:55000])[0])
    none = load_splits(mnist_dir, val_size=0)
    assert none.val_x is None and none.val_y is None and len(none.train_x) == 60000
    with pytest.raises(VislabError, match="validation size"):
        load_splits(mnist_dir, val_size=60000)


@pytest.mark.parametrize("shuffle, drop_last", [(True, False), (False, False), (True, True)])
def test_iterate_batches_covers_every_sample_once(shuffle, drop_last):
    x = torch.arange(103).float().view(103, 1, 1, 1)
    y = torch.arange(103)
    batches = list(iterate_batches(x, y, 10, shuffle, torch.Generator().manual_seed(1), drop_last))
    seen = torch.cat([b[1] for b in batches])
    assert all(torch.equal(bx.view(-1).long(), by) for bx, by in batches)  # pairs stay aligned
    if drop_last:
        assert len(batches) == 10 and all(len(b[1]) == 10 for b in batches) and len(set(seen.tolist())) == 100
    else:
        assert [len(b[1]) for b in batches] == [10] * 10 + [3]
        assert sorted(seen.tolist()) == list(range(103))
        assert (seen.tolist() == list(range(103))) is (not shuffle)


@pytest.mark.parametrize("shuffle", [True, False])
def test_iterate_batches_keeps_a_last_batch_of_one(shuffle):
    # 10 samples at batch 3: the last batch holds a single sample and must not be dropped
    x, y = torch.arange(10).float(), torch.arange(10)
    batches = list(iterate_batches(x, y, 3, shuffle, torch.Generator().manual_seed(0)))
    assert [len(b) for _, b in batches] == [3, 3, 3, 1]
    assert sorted(torch.cat([b for _, b in batches]).tolist()) == list(range(10))


def test_iterate_batches_is_reproducible_per_seed_and_resumable():
    x, y = torch.arange(50).float(), torch.arange(50)

    def epoch(gen):
        return torch.cat([b for _, b in iterate_batches(x, y, 8, True, gen)]).tolist()

    assert epoch(torch.Generator().manual_seed(3)) == epoch(torch.Generator().manual_seed(3))
    assert epoch(torch.Generator().manual_seed(3)) != epoch(torch.Generator().manual_seed(4))
    gen = torch.Generator().manual_seed(5)
    first, state = epoch(gen), gen.get_state()
    second = epoch(gen)
    assert first != second  # a new order every epoch
    assert epoch(torch.Generator().set_state(state)) == second  # replay from a saved state


# --- augmentation -----------------------------------------------------------------------------------------


def test_augment_batch_changes_images_deterministically(test_set):
    x = normalize(test_set[0][:16])
    out1 = augment_batch(x, torch.Generator().manual_seed(0))
    out2 = augment_batch(x, torch.Generator().manual_seed(0))
    out3 = augment_batch(x, torch.Generator().manual_seed(1))
    assert out1.shape == x.shape and out1.dtype == x.dtype and torch.isfinite(out1).all()
    assert torch.equal(out1, out2) and not torch.equal(out1, out3)
    changed = (out1 - x).abs().flatten(1).mean(1)
    assert (changed > 0.01).all()  # every image moved
    # Background stays background (no zero-padding seams) and the digit keeps most of its ink.
    background = (0 - MEAN) / STD
    assert out1.min().item() == pytest.approx(background, abs=1e-5)
    assert out1[:, :, 0, :].mean().item() == pytest.approx(background, abs=0.05)
    ink_in, ink_out = (x - background).sum(), (out1 - background).sum()
    assert 0.7 < (ink_out / ink_in).item() < 1.3


def test_augment_batch_with_zero_ranges_is_identity(test_set):
    x = normalize(test_set[0][:4])
    out = augment_batch(x, torch.Generator().manual_seed(0), max_shift=0, max_rotate_deg=0, max_scale=0)
    assert torch.allclose(out, x, atol=1e-5)


def test_augment_batch_integer_shift_moves_the_centre_of_mass(test_set):
    x = normalize(test_set[0][:32])
    out = augment_batch(x, torch.Generator().manual_seed(2), max_shift=3, max_rotate_deg=0, max_scale=0)
    assert not torch.allclose(out, x)
    com_shift = (centre_of_mass(out[:, 0]) - centre_of_mass(x[:, 0])).abs()
    assert com_shift.max() <= 3.3 and com_shift.mean() > 0.5


def ink_shape(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Principal-axis angle (radians) and RMS radius of the ink of (N, H, W) images, about its centre of mass."""
    w = images - images.amin(dim=(1, 2), keepdim=True)
    com = centre_of_mass(images)
    r = torch.arange(images.shape[1], dtype=w.dtype)
    dy, dx = r[None, :, None] - com[:, 0, None, None], r[None, None, :] - com[:, 1, None, None]
    mass = w.sum((1, 2))
    myy, mxx, mxy = ((w * a * b).sum((1, 2)) / mass for a, b in ((dy, dy), (dx, dx), (dx, dy)))
    return 0.5 * torch.atan2(2 * mxy, mxx - myy), (mxx + myy).sqrt()


def test_augment_batch_rotates_and_scales(test_set):
    x = normalize(test_set[0][:64])
    angle, radius = ink_shape(x[:, 0])
    elongated = torch.nonzero(test_set[1][:64] == 1)[:, 0]  # the 1s (10 of them): a clear principal axis
    rotated = augment_batch(x, torch.Generator().manual_seed(0), max_shift=0, max_rotate_deg=20, max_scale=0)
    turn = ((ink_shape(rotated[:, 0])[0] - angle)[elongated].rad2deg() + 90).remainder(180).sub(90).abs()  # mod 180
    assert turn.max() < 22 and turn.mean() > 4
    assert torch.allclose(ink_shape(rotated[:, 0])[1], radius, rtol=0.05)  # rotation keeps the size
    scaled = augment_batch(x, torch.Generator().manual_seed(0), max_shift=0, max_rotate_deg=0, max_scale=0.3)
    ratio = ink_shape(scaled[:, 0])[1] / radius
    assert ratio.min() > 0.65 and ratio.max() < 1.35 and (ratio - 1).abs().mean() > 0.05


# --- the user's own digit ---------------------------------------------------------------------------------


def centre_of_mass(images: torch.Tensor) -> torch.Tensor:
    """(row, col) centre of mass of (N, H, W) images, relative to each image's minimum."""
    w = images - images.amin(dim=(1, 2), keepdim=True)
    r = torch.arange(images.shape[1], dtype=w.dtype)
    mass = w.sum((1, 2))
    return torch.stack([(w.sum(2) * r).sum(1) / mass, (w.sum(1) * r).sum(1) / mass], 1)


@pytest.mark.parametrize("index", [0, 1, 2, 3, 4, 7])
def test_preprocess_recovers_an_inverted_off_centre_scaled_up_digit(test_set, index):
    original = test_set[0][index].numpy()
    big = Image.fromarray(255 - original).resize((224, 224), Image.BICUBIC)  # dark ink on white paper
    canvas = Image.new("RGB", (640, 480), (255, 255, 255))
    canvas.paste(big.convert("RGB"), (40 + 40 * index, 230))  # off-centre, partly near the edge
    out = preprocess_digit_image(canvas)
    assert out.shape == (1, 28, 28) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1 and out.max() > 0.9
    corr = np.corrcoef(out.numpy().ravel(), original.ravel() / 255.0)[0, 1]
    assert corr > 0.8
    assert torch.allclose(centre_of_mass(out), torch.tensor([[14.0, 14.0]]), atol=0.5 + 1e-6)


def test_preprocess_accepts_arrays_light_on_dark_and_transparent_drawings(test_set):
    original = test_set[0][0].numpy()
    big = np.asarray(Image.fromarray(original).resize((112, 112), Image.BILINEAR))
    canvas = np.zeros((300, 200), np.uint8)
    canvas[20:132, 70:182] = big  # already light on dark: must not be inverted
    from_array = preprocess_digit_image(canvas)
    assert np.corrcoef(from_array.numpy().ravel(), original.ravel())[0, 1] > 0.8
    # Black strokes on a transparent background, as drawing apps save them.
    rgba = np.zeros((300, 200, 4), np.uint8)
    rgba[20:132, 70:182, 3] = big
    from_rgba = preprocess_digit_image(Image.fromarray(rgba, "RGBA"))
    assert torch.allclose(from_rgba, from_array, atol=0.02)
    with pytest.raises(VislabError, match="empty"):
        preprocess_digit_image(np.full((50, 50), 200, np.uint8))


@pytest.mark.parametrize("index", [0, 3, 6])
def test_preprocess_handles_a_noisy_unevenly_lit_photo_with_dust(test_set, index):
    """Grey paper brighter on the right, sensor noise, grey (not black) ink, a few dark specks."""
    original = test_set[0][index].numpy()
    rng = np.random.default_rng(index)
    big = np.asarray(Image.fromarray(255 - original).resize((224, 224), Image.BICUBIC), dtype=np.float64)
    photo = np.full((480, 640), 200.0) + np.linspace(-25, 25, 640)[None, :]
    photo[150:374, 300:524] -= (255 - big) * 0.7  # ink as dark as 70% of the way to black
    photo[rng.integers(0, 480, 6), rng.integers(0, 640, 6)] = 60  # dust
    photo += rng.normal(0, 8, photo.shape)
    out = preprocess_digit_image(np.clip(photo, 0, 255).astype(np.uint8))
    corr = np.corrcoef(out.numpy().ravel(), original.ravel() / 255.0)[0, 1]
    assert corr > 0.8
    assert torch.allclose(centre_of_mass(out), torch.tensor([[14.0, 14.0]]), atol=0.5 + 1e-6)


def test_preprocess_small_digit_on_a_large_16_bit_scan(test_set):
    """The digit covers under 1% of the picture, and the scan is 16-bit (must not be clipped to 8 bits)."""
    original = test_set[0][2].numpy()
    scan = np.pad(65535 - original.astype(np.uint16) * 257, ((40, 300), (250, 90)), constant_values=65535)
    image = Image.fromarray(scan)
    assert image.mode == "I;16"
    out = preprocess_digit_image(image)
    assert np.corrcoef(out.numpy().ravel(), original.ravel())[0, 1] > 0.95


@pytest.mark.parametrize("index", [0, 1, 2])
def test_preprocess_keeps_a_thin_pen_stroke_at_full_ink(test_set, index):
    """A 2-px pen line on a 560-px page: shrinking it 28x must not leave a faint smear (MNIST peaks at 1)."""
    original = test_set[0][index].numpy()
    up = np.asarray(Image.fromarray(original).resize((560, 560), Image.BICUBIC)) > 128
    stroke = ndimage.binary_dilation(skeletonize(up))  # a 3-px line along the digit's skeleton
    out = preprocess_digit_image(np.where(stroke, 0, 255).astype(np.uint8))
    assert out.max() == pytest.approx(1.0)
    assert (out > 0.5).sum() >= 0.25 * (original > 127).sum()  # ink, not a faint ghost
    assert np.corrcoef(out.numpy().ravel(), original.ravel())[0, 1] > 0.5


def test_read_digit_image_applies_the_exif_orientation(test_set, tmp_path):
    """A phone photo stored sideways with Orientation=6 (rotate 90 degrees clockwise to display)."""
    upright = Image.fromarray(255 - test_set[0][7].numpy()).resize((112, 112), Image.BICUBIC)
    upright.save(tmp_path / "upright.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "sideways.png", exif=exif)
    expected = read_digit_image(tmp_path / "upright.png")
    assert torch.equal(read_digit_image(tmp_path / "sideways.png"), expected)
    with Image.open(tmp_path / "sideways.png") as raw:  # the pixels really are rotated
        assert not torch.allclose(preprocess_digit_image(np.asarray(raw)), expected * STD + MEAN, atol=0.1)


def test_read_digit_image_normalises_like_the_training_data(test_set, tmp_path):
    # models are trained on (x - MEAN) / STD: a file must reach them normalised the same way
    Image.fromarray(test_set[0][1].numpy()).save(tmp_path / "two.png")
    with Image.open(tmp_path / "two.png") as img:
        raw = preprocess_digit_image(img)
    assert torch.allclose(read_digit_image(tmp_path / "two.png"), (raw - MEAN) / STD)


def test_to_gray_scales_every_input_kind_to_0_1():
    from vislab.mnist.data import _to_gray

    # 16-bit, 32-bit and float inputs are divided by their own range, not by 255
    assert _to_gray(Image.fromarray(np.array([[0, 65535]], np.uint16))).tolist() == [[0.0, 1.0]]
    assert _to_gray(Image.fromarray(np.array([[0, 500, 1000]], np.int32))).tolist() == [[0.0, 0.5, 1.0]]
    assert _to_gray(np.array([[0, 65535]], np.uint16)).tolist() == [[0.0, 1.0]]
    assert _to_gray(np.array([[0.0, 51.0, 255.0]])).tolist() == [[0.0, 0.2, 1.0]]  # a float image on 0..255
    assert _to_gray(np.array([[0.0, np.nan, 1.0]])).tolist() == [[0.0, 0.0, 1.0]]
    # transparent pixels are white paper, for RGBA arrays and for grey+alpha (LA) images alike
    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[0, 1, 3] = 255  # pixel 0: transparent black, pixel 1: opaque black
    np.testing.assert_allclose(_to_gray(rgba), [[1.0, 0.0]])
    np.testing.assert_allclose(_to_gray(Image.fromarray(rgba[..., [0, 3]], "LA")), [[1.0, 0.0]])


def test_ink_layer_floor_removes_a_faint_halo_around_the_digit():
    from vislab.mnist.data import _ink_layer

    # noiseless paper: the floor is 5% of the contrast, so a 3% halo around the stroke is background
    gray = np.zeros((100, 100))
    gray[20:80, 20:80] = 0.03
    gray[40:60, 45:55] = 1.0
    ink = _ink_layer(gray)
    assert ink[40:60, 45:55].min() > 0.9 and (ink > 0).sum() == 20 * 10
