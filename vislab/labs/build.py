"""Build the lab notebooks from their one source each: ``python -m vislab.labs.build [--check]``.

Each lab is one jupytext py:percent file in ``vislab/labs/src/`` in which the answers to the exercises sit
between ``# BEGIN SOLUTION`` and ``# END SOLUTION`` lines. From it this module writes two notebooks to
``vislab/labs/notebooks/``:

* ``<lab>_solution.ipynb``: the markers removed, everything else as written;
* ``<lab>_exercise.ipynb``: each solution block replaced by a stub at the block's indentation --
  ``name = NotImplemented`` for every assignment when the block only assigns (layer definitions, as the lab
  does; the first comment on the assignment's lines is kept after the stub), otherwise
  ``raise NotImplementedError("<hint>")`` (function bodies).

The marker line carries the block's one-line hint: ``# BEGIN SOLUTION hint: pick the kernel size so 28 -> 26``.

The output is deterministic (no outputs, no execution counts, cell ids numbered in order, fixed metadata with
the ``python3`` kernel), so ``--check`` (and a test) can rebuild in memory and compare with the committed files.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import re
import sys
import textwrap
import tokenize
from dataclasses import dataclass
from pathlib import Path

LABS_DIR = Path(__file__).resolve().parent
SRC_DIR = LABS_DIR / "src"
NOTEBOOK_DIR = LABS_DIR / "notebooks"
VARIANTS = ("exercise", "solution")

_BEGIN = re.compile(r"^(?P<indent>[ \t]*)# BEGIN SOLUTION(?:[ \t]+hint:[ \t]*(?P<hint>.*?))?[ \t]*$")
_END = re.compile(r"^[ \t]*# END SOLUTION[ \t]*$")
_DEFAULT_HINT = "your implementation here"

# Fixed notebook metadata: "python3" is the kernel name Jupyter, JupyterLab and Colab all provide.
_METADATA = {
    "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}


@dataclass(frozen=True)
class Lab:
    """One lab: its short name (``vislab labs get NAME``), source stem and title."""

    name: str
    stem: str
    title: str

    @property
    def source(self) -> Path:
        return SRC_DIR / f"{self.stem}.py"

    def notebook(self, variant: str) -> Path:
        """Path of the ``variant`` ("exercise" or "solution") notebook inside the package."""
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
        return NOTEBOOK_DIR / f"{self.stem}_{variant}.ipynb"


LABS: dict[str, Lab] = {
    "lab1": Lab("lab1", "lab1_mnist", "MNIST classification: MLP, simple CNN, VGG-like CNN, ResNet"),
    "lab2": Lab("lab2", "lab2_psmnet", "Stereo matching with PSMNet: SPP feature extractor, hourglass, cost volume"),
}


# ------------------------------------------------------------------------------------------- solution blocks


def _first_comments(block: str) -> dict[int, str]:
    """``{line number: comment text}`` for every comment in ``block`` (1-based, as ``ast`` numbers lines)."""
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(block).readline):
        if tok.type == tokenize.COMMENT:
            comments.setdefault(tok.start[0], tok.string)
    return comments


def exercise_stub(block_lines: list[str], indent: str, hint: str | None) -> list[str]:
    """The exercise's replacement for one solution block (its lines without the markers).

    A block made only of assignments becomes one ``target = NotImplemented`` per assignment, after a hint
    comment; any other block (a function body) becomes ``raise NotImplementedError(hint)``.
    """
    block = textwrap.dedent("\n".join(block_lines)) + "\n"
    try:
        tree = ast.parse(block)
    except SyntaxError as exc:
        raise ValueError(f"a solution block is not valid Python on its own ({exc.msg}, block line {exc.lineno})") \
            from None
    statements = tree.body
    if statements and all(isinstance(s, (ast.Assign, ast.AnnAssign)) for s in statements):
        comments = _first_comments(block)
        out = [f"{indent}# hint: {hint}"] if hint else []
        for stmt in statements:
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            target = " = ".join(ast.get_source_segment(block, t) or "" for t in targets)
            comment = next((comments[n] for n in range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1)
                            if n in comments), "")
            out.append(f"{indent}{target} = NotImplemented" + (f"  {comment}" if comment else ""))
        return out
    return [f"{indent}raise NotImplementedError({json.dumps(hint or _DEFAULT_HINT)})"]


def strip_solutions(code: str, variant: str) -> str:
    """Cell source ``code`` for ``variant``: markers removed (solution) or blocks replaced by stubs (exercise)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    out: list[str] = []
    block: list[str] | None = None
    indent, hint = "", None
    for number, line in enumerate(code.split("\n"), 1):
        begin, end = _BEGIN.match(line), _END.match(line)
        if begin:
            if block is not None:
                raise ValueError(f"line {number}: BEGIN SOLUTION inside another solution block")
            block, indent, hint = [], begin.group("indent"), begin.group("hint") or None
        elif end:
            if block is None:
                raise ValueError(f"line {number}: END SOLUTION without a BEGIN SOLUTION")
            out.extend(block if variant == "solution" else exercise_stub(block, indent, hint))
            block = None
        elif block is not None:
            block.append(line)
        else:
            out.append(line)
    if block is not None:
        raise ValueError("a BEGIN SOLUTION block is never closed by END SOLUTION")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------ notebooks


def build_notebook(source_text: str, variant: str) -> str:
    """The ``variant`` notebook of a py:percent lab source, as the exact text written to disk."""
    import jupytext
    import nbformat

    parsed = jupytext.reads(source_text, fmt="py:percent")
    nb = nbformat.v4.new_notebook(metadata=json.loads(json.dumps(_METADATA)))
    for index, cell in enumerate(parsed.cells):
        # Ids numbered in order (not random), so that rebuilding gives byte-identical files.
        cell_id = f"cell-{index:03d}"
        if cell.cell_type == "code":
            new = nbformat.v4.new_code_cell(strip_solutions(cell.source, variant), id=cell_id)
        elif cell.cell_type == "markdown":
            new = nbformat.v4.new_markdown_cell(cell.source, id=cell_id)
        else:
            new = nbformat.v4.new_raw_cell(cell.source, id=cell_id)
        tags = cell.metadata.get("tags")
        if tags:
            new.metadata["tags"] = list(tags)
        nb.cells.append(new)
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def render_lab(lab: Lab) -> dict[Path, str]:
    """Every notebook of ``lab``: path -> text."""
    text = lab.source.read_text(encoding="utf-8")
    return {lab.notebook(variant): build_notebook(text, variant) for variant in VARIANTS}


def build_all(check: bool = False) -> list[Path]:
    """Write every lab's notebooks (or, with ``check``, only compare); returns the paths that differed."""
    changed = []
    for lab in LABS.values():
        for path, text in render_lab(lab).items():
            current = path.read_text(encoding="utf-8") if path.is_file() else None
            if current != text:
                changed.append(path)
                if not check:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(text, encoding="utf-8")
    return changed


def main(argv: list[str] | None = None) -> int:
    """``python -m vislab.labs.build [--check]``: exit 1 under --check when a notebook is out of date."""
    parser = argparse.ArgumentParser(prog="python -m vislab.labs.build", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only check that the committed notebooks are current")
    args = parser.parse_args(argv)
    changed = build_all(check=args.check)
    for path in changed:
        print(f"{'out of date' if args.check else 'wrote'}: {path.relative_to(LABS_DIR.parent.parent)}")
    if args.check and changed:
        print("run `python -m vislab.labs.build` and commit the notebooks", file=sys.stderr)
        return 1
    if not changed:
        print("all lab notebooks are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
