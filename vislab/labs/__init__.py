"""The lab course as notebooks: checkers for the exercises, the notebooks' build step and the grader.

``from vislab.labs import check_simple_cnn`` and friends are what the notebooks call; see
``vislab.labs.checkers`` for what each checker does, ``vislab.labs.build`` for how the notebooks are made and
``vislab.labs.grade`` for ``vislab labs check``.
"""

from typing import Any

# The checkers (and torch with them) load on first use, so that ``vislab --help`` and ``vislab labs list``
# stay fast; ``from vislab.labs import check_mlp`` works as usual.
_CHECKERS = (
    "CHECK_LOG_ENV",
    "check_hourglass",
    "check_mlp",
    "check_resblock",
    "check_resnet",
    "check_simple_cnn",
    "check_spp",
    "check_vgg",
    "record_outcome",
)

__all__ = list(_CHECKERS)


def __getattr__(name: str) -> Any:
    if name in _CHECKERS:
        from vislab.labs import checkers

        return getattr(checkers, name)
    raise AttributeError(f"module 'vislab.labs' has no attribute {name!r}")
