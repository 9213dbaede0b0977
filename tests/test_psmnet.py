"""PSMNet model: official state-dict layout, any input size, train/eval outputs, building blocks."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vislab.core.errors import VislabError
from vislab.stereo.models import create_model, list_models
from vislab.stereo.models.feature import ClippedAvgPool2d
from vislab.stereo.models.volume import build_concat_volume, regress_chunked, soft_argmin

KEYS_JSON = Path(__file__).resolve().parents[2] / "shared" / "psmnet_state_dict_keys.json"


@pytest.mark.parametrize("name,params", [("stackhourglass", 5_224_768), ("basic", 3_672_896)])
def test_state_dict_matches_official_names_and_shapes(name, params):
    if not KEYS_JSON.is_file():
        pytest.skip(f"{KEYS_JSON} not available")
    official = json.loads(KEYS_JSON.read_text())[name]
    ours = create_model(name, max_disp=192).state_dict()
    assert list(ours) == list(official)
    assert {k: list(v.shape) for k, v in ours.items()} == official
    assert sum(p.numel() for p in create_model(name).parameters()) == params


def test_registry_and_argument_errors():
    assert list_models() == ["stackhourglass", "basic"]
    model = create_model("basic", max_disp=64, align_corners=True)
    assert (model.name, model.max_disp, model.align_corners) == ("basic", 64, True)
    with pytest.raises(VislabError, match="unknown stereo model"):
        create_model("gcnet")
    for bad in (30, 0, -4):
        with pytest.raises(VislabError, match="multiple of 4"):
            create_model("stackhourglass", max_disp=bad)
    with pytest.raises(VislabError, match="differ in size"):
        model.infer(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 40))


def test_official_init_statistics():
    model = create_model("stackhourglass")
    w = model.dres0[0][0].weight  # Conv3d 64->32, n = 27 * 32
    assert abs(w.std().item() - (2.0 / (27 * 32)) ** 0.5) < 0.05 * (2.0 / (27 * 32)) ** 0.5
    bn = model.dres0[0][1]
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


@pytest.mark.parametrize("size,max_disp", [((37, 91), 16), ((130, 257), 4), ((200, 300), 4)])
def test_any_size_gives_output_of_input_size(size, max_disp):
    """Odd sizes and sizes under 256 px (where the official 64x64 SPP window does not fit)."""
    torch.manual_seed(0)
    model = create_model("stackhourglass", max_disp=max_disp).eval()
    left, right = torch.randn(1, 3, *size), torch.randn(1, 3, *size)
    disp, conf = model.infer(left, right)
    assert disp.shape == conf.shape == (1, *size)
    assert torch.isfinite(disp).all() and disp.min() >= 0 and disp.max() <= max_disp - 1
    assert conf.min() >= 0 and conf.max() <= 1 + 1e-6
    if size == (37, 91):  # the autograd-capable eval forward agrees (float64 parity is in test_psmnet_parity)
        assert torch.allclose(disp, model(left, right), atol=1e-3)


def test_max_disp_multiple_of_4_not_16():
    torch.manual_seed(0)
    model = create_model("basic", max_disp=36).eval()
    assert model.volume_disparities == 12  # 9 planes at 1/4 scale, rounded up to 12, cropped back to 9
    left, right = torch.randn(1, 3, 48, 64), torch.randn(1, 3, 48, 64)
    disp, conf = model.infer(left, right, return_confidence=False)
    assert conf is None and disp.shape == (1, 48, 64)
    assert disp.min() >= 0 and disp.max() <= 35


@pytest.mark.parametrize("name,n_out", [("stackhourglass", 3), ("basic", 1)])
def test_train_mode_outputs_and_gradients(name, n_out):
    torch.manual_seed(0)
    model = create_model(name, max_disp=16).train()
    left, right = torch.randn(2, 3, 30, 40), torch.randn(2, 3, 30, 40)
    outs = model(left, right)
    assert isinstance(outs, tuple) and len(outs) == n_out
    assert all(o.shape == (2, 30, 40) for o in outs)
    sum(F.smooth_l1_loss(o, torch.full_like(o, 5.0)) for o in outs).backward()
    first = model.feature_extraction.firstconv[0][0].weight.grad
    last = (model.classif3 if name == "stackhourglass" else model.classify)[2].weight.grad
    assert first is not None and first.abs().sum() > 0
    assert last is not None and last.abs().sum() > 0


def test_training_batch_of_one_on_tiny_images_is_a_vislab_error():
    model = create_model("basic", max_disp=16).train()
    with pytest.raises(VislabError, match="batch size above 1"):
        model(torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64))


def test_infer_uses_eval_semantics_and_follows_weight_updates():
    torch.manual_seed(0)
    model = create_model("basic", max_disp=16)
    left, right = torch.randn(1, 3, 20, 30), torch.randn(1, 3, 20, 30)
    model.train()
    in_train_mode = model.infer(left, right)[0]
    assert model.training  # infer does not switch the mode
    with torch.no_grad():
        model.eval()
        assert torch.allclose(in_train_mode, model(left, right), atol=1e-4)
        for p in model.classify.parameters():
            p.mul_(-3.0)  # an in-place update, as an optimizer step does
        fresh = create_model("basic", max_disp=16).eval()
        fresh.load_state_dict(model.state_dict())
    assert torch.allclose(model.infer(left, right)[0], fresh.infer(left, right)[0], atol=1e-5)
    assert not torch.allclose(model.infer(left, right)[0], in_train_mode, atol=1e-2)


def test_clipped_pool_equals_avgpool_when_window_fits_and_is_global_otherwise():
    x = torch.randn(2, 4, 20, 70)
    assert torch.equal(ClippedAvgPool2d(16)(x), F.avg_pool2d(x, 16, stride=16))
    y = ClippedAvgPool2d(64)(x)
    assert y.shape == (2, 4, 1, 1)
    assert torch.allclose(y, F.avg_pool2d(x[..., :64], (20, 64)))


@pytest.mark.parametrize("channels_last", [False, True])
def test_concat_volume_matches_definition(channels_last):
    torch.manual_seed(0)
    left, right = torch.randn(2, 3, 4, 9), torch.randn(2, 3, 4, 9)
    vol = build_concat_volume(left, right, 12, channels_last=channels_last)  # more planes than columns
    assert vol.shape == (2, 6, 12, 4, 9)
    for d in range(12):
        for x in range(9):
            want = torch.cat([left[..., x], right[..., x - d]], 1) if x >= d else torch.zeros(2, 6, 4)
            assert torch.equal(vol[:, :, d, :, x], want)


def regress_full(cost: torch.Tensor, max_disp: int, size: tuple[int, int], align_corners: bool) -> torch.Tensor:
    """The paper's regression, literally: upsample the whole cost volume, softmax over D, expectation."""
    up = F.interpolate(cost.unsqueeze(1), size=(max_disp, *size), mode="trilinear", align_corners=align_corners)
    prob = F.softmax(up.squeeze(1), dim=1)
    return (prob * torch.arange(max_disp, dtype=prob.dtype).view(1, max_disp, 1, 1)).sum(dim=1)


@pytest.mark.parametrize("align_corners", [False, True])
def test_soft_argmin_forward_and_gradient_equal_the_literal_formula(align_corners):
    torch.manual_seed(0)
    cost = (torch.randn(2, 12, 9, 13, dtype=torch.float64) * 3).requires_grad_(True)
    full = regress_full(cost, 48, (36, 52), align_corners)[:, 5:, 3:40]
    grad_out = torch.randn_like(full)
    (want,) = torch.autograd.grad(full, cost, grad_out)
    # bands of 3 rows, so the backward accumulates over overlapping source rows
    fused = soft_argmin(cost, 48, (36, 52), (5, 36), (3, 40), align_corners, chunk_elements=48 * 2 * 37 * 3)
    (got,) = torch.autograd.grad(fused, cost, grad_out)
    assert torch.allclose(fused, full, atol=1e-10)
    assert torch.allclose(got, want, atol=1e-10)
    assert want.abs().max() > 1  # a real gradient, not zeros on both sides
    assert torch.autograd.gradcheck(
        lambda c: soft_argmin(c, 16, (12, 20), (0, 12), (0, 20), align_corners, chunk_elements=16 * 2 * 20 * 5),
        (cost[:1, :4, :3, :5].detach().clone().requires_grad_(True),))


@pytest.mark.parametrize("align_corners", [False, True])
def test_chunked_regression_equals_full_volume(align_corners):
    torch.manual_seed(0)
    cost = torch.randn(2, 12, 9, 13) * 3
    full = regress_full(cost, 48, (36, 52), align_corners)
    disp, conf = regress_chunked(cost, 48, (36, 52), (5, 36), (0, 40), align_corners, chunk_elements=48 * 2 * 40 * 3)
    assert torch.allclose(disp, full[:, 5:, :40], atol=1e-4)
    # confidence = probability mass within 2 px of the estimate, recomputed directly
    up = F.interpolate(cost.unsqueeze(1), (48, 36, 52), mode="trilinear", align_corners=align_corners)
    prob = F.softmax(up.squeeze(1), 1)[:, :, 5:, :40]
    near = (torch.arange(48).view(1, -1, 1, 1) - disp.unsqueeze(1)).abs() <= 2
    assert torch.allclose(conf, (prob * near).sum(1), atol=1e-5)


@pytest.mark.parametrize("onednn", [True, False])
def test_inference_copy_computes_the_same_function(monkeypatch, onednn):
    """BN folding, channels-last and the oneDNN conv(+ReLU) ops, or their functional fallback."""
    from vislab.stereo.models.fast import OneDNNConv

    monkeypatch.setattr(OneDNNConv, "onednn_ok", onednn)
    torch.manual_seed(0)
    model = create_model("stackhourglass", max_disp=16).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
        left, right = torch.randn(1, 3, 32, 64), torch.randn(1, 3, 32, 64)
        plain = model._costs(left, right, all_costs=False)[-1]
        fast = model._fast_copy()._costs(left, right, all_costs=False, channels_last=True)[-1]
    assert any(isinstance(m, OneDNNConv) for m in model._fast_copy().modules())
    assert torch.allclose(fast, plain, rtol=1e-4, atol=1e-4 * plain.abs().max().item())
