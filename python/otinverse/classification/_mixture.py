"""Mixture of multivariate Bernoulli distributions, fitted by EM in log space.

Barton & Tai (§3.2, §4.2) model each digit class by a few Bernoulli-mixture components and use
their means ``θ_k`` as image-retrieval prototypes. scikit-learn has no Bernoulli mixture.
"""

from __future__ import annotations

import numbers
import warnings
from typing import ClassVar

import numpy as np
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, DensityMixin, _fit_context
from sklearn.cluster import kmeans_plusplus
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from .._validation import ValidatedParams

__all__ = ["BernoulliMixture"]


class BernoulliMixture(ValidatedParams, DensityMixin, BaseEstimator):
    """Mixture of independent-pixel Bernoullis, ``p(x) = Σ_k π_k Π_d θ_kd^x_d (1−θ_kd)^(1−x_d)``.

    ``X`` holds values in [0, 1] (binary, or grey levels read as soft Bernoulli outcomes).

    Parameters
    ----------
    n_components : int, default=1
        Components requested. Components whose responsibility mass falls below one sample
        (``N_k < 1``) are dropped during EM, so ``n_components_`` may be smaller: with ~100
        images per class and 5 components some end up empty, and an empty component's
        smoothed mean is a uniform 0.5, a bogus prototype.
    prior : float, default=0.1
        Beta(prior + 1, prior + 1) prior on every ``θ_kd``: the M-step is the MAP estimate
        ``θ_kd = (Σ_i r_ik x_id + prior) / (N_k + 2 prior)``, which keeps ``log θ`` finite.
        Keep it small when the means serve as image prototypes: with ~30 images per
        component, ``prior=1`` lifts every background pixel to θ ≈ 0.03, which puts a third of
        an 8×8 prototype's mass on the background.
    init : {"kmeans++", "random"}, default="kmeans++"
        Initial means: k-means++ seeds (``sklearn.cluster.kmeans_plusplus``) or random samples.
    max_iter : int, default=300
    tol : float, default=1e-6
        Stop when the mean log-likelihood per sample improves by less than ``tol``.
    random_state : int, RandomState or None
        Seeds the initialisation.

    Attributes
    ----------
    means_ : ndarray of shape (n_kept, n_features)
        ``θ_k`` (``n_kept = n_components_``).
    weights_ : ndarray of shape (n_kept,)
        ``π_k``.
    n_components_ : int
        Components kept (non-empty).
    n_iter_ : int
    converged_ : bool
    lower_bound_ : float
        Final mean log-likelihood per sample.
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_components": [Interval(numbers.Integral, 1, None, closed="left")],
        "prior": [Interval(numbers.Real, 0, None, closed="neither")],
        "init": [StrOptions({"kmeans++", "random"})],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self, n_components=1, *, prior=0.1, init="kmeans++", max_iter=300, tol=1e-6,
        random_state=None,
    ):  # fmt: skip
        self.n_components = n_components
        self.prior = prior
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def _check_X(self, X, reset):
        X = validate_data(self, X, reset=reset, dtype=np.float64)
        if X.size and (X.min() < 0 or X.max() > 1):
            raise ValueError(
                f"X: Bernoulli outcomes must lie in [0, 1], got range [{X.min()}, {X.max()}]"
            )
        return X

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fits the mixture by EM; ``y`` is ignored."""
        X = self._check_X(X, reset=True)
        if self.n_components > X.shape[0]:
            raise ValueError(
                f"n_components: {self.n_components} components need at least as many samples, "
                f"got {X.shape[0]}"
            )
        rng = check_random_state(self.random_state)
        means = self._initial_means(X, rng)
        weights = np.full(len(means), 1.0 / len(means))
        previous = -np.inf
        self.converged_ = False
        for it in range(1, self.max_iter + 1):
            log_resp, bound = self._e_step(X, means, weights)
            means, weights = self._m_step(X, np.exp(log_resp))
            self.n_iter_ = it
            if abs(bound - previous) < self.tol:
                self.converged_ = True
                break
            previous = bound
        self.means_, self.weights_ = means, weights
        self.n_components_ = len(weights)
        self.lower_bound_ = float(self.score(X))
        if not self.converged_:
            warnings.warn(
                f"BernoulliMixture did not converge in {self.max_iter} iterations; "
                "raise max_iter or tol.",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def _initial_means(self, X, rng):
        k = self.n_components
        if self.init == "kmeans++":
            centres, _ = kmeans_plusplus(X, k, random_state=rng)
        else:
            centres = X[rng.choice(X.shape[0], size=k, replace=False)]
        # Pull the seeds off 0 and 1 as one M-step with a single sample would.
        return (centres + self.prior) / (1.0 + 2.0 * self.prior)

    @staticmethod
    def _log_likelihoods(X, means, weights):
        """``log π_k + log p(x_i | θ_k)``, shape (n, K)."""
        return X @ np.log(means).T + (1.0 - X) @ np.log1p(-means).T + np.log(weights)

    def _e_step(self, X, means, weights):
        joint = self._log_likelihoods(X, means, weights)
        norm = logsumexp(joint, axis=1, keepdims=True)
        return joint - norm, float(norm.mean())

    def _m_step(self, X, resp):
        counts = resp.sum(axis=0)
        keep = counts >= 1.0
        if not keep.any():
            keep = counts == counts.max()
        resp, counts = resp[:, keep], counts[keep]
        means = (resp.T @ X + self.prior) / (counts[:, None] + 2.0 * self.prior)
        return means, counts / counts.sum()

    def score_samples(self, X):
        """Log-likelihood ``log p(x_i)`` of each sample."""
        check_is_fitted(self)
        X = self._check_X(X, reset=False)
        return logsumexp(self._log_likelihoods(X, self.means_, self.weights_), axis=1)

    def score(self, X, y=None):
        """Mean log-likelihood per sample."""
        return float(self.score_samples(X).mean())

    def predict_proba(self, X):
        """Responsibilities ``p(k | x_i)``, shape ``(n, n_components_)``."""
        check_is_fitted(self)
        X = self._check_X(X, reset=False)
        return np.exp(self._e_step(X, self.means_, self.weights_)[0])

    def predict(self, X):
        """Most responsible component of each sample."""
        return self.predict_proba(X).argmax(axis=1)
