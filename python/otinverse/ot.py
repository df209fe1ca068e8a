"""Functional optimal-transport API, shaped like POT's (``ot.sinkhorn``, ``ot.emd2``).

Conventions: potentials ``f`` (rows, weights ``a``) and ``g`` (columns, weights ``b``) give the
plan ``P_ij = a_i b_j exp((f_i + g_j - M_ij) / reg)``; POT's ``log_u`` is ``f / reg + log a``.
``reach_a`` / ``reach_b`` are the KL penalty strengths ρ of POT's ``reg_m`` (cost units);
``None`` keeps that marginal exact.
"""

from __future__ import annotations

import warnings
from functools import cached_property

import numpy as np
import ot as pot
from sklearn.exceptions import ConvergenceWarning

from . import _core
from ._validation import (
    as_float_array,
    as_points,
    as_weights,
    check_factor,
    check_int,
    check_option,
    check_real,
    check_scalar_positive,
)

__all__ = ["SinkhornResult", "sinkhorn", "sinkhorn_points", "wasserstein"]

_UPDATES = ("alternating", "symmetric")


class SinkhornResult:
    """Outcome of a Sinkhorn solve.

    Attributes
    ----------
    f, g : ndarray
        Dual potentials of the rows and columns (cost units).
    transport_cost : float
        ``<M, P>``.
    objective : float
        ``<M, P> + reg KL(P | a⊗b) + reach_a KL(P1 | a) + reach_b KL(Pᵀ1 | b)``.
    n_iter : int
        Full updates of both potentials, over all ε-scaling stages.
    marginal_error : float
        L1 distance of the plan's marginals to their targets, relative to each marginal's mass
        (for a relaxed side the target is ``a * exp(-f / reach_a)``).
    converged : bool
        Whether ``marginal_error <= tol`` was reached within ``max_iter``.
    plan : ndarray
        The transport plan, computed on first access.
    """

    def __init__(
        self, f, g, transport_cost, objective, n_iter, marginal_error, converged, *, reg, plan_fn
    ):
        self.f = f
        self.g = g
        self.transport_cost = transport_cost
        self.objective = objective
        self.n_iter = n_iter
        self.marginal_error = marginal_error
        self.converged = converged
        self.reg = reg
        self._plan_fn = plan_fn

    @cached_property
    def plan(self) -> np.ndarray:
        return self._plan_fn(self.f, self.g)

    def __repr__(self) -> str:
        return (
            f"SinkhornResult(transport_cost={self.transport_cost:.6g}, objective={self.objective:.6g}, "
            f"n_iter={self.n_iter}, marginal_error={self.marginal_error:.3g}, converged={self.converged})"
        )


def _common(reg, reach_a, reach_b, max_iter, tol, update, eps_scaling, f_init, g_init, n, m):
    reg = check_scalar_positive(reg, "reg")
    reach_a = check_scalar_positive(reach_a, "reach_a", allow_none=True)
    reach_b = check_scalar_positive(reach_b, "reach_b", allow_none=True)
    max_iter = check_int(max_iter, "max_iter", 1)
    tol = check_real(tol, "tol", low=0.0)
    check_option(update, "update", _UPDATES)
    eps_scaling = check_factor(eps_scaling, "eps_scaling")
    if (f_init is None) != (g_init is None):
        raise _core.InvalidArgumentError("f_init: f_init and g_init must be given together")
    if f_init is not None:
        f_init = as_float_array(f_init, "f_init", ndim=1)
        g_init = as_float_array(g_init, "g_init", ndim=1)
        if f_init.shape[0] != n:
            raise _core.InvalidArgumentError(
                f"f_init: must have {n} entries, got {f_init.shape[0]}"
            )
        if g_init.shape[0] != m:
            raise _core.InvalidArgumentError(
                f"g_init: must have {m} entries, got {g_init.shape[0]}"
            )
    return reg, reach_a, reach_b, max_iter, tol, eps_scaling, f_init, g_init


def _finish(raw, reg, plan_fn, warn) -> SinkhornResult:
    result = SinkhornResult(*raw, reg=reg, plan_fn=plan_fn)
    if warn and not result.converged:
        warnings.warn(
            f"Sinkhorn did not converge in {result.n_iter} iterations "
            f"(marginal error {result.marginal_error:.3g}); raise max_iter, "
            "loosen tol or use eps_scaling for small reg.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return result


def _log(w):
    with np.errstate(divide="ignore"):
        return np.log(w)


def sinkhorn(
    a,
    b,
    M,
    reg,
    *,
    reach_a=None,
    reach_b=None,
    max_iter=1000,
    tol=1e-9,
    update="alternating",
    eps_scaling=None,
    overrelaxation=True,
    f_init=None,
    g_init=None,
    warn=True,
) -> SinkhornResult:
    """Entropic (semi-/un-)balanced optimal transport on a dense cost matrix, in the log domain.

    Parameters
    ----------
    a, b : array-like of shape (n,), (m,) or None
        Non-negative weights (``None``: uniform). Balanced OT needs equal total masses.
    M : array-like of shape (n, m)
        Cost matrix; float64 input of any memory layout is used without a copy.
    reg : float
        Entropic regularisation ε > 0, in the units of ``M``.
    reach_a, reach_b : float or None
        KL relaxation ρ of each marginal (POT's ``reg_m``); ``None`` keeps it exact.
    max_iter : int
        Maximum number of full updates (over all ε-scaling stages).
    tol : float
        Stop when the relative L1 marginal error is at most ``tol``.
    update : {"alternating", "symmetric"}
        Gauss–Seidel updates, or averaged updates of both potentials (finishing with one
        alternating step so an exact marginal holds exactly).
    eps_scaling : float in (0, 1) or None
        Anneal ε from the cost's range by this factor per stage, warm-starting each stage: use
        it for small ``reg`` (e.g. ``0.5``).
    overrelaxation : bool
        Adaptive over-relaxation of the alternating updates (Thibault et al. 2017): the same
        solution in far fewer iterations at small ``reg``; ``False`` gives plain Sinkhorn.
    f_init, g_init : array-like or None
        Warm start potentials.
    warn : bool
        Emit a ``ConvergenceWarning`` when ``tol`` was not reached.

    Returns
    -------
    SinkhornResult
    """
    M = as_float_array(M, "M", ndim=2)
    n, m = M.shape
    a = as_weights(a, "a", n, "M's rows")
    b = as_weights(b, "b", m, "M's columns")
    reg, reach_a, reach_b, max_iter, tol, eps_scaling, f_init, g_init = _common(
        reg, reach_a, reach_b, max_iter, tol, update, eps_scaling, f_init, g_init, n, m
    )
    raw = _core.sinkhorn_dense(
        a,
        b,
        M,
        reg,
        reach_a,
        reach_b,
        max_iter,
        tol,
        update,
        eps_scaling,
        bool(overrelaxation),
        f_init,
        g_init,
    )

    def plan_fn(f, g):
        return _core.plan_dense(f + reg * _log(a), g + reg * _log(b), M, reg)

    return _finish(raw, reg, plan_fn, warn)


def sinkhorn_points(
    a,
    x,
    b,
    y,
    reg,
    *,
    p=2,
    reach_a=None,
    reach_b=None,
    max_iter=1000,
    tol=1e-9,
    update="alternating",
    eps_scaling=None,
    overrelaxation=True,
    f_init=None,
    g_init=None,
    warn=True,
) -> SinkhornResult:
    """Entropic OT between point clouds with the cost ``|x_i - y_j|^p``, computed on the fly.

    The cost matrix is never stored (memory O((n+m)d)), so 10⁵ × 10⁵ problems fit. ``x`` is
    (n, d) or (n,) for points on the line; other parameters as in :func:`sinkhorn`. ``p >= 1``.
    """
    x = as_points(x, "x")
    y = as_points(y, "y")
    if x.shape[1] != y.shape[1]:
        raise _core.InvalidArgumentError(
            f"y: points have dimension {y.shape[1]} but x has {x.shape[1]}"
        )
    p = check_scalar_positive(p, "p")
    if p < 1:
        raise _core.InvalidArgumentError(f"p: must be >= 1, got {p}")
    n, m = x.shape[0], y.shape[0]
    a = as_weights(a, "a", n, "x")
    b = as_weights(b, "b", m, "y")
    reg, reach_a, reach_b, max_iter, tol, eps_scaling, f_init, g_init = _common(
        reg, reach_a, reach_b, max_iter, tol, update, eps_scaling, f_init, g_init, n, m
    )
    raw = _core.sinkhorn_points(
        a,
        x,
        b,
        y,
        reg,
        p,
        reach_a,
        reach_b,
        max_iter,
        tol,
        update,
        eps_scaling,
        bool(overrelaxation),
        f_init,
        g_init,
    )

    def plan_fn(f, g):
        return _core.plan_points(f + reg * _log(a), x, g + reg * _log(b), y, reg, p)

    return _finish(raw, reg, plan_fn, warn)


def wasserstein(x, a, y, b, p=2) -> float:
    """Exact optimal transport cost ``min_P <|x - y|^p, P>`` (that is, ``W_p^p``).

    In one dimension the closed form (merged quantile functions) runs in Rust in
    O((n+m) log(n+m)); otherwise POT's network simplex (``ot.emd2``) solves it. ``a`` and ``b``
    (``None``: uniform) must have the same total mass; the cost scales with that mass.
    """
    x = as_points(x, "x")
    y = as_points(y, "y")
    if x.shape[1] != y.shape[1]:
        raise _core.InvalidArgumentError(
            f"y: points have dimension {y.shape[1]} but x has {x.shape[1]}"
        )
    p = check_scalar_positive(p, "p")
    if p < 1:
        raise _core.InvalidArgumentError(f"p: must be >= 1, got {p}")
    a = as_weights(a, "a", x.shape[0], "x")
    b = as_weights(b, "b", y.shape[0], "y")
    mass_a, mass_b = a.sum(), b.sum()
    if abs(mass_a - mass_b) > 1e-8 * max(mass_a, mass_b):
        raise _core.InvalidArgumentError(
            f"b: exact OT needs equal masses, got {mass_a} for a and {mass_b} for b"
        )
    if x.shape[1] == 1:
        return mass_a * _core.wasserstein_1d_cost(
            np.ascontiguousarray(x[:, 0]), a, np.ascontiguousarray(y[:, 0]), b, p
        )
    cost = (
        pot.dist(x, y, metric="sqeuclidean") if p == 2 else pot.dist(x, y, metric="euclidean") ** p
    )
    return mass_a * float(
        pot.emd2(a / mass_a, b / mass_b, cost, numItermax=max(100_000, 50 * cost.size))
    )
