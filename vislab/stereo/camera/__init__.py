"""Stereo from your own camera: input checks, rectification (calibrated or automatic), calibration files,
chessboard calibration and whole sequences (folders, two videos, side-by-side video).

``predict_pair`` (in :mod:`vislab.stereo.camera.pipeline`) is the Python API for a pair of your own: it swaps,
rectifies and checks the pair before PSMNet (or SGBM) runs, and gives metric depth when a calibration says how.
"""
