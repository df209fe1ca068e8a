"""Functional optimal-transport API, shaped like POT's (``ot.sinkhorn``, ``ot.emd2``).

Conventions: potentials ``f`` (rows, weights ``a``) and ``g`` (columns, weights ``b``) give the
plan ``P_ij = a_i b_j exp((f_i + g_j - M_ij) / reg)``; POT's ``log_u`` is ``f / reg + log a``.
``reach_a`` / ``reach_b`` are the KL penalty strengths ρ of POT's ``reg_m`` (cost units);
``None`` keeps that marginal exact.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from .. import _core
from .._deprecated import points_first
from .._validation import as_float_array, as_points, weights_or_uniform

__all__ = ["SinkhornResult", "sinkhorn", "sinkhorn_points"]


class SinkhornResult:
    """Outcome of a Sinkhorn solve, returned by :func:`sinkhorn` and :func:`sinkhorn_points`.

    Parameters
    ----------
    solved : otinverse._core.SinkhornSolution
        The core's solution (potentials, costs, diagnostics).
    reg : float
        The ε of the solve.
    plan_fn : callable
        ``plan_fn(f, g)`` computes the plan when the core did not return it.

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
        L1 distance of the plan's marginals to their targets, summed over the two sides, each
        relative to the larger of its weights' and its target's mass (for a relaxed side the
        target is ``a * exp(-f / reach_a)``, for an exact one the weights).
    converged : bool
        Whether ``marginal_error <= tol`` was reached within ``max_iter``.
    stages : list of (points, reg, n_iter, kept_per_row)
        The ε stages of a multiscale solve (``sinkhorn_points`` on the truncated kernel),
        coarse levels first: the level's number of points, its ε, its iterations and the mean
        stored kernel entries per row. Empty for a single-level solve.
    plan : ndarray
        The transport plan whose ``marginal_error`` is reported: returned with the solution by
        ``sinkhorn`` (computed in the pass that measures that error), computed on first access
        by ``sinkhorn_points``.
    """

    def __init__(self, solved: _core.SinkhornSolution, *, reg: float, plan_fn):
        self.f = solved.f
        self.g = solved.g
        self.transport_cost = solved.transport_cost
        self.objective = solved.objective
        self.n_iter = solved.n_iter
        self.marginal_error = solved.marginal_error
        self.converged = solved.converged
        self.stages = solved.stages
        self.reg = reg
        self._plan_fn = plan_fn
        self._plan = solved.plan

    @property
    def plan(self) -> np.ndarray:
        if self._plan is None:
            self._plan = self._plan_fn(self.f, self.g)
        return self._plan

    def __repr__(self) -> str:
        return (
            f"SinkhornResult(transport_cost={self.transport_cost:.6g}, "
            f"objective={self.objective:.6g}, n_iter={self.n_iter}, "
            f"marginal_error={self.marginal_error:.3g}, converged={self.converged})"
        )


#: The Parameters entries that ``sinkhorn`` and ``sinkhorn_points`` share, written once.
_SHARED_PARAMETERS = """\
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
    kernel : {"auto", "log", "stored", "stored_f32", "sparse"}
        How the iterations evaluate the Gibbs kernel: log-domain softmins (2·n·m exponentials
        per iteration, memory O(n + m)), or a stabilized kernel stored in float64 or float32
        (Schmitzer 2019: matrix-vector products, the duals absorbed into the stored kernel
        when the scalings grow). ``"sparse"`` (``sinkhorn_points`` only) keeps the kernel
        entries above e^-32 of the current duals, found with k-d trees cluster by cluster and
        stored as dense runs per row (float32 when ``tol >= 1e-8``, in up to half the available
        memory), and anneals ε from clusters of the points (coarse-to-fine). ``"auto"`` stores
        the kernel when it fits in 512 MiB (float32 when ``tol >= 1e-8``, finishing in float64
        if its rounding keeps the plan's error above ``tol``; float64 otherwise), and picks
        ``"sparse"`` for point clouds in d <= 3 whose dense kernel does not fit. Every choice
        reports the marginal error of the exact plan.

"""


def _with_shared_parameters(func):
    func.__doc__ = func.__doc__.replace("    {shared}\n", _SHARED_PARAMETERS)
    return func


def _options(reg, reach_a, reach_b, max_iter, tol, update, eps_scaling, overrelaxation, kernel):
    """The core's options; the core checks their values when the solve starts."""
    return _core.SinkhornOptions(
        reg=reg,
        reach_a=reach_a,
        reach_b=reach_b,
        max_iter=max_iter,
        tol=tol,
        update=update,
        eps_scaling=eps_scaling,
        overrelaxation=bool(overrelaxation),
        kernel=kernel,
    )


def _warm_start(f_init, g_init):
    """Float64 potentials, or ``None``; the core checks their pairing and lengths."""
    return tuple(
        None if v is None else as_float_array(v, name, ndim=1)
        for v, name in ((f_init, "f_init"), (g_init, "g_init"))
    )


def _finish(solved, reg, plan_fn, warn) -> SinkhornResult:
    result = SinkhornResult(solved, reg=reg, plan_fn=plan_fn)
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


@_with_shared_parameters
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
    kernel="auto",
) -> SinkhornResult:
    """Entropic (semi-/un-)balanced optimal transport on a dense cost matrix.

    Parameters
    ----------
    a, b : array-like of shape (n,), (m,) or None
        Non-negative weights (``None``: uniform). Balanced OT needs equal total masses.
    M : array-like of shape (n, m)
        Cost matrix; float64 input of any memory layout is used without a copy.
    reg : float
        Entropic regularisation ε > 0, in the units of ``M``.
    {shared}
    Returns
    -------
    SinkhornResult
    """
    # The core checks M's entries (in parallel, in the pass that reads M first).
    M = as_float_array(M, "M", ndim=2, finite=False)
    n, m = M.shape
    a, b = weights_or_uniform(a, "a", n), weights_or_uniform(b, "b", m)
    options = _options(
        reg, reach_a, reach_b, max_iter, tol, update, eps_scaling, overrelaxation, kernel
    )
    solved = _core.sinkhorn_dense(a, b, M, options, *_warm_start(f_init, g_init), with_plan=True)

    def plan_fn(f, g):
        return _core.plan_dense(f + reg * _log(a), g + reg * _log(b), M, reg)

    return _finish(solved, reg, plan_fn, warn)


def _weights_first(args) -> bool:
    # sinkhorn_points(a, x, b, y=..., reg=...): the third argument is b (weights), not reg.
    return len(args) == 3 and (args[2] is None or np.ndim(args[2]) > 0)


@_with_shared_parameters
@points_first(("a", "x", "b", "y", "reg"), 3, _weights_first)
def sinkhorn_points(
    x,
    y,
    reg,
    *,
    a=None,
    b=None,
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
    kernel="auto",
) -> SinkhornResult:
    """Entropic OT between point clouds with the cost ``|x_i - y_j|^p``, never materialised.

    The cost matrix is not stored (memory O((n+m)d) for the online kernel, O(kept entries) for
    the truncated one), so 10⁵ × 10⁵ problems fit. ``x`` is (n, d) or (n,) for points on the
    line, ``y`` likewise; the weights ``a``, ``b`` (``None``: uniform) come by keyword, as the
    points come first (POT's ``empirical_sinkhorn(X_s, X_t, reg, a, b)``); other parameters as
    in :func:`sinkhorn`. ``p > 0``; ``p < 1`` is a concave cost (for
    ``log1p`` or ``atan`` of the distance, build the matrix with :func:`otinverse.ground_cost`
    and call :func:`sinkhorn`).

    Parameters
    ----------
    x, y : array-like of shape (n, d) and (m, d), or (n,) and (m,)
        The two point clouds.
    reg : float
        Entropic regularisation ε > 0, in the units of the cost ``|x - y|^p``.
    a, b : array-like of shape (n,), (m,) or None
        Non-negative weights (``None``: uniform). Balanced OT needs equal total masses.
    p : float
        Exponent of the cost ``|x_i - y_j|^p``, ``p > 0``.
    {shared}
    Returns
    -------
    SinkhornResult
    """
    x = as_points(x, "x")
    y = as_points(y, "y")
    a, b = weights_or_uniform(a, "a", x.shape[0]), weights_or_uniform(b, "b", y.shape[0])
    options = _options(
        reg, reach_a, reach_b, max_iter, tol, update, eps_scaling, overrelaxation, kernel
    )
    solved = _core.sinkhorn_points(a, x, b, y, p, options, *_warm_start(f_init, g_init))

    def plan_fn(f, g):
        return _core.plan_points(f + reg * _log(a), x, g + reg * _log(b), y, reg, p)

    return _finish(solved, reg, plan_fn, warn)
