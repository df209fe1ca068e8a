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
    """A closure test (returned by :func:`closure_test`): the unfolded pseudo-data against the
    known truth, binned, with sums over the bins ``b`` of the unfolded ``ŝ_b`` and truth ``t_b``.

    Each parameter is an attribute of the same name; ``ratio`` is unfolded / truth per bin.

    Parameters
    ----------
    unfolded : BinnedResult
        The binned unfolded pseudo-data, with bootstrap errors when replicas were asked for.
    truth : ndarray of shape (n_bins,)
        The binned truth, in events.
    bias2 : float
        Σ_b (ŝ_b − t_b)².
    variance : float
        Σ_b Var(ŝ_b) over the replicas (0 without replicas).
    bias2_corrected : float
        ``bias2 − variance``.
    mse : float
        ``bias2 + variance``.
    chi2 : float
        Σ_b (ŝ_b − t_b)²/Var(ŝ_b) over the bins with a positive variance (NaN without
        replicas).
    """

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
    """Unfolds pseudo-data whose truth is known and compares the binned result with that truth.

    Parameters
    ----------
    estimator : OTUnfolder or RichardsonLucyUnfolder
        The unfolding to test (cloned; left unfitted).
    pseudo_data : array-like
        Detector-level events to unfold, as ``fit``'s ``measured``.
    truth : array-like of shape (n,) or (n, d)
        Their known gen-level events.
    bins : int or array-like
        Bins of the observable, as :func:`numpy.histogram`'s (the truth is binned in the edges
        of the unfolded result).
    observable : callable or None, default=None
        Maps gen points ``(n, d)`` to ``(n,)`` values to bin; ``None``: the first coordinate.
    pseudo_data_weight : array-like of shape (n_pseudo,) or None, default=None
        Weights of the pseudo-data events (``None``: 1 each).
    truth_weight : array-like of shape (n,) or None, default=None
        Weights of the truth events, in the same units as the pseudo-data (events).
    n_replicas : int, default=20
        Bootstrap replicas of the pseudo-data for the variance (0: none, one fit).
    random_state : int, default=0
        Seed of the replicas (see :func:`bootstrap`).
    client : distributed.Client, str or None, default=None
        Runs the replicas on Dask (see :func:`bootstrap`).
    progress : bool, default=False
        Shows a tqdm bar over the replicas.
    **fit_kwargs
        The MC for ``fit``: ``gen``, ``reco``, ``fakes``, their weights, ...

    Returns
    -------
    ClosureResult
        The binned unfolded result and truth and the bias², variance, MSE and χ² over the bins.
    """
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
    """A scan of one hyper-parameter (returned by :func:`scan`).

    Each parameter is an attribute of the same name; ``best`` is the value of least MSE.

    Parameters
    ----------
    param : str
        The hyper-parameter scanned.
    values : list
        Its values, in the order given.
    bias2 : ndarray of shape (n_values,)
        The closure tests' squared bias per value.
    variance : ndarray of shape (n_values,)
        Their bootstrap variance per value.
    mse : ndarray of shape (n_values,)
        ``bias2 + variance`` per value.
    closures : list of ClosureResult
        The closure test at each value.
    """

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
    """Closure tests of ``estimator`` with the hyper-parameter ``param`` set to each of
    ``values``, with the same bootstrap seeds at every value, so that differences are not noise
    of the replicas. See the module docs for how to choose.

    Parameters
    ----------
    estimator : OTUnfolder or RichardsonLucyUnfolder
        The unfolding (cloned per value).
    param : str
        A parameter of ``estimator`` (e.g. ``"max_iter"`` or ``"reg"``).
    values : iterable
        The values to try, at least one.
    pseudo_data : array-like
        Detector-level events to unfold, as in :func:`closure_test`.
    truth : array-like of shape (n,) or (n, d)
        Their known gen-level events.
    bins : int or array-like
        Bins of the observable, as in :func:`closure_test`.
    **closure_kwargs
        The other keyword arguments of :func:`closure_test` (the MC, weights, ``n_replicas``,
        ...).

    Returns
    -------
    ScanResult
        The bias², variance and MSE per value, and the closure tests.
    """
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
