"""Stereo matching with PSMNet (Chang & Chen, CVPR 2018).

The typed Python API (what the CLI, the notebooks and the app call)::

    from vislab.stereo import predict_disparity, load_example
    left, right, gt, camera = load_example("motorcycle")
    result = predict_disparity(left, right)                  # shipped PSMNet; method="sgbm" for the baseline
    result.disparity, result.confidence, result.seconds, result.info
    mine = predict_pair("a.jpg", "b.jpg", rectify="auto")   # your own photos: checked, rectified (docs: own camera)
"""

from typing import Any

# Resolved lazily so that ``vislab --help`` and ``import vislab.stereo.cli`` do not import torch.
_API = {
    "predict_disparity": "vislab.stereo.predict",
    "predict_disparity_stages": "vislab.stereo.predict",
    "StereoPrediction": "vislab.stereo.predict",
    "Camera": "vislab.stereo.predict",
    "camera_from_options": "vislab.stereo.predict",
    "load_example": "vislab.stereo.predict",
    "as_rgb_image": "vislab.stereo.predict",
    "build_predictor": "vislab.stereo.evaluate",
    "evaluate": "vislab.stereo.evaluate",
    "load_model": "vislab.stereo.evaluate",
    "stereo_metrics": "vislab.stereo.metrics",
    # a pair of your own: checks, rectification (calibrated or automatic), metric depth
    "predict_pair": "vislab.stereo.camera.pipeline",
    "prepare_pair": "vislab.stereo.camera.pipeline",
    "check_pair": "vislab.stereo.camera.checks",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'vislab.stereo' has no attribute {name!r}")
