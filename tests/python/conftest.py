from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient


def sq_cost(x, y):
    """Squared Euclidean cost matrix, computed independently of otinverse."""
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


def correlate_valid(image, kernel, stride):
    """``out[r, c] = Σ_{u,v} kernel[u, v] image[stride·r + u, stride·c + v]`` (valid positions),
    by direct summation: the reference for the FFT-based ``BlurSubsampleOperator``."""
    k = kernel.shape[0]
    h, w = ((n - k) // stride + 1 for n in image.shape)
    windows = np.lib.stride_tricks.sliding_window_view(image, (k, k))[::stride, ::stride][:h, :w]
    return np.einsum("rcuv,uv->rc", windows, kernel)


def correlate_valid_adjoint(out, kernel, stride, shape):
    """Adjoint of :func:`correlate_valid` for an input of ``shape``, by direct scattering."""
    k = kernel.shape[0]
    h, w = out.shape
    image = np.zeros(shape)
    for u in range(k):
        for v in range(k):
            image[u : u + stride * h : stride, v : v + stride * w : stride] += kernel[u, v] * out
    return image


@pytest.fixture
def rng():
    return np.random.default_rng(20261123)


NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.fixture
def run_notebook(monkeypatch):
    """Executes ``notebooks/<name>`` in its fast configuration (``OTINVERSE_FAST=1``) and returns
    the executed notebook. The kernel draws with the non-interactive Agg backend, set in its
    environment: the notebooks themselves choose no backend, so that Jupyter shows their figures."""

    def run(name: str):
        monkeypatch.setenv("OTINVERSE_FAST", "1")
        monkeypatch.setenv("MPLBACKEND", "Agg")
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
        ).execute()
        return nb

    return run


def notebook_text(nb) -> str:
    """The text of every stream and plain-text output of a notebook's code cells."""
    return "".join(
        o.get("text", "") + o.get("data", {}).get("text/plain", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )
