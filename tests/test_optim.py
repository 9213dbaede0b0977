"""vislab.core.optim: the Newton-Schulz orthogonalisation, the Muon/AdamW split and the AdamW half's exactness."""

import torch
from torch import nn

from vislab.core.optim import MuonAdamW, muon_param_groups, orthogonalize
from vislab.mnist.models import create_model


def test_orthogonalize_flattens_the_singular_values():
    torch.manual_seed(0)
    for shape in ((20, 9), (50, 180), (180, 50)):
        # a badly conditioned matrix: singular values spread over two orders of magnitude
        u, _ = torch.linalg.qr(torch.randn(shape[0], shape[0]))
        v, _ = torch.linalg.qr(torch.randn(shape[1], shape[1]))
        k = min(shape)
        s = torch.logspace(0, -2, k)
        matrix = u[:, :k] @ torch.diag(s) @ v[:, :k].T
        out = orthogonalize(matrix)
        assert out.shape == matrix.shape
        singular = torch.linalg.svdvals(out)
        # condition number 100 -> below 2 (the quintic is tuned for speed, not exactness: values ~0.68-1.2)
        assert singular.min() > 0.6 and singular.max() < 1.25, singular
        # and the singular vectors are kept: out ~ U V^T
        assert torch.allclose(out, u[:, :k] @ v[:, :k].T, atol=0.15)


def test_param_groups_put_hidden_matrices_on_muon_and_the_output_layer_on_adamw():
    model = create_model("cnn")
    muon, adamw = muon_param_groups(model, lr=1e-3, muon_lr=0.02)
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in muon["params"]) == ["conv1.weight", "conv2.weight", "conv3.weight",
                                                            "fc1.weight"]
    assert muon["muon"] and not adamw["muon"] and muon["lr"] == 0.02 and adamw["lr"] == 1e-3
    assert "fc2.weight" in {names[id(p)] for p in adamw["params"]}
    assert len(muon["params"]) + len(adamw["params"]) == len(list(model.parameters()))


def test_adamw_groups_match_torch_adamw():
    torch.manual_seed(0)
    a, b = nn.Linear(6, 3), nn.Linear(6, 3)
    b.load_state_dict(a.state_dict())
    ours = MuonAdamW([dict(params=a.parameters(), lr=1e-2, weight_decay=0.1, muon=False)])
    ref = torch.optim.AdamW(b.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(5):
        x = torch.randn(4, 6)
        for model, opt in ((a, ours), (b, ref)):
            opt.zero_grad()
            model(x).square().sum().backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(pa, pb, atol=1e-6)


def test_muon_step_moves_a_matrix_by_an_orthogonal_update():
    torch.manual_seed(0)
    weight = nn.Parameter(torch.randn(8, 4, 3, 3))
    opt = MuonAdamW([dict(params=[weight], lr=0.1, muon=True)], momentum=0.0)
    before = weight.detach().clone()
    weight.grad = torch.randn_like(weight)
    opt.step()
    step = (before - weight.detach()).reshape(8, -1) / 0.1
    assert torch.allclose(step, orthogonalize(weight.grad.reshape(8, -1)), atol=1e-6)
    # descent: the step points along the gradient
    assert (step * weight.grad.reshape(8, -1)).sum() > 0


def test_muon_uses_nesterov_momentum_and_scales_tall_matrices():
    """Two steps with momentum 0.9 on a tall (36, 8) matrix: by hand, buf2 = 0.9 g1 + g2, update along
    orthogonalize(g2 + 0.9 buf2), times sqrt(36 / 8)."""
    torch.manual_seed(0)
    weight = nn.Parameter(torch.randn(36, 8))
    opt = MuonAdamW([dict(params=[weight], lr=0.1, muon=True)], momentum=0.9)
    g1, g2 = torch.randn(36, 8), torch.randn(36, 8)
    weight.grad = g1
    opt.step()
    before = weight.detach().clone()
    weight.grad = g2
    opt.step()
    expected = orthogonalize(g2 + 0.9 * (0.9 * g1 + g2)) * (36 / 8) ** 0.5
    assert torch.allclose((before - weight.detach()) / 0.1, expected, atol=1e-5)
    assert not torch.allclose(expected, orthogonalize(g2) * (36 / 8) ** 0.5, atol=1e-2)  # momentum matters
