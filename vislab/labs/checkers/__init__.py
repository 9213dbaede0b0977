"""Checkers for the lab exercises: give a student's class, get a short report and True/False.

Each ``check_x(cls, *, strict=False)`` builds the student's class, runs it on small CPU inputs, prints a
report (the outcome, a per-layer shape table up to the first difference, a hint pointing at the cause) and
returns ``True`` when all public checks passed. There are three outcomes: *passed*, *failed*, and *not
attempted* (the class still has ``NotImplemented`` layers or raises ``NotImplementedError``). Student
errors never raise out of a checker; with ``strict=True`` anything but *passed* raises ``AssertionError``
with the report's message (for tests). A checker whose own checks pass ends with the teacher's grader's test
(:mod:`vislab.labs.verdict`: the lab's weights loaded into the class give the lab's outputs and gradients).
Every call is also recorded through :func:`record_outcome` (a JSON line in ``$VISLAB_CHECK_LOG``, for the
user's own tools; the grader does not read it).

| checker | builds | checks |
|---|---|---|
| :func:`check_mlp` | ``cls()`` | (B,1,28,28) -> (B,10) log-probabilities, 784-50-50-10, dropout 0.2 |
| :func:`check_simple_cnn` | ``cls()`` | the lab's SimpleCNN: 26->13->11->5->3, fc 180->100->10 |
| :func:`check_vgg` | ``cls()`` | the lab's SimpleVGG table, logits not clipped by a ReLU |
| :func:`check_resblock` | ``cls(in_channels, out_channels)`` | keeps HxW; identity / projection shortcut |
| :func:`check_resnet` | ``cls()`` | the lab's SimpleResNet: 28->14->7, blocks to 512 channels, (B,10) |
| :func:`check_spp` | ``cls()`` | PSMNet's feature extractor: the reference's numbers at every layer |
| :func:`check_hourglass` | ``cls(inplanes)`` | PSMNet's hourglass: the reference's numbers, all call modes |
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from vislab.labs.checkers.lab1 import (
    check_mlp_report,
    check_resblock_report,
    check_resnet_report,
    check_simple_cnn_report,
    check_vgg_report,
)
from vislab.labs.checkers.lab2 import check_hourglass_report, check_spp_report
from vislab.labs.checkers.report import (
    CHECK_LOG_ENV,
    FAILED,
    NOT_ATTEMPTED,
    PASSED,
    Report,
    record_outcome,
)


def _same_as_the_grader(report: Report, cls: object) -> None:
    """The grader's own test, here as feedback: with the lab's weights, the same outputs and gradients."""
    from vislab.labs.verdict import judge, observe

    seed = 0  # a fixed draw: the teacher's grader draws a fresh one
    verdict = judge(report.name, observe(cls, report.name, seed), seed, report.subject)
    if verdict.status != PASSED:
        report.fail(verdict.message, "the shapes match the lab's, but the network computes something else: the "
                                     "teacher's grader loads the lab's weights into your class and compares its "
                                     "outputs and gradients with the lab's network (look for a missing or extra "
                                     "ReLU, dropout or normalisation, or a layer used in another place).")
        report.rows = []


def _run_checker(name: str, cls: object, body: Callable[[object], Report], strict: bool) -> bool:
    """Run ``body`` with the caller's RNG and grad mode untouched; a checker never raises on student code."""
    subject = getattr(cls, "__name__", type(cls).__name__)
    # One intra-op thread: the inputs are tiny, and on a busy machine (a class grading in parallel, a
    # training run beside the notebook) two OpenMP threads waiting on each other were measured ~10x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    # fork_rng: the checks seed torch, which must not change the random stream of the student's notebook.
    try:
        with torch.random.fork_rng(devices=[]), torch.enable_grad():
            try:
                report = body(cls)
                if report.status == PASSED:
                    _same_as_the_grader(report, cls)
            except Exception as exc:  # noqa: BLE001 -- whatever the student's code does, the checker reports it
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                report = Report(name, subject).fail(
                    f"checking stopped at an unexpected error: {type(exc).__name__}: {first}",
                    "run your class by hand on a small input to see the full traceback.")
    finally:
        torch.set_num_threads(threads)
    return report.finish(strict)


def check_mlp(cls: type, *, strict: bool = False) -> bool:
    """Check the lab's MLP, built as ``cls()``.

    It must map a (B, 1, 28, 28) batch to (B, 10) log-probabilities through Linear layers 784-50-50-10 with
    ReLUs, use dropout (p=0.2) in training mode only, have the reference's parameter count, and pass a
    gradient to every parameter.

    Args:
        cls: the student's class (not an instance).
        strict: raise ``AssertionError`` with the report's message unless the checks passed.

    Returns:
        True when all public checks passed.
    """
    return _run_checker("check_mlp", cls, check_mlp_report, strict)


def check_simple_cnn(cls: type, *, strict: bool = False) -> bool:
    """Check the lab's SimpleCNN, built as ``cls()``.

    Layer outputs must follow the lab: conv 26x26x20, pool 13, conv 11x11x50, pool 5, conv 3x3x20, fc
    180 -> 100 -> 10, with ReLUs where the lab has them, log-probabilities out, the reference's
    parameter count per layer, and a gradient for every parameter.

    Args:
        cls: the student's class (not an instance).
        strict: raise ``AssertionError`` with the report's message unless the checks passed.

    Returns:
        True when all public checks passed.
    """
    return _run_checker("check_simple_cnn", cls, check_simple_cnn_report, strict)


def check_vgg(cls: type, *, strict: bool = False) -> bool:
    """Check the lab's SimpleVGG, built as ``cls()``.

    Spatial sizes 28->30->15->17->8->10->10->5->5->5->2->2->2->1 with channels 64, 128, 256, 256, 512 x4,
    then Linear 512 -> 100 -> 100 -> 10; the logits go into log_softmax unclipped (the lab's own answer
    puts a ReLU there), dropout 0.2 in training only, the reference's parameter count, gradients everywhere.

    Args:
        cls: the student's class (not an instance).
        strict: raise ``AssertionError`` with the report's message unless the checks passed.

    Returns:
        True when all public checks passed.
    """
    return _run_checker("check_vgg", cls, check_vgg_report, strict)


def check_resblock(cls: type, *, strict: bool = False) -> bool:
    """Check a basic residual block, built as ``cls(in_channels, out_channels)`` (8->8 and 8->16).

    The block must keep H x W, output ``out_channels`` channels, use the identity shortcut when the
    channels match (with the residual convolutions zeroed it returns relu(x)) and a projection of its own
    when they change (never the block's ``conv1`` a second time), have a ReLU between its convolutions and
    after the sum, the lab's conv weight count, and pass a gradient to every parameter.

    Args:
        cls: the student's class (not an instance).
        strict: raise ``AssertionError`` with the report's message unless the checks passed.

    Returns:
        True when all public checks passed.
    """
    return _run_checker("check_resblock", cls, check_resblock_report, strict)


def check_resnet(cls: type, *, strict: bool = False) -> bool:
    """Check the lab's SimpleResNet, built as ``cls()``.

    Stem 28 -> 14 (7x7 conv, stride 2) -> 7 (max-pool), four residual blocks 64, 128, 256, 512 channels at
    7x7, global average pool, Linear 512 -> 10, log-probabilities out; no convolution runs twice in a
    pass (the lab answer's shortcut bug), conv/linear weights as the lab's, gradients everywhere.

    Args:
        cls: the student's class (not an instance).
        strict: raise ``AssertionError`` with the report's message unless the checks passed.

    Returns:
        True when all public checks passed.
    """
    return _run_checker("check_resnet", cls, check_resnet_report, strict)


def check_spp(cls: type, *, strict: bool = False) -> bool:
    """Check PSMNet's feature extractor with spatial pyramid pooling, built as ``cls()``.

    vislab's reference weights (the shipped model's) are loaded by the official names (``firstconv``,
    ``layer1``..``layer4``, ``branch1``..``branch4``, ``lastconv``); on a (1, 3, 256, 320) image every
    sub-module must give the reference's numbers and the output must be (1, 32, 64, 80). The first
    differing sub-module is reported.

    Args:
        cls: the student's class (not an instance).
        strict: raise ``AssertionError`` with the report's message unless the checks passed.

    Returns:
        True when all public checks passed.
    """
    return _run_checker("check_spp", cls, check_spp_report, strict)


def check_hourglass(cls: type, *, strict: bool = False) -> bool:
    """Check PSMNet's hourglass, built as ``cls(inplanes)`` with ``forward(x, presqu, postsqu) -> (out, pre, post)``.

    Seeded reference weights are loaded by the official names ``conv1``..``conv6``; called as PSMNet calls
    its hourglasses (``presqu=None, postsqu=None`` like dres2, and with both given like dres3/dres4) every
    sub-module and the returned ``out, pre, post`` must give the reference's numbers; every parameter must
    receive a gradient.

    Args:
        cls: the student's class (not an instance).
        strict: raise ``AssertionError`` with the report's message unless the checks passed.

    Returns:
        True when all public checks passed.
    """
    return _run_checker("check_hourglass", cls, check_hourglass_report, strict)


__all__ = [
    "CHECK_LOG_ENV",
    "FAILED",
    "NOT_ATTEMPTED",
    "PASSED",
    "check_hourglass",
    "check_mlp",
    "check_resblock",
    "check_resnet",
    "check_simple_cnn",
    "check_spp",
    "check_vgg",
    "record_outcome",
]
