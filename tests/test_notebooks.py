"""The walkthroughs in ``notebooks/`` execute top to bottom, show their plots inline, and are committed stripped.

Each notebook runs in a fresh ``python3`` kernel (nbclient) whose working and temporary directories are
the test's ``tmp_path``, so nothing is written into the repository. A failing cell fails the test with
that cell's source and traceback. Strip outputs before committing with ``python notebooks/strip_outputs.py``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_SEC = 900
"""Per cell: generous, because with a cold numba cache the first cells that touch the chip compile its kernels."""


def _strip_module():
    """``notebooks/strip_outputs.py`` as a module (without writing a bytecode cache into notebooks/)."""
    spec = importlib.util.spec_from_file_location("strip_outputs", NOTEBOOK_DIR / "strip_outputs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = saved
    return module


strip_outputs = _strip_module()


def _shows_a_plot(source: str) -> bool:
    return "plt.show()" in source or "display(Image(" in source


def test_both_walkthroughs_are_there() -> None:
    assert {"device_physicist.ipynb", "ml_researcher.ipynb"} <= {p.name for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebook_is_stripped(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{path.name}: code cell {index} has outputs or an execution count; run python notebooks/strip_outputs.py"
            )
    assert strip_outputs.is_stripped(path), f"{path.name} has execution metadata; run python notebooks/strip_outputs.py"
    assert nb.metadata.kernelspec.name == "python3"


def test_strip_outputs_cleans_an_executed_notebook(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(metadata={"language_info": {"name": "python", "version": "3.11.7"}})
    nb.cells = [nbformat.v4.new_markdown_cell("text"), nbformat.v4.new_code_cell("1 + 1")]
    nb.cells[1].outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=1)]
    nb.cells[1].execution_count = 1
    nb.cells[1].metadata["execution"] = {"iopub.status.busy": "2026-01-01T00:00:00Z"}
    path = tmp_path / "run.ipynb"
    nbformat.write(nb, path)
    assert not strip_outputs.is_stripped(path)
    assert strip_outputs.main(["--check", str(path)]) == 1
    assert strip_outputs.main([str(path)]) == 0
    assert strip_outputs.is_stripped(path) and strip_outputs.main(["--check", str(path)]) == 0
    back = nbformat.read(path, as_version=4)
    assert back.cells[1].outputs == [] and back.cells[1].execution_count is None and "execution" not in back.cells[1].metadata
    assert back.metadata.language_info == {"name": "python"} and back.cells[1].source == "1 + 1"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path: Path, tmp_path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    committed = path.read_text(encoding="utf-8")
    before = sorted(p.name for p in NOTEBOOK_DIR.iterdir())
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # the kernel's inline backend, not e.g. Agg
    env["TMPDIR"] = str(tmp_path)  # tempfile in the notebooks writes here
    client = NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT_SEC, resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute(env=env)
    except CellExecutionError as exc:
        pytest.fail(f"{path.name}: " + re.sub(r"\x1b\[[0-9;]*m", "", str(exc)), pytrace=False)  # without the colour codes

    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and _shows_a_plot(cell.source):
            images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
            assert images, f"{path.name}: code cell {index} shows a plot but displayed no image"
    assert sorted(p.name for p in NOTEBOOK_DIR.iterdir()) == before, f"{path.name} wrote files into notebooks/"
    assert path.read_text(encoding="utf-8") == committed
    # Stripping the executed notebook gives back the committed file: the strip script undoes a run exactly.
    assert strip_outputs._text(strip_outputs.strip(nb)) == committed
