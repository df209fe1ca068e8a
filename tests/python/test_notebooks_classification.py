"""Executes notebooks/ot_classification.ipynb in its fast configuration (OTINVERSE_FAST=1)."""

from pathlib import Path

import nbformat
import pytest

nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "ot_classification.ipynb"


def test_ot_classification_notebook_runs(monkeypatch):
    monkeypatch.setenv("OTINVERSE_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()
    text = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    for heading in ("IR accuracy, class-mean prototypes", "DA accuracy", "20×20 canvas"):
        assert heading in text
