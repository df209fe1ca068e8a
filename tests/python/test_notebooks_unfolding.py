"""Executes the unfolding notebooks in their fast configuration (OTINVERSE_FAST=1)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.mark.parametrize(
    "name", ["unfolding_1d.ipynb", "jet_mass_2d.ipynb", "unfolding_analysis.ipynb"]
)
def test_notebook_runs(name, monkeypatch):
    monkeypatch.setenv("OTINVERSE_FAST", "1")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()
    text = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "OT" in text
