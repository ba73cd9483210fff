"""Strip outputs from notebooks before committing them: ``python notebooks/strip_outputs.py [--check] [FILE ...]``.

Removes every code cell's outputs and execution count, the per-cell execution metadata that Jupyter and
nbclient record (timings, collapsed/scrolled state), widget state, and the kernel's version details
(``language_info`` keeps its ``name`` only), so a notebook's file changes only when its cells change.
Without files, every ``*.ipynb`` next to this script is stripped. ``--check`` changes nothing and exits
with status 1 if any notebook is not stripped (``tests/test_notebooks.py`` checks the same).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

__all__ = ["is_stripped", "main", "strip"]

CELL_METADATA_KEYS = ("execution", "ExecuteTime", "collapsed", "scrolled")
"""Cell metadata written by running or viewing a notebook."""
NOTEBOOK_METADATA_KEYS = ("widgets", "signature")
"""Notebook metadata written by running a notebook."""


def strip(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Strip ``nb`` in place (see the module docstring) and return it."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for key in CELL_METADATA_KEYS:
            cell.metadata.pop(key, None)
    for key in NOTEBOOK_METADATA_KEYS:
        nb.metadata.pop(key, None)
    if "language_info" in nb.metadata:
        nb.metadata["language_info"] = {"name": nb.metadata["language_info"].get("name", "python")}
    return nb


def _text(nb: nbformat.NotebookNode) -> str:
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"  # the file nbformat.write (and Jupyter) writes


def is_stripped(path: str | Path) -> bool:
    """Whether the notebook file at ``path`` is exactly what :func:`strip` would write."""
    text = Path(path).read_text(encoding="utf-8")
    return text == _text(strip(nbformat.reads(text, as_version=nbformat.NO_CONVERT)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="notebooks (default: every *.ipynb next to this script)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook is not stripped")
    args = parser.parse_args(argv)
    files = args.files or sorted(Path(__file__).resolve().parent.glob("*.ipynb"))
    dirty = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        stripped = _text(strip(nbformat.reads(text, as_version=nbformat.NO_CONVERT)))
        if stripped == text:
            continue
        dirty.append(path)
        if not args.check:
            path.write_text(stripped, encoding="utf-8")
    verb = "not stripped" if args.check else "stripped"
    for path in dirty:
        print(f"{verb}: {path}")
    return 1 if args.check and dirty else 0


if __name__ == "__main__":
    sys.exit(main())
