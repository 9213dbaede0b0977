"""``vislab mnist ...`` subcommands (argument parsing only)."""

import argparse


def add_parser(labs: argparse._SubParsersAction) -> None:
    labs.add_parser("mnist", help="MNIST digit classification")
