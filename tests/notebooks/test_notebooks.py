"""The notebooks under notebooks/ run headlessly in their reduced-size (smoke) mode.

Each notebook reads ``SDNET_NOTEBOOK_SMOKE=1`` in its first code cell and picks tiny sizes, and
writes its training runs under ``SDNET_NOTEBOOK_WORKDIR``; here both point into a temporary
directory, which is also the kernel's working directory. The notebooks are stored without outputs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # notebooks run in kernels

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
CELL_TIMEOUT_S = 300

# notebook -> (minimum number of figures, strings its text output must contain)
EXPECTED = {
    "csc_ops_quickstart.ipynb": (5, ["lasso objective / pixel", "PSNR", "nonzero %", "FISTA"]),
    "sdnet_digits.ipynb": (
        5,
        ["test accuracy", "stem dictionary", "hidden features of the stem", "accuracy "],
    ),
    "csc_ctrl_digits.ipynb": (3, ["nearest_subspace_accuracy", "restored step 2", "test PSNR"]),
}


def test_every_notebook_is_tested():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_stored_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and "SDNET_NOTEBOOK_SMOKE" in code[0].source
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


def _text(output) -> str:
    if output.output_type == "stream":
        return output.text
    return output.get("data", {}).get("text/plain", "")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_runs_in_smoke_mode(name, tmp_path, monkeypatch):
    monkeypatch.setenv("SDNET_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("SDNET_NOTEBOOK_WORKDIR", os.fspath(tmp_path / "workdirs"))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend makes the figures
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": os.fspath(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, with the cell's traceback, on any error

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = sum("image/png" in o.get("data", {}) for o in outputs)
    text = "".join(_text(o) for o in outputs)
    min_figures, markers = EXPECTED[name]
    assert figures >= min_figures, f"{figures} figures"
    for marker in markers:
        assert marker in text, marker
