import nbformat
import numpy as np
import pytest
from helpers import NOTEBOOKS
from nbclient import NotebookClient


def pytest_collection_modifyitems(items):
    """Runs the longest tests first (longest-processing-time-first scheduling): pytest-xdist
    hands tests to its workers in collection order, and a minute-long test that starts last keeps
    one worker busy while the others idle. ``@pytest.mark.slow(seconds)`` states a test's rough
    duration (only the order matters); unmarked tests keep their order after the marked ones.
    Every worker sorts the same collection the same way, as xdist requires."""

    def seconds(item):
        marker = item.get_closest_marker("slow")
        return marker.args[0] if marker else 0.0

    items.sort(key=seconds, reverse=True)


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
