"""The README stays a short front page whose commands are real; CI runs exactly its test command.

The documentation site itself is checked by `mkdocs build --strict` (broken links, anchors, pages left out of
the navigation), which is part of that command.
"""

import re
import shlex
from pathlib import Path

import pytest

from vislab.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")

SETUP = ("python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt && "
         "pip install --no-deps -e . && ")
MAIN_JOB = SETUP + "vislab mnist train --model cnn"
TEST_COMMAND = SETUP + "ruff check . && mkdocs build --strict && pytest -q"


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M)


def tour_commands() -> list[list[str]]:
    """Every `vislab ...` command line of the README's code blocks (also after `torchrun ... -m`)."""
    commands = []
    for block in code_blocks(README):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("vislab "):
                commands.append(shlex.split(line)[1:])
            elif " -m vislab " in line:
                commands.append(shlex.split(line.split(" -m vislab ", 1)[1]))
    return commands


def test_readme_is_a_short_front_page():
    assert len(README.splitlines()) <= 250


def test_readme_keeps_the_two_setup_commands():
    blocks = [b.strip() for b in code_blocks(README)]
    assert MAIN_JOB in blocks
    assert TEST_COMMAND in blocks


def test_ci_runs_exactly_the_readme_test_command():
    lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip()]
    assert lines[-1] == TEST_COMMAND


def test_the_tour_covers_both_labs():
    assert {"mnist", "stereo"} <= {cmd[0] for cmd in tour_commands()}


@pytest.mark.parametrize("argv", tour_commands(), ids=lambda argv: " ".join(argv[:2]))
def test_tour_command_parses(argv):
    """Each command of the tour names a real subcommand and only flags that exist."""
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse reports an unknown command or flag by exiting
        pytest.fail(f"`vislab {' '.join(argv)}` does not parse (exit {exc.code})")


def slug(heading: str) -> str:
    """The anchor MkDocs (and GitHub, for these headings) gives a heading."""
    text = re.sub(r"[^\w\s-]", "", heading).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def test_readme_links_point_to_files_and_headings():
    for target, anchor in re.findall(r"\]\(([^)#\s]+)(?:#([^)]*))?\)", README):
        if "://" in target:
            continue
        assert (ROOT / target).exists(), f"README links to missing {target}"
        if anchor:
            headings = re.findall(r"^#+ (.*)$", (ROOT / target).read_text(encoding="utf-8"), flags=re.M)
            assert anchor in {slug(h) for h in headings}, f"README links to missing section {target}#{anchor}"
