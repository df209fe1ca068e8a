"""Unfolding estimators: OT unfolding with a Wasserstein loss and the Richardson–Lucy baseline.

Both share ``fit(measured, *, gen, reco, measured_weight=None, response=None, prior=None,
gen_weight=None, reco_mask=None, fakes=None, fake_weight=None)``:

* ``measured``: detector-level data, (n,) or (n, d), with event weights ``measured_weight``
  (default 1 per event: the result is then in events).
* ``gen``: the MC's gen points x_k, (L,) or (L, d_gen), with MC weights ``gen_weight`` (positive;
  negative MC weights are rejected: the unfolded weights are a measure).
* ``reco``: the detector samples of every gen point, (L, M, d), (L, M) (d = 1) or (L,) / (L, d)
  for M = 1 — the sampled response ``R_ik = 1/M`` (Craig et al., eq. 18 and §4.1.3). A sample
  that was **not reconstructed** (inefficiency) is a row of NaN, as OmniFold's placeholder
  value; ``reco_mask`` ((L,) or (L, M), True = reconstructed) says the same without touching
  ``reco``. The efficiency of a gen point is, by default (``efficiency="kernel"``), a local-linear
  kernel regression of the reconstruction indicator over the gen points
  (:func:`~otinverse.unfolding.efficiency.smoothed_efficiency`); with ``efficiency="sample"`` its
  own weighted fraction of reconstructed samples.
  Or, with an explicit ``response`` (m, L) whose column sums are the efficiencies, ``reco`` are
  the m detector points.
* ``fakes``: detector-level events without a gen counterpart (fakes, background), (f,) or
  (f, d), with ``fake_weight`` in the units of ``measured_weight`` (expected fake events in the
  measured sample, e.g. the MC's fakes scaled to the data's luminosity; default 1 each). Their
  mass is added to the folded measure.
* Every array may be an awkward array (flat or regular; ``None`` = not reconstructed) or a pandas
  column; ``measured`` and ``response`` may be ``hist`` histograms (the response with axes
  (reco, gen); ``gen`` and ``reco`` then default to its bin centres; :mod:`.hep`).

The learned ``weights_`` are absolute: they sum to the estimated number of true events
``(Σ measured_weight − Σ fake_weight) / efficiency``; ``normalized_weights_`` is the shape.
``fold()`` gives ν_σ (points and weights, with the fakes), ``expectation(func)`` the mean of an
observable under the unfolded distribution.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array
from sklearn.utils._param_validation import Hidden, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .. import _core
from .._core import InvalidArgumentError
from .._validation import ValidatedParams, as_float_array, as_points
from ..solvers import wasserstein2_squared
from .efficiency import _smoothed_mean, smoothed_efficiency
from .hep import (
    fit_arguments,
    is_hist,
    observable_values,
    richardson_lucy_arguments,
    richardson_lucy_hist,
    to_numpy,
    unfolded_hist,
)

__all__ = ["OTUnfolder", "RichardsonLucyUnfolder", "richardson_lucy"]


# ---------------------------------------------------------------------------------------------
# The coerced problem (arrays only; value rules are checked by the core)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UnfoldingProblem:
    """A coerced unfolding problem: the arrays ``fit`` passes to the core (module docs).

    Parameters
    ----------
    gen : ndarray of shape (L, d_gen)
        The MC's gen points.
    points : ndarray of shape (L·M, d) or (m, d)
        The detector points: L·M sample rows (NaN = not reconstructed) when ``response`` is
        None, else the m rows of ``response``.
    per_point : int
        M, the detector samples per gen point (1 with an explicit response).
    response : ndarray of shape (m, L) or None
        An explicit response, column sums = efficiencies.
    gen_weight : ndarray of shape (L,) or None
        MC event weights.
    sample_weight : ndarray of shape (L, M) or None
        Per-sample weights (a bootstrap replica's MC factors).
    measured : ndarray of shape (n, d)
        The measured events.
    measured_weight : ndarray of shape (n,)
        Their weights.
    fakes : ndarray of shape (f, d) or None
        Detector-level events without a gen counterpart.
    fake_weight : ndarray of shape (f,) or None
        Their weights, in the units of ``measured_weight``.
    prior : ndarray of shape (L,) or None
        A truth-level prior per gen point (default the MC weights).
    """

    gen: np.ndarray
    points: np.ndarray
    per_point: int
    response: np.ndarray | None
    gen_weight: np.ndarray | None
    sample_weight: np.ndarray | None
    measured: np.ndarray
    measured_weight: np.ndarray
    fakes: np.ndarray | None
    fake_weight: np.ndarray | None
    prior: np.ndarray | None

    def replica(self, data_factor=None, mc_factor=None, fake_factor=None):
        """The problem with the event weights multiplied by bootstrap factors: ``data_factor``
        (n,) on the measured events, ``mc_factor`` on the MC samples ((L, M), or (L,) for an
        explicit response), ``fake_factor`` (f,) on the fakes. Zero-weight events are dropped."""
        out = self
        if data_factor is not None:
            w = self.measured_weight * data_factor
            keep = w != 0
            out = replace(out, measured=self.measured[keep], measured_weight=w[keep])
        if mc_factor is not None:
            if self.response is None:
                base = 1.0 if self.sample_weight is None else self.sample_weight
                out = replace(out, sample_weight=base * mc_factor)
            else:
                base = 1.0 if self.gen_weight is None else self.gen_weight
                out = replace(out, gen_weight=base * mc_factor)
        if fake_factor is not None and self.fakes is not None:
            w = self.fake_weight * fake_factor
            keep = w != 0
            out = replace(out, fakes=self.fakes[keep], fake_weight=w[keep])
        return out

    @property
    def n_gen(self):
        return self.gen.shape[0]

    def sample_fractions(self):
        """``q_i = R_ik`` of every detector row: the share of its gen point's MC weight
        (samples) or the response entry; (rows, L) dense only for an explicit response."""
        if self.response is not None:
            return self.response
        L, M = self.n_gen, self.per_point
        s = np.ones((L, M)) if self.sample_weight is None else self.sample_weight
        total = s.sum(axis=1, keepdims=True)
        q = np.divide(s, total, out=np.zeros_like(s), where=total > 0)
        q[np.isnan(self.points[:, 0]).reshape(L, M)] = 0.0
        return q.reshape(-1)

    def reconstructed_fraction(self):
        """The share of each gen point's MC weight that is reconstructed: the sum of its rows'
        ``sample_fractions`` (0 for a point a bootstrap replica emptied; 1 for an explicit
        response, whose columns are all observed)."""
        if self.response is not None:
            return np.ones(self.n_gen)
        return self.sample_fractions().reshape(self.n_gen, self.per_point).sum(axis=1)


def _as_measured(measured, measured_weight):
    y = as_points(measured, "measured")
    if measured_weight is None:
        w = np.ones(y.shape[0])
    else:
        w = as_float_array(measured_weight, "measured_weight", ndim=1)
        if w.shape[0] != y.shape[0]:
            raise InvalidArgumentError(
                f"measured_weight: has {w.shape[0]} weights but measured has {y.shape[0]}"
            )
    if (w < 0).any():
        raise InvalidArgumentError(
            f"measured_weight: weights must be non-negative, found {w.min()}"
        )
    keep = w != 0  # zero-weight events carry nothing
    if not keep.any():
        raise InvalidArgumentError("measured_weight: total mass must be positive")
    return np.ascontiguousarray(y[keep]), np.ascontiguousarray(w[keep], dtype=np.float64)


def _as_samples(reco, n_gen, d, reco_mask):
    """(L·M, d) sample rows (NaN rows = not reconstructed) and M."""
    arr = reco if isinstance(reco, np.ndarray) else np.asarray(reco)
    if arr.ndim == 2:
        arr = arr[:, :, None] if d == 1 else arr[:, None, :]
    elif arr.ndim == 1:
        arr = arr[:, None, None]
    elif arr.ndim != 3:
        raise InvalidArgumentError(
            f"reco: expected (L, M, d), (L, M) or (L,), got shape {arr.shape}"
        )
    if arr.dtype.kind not in "iuf" or arr.size == 0:
        raise InvalidArgumentError(f"reco: expected a non-empty real array, got {arr.dtype}")
    try:
        arr = check_array(
            arr, dtype=np.float64, ensure_2d=False, allow_nd=True, ensure_all_finite="allow-nan"
        )
    except ValueError as exc:
        raise InvalidArgumentError(f"reco: {exc}") from None
    if arr.shape[0] != n_gen:
        raise InvalidArgumentError(
            f"reco: has samples for {arr.shape[0]} gen points but gen has {n_gen}"
        )
    if reco_mask is not None:
        mask = np.asarray(reco_mask)
        if mask.dtype != bool:
            raise InvalidArgumentError(f"reco_mask: must be a boolean array, got {mask.dtype}")
        if mask.shape == (n_gen,):
            mask = np.repeat(mask[:, None], arr.shape[1], axis=1)
        if mask.shape != arr.shape[:2]:
            raise InvalidArgumentError(
                f"reco_mask: has shape {mask.shape}, expected (L,) = ({n_gen},) or "
                f"(L, M) = {arr.shape[:2]}"
            )
        arr = arr.copy()
        arr[~mask] = np.nan
    rows = arr.reshape(-1, arr.shape[2])
    nan = np.isnan(rows)
    if (nan.any(axis=1) & ~nan.all(axis=1)).any():
        raise InvalidArgumentError(
            "reco: a sample row mixes NaN with values; a sample is either reconstructed "
            "(finite) or not (all NaN)"
        )
    return np.ascontiguousarray(rows), arr.shape[1]


def as_problem(
    measured,
    *,
    gen=None,
    reco=None,
    measured_weight=None,
    response=None,
    prior=None,
    gen_weight=None,
    reco_mask=None,
    fakes=None,
    fake_weight=None,
):
    """Coerces the arguments of ``fit`` (module docs) into an :class:`UnfoldingProblem`.
    Awkward arrays and pandas columns are taken as NumPy (``None``/``NA`` = NaN: a reco not
    reconstructed), histograms as in :func:`~otinverse.unfolding.hep.fit_arguments`."""
    measured, gen, reco, measured_weight, response = (
        to_numpy(measured, "measured"),
        to_numpy(gen, "gen"),
        to_numpy(reco, "reco"),
        to_numpy(measured_weight, "measured_weight"),
        to_numpy(response, "response"),
    )
    prior, gen_weight, reco_mask, fakes, fake_weight = (
        to_numpy(prior, "prior"),
        to_numpy(gen_weight, "gen_weight"),
        to_numpy(reco_mask, "reco_mask"),
        to_numpy(fakes, "fakes"),
        to_numpy(fake_weight, "fake_weight"),
    )
    measured, gen, reco, measured_weight, response = fit_arguments(
        measured, gen, reco, measured_weight, response
    )
    y_meas, w_meas = _as_measured(measured, measured_weight)
    d = y_meas.shape[1]
    gen_arr = as_points(gen, "gen")
    n_gen = gen_arr.shape[0]
    if response is not None:
        if reco_mask is not None:
            raise InvalidArgumentError(
                "reco_mask: not used with an explicit response "
                "(its column sums are the efficiencies)"
            )
        r = np.ascontiguousarray(as_float_array(response, "response", ndim=2))
        pts, per_point = np.ascontiguousarray(as_points(reco, "reco")), 0
    else:
        r = None
        pts, per_point = _as_samples(reco, n_gen, d, reco_mask)
    if pts.shape[1] != d:
        raise InvalidArgumentError(
            f"reco: detector points have dimension {pts.shape[1]} but measured has {d}"
        )
    opt = {
        name: None if v is None else np.ascontiguousarray(as_float_array(v, name, ndim=1))
        for name, v in (("gen_weight", gen_weight), ("prior", prior))
    }
    if fakes is not None:
        fakes = np.ascontiguousarray(as_points(fakes, "fakes"))
        fake_weight = (
            np.ones(fakes.shape[0])
            if fake_weight is None
            else np.ascontiguousarray(as_float_array(fake_weight, "fake_weight", ndim=1))
        )
    elif fake_weight is not None:
        raise InvalidArgumentError("fake_weight: given without fakes")
    _check_event_weights(n_gen, d, opt["gen_weight"], fakes, fake_weight, w_meas)
    return UnfoldingProblem(
        gen=gen_arr,
        points=pts,
        per_point=per_point,
        response=r,
        gen_weight=opt["gen_weight"],
        sample_weight=None,
        measured=y_meas,
        measured_weight=w_meas,
        fakes=fakes,
        fake_weight=fake_weight,
        prior=opt["prior"],
    )


def _check_event_weights(n_gen, d, gen_weight, fakes, fake_weight, measured_weight):
    """The event-weight rules of the OT core (src/core/unfold/events.rs), checked here too
    because the Richardson–Lucy estimator bins in Python before its core sees the weights."""
    if gen_weight is not None:
        if gen_weight.shape[0] != n_gen:
            raise InvalidArgumentError(
                f"gen_weight: has {gen_weight.shape[0]} weights but gen has {n_gen} points"
            )
        if (gen_weight < 0).any():
            raise InvalidArgumentError("gen_weight: weights must be non-negative")
    if fakes is None:
        return
    if fakes.shape[1] != d:
        raise InvalidArgumentError(
            f"fakes: points have dimension {fakes.shape[1]} but reco has {d}"
        )
    if fake_weight.shape[0] != fakes.shape[0]:
        raise InvalidArgumentError(
            f"fake_weight: has {fake_weight.shape[0]} weights but fakes has {fakes.shape[0]} points"
        )
    if (fake_weight <= 0).any():
        raise InvalidArgumentError("fake_weight: weights must be positive")
    if fake_weight.sum() >= measured_weight.sum():
        raise InvalidArgumentError("fake_weight: the fakes' total must be below the measured total")


# ---------------------------------------------------------------------------------------------
# Shared fitted behaviour
# ---------------------------------------------------------------------------------------------
class _UnfolderMixin:
    """fit / fold / expectation / W2 shared by both estimators."""

    def fit(
        self,
        measured,
        *,
        gen=None,
        reco=None,
        measured_weight=None,
        response=None,
        prior=None,
        gen_weight=None,
        reco_mask=None,
        fakes=None,
        fake_weight=None,
    ):
        """Unfolds ``measured`` (see the module docs for the arguments); returns ``self``."""
        self._validate_params()
        problem = as_problem(
            measured,
            gen=gen,
            reco=reco,
            measured_weight=measured_weight,
            response=response,
            prior=prior,
            gen_weight=gen_weight,
            reco_mask=reco_mask,
            fakes=fakes,
            fake_weight=fake_weight,
        )
        return self.fit_problem(problem)

    def fit_problem(self, problem):
        """Fits a coerced :class:`UnfoldingProblem` (the bootstrap refits these)."""
        raise NotImplementedError

    def to_hist(self, bins, observable=None):
        """The unfolded events binned as a ``hist.Hist`` with ``Weight()`` storage, with the
        covariance beside it: an :class:`~otinverse.unfolding.hep.UnfoldedHist`. ``bins``: an
        int, edges, a ``hist`` axis, or one of those per column of ``observable`` (gen points →
        (L,) or (L, k); default the gen points). The errors are the propagated ones when the
        estimator has them (Richardson–Lucy with ``cov_type``), else NaN: for errors on any
        unfolder, :func:`~otinverse.unfolding.bootstrap.bootstrap` it and call ``to_hist`` on
        the result. Needs the ``hep`` extra (``hist``)."""
        check_is_fitted(self, "weights_")
        propagated = getattr(self, "cov_type", None) is not None
        return unfolded_hist(
            observable_values(self.problem_.gen, observable),
            self.weights_,
            bins,
            covariance=self.covariance_ + self.mc_covariance_ if propagated else None,
            errors="propagated" if propagated else "none",
        )

    def _smoothed_efficiency(self, problem):
        """The kernel-smoothed efficiency of every gen point (``efficiency="kernel"``, sampled
        response), or None to use the fractions of reconstructed samples."""
        p = problem
        if self.efficiency == "sample" or p.response is not None:
            return None
        if not np.isnan(p.points[:, 0]).any():  # fully reconstructed: the plain problem
            return None
        L, M = p.n_gen, p.per_point
        s = np.ones((L, M)) if p.sample_weight is None else p.sample_weight
        gw = np.ones(L) if p.gen_weight is None else p.gen_weight
        reco = ~np.isnan(p.points[:, 0]).reshape(L, M)
        return smoothed_efficiency(
            p.gen,
            gw * (s * reco).sum(axis=1),
            gw * s.sum(axis=1),
            bandwidth=self.efficiency_bandwidth,
        )

    @property
    def normalized_weights_(self):
        """The unfolded shape: ``weights_ / weights_.sum()``."""
        check_is_fitted(self, "weights_")
        return self.weights_ / self.weights_.sum()

    @property
    def gen_(self):
        check_is_fitted(self, "problem_")
        return self.problem_.gen

    def _signal_events(self):
        p = self.problem_
        fake = 0.0 if p.fake_weight is None else p.fake_weight.sum()
        return p.measured_weight.sum() - fake

    def _events_from_shape(self, shape):
        """Absolute weights with the shape ``shape`` whose reconstructed part holds the measured
        signal events."""
        return shape * (self._signal_events() / (shape @ self.efficiency_))

    def fold(self, weights=None):
        """ν_σ on the unbinned detector points, with the fakes appended: ``(points, weights)``
        in the units of ``weights`` (default ``weights_``, events)."""
        check_is_fitted(self, "weights_")
        sigma = self.weights_ if weights is None else np.asarray(weights, dtype=float)
        p = self.problem_
        if p.response is not None:
            pts, w = p.points, p.response @ sigma
        else:
            q = p.sample_fractions().reshape(p.n_gen, p.per_point)
            w = (q * sigma[:, None]).reshape(-1)
            keep = ~np.isnan(p.points[:, 0])
            pts, w = p.points[keep], w[keep]
        if p.fakes is not None:
            pts, w = np.vstack([pts, p.fakes]), np.concatenate([w, p.fake_weight])
        return pts, w

    def expectation(self, func):
        """Mean of an observable under the unfolded distribution, ``Σ_k σ_k func(x_k) / Σ σ``;
        ``func`` maps the gen points (L, d_gen) to (L,) or (L, k)."""
        check_is_fitted(self, "weights_")
        gen = self.problem_.gen
        values = np.asarray(func(gen), dtype=float)
        if values.shape[0] != gen.shape[0]:
            raise InvalidArgumentError(
                f"func: must return one value per gen point ({gen.shape[0]}), "
                f"got shape {values.shape}"
            )
        return np.tensordot(self.normalized_weights_, values, axes=(0, 0))

    def w2_to_measured(self, weights=None):
        """Exact W2²(ν_σ, ν) between the normalised folded and measured measures (§4.1.3)."""
        pts, w = self.fold(weights)
        p = self.problem_
        return wasserstein2_squared(pts, p.measured, a=w, b=p.measured_weight)

    def _track_w2(self, shapes):
        return np.array([self.w2_to_measured(self._events_from_shape(s)) for s in shapes])

    def _progress(self, total, desc):
        if not self.verbose:
            return None, None
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=desc)
        return bar, (lambda i: bar.update(1))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = True
        tags.non_deterministic = False
        return tags


class OTUnfolder(_UnfolderMixin, ValidatedParams, BaseEstimator):
    """Unfolding with a Wasserstein loss (Craig, Faktor & Nachman, §3; eq. 21–28) of MC events
    with weights, inefficiency and fakes (module docs), in absolute event counts.

    The problem of eq. (21) is solved for the gen-level distribution τ of the *reconstructed*
    signal (τ_k ∝ σ_k ε_k), whose folded measure ``(1 − φ)Rτ + φβ`` (φ: the fakes' share of the
    measured mass) is matched to the data; the reference measure of the KL term is the MC's own
    τ̂_k ∝ w_k f_k (f_k: the reconstructed share of point k's samples, its MC events that the
    data can see). Then ``σ_k = (N_measured − N_fakes) τ_k / ε_k`` are events (inverse-probability
    weighting); gen points without a reconstructed sample get σ_k = 0 with the default smooth
    efficiency — the seen points' 1/ε̂ already carries their mass — and the MC's share relative
    to the others with ``efficiency="sample"``.

    Parameters
    ----------
    reg : ε of eq. (21), relative to the cost scale (``cost_normalization="max"`` divides the cost
        by its maximum, as the paper's reference code, so the paper's ε = 3e-5 means the same).
    reg_init : ε_init of the classical Sinkhorn warm start (eq. 26–27).
    p : cost exponent, ``C = |y − y'|^p``.
    cost_normalization : ``"max"`` divides the cost by its maximum before ``reg`` and
        ``reg_init`` apply (the paper's reference code); ``"none"`` keeps raw cost units.
    n_init_iter : iterations of the warm start.
    max_iter : outer iterations (exactly, when ``tol`` is None; at most otherwise). With ``reg``,
        the iteration count regularises the result: use :func:`otinverse.unfolding.scan` to
        choose them.
    tol : stop when ``‖τ_l − τ_{l−1}‖₁ ≤ tol``; not reaching it gives a ``ConvergenceWarning``.
    projection : ``"exact"`` (default): the exact KL projection of step 3 (closed form for a
        sampled response, Newton for a general one), the limit Douglas–Rachford converges to; or
        ``"douglas-rachford"`` (eq. 28, the paper's choice) with ``dr_iter`` steps of size
        ``dr_step``. DR's step is an absolute mass while the iterate's entries are of order 1/L,
        so its 25 steps fall short of the projection as the MC grows: on a physics MC of 10⁶
        events the DR fit ends +1.8 % in the total and 7× the exact fit's distance to the truth
        (0.27 against 0.039, ``benches/bench_unfolding.py realistic``); on the paper's problems
        both reach the same W2² and the exact projection is faster.
    dr_iter : Douglas–Rachford steps per projection (eq. 28; the paper's 25).
    dr_step : Douglas–Rachford step size τ (eq. 28; the paper's 1e-3).
    kernel : how the two log-sum-exps of eq. (25) are evaluated: ``"online"`` (m·n exponentials
        per pass, exact), ``"truncated"`` (a stabilized kernel that stores only the entries above
        e^−32 of the plan's band, Schmitzer 2019; rows or columns whose truncation bound fails are
        recomputed exactly), or ``"auto"``: truncated for low-dimensional (d ≤ 3) problems with
        more than 2^24 response × measured pairs (2^20 in 1-D, where the kernel stores nothing)
        at a ``reg`` whose band is narrow. On a quantized reco space (``reco_grid``) the kernel
        runs between occupied cells; under ``"auto"`` with the squared cost in 1-D and 2-D it is
        a separable log-domain convolution on the grid (``kernel_info_["kernel"] ==
        "separable"``; Solomon et al. 2015), exact to ~1e-14.
    warm_start_clusters : run the warm start on about this many clusters per side, carried to the
        points by a c-transform (Feydy's multiscale Sinkhorn); ``None``: on clusters (2048) when
        the truncated kernel runs on a problem too large to store the warm start's kernel.
    reco_grid : ``"auto"`` (default), ``"off"`` or a grid spacing h > 0 in reco units. The
        response points, fakes and measured points are snapped to the centres of a regular grid
        of spacing h (origin: the per-axis minimum) and the log-sum-exps of eq. (25) run between
        the occupied cells: exactly the unquantized fit of the snapped points. MC and data are
        snapped alike, so this is a detector that also bins at h, carried by the response: the
        unfolding stays consistent, with an extra variance h²/12 per axis, small against the
        entropic blur's ε/2. ``"auto"`` quantizes problems of more than 2^26 response × measured
        pairs with ``p=2`` in 1-D and 2-D, at h = (ε · max C)^{1/2}/2 (half the blur width; a
        quarter to the full width changes the unfolded histograms of a 10⁵-event physics MC by
        far less than their bootstrap spread); ``kernel_info_["grid_spacing"]`` reports it.
    track_w2 : also record the exact W2²(ν_σ, ν) after every iteration (costs an exact OT each).
    efficiency : ``"kernel"`` (default) estimates each gen point's efficiency by local-linear
        kernel regression of the reconstruction indicator over the gen points
        (:func:`~otinverse.unfolding.efficiency.smoothed_efficiency`); ``"sample"`` by its own
        fraction of reconstructed samples, for the paper's layout of M ≫ 1 samples per gen
        point. The default is the one that is unbiased on a physics MC (one detector sample per
        event, 10–45 % lost): there the fraction is 1 at every reconstructed event and 0 at the
        others, so ``"sample"`` never corrects the x-dependence of the efficiency and gives the
        lost events the MC's shape (measured: +10 % in the total, the lowest-efficiency bins
        several times the truth), while the smooth ε̂ is within the statistical errors of the
        truth (``benches/bench_unfolding.py realistic``). Only for a sampled response; a fully
        reconstructed MC is unchanged either way.
    efficiency_bandwidth : the kernel's width in standard deviations of the gen points (default
        Scott's rule L^(−1/(d+4))); also the width of ``prior_updates``' smoothing.
    prior_updates : ``"auto"`` (default) or the number of refits with an updated truth-level
        prior (Andreassen et al. 2020, OmniFold's step 2). With one detector sample per event,
        the fit reweights each MC event by where its reco value lies, so σ(x) = p(x)·E[ρ(y) | x]:
        one Bayes step from the prior p, pulled towards the MC's truth like one iteration of
        IBU. Each update takes the fitted per-event ratio σ_k ε_k / p_k, smooths it over the
        gen observables (the local-linear fit of the efficiency) and refits with ``p·ratio`` as
        the prior. ``"auto"``: 2 updates for a sampled response with one detector sample per
        gen point (the physics MC layout), 0 otherwise (the paper's M > 1 samples per gen point,
        each point's weight fitted from its own samples, and a given ``response``). Measured on
        a physics MC whose truth is wider than the MC's (``benches/bench_unfolding_coverage.py``,
        200 pseudo-experiments, bias over the spread of the 5 truth-level bins): 0 updates
        −0.03, +0.41, +0.38, +0.24, −0.38; 1: −0.06, +0.08, +0.01, +0.13, +0.05; 2: −0.06,
        +0.07, −0.03, +0.10, +0.08; a third changes the bins by ≤ 0.01, at one more fit. 0 is
        the paper's single fit. The prior is the weight the fit gives each gen point (the core
        starts the iteration from it accordingly; ``docs/architecture.md``).
    verbose : tqdm progress bar.

    Attributes
    ----------
    weights_ : ndarray of shape (L,)
        The unfolded distribution on the gen points, in events.
    prior_ : ndarray of shape (L,)
        The truth-level prior of the last fit: the MC weights (or the given ``prior``), updated
        ``n_prior_updates_`` times.
    n_prior_updates_ : int
        The prior updates run (``prior_updates``, resolved).
    normalized_weights_ : ndarray of shape (L,)
        Its shape (unit sum).
    efficiency_ : ndarray of shape (L,)
        The reconstruction efficiency of each gen point.
    mc_weight_ : ndarray of shape (L,)
        The MC weight of each gen point.
    n_iter_ : int
        Iterations run.
    converged_ : bool or None
        Whether ``tol`` was reached (None when ``tol`` is None).
    history_ : dict
        Per iteration: ``objective`` εKL(P|K̃) of the iterate in raw cost units,
        ``sigma_change``, ``kerb_residual`` ‖Bz‖/‖z‖, ``weights`` the normalised shape
        (n_iter, L), ``w2`` when tracked.
    cost_scale_ : float
        The factor the cost was divided by (``cost_normalization``).
    problem_ : UnfoldingProblem
        The coerced problem.
    kernel_info_ : dict
        ``kernel`` the one the iterations ran on, ``kept_per_row`` mean stored entries per row of
        the truncated kernel, ``builds``, ``exact_fallbacks`` rows and columns recomputed
        exactly, ``coarse_warm_start``, ``grid_spacing`` of the quantized reco space (``None``
        unquantized) and its occupied ``row_cells`` and ``measured_cells``.
    """

    _parameter_constraints: ClassVar[dict] = {
        "reg": [Interval(Real, 0, None, closed="neither")],
        "reg_init": [Interval(Real, 0, None, closed="neither")],
        "p": [Interval(Real, 1, None, closed="left")],
        "cost_normalization": [StrOptions({"max", "none"})],
        "n_init_iter": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left"), None],
        "projection": [StrOptions({"douglas-rachford", "exact"})],
        "dr_iter": [Interval(Integral, 0, None, closed="left")],
        "dr_step": [Interval(Real, 0, None, closed="neither")],
        "kernel": [StrOptions({"auto", "online", "truncated"})],
        "warm_start_clusters": [Interval(Integral, 1, None, closed="left"), None],
        "reco_grid": [StrOptions({"auto", "off"}), Interval(Real, 0, None, closed="neither")],
        "track_w2": ["boolean"],
        "efficiency": [StrOptions({"kernel", "sample"})],
        "efficiency_bandwidth": [Interval(Real, 0, None, closed="neither"), None],
        "prior_updates": [StrOptions({"auto"}), Interval(Integral, 0, None, closed="left")],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        reg=3e-5,
        reg_init=1e-2,
        p=2,
        cost_normalization="max",
        n_init_iter=100,
        max_iter=25,
        tol=None,
        projection="exact",
        dr_iter=25,
        dr_step=1e-3,
        kernel="auto",
        warm_start_clusters=None,
        reco_grid="auto",
        track_w2=False,
        efficiency="kernel",
        efficiency_bandwidth=None,
        prior_updates="auto",
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
        self.kernel = kernel
        self.warm_start_clusters = warm_start_clusters
        self.reco_grid = reco_grid
        self.track_w2 = track_w2
        self.efficiency = efficiency
        self.efficiency_bandwidth = efficiency_bandwidth
        self.prior_updates = prior_updates
        self.verbose = verbose

    def _options(self):
        return _core.OtUnfoldOptions(
            reg=float(self.reg),
            reg_init=float(self.reg_init),
            p=float(self.p),
            cost_normalization=self.cost_normalization,
            n_init_iter=int(self.n_init_iter),
            max_iter=int(self.max_iter),
            tol=None if self.tol is None else float(self.tol),
            dr_iter=int(self.dr_iter),
            dr_step=float(self.dr_step),
            projection=self.projection,
            kernel=self.kernel,
            warm_start_clusters=(
                None if self.warm_start_clusters is None else int(self.warm_start_clusters)
            ),
            reco_grid="off" if self.reco_grid == "off" else "auto",
            grid_spacing=None if isinstance(self.reco_grid, str) else float(self.reco_grid),
        )

    def fit_problem(self, problem):
        self._validate_params()
        n_updates = self._n_prior_updates(problem)
        bar, cb = self._progress(self.max_iter * (1 + n_updates), "OT unfolding")
        efficiency = self._smoothed_efficiency(problem)
        prior = problem.prior
        try:
            res = self._solve(problem, prior, efficiency, cb)
            seen = problem.reconstructed_fraction() if n_updates else None
            for _ in range(n_updates):
                prior = self._updated_prior(problem, res, prior, seen)
                res = self._solve(problem, prior, efficiency, cb)
        finally:
            if bar is not None:
                bar.close()
        self._store(problem, res)
        self.prior_ = res.mc_weight if prior is None else prior
        self.n_prior_updates_ = n_updates
        return self

    def _n_prior_updates(self, problem):
        """``prior_updates`` resolved: ``"auto"`` updates twice where each gen point has one
        detector sample (a single fit is then one Bayes step from the prior), never otherwise."""
        if self.prior_updates != "auto":
            return int(self.prior_updates)
        return _AUTO_PRIOR_UPDATES if problem.response is None and problem.per_point == 1 else 0

    def _solve(self, problem, prior, efficiency, progress):
        return _core.ot_unfold_events(
            problem.points,
            problem.measured,
            problem.measured_weight,
            self._options(),
            n_gen=problem.n_gen,
            per_point=problem.per_point,
            sample_weight=problem.sample_weight,
            response=problem.response,
            gen_weight=problem.gen_weight,
            fakes=problem.fakes,
            fake_weight=problem.fake_weight,
            prior=prior,
            efficiency=efficiency,
            progress=progress,
        )

    def _updated_prior(self, problem, res, prior, seen):
        """OmniFold's step 2: the per-event ratio of the fit to its prior, σ_k ε_k / p_k on
        the gen points with a reconstructed sample (``seen``: their reconstructed shares),
        smoothed over the gen observables and carried to every point (Andreassen et al. 2020,
        eq. 3)."""
        p = res.mc_weight if prior is None else prior
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(seen * p > 0, res.weights * res.efficiency / p, 0.0)
        ratio /= np.average(ratio, weights=p * seen)
        smooth = _smoothed_mean(problem.gen, ratio, p * seen, bandwidth=self.efficiency_bandwidth)
        # A local-linear fit may dip below zero past the last events; a floor keeps every
        # point in the support for the next fit.
        return p * np.clip(smooth, _MIN_PRIOR_RATIO, None)

    def _store(self, problem, res):
        self.problem_ = problem
        self.weights_ = res.weights
        self.efficiency_ = res.efficiency
        self.mc_weight_ = res.mc_weight
        self.n_iter_ = res.n_iter
        self.converged_ = None if self.tol is None else bool(res.converged)
        self.cost_scale_ = res.cost_scale
        self.kernel_info_ = {
            "kernel": res.kernel,
            "kept_per_row": res.kept_per_row,
            "builds": res.kernel_builds,
            "exact_fallbacks": res.exact_fallbacks,
            "coarse_warm_start": res.coarse_warm_start,
            "grid_spacing": res.grid_spacing,
            "row_cells": res.row_cells,
            "measured_cells": res.col_cells,
        }
        self.history_ = {
            "objective": res.objective,
            "sigma_change": res.sigma_change,
            "kerb_residual": res.kerb_residual,
            "weights": res.shape_history,
        }
        if self.track_w2:
            self.history_["w2"] = self._track_w2(res.shape_history)
        if self.tol is not None and not res.converged:
            warnings.warn(
                f"OTUnfolder did not reach tol={self.tol:g} in {self.max_iter} iterations "
                f"(last change {res.sigma_change[-1]:.3g}); increase max_iter",
                ConvergenceWarning,
                stacklevel=4,
            )


_MIN_PRIOR_RATIO = 1e-3
_AUTO_PRIOR_UPDATES = 2


# ---------------------------------------------------------------------------------------------
# Richardson–Lucy
# ---------------------------------------------------------------------------------------------
def _bin_edges(points, n_bins, bin_range):
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
    if bin_range is None:
        lo, hi = points.min(axis=0), points.max(axis=0)
    else:
        rng = np.asarray(bin_range, dtype=float).reshape(-1, 2)
        if rng.shape[0] != d or not (rng[:, 1] > rng[:, 0]).all():
            raise InvalidArgumentError(
                f"bin_range: expected (low, high) with low < high for each of {d} axes, "
                f"got {bin_range!r}"
            )
        lo, hi = rng[:, 0], rng[:, 1]
    hi = np.where(hi > lo, hi, lo + 1.0)
    return [np.linspace(lo[a], hi[a], counts[a] + 1) for a in range(d)], counts


def _bin_index(points, edges, counts):
    """Flat bin index of every point (equal-width bins, the last closed); −1 = outside."""
    flat = np.zeros(points.shape[0], dtype=np.int64)
    inside = np.ones(points.shape[0], dtype=bool)
    for a, (e, c) in enumerate(zip(edges, counts, strict=True)):
        idx = np.searchsorted(e, points[:, a], side="right") - 1
        idx[points[:, a] == e[-1]] = c - 1
        inside &= (idx >= 0) & (idx < c)
        flat = flat * c + np.clip(idx, 0, c - 1)
    flat[~inside] = -1
    return flat


def _binned_entries(problem, edges, counts, n_bin):
    """The binned response as entries ``(bins, cols, values)`` of R̄ (n_bin + 1, L): rows =
    bins, the last the out-of-range (under/overflow) bin; column sums = the reconstructed shares
    f_k. Also the effective number of MC samples per gen point."""
    p = problem
    n_gen = p.n_gen
    if p.response is None:
        reco = ~np.isnan(p.points[:, 0])
        q = p.sample_fractions()
        cols = np.repeat(np.arange(n_gen), p.per_point)[reco]
        b = _bin_index(p.points[reco], edges, counts)
        bins = np.where(b >= 0, b, n_bin)
        values = q[reco]
        s = np.ones((n_gen, p.per_point)) if p.sample_weight is None else p.sample_weight
        n_mc = s.sum(1) ** 2 / np.maximum((s**2).sum(1), 1e-300)
    else:
        b = _bin_index(p.points, edges, counts)
        bins, cols = np.nonzero(p.response)
        values = p.response[bins, cols]
        bins = np.where(b[bins] >= 0, b[bins], n_bin)
        n_mc = np.full(n_gen, np.inf)
    return (bins, cols, values), n_mc


_DENSE_RESPONSE_BUDGET = 2 << 30  # bytes of one (bins × gen points) response


def _dense_binned_response(entries, n_bin, n_gen):
    """R̄ (n_bin + 1, L) with one column per gen point, after checking that it fits."""
    size = (n_bin + 1) * n_gen * 8
    if size > _DENSE_RESPONSE_BUDGET:
        raise MemoryError(
            f"RichardsonLucyUnfolder: a response with one column per gen point needs "
            f"{size / 2**30:.1f} GiB ({n_bin + 1} bins × {n_gen} gen points, several copies); "
            "unfold into truth bins instead (gen_bins=...), the usual binned response"
        )
    bins, cols, values = entries
    rbar = np.zeros((n_bin + 1, n_gen))
    np.add.at(rbar, (bins, cols), values)
    return rbar


def _binned_counts(points, weights, edges, counts, n_bin):
    b = _bin_index(points, edges, counts)
    return np.bincount(np.where(b >= 0, b, n_bin), weights=weights, minlength=n_bin + 1)


def _events_on_all_points(unfolded, seen, mc_weight, extrapolate):
    """The unfolded events of the seen gen points on all L points: the unseen ones get nothing
    when a smooth efficiency corrected the seen ones (their 1/ε̂ already carries that mass), or
    with per-point fractions the MC's share relative to the seen ones (the core's rule, see
    :class:`OTUnfolder`)."""
    out = np.zeros_like(mc_weight, dtype=float)
    out[seen] = unfolded
    unseen = ~seen & (mc_weight > 0)
    if extrapolate and unseen.any():
        out[unseen] = mc_weight[unseen] * unfolded.sum() / mc_weight[seen].sum()
    return out


@dataclass(frozen=True)
class _Causes:
    """The causes of a binned unfolding: their response (n_bin + 1, c) and starting counts (c,),
    the effective MC events behind each column (c,), the efficiency of every gen point (L,),
    how their unfolded counts become events on the gen points (``spread``: (c,) → (L,)) and
    their covariances a matrix over the causes' space (``embed``), and the truth bins' edges
    (None for one cause per gen point)."""

    response: np.ndarray
    prior: np.ndarray
    n_mc: np.ndarray
    efficiency: np.ndarray
    spread: Callable[[np.ndarray], np.ndarray]
    embed: Callable[[np.ndarray], np.ndarray]
    edges: list | None


class RichardsonLucyUnfolder(_UnfolderMixin, ValidatedParams, BaseEstimator):
    """Richardson–Lucy / iterative Bayesian unfolding (D'Agostini) on a binned response, for MC
    events with weights, inefficiency and fakes (module docs), in absolute event counts.

    ``n_bins`` equal-width bins per axis over ``bin_range`` (default: the range of the
    reconstructed response points; an int, or one int per axis; in 2-D the paper's ``n_bin`` is
    the total, e.g. ``n_bins=10`` ↔ n_bin = 100), plus one out-of-range (under/overflow) bin.
    Response samples and measured events out of range land there: with response in it, it is
    an effect bin like the others; without, its measured events cannot be unfolded — they are
    counted in ``n_measured_outside_`` and reported by a warning, never dropped silently.
    ``R̄ ← (1−ε_bin)R̄ + ε_bin/n_bin`` and ``ν̄`` likewise (the paper's perturbation); fakes are
    binned into a known background (the EM update with background, see :func:`richardson_lucy`).
    ``max_iter`` iterations from the MC prior, or fewer with the stopping rule ``ts`` (``"ks"`` or
    ``"chi2"`` below ``ts_stopping``, as pyunfold). ``cov_type`` (``"multinomial"`` or
    ``"poisson"``) also propagates pyunfold's errors: ``covariance_`` from the data (√n) and
    ``mc_covariance_`` from the MC statistics of the response.

    The causes are, by default (``gen_bins=None``), the gen points themselves — the paper's
    comparison, where each gen point has several detector samples. For a physics MC (one
    detector sample per event), pass ``gen_bins`` (as ``n_bins``, over the range of the gen
    points): the causes are then truth bins, the response the usual (reco bin × truth bin)
    matrix whose column sums are the efficiency histogram, and each truth bin's unfolded events
    are shared among its gen points — reconstructed or not — by their MC weights. One cause per
    gen point needs a dense (bins × gen points) matrix; past 2 GiB it raises ``MemoryError``.

    Parameters
    ----------
    n_bins : int or sequence of int
        Reco bins per axis (one int for every axis, or one per axis).
    max_iter : int
        Iterations (at most, with ``ts``).
    eps_bin : float
        The perturbation ε_bin of ``R̄`` and ``ν̄`` (the paper's 1e-40).
    bin_range : array-like of shape (2,) or (d, 2), optional
        (low, high) of the reco bins per axis; default the range of the reconstructed response
        points.
    gen_bins : int or sequence of int, optional
        Truth bins per axis over the range of the gen points; None: one cause per gen point.
    ts : {"ks", "chi2"}, optional
        pyunfold's stopping rule: stop when the test statistic between successive iterations
        falls below ``ts_stopping``.
    ts_stopping : float
        The stopping rule's threshold.
    cov_type : {"multinomial", "poisson"}, optional
        Propagate pyunfold's errors into ``covariance_`` and ``mc_covariance_``.
    track_w2 : bool
        Also record the exact W2²(ν_σ, ν) after every iteration.
    efficiency : {"kernel", "sample"}
        As :class:`OTUnfolder`, for one cause per gen point (the smoothed efficiency rescales
        each gen point's column of the binned response); truth bins use the efficiency
        histogram.
    efficiency_bandwidth : float, optional
        As :class:`OTUnfolder`.
    verbose : bool
        tqdm progress bar.
    n_iter : int
        Deprecated name of ``max_iter``.

    Attributes
    ----------
    weights_ : ndarray of shape (L,)
        The unfolded distribution on the gen points, in events.
    normalized_weights_ : ndarray of shape (L,)
        Its shape (unit sum).
    efficiency_ : ndarray of shape (L,)
        The reconstruction efficiency of each gen point.
    mc_weight_ : ndarray of shape (L,)
        The MC weight of each gen point.
    n_iter_ : int
        Iterations run.
    history_ : dict
        ``weights`` the shapes after each iteration (n_iter, L), ``ts``, ``w2`` when tracked.
    binned_response_ : ndarray of shape (n_bin, n_causes)
        The binned response.
    binned_measured_ : ndarray of shape (n_bin,)
        The binned measured distribution, normalised.
    bin_edges_ : ndarray
        The reco bins' edges.
    gen_bin_edges_ : ndarray or None
        The truth bins' edges (None for one cause per gen point).
    n_measured_outside_ : float
        Measured mass outside the reco bins.
    covariance_, mc_covariance_ : ndarray of shape (n_causes, n_causes) or None
        Covariance of the causes (L × L, or truth bins) from the data and from the MC, when
        ``cov_type`` is set.
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_bins": [Interval(Integral, 1, None, closed="left"), "array-like"],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "gen_bins": [Interval(Integral, 1, None, closed="left"), "array-like", None],
        "eps_bin": [Interval(Real, 0, 1, closed="left")],
        "bin_range": ["array-like", None],
        "ts": [StrOptions({"ks", "chi2"}), None],
        "ts_stopping": [Interval(Real, 0, None, closed="neither")],
        "cov_type": [StrOptions({"multinomial", "poisson"}), None],
        "track_w2": ["boolean"],
        "efficiency": [StrOptions({"kernel", "sample"})],
        "efficiency_bandwidth": [Interval(Real, 0, None, closed="neither"), None],
        "verbose": ["verbose"],
        "n_iter": [Interval(Integral, 1, None, closed="left"), Hidden(StrOptions({"deprecated"}))],
    }

    def __init__(
        self,
        n_bins=28,
        max_iter=25,
        eps_bin=1e-40,
        bin_range=None,
        gen_bins=None,
        ts=None,
        ts_stopping=0.01,
        cov_type=None,
        track_w2=False,
        efficiency="kernel",
        efficiency_bandwidth=None,
        verbose=False,
        n_iter="deprecated",
    ):
        self.n_bins = n_bins
        self.max_iter = max_iter
        self.eps_bin = eps_bin
        self.bin_range = bin_range
        self.gen_bins = gen_bins
        self.ts = ts
        self.ts_stopping = ts_stopping
        self.cov_type = cov_type
        self.track_w2 = track_w2
        self.efficiency = efficiency
        self.efficiency_bandwidth = efficiency_bandwidth
        self.verbose = verbose
        self.n_iter = n_iter

    def fit_problem(self, problem):
        self._validate_params()
        p = problem
        max_iter = self._iterations()
        reco_rows = p.points if p.response is not None else p.points[~np.isnan(p.points[:, 0])]
        if reco_rows.shape[0] == 0:
            raise InvalidArgumentError("reco: no sample is reconstructed")
        edges, counts = _bin_edges(reco_rows, self.n_bins, self.bin_range)
        n_bin = int(np.prod(counts))
        entries, n_mc = _binned_entries(p, edges, counts, n_bin)
        mc_weight = np.ones(p.n_gen) if p.gen_weight is None else p.gen_weight
        if p.sample_weight is not None:
            mc_weight = mc_weight * p.sample_weight.mean(axis=1)
        make_causes = self._gen_point_causes if self.gen_bins is None else self._truth_bin_causes
        causes = make_causes(p, entries, n_bin, n_mc, mc_weight)
        nubar = _binned_counts(p.measured, p.measured_weight, edges, counts, n_bin)
        background = None
        if p.fakes is not None:
            background = _binned_counts(p.fakes, p.fake_weight, edges, counts, n_bin)
        outside_has_response = causes.response[n_bin].any()
        rows = np.arange(n_bin + 1) if outside_has_response else np.arange(n_bin)
        self.n_measured_outside_ = 0.0 if outside_has_response else float(nubar[n_bin])
        if self.n_measured_outside_ > 0:
            warnings.warn(
                f"RichardsonLucyUnfolder: {self.n_measured_outside_:g} measured events lie outside "
                "the range of the response and are not unfolded; widen bin_range",
                UserWarning,
                stacklevel=3,
            )
        nu, res = self._unfold(
            causes.response[rows],
            nubar[rows],
            background,
            rows,
            causes.prior,
            causes.n_mc,
            max_iter,
        )
        self.problem_ = p
        self.efficiency_ = causes.efficiency
        self.mc_weight_ = mc_weight
        self.weights_ = causes.spread(res.unfolded)
        self.n_iter_ = res.n_iter
        shapes = np.zeros((res.n_iter, p.n_gen))
        for i, h in enumerate(res.history):
            s = causes.spread(h)
            shapes[i] = s / s.sum()
        self.binned_response_ = causes.response[:n_bin]
        self.binned_measured_ = nu[:n_bin]
        self.bin_edges_ = edges
        self.gen_bin_edges_ = causes.edges
        self.history_ = {"weights": shapes, "ts": res.ts_values}
        if self.cov_type is not None:
            self.covariance_ = causes.embed(res.stat_cov)
            self.mc_covariance_ = causes.embed(res.sys_cov)
        if self.track_w2:
            self.history_["w2"] = self._track_w2(shapes)
        return self

    def _iterations(self):
        if isinstance(self.n_iter, str):
            return int(self.max_iter)
        warnings.warn(
            "RichardsonLucyUnfolder(n_iter=...) is deprecated and will be removed: use max_iter "
            "(the same iteration budget, named as in OTUnfolder)",
            FutureWarning,
            stacklevel=4,
        )
        return int(self.n_iter)

    def _gen_point_causes(self, p, entries, n_bin, n_mc, mc_weight):
        """One cause per gen point (the paper's comparison), columns scaled to the smoothed
        efficiency when there is one."""
        rbar = _dense_binned_response(entries, n_bin, p.n_gen)
        fraction = rbar.sum(axis=0)
        smoothed = self._smoothed_efficiency(p)
        eff = fraction if smoothed is None else smoothed
        if smoothed is not None:  # columns keep their detector shape, with sums ε̃_k
            rbar *= np.divide(smoothed, fraction, out=np.zeros_like(fraction), where=fraction > 0)
        seen = (fraction > 0) & (mc_weight > 0)
        # The causes' starting counts: the truth-level prior (default the MC's) as the seen
        # points carry it, p_k f_k / ε_k (as the OT unfolder's reference τ̂ = w f, divided by ε).
        truth_prior = mc_weight if p.prior is None else p.prior
        ratio = np.divide(fraction, eff, out=np.zeros_like(eff), where=eff > 0)
        extrapolate = smoothed is None
        return _Causes(
            response=rbar[:, seen],
            prior=(truth_prior * ratio)[seen],
            n_mc=n_mc[seen],
            efficiency=eff,
            spread=lambda u: _events_on_all_points(u, seen, mc_weight, extrapolate),
            embed=lambda cov: self._embed(cov, seen),
            edges=None,
        )

    def _truth_bin_causes(self, p, entries, n_bin, n_mc, mc_weight):
        """One cause per truth bin (``gen_bins``): the usual response matrix, whose column sums
        are the efficiency histogram; each bin's unfolded events are shared among its gen points
        by their MC weights."""
        gen_edges, gen_counts = _bin_edges(p.gen, self.gen_bins, None)
        cause = _bin_index(p.gen, gen_edges, gen_counts)
        n_causes = int(np.prod(gen_counts))
        bins, cols, values = entries
        W = np.bincount(cause, mc_weight, n_causes)
        flat = np.bincount(
            bins * n_causes + cause[cols], values * mc_weight[cols], (n_bin + 1) * n_causes
        )
        R = np.divide(
            flat.reshape(n_bin + 1, n_causes), W, out=np.zeros((n_bin + 1, n_causes)), where=W > 0
        )
        efficiency = R.sum(axis=0)
        seen = efficiency > 0
        prior = np.bincount(cause, mc_weight if p.prior is None else p.prior, n_causes)
        # Kish's effective number of MC events per bin (the response's statistical errors).
        w2 = np.bincount(cause, mc_weight**2 / np.maximum(n_mc, 1e-300), n_causes)
        n_eff = np.divide(W**2, w2, out=np.zeros(n_causes), where=w2 > 0)

        def spread(u):
            per_bin = _events_on_all_points(u, seen, W, extrapolate=True)
            return np.divide(
                per_bin[cause] * mc_weight, W[cause], out=np.zeros(p.n_gen), where=W[cause] > 0
            )

        return _Causes(
            response=R[:, seen],
            prior=prior[seen],
            n_mc=n_eff[seen],
            efficiency=efficiency[cause],
            spread=spread,
            embed=lambda cov: self._embed(cov, seen),
            edges=gen_edges,
        )

    @staticmethod
    def _embed(cov, seen):
        out = np.zeros((seen.size, seen.size))
        out[np.ix_(seen, seen)] = cov
        return out

    def _unfold(self, rbar, nubar, background, rows, prior, n_mc, max_iter):
        """Runs the core on the seen causes; returns (normalised binned data, core result)."""
        n_rows = rows.size
        eps_bin = float(self.eps_bin)
        total = nubar.sum()
        nu = nubar / total
        rbar = (1 - eps_bin) * rbar + eps_bin / n_rows
        nu_pert = (1 - eps_bin) * nu + eps_bin / n_rows
        nu_pert = nu_pert / nu_pert.sum() * total
        bg = None if background is None else background[rows]
        eff = rbar.sum(axis=0)
        options = _core.RichardsonLucyOptions(
            max_iter=max_iter,
            ts=self.ts,
            ts_stopping=float(self.ts_stopping),
            cov_type=self.cov_type,
        )
        eff_err = np.where(np.isfinite(n_mc), eff / np.sqrt(n_mc), 0.0)
        bar, _ = self._progress(max_iter, "Richardson-Lucy")
        res = _core.richardson_lucy_binned(
            np.ascontiguousarray(rbar),
            nu_pert,
            options,
            background=bg,
            prior=prior,
            efficiencies_err=eff_err if self.cov_type == "multinomial" else None,
            response_err=np.sqrt(rbar * (1 - np.minimum(rbar, 1)) / np.maximum(n_mc, 1))
            if self.cov_type == "poisson"
            else None,
        )
        if bar is not None:
            bar.update(res.n_iter)
            bar.close()
        return nu, res


def richardson_lucy(
    response,
    measured,
    n_iter,
    *,
    efficiencies=None,
    prior=None,
    background=None,
    ts=None,
    ts_stopping=0.01,
    cov_type=None,
    data_err=None,
    response_err=None,
    efficiencies_err=None,
    full_output=False,
):
    """Binned Richardson–Lucy / D'Agostini iterative Bayesian unfolding, shaped like pyunfold's
    ``iterative_unfold``.

    ``response`` (n_effects, n_causes) with ``response[e, c] = P(effect e | cause c)``;
    ``measured`` counts per effect bin; ``efficiencies`` per cause (default: the column sums of
    ``response``); ``prior`` (default uniform, normalised); ``background`` known counts per effect
    bin (fakes). From ``U = Σn · prior`` each iteration is the EM update
    ``U_c ← (U_c/η_c) Σ_e R_ec n_e / (Σ_c' R_ec' U_c' + β_e)`` (D'Agostini's without background).
    ``n_iter`` iterations, or fewer with ``ts`` (``"ks"``/``"chi2"``) below ``ts_stopping``.
    ``cov_type`` (``"multinomial"`` or ``"poisson"``) propagates pyunfold's errors from
    ``data_err`` (default √n) and ``efficiencies_err`` / ``response_err``.

    ``response`` may be a filled ``hist.Hist`` (or a TH2 read by uproot) with axes (reco, gen)
    — RooUnfold's convention: the reco flow holds the misses
    (:func:`~otinverse.unfolding.hep.response_from_hist`) — with ``measured`` and
    ``background`` histograms on its reco axis and ``prior`` on its gen axis; the result is then
    an :class:`~otinverse.unfolding.hep.UnfoldedHist` on the gen axis.

    Parameters
    ----------
    response : array-like of shape (n_effects, n_causes) or hist.Hist
        ``P(effect e | cause c)``.
    measured : array-like of shape (n_effects,) or hist.Hist
        Measured counts per effect bin.
    n_iter : int
        Iterations (at most, with ``ts``).
    efficiencies : array-like of shape (n_causes,), optional
        Default the column sums of ``response``.
    prior : array-like of shape (n_causes,) or hist.Hist, optional
        Default uniform; normalised.
    background : array-like of shape (n_effects,) or hist.Hist, optional
        Known counts per effect bin (fakes).
    ts : {"ks", "chi2"}, optional
        Stopping rule on successive iterations.
    ts_stopping : float
        Its threshold.
    cov_type : {"multinomial", "poisson"}, optional
        Propagate pyunfold's errors.
    data_err : array-like of shape (n_effects,), optional
        Errors of ``measured`` (default √n).
    response_err : array-like of shape (n_effects, n_causes), optional
        Errors of ``response``.
    efficiencies_err : array-like of shape (n_causes,), optional
        Errors of ``efficiencies``.
    full_output : bool
        Return the core's result object instead of the counts.

    Returns
    -------
    ndarray of shape (n_causes,), UnfoldedHist or result object
        The unfolded counts; an :class:`~otinverse.unfolding.hep.UnfoldedHist` for histogram
        inputs; with ``full_output=True`` the core's result (``unfolded``, ``history``,
        ``ts_values``, ``stat_cov``, ``sys_cov``, ``n_iter``).
    """
    named = {"prior": prior, "background": background, "data_err": data_err}
    gen_axis = None
    if is_hist(response) or is_hist(measured):
        response, measured, named, gen_axis = richardson_lucy_arguments(response, measured, named)
    prior, background, data_err = named["prior"], named["background"], named["data_err"]
    r = np.ascontiguousarray(as_float_array(response, "response", ndim=2))
    n = np.ascontiguousarray(as_float_array(measured, "measured", ndim=1))
    arrays = {
        name: None if v is None else np.ascontiguousarray(as_float_array(v, name, ndim=nd))
        for name, v, nd in (
            ("efficiencies", efficiencies, 1),
            ("prior", prior, 1),
            ("background", background, 1),
            ("data_err", data_err, 1),
            ("response_err", response_err, 2),
            ("efficiencies_err", efficiencies_err, 1),
        )
    }
    if isinstance(n_iter, bool) or not isinstance(n_iter, numbers.Integral) or n_iter < 0:
        raise InvalidArgumentError(f"n_iter: must be a non-negative integer, got {n_iter!r}")
    options = _core.RichardsonLucyOptions(
        max_iter=int(n_iter), ts=ts, ts_stopping=float(ts_stopping), cov_type=cov_type
    )
    res = _core.richardson_lucy_binned(r, n, options, **arrays)
    if full_output:
        return res
    return res.unfolded if gen_axis is None else richardson_lucy_hist(res, gen_axis, cov_type)
