"""Dataset discovery in every official layout (tiny generated trees + the real shared pairs) and transforms."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vislab.core.errors import VislabError
from vislab.stereo.datasets import create_dataset, list_datasets
from vislab.stereo.io import write_kitti_disparity, write_pfm
from vislab.stereo.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Compose,
    PhotometricAugment,
    RandomCrop,
    imagenet_normalize,
    train_transform,
)

H, W = 12, 20


def _img(path: Path, seed: int, grey: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (H, W) if grey else (H, W, 3)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)).save(path)


def _disp(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(1, 10, (H, W)).astype(np.float32)


def make_kitti(root: Path, year: int, n: int = 2, testing: int = 1) -> Path:
    names = ("image_2", "image_3", "disp_occ_0") if year == 2015 else ("colored_0", "colored_1", "disp_occ")
    for i in range(n):
        _img(root / "training" / names[0] / f"{i:06d}_10.png", i)
        _img(root / "training" / names[0] / f"{i:06d}_11.png", 50 + i)  # flow frame: must be ignored
        _img(root / "training" / names[1] / f"{i:06d}_10.png", 100 + i)
        d = _disp(i)
        d[0, :] = 0  # no ground truth on the top row
        write_kitti_disparity(root / "training" / names[2] / f"{i:06d}_10.png", d)
        d[:, :4] = 0  # the non-occluded ground truth: a subset (here without the 4 leftmost columns)
        write_kitti_disparity(root / "training" / names[2].replace("occ", "noc") / f"{i:06d}_10.png", d)
    for i in range(testing):
        _img(root / "testing" / names[0] / f"{i:06d}_10.png", 200 + i)
        _img(root / "testing" / names[1] / f"{i:06d}_10.png", 300 + i)
    return root


def make_sceneflow(root: Path) -> Path:
    seqs = {
        "flyingthings3d": ["TRAIN/A/0000", "TRAIN/B/0001", "TEST/A/0002"],
        "driving": ["15mm_focallength/scene_backwards/fast", "35mm_focallength/scene_forwards/slow"],
        "monkaa": ["a_rain_of_stones_x2"],
    }
    for subset, rels in seqs.items():
        for j, rel in enumerate(rels):
            for pass_dir in ("frames_cleanpass", "frames_finalpass"):
                for side in ("left", "right"):
                    _img(root / subset / pass_dir / rel / side / "0006.png", j + (side == "right"))
            d = _disp(j)
            d[1, 1] = np.inf
            d[2, 2] = 0.0  # zero disparity (a point at infinity): no usable ground truth either
            write_pfm(root / subset / "disparity" / rel / "left" / "0006.pfm", -d if subset == "monkaa" else d)
    return root


def make_middlebury(root: Path, res: str = "Q") -> Path:
    for scene in ("Adirondack", "Motorcycle"):
        folder = root / f"training{res}" / scene
        _img(folder / "im0.png", 1)
        _img(folder / "im1.png", 2)
        d = _disp(3)
        d[0, 0] = np.inf
        write_pfm(folder / "disp0GT.pfm", d)
        mask = np.full((H, W), 255, np.uint8)
        mask[:, :5] = 128
        Image.fromarray(mask).save(folder / "mask0nocc.png")
        (folder / "calib.txt").write_text("cam0=[10 0 5; 0 10 6; 0 0 1]\ncam1=[10 0 6; 0 10 6; 0 0 1]\ndoffs=1\n"
                                          f"baseline=100\nwidth={W}\nheight={H}\nndisp=16\n")
    return root


def make_eth3d(root: Path) -> Path:
    for scene in ("delivery_area_1l", "electro_1l"):
        _img(root / "two_view_training" / scene / "im0.png", 1, grey=True)
        _img(root / "two_view_training" / scene / "im1.png", 2, grey=True)
        d = _disp(4)
        d[2, 3] = np.inf
        write_pfm(root / "two_view_training_gt" / scene / "disp0GT.pfm", d)
        mask = np.full((H, W), 255, np.uint8)
        mask[0] = 0
        (root / "two_view_training_gt" / scene).mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(root / "two_view_training_gt" / scene / "mask0nocc.png")
    _img(root / "two_view_test" / "lakeside_1l" / "im0.png", 5, grey=True)
    _img(root / "two_view_test" / "lakeside_1l" / "im1.png", 6, grey=True)
    return root


def _check_sample(s: dict, h: int = H, w: int = W) -> None:
    assert s["left"].shape == s["right"].shape == (3, h, w)
    assert s["left"].dtype == torch.float32 and 0 <= s["left"].min() and s["left"].max() <= 1
    assert s["disp"].shape == s["valid"].shape == (h, w)
    assert s["disp"].dtype == torch.float32 and s["valid"].dtype == torch.bool
    assert (s["disp"][~s["valid"]] == 0).all() and (s["disp"][s["valid"]] > 0).all()
    assert isinstance(s["name"], str)


# ------------------------------------------------------------------------------------------------ layouts


def test_list_datasets():
    assert set(list_datasets()) >= {"kitti2015", "kitti2012", "sceneflow", "middlebury2014", "eth3d", "synthetic"}
    with pytest.raises(VislabError, match="unknown dataset"):
        create_dataset("kitti2042", "/tmp")


@pytest.mark.parametrize("year", [2015, 2012])
def test_kitti(tmp_path, year):
    root = make_kitti(tmp_path / f"kitti{year}", year)
    ds = create_dataset(f"kitti{year}", root)
    assert [p.name for p in ds.samples] == ["000000_10", "000001_10"] and ds.has_disparity
    s = ds[1]
    _check_sample(s)
    assert not s["valid"][0].any() and s["valid"][1:].all()
    np.testing.assert_allclose(s["disp"][1:], np.round(_disp(1)[1:] * 256) / 256)
    test = create_dataset(f"kitti{year}", root, split="testing")
    assert len(test) == 1 and not test.has_disparity and not test[0]["valid"].any()
    noc = create_dataset(f"kitti{year}", root, occ=False)[1]  # disp_noc*: occluded pixels left out
    assert not noc["valid"][:, :4].any() and noc["valid"][1:, 4:].all()
    assert torch.equal(noc["disp"][:, 4:], s["disp"][:, 4:])


def test_kitti_missing_pieces(tmp_path):
    root = make_kitti(tmp_path / "k", 2015)
    (root / "training/image_3/000001_10.png").unlink()
    with pytest.raises(VislabError, match="right image missing.*000001_10"):
        create_dataset("kitti2015", root)
    with pytest.raises(VislabError, match="image_2"):
        create_dataset("kitti2015", make_kitti(tmp_path / "k12", 2012))  # a 2012 tree is not a 2015 tree
    with pytest.raises(VislabError, match="root not found"):
        create_dataset("kitti2015", tmp_path / "nowhere")
    with pytest.raises(VislabError, match="root folder is required"):
        create_dataset("kitti2015", None)
    with pytest.raises(VislabError, match="kitti2015.*unexpected keyword"):
        create_dataset("kitti2015", root, resolution="Q")
    empty = tmp_path / "empty"
    for d in ("image_2", "image_3", "disp_occ_0"):
        (empty / "training" / d).mkdir(parents=True)
    with pytest.raises(VislabError, match="no stereo pairs found.*expected"):
        create_dataset("kitti2015", empty)


def test_sceneflow_subsets_and_passes(tmp_path):
    root = make_sceneflow(tmp_path / "sf")
    train = create_dataset("sceneflow", root)
    names = [p.name for p in train.samples]
    assert len(names) == 5 and sum(n.startswith("flyingthings3d/TRAIN") for n in names) == 2
    assert "monkaa/a_rain_of_stones_x2/0006" in names
    assert "driving/15mm_focallength/scene_backwards/fast/0006" in names
    for i in range(len(train)):
        s = train[i]
        _check_sample(s)
        assert not s["valid"][1, 1] and not s["valid"][2, 2] and s["valid"].sum() == H * W - 2
    # negative Monkaa-style disparities come out positive
    monkaa = create_dataset("sceneflow", root, subsets="monkaa")
    np.testing.assert_allclose(monkaa[0]["disp"][0], _disp(0)[0])
    test = create_dataset("sceneflow", root, split="testing", pass_="final")
    assert [p.name for p in test.samples] == ["flyingthings3d/TEST/A/0002/0006"]
    assert "frames_finalpass" in str(test.samples[0].left)
    only_driving = create_dataset("sceneflow", root, subsets=["driving"], **{"pass": "final"})
    assert len(only_driving) == 2
    with pytest.raises(VislabError, match="unknown subset"):
        create_dataset("sceneflow", root, subsets="flyingchairs")
    with pytest.raises(VislabError, match="unknown pass"):
        create_dataset("sceneflow", root, pass_="dirty")


def test_sceneflow_missing_disparity(tmp_path):
    root = make_sceneflow(tmp_path / "sf")
    (root / "monkaa/disparity/a_rain_of_stones_x2/left/0006.pfm").unlink()
    with pytest.raises(VislabError, match="disparity missing"):
        create_dataset("sceneflow", root)
    with pytest.raises(VislabError, match="no stereo pairs found"):
        create_dataset("sceneflow", tmp_path / "sf" / "monkaa")  # root one level too deep


def test_middlebury_resolutions_and_nonocc(tmp_path):
    root = make_middlebury(tmp_path / "mb", "H")
    ds = create_dataset("middlebury2014", root)
    assert ds.resolution == "H" and [p.name for p in ds.samples] == ["Adirondack", "Motorcycle"]
    s = ds[0]
    _check_sample(s)
    assert not s["valid"][0, 0] and s["valid"].sum() == H * W - 1
    nonocc = create_dataset("middlebury2014", root, nonocc=True)[0]
    assert nonocc["valid"].sum() == H * (W - 5) and not nonocc["valid"][:, :5].any()
    assert ds.calibration(1).ndisp == 16
    with pytest.raises(VislabError, match="trainingQ"):
        create_dataset("middlebury2014", root, resolution="Q")
    with pytest.raises(VislabError, match="no training"):
        create_dataset("middlebury2014", tmp_path)


def test_eth3d(tmp_path):
    root = make_eth3d(tmp_path / "eth")
    ds = create_dataset("eth3d", root)
    assert [p.name for p in ds.samples] == ["delivery_area_1l", "electro_1l"]
    s = ds[0]
    _check_sample(s)
    assert torch.equal(s["left"][0], s["left"][2])  # greyscale repeated into RGB
    assert s["valid"].sum() == H * W - 1
    assert create_dataset("eth3d", root, nonocc=True)[0]["valid"].sum() == H * W - W - 1
    test = create_dataset("eth3d", root, split="testing")
    assert len(test) == 1 and not test.has_disparity
    (root / "two_view_training_gt/electro_1l/disp0GT.pfm").unlink()
    with pytest.raises(VislabError, match="missing ground truth"):
        create_dataset("eth3d", root)


def test_size_mismatch_is_reported(tmp_path):
    root = make_kitti(tmp_path / "k", 2015, n=1)
    Image.fromarray(np.zeros((H, W + 2, 3), np.uint8)).save(root / "training/image_3/000000_10.png")
    with pytest.raises(VislabError, match="size mismatch"):
        create_dataset("kitti2015", root)[0]


def test_real_samples(stereo_samples):
    kitti = create_dataset("kitti2015", stereo_samples / "kitti2015")[0]
    _check_sample(kitti, 375, 1242)
    assert 0.05 < kitti["valid"].float().mean() < 0.5
    mb_ds = create_dataset("middlebury2014", stereo_samples / "middlebury2014")
    assert mb_ds.resolution == "Q"
    mb = mb_ds[0]
    _check_sample(mb, 497, 741)
    assert mb["valid"].float().mean() > 0.9
    sf = create_dataset("sceneflow", stereo_samples / "sceneflow", split="testing")[0]
    _check_sample(sf, 540, 960)
    assert sf["name"] == "flyingthings3d/TEST/A/0032/0006" and sf["valid"].all()


# ------------------------------------------------------------------------------------------------ transforms


def _sample(h: int, w: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    disp = torch.rand(h, w, generator=g) * 10 + 1
    return {"left": torch.rand(3, h, w, generator=g), "right": torch.rand(3, h, w, generator=g),
            "disp": disp, "valid": disp > 2, "name": "x"}


def test_random_crop_keeps_views_aligned():
    s = _sample(40, 60)
    # tag each pixel with its coordinates so we can check the same window was cut everywhere
    s["left"][0] = torch.arange(40 * 60, dtype=torch.float32).view(40, 60)
    s["disp"] = s["left"][0].clone()
    out = RandomCrop(16, 24)(s, np.random.default_rng(3))
    assert out["left"].shape == (3, 16, 24) and out["disp"].shape == out["valid"].shape == (16, 24)
    assert torch.equal(out["left"][0], out["disp"])
    y, x = divmod(int(out["disp"][0, 0]), 60)
    assert torch.equal(out["right"], s["right"][:, y:y + 16, x:x + 24])
    assert torch.equal(out["valid"], s["valid"][y:y + 16, x:x + 24])


def test_random_crop_reaches_every_offset():
    """Over many seeds the window starts anywhere from the top-left corner to the bottom-right one."""
    s = _sample(40, 60)
    s["disp"] = torch.arange(40 * 60, dtype=torch.float32).view(40, 60)
    corners = [divmod(int(RandomCrop(16, 24)(s, np.random.default_rng(seed))["disp"][0, 0]), 60)
               for seed in range(300)]
    ys, xs = {y for y, _ in corners}, {x for _, x in corners}
    assert ys == set(range(40 - 16 + 1)) and xs == set(range(60 - 24 + 1))


def test_random_crop_pads_small_images():
    s = _sample(10, 30)
    out = RandomCrop(16, 24)(s, np.random.default_rng(0))
    assert out["left"].shape == (3, 16, 24)
    assert not out["valid"][10:].any() and (out["disp"][10:] == 0).all() and (out["left"][:, 10:] == 0).all()
    out = RandomCrop(16, 40)(_sample(10, 30), np.random.default_rng(0))
    assert out["left"].shape == (3, 16, 40) and not out["valid"][:, 30:].any()
    assert torch.equal(out["left"][:, :10, :30], _sample(10, 30)["left"])


def test_transform_is_reproducible_per_seed():
    t = train_transform(crop=(8, 8), photometric=True)
    a = t(_sample(20, 30), np.random.default_rng(5))
    b = t(_sample(20, 30), np.random.default_rng(5))
    c = t(_sample(20, 30), np.random.default_rng(6))
    assert torch.equal(a["left"], b["left"]) and torch.equal(a["disp"], b["disp"])
    assert not torch.equal(a["left"], c["left"])
    # a torch.Generator is accepted too
    d = t(_sample(20, 30), torch.Generator().manual_seed(1))
    e = t(_sample(20, 30), torch.Generator().manual_seed(1))
    assert torch.equal(d["right"], e["right"])


def test_dataset_transform_seeded_by_index_and_epoch(tmp_path):
    root = make_kitti(tmp_path / "k", 2015, n=2)
    ds = create_dataset("kitti2015", root, transform=train_transform(crop=(8, 8)), seed=7)
    a, b = ds[0]["left"], ds[0]["left"]
    assert torch.equal(a, b) and a.shape == (3, 8, 8)
    crops = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        crops.add(ds[0]["left"].sum().item())
    assert len(crops) > 1


def test_photometric_augment_asymmetric():
    s = _sample(6, 7)
    s["right"] = s["left"].clone()
    sym = PhotometricAugment(asymmetric_prob=0.0)(s, np.random.default_rng(0))
    assert torch.allclose(sym["left"], sym["right"]) and not torch.allclose(sym["left"], s["left"])
    asym = PhotometricAugment(asymmetric_prob=1.0)(s, np.random.default_rng(0))
    assert not torch.allclose(asym["left"], asym["right"])
    assert torch.equal(asym["disp"], s["disp"]) and 0 <= asym["left"].min() and asym["left"].max() <= 1


def test_photometric_augment_by_hand_and_in_train_transform():
    img = torch.tensor([[[0.2, 0.6]], [[0.4, 0.6]], [[0.9, 0.6]]])  # (3, 1, 2): a colour and a grey pixel
    apply = PhotometricAugment._apply
    assert torch.allclose(apply(img, (1.0, 1.0, 1.0, 2.0)), img ** 2)  # gamma
    assert torch.allclose(apply(img, (0.5, 1.0, 1.0, 1.0)), img * 0.5)  # brightness
    grey = 0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]
    assert torch.allclose(apply(img, (1.0, 1.0, 0.0, 1.0)), grey.expand(3, 1, 2))  # saturation 0: grey
    mean = grey.mean()
    assert torch.allclose(apply(img, (1.0, 0.5, 1.0, 1.0)), (img - mean) * 0.5 + mean)  # contrast about the mean
    plain = train_transform(crop=(8, 8))(_sample(20, 30), np.random.default_rng(5))
    jittered = train_transform(crop=(8, 8), photometric=True)(_sample(20, 30), np.random.default_rng(5))
    assert torch.equal(plain["disp"], jittered["disp"]) and not torch.allclose(plain["left"], jittered["left"])


def test_compose_and_imagenet_normalize():
    s = _sample(20, 30)
    out = Compose([RandomCrop(10, 10), RandomCrop(5, 5)])(s, 0)
    assert out["left"].shape == (3, 5, 5)
    img = torch.stack([torch.full((2, 2), m) for m in IMAGENET_MEAN])
    assert torch.allclose(imagenet_normalize(img), torch.zeros(3, 2, 2), atol=1e-6)
    ones = imagenet_normalize(torch.ones(2, 3, 1, 1))
    expected = torch.tensor([(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)])
    assert torch.allclose(ones[1, :, 0, 0], expected)


# ------------------------------------------------------------------------------------------------ options and errors


def test_middlebury_auto_resolution_case_test_split_and_bad_files(tmp_path):
    root = make_middlebury(make_middlebury(tmp_path / "mb", "H"), "Q")
    assert create_dataset("middlebury2014", root).resolution == "Q"  # auto: the smallest present, not F/H first
    assert create_dataset("middlebury2014", root, resolution="h").resolution == "H"  # case-insensitive
    # the testing split lives in testQ/, not trainingQ/, and has no ground truth
    for f in ("im0.png", "im1.png"):
        _img(root / "testQ" / "Australia" / f, 7)
    test = create_dataset("middlebury2014", root, split="testing")
    assert [p.name for p in test.samples] == ["Australia"] and not test.has_disparity
    # nonocc=True without mask0nocc.png fails at discovery, naming the mask
    (root / "trainingQ/Motorcycle/mask0nocc.png").unlink()
    create_dataset("middlebury2014", root, resolution="Q")  # fine while the mask is not needed
    with pytest.raises(VislabError, match="nonocc=True needs.*Motorcycle.*mask0nocc"):
        create_dataset("middlebury2014", root, resolution="Q", nonocc=True)
    # a mask of another size and a 3-channel PFM are errors, not silently broadcast/garbage disparities
    Image.fromarray(np.full((H, W + 1), 255, np.uint8)).save(root / "trainingH/Adirondack/mask0nocc.png")
    with pytest.raises(VislabError, match="mask .* is 21x12, disparity is 20x12"):
        create_dataset("middlebury2014", root, resolution="H", nonocc=True)[0]
    write_pfm(root / "trainingH/Motorcycle/disp0GT.pfm", np.ones((H, W, 3), np.float32))
    with pytest.raises(VislabError, match="single-channel"):
        create_dataset("middlebury2014", root, resolution="H")[1]


def test_eth3d_calibration_and_missing_mask(tmp_path):
    root = make_eth3d(tmp_path / "eth")
    # calib.txt sits next to the images (two_view_training), not in the ground-truth folder
    (root / "two_view_training/electro_1l/calib.txt").write_text(
        "cam0=[20 0 5; 0 20 6; 0 0 1]\ncam1=[20 0 5; 0 20 6; 0 0 1]\ndoffs=0\n"
        f"baseline=60\nwidth={W}\nheight={H}\nndisp=32\n")
    calib = create_dataset("eth3d", root).calibration(1)
    assert calib.focal == 20 and calib.ndisp == 32
    (root / "two_view_training_gt/electro_1l/mask0nocc.png").unlink()
    create_dataset("eth3d", root)  # the mask is only needed for nonocc
    with pytest.raises(VislabError, match="nonocc=True needs.*electro_1l"):
        create_dataset("eth3d", root, nonocc=True)


def test_sceneflow_option_parsing(tmp_path):
    root = make_sceneflow(tmp_path / "sf")
    # "pass" (a Python keyword, as --dataset-opt pass=final gives it) selects the final pass
    final = create_dataset("sceneflow", root, subsets=["driving"], **{"pass": "final"})
    assert all("frames_finalpass" in str(p.left) for p in final.samples)
    # a comma list with spaces and a trailing comma, as typed on the command line
    both = create_dataset("sceneflow", root, subsets="driving, monkaa,")
    assert sorted({p.name.split("/")[0] for p in both.samples}) == ["driving", "monkaa"]
    with pytest.raises(VislabError, match="testing split is FlyingThings3D TEST only"):
        create_dataset("sceneflow", root, split="testing", subsets="driving")
