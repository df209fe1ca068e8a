"""Ground costs that are a function of the Euclidean distance, ``C_ij = h(‖x_i − y_j‖)``.

Barton & Tai (§3.1) compare convex ``h`` (``d²``) with the distance ``d`` and concave ``h``
(``log(1 + d)``, ``atan(d)``, ``d^p`` with ``0 < p < 1``): a concave cost never moves mass two
histograms share and prefers a few long moves to many short ones, which suits images.

``cost`` is one of ``"distance"``, ``"sqdistance"``, ``"log1p"``, ``"atan"``, or a number
``p > 0`` for ``d^p``.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import _core
from .._validation import as_points, check_int

__all__ = ["GROUND_COSTS", "grid_cost", "grid_points", "ground_cost"]

#: The named ground costs; a number ``p > 0`` means ``d^p``.
GROUND_COSTS = ("distance", "sqdistance", "log1p", "atan")


def _options(cost) -> _core.GroundCostOptions:
    if isinstance(cost, numbers.Real) and not isinstance(cost, bool):
        return _core.GroundCostOptions(cost="power", exponent=float(cost))
    if not isinstance(cost, str):
        raise _core.InvalidArgumentError(
            f"cost: must be one of {list(GROUND_COSTS)} or an exponent p > 0, got {cost!r}"
        )
    return _core.GroundCostOptions(cost=cost)


def ground_cost(x, y=None, cost="atan") -> np.ndarray:
    """Cost matrix ``h(‖x_i − y_j‖)`` between point clouds ``x`` (n, d) and ``y`` (m, d).

    Computed in Rust, in parallel.

    Parameters
    ----------
    x : array-like of shape (n, d) or (n,)
        The first point cloud; 1-D input is ``n`` points on the line.
    y : array-like of shape (m, d) or (m,), default=None
        The second point cloud, in the same dimension ``d``; ``None`` uses ``x``.
    cost : {"distance", "sqdistance", "log1p", "atan"} or float, default="atan"
        The function ``h`` of the Euclidean distance ``d``: ``d``, ``d²``, ``log(1 + d)``,
        ``atan(d)``, or a number ``p > 0`` for ``d^p`` (Barton & Tai, §3.1: concave ``h`` suits
        images).

    Returns
    -------
    ndarray of shape (n, m)
        ``C[i, j] = h(‖x_i − y_j‖)`` (float64).
    """
    x = as_points(x, "x")
    y = x if y is None else as_points(y, "y")
    return _core.ground_cost_matrix(x, y, _options(cost))


def grid_points(image_shape) -> np.ndarray:
    """Pixel centres ``[row, column]`` of an image of shape ``(h, w)``, C order, pixel units.

    Parameters
    ----------
    image_shape : tuple of int
        ``(h, w)``: rows and columns of the image, each at least 1.

    Returns
    -------
    ndarray of shape (h · w, 2)
        Row ``k`` is ``[k // w, k % w]`` (float64): the pixel of the flattened image's entry ``k``.
    """
    if not (isinstance(image_shape, tuple | list) and len(image_shape) == 2):
        raise _core.InvalidArgumentError(
            f"image_shape: must be a pair (height, width), got {image_shape!r}"
        )
    h = check_int(image_shape[0], "image_shape", 1)
    w = check_int(image_shape[1], "image_shape", 1)
    rows, cols = np.meshgrid(np.arange(h, dtype=float), np.arange(w, dtype=float), indexing="ij")
    return np.column_stack([rows.ravel(), cols.ravel()])


def grid_cost(image_shape, cost="atan") -> np.ndarray:
    """Cost ``h(‖[i] − [j]‖)`` between the pixels of an image (pixel units, C order).

    Parameters
    ----------
    image_shape : tuple of int
        ``(rows, columns)`` of the image.
    cost : str or float
        The ground cost ``h`` of the distance, as in :func:`ground_cost`.

    Returns
    -------
    ndarray of shape (rows · columns, rows · columns)
        The cost between every pair of pixels, flattened in C order.
    """
    pts = grid_points(image_shape)
    return _core.ground_cost_matrix(pts, pts, _options(cost))
