"""Stereo matching with PSMNet (Chang & Chen, CVPR 2018)."""
