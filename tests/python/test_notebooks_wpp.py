"""Executes the WPP notebooks (super-resolution, SUOT denoising) in their fast configuration
(OTINVERSE_FAST=1)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.mark.parametrize("name", ["wpp_superresolution.ipynb", "suot_denoising.ipynb"])
def test_notebook_runs(name, monkeypatch):
    monkeypatch.setenv("OTINVERSE_FAST", "1")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    assert any(
        "PSNR" in "".join(o.get("text", "") for o in c.get("outputs", []))
        for c in nb.cells
        if c.cell_type == "code"
    )
