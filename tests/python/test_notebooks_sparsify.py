"""Executes notebooks/star_clusters.ipynb in its fast configuration (OTINVERSE_FAST=1)."""

from pathlib import Path

import nbformat
import pytest

nbclient = pytest.importorskip("nbclient")
pytest.importorskip("skimage")
pytest.importorskip("photutils")

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "star_clusters.ipynb"


def test_star_clusters_notebook_runs(monkeypatch):
    monkeypatch.setenv("OTINVERSE_FAST", "1")
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
    for method in ("raw threshold", "Richardson-Lucy", "photutils", "OT sparsifier + peaks"):
        assert f"| {method}" in text
    figures = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]
    assert len(figures) == 2
