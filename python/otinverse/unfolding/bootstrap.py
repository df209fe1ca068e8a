"""Bootstrap uncertainties of an unfolded result, the way OmniFold users know them: every
replica refits the unfolding with Poisson(1) weights on the measured events (data statistics)
or, separately, on the MC events and fakes (response statistics). Replicas are independent fits:
serial by default, on ``dask.distributed`` when given a ``Client`` or a scheduler address, with
the same replicas for the same seed either way."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import clone

from .._core import InvalidArgumentError
from .._validation import check_int, check_option
from .estimators import as_problem
from .hep import is_hist, observable_values, unfolded_hist

__all__ = ["BinnedResult", "BootstrapResult", "bootstrap"]


@dataclass(frozen=True)
class BinnedResult:
    """A binned unfolded result with its bootstrap uncertainties (from
    :meth:`BootstrapResult.histogram` or :func:`closure_test`).

    Each parameter is an attribute of the same name; values are in events per bin (or a
    density, as asked).

    Parameters
    ----------
    edges : ndarray of shape (n_bins + 1,)
        Bin edges of the observable.
    values : ndarray of shape (n_bins,)
        The nominal fit, binned.
    std : ndarray of shape (n_bins,)
        Standard deviation per bin over the replicas (zeros without replicas).
    cov : ndarray of shape (n_bins, n_bins)
        Covariance of the bins over the replicas.
    corr : ndarray of shape (n_bins, n_bins)
        Correlation matrix (NaN where a bin has no spread).
    replicas : ndarray of shape (n_replicas, n_bins)
        The binned replicas.
    """

    edges: np.ndarray
    values: np.ndarray
    std: np.ndarray
    cov: np.ndarray
    corr: np.ndarray
    replicas: np.ndarray


def _replica_factors(problem, source, seed):
    """Poisson(1) factors of one replica, drawn from its own stream."""
    rng = np.random.default_rng(seed)
    if source == "data":
        return {"data_factor": rng.poisson(1.0, problem.measured.shape[0]).astype(float)}
    shape = problem.n_gen if problem.response is not None else (problem.n_gen, problem.per_point)
    out = {"mc_factor": rng.poisson(1.0, shape).astype(float)}
    if problem.fakes is not None:
        out["fake_factor"] = rng.poisson(1.0, problem.fakes.shape[0]).astype(float)
    return out


def _fit_replica(estimator, problem, source, seed):
    """One replica's unfolded weights (a top-level function, so Dask can ship it)."""
    replica = problem.replica(**_replica_factors(problem, source, seed))
    return clone(estimator).set_params(verbose=False).fit_problem(replica).weights_


class BootstrapResult:
    """Nominal fit and bootstrap replicas of the unfolded weights (returned by
    :func:`bootstrap`).

    Each parameter is an attribute of the same name.

    Parameters
    ----------
    estimator : OTUnfolder or RichardsonLucyUnfolder
        The nominal fit.
    replicas : ndarray of shape (n_replicas, L)
        Unfolded weights of the ``L`` gen points, in events, one row per replica.
    source : {"data", "mc"}
        What the replicas resampled: the measured events or the MC events and fakes.
    seeds : list of numpy.random.SeedSequence
        The stream of each replica.
    """

    def __init__(self, estimator, replicas, source, seeds):
        self.estimator = estimator
        self.replicas = replicas
        self.source = source
        self.seeds = seeds

    def _observable(self, observable):
        gen = self.estimator.gen_
        values = gen[:, 0] if observable is None else np.asarray(observable(gen), dtype=float)
        if values.shape != (gen.shape[0],):
            raise InvalidArgumentError(
                f"observable: must return one value per gen point ({gen.shape[0]},), "
                f"got shape {values.shape}"
            )
        return values

    def histogram(self, bins, observable=None, *, density=False):
        """Binned unfolded result for any binning of any observable.

        ``observable`` maps the gen points (L, d) to (L,) (default: the first coordinate);
        ``bins`` as :func:`numpy.histogram`. Returns a :class:`BinnedResult`: ``edges``,
        ``values`` (the nominal fit, events per bin, or a density with ``density=True``),
        ``std``, ``cov`` and ``corr`` over the replicas, and ``replicas`` (n_replicas, n_bins).
        """
        x = self._observable(observable)
        values, edges = np.histogram(x, bins=bins, weights=self.estimator.weights_)
        reps = np.array([np.histogram(x, bins=edges, weights=w)[0] for w in self.replicas])
        if density:
            widths = np.diff(edges)
            values = values / (values.sum() * widths)
            reps = reps / (reps.sum(axis=1, keepdims=True) * widths)
        cov = np.atleast_2d(np.cov(reps, rowvar=False))
        std = np.sqrt(np.diag(cov))
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = cov / np.outer(std, std)
        return BinnedResult(edges=edges, values=values, std=std, cov=cov, corr=corr, replicas=reps)

    def to_hist(self, bins, observable=None):
        """The nominal fit binned as a ``hist.Hist`` with ``Weight()`` storage whose variances
        are those over the replicas, with the replicas' covariance beside it: an
        :class:`~otinverse.unfolding.hep.UnfoldedHist`. ``bins`` and ``observable`` as the
        estimators' ``to_hist`` (default: the gen points). Needs the ``hep`` extra (``hist``)."""
        return unfolded_hist(
            observable_values(self.estimator.gen_, observable),
            self.estimator.weights_,
            bins,
            replicas=self.replicas,
            errors=f"bootstrap ({self.source})",
        )

    def expectation(self, func):
        """``(value, error)`` of the mean of ``func`` (gen points → (L,)) under the unfolded
        distribution: the nominal value and the standard deviation over the replicas."""
        x = self._observable(func)
        value = self.estimator.normalized_weights_ @ x
        reps = self.replicas @ x / self.replicas.sum(axis=1)
        return float(value), float(reps.std(ddof=1))

    def total(self):
        """``(value, error)`` of the unfolded number of true events."""
        return float(self.estimator.weights_.sum()), float(self.replicas.sum(axis=1).std(ddof=1))


def _run_dask(client, estimator, problem, source, seeds, bar):
    from distributed import Client, as_completed

    own = not isinstance(client, Client)
    client = Client(client) if own else client
    try:
        # hash=False: fresh keys per run. With content-hashed keys, a second bootstrap of the same
        # problem reuses the first run's keys while the scheduler is still releasing them, and its
        # replicas fail with "lost dependencies".
        est_f, prob_f = client.scatter([estimator, problem], broadcast=True, hash=False)
        futures = [client.submit(_fit_replica, est_f, prob_f, source, s, pure=False) for s in seeds]
        index = {f.key: i for i, f in enumerate(futures)}
        out = [None] * len(seeds)
        for fut in as_completed(futures):
            out[index[fut.key]] = fut.result()
            if bar is not None:
                bar.update(1)
        return out
    finally:
        if own:
            client.close()


def bootstrap(
    estimator,
    measured,
    *,
    n_replicas=100,
    source="data",
    random_state=0,
    client=None,
    progress=True,
    **fit_kwargs,
):
    """Fits ``estimator`` to ``measured``, then ``n_replicas`` refits with Poisson(1) weights on
    the measured events (``source="data"``) or on the MC samples and fakes (``source="mc"``).

    Replica ``i`` draws from the stream ``SeedSequence(random_state).spawn(n_replicas)[i]``, so
    the same seed gives the same replicas serially and on Dask.

    Parameters
    ----------
    estimator : OTUnfolder or RichardsonLucyUnfolder
        The unfolding to run (cloned; left unfitted).
    measured : array-like or hist.Hist
        The measured events, as ``fit`` takes them (a histogram only with ``source="mc"``: the
        data bootstrap resamples events).
    n_replicas : int, default=100
        Number of replicas (at least 2).
    source : {"data", "mc"}, default="data"
        Which statistics the replicas resample.
    random_state : int, default=0
        Seed of the replicas' streams.
    client : distributed.Client, str or None, default=None
        ``None`` runs the replicas serially; a client, or a scheduler address (a client is
        opened and closed around the run), runs them on Dask.
    progress : bool, default=True
        Shows a tqdm bar over the replicas.
    **fit_kwargs
        The other arguments of the estimator's ``fit`` (``gen``, ``reco``, ``fakes``, weights,
        ...).

    Returns
    -------
    BootstrapResult
        The nominal fit and the replicas' unfolded weights.
    """
    n_replicas = check_int(n_replicas, "n_replicas", 2)
    check_option(source, "source", {"data", "mc"})
    if isinstance(random_state, bool) or not isinstance(random_state, int | np.integer):
        raise InvalidArgumentError(f"random_state: must be an integer, got {random_state!r}")
    if source == "data" and is_hist(measured):
        # Poisson(1) per bin would scale whole bins (variance n² instead of n): replicas of
        # binned data need the events.
        raise InvalidArgumentError(
            "measured: the data bootstrap resamples events; pass the events, not a histogram"
        )
    problem = as_problem(measured, **fit_kwargs)
    nominal = clone(estimator).fit_problem(problem)
    seeds = np.random.SeedSequence(int(random_state)).spawn(n_replicas)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_replicas, desc=f"bootstrap ({source})")
    try:
        if client is None:
            reps = []
            for s in seeds:
                reps.append(_fit_replica(estimator, problem, source, s))
                if bar is not None:
                    bar.update(1)
        else:
            reps = _run_dask(client, estimator, problem, source, seeds, bar)
    finally:
        if bar is not None:
            bar.close()
    return BootstrapResult(nominal, np.array(reps), source, seeds)
