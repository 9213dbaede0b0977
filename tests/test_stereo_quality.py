"""Issue 12: disparity estimators, the ADL loss, asymmetric augmentation and the "real" synthetic style."""

import numpy as np
import pytest
import torch

from vislab.core.errors import VislabError
from vislab.stereo.datasets.synthetic import SyntheticStereo, render_scene
from vislab.stereo.loss import ADLParams, adl_cross_entropy, adl_loss, adl_modes, adl_target, expected_disparity
from vislab.stereo.models import create_model
from vislab.stereo.models.volume import dominant_mode, regress_chunked, soft_argmin, upsampled_logits
from vislab.stereo.transforms import PhotometricAugment, asymmetric_augment, gaussian_blur, train_transform

# ------------------------------------------------------------------------------------------- estimators


def test_dominant_mode_by_hand():
    w = torch.zeros(1, 20, 3)
    w[0, [3, 4, 15], 0] = torch.tensor([0.3, 0.3, 0.4])  # two modes: 3.5 (mass 0.6) and 15 (mass 0.4)
    w[0, 10, 1] = 1.0  # one sharp peak
    w[0, [0, 1], 2] = torch.tensor([1.0, 3.0])  # a mode at the lower border: the window is clipped
    est, mass = dominant_mode(w, 2)
    torch.testing.assert_close(est, torch.tensor([[3.5, 10.0, 0.75]]))
    torch.testing.assert_close(mass, torch.tensor([[0.6, 1.0, 4.0]]))
    # soft-argmin would average the two modes of pixel 0 into a disparity that belongs to neither
    assert abs(float((w[0, :, 0] * torch.arange(20)).sum()) - 8.1) < 1e-5


def test_dominant_with_a_window_covering_everything_is_softargmin():
    torch.manual_seed(0)
    cost = torch.randn(2, 6, 5, 7)
    args = (cost, 24, (20, 28), (2, 19), (0, 27), False, True)
    soft, _ = regress_chunked(*args)
    dom, conf = regress_chunked(*args, estimator="dominant", window=24)
    torch.testing.assert_close(dom, soft, atol=1e-4, rtol=0)
    torch.testing.assert_close(conf, torch.ones_like(conf))


def test_dominant_confidence_is_window_mass_and_bands_agree():
    torch.manual_seed(1)
    cost = 3 * torch.randn(1, 8, 6, 9)
    full = regress_chunked(cost, 32, (24, 36), (0, 24), (0, 36), False, True, estimator="dominant", window=4)
    banded = regress_chunked(cost, 32, (24, 36), (0, 24), (0, 36), False, True, chunk_elements=32 * 36 * 3,
                             estimator="dominant", window=4)
    torch.testing.assert_close(full[0], banded[0])
    torch.testing.assert_close(full[1], banded[1])
    # confidence = softmax mass inside the chosen +-4 window, from the full volume computed independently
    p = torch.softmax(upsampled_logits(cost, 32, (24, 36), (0, 24), (0, 36), False), dim=1)[0]
    y, x = 7, 11
    k = int(torch.stack([p[max(0, c - 4):c + 5, y, x].sum() for c in range(32)]).argmax())
    window = p[max(0, k - 4):k + 5, y, x]
    assert abs(float(window.sum()) - float(full[1][0, y, x])) < 1e-4
    assert abs(float((window * torch.arange(max(0, k - 4), max(0, k - 4) + len(window))).sum() / window.sum())
               - float(full[0][0, y, x])) < 1e-3


def test_upsampled_logits_match_soft_argmin():
    torch.manual_seed(2)
    cost = torch.randn(1, 6, 5, 7)
    for align in (False, True):
        logits = upsampled_logits(cost, 24, (20, 28), (3, 20), (0, 25), align)
        ref = soft_argmin(cost, 24, (20, 28), (3, 20), (0, 25), align)
        torch.testing.assert_close(expected_disparity(logits), ref, atol=1e-4, rtol=0)


def _broad_model() -> torch.nn.Module:
    """A random basic PSMNet whose softmax over disparities is broad (a fresh one's is nearly one-hot)."""
    torch.manual_seed(0)
    model = create_model("basic", max_disp=32)
    with torch.no_grad():
        model.classify[-1].weight.mul_(1e-3)
    return model


def test_model_infer_estimators():
    model = _broad_model().eval()
    left, right = torch.randn(1, 3, 32, 48), torch.randn(1, 3, 32, 48)
    soft, soft_conf = model.infer(left, right)  # the model's default stays the paper's soft-argmin
    torch.testing.assert_close(model.infer(left, right, estimator="softargmin")[0], soft)
    dom, dom_conf = model.infer(left, right, estimator="dominant", window=4)
    assert dom.shape == soft.shape and torch.isfinite(dom).all() and not torch.equal(dom, soft)
    assert (dom_conf >= 0).all() and (dom_conf <= 1 + 1e-6).all()
    model.estimator = "dominant"  # the attribute is the default of infer (and of eval-mode forward)
    torch.testing.assert_close(model.infer(left, right)[0], dom)
    with pytest.raises(VislabError, match="estimator"):
        model.infer(left, right, estimator="median")


def test_eval_and_predict_api_take_the_estimator(tmp_path):
    from vislab.stereo.evaluate import build_predictor, resolve_estimator

    assert resolve_estimator(None, None) == ("dominant", 4)
    assert resolve_estimator("softargmin", 2) == ("softargmin", 2)
    with pytest.raises(VislabError, match="estimator"):
        resolve_estimator("mean", None)
    model = _broad_model()
    path = tmp_path / "w.pt"
    torch.save({"model": model.state_dict(), "model_config": {"name": "basic", "max_disp": 32}, "task": "stereo"},
               path)
    left, right = torch.rand(3, 32, 48), torch.rand(3, 32, 48)
    outs = {}
    for est in ("softargmin", "dominant"):
        fn, info = build_predictor(weights=path, device="cpu", estimator=est)
        assert info["estimator"] == est
        outs[est] = fn(left, right)
    assert not torch.equal(outs["softargmin"], outs["dominant"])


# ---------------------------------------------------------------------------------------------- ADL loss


def _step_edge() -> tuple[torch.Tensor, torch.Tensor]:
    """4x6 ground truth: columns 0-2 at 10 px (background), 3-5 at 30 px (foreground)."""
    disp = torch.tensor([[10.0] * 3 + [30.0] * 3] * 4).unsqueeze(0)
    return disp, torch.ones_like(disp, dtype=torch.bool)


def test_adl_step_edge_gives_two_modes_with_the_right_weights():
    disp, mask = _step_edge()
    loc, w = adl_modes(disp, mask, ADLParams(window=3, alpha=0.8))
    # pixel (1, 2): its 3x3 neighbourhood holds 6 pixels at 10 (itself included) and 3 at 30
    own = w[0, :, 1, 2].argmax()
    assert float(loc[0, own, 1, 2]) == 10.0
    assert abs(float(w[0, own, 1, 2]) - (0.8 + 0.2 * 6 / 9)) < 1e-6
    other = (w[0, :, 1, 2] > 0) & (torch.arange(9) != own)
    assert int(other.sum()) == 1
    assert float(loc[0, other, 1, 2]) == 30.0 and abs(float(w[0, other, 1, 2]) - 0.2 * 3 / 9) < 1e-6
    # the foreground pixel (1, 3) sees the mirror image
    own = w[0, :, 1, 3].argmax()
    assert float(loc[0, own, 1, 3]) == 30.0 and abs(float(w[0, own, 1, 3]) - (0.8 + 0.2 * 6 / 9)) < 1e-6
    # the target distribution has its peaks at both disparities, each mode a discrete Laplacian
    target = adl_target(disp, mask, 40)
    torch.testing.assert_close(target.sum(dim=1), torch.ones(1, 4, 6))
    t = target[0, :, 1, 2]
    assert int(t.argmax()) == 10 and t[30] > t[25] and t[30] > 10 * t[20]


def test_adl_flat_and_slanted_regions_give_one_mode():
    disp = (5 + 0.3 * torch.arange(8.0)).repeat(5, 1).unsqueeze(0)  # a slanted plane: 0.3 px per column
    mask = torch.ones_like(disp, dtype=torch.bool)
    loc, w = adl_modes(disp, mask)
    assert int((w > 0).sum(dim=1).max()) == 1
    torch.testing.assert_close(w.sum(dim=1), torch.ones(1, 5, 8))
    torch.testing.assert_close(loc.gather(1, w.argmax(dim=1, keepdim=True))[:, 0], disp)  # at the pixel's own GT


def test_adl_ignores_invalid_pixels():
    disp, mask = _step_edge()
    mask[0, :, 3] = False  # the foreground column next to the edge is unknown
    loc, w = adl_modes(disp, mask)
    assert float(w[0, :, 1, 2].max()) == 1.0  # pixel (1, 2) now only sees known background neighbours
    assert float(w[0, :, :, 3].sum()) == 0.0  # unknown pixels carry no target
    torch.manual_seed(0)
    logits = torch.randn(1, 40, 4, 6, requires_grad=True)
    adl_cross_entropy(logits, disp, mask).backward()
    assert float(logits.grad[0, :, :, 3].abs().sum()) == 0.0  # and get no gradient
    assert float(logits.grad[0, :, :, 2].abs().sum()) > 0


def test_adl_loss_is_cross_entropy_against_the_target():
    disp, mask = _step_edge()
    torch.manual_seed(0)
    logits = torch.randn(1, 40, 4, 6)
    target = adl_target(disp, mask, 40)
    ref = -(target * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
    torch.testing.assert_close(adl_cross_entropy(logits, disp, mask), ref)
    torch.testing.assert_close(adl_loss([logits, logits], disp, mask, (0.5, 1.0)), 1.5 * ref)
    # the loss is lowest when the prediction is the target itself
    assert adl_cross_entropy(torch.log(target + 1e-12), disp, mask) < adl_cross_entropy(logits, disp, mask)
    assert float(adl_cross_entropy(logits, disp, torch.zeros_like(mask))) == 0.0


def test_train_with_adl_runs(tmp_path):
    from vislab.stereo.configs import resolve_config
    from vislab.stereo.train import train

    cfg = resolve_config("tiny", {"loss": "adl", "asymmetric": True, "synthetic_style": "mixed", "iters": 2,
                                  "val_dataset": None})
    net = train(cfg, tmp_path / "run")
    assert all(torch.isfinite(p).all() for p in net.parameters())
    assert (tmp_path / "run" / "last.pt").is_file()
    with pytest.raises(VislabError, match="unknown --loss 'l2'; choose one of smoothl1, adl"):
        resolve_config("tiny", {"loss": "l2"})
    with pytest.raises(VislabError, match="unknown --synthetic-style 'indoor'; choose one of objects, real, mixed"):
        resolve_config("tiny", {"synthetic_style": "indoor"})


@pytest.mark.parametrize("style", ["objects", "real", "mixed"])
def test_every_synthetic_style_the_cli_accepts_trains(style):
    from vislab.cli import build_parser
    from vislab.stereo.configs import resolve_config

    args = build_parser().parse_args(["stereo", "train", "--config", "tiny", "--synthetic-style", style])
    cfg = resolve_config("tiny", {"synthetic_style": args.synthetic_style})
    sample = SyntheticStereo(size=1, height=32, width=64, max_disp=16, style=cfg.synthetic_style)[0]
    assert sample["valid"].any()


# ------------------------------------------------------------------------------------- augmentation, data


def test_asymmetric_augment_changes_the_views_independently():
    img = torch.rand(3, 24, 32)
    sample = {"left": img, "right": img.clone(), "disp": torch.ones(24, 32), "valid": torch.ones(24, 32).bool()}
    out = asymmetric_augment()(sample, np.random.default_rng(0))
    assert not torch.allclose(out["left"], out["right"])
    assert torch.equal(out["disp"], sample["disp"]) and torch.equal(out["valid"], sample["valid"])
    assert out["left"].min() >= 0 and out["left"].max() <= 1
    # blur_prob=0 keeps the symmetric augmentation's random stream (and output) unchanged
    a = PhotometricAugment()(sample, np.random.default_rng(3))
    b = PhotometricAugment(blur_prob=0.0, blur_sigma=(1.0, 2.0))(sample, np.random.default_rng(3))
    assert torch.equal(a["left"], b["left"]) and torch.equal(a["right"], b["right"])
    assert "PhotometricAugment" in repr(train_transform((16, 16), asymmetric=True))


def test_gaussian_blur_keeps_constants_and_smooths():
    flat = torch.full((3, 10, 12), 0.4)
    torch.testing.assert_close(gaussian_blur(flat, 1.0), flat)
    spike = torch.zeros(1, 9, 9)
    spike[0, 4, 4] = 1.0
    out = gaussian_blur(spike, 1.0)
    assert abs(float(out.sum()) - 1.0) < 1e-5 and float(out[0, 4, 4]) < 0.2 and float(out[0, 4, 5]) > 0


def test_real_style_has_small_disparities_and_fewer_unmatched_pixels():
    stats = {}
    for style in ("objects", "real"):
        scenes = [render_scene((3, 1, i), 64, 128, 64, style=style) for i in range(12)]
        stats[style] = (np.mean([np.median(s["disp"]) for s in scenes]),
                        np.mean([s["occluded"].mean() for s in scenes]))
        for s in scenes:
            assert (s["disp"] > 0).all() and (s["disp"] < 64).all()
    assert stats["real"][0] < stats["objects"][0]
    assert stats["real"][1] < stats["objects"][1]
    # the original style is unchanged by the new option and "mixed" draws both
    a, b = render_scene((0, 1, 5), 32, 64, 32), render_scene((0, 1, 5), 32, 64, 32, style="objects")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    ds = SyntheticStereo(size=2, height=32, width=64, max_disp=32, style="mixed")
    assert ds[0]["left"].shape == (3, 32, 64) and "style=mixed" in repr(ds)
    with pytest.raises(VislabError, match="style"):
        SyntheticStereo(size=2, style="city")
    with pytest.raises(VislabError, match="synthetic: unknown style 'city'; choose one of objects, real, mixed"):
        render_scene(0, 32, 64, 32, style="city")
