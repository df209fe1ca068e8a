"""Exact optimal transport between weighted point clouds.

Both functions take the points first and the weights by keyword. :func:`wasserstein` is the
transport cost for the weights as given (equal masses; it scales with the mass, like POT's
``ot.emd2``); :func:`wasserstein2_squared` is W₂² of the probability measures, that is
``wasserstein(x, y, a=a / a.sum(), b=b / b.sum(), p=2)``.
"""

from __future__ import annotations

import numpy as np

from .. import _core
from .._core import InvalidArgumentError
from .._deprecated import points_first
from .._validation import as_points, as_weights, weights_or_uniform

__all__ = ["wasserstein", "wasserstein2_squared"]


def _equal_mass(a, b) -> float:
    """The common mass of two valid weight vectors: exact OT moves all of each."""
    mass_a, mass_b = a.sum(), b.sum()
    if abs(mass_a - mass_b) > 1e-8 * max(mass_a, mass_b):
        raise InvalidArgumentError(
            f"b: exact OT needs equal masses, got {mass_a} for a and {mass_b} for b"
        )
    return float(mass_a)


@points_first(("x", "a", "y", "b", "p"), 2)
def wasserstein(x, y, *, a=None, b=None, p=2) -> float:
    """Exact optimal transport cost ``min_P <|x - y|^p, P>`` (that is, ``W_p^p``).

    In one dimension the closed form (merged quantile functions) runs in Rust in
    O((n+m) log(n+m)); otherwise POT's network simplex (``ot.emd2``) solves it. ``a`` and ``b``
    (``None``: uniform, by keyword) must have the same total mass; the cost scales with that
    mass (:func:`wasserstein2_squared` normalises the weights first).

    Parameters
    ----------
    x, y : array-like of shape (n, d) and (m, d), or (n,) and (m,)
        The two point clouds.
    a, b : array-like of shape (n,), (m,) or None
        Non-negative weights of equal total mass (``None``: uniform, mass 1).
    p : float
        Exponent of the ground cost ``|x - y|^p``, ``p >= 1``.

    Returns
    -------
    float
        The optimal transport cost, in the cost's units times the mass.
    """
    x = as_points(x, "x")
    y = as_points(y, "y")
    if x.shape[1] == 1 and y.shape[1] == 1:
        # The core checks the weights (lengths, signs, mass) and p.
        a = weights_or_uniform(a, "a", x.shape[0])
        b = weights_or_uniform(b, "b", y.shape[0])
        cost = _core.wasserstein_1d_cost(
            np.ascontiguousarray(x[:, 0]), a, np.ascontiguousarray(y[:, 0]), b, p
        )
        return _equal_mass(a, b) * cost
    # POT's network simplex does not check its weights: their rules are checked here.
    a = as_weights(a, "a", x.shape[0], "x")
    b = as_weights(b, "b", y.shape[0], "y")
    mass = _equal_mass(a, b)
    # POT is imported here, not at module level: it imports every installed tensor backend (JAX,
    # PyTorch) at import time, which would make ``import otinverse`` load the learning extra's.
    import ot as pot

    cost = _core.point_cost_matrix(x, y, p)
    return mass * float(
        pot.emd2(a / a.sum(), b / b.sum(), cost, numItermax=max(100_000, 50 * cost.size))
    )


@points_first(("x", "a", "y", "b"), 2)
def wasserstein2_squared(x, y, *, a=None, b=None) -> float:
    """Exact squared 2-Wasserstein distance ``W2²(Σ a_i δ_{x_i}, Σ b_j δ_{y_j})``.

    Weights (``None``: uniform) are normalised to unit mass first, so this is
    ``wasserstein(x, y, a=a / a.sum(), b=b / b.sum(), p=2)``. In 1-D the exact quantile formula
    is used; otherwise POT's network simplex (``ot.emd2``) on the raw squared Euclidean cost (no
    normalisation of the cost), as in the evaluation of Craig, Faktor & Nachman (§4.1.3).

    Parameters
    ----------
    x, y : array-like of shape (n, d) and (m, d), or (n,) and (m,)
        The two point clouds, of the same dimension.
    a, b : array-like of shape (n,), (m,) or None
        Non-negative weights with positive mass (``None``: uniform).

    Returns
    -------
    float
        ``W2²`` of the two normalised measures.
    """
    x = as_points(x, "x")
    y = as_points(y, "y")
    if x.shape[1] != y.shape[1]:
        raise InvalidArgumentError(f"y: points have dimension {y.shape[1]} but x has {x.shape[1]}")
    a = as_weights(a, "a", x.shape[0], "x")
    b = as_weights(b, "b", y.shape[0], "y")
    return float(wasserstein(x, y, a=a / a.sum(), b=b / b.sum(), p=2))
