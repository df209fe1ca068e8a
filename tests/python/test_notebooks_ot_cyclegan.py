"""Executes the OT-cycleGAN notebook in its fast configuration (OTINVERSE_FAST=1); needs the
``learn`` extra."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytest.importorskip("jax")
pytest.importorskip("flax")
pytest.importorskip("optax")

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def test_notebook_runs(monkeypatch):
    monkeypatch.setenv("OTINVERSE_FAST", "1")
    nb = nbformat.read(NOTEBOOKS / "ot_cyclegan.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    outputs = "".join(
        "".join(o.get("text", "") for o in c.get("outputs", []))
        for c in nb.cells
        if c.cell_type == "code"
    )
    assert "PSNR" in outputs and "OT-cycleGAN − best zero-filled" in outputs
