"""Metrics for comparing unfolded results with data."""

from __future__ import annotations

from .._core import InvalidArgumentError
from .._validation import as_points, as_weights
from ._sinkhorn import wasserstein

__all__ = ["wasserstein2_squared"]


def wasserstein2_squared(x, a, y, b) -> float:
    """Exact squared 2-Wasserstein distance ``W2²(Σ a_i δ_{x_i}, Σ b_j δ_{y_j})``.

    Weights (``None``: uniform) are normalised to unit mass first. In 1-D the exact quantile
    formula is used; otherwise POT's network simplex (``ot.emd2``) on the raw squared Euclidean
    cost (no normalisation of the cost), as in the paper's evaluation (§4.1.3).
    """
    x = as_points(x, "x")
    y = as_points(y, "y")
    if x.shape[1] != y.shape[1]:
        raise InvalidArgumentError(f"y: points have dimension {y.shape[1]} but x has {x.shape[1]}")
    a = as_weights(a, "a", x.shape[0], "x")
    b = as_weights(b, "b", y.shape[0], "y")
    return float(wasserstein(x, a / a.sum(), y, b / b.sum(), p=2))
