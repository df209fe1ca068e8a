"""Optimal-transport domain adaptation in POT's ``ot.da`` vocabulary, as scikit-learn estimators.

POT's ``ot.da.SinkhornTransport`` takes ``fit(Xs, ys, Xt, yt)``; here the source samples are the
scikit-learn ``X``, their labels ``y``, and the target samples the keyword ``Xt``::

    SinkhornTransport(reg_e=0.1, metric="atan", norm="median").fit(X, y, Xt=Xt)

Hyper-parameters keep POT's names (``reg_e``, ``metric``, ``norm``, ``max_iter``, ``tol``); the
fitted state (``coupling_``, ``cost_``, ``mu_s_``, ``mu_t_``, ``xs_``, ``xt_``) ends in ``_``;
``transform`` is the barycentric mapping and ``transform_labels`` the label propagation of
Redko et al. (2019), both as POT computes them.
"""

from __future__ import annotations

import numbers
from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import check_array
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from .._validation import ValidatedParams
from ..costs._ground_cost import GROUND_COSTS, ground_cost
from ..solvers._sinkhorn import sinkhorn

__all__ = ["EMDTransport", "SinkhornTransport"]

# POT's own metric names (ot.dist) and cost normalisations (ot.utils.cost_normalization).
_POT_METRICS = {"sqeuclidean", "euclidean", "cityblock", "cosine", "chebyshev", "minkowski"}
_NORMS = {"median", "max", "log", "loglog"}


def _pot():
    """POT, imported on first use: it imports every installed tensor library (JAX with the
    ``learn`` extra), which ``import otinverse`` must not."""
    import ot

    return ot


class _BaseTransport(ValidatedParams, TransformerMixin, BaseEstimator):
    _parameter_constraints: ClassVar[dict] = {
        "metric": [
            StrOptions(_POT_METRICS | set(GROUND_COSTS)),
            Interval(numbers.Real, 0, None, closed="neither"),
        ],
        "norm": [StrOptions(_NORMS), None],
    }

    def _cost(self, Xs, Xt):
        """``M`` between source and target samples, then POT's normalisation ``norm``."""
        if isinstance(self.metric, str) and self.metric in _POT_METRICS:
            M = _pot().dist(Xs, Xt, metric=self.metric)
        else:
            M = ground_cost(Xs, Xt, cost=self.metric)
        return _pot().utils.cost_normalization(M, self.norm)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, *, Xt):
        """Couples the source samples ``X`` (labels ``y``, optional) with the target ``Xt``.

        Parameters
        ----------
        X : array-like of shape (n_source, n_features)
            Source samples (POT's ``Xs``).
        y : array-like of shape (n_source,), optional
            Source labels (POT's ``ys``), kept for :meth:`transform_labels`.
        Xt : array-like of shape (n_target, n_features)
            Target samples (POT's ``Xt``), keyword-only.
        """
        if y is None:
            X = validate_data(self, X, dtype=np.float64)
            self.ys_ = None
        else:
            X, y = validate_data(self, X, y, dtype=np.float64)
            self.ys_ = np.asarray(y)
            self.classes_ = np.unique(self.ys_)
        Xt = check_array(Xt, dtype=np.float64, input_name="Xt")
        if Xt.shape[1] != X.shape[1]:
            raise ValueError(f"Xt: has {Xt.shape[1]} features but X has {X.shape[1]}")
        self.xs_, self.xt_ = X, Xt
        self.cost_ = self._cost(X, Xt)
        self.mu_s_ = np.full(X.shape[0], 1.0 / X.shape[0])
        self.mu_t_ = np.full(Xt.shape[0], 1.0 / Xt.shape[0])
        self.coupling_ = self._coupling(self.mu_s_, self.mu_t_, self.cost_)
        return self

    def transform(self, X):
        """Barycentric mapping of source samples onto the target domain.

        The fitted source samples go to ``Σ_j γ_ij xt_j / Σ_j γ_ij``; new samples take the
        displacement of their nearest fitted source sample (POT's out-of-sample map).
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        mapped = (self.coupling_ / self.coupling_.sum(axis=1, keepdims=True)) @ self.xt_
        if X.shape == self.xs_.shape and np.array_equal(X, self.xs_):
            return mapped
        nearest = _pot().dist(X, self.xs_).argmin(axis=1)
        return mapped[nearest] + X - self.xs_[nearest]

    def transform_labels(self, y=None):
        """Target label masses ``Σ_{i: y_i = c} γ_ij / Σ_i γ_ij``, shape (n_target, n_classes).

        Columns follow ``np.unique(y)`` (``classes_`` for the fitted labels); ``y`` defaults to
        the fitted labels.
        """
        check_is_fitted(self)
        y = self.ys_ if y is None else np.asarray(y)
        if y is None or y.shape != (self.xs_.shape[0],):
            raise ValueError(f"y: needs one label per source sample ({self.xs_.shape[0]})")
        classes, codes = np.unique(y, return_inverse=True)
        transp = self.coupling_ / self.coupling_.sum(axis=0, keepdims=True)
        masks = np.eye(len(classes))[codes]
        return (masks.T @ transp).T


class SinkhornTransport(_BaseTransport):
    """Entropic OT domain adaptation (Courty et al. 2014) with otinverse's log-domain Sinkhorn.

    Parameters
    ----------
    reg_e : float, default=1.0
        Entropic regularisation, in units of the normalised cost.
    metric : str or float, default="sqeuclidean"
        POT's ``ot.dist`` metrics (``"sqeuclidean"``, ``"euclidean"``, ...) or a distance
        function ``h(‖x − y‖)`` of :func:`otinverse.ground_cost` (``"log1p"``, ``"atan"``,
        ``"distance"``, ``"sqdistance"``, or ``p > 0`` for ``d^p``).
    norm : {None, "median", "max", "log", "loglog"}, default=None
        POT's cost normalisation; ``"log"`` is the concave ``log(1 + M)``, ``"median"`` makes
        ``reg_e`` relative to the median cost.
    max_iter : int, default=10000
    tol : float, default=1e-9
        Relative L1 marginal error at which Sinkhorn stops.
    """

    _parameter_constraints: ClassVar[dict] = {
        **_BaseTransport._parameter_constraints,
        "reg_e": [Interval(numbers.Real, 0, None, closed="neither")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
    }

    def __init__(self, reg_e=1.0, *, metric="sqeuclidean", norm=None, max_iter=10_000, tol=1e-9):
        self.reg_e = reg_e
        self.metric = metric
        self.norm = norm
        self.max_iter = max_iter
        self.tol = tol

    def _coupling(self, a, b, M):
        res = sinkhorn(a, b, M, self.reg_e, max_iter=self.max_iter, tol=self.tol)
        self.n_iter_, self.converged_ = res.n_iter, res.converged
        return res.plan


class EMDTransport(_BaseTransport):
    """Exact OT domain adaptation: POT's network simplex (``ot.emd``) on the same costs.

    Parameters
    ----------
    metric, norm : as :class:`SinkhornTransport`.
    max_iter : int, default=1_000_000
        Network-simplex iterations (POT's ``numItermax``).
    """

    _parameter_constraints: ClassVar[dict] = {
        **_BaseTransport._parameter_constraints,
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
    }

    def __init__(self, *, metric="sqeuclidean", norm=None, max_iter=1_000_000):
        self.metric = metric
        self.norm = norm
        self.max_iter = max_iter

    def _coupling(self, a, b, M):
        return _pot().emd(a, b, M, numItermax=self.max_iter)
