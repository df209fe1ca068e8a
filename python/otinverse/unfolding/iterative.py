"""pyunfold's ``iterative_unfold`` (D'Agostini's iterative Bayesian unfolding) as a drop-in:
same signature, defaults, argument checks, result keys, per-iteration DataFrame and callbacks,
with the propagated errors computed in the Rust core without pyunfold's dense derivatives
(its memory grows as bins⁴ and fails near 300 bins; here it is O(bins²) per thread).

Migrating is changing the import::

    from pyunfold import iterative_unfold            # before
    from otinverse.unfolding import iterative_unfold # after

pyunfold's callbacks (``pyunfold.callbacks.Logger``, ``SplineRegularizer`` or any subclass of
its ``Callback``) are accepted as they are; :class:`Logger`, :class:`SplineRegularizer`,
:class:`Callback` and :class:`Regularizer` here are equivalents for code that drops pyunfold.

The iteration itself (one matrix–vector product per step) runs in NumPy with pyunfold's exact
operations, so the central values are pyunfold's to the last bit and a regulariser can act
between steps; each step is recorded in :class:`otinverse._core.IbuErrorPropagator`, which
returns pyunfold's ``stat_err`` and ``sys_err``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.interpolate import UnivariateSpline
from scipy.special import gammaln

from .. import _core

_INPUT_NAMES = (
    "data",
    "data_err",
    "response",
    "response_err",
    "efficiencies",
    "efficiencies_err",
)


def _safe_inverse(x: np.ndarray) -> np.ndarray:
    """1/x with 0 where x is 0 (pyunfold's ``safe_inverse``)."""
    x = np.asarray(x)
    is_zero = x == 0
    with np.errstate(divide="ignore"):
        inv = 1 / x
    inv[is_zero] = 0
    return inv


# --- test statistics between successive iterations (pyunfold's, same formulas) -------------


class _TestStatistic:
    """The stopping rule: the statistic between an iteration and the previous one, and whether
    it is below ``tol`` (``inf`` before the first iteration)."""

    def __init__(self, tol: float, num_causes: int) -> None:
        self.tol = tol
        self.dof = num_causes
        self.stat = np.inf

    def pass_tol(self) -> bool:
        return bool(self.stat < self.tol)

    def calc(self, dist1: np.ndarray, dist2: np.ndarray) -> float:
        self.stat = self._value(np.array(dist1, copy=True), np.array(dist2, copy=True))
        return self.stat

    def _value(self, dist1: np.ndarray, dist2: np.ndarray) -> float:
        raise NotImplementedError


class _KS(_TestStatistic):
    """Kolmogorov–Smirnov: max |F₁ − F₂| of the normalised cumulative sums."""

    def _value(self, dist1, dist2):
        cs1 = np.cumsum(dist1) / np.sum(dist1)
        cs2 = np.cumsum(dist2) / np.sum(dist2)
        return np.max(np.abs(cs1 - cs2))


class _Chi2(_TestStatistic):
    """Reduced χ² of the two histograms (sums below 1 count as 1)."""

    def _value(self, dist1, dist2):
        n1, n2 = np.sum(dist1), np.sum(dist2)
        h_sum = dist1 + dist2
        h_sum[h_sum < 1] = 1.0
        h_dif = n2 * dist1 - n1 * dist2
        return np.sum(h_dif * h_dif / h_sum) / (n1 * n2) / self.dof


class _BF(_TestStatistic):
    """Log Bayes factor (BenZvi, Connolly, Pfendner & Westerhoff, ApJ 738 (2011) 82)."""

    def _value(self, dist1, dist2):
        n1, n2 = np.sum(dist1), np.sum(dist2)
        ln_b = gammaln(n1 + n2 + 2) - gammaln(n1 + 1) - gammaln(n2 + 1)
        for a, b in zip(dist1, dist2, strict=True):
            ln_b += gammaln(a + 1) + gammaln(b + 1) - gammaln(a + b + 2)
        return ln_b


class _RMD(_TestStatistic):
    """Maximum relative difference (sums below 1 count as 1)."""

    def _value(self, dist1, dist2):
        h_sum = dist1 + dist2
        h_sum[h_sum < 1] = 1.0
        return np.max(np.abs(dist1 - dist2) / h_sum)


_TEST_STATISTICS = {"chi2": _Chi2, "bf": _BF, "rmd": _RMD, "ks": _KS}


def _test_statistic(name: str) -> type[_TestStatistic]:
    if name in _TEST_STATISTICS:
        return _TEST_STATISTICS[name]
    raise ValueError(
        f"Invalid test statistic, {name}, entered. Must be in {_TEST_STATISTICS.keys()}"
    )


# --- callbacks (pyunfold's interface) ----------------------------------------------------


class Callback:
    """Base class of the callbacks of :func:`iterative_unfold` (pyunfold's ``Callback``)."""

    def on_unfolding_begin(self, status: dict | None = None) -> None:
        pass

    def on_unfolding_end(self, status: dict | None = None) -> None:
        pass

    def on_iteration_begin(self, iteration: int, status: dict | None = None) -> None:
        pass

    def on_iteration_end(self, iteration: int, status: dict | None = None) -> None:
        pass


class Regularizer:
    """Marks a callback that smooths ``status['unfolded']`` after each iteration; at most one
    per call (pyunfold's ``Regularizer``)."""


class Logger(Callback):
    """Writes ``Iteration i: ts = …, ts_stopping = …`` to stdout after each iteration."""

    def on_iteration_end(self, iteration: int, status: dict | None = None) -> None:
        assert status is not None
        sys.stdout.write(
            f"Iteration {iteration}: ts = {status['ts_iter']:0.4f}, "
            f"ts_stopping = {status['ts_stopping']}\n"
        )


class SplineRegularizer(Callback, Regularizer):
    """Smooths the unfolded distribution after each iteration (pyunfold's ``SplineRegularizer``).

    A :class:`scipy.interpolate.UnivariateSpline` over the bin index, per group of causes if
    ``groups`` labels each cause bin.

    Parameters
    ----------
    degree : int
        The spline's degree.
    smooth : float or None
        Its smoothing factor (``None``: scipy's default).
    groups : array of shape (n_causes,) or None
        A label per cause bin; each group is smoothed on its own.
    """

    def __init__(self, degree: int = 3, smooth: float | None = None, groups=None) -> None:
        self.degree = degree
        self.smooth = smooth
        self.groups = np.asarray(groups) if groups is not None else None

    def on_iteration_end(self, iteration: int, status: dict | None = None) -> None:
        assert status is not None
        y = status["unfolded"]
        x = np.arange(len(y), dtype=float)
        if self.groups is None:
            status["unfolded"] = UnivariateSpline(x, y, k=self.degree, s=self.smooth)(x)
            return
        if len(self.groups) != len(y):
            raise ValueError(
                "Invalid groups array. There should be an entry for each cause bin. However, "
                f"got len(groups)={len(self.groups)} while there are {len(y)} cause bins."
            )
        fitted = np.empty(len(y))
        for group in np.unique(self.groups):
            mask = self.groups == group
            fitted[mask] = UnivariateSpline(x[mask], y[mask], k=self.degree, s=self.smooth)(x[mask])
        status["unfolded"] = fitted


def _foreign_classes(name: str) -> tuple[type, ...]:
    """pyunfold's class ``name`` if pyunfold's callbacks are loaded (its objects can only exist
    then), so that they are accepted without importing pyunfold."""
    module = sys.modules.get("pyunfold.callbacks")
    return (getattr(module, name),) if module is not None else ()


def _split_callbacks(callbacks) -> tuple[list, Any]:
    """(the callbacks that are not the regulariser, the regulariser or None), with pyunfold's
    checks and messages."""
    callback_types = (Callback, *_foreign_classes("Callback"))
    if callbacks is None:
        callbacks = []
    elif isinstance(callbacks, callback_types):
        callbacks = [callbacks]
    else:
        invalid = [c for c in callbacks if not isinstance(c, callback_types)]
        if invalid:
            raise TypeError(f"Found non-callback object in callbacks: {invalid}")
    regularizers = [
        c for c in callbacks if isinstance(c, (Regularizer, *_foreign_classes("Regularizer")))
    ]
    if len(regularizers) > 1:
        raise NotImplementedError("Multiple regularizer callbacks where provided.")
    regularizer = regularizers[0] if regularizers else None
    return [c for c in callbacks if c is not regularizer], regularizer


def _reads_errors(callback) -> bool:
    """Whether ``callback`` may read the errors of intermediate iterations: every callback but
    the loggers and regularisers of this module and of pyunfold."""
    known = (Logger, SplineRegularizer, *_foreign_classes("Logger"))
    known += _foreign_classes("SplineRegularizer")
    return type(callback) not in known


# --- iterative_unfold ----------------------------------------------------------------------


def _validated_inputs(inputs: dict[str, Any]) -> dict[str, np.ndarray]:
    """pyunfold's checks (None, negative entries; same ValueError messages), and finiteness."""
    for name, value in inputs.items():
        if value is None:
            raise ValueError(f"The input for {name} must not be None.")
        elif np.amin(value) < 0:
            raise ValueError(f"The items in {name} must be non-negative.")
        elif not np.all(np.isfinite(value)):
            raise ValueError(f"The items in {name} must be finite.")
    return {name: np.asarray(value) for name, value in inputs.items()}


def _setup_prior(prior, num_causes: int) -> np.ndarray:
    """The normalised prior, uniform by default, with pyunfold's checks and messages."""
    if prior is None:
        prior = np.full(num_causes, 1 / num_causes)
    elif isinstance(prior, (list, tuple, np.ndarray)) or hasattr(prior, "__array__"):
        prior = np.asarray(prior)
    else:
        raise TypeError(f"prior must be either None or array_like, but got {type(prior)}")
    if not np.allclose(np.sum(prior), 1):
        raise ValueError(
            "Prior (which is an array of probabilities) does not add to 1. "
            f"sum(prior) = {np.sum(prior)}"
        )
    if np.amin(prior) < 0:
        raise ValueError(
            "Input prior has negative values. Since the values of prior are interpreted as "
            "probabilities, they cannot be negative."
        )
    return prior


def _check_shapes(data: np.ndarray, response: np.ndarray, num_causes: int) -> None:
    if len(data) != response.shape[0]:
        raise ValueError(
            f"Inconsistent number of effect bins. Observed data has {len(data)} effect bins, "
            f"while response matrix has {response.shape[0]} effect bins."
        )
    if response.ndim != 2:
        raise ValueError(
            "Response matrix must be 2-dimensional, but got a "
            f"{response.ndim}-dimensional response matrix instead"
        )
    if response.shape[1] != num_causes:
        raise ValueError(
            "Trying to unfold with the wrong number of causes. Response matrix has "
            f"{response.shape[1]} cause bins, while prior has {num_causes} cause bins."
        )


class _Smearer:
    """One D'Agostini step, with pyunfold's exact NumPy operations (``Mixer.smear``)."""

    def __init__(self, data: np.ndarray, response: np.ndarray, efficiencies: np.ndarray):
        self.data = data
        self.response = response
        self.eff_inv = _safe_inverse(efficiencies)

    def __call__(self, n_c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the new counts, the unfolding matrix M with new = data·M)."""
        f_inv = _safe_inverse(np.dot(self.response, n_c))
        unfolding_matrix = self.response * (n_c * self.eff_inv) * f_inv.reshape(-1, 1)
        return np.dot(self.data, unfolding_matrix), unfolding_matrix


def _error_propagator(arrays: dict[str, np.ndarray], cov_type: str) -> _core.IbuErrorPropagator:
    as_float = {name: np.asarray(a, dtype=np.float64) for name, a in arrays.items()}
    return _core.IbuErrorPropagator(
        as_float["response"],
        as_float["data"],
        as_float["data_err"],
        as_float["efficiencies"],
        cov_type,
        efficiencies_err=as_float["efficiencies_err"],
        response_err=as_float["response_err"],
    )


def iterative_unfold(
    data=None,
    data_err=None,
    response=None,
    response_err=None,
    efficiencies=None,
    efficiencies_err=None,
    prior=None,
    ts="ks",
    ts_stopping=0.01,
    max_iter=100,
    cov_type="multinomial",
    return_iterations=False,
    callbacks=None,
    *,
    propagate_errors=True,
):
    """Iterative Bayesian unfolding (D'Agostini, NIM A 362 (1995) 487) with errors propagated
    as in Adye (arXiv:1105.1160): pyunfold's ``iterative_unfold``, same arguments and results.

    Parameters
    ----------
    data, data_err : array_like
        Observed counts per effect bin and their errors.
    response, response_err : array_like
        Response matrix P(E|C), (effect bins × cause bins), and its errors (used with
        ``cov_type='poisson'``).
    efficiencies, efficiencies_err : array_like
        Detection efficiency per cause bin and its error (``(η/δη)²`` is the number of MC
        events behind a cause column with ``cov_type='multinomial'``).
    prior : array_like, optional
        Starting distribution over the causes, summing to 1 (default: uniform).
    ts : {'ks', 'chi2', 'bf', 'rmd'}
        Test statistic between successive iterations for the stopping rule.
    ts_stopping : float
        Stop once the test statistic is below this value.
    max_iter : int
        At most this many iterations.
    cov_type : {'multinomial', 'poisson'}
        Form of the response's covariance for ``sys_err`` (case-insensitive).
    return_iterations : bool
        Return a :class:`pandas.DataFrame` with one row per iteration instead of the last one
        as a dict.
    callbacks : Callback or list of Callback, optional
        pyunfold's callbacks, or this module's equivalents; at most one regulariser.
    propagate_errors : bool, keyword-only
        False skips the error propagation: ``stat_err`` and ``sys_err`` are None (an
        otinverse addition; pyunfold always propagates).

    Returns
    -------
    dict or pandas.DataFrame
        Keys (columns) ``unfolded``, ``stat_err``, ``sys_err``, ``num_iterations``,
        ``unfolding_matrix``, ``ts_iter``, ``ts_stopping``, as pyunfold. The errors of
        intermediate iterations are computed when they can be seen (``return_iterations`` or a
        callback other than the logger and regulariser); otherwise for the last one only.
    """
    arrays = _validated_inputs(
        dict(zip(_INPUT_NAMES, (data, data_err, response, response_err, efficiencies,
                                efficiencies_err), strict=True))
    )  # fmt: skip
    num_causes = len(arrays["efficiencies"])
    prior = _setup_prior(prior, num_causes)
    n_c = np.sum(arrays["data"]) * prior
    _check_shapes(arrays["data"], arrays["response"], len(n_c))
    if cov_type.lower() not in ("multinomial", "poisson"):
        raise ValueError(
            f'Invalid pec_cov_type entered: {cov_type}. Must be either "multinomial" or "poisson".'
        )
    ts_func = _test_statistic(ts)(tol=ts_stopping, num_causes=num_causes)
    if not (isinstance(max_iter, (int, np.integer)) and max_iter >= 1):
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    propagator = _error_propagator(arrays, cov_type.lower()) if propagate_errors else None
    smear = _Smearer(arrays["data"], arrays["response"], arrays["efficiencies"])
    return _unfold(n_c, smear, ts_func, max_iter, callbacks, propagator, return_iterations)


def _unfold(n_c, smear, ts_func, max_iter, callbacks, propagator, return_iterations):
    """pyunfold's iteration loop (``pyunfold.unfold._unfold``): callbacks around each step, the
    regulariser between the step and the stopping rule, the last iteration unregularised."""
    callbacks, regularizer = _split_callbacks(callbacks)
    each_iteration = return_iterations or any(_reads_errors(c) for c in callbacks)
    for c in callbacks:
        c.on_unfolding_begin(status=None)
    current_n_c = n_c.copy()
    iterations: list[dict] = []
    while not ts_func.pass_tol() and len(iterations) < max_iter:
        iteration = len(iterations)
        for c in callbacks:
            c.on_iteration_begin(iteration=iteration, status=None)
        unfolded, unfolding_matrix = smear(current_n_c)
        if propagator is not None:
            propagator.step(np.asarray(current_n_c, np.float64), np.asarray(unfolded, np.float64))
        status = {
            "unfolded": unfolded,
            "stat_err": None,
            "sys_err": None,
            "num_iterations": iteration + 1,
            "unfolding_matrix": unfolding_matrix,
        }
        if propagator is not None and each_iteration:
            status["stat_err"], status["sys_err"] = propagator.stat_err(), propagator.sys_err()
        if regularizer is not None:
            unregularized = status["unfolded"].copy()
            regularizer.on_iteration_end(iteration=iteration + 1, status=status)
        status["ts_iter"] = ts_func.calc(status["unfolded"], current_n_c)
        status["ts_stopping"] = ts_func.tol
        for c in callbacks:
            c.on_iteration_end(iteration=iteration + 1, status=status)
        iterations.append(status)
        current_n_c = status["unfolded"].copy()

    if propagator is not None and not each_iteration:
        status["stat_err"], status["sys_err"] = propagator.stat_err(), propagator.sys_err()
    if return_iterations:
        import pandas as pd

        result = pd.DataFrame.from_records(iterations)
        if regularizer is not None:
            # The last iteration is reported unregularised (pyunfold).
            result.at[result.index[-1], "unfolded"] = unregularized
    else:
        result = dict(status)
        if regularizer is not None:
            result["unfolded"] = unregularized
    for c in callbacks:
        c.on_unfolding_end(status=status)
    return result


__all__: Sequence[str] = [
    "Callback",
    "Logger",
    "Regularizer",
    "SplineRegularizer",
    "iterative_unfold",
]
