"""Unfolding estimators: OT unfolding with a Wasserstein loss and the Richardson–Lucy baseline.

Both share ``fit(measured, *, gen, reco, measured_weight=None, response=None)``:

* ``measured``: detector-level data, (n,) or (n, d);
* ``gen``: the prior support x_k, (L,) or (L, d_gen);
* ``reco``: detector-level samples of every gen point, (L, M, d), (L, M) (d = 1) or (L,) / (L, d)
  for M = 1 — the sampled response ``R_ik = 1/M`` (paper 001 eq. 18 and §4.1.3); or, with an
  explicit column-stochastic ``response`` (m, L), the m detector points (m,) / (m, d).

The learned ``weights_`` (σ on ``gen``) sum to one. ``fold()`` gives ν_σ (points and weights),
``expectation(func)`` observables ``Σ_k σ_k func(x_k)``.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning

from . import _core
from ._core import InvalidArgumentError
from ._validation import (
    as_float_array,
    as_points,
    as_weights,
    check_int,
    check_option,
    check_real,
    check_scalar_positive,
)
from .metrics import wasserstein2_squared

__all__ = ["OTUnfolder", "RichardsonLucyUnfolder", "richardson_lucy"]


def _as_measured(measured, measured_weight):
    y = as_points(measured, "measured")
    w = as_weights(measured_weight, "measured_weight", y.shape[0], "measured")
    keep = w > 0
    if not keep.all():
        y, w = y[keep], w[keep]
    return np.ascontiguousarray(y), w / w.sum()


def _as_problem(measured, gen, reco, measured_weight, response):
    """Validated (gen (L, d_gen), response points (m, d), response matrix or None, M, measured, ν)."""
    y_meas, nu = _as_measured(measured, measured_weight)
    d = y_meas.shape[1]
    gen_arr = as_points(gen, "gen")
    n_gen = gen_arr.shape[0]
    if response is not None:
        r = as_float_array(response, "response", ndim=2)
        if r.shape[1] != n_gen:
            raise InvalidArgumentError(
                f"response: has {r.shape[1]} columns but gen has {n_gen} points"
            )
        if (r < 0).any():
            raise InvalidArgumentError("response: entries must be non-negative")
        colsum = r.sum(axis=0)
        if not np.allclose(colsum, 1.0, rtol=0, atol=1e-8):
            raise InvalidArgumentError("response: columns must sum to one (eq. 18)")
        if (r.sum(axis=1) <= 0).any():
            raise InvalidArgumentError("response: every row needs a positive entry (eq. 18)")
        pts = as_points(reco, "reco")
        if pts.shape[0] != r.shape[0]:
            raise InvalidArgumentError(
                f"reco: has {pts.shape[0]} points but response has {r.shape[0]} rows"
            )
        per_point = 0
        r = np.ascontiguousarray(r)
    else:
        arr = reco if isinstance(reco, np.ndarray) else np.asarray(reco)
        if arr.ndim == 3:
            pass
        elif arr.ndim == 2:
            arr = arr[:, :, None] if d == 1 else arr[:, None, :]
        elif arr.ndim == 1:
            arr = arr[:, None, None]
        else:
            raise InvalidArgumentError(
                f"reco: expected (L, M, d), (L, M) or (L,), got shape {arr.shape}"
            )
        arr = as_float_array(arr, "reco", ndim=3)
        if arr.shape[0] != n_gen:
            raise InvalidArgumentError(
                f"reco: has samples for {arr.shape[0]} gen points but gen has {n_gen}"
            )
        per_point = arr.shape[1]
        pts = arr.reshape(n_gen * per_point, arr.shape[2])
        r = None
    if pts.shape[1] != d:
        raise InvalidArgumentError(
            f"reco: detector points have dimension {pts.shape[1]} but measured has {d}"
        )
    return gen_arr, np.ascontiguousarray(pts), r, per_point, y_meas, nu


class _UnfolderMixin:
    """fold / expectation / W2 tracking shared by both estimators."""

    def _store_problem(self, gen, pts, r, per_point, y_meas, nu):
        self.gen_ = gen
        self.response_points_ = pts
        self.response_ = r
        self.n_samples_per_point_ = per_point
        self.measured_points_ = y_meas
        self.measured_weights_ = nu

    def _fold_weights(self, sigma):
        if self.response_ is not None:
            return self.response_ @ sigma
        return np.repeat(sigma / self.n_samples_per_point_, self.n_samples_per_point_)

    def fold(self, weights=None):
        """ν_σ = Rσ on the unbinned detector points: ``(points (m, d), weights (m,))``."""
        sigma = self.weights_ if weights is None else np.asarray(weights, dtype=float)
        return self.response_points_, self._fold_weights(sigma)

    def expectation(self, func):
        """``Σ_k σ_k func(x_k)`` for an observable ``func`` of the gen points (L, d_gen) → (L,) or (L, k)."""
        values = np.asarray(func(self.gen_), dtype=float)
        if values.shape[0] != self.gen_.shape[0]:
            raise InvalidArgumentError(
                f"func: must return one value per gen point ({self.gen_.shape[0]}), got shape {values.shape}"
            )
        return np.tensordot(self.weights_, values, axes=(0, 0))

    def w2_to_measured(self, weights=None):
        """Exact W2²(ν_σ, ν) on the unbinned points (paper §4.1.3)."""
        pts, w = self.fold(weights)
        return wasserstein2_squared(pts, w, self.measured_points_, self.measured_weights_)

    def _progress(self, total, desc):
        if not self.verbose:
            return None, None
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=desc)
        return bar, (lambda i: bar.update(1))


class OTUnfolder(_UnfolderMixin, BaseEstimator):
    """Unfolding with a Wasserstein loss (paper 001, §3; generalised Sinkhorn, eq. 25–28).

    Parameters
    ----------
    reg : ε of eq. (21), relative to the cost scale (``cost_normalization="max"`` divides the cost
        by its maximum, as the paper's reference code, so the paper's ε = 3e-5 means the same).
    reg_init : ε_init of the classical Sinkhorn warm start (eq. 26–27); ``n_init_iter`` iterations.
    p : cost exponent, ``C = |y − y'|^p``.
    max_iter : outer iterations (exactly, when ``tol`` is None; at most otherwise).
    tol : stop when ``‖σ_l − σ_{l−1}‖₁ ≤ tol``; not reaching it gives a ``ConvergenceWarning``.
    projection : ``"douglas-rachford"`` (eq. 28, the paper's choice) with ``dr_iter`` steps of size
        ``dr_step``, or ``"exact"``: the exact KL projection (closed form for the sampled block
        response, Newton for a general one) — the limit DR converges to.
    track_w2 : also record the exact W2²(ν_σ, ν) after every iteration (costs an exact OT each).
    verbose : tqdm progress bar.

    Attributes
    ----------
    weights_ (L,), n_iter_, converged_ (None when ``tol`` is None), history_ (dict: ``objective``
    εKL(P|K̃) of the iterate in raw cost units, ``sigma_change``, ``kerb_residual`` ‖Bz‖/‖z‖,
    ``weights`` (n_iter, L), ``w2`` when tracked), cost_scale_.
    """

    def __init__(
        self,
        reg=3e-5,
        reg_init=1e-2,
        p=2,
        cost_normalization="max",
        n_init_iter=100,
        max_iter=25,
        tol=None,
        projection="douglas-rachford",
        dr_iter=25,
        dr_step=1e-3,
        track_w2=False,
        verbose=False,
    ):
        self.reg = reg
        self.reg_init = reg_init
        self.p = p
        self.cost_normalization = cost_normalization
        self.n_init_iter = n_init_iter
        self.max_iter = max_iter
        self.tol = tol
        self.projection = projection
        self.dr_iter = dr_iter
        self.dr_step = dr_step
        self.track_w2 = track_w2
        self.verbose = verbose

    def fit(self, measured, *, gen, reco, measured_weight=None, response=None, prior=None):
        reg = check_scalar_positive(self.reg, "reg")
        reg_init = check_scalar_positive(self.reg_init, "reg_init")
        p = check_scalar_positive(self.p, "p")
        if p < 1:
            raise InvalidArgumentError(f"p: must be >= 1, got {p}")
        check_option(self.cost_normalization, "cost_normalization", {"max", "none"})
        check_option(self.projection, "projection", {"douglas-rachford", "exact"})
        n_init_iter = check_int(self.n_init_iter, "n_init_iter", 1)
        max_iter = check_int(self.max_iter, "max_iter", 1)
        dr_iter = check_int(self.dr_iter, "dr_iter", 0)
        dr_step = check_scalar_positive(self.dr_step, "dr_step")
        tol = check_real(self.tol, "tol", low=0.0, allow_none=True)
        problem = _as_problem(measured, gen, reco, measured_weight, response)
        gen_arr, pts, r, per_point, y_meas, nu = problem
        if prior is not None:
            prior = as_weights(prior, "prior", gen_arr.shape[0], "gen")
            if (prior <= 0).any():
                raise InvalidArgumentError("prior: entries must be positive")
        self._store_problem(*problem)
        bar, cb = self._progress(max_iter, "OT unfolding")
        try:
            sigma, hist, obj, change, kres, n_iter, converged, scale = _core.ot_unfold_points(
                pts,
                y_meas,
                nu,
                prior,
                r,
                gen_arr.shape[0],
                per_point,
                reg,
                reg_init,
                p,
                self.cost_normalization,
                n_init_iter,
                max_iter,
                tol,
                dr_iter,
                dr_step,
                self.projection,
                cb,
            )
        finally:
            if bar is not None:
                bar.close()
        self.weights_ = sigma
        self.n_iter_ = n_iter
        self.converged_ = None if tol is None else bool(converged)
        self.cost_scale_ = scale
        self.history_ = {
            "objective": obj,
            "sigma_change": change,
            "kerb_residual": kres,
            "weights": hist,
        }
        if self.track_w2:
            self.history_["w2"] = np.array([self.w2_to_measured(s) for s in hist])
        if tol is not None and not converged:
            warnings.warn(
                f"OTUnfolder did not reach tol={tol:g} in {max_iter} iterations (last change {change[-1]:.3g}); "
                "increase max_iter",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self


def _bin_edges(points, n_bins):
    d = points.shape[1]
    if isinstance(n_bins, numbers.Integral) and not isinstance(n_bins, bool):
        counts = [int(n_bins)] * d
    else:
        counts = list(n_bins)
        if len(counts) != d or any(
            isinstance(c, bool) or not isinstance(c, numbers.Integral) for c in counts
        ):
            raise InvalidArgumentError(
                f"n_bins: must be an integer or {d} integers (one per axis), got {n_bins!r}"
            )
    if any(c < 1 for c in counts):
        raise InvalidArgumentError(f"n_bins: must be positive, got {n_bins!r}")
    lo, hi = points.min(axis=0), points.max(axis=0)
    hi = np.where(hi > lo, hi, lo + 1.0)
    return [np.linspace(lo[a], hi[a], counts[a] + 1) for a in range(d)], counts


def _bin_index(points, edges, counts, *, clip):
    """Flat bin index of every point (equal-width bins; the last bin is closed); −1 = outside."""
    flat = np.zeros(points.shape[0], dtype=np.int64)
    inside = np.ones(points.shape[0], dtype=bool)
    for a, (e, c) in enumerate(zip(edges, counts)):
        idx = np.searchsorted(e, points[:, a], side="right") - 1
        idx[points[:, a] == e[-1]] = c - 1
        if clip:
            idx = np.clip(idx, 0, c - 1)
        else:
            inside &= (idx >= 0) & (idx < c)
            idx = np.clip(idx, 0, c - 1)
        flat = flat * c + idx
    flat[~inside] = -1
    return flat


class RichardsonLucyUnfolder(_UnfolderMixin, BaseEstimator):
    """Richardson–Lucy / iterative Bayesian unfolding on a binned response (DESIGN §3.4).

    ``n_bins`` equal-width bins per axis over the range of the response points (an int, or one
    int per axis; in 2-D the paper's ``n_bin`` is the total, e.g. ``n_bins=10`` ↔ n_bin = 100).
    Measured points outside that range fall outside the histogram, as in the reference code.
    ``R̄ ← (1−ε_bin)R̄ + ε_bin/n_bin`` and ``ν̄`` likewise, renormalised; ``n_iter`` iterations of
    ``σ_k ← σ_k Σ_b R̄_bk ν̄_b / (R̄σ)_b`` from the uniform prior.

    Attributes: weights_ (L,), n_iter_, history_ (``weights`` (n_iter, L), ``w2`` when tracked),
    binned_response_ (n_bin, L), binned_measured_ (n_bin,), bin_edges_.
    """

    def __init__(self, n_bins=28, n_iter=25, eps_bin=1e-40, track_w2=False, verbose=False):
        self.n_bins = n_bins
        self.n_iter = n_iter
        self.eps_bin = eps_bin
        self.track_w2 = track_w2
        self.verbose = verbose

    def fit(self, measured, *, gen, reco, measured_weight=None, response=None, prior=None):
        n_iter = check_int(self.n_iter, "n_iter", 1)
        eps_bin = float(self.eps_bin)
        if not (0 <= eps_bin < 1):
            raise InvalidArgumentError(f"eps_bin: must lie in [0, 1), got {self.eps_bin!r}")
        problem = _as_problem(measured, gen, reco, measured_weight, response)
        gen_arr, pts, r, per_point, y_meas, nu = problem
        if prior is not None:
            prior = as_weights(prior, "prior", gen_arr.shape[0], "gen")
        self._store_problem(*problem)
        edges, counts = _bin_edges(pts, self.n_bins)
        n_bin = int(np.prod(counts))
        resp_bins = _bin_index(pts, edges, counts, clip=True)
        # R̄_bk = Σ_{i in bin b} R_ik.
        n_gen = gen_arr.shape[0]
        rbar = np.zeros((n_bin, n_gen))
        if r is None:
            np.add.at(rbar, (resp_bins, np.repeat(np.arange(n_gen), per_point)), 1.0 / per_point)
        else:
            np.add.at(rbar, resp_bins, r)
        meas_bins = _bin_index(y_meas, edges, counts, clip=False)
        inside = meas_bins >= 0
        if not inside.any():
            raise InvalidArgumentError(
                "measured: no measured point lies in the range of the response points"
            )
        nubar = np.bincount(meas_bins[inside], weights=nu[inside], minlength=n_bin)
        nubar /= nubar.sum()
        rbar = (1 - eps_bin) * rbar + eps_bin / n_bin
        nubar = (1 - eps_bin) * nubar + eps_bin / n_bin
        nubar /= nubar.sum()
        bar, _ = self._progress(n_iter, "Richardson-Lucy")
        unfolded, hist = _core.richardson_lucy_binned(rbar, nubar, n_iter, None, prior)
        if bar is not None:
            bar.update(n_iter)
            bar.close()
        self.weights_ = unfolded / unfolded.sum()
        self.n_iter_ = n_iter
        self.binned_response_ = rbar
        self.binned_measured_ = nubar
        self.bin_edges_ = edges
        self.history_ = {"weights": hist}
        if self.track_w2:
            self.history_["w2"] = np.array([self.w2_to_measured(s) for s in hist])
        return self


def richardson_lucy(response, measured, n_iter, *, efficiencies=None, prior=None):
    """Binned Richardson–Lucy / D'Agostini iterative Bayesian unfolding, shaped like pyunfold's
    ``iterative_unfold`` (without error propagation or test-statistic stopping).

    ``response`` (n_effects, n_causes) with ``response[e, c] = P(effect e | cause c)``;
    ``measured`` counts per effect bin; ``efficiencies`` per cause (default: the column sums of
    ``response``); ``prior`` (default uniform, normalised). Each iteration:
    ``unfolded_c = (p_c/η_c) Σ_e R_ec n_e / Σ_c' R_ec' p_c'``, ``p ← unfolded / Σ unfolded``.
    Returns the unfolded counts after ``n_iter`` iterations.
    """
    r = as_float_array(response, "response", ndim=2)
    n = as_float_array(measured, "measured", ndim=1)
    if n.shape[0] != r.shape[0]:
        raise InvalidArgumentError(
            f"measured: has {n.shape[0]} bins but response has {r.shape[0]} rows"
        )
    if (n < 0).any():
        raise InvalidArgumentError("measured: counts must be non-negative")
    if (r < 0).any():
        raise InvalidArgumentError("response: entries must be non-negative")
    n_iter = check_int(n_iter, "n_iter", 0)
    if efficiencies is not None:
        efficiencies = as_float_array(efficiencies, "efficiencies", ndim=1)
        if efficiencies.shape[0] != r.shape[1]:
            raise InvalidArgumentError(
                f"efficiencies: has {efficiencies.shape[0]} entries but response has {r.shape[1]} causes"
            )
        if ((efficiencies <= 0) | (efficiencies > 1)).any():
            raise InvalidArgumentError("efficiencies: entries must lie in (0, 1]")
    if prior is not None:
        prior = as_weights(prior, "prior", r.shape[1], "response columns")
    unfolded, _ = _core.richardson_lucy_binned(
        np.ascontiguousarray(r), np.ascontiguousarray(n), n_iter, efficiencies, prior
    )
    return unfolded
