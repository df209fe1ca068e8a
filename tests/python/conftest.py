import nbformat
import numpy as np
import pytest
from helpers import NOTEBOOKS
from nbclient import NotebookClient


@pytest.fixture
def rng():
    return np.random.default_rng(20261123)


@pytest.fixture
def run_notebook(monkeypatch):
    """Executes ``notebooks/<name>`` in its fast configuration (``OTINVERSE_FAST=1``) and returns
    the executed notebook. The kernel draws with Jupyter's inline backend, set in its
    environment, so that each figure becomes a PNG output the tests can count: the notebooks
    themselves choose no backend, so that Jupyter shows their figures."""

    def run(name: str):
        monkeypatch.setenv("OTINVERSE_FAST", "1")
        monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
        ).execute()
        return nb

    return run
