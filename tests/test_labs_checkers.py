"""Lab 1 checkers and the checker API: outcomes, messages, strict mode, the grader's log.

Every wrong implementation below is a mistake a student (or the lab's own answer code) makes; each test
asserts the outcome and that the message names the cause.
"""

import io
import json
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vislab.labs.checkers import (
    CHECK_LOG_ENV,
    check_hourglass,
    check_mlp,
    check_resblock,
    check_resnet,
    check_simple_cnn,
    check_spp,
    check_vgg,
    record_outcome,
)
from vislab.labs.checkers.probe import conv_out, size_hint, tconv_out
from vislab.mnist import models as ref

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------- MLP


def make_mlp(hidden=50, dropout="module", out="log_softmax", p=0.2):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(28 * 28, hidden)
            self.fc1_drop = nn.Dropout(p)
            self.fc2 = nn.Linear(hidden, hidden)
            self.fc2_drop = nn.Dropout(p)
            self.fc3 = nn.Linear(hidden, 10)

        def forward(self, x):
            x = x.view(-1, 28 * 28)
            x = F.relu(self.fc1(x))
            x = self.fc1_drop(x) if dropout == "module" else F.dropout(x, 0.2) if dropout == "functional" else x
            x = F.relu(self.fc2(x))
            x = self.fc2_drop(x) if dropout == "module" else x
            x = self.fc3(x)
            return {"log_softmax": F.log_softmax(x, dim=1), "raw": x, "dim0": F.log_softmax(x, dim=0)}[out]

    return Net


def test_mlp_accepts_the_reference_and_the_labs_net(check):
    for cls in (ref.MLP, make_mlp()):
        result, status, message, printed = check(check_mlp, cls)
        assert result and status == "passed"
        assert "public checks passed" in printed and "correct" not in printed.lower()


@pytest.mark.parametrize("cls, cause", [
    (make_mlp(hidden=100), "fc1 outputs 100 features; the lab's table has 50"),
    (make_mlp(dropout="none"), "dropout (p=0.2)"),
    (make_mlp(dropout="functional"), "training=self.training"),
    (make_mlp(out="raw"), "raw logits"),
    (make_mlp(out="dim0"), "dim=0"),
    (make_mlp(p=0.5), "a dropout layer has p=0.5"),
])
def test_mlp_mistakes(check, cls, cause):
    result, status, message, _ = check(check_mlp, cls)
    assert not result and status == "failed"
    assert cause in message


# ---------------------------------------------------------------------------------------------- SimpleCNN


def make_cnn(k1=3, pad1=0, pool1=2, c2=50, c3_in=None, fc1_in=180, relu2=True, relu_logits=False, softmax=False,
             bias=True, unused=False, flatten="view", pool="module", extra=False, conv_pool=False):
    """The lab's SimpleCNN exercise (its forward as given), with one knob per mistake."""

    class SimpleCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 20, k1, 1, pad1, bias=bias)
            self.maxpool1 = nn.Conv2d(20, 20, 2, 2) if conv_pool else nn.MaxPool2d(pool1, pool1)
            self.conv2 = nn.Conv2d(20, c2, 3, 1)
            self.maxpool2 = nn.MaxPool2d(2, 2)
            self.conv3 = nn.Conv2d(c3_in or c2, 20, 3, 1)
            self.fc1 = nn.Linear(fc1_in, 100)
            self.fc2 = nn.Linear(100, 10)
            if unused or extra:
                self.fc3 = nn.Linear(10, 10)

        def forward(self, x):
            x = F.relu(self.conv1(x))
            x = self.maxpool1(x) if pool == "module" else F.max_pool2d(x, 2)
            x = self.conv2(x)
            x = F.relu(x) if relu2 else x
            x = self.maxpool2(x)
            x = F.relu(self.conv3(x))
            x = x.view(-1, 3 * 3 * 20) if flatten == "view" else x.flatten(1)
            x = F.relu(self.fc1(x))
            x = self.fc2(x)
            if extra:
                x = self.fc3(F.relu(x))
            if relu_logits:
                x = F.relu(x)
            return F.softmax(x, dim=1) if softmax else F.log_softmax(x, dim=1)

    return SimpleCNN


def test_simple_cnn_accepts_the_reference_and_the_labs_answer(check):
    # A pooling done with F.max_pool2d leaves no hook to see: the table skips it, the shapes still count.
    for cls in (ref.SimpleCNN, make_cnn(), make_cnn(flatten="flatten"), make_cnn(pool="functional")):
        result, status, _, printed = check(check_simple_cnn, cls)
        assert result and status == "passed", printed
        assert "26 -> 13 -> 11 -> 5 -> 3" in printed


@pytest.mark.parametrize("cls, cause", [
    (make_cnn(k1=5), "conv1: 28->26 needs kernel 3 with padding 0; yours gives 24 (kernel 5)"),
    (make_cnn(pad1=1), "28->26 needs padding 0 with kernel 3; yours gives 28 (padding 1)"),
    (make_cnn(pool1=3), "26->13 needs window 2, padding 0, stride 2; yours gives 8 (window 3, stride 3)"),
    (make_cnn(c2=64), "conv2 outputs 64 channels; the lab's table has 50"),
    (make_cnn(fc1_in=320), "fc1 (Linear) expects 320 inputs but the flattened map has 180"),
    (make_cnn(fc1_in=320, flatten="flatten"), "fc1 (Linear) expects 320 inputs but the flattened map has 180"),
    (make_cnn(relu2=False), "a ReLU is missing before conv3"),
    (make_cnn(relu_logits=True), "ReLU) is applied to fc2's output before log_softmax"),
    (make_cnn(softmax=True), "softmax probabilities"),
    (make_cnn(bias=False), "conv1 has 180 parameters, the lab's layer 200"),
    (make_cnn(unused=True), "fc3.weight (and 1 more) gets no gradient: fc3 is defined in __init__ but never used"),
    (make_cnn(c3_in=64), "conv3 expects 64 input channels but receives 50"),
    (make_cnn(extra=True), "forward runs layers beyond the lab's table, starting with fc3"),
    (make_cnn(conv_pool=True), "maxpool1 is a convolution, where the lab's table has a pooling layer"),
])
def test_simple_cnn_mistakes(check, cls, cause):
    result, status, message, printed = check(check_simple_cnn, cls)
    assert not result and status == "failed"
    assert cause in message, message
    assert "Traceback" not in printed and "Hint:" in printed


def test_simple_cnn_table_stops_at_the_first_difference(check):
    _, _, _, printed = check(check_simple_cnn, make_cnn(pool1=3))
    lines = printed.splitlines()
    assert lines[0] == "check_simple_cnn(SimpleCNN): FAILED"
    assert "conv1" in lines[2] and "(2, 20, 26, 26)" in lines[2] and "differs" not in lines[2]
    assert "maxpool1" in lines[3] and "(2, 20, 13, 13)" in lines[3] and "(2, 20, 8, 8)" in lines[3]
    assert "differs" in lines[3]
    assert not any("conv2" in line for line in lines[:5])  # nothing after the first difference


class NotAttemptedCNN(nn.Module):
    """The exercise notebook as handed out: layer definitions replaced by NotImplemented."""

    def __init__(self):
        super().__init__()
        self.conv1 = NotImplemented
        self.maxpool1 = NotImplemented
        self.conv2 = NotImplemented
        self.fc1 = NotImplemented

    def forward(self, x):
        return F.log_softmax(self.fc1(self.conv2(self.maxpool1(self.conv1(x)))), dim=1)


class PartlyAttemptedCNN(make_cnn()):
    def __init__(self):
        super().__init__()
        self.fc2 = NotImplemented


class InitNotImplemented(nn.Module):
    def __init__(self):
        super().__init__()
        raise NotImplementedError("define the layers")


class ForwardNotImplemented(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 3)

    def forward(self, x):
        raise NotImplementedError("write forward")


class CallsNotImplemented(nn.Module):
    """A NotImplemented hidden where the scan cannot see it (a local), called in forward."""

    def forward(self, x):
        layer = NotImplemented
        return layer(x)


@pytest.mark.parametrize("cls, detail", [
    (NotAttemptedCNN, "still NotImplemented: conv1, maxpool1, conv2, fc1"),
    # NotImplemented over an existing layer: nn.Module refuses it with a TypeError naming NotImplementedType.
    (PartlyAttemptedCNN, "cannot assign 'NotImplementedType' as child module 'fc2'"),
    (InitNotImplemented, "NotImplementedError"),
    (ForwardNotImplemented, "NotImplementedError: write forward"),
    (CallsNotImplemented, "'NotImplementedType' object is not callable"),
])
def test_not_attempted(check, cls, detail):
    result, status, message, printed = check(check_simple_cnn, cls)
    assert not result and status == "not attempted"
    assert detail in message
    assert printed.startswith("check_simple_cnn(") and "not attempted" in printed.splitlines()[0]


class ConstructorBug(nn.Module):
    def __init__(self):
        super().__init__()
        raise ValueError("kernel must be odd")


class NoSuperInit(nn.Module):
    def __init__(self):
        self.conv1 = nn.Conv2d(1, 20, 3)


class ForwardCrash(make_cnn()):
    def forward(self, x):
        return self.conv1(x)[:, :, :, :, 0]


class NoGradForward(make_cnn()):
    def forward(self, x):
        with torch.no_grad():
            return super().forward(x)


class ReturnsNone(make_cnn()):
    def forward(self, x):
        super().forward(x)


@pytest.mark.parametrize("cls, cause", [
    (ConstructorBug, "ValueError: kernel must be odd"),
    (NoSuperInit, "call super().__init__()"),
    (make_cnn()(), "pass the class itself (SimpleCNN), not an instance"),
    (ForwardCrash, "IndexError"),
    (ReturnsNone, "forward returns NoneType"),
    (NoGradForward, "the backward pass failed: RuntimeError: element 0 of tensors does not require grad"),
    (lambda: 3, "not a torch.nn.Module"),
])
def test_student_errors_are_reported_not_raised(check, cls, cause):
    result, status, message, printed = check(check_simple_cnn, cls)
    assert not result and status == "failed"
    assert cause in message, message
    assert "Traceback" not in printed


# ---------------------------------------------------------------------------------------------- SimpleVGG


def make_vgg(pad1=2, lin1_in=512, relu_logits=False, relu_between=False):
    """The lab's SimpleVGG, with the lab's attribute names (Linear1, drop, last_linear); one knob per mistake."""

    class SimpleVGG(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 64, 3, 1, pad1)
            self.conv2 = nn.Conv2d(64, 128, 3, 1, 2)
            self.conv3 = nn.Conv2d(128, 256, 3, 1, 2)
            self.conv4 = nn.Conv2d(256, 256, 3, 1, 1)
            self.conv5 = nn.Conv2d(256, 512, 3, 1, 1)
            self.conv6 = nn.Conv2d(512, 512, 3, 1, 1)
            self.conv7 = nn.Conv2d(512, 512, 3, 1, 1)
            self.conv8 = nn.Conv2d(512, 512, 3, 1, 1)
            self.Linear1 = nn.Linear(lin1_in, 100)
            self.drop = nn.Dropout(0.2)
            self.Linear2 = nn.Linear(100, 100)
            self.last_linear = nn.Linear(100, 10)
            self.act = nn.ReLU()
            self.maxpool2d = nn.MaxPool2d(2, 2)

        def pair(self, a, b, x):
            return self.act(b(self.act(a(x)) if relu_between else a(x)))

        def forward(self, x):
            x = self.maxpool2d(self.act(self.conv1(x)))
            x = self.maxpool2d(self.act(self.conv2(x)))
            x = self.maxpool2d(self.pair(self.conv3, self.conv4, x))
            x = self.maxpool2d(self.pair(self.conv5, self.conv6, x))
            x = self.maxpool2d(self.pair(self.conv7, self.conv8, x))
            x = x.view(-1, 512)
            x = self.drop(F.relu(self.Linear1(x)))
            x = self.drop(F.relu(self.Linear2(x)))
            x = self.last_linear(x)
            return F.log_softmax(F.relu(x) if relu_logits else x, dim=1)

    return SimpleVGG


def test_vgg_accepts_the_reference_and_the_labs_layout(check):
    for cls in (ref.SimpleVGG, make_vgg(), make_vgg(relu_between=True)):
        result, status, _, printed = check(check_vgg, cls)
        assert result and status == "passed", printed


@pytest.mark.parametrize("cls, cause", [
    # The lab's own answer: ReLU on the logits before log_softmax.
    (make_vgg(relu_logits=True), "ReLU) is applied to last_linear's output before log_softmax"),
    (make_vgg(pad1=1), "conv1: 28->30 needs padding 2 with kernel 3; yours gives 28 (padding 1)"),
    (make_vgg(lin1_in=256), "Linear1 (Linear) expects 256 inputs but the flattened map has 512"),
])
def test_vgg_mistakes(check, cls, cause):
    result, status, message, _ = check(check_vgg, cls)
    assert not result and status == "failed"
    assert cause in message, message


# ---------------------------------------------------------------------------------------------- ResBlock


def make_block(shortcut="identity_or_projection", relu_mid=True, relu_out=True, padding=1, stride=1, bn=True):
    """A basic residual block ResBlock(in_channels, out_channels), one knob per mistake.

    shortcut: "identity_or_projection" (correct), "reuse_conv1" (the lab answer's bug), "identity" (no
    projection when the channels change), "no_else" (the identity branch forgotten), "always_projection".
    """

    class ResBlock(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            norm = nn.BatchNorm2d if bn else (lambda c: nn.Identity())
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, padding, bias=not bn)
            self.bn1 = norm(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, padding, bias=not bn)
            self.bn2 = norm(cout)
            if shortcut in ("identity_or_projection", "no_else"):
                if cin != cout:
                    self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
                elif shortcut == "identity_or_projection":
                    self.shortcut = nn.Identity()
            elif shortcut == "always_projection":
                self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
            else:
                self.shortcut = nn.Identity()

        def forward(self, x):
            out = self.bn1(self.conv1(x))
            out = self.bn2(self.conv2(F.relu(out) if relu_mid else out))
            short = self.bn1(self.conv1(x)) if shortcut == "reuse_conv1" else self.shortcut(x)
            out = out + short
            return F.relu(out) if relu_out else out

    return ResBlock


def test_resblock_accepts_the_reference_and_a_block_without_batchnorm(check):
    # The lab's slide shows the basic block without BatchNorm: conv weights are what is counted.
    for cls in (ref.ResBlock, make_block(), make_block(bn=False)):
        result, status, _, printed = check(check_resblock, cls)
        assert result and status == "passed", printed


@pytest.mark.parametrize("cls, cause", [
    (make_block(shortcut="reuse_conv1"), "conv1 runs twice in one forward pass: the shortcut reuses"),
    (make_block(shortcut="identity"), "when the channels change, the shortcut needs a projection of its own"),
    (make_block(shortcut="no_else"), "an `else` missing"),
    (make_block(shortcut="always_projection"), "8->8 3x3, 8->8 3x3, 8->8 1x1"),
    (make_block(relu_out=False), "returns x instead of relu(x)"),
    (make_block(relu_mid=False), "no ReLU between its two convolutions"),
    (make_block(padding=0), "7->7 needs padding 1 with kernel 3; yours gives 5 (padding 0)"),
    (make_block(stride=2), "7->7 needs stride 1; yours gives 4 (stride 2)"),
])
def test_resblock_mistakes(check, cls, cause):
    result, status, message, _ = check(check_resblock, cls)
    assert not result and status == "failed"
    assert cause in message, message


def test_resblock_zeroed_branch_catches_a_conv_shortcut_even_with_the_right_weight_count(check):
    class ConvShortcut(make_block(bn=False)):
        """Equal channels, yet the shortcut runs through conv2's weights (no extra weights to count)."""

        def forward(self, x):
            out = self.conv2(F.relu(self.conv1(x)))
            return F.relu(out + (self.conv2(x) if x.shape[1] == out.shape[1] else x))

    result, status, message, _ = check(check_resblock, ConvShortcut)
    assert status == "failed" and "conv2 runs twice" in message


# ---------------------------------------------------------------------------------------------- SimpleResNet


def make_resnet(block=None, stem_stride=2, stem_relu=True, stem_kernel=7):
    block = block or make_block()

    class SimpleResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 64, stem_kernel, stem_stride, stem_kernel // 2, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.max_pool = nn.MaxPool2d(3, 2, 1)
            self.layer1 = block(64, 64)
            self.layer2 = block(64, 128)
            self.layer3 = block(128, 256)
            self.layer4 = block(256, 512)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.linear = nn.Linear(512, 10)

        def forward(self, x):
            out = self.bn1(self.conv1(x))
            out = self.max_pool(F.relu(out) if stem_relu else out)
            out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
            out = torch.flatten(self.avgpool(out), 1)
            return F.log_softmax(self.linear(out), dim=1)

    return SimpleResNet


def test_resnet_accepts_the_reference_and_the_labs_layout(check):
    for cls in (ref.SimpleResNet, make_resnet()):
        result, status, _, printed = check(check_resnet, cls)
        assert result and status == "passed", printed


@pytest.mark.parametrize("cls, cause", [
    (make_resnet(block=make_block(shortcut="reuse_conv1")), "layer1.conv1 runs twice in one forward pass"),
    (make_resnet(stem_stride=1), "28->14 needs stride 2; yours gives 28 (stride 1)"),
    (make_resnet(stem_relu=False), "layer1 receives negative values"),
    # 28 -> 14 as well, but not the lab's 7x7 stem: the weight count per layer tells.
    (make_resnet(stem_kernel=3), "conv1 has 576 conv/linear weights, the lab's layer 3,136"),
    (make_resnet(block=make_block(relu_out=False)), "layer2 receives negative values"),
    (make_resnet(block=make_block(padding=0)), "layer1.conv1 changes the map size (7x7 -> 5x5)"),
])
def test_resnet_mistakes(check, cls, cause):
    result, status, message, _ = check(check_resnet, cls)
    assert not result and status == "failed"
    assert cause in message, message


# ---------------------------------------------------------------------------------------------- API


def test_strict_raises_assertion_error_with_the_message(capsys):
    assert check_simple_cnn(ref.SimpleCNN, strict=True) is True
    with pytest.raises(AssertionError, match="28->26 needs kernel 3 with padding 0; yours gives 24"):
        check_simple_cnn(make_cnn(k1=5), strict=True)
    with pytest.raises(AssertionError, match="not attempted"):
        check_simple_cnn(NotAttemptedCNN, strict=True)
    assert "FAILED" in capsys.readouterr().out


def test_record_outcome_appends_json_lines_only_when_the_variable_is_set(monkeypatch, tmp_path):
    log = tmp_path / "log.jsonl"
    monkeypatch.delenv(CHECK_LOG_ENV, raising=False)
    record_outcome("check_mlp", "passed", "fine")
    assert not log.exists()
    monkeypatch.setenv(CHECK_LOG_ENV, str(log))
    record_outcome("check_mlp", "passed", "fine")
    record_outcome("check_vgg", "not attempted", 'a "quoted"\nmessage')
    lines = log.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"name": "check_mlp", "status": "passed", "message": "fine"},
        {"name": "check_vgg", "status": "not attempted", "message": 'a "quoted"\nmessage'},
    ]


def test_an_unwritable_log_does_not_stop_the_checker(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(CHECK_LOG_ENV, str(tmp_path / "missing-dir" / "log.jsonl"))
    assert check_mlp(ref.MLP) is True
    assert "could not append" in capsys.readouterr().err


def test_every_checker_logs_its_own_name_and_not_attempted(monkeypatch, tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv(CHECK_LOG_ENV, str(log))

    class Todo(nn.Module):
        def __init__(self, *args):
            super().__init__()
            self.conv1 = NotImplemented

    checkers = [check_mlp, check_simple_cnn, check_vgg, check_resblock, check_resnet, check_spp, check_hourglass]
    for checker in checkers:
        assert checker(Todo) is False
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["name"] for r in records] == [c.__name__ for c in checkers]
    assert {r["status"] for r in records} == {"not attempted"}


class Exploding(nn.Module):
    def __init__(self, *args):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 1, 1)
        self.conv2 = nn.Conv2d(1, 1, 1)

    def forward(self, *args):
        raise RuntimeError("boom")


class KeyErrorInInit(nn.Module):
    def __init__(self, *args):
        super().__init__()
        raise KeyError("channels")


class OneArgumentForward(Exploding):
    def forward(self, x):
        return x


ALL_CHECKERS = [check_mlp, check_simple_cnn, check_vgg, check_resblock, check_resnet, check_spp, check_hourglass]


@pytest.mark.parametrize("checker", ALL_CHECKERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("cls, cause", [
    (Exploding, "RuntimeError: boom"),
    (KeyErrorInInit, "KeyError: 'channels'"),
    (OneArgumentForward, ""),
])
def test_no_checker_raises_on_a_broken_class(check, checker, cls, cause):
    result, status, message, printed = check(checker, cls)
    assert result is False and status == "failed"
    if checker in (check_spp, check_hourglass) and cls is not KeyErrorInInit:
        cause = "no sub-module named"  # the official names are checked before anything runs
    assert cause in message
    assert "Traceback" not in printed and printed.startswith(f"{checker.__name__}(")


def test_a_non_ascii_error_on_an_ascii_console_does_not_raise(monkeypatch):
    class Accent(nn.Module):
        def __init__(self):
            super().__init__()
            raise ValueError("noyau trop grand \u2192 5")

    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr(sys, "stdout", out)
    assert check_mlp(Accent) is False
    out.flush()
    assert b"noyau trop grand ? 5" in out.buffer.getvalue()


def test_checkers_leave_the_callers_random_stream_grad_mode_and_threads_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.no_grad():
            assert check_mlp(ref.MLP)  # the gradient check needs autograd even inside the caller's no_grad
            assert not torch.is_grad_enabled()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(torch.rand(3), expected)


def test_output_size_formula_and_hints():
    assert conv_out(28, 3, 0, 1) == 26 and conv_out(28, 3, 2, 1) == 30 and conv_out(26, 2, 0, 2) == 13
    assert conv_out(28, 7, 3, 2) == 14 and tconv_out(4, 3, 1, 2, 1) == 8
    hint = size_hint(nn.Conv2d(1, 20, 5), 28, 26, 24)
    assert hint == "28->26 needs kernel 3 with padding 0; yours gives 24 (kernel 5)."
    hint = size_hint(nn.ConvTranspose3d(4, 4, 3, 2, 1, output_padding=0), 4, 8, 7,
                     {"kernel": 3, "padding": 1, "stride": 2, "output_padding": 1})
    assert hint.startswith("4->8 needs output_padding 1; yours gives 7 (output_padding 0)")
    two = size_hint(nn.Conv2d(1, 1, 5, 2), 28, 26, 12, {"kernel": 3, "padding": 0, "stride": 1})
    assert two.startswith("28->26 needs kernel 3, padding 0, stride 1; yours gives 12 (kernel 5, stride 2)")
