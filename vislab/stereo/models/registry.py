"""Model registry: PSMNet variants by name."""

from vislab.core.errors import VislabError
from vislab.stereo.models.psmnet import PSMNet, PSMNetBasic, PSMNetStackHourglass

_REGISTRY: dict[str, type[PSMNet]] = {
    "stackhourglass": PSMNetStackHourglass,
    "basic": PSMNetBasic,
}


def list_models() -> list[str]:
    """Names accepted by ``create_model``."""
    return list(_REGISTRY)


def create_model(name: str, max_disp: int = 192, align_corners: bool = False) -> PSMNet:
    """Build a freshly initialised PSMNet variant ("stackhourglass" or "basic") with the official init."""
    if name not in _REGISTRY:
        raise VislabError(f"unknown stereo model {name!r}; choose one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name](max_disp=max_disp, align_corners=align_corners)
