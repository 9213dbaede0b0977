"""Loading PSMNet weights: official releases, vislab checkpoints and bare state dicts.

Formats recognised (all read with ``torch.load(weights_only=True)``, so an untrusted file cannot run code):

* official releases: ``{'epoch', 'state_dict', 'train_loss'[, 'test_loss']}`` with ``module.``-prefixed
  keys (saved from ``nn.DataParallel``); the variant is detected from the keys (``classif1`` ->
  stackhourglass, ``classify`` -> basic) and ``max_disp`` defaults to 192;
* vislab checkpoints: ``{"model": state_dict, "model_config": {"name", "max_disp", "align_corners"}, ...}``
  (fp16 weights are cast to float32);
* a bare state dict (with or without ``module.``).
"""

from pathlib import Path
from typing import Any

import torch

from vislab.core.checkpoint import load_checkpoint, strip_prefix
from vislab.core.errors import VislabError
from vislab.stereo.models.psmnet import PSMNet
from vislab.stereo.models.registry import create_model, list_models


def vislab_checkpoint_model_entry(model: PSMNet) -> dict[str, Any]:
    """The model part of a vislab checkpoint: ``{"model": state_dict, "model_config": {...}}``."""
    return {
        "model": model.state_dict(),
        "model_config": {"name": model.name, "max_disp": model.max_disp, "align_corners": model.align_corners},
    }


def _detect_variant(state: dict[str, Any], path: Path) -> str:
    if any(k.startswith("classif1.") for k in state):
        return "stackhourglass"
    if any(k.startswith("classify.") for k in state):
        return "basic"
    raise VislabError(f"{path} is not a PSMNet checkpoint (no classif1/classify weights found)")


def _split_checkpoint(ckpt: dict[str, Any], path: Path) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """-> (source, state_dict, model_config) for any of the recognised formats."""
    if isinstance(ckpt.get("model"), dict) and isinstance(ckpt.get("model_config"), dict):
        config = ckpt["model_config"]
        if config.get("name") not in list_models():
            raise VislabError(f"{path} holds a {config.get('name')!r} model, not a PSMNet "
                              f"({' / '.join(list_models())}) checkpoint")
        return "vislab", ckpt["model"], config
    if isinstance(ckpt.get("state_dict"), dict):
        return "official", ckpt["state_dict"], {}
    if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return "state_dict", ckpt, {}
    raise VislabError(f"{path} is not a PSMNet checkpoint (keys: {', '.join(map(str, list(ckpt)[:6]))})")


def _check_fits(model: PSMNet, state: dict[str, Any], path: Path) -> dict[str, torch.Tensor]:
    """Cast to the model's dtypes and raise one VislabError line if names or shapes do not match."""
    expected = model.state_dict()
    # Checkpoints from PyTorch < 0.4.1 have no BN batch counters; they carry no information.
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in state and (not isinstance(state[k], torch.Tensor) or state[k].shape != v.shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if wrong:
        problems.append(f"{len(wrong)} with the wrong shape (e.g. {wrong[0]})")
    if problems:
        raise VislabError(f"{path} does not fit PSMNet {model.name}: keys {'; '.join(problems)}")
    return {k: state[k].to(expected[k].dtype) for k in expected}


def load_stereo_model(path: str | Path | None, device: torch.device | str = "cpu", max_disp: int | None = None,
                      align_corners: bool | None = None) -> tuple[PSMNet, dict[str, Any]]:
    """Load a PSMNet from ``path`` (None: the shipped default model) in eval mode on ``device``.

    ``max_disp``/``align_corners`` override what the checkpoint records (official releases record
    nothing: 192 and False). Returns ``(model, info)`` with info keys name, max_disp, align_corners,
    source ("official" | "vislab" | "state_dict") and path.
    """
    if path is None:
        from vislab.stereo.pretrained import default_weights_path

        path = default_weights_path()
        if not path.is_file():
            raise VislabError(f"no --weights given and no shipped model at {path}")
    path = Path(path)
    ckpt = load_checkpoint(path, map_location="cpu")
    source, state, config = _split_checkpoint(ckpt, path)
    state = strip_prefix(dict(state), "module.")
    name = config.get("name") or _detect_variant(state, path)
    max_disp = max_disp if max_disp is not None else int(config.get("max_disp", 192))
    align_corners = align_corners if align_corners is not None else bool(config.get("align_corners", False))
    model = create_model(name, max_disp=max_disp, align_corners=align_corners)
    model.load_state_dict(_check_fits(model, state, path))
    model.to(torch.device(device)).eval()
    info = {"name": name, "max_disp": max_disp, "align_corners": align_corners, "source": source, "path": str(path)}
    return model, info
