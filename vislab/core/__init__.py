"""Pieces shared by both labs: device choice, seeding, checkpoints, logging, distributed helpers.

Nothing in ``vislab.core`` imports from the labs.
"""
