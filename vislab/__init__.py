"""vislab: MNIST digit classification and PSMNet stereo matching, in PyTorch."""

__version__ = "0.1.0"
