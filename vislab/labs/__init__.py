"""The lab course as notebooks: checkers for the exercises, the notebooks' build step and the grader.

``from vislab.labs import check_simple_cnn`` and friends are what the notebooks call; see
``vislab.labs.checkers`` for what each checker does, ``vislab.labs.build`` for how the notebooks are made and
``vislab.labs.grade`` for ``vislab labs check``.
"""

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

__all__ = [
    "CHECK_LOG_ENV",
    "check_hourglass",
    "check_mlp",
    "check_resblock",
    "check_resnet",
    "check_simple_cnn",
    "check_spp",
    "check_vgg",
    "record_outcome",
]
