"""Batched entropic OT between histograms on a shared support (Barton & Tai's image retrieval).

Every (source, target) pair is solved independently in Rust, in parallel; zero-weight bins are
dropped exactly. (POT's ``method="sinkhorn"`` divides the kernel by the source weights, so one
empty pixel makes NaN at its first iteration; it stops with a warning and returns the same
value for every target. Restricting the source to its support, as done here, avoids that.)
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from .. import _core
from .._validation import as_float_array

__all__ = ["BatchSinkhornResult", "sinkhorn_batch"]

BatchSinkhornResult = _core.BatchSinkhornResult


def sinkhorn_batch(
    sources, targets, M, reg, *, max_iter=10_000, tol=1e-9, x=None, y=None, warn=True
) -> BatchSinkhornResult:
    """Entropic OT of every pair of ``sources`` (N, n) and ``targets`` (K, m) under ``M`` (n, m).

    Parameters
    ----------
    sources : array-like of shape (N, n) or (n,)
        Non-negative histograms (one source may be given as a vector).
    targets : array-like of shape (K, m)
        Non-negative histograms, each of the sources' mass (balanced OT).
    M : array-like of shape (n, m)
        Ground cost, e.g. :func:`otinverse.grid_cost`.
    reg : float
        Entropic regularisation ε > 0 in cost units (Barton & Tai's ``1/λ``).
    max_iter : int
        Iterations per pair.
    tol : float
        Stop a pair when its relative L1 marginal error is at most ``tol``.
    x, y : array-like of shape (n, d), (m, d), optional
        Support coordinates: the result then has ``displacement = Σ_ij P_ij (y_j − x_i)``.
    warn : bool
        Emit a ``ConvergenceWarning`` when some pair did not reach ``tol``.

    Returns
    -------
    BatchSinkhornResult
        Arrays of shape (N, K): ``transport_cost`` ``⟨M, P⟩`` (rank by this),
        ``objective`` ``⟨M, P⟩ + reg·KL(P | a⊗b)``, ``neg_entropy`` ``Σ P log P`` (the paper's
        regularised value is ``transport_cost + reg * neg_entropy``), ``marginal_error``,
        ``n_iter``, ``converged`` and, with points, ``displacement`` (N, K, d).
    """
    sources = np.asarray(sources) if not isinstance(sources, np.ndarray) else sources
    if sources.ndim == 1:
        sources = sources[None, :]
    sources = as_float_array(sources, "sources", ndim=2)
    targets = as_float_array(targets, "targets", ndim=2)
    M = as_float_array(M, "M", ndim=2)
    # The core checks the values (reg > 0, max_iter ≥ 1, tol ≥ 0) when the solve starts.
    options = _core.BatchSinkhornOptions(reg=reg, max_iter=max_iter, tol=tol)
    if (x is None) != (y is None):
        raise _core.InvalidArgumentError("x: x and y must be given together")
    if x is not None:
        x = as_float_array(x, "x", ndim=2)
        y = as_float_array(y, "y", ndim=2)
    result = _core.sinkhorn_batch(M, sources, targets, options, x, y)
    if warn and not result.converged.all():
        bad = int((~result.converged).sum())
        warnings.warn(
            f"Sinkhorn did not converge for {bad} of {result.converged.size} pairs "
            f"(worst marginal error {result.marginal_error.max():.3g}); raise max_iter or reg.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return result
