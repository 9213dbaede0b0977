"""PSMNet models: ``create_model(name)``, ``list_models()``, checkpoint loading and the vislab checkpoint entry."""

from vislab.stereo.models.psmnet import PSMNet, PSMNetBasic, PSMNetStackHourglass
from vislab.stereo.models.registry import create_model, list_models
from vislab.stereo.models.weights import load_stereo_model, vislab_checkpoint_model_entry

__all__ = ["PSMNet", "PSMNetBasic", "PSMNetStackHourglass", "create_model", "list_models",
           "load_stereo_model", "vislab_checkpoint_model_entry"]
