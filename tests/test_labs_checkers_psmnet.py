"""Lab 2 checkers: PSMNet's SPP feature extractor and hourglass, compared number for number with vislab's.

The correct implementations are written here in the official layout (the students' exercise); each wrong
one has a single mistake, and the tests assert the outcome and that the message names the layer and cause.
"""


import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vislab.labs.checkers import check_hourglass, check_spp
from vislab.labs.checkers.lab2 import Print
from vislab.stereo.models.blocks import convbn, convbn_3d
from vislab.stereo.models.feature import FeatureExtraction
from vislab.stereo.models.hourglass import Hourglass

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------- SPP


def make_spp(pools=(64, 32, 16, 8), strides=None, relu=(True, True, True, True), kernel=1, flat=False,
             order="official", align_corners=False, todo=False, extra_bn=False, final_relu=False):
    """PSMNet's feature extractor in the official layout; the trunk is vislab's, the SPP part written here."""
    strides = strides or pools

    class feature_extraction(nn.Module):
        def __init__(self):
            super().__init__()
            trunk = FeatureExtraction()
            self.firstconv, self.layer1, self.layer2 = trunk.firstconv, trunk.layer1, trunk.layer2
            self.layer3, self.layer4 = trunk.layer3, trunk.layer4
            for i, (pool, stride) in enumerate(zip(pools, strides, strict=True)):
                if todo is not False and i < 2:  # the exercise as handed out: NotImplemented (or the lab's None)
                    setattr(self, f"branch{i + 1}", todo)
                    continue
                conv = ([nn.Conv2d(128, 32, kernel, 1, kernel // 2, bias=False), nn.BatchNorm2d(32)] if flat
                        else [convbn(128, 32, kernel, 1, kernel // 2, 1)])
                layers = [nn.AvgPool2d((pool, pool), stride=(stride, stride)), *conv]
                layers += [nn.ReLU(inplace=True)] if relu[i] else []
                layers += [nn.BatchNorm2d(32)] if extra_bn else []
                setattr(self, f"branch{i + 1}", nn.Sequential(*layers))
            self.lastconv = nn.Sequential(convbn(320, 128, 3, 1, 1, 1), nn.ReLU(inplace=True),
                                          nn.Conv2d(128, 32, kernel_size=1, padding=0, stride=1, bias=False))

        def forward(self, x):
            output_raw = self.layer2(self.layer1(self.firstconv(x)))
            output_skip = self.layer4(self.layer3(output_raw))
            size = (output_skip.size()[2], output_skip.size()[3])
            names = (1, 1, 3, 4) if order == "skip_branch2" else (1, 2, 3, 4)
            branches = [F.interpolate(getattr(self, f"branch{i}")(output_skip), size, mode="bilinear",
                                      align_corners=align_corners) for i in names]
            if order in ("official", "skip_branch2"):
                parts = [output_raw, output_skip, branches[3], branches[2], branches[1], branches[0]]
            else:
                parts = [output_raw, output_skip, *branches]
            out = self.lastconv(torch.cat(parts, 1))
            return F.relu(out) if final_relu else out

    return feature_extraction


def test_spp_accepts_vislabs_and_the_official_layout(check):
    for cls in (FeatureExtraction, make_spp()):
        result, status, message, printed = check(check_spp, cls)
        assert result and status == "passed", printed
        assert "public checks passed" in message and "(1, 32, 64, 72)" in printed


@pytest.mark.parametrize("cls, cause", [
    # branch1 is the 64x64 pool and branch4 the 8x8 one; the reference runs branch4 first.
    (make_spp(pools=(8, 16, 32, 64)), "branch4.0: 64->8 needs window 8, padding 0, stride 8; yours gives 1 "
                                      "(window 64, stride 64)"),
    (make_spp(strides=(64, 16, 16, 8)), "branch2.0: 64->2 needs stride 32; yours gives 3 (stride 16)"),
    (make_spp(relu=(True, True, False, True)), "the reference's branch3 has 1 ReLU, yours 0"),
    (make_spp(order="reversed"), "lastconv's input is the concatenation: the concatenation is [layer2 output"),
    (make_spp(align_corners=True), "align_corners=False"),
    (make_spp(order="skip_branch2"), "branch2 never runs"),
    (make_spp(final_relu=True), "every layer matches the reference, but forward returns other numbers"),
    (make_spp(flat=True), "do not load by the official names: missing branch1.1.0.weight, branch1.1.1.weight, "
                          "branch1.1.1.bias (+17); unexpected branch1.1.weight"),
    # Only extra weights (an identity-like BatchNorm would pass the numbers within tolerance).
    (make_spp(extra_bn=True), "unexpected branch1.3.weight, branch1.3.bias, branch1.3.running_mean (+13)"),
    (make_spp(kernel=3), "branch1.1.0.weight is (32, 128, 3, 3), the reference (32, 128, 1, 1)"),
])
def test_spp_mistakes(check, cls, cause):
    result, status, message, printed = check(check_spp, cls)
    assert not result and status == "failed"
    assert cause in message, message
    assert "Hint:" in printed


def test_spp_report_names_the_first_differing_layer_in_its_table(check):
    _, _, _, printed = check(check_spp, make_spp(pools=(8, 16, 32, 64)))
    differing = [line for line in printed.splitlines() if "differs" in line]
    assert len(differing) == 1 and "branch4.0" in differing[0]
    assert "(1, 128, 8, 9)" in differing[0] and "(1, 128, 1, 1)" in differing[0]


class SPPRenamed(make_spp()):
    def __init__(self):
        super().__init__()
        self.branch_1 = self.branch1
        del self.branch1


@pytest.mark.parametrize("cls, status, cause", [
    (make_spp(todo=NotImplemented), "not attempted", "still NotImplemented: branch1, branch2"),
    (make_spp(todo=None), "not attempted", "still None: branch1, branch2"),  # the lab's "fill in the part with None"
    (SPPRenamed, "failed", "no sub-module named branch1"),
])
def test_spp_not_attempted_and_names(check, cls, status, cause):
    result, got, message, _ = check(check_spp, cls)
    assert not result and got == status
    assert cause in message, message


def test_fingerprints_see_channel_and_column_order_but_not_rounding():
    t = torch.randn(1, 6, 16, 20, generator=torch.Generator().manual_seed(0))
    base = Print.of(t)
    assert not Print.of(t + 1e-7 * torch.randn_like(t)).differs(base)
    assert Print.of(t[:, [1, 0, 2, 3, 4, 5]]).differs(base)  # channels swapped (a concatenation order)
    assert Print.of(t.flip(-1)).differs(base)  # columns mirrored: the same sums per channel
    assert Print.of(t.transpose(2, 3)).differs(base)  # another shape
    corner = t.clone()
    corner[..., 0, 0] += 1.0  # one value per channel changed, as a border mistake does
    assert Print.of(corner).differs(base)


# ---------------------------------------------------------------------------------------------- hourglass


def make_hourglass(stride1=2, outpad6=1, else_pre=True, else_post=True, use_presqu=True, swap=False, planes=None,
                   eps=1e-5, returns=3, detach=False):
    """The hourglass in the official layout (the lab's answer, with its `else` branches); one knob per mistake."""

    class hourglass(nn.Module):
        def __init__(self, inplanes):
            super().__init__()
            c = planes or inplanes
            self.conv1 = nn.Sequential(convbn_3d(c, c * 2, 3, stride1, 1), nn.ReLU(inplace=True))
            self.conv2 = convbn_3d(c * 2, c * 2, 3, 1, 1)
            self.conv2[1].eps = eps
            self.conv3 = nn.Sequential(convbn_3d(c * 2, c * 2, 3, 2, 1), nn.ReLU(inplace=True))
            self.conv4 = nn.Sequential(convbn_3d(c * 2, c * 2, 3, 1, 1), nn.ReLU(inplace=True))
            self.conv5 = nn.Sequential(nn.ConvTranspose3d(c * 2, c * 2, 3, padding=1, output_padding=1, stride=2,
                                                          bias=False), nn.BatchNorm3d(c * 2))
            self.conv6 = nn.Sequential(nn.ConvTranspose3d(c * 2, c, 3, padding=1, output_padding=outpad6, stride=2,
                                                          bias=False), nn.BatchNorm3d(c))

        def forward(self, x, presqu, postsqu):
            if swap:
                presqu, postsqu = postsqu, presqu
            out = self.conv1(x)
            pre = self.conv2(out.detach() if detach else out)
            if postsqu is not None:
                pre = F.relu(pre + postsqu, inplace=True)
            elif else_pre:
                pre = F.relu(pre, inplace=True)
            out = self.conv4(self.conv3(pre))
            if presqu is not None and use_presqu:
                post = F.relu(self.conv5(out) + presqu, inplace=True)
            elif else_post or presqu is not None:
                post = F.relu(self.conv5(out) + pre, inplace=True)
            out = self.conv6(post)
            return (out, pre, post)[:returns] if returns > 1 else out

    return hourglass


class SlideExercise(make_hourglass()):
    """The forward exactly as the lab's exercise slide prints it: both `else:` lines lost."""

    def forward(self, x, presqu, postsqu):
        out = self.conv1(x)
        pre = self.conv2(out)
        if postsqu is not None:
            pre = F.relu(pre + postsqu, inplace=True)
            pre = F.relu(pre, inplace=True)
        out = self.conv3(pre)
        out = self.conv4(out)
        if presqu is not None:
            post = F.relu(self.conv5(out) + presqu, inplace=True)
            post = F.relu(self.conv5(out) + pre, inplace=True)
        out = self.conv6(post)
        return out, pre, post


def test_hourglass_accepts_vislabs_and_the_labs_answer(check):
    for cls in (Hourglass, make_hourglass()):
        result, status, _, printed = check(check_hourglass, cls)
        assert result and status == "passed", printed


@pytest.mark.parametrize("cls, cause", [
    (make_hourglass(stride1=1), "conv1.0.0: 8->4 needs stride 2; yours gives 8 (stride 1)"),
    (make_hourglass(outpad6=0), "conv6.0: 4->8 needs output_padding 1; yours gives 7 (output_padding 0)"),
    (make_hourglass(else_pre=False), "between conv2 and conv3: pre (the ReLU"),
    (make_hourglass(else_post=False), "is an `else:` branch missing?"),
    (make_hourglass(use_presqu=False), "between conv5 and conv6: post (adding presqu"),
    (make_hourglass(swap=True), "called as forward(out1, presqu=pre1, postsqu=post1)"),
    (SlideExercise, "between conv2 and conv3"),
    (make_hourglass(planes=32), "conv1.0.0.weight is (64, 32, 3, 3, 3), the reference (16, 8, 3, 3, 3)"),
    (make_hourglass(eps=1e-3), "conv2.1 gives other numbers than the reference on the same input"),
    (make_hourglass(returns=1), "returns Tensor, not (out, pre, post)"),
    # Same numbers, but autograd is cut: conv1 and conv2 would never learn.
    (make_hourglass(detach=True), "conv1.0.0.weight gets no gradient"),
])
def test_hourglass_mistakes(check, cls, cause):
    result, status, message, _ = check(check_hourglass, cls)
    assert not result and status == "failed"
    assert cause in message, message


def test_hourglass_mode_is_named_and_bn_settings_are_shown(check):
    _, _, message, _ = check(check_hourglass, make_hourglass(use_presqu=False))
    assert "as dres3/dres4" in message
    _, _, message, _ = check(check_hourglass, make_hourglass(eps=1e-3))
    assert "eps=0.001" in message and "eps=1e-05" in message


class HourglassOneArgument(make_hourglass()):
    def forward(self, x):
        return self.conv6(self.conv5(self.conv4(self.conv3(self.conv2(self.conv1(x))))))


def test_hourglass_forward_signature(check):
    result, status, message, _ = check(check_hourglass, HourglassOneArgument)
    assert not result and status == "failed"
    assert "TypeError" in message and "the checker calls forward(x, presqu, postsqu)" in message


class HourglassTodo(nn.Module):
    def __init__(self, inplanes):
        super().__init__()
        for i in range(1, 7):
            setattr(self, f"conv{i}", NotImplemented)

    def forward(self, x, presqu, postsqu):
        raise NotImplementedError


def test_hourglass_not_attempted_and_strict(check):
    result, status, message, _ = check(check_hourglass, HourglassTodo)
    assert not result and status == "not attempted" and "conv1, conv2, conv3, conv4, conv5, conv6" in message
    with pytest.raises(AssertionError, match="output_padding 1"):
        check_hourglass(make_hourglass(outpad6=0), strict=True)
