"""MNIST model registry: every model's forward/backward, the lab's shape tables, parameter counts, checkpoints."""

import os

import pytest
import torch

from vislab.core.checkpoint import save_atomic
from vislab.core.errors import VislabError
from vislab.mnist.models import ResBlock, count_parameters, create_model, list_models, load_mnist_model
from vislab.mnist.summary import format_summary, summarize


def conv(cin: int, cout: int, k: int = 3, bias: bool = True) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def linear(cin: int, cout: int) -> int:
    return cin * cout + cout


def bn(c: int) -> int:
    return 2 * c


EXPECTED_PARAMS = {
    "mlp": linear(784, 50) + linear(50, 50) + linear(50, 10),
    "cnn": conv(1, 20) + conv(20, 50) + conv(50, 20) + linear(180, 100) + linear(100, 10),
    "vgg": (conv(1, 64) + conv(64, 128) + conv(128, 256) + conv(256, 256) + conv(256, 512) + 3 * conv(512, 512)
            + linear(512, 100) + linear(100, 100) + linear(100, 10)),
    "resnet": (conv(1, 64, 7, bias=False) + bn(64)
               + 2 * (conv(64, 64, bias=False) + bn(64))
               + sum(conv(cin, cout, bias=False) + conv(cout, cout, bias=False) + 2 * bn(cout)
                     + conv(cin, cout, 1, bias=False) + bn(cout)
                     for cin, cout in ((64, 128), (128, 256), (256, 512)))
               + linear(512, 10)),
}


def test_registry_lists_the_four_models():
    assert list_models() == ["cnn", "mlp", "resnet", "vgg"]
    with pytest.raises(VislabError, match="unknown model 'lenet'"):
        create_model("lenet")


@pytest.mark.parametrize("name", list_models())
def test_model_forward_backward(name):
    torch.manual_seed(0)
    model = create_model(name).train()
    x = torch.randn(4, 1, 28, 28)
    out = model(x)
    assert out.shape == (4, 10)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.exp().sum(1), torch.ones(4))  # log-probabilities
    out[torch.arange(4), torch.tensor([0, 3, 5, 9])].sum().neg().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", list_models())
def test_parameter_counts_match_hand_computation(name):
    assert count_parameters(create_model(name)) == EXPECTED_PARAMS[name]


def shapes_of(name: str, kind: str | tuple[str, ...]) -> list[tuple[int, ...]]:
    kinds = (kind,) if isinstance(kind, str) else kind
    return [r.output_shape for r in summarize(create_model(name), batch_size=2) if r.kind in kinds]


def test_cnn_size_chain():
    assert shapes_of("cnn", ("Conv2d", "MaxPool2d")) == [
        (2, 20, 26, 26), (2, 20, 13, 13), (2, 50, 11, 11), (2, 50, 5, 5), (2, 20, 3, 3)]
    assert shapes_of("cnn", "Linear") == [(2, 100), (2, 10)]


def test_vgg_size_chain_follows_the_lab_table():
    rows = [(r.kind, r.output_shape[1:]) for r in summarize(create_model("vgg"))]
    convs_and_pools = [s for k, s in rows if k in ("Conv2d", "MaxPool2d")]
    assert [s[1] for s in convs_and_pools] == [30, 15, 17, 8, 10, 10, 5, 5, 5, 2, 2, 2, 1]
    assert [s[0] for s in convs_and_pools] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert [s for k, s in rows if k == "Linear"] == [(100,), (100,), (10,)]


def test_resnet_keeps_7x7_maps_in_every_block():
    rows = summarize(create_model("resnet"), batch_size=2)
    stem = [r.output_shape for r in rows if r.name.startswith("stem")]
    assert stem[0] == (2, 64, 14, 14) and stem[-1] == (2, 64, 7, 7)
    blocks = [r.output_shape for r in rows if r.kind == "ResBlock"]
    assert blocks == [(2, 64, 7, 7), (2, 128, 7, 7), (2, 256, 7, 7), (2, 512, 7, 7)]
    shortcuts = [r.kind for r in rows if ".shortcut" in r.name]
    assert shortcuts == ["Identity", "Conv2d", "BatchNorm2d", "Conv2d", "BatchNorm2d", "Conv2d", "BatchNorm2d"]


def test_vgg_has_no_relu_on_logits():
    """model(x) is log_softmax of last_linear's raw output, negatives included (a ReLU would clip them to 0)."""
    torch.manual_seed(0)
    model = create_model("vgg").eval()
    seen = []
    model.last_linear.register_forward_hook(lambda m, i, o: seen.append(o))
    out = model(torch.randn(2, 1, 28, 28))
    assert (seen[0] < 0).any()  # otherwise a ReLU would be invisible
    torch.testing.assert_close(out, torch.log_softmax(seen[0], dim=1))


def test_summary_table_lists_rows_and_total():
    model = create_model("cnn")
    text = format_summary("cnn", model, summarize(model))
    assert "conv3" in text and "(1, 20, 3, 3)" in text and "total parameters: 37,380" in text


def test_load_mnist_model_rejects_wrong_checkpoints(tmp_path):
    model = create_model("mlp")
    good = {"task": "mnist", "model": model.state_dict(), "model_name": "mlp", "model_kwargs": {}}
    save_atomic(good, tmp_path / "good.pt")
    loaded, _ = load_mnist_model(tmp_path / "good.pt")
    assert not loaded.training
    torch.testing.assert_close(loaded.fc1.weight, model.fc1.weight)

    save_atomic({"task": "stereo", "model": {}, "model_name": "stackhourglass"}, tmp_path / "stereo.pt")
    with pytest.raises(VislabError, match="not a vislab MNIST checkpoint.*'stereo'"):
        load_mnist_model(tmp_path / "stereo.pt")
    save_atomic({"state_dict": model.state_dict()}, tmp_path / "foreign.pt")
    with pytest.raises(VislabError, match="not a vislab MNIST checkpoint"):
        load_mnist_model(tmp_path / "foreign.pt")
    save_atomic({"task": "mnist", "model": model.state_dict()}, tmp_path / "partial.pt")
    with pytest.raises(VislabError, match="missing model_name, model_kwargs"):
        load_mnist_model(tmp_path / "partial.pt")
    save_atomic({**good, "model_name": "cnn"}, tmp_path / "mismatch.pt")
    with pytest.raises(VislabError, match="do not fit model 'cnn'"):
        load_mnist_model(tmp_path / "mismatch.pt")
    for i, junk in enumerate((b"not a checkpoint", b"hi\n", b"")):
        (tmp_path / f"garbage{i}.pt").write_bytes(junk)
        with pytest.raises(VislabError, match=f"garbage{i}.pt"):
            load_mnist_model(tmp_path / f"garbage{i}.pt")


def test_cnn_pool_before_relu_matches_the_labs_order():
    """SimpleCNN pools before its ReLUs (cheaper); values and gradients equal the lab's relu-then-pool."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = create_model("cnn")
    x = torch.randn(8, 1, 28, 28)

    def lab_forward(m, x):
        x = m.maxpool1(F.relu(m.conv1(x)))
        x = m.maxpool2(F.relu(m.conv2(x)))
        x = F.relu(m.conv3(x)).flatten(1)
        return F.log_softmax(m.fc2(F.relu(m.fc1(x))), dim=1)

    ours = model(x)
    ours[:, 3].sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    lab = lab_forward(model, x)
    lab[:, 3].sum().backward()
    assert torch.equal(ours, lab)
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters(), strict=True))


def test_atomic_checkpoints_get_the_ordinary_file_mode(tmp_path):
    old = os.umask(0o027)
    try:
        path = save_atomic({"x": torch.zeros(1)}, tmp_path / "ckpt.pt")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640  # 0666 & ~umask, not mkstemp's 0600
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


@pytest.mark.parametrize(("name", "drops"), [("mlp", ("fc1_drop", "fc2_drop")), ("vgg", ("drop1", "drop2"))])
def test_dropout_rate_and_each_dropout_runs_once(name, drops):
    """The lab's rate 0.2 (or the one asked for), and every Dropout layer is actually applied in forward."""
    for kwargs, p in (({}, 0.2), ({"dropout": 0.3}, 0.3)):
        model = create_model(name, **kwargs)
        assert [getattr(model, d).p for d in drops] == [p, p]
    calls = []
    for d in drops:
        getattr(model, d).register_forward_hook(lambda m, i, o, d=d: calls.append(d))
    model(torch.zeros(1, 1, 28, 28))
    assert calls == list(drops)


def test_vgg_relu_between_pairs_puts_a_relu_inside_each_two_conv_stage():
    """With the flag the second conv of each pair sees non-negative input; without it (the lab) it does not."""
    torch.manual_seed(0)
    x = torch.randn(1, 1, 28, 28)
    base = create_model("vgg").eval()
    for flag in (False, True):
        model = create_model("vgg", relu_between_pairs=flag).eval()
        model.load_state_dict(base.state_dict())
        mins = []
        for conv in (model.conv4, model.conv6, model.conv8):
            conv.register_forward_pre_hook(lambda m, i, mins=mins: mins.append(i[0].min().item()))
        model(x)
        assert all(m >= 0 for m in mins) if flag else all(m < 0 for m in mins)


def test_resblock_output_passes_a_final_relu():
    torch.manual_seed(0)
    for cin, cout in ((4, 4), (4, 8)):
        out = ResBlock(cin, cout).train()(torch.randn(2, cin, 7, 7))
        assert out.min() == 0  # clipped negatives, not merely non-negative by chance


def test_summarize_runs_in_eval_mode_and_restores_training():
    """Dropout/BatchNorm must not act (or update statistics) during the summary pass; the mode comes back."""
    model = create_model("mlp").train()
    modes = []
    model.fc1_drop.register_forward_hook(lambda m, i, o: modes.append(m.training))
    summarize(model)
    assert modes == [False]
    assert all(m.training for m in model.modules())
    summarize(model.eval())
    assert not any(m.training for m in model.modules())


def test_summary_input_row_shows_the_batch_size():
    model = create_model("mlp")
    text = format_summary("mlp", model, summarize(model, batch_size=3), batch_size=3)
    assert "(3, 1, 28, 28)" in text and "(1, 1, 28, 28)" not in text
