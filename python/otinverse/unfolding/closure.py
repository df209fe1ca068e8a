"""Choosing the regularisation: closure tests and bias/variance scans.

Both the OT unfolding (ε = ``reg``) and Richardson–Lucy are regularised by their iteration count
``max_iter``: few iterations stay close to the MC prior (bias), many fit the
statistical fluctuations of the data (variance). A **closure test** unfolds pseudo-data whose
truth is known — an independent MC sample, or the MC reweighted to a different truth — and
compares the binned result with that truth. A **scan** repeats it over a hyper-parameter and
reports, per value, the squared bias Σ_b (ŝ_b − t_b)², the variance Σ_b Var(ŝ_b) from
bootstrap replicas of the pseudo-data, and their sum, the mean squared error.

Recommendation: scan on pseudo-data with the statistics of the real data and a truth that
differs from the MC prior as much as the data plausibly does (e.g. the MC reweighted), and
take the value of least MSE; where the MSE is flat, prefer the less regularised value (more
iterations, smaller ε), because the bias does not show up in the bootstrap errors while the
variance does. Then quote the closure test's remaining deviation at that value as a systematic
uncertainty: the bootstrap covers statistics only. The squared bias
includes one statistical fluctuation of the pseudo-data (its expectation is bias² + variance
at the truth sample's statistics); ``bias2_corrected`` subtracts the bootstrap variance, which
is the better estimate when pseudo-data and truth come from the same events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import clone

from .._core import InvalidArgumentError
from .bootstrap import BinnedResult, bootstrap

__all__ = ["ClosureResult", "ScanResult", "closure_test", "scan"]


@dataclass(frozen=True)
class ClosureResult:
    """A closure test: the binned unfolded pseudo-data ``unfolded`` (:class:`BinnedResult`,
    with bootstrap errors when replicas were asked for), the binned ``truth``, and summary
    numbers over the bins: ``bias2`` Σ (ŝ − t)², ``variance`` Σ Var(ŝ) (0 without replicas),
    ``bias2_corrected`` (bias² − variance), ``mse`` (bias² + variance) and ``chi2``
    Σ (ŝ − t)²/Var(ŝ) over bins with a positive variance (NaN without replicas)."""

    unfolded: BinnedResult
    truth: np.ndarray
    bias2: float
    variance: float
    bias2_corrected: float
    mse: float
    chi2: float

    @property
    def ratio(self):
        """Unfolded / truth per bin (NaN where the truth is empty)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.truth > 0, self.unfolded.values / self.truth, np.nan)


def _binned_truth(truth, truth_weight, edges, observable):
    t = np.asarray(truth, dtype=float)
    t = t.reshape(len(t), -1)
    x = t[:, 0] if observable is None else np.asarray(observable(t), dtype=float)
    w = None if truth_weight is None else np.asarray(truth_weight, dtype=float)
    if w is not None and w.shape != x.shape:
        raise InvalidArgumentError(
            f"truth_weight: has shape {w.shape} but truth has {x.shape[0]} events"
        )
    return np.histogram(x, bins=edges, weights=w)[0]


def closure_test(
    estimator,
    pseudo_data,
    truth,
    *,
    bins,
    observable=None,
    pseudo_data_weight=None,
    truth_weight=None,
    n_replicas=20,
    random_state=0,
    client=None,
    progress=False,
    **fit_kwargs,
):
    """Unfolds ``pseudo_data`` (detector-level events with weights ``pseudo_data_weight``) with
    ``estimator`` and the MC in ``fit_kwargs`` (``gen``, ``reco``, ``fakes``, ...), bins the
    result and the known ``truth`` (gen-level events with ``truth_weight``, in the same units:
    events) in ``bins`` of ``observable`` (gen points → (n,); default the first coordinate),
    with ``n_replicas`` bootstrap replicas of the pseudo-data for the variance (0: none).
    Returns a :class:`ClosureResult`."""
    if n_replicas:
        boot = bootstrap(
            estimator,
            pseudo_data,
            n_replicas=n_replicas,
            source="data",
            random_state=random_state,
            client=client,
            progress=progress,
            measured_weight=pseudo_data_weight,
            **fit_kwargs,
        )
        unfolded = boot.histogram(bins, observable)
    else:
        est = clone(estimator).fit(pseudo_data, measured_weight=pseudo_data_weight, **fit_kwargs)
        gen = est.gen_
        x = gen[:, 0] if observable is None else np.asarray(observable(gen), dtype=float)
        values, edges = np.histogram(x, bins=bins, weights=est.weights_)
        zeros = np.zeros((values.size, values.size))
        unfolded = BinnedResult(edges, values, np.zeros(values.size), zeros, zeros, values[None])
    t = _binned_truth(truth, truth_weight, unfolded.edges, observable)
    dev2 = (unfolded.values - t) ** 2
    var = unfolded.std**2
    pos = var > 0
    chi2 = float((dev2[pos] / var[pos]).sum()) if n_replicas else float("nan")
    return ClosureResult(
        unfolded=unfolded,
        truth=t,
        bias2=float(dev2.sum()),
        variance=float(var.sum()),
        bias2_corrected=float(dev2.sum() - var.sum()),
        mse=float(dev2.sum() + var.sum()),
        chi2=chi2,
    )


@dataclass(frozen=True)
class ScanResult:
    """A scan of ``param`` over ``values``: per value ``bias2``, ``variance``, ``mse`` (arrays)
    and the :class:`ClosureResult` s in ``closures``; ``best`` is the value of least MSE."""

    param: str
    values: list
    bias2: np.ndarray
    variance: np.ndarray
    mse: np.ndarray
    closures: list

    @property
    def best(self):
        return self.values[int(np.argmin(self.mse))]


def scan(estimator, param, values, pseudo_data, truth, *, bins, **closure_kwargs):
    """Closure tests (:func:`closure_test`, same keyword arguments) of ``estimator`` with the
    hyper-parameter ``param`` set to each of ``values`` (e.g. ``"max_iter"`` or ``"reg"``); the
    same bootstrap seeds at every value, so differences are not noise of the
    replicas. Returns a :class:`ScanResult`; see the module docs for how to choose."""
    values = list(values)
    if not values:
        raise InvalidArgumentError("values: give at least one value to scan")
    if param not in estimator.get_params():
        raise InvalidArgumentError(
            f"param: {param!r} is not a parameter of {type(estimator).__name__}"
        )
    closures = [
        closure_test(
            clone(estimator).set_params(**{param: v}),
            pseudo_data,
            truth,
            bins=bins,
            **closure_kwargs,
        )
        for v in values
    ]
    return ScanResult(
        param=param,
        values=values,
        bias2=np.array([c.bias2 for c in closures]),
        variance=np.array([c.variance for c in closures]),
        mse=np.array([c.mse for c in closures]),
        closures=closures,
    )
