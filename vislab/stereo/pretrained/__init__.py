"""The PSMNet weights shipped with vislab (see README.md in this folder for the model card)."""

from pathlib import Path

PRETRAINED_DIR = Path(__file__).resolve().parent
DEFAULT_WEIGHTS_NAME = "psmnet_default.pt"


def default_weights_path() -> Path:
    """Path of the shipped default model (it may not exist in a checkout that has not trained one yet)."""
    return PRETRAINED_DIR / DEFAULT_WEIGHTS_NAME
