"""Reference implementations and helpers the tests share, importable from every test directory
(``pythonpath`` in pyproject.toml): ``from helpers import sq_cost``. Fixtures live in
conftest.py."""

from importlib import resources
from pathlib import Path

import numpy as np
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

#: Skips a test that reads the WPP micrographs when the package under test is an installed wheel,
#: which leaves them out (licence caveat in data/micrographs/PROVENANCE.md).
requires_micrographs = pytest.mark.skipif(
    not (resources.files("otinverse") / "data" / "micrographs" / "wpp_img_hr.png").is_file(),
    reason="the WPP micrographs are not shipped in wheels (only in a clone of the repository)",
)


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


def notebook_text(nb) -> str:
    """The text of every stream and plain-text output of a notebook's code cells."""
    return "".join(
        o.get("text", "") + o.get("data", {}).get("text/plain", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )
