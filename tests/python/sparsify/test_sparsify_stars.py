"""The star-cluster benchmark and classifier, the majorize solver and the batched core
(scikit-learn's check suite runs in test_estimator_checks.py).

References: a NumPy + POT implementation of Algorithm 2 (log-domain Sinkhorn solves to 1e-13)
and POT's entropic OT values for the objective along the majorize iterates.
"""

import warnings

import numpy as np
import ot
import pytest
from otinverse import EntropicSparsifier, InvalidArgumentError, StarClusterClassifier, _core
from otinverse.datasets import make_star_groups, star_psf
from otinverse.sparsify._sparsify import _sparsify_dense as sparsify
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV

NU = np.array([3, 2, 0.1, 0.1, 0.1, 1, 2, 3, 2, 1]) / 14.3
C1 = np.abs(np.arange(10.0)[:, None] - np.arange(10.0)[None, :])


def entropic_ot(mu, nu, C, reg):
    """OT_ε(μ, ν) = <C, P> + ε KL(P | μ⊗ν) by POT on μ's support."""
    s = mu > 0
    P = ot.sinkhorn(mu[s], nu, C[s], reg, method="sinkhorn_log", stopThr=1e-14, numItermax=100000)
    ref = np.outer(mu[s], nu)
    kl = np.sum(P * np.log(np.where(P > 0, P, 1.0) / ref), where=P > 0)
    return float(np.sum(P * C[s]) + reg * kl)


def entropy(m):
    m = m[m > 0]
    return float(-(m * np.log(m)).sum())


# ---------------------------------------------------------------- Algorithm 2 vs NumPy + POT
def numpy_algorithm2(nu, C, lam, reg, steps, step_size=0.01, min_step=1e-12):
    """Algorithm 2 as the core runs it (centred gradient, frozen zeros, halving line search from
    twice the last accepted step), with POT's log-domain Sinkhorn for OT_ε and its potential."""

    def ot_term(mu):
        s = mu > 0
        _, log = ot.sinkhorn(
            mu[s],
            nu,
            C[s],
            reg,
            method="sinkhorn_log",
            stopThr=1e-14,
            numItermax=100000,
            log=True,
        )
        f = np.zeros_like(mu)
        f[s] = reg * (log["log_u"] - np.log(mu[s]))
        return entropic_ot(mu, nu, C, reg), f

    mu = nu.copy()
    value, f = ot_term(mu)
    J = value + lam * entropy(mu)
    start = step_size
    for _ in range(steps):
        s = mu > 0
        w = np.zeros_like(mu)
        w[s] = f[s] + lam * (-np.log(mu[s]) - 1)
        w[s] -= w[s].mean()
        alpha = start
        while alpha >= min_step:
            cand = np.where(s, np.maximum(mu - alpha * w, 0), 0)
            cand /= cand.sum()
            v, fc = ot_term(cand)
            if v + lam * entropy(cand) < J:
                mu, f, J = cand, fc, v + lam * entropy(cand)
                break
            alpha /= 2
        else:
            break
        start = min(2 * alpha, step_size)
    return mu


def test_algorithm2_on_a_fixed_patch_matches_numpy_pot_to_1e8():
    data = make_star_groups(1, bands=1, size=8, fwhm=2.0, cluster_fraction=1.0, random_state=4)
    img = data.data[0, 0] + 1.0
    nu = img.ravel() / img.sum()
    C = _core.grid_cost_matrix((8, 8), (1.0, 1.0))
    reference = numpy_algorithm2(nu, C, lam=0.05, reg=2.0, steps=6)
    options = _core.SparsifyOptions(
        sparsity=0.05, reg=2.0, max_iter=6, sinkhorn_tol=1e-13, sinkhorn_max_iter=100000
    )
    grid = _core.sparsify_grid(nu, (8, 8), (1.0, 1.0), options)
    dense = _core.sparsify_dense(nu, C, options)
    assert grid.n_iter == 6 and np.abs(reference - nu).sum() > 1e-4  # the descent moved
    np.testing.assert_allclose(grid.mu, reference, atol=1e-8, rtol=0)
    np.testing.assert_allclose(dense.mu, reference, atol=1e-8, rtol=0)


# ---------------------------------------------------------------- majorize solver
def test_majorize_decreases_the_entropic_objective_by_pot():
    data = make_star_groups(1, bands=1, size=8, fwhm=2.0, cluster_fraction=1.0, random_state=5)
    img = data.data[0, 0] + 1.0
    nu = img.ravel() / img.sum()
    C = _core.grid_cost_matrix((8, 8), (1.0, 1.0))
    out = sparsify(nu, C, sparsity=0.2, reg=1.0, solver="majorize", max_iter=8, record_history=True)
    J = [entropic_ot(m, nu, C, 1.0) + 0.2 * entropy(m) for m in out.history]
    assert np.all(np.diff(J) < 0), J
    # The reported value is F of the last plan: an upper bound of J(μ) (module doc).
    assert out.objective >= J[-1] - 1e-9
    assert np.all(np.diff(out.objectives) <= 1e-12)


def test_majorize_toy_matches_the_two_atom_minimiser_and_single_atom():
    out = sparsify(NU, C1, sparsity=5.0, reg=0.1, solver="majorize", max_iter=5000, tol=1e-12)
    assert out.stop == "gradient"
    assert np.all(out.mu[[1, 2, 3, 4, 5, 6, 8, 9]] < 1e-12)
    assert abs(out.mu[0] - 0.352) <= 0.01 and abs(out.mu[7] - 0.648) <= 0.01
    # Stationarity on the support {1, 8}: the gradient f + λ(−ln μ − 1), with f the potential of
    # POT's plan for (μ*, ν), takes one value there.
    support = out.mu > 1e-9
    _, log = ot.sinkhorn(
        out.mu[support],
        NU,
        C1[support],
        0.1,
        method="sinkhorn_log",
        stopThr=1e-14,
        numItermax=100000,
        log=True,
    )
    f = 0.1 * (log["log_u"] - np.log(out.mu[support]))
    grad = f + 5.0 * (-np.log(out.mu[support]) - 1)
    assert abs(grad[0] - grad[1]) < 1e-5
    single = sparsify(NU, C1, sparsity=100.0, reg=0.1, solver="majorize", max_iter=200)
    assert single.mu[7] > 0.999


def test_batch_equals_one_by_one_and_is_pure():
    X = make_star_groups(3, bands=1, size=10, random_state=2).data[:, 0]
    est = EntropicSparsifier(reg=2.0, sparsity=0.1, solver="majorize", max_iter=50).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        batch = est.transform(X)
        options = _core.SparsifyOptions(sparsity=0.1, reg=2.0, solver="majorize", max_iter=50)
        for i in range(3):
            one = _core.sparsify_grid(X[i].ravel(), (10, 10), (1.0, 1.0), options)
            np.testing.assert_array_equal(batch[i].ravel(), one.mu)
        # float32 input is rounded before it is upcast: equal to that rounding.
        np.testing.assert_allclose(est.transform(X.astype(np.float32)), batch, atol=1e-6)
        np.testing.assert_array_equal(est.transform(np.asfortranarray(X)), batch)


# ---------------------------------------------------------------- benchmark generator
def test_make_star_groups_ranges_labels_and_determinism():
    d = make_star_groups(60, bands=2, size=24, separation=(0.6, 1.5), random_state=0)
    assert d.data.shape == (60, 2, 24, 24) and (d.data >= 0).all()
    single, group = d.target == 0, d.target == 1
    assert single.any() and group.any()
    assert (d.n_sources[single] == 1).all() and np.isnan(d.separation[single]).all()
    assert ((d.n_sources[group] >= 2) & (d.n_sources[group] <= 5)).all()
    assert ((d.separation[group] >= 0.6 - 1e-12) & (d.separation[group] <= 1.5 + 1e-12)).all()
    assert ((d.flux_ratio[group] >= 0.2) & (d.flux_ratio[group] <= 1.0)).all()
    assert set(d.psf) == {"gaussian", "moffat"}
    again = make_star_groups(60, bands=2, size=24, separation=(0.6, 1.5), random_state=0)
    np.testing.assert_array_equal(d.data, again.data)
    with pytest.raises(InvalidArgumentError, match="psf"):
        make_star_groups(2, psf="airy")


@pytest.mark.parametrize("kind", ["gaussian", "moffat"])
def test_star_psf_has_the_requested_fwhm(kind):
    img = star_psf(kind, 3.0, 61, cy=30.0, cx=30.0)
    assert abs(img.sum() - 1) < 1e-12
    # The pixel 1.5 px (half the FWHM) from the centre is at half the maximum.
    shifted = star_psf(kind, 3.0, 61, cy=30.0, cx=28.5)
    assert abs(shifted[30, 30] / img[30, 30] - 0.5) < 1e-3


# ---------------------------------------------------------------- classifier
def small_patches(n=24, seed=0):
    d = make_star_groups(n, bands=3, size=12, fwhm=2.0, separation=(1.5, 2.0), random_state=seed)
    return d.data, d.target


def fast_ot():
    return EntropicSparsifier(reg=1.5, sparsity=0.1, solver="majorize", max_iter=100, tol=1e-6)


def test_classifier_learns_from_labels_and_gridsearch_runs():
    X, y = small_patches()
    clf = StarClusterClassifier(sparsifier=fast_ot(), threshold=[0.3, 0.75], cv=3).fit(X, y)
    assert clf.cv_results_["mean_test_score"].shape == (2,)
    assert (
        clf.threshold_ == clf.cv_results_["threshold"][clf.cv_results_["mean_test_score"].argmax()]
    )
    # Labels decide the vote table: flipping them flips the probabilities.
    flipped = StarClusterClassifier(sparsifier=fast_ot(), threshold=clf.threshold_, cv=3)
    flipped.fit(X, 1 - y)
    np.testing.assert_allclose(flipped.vote_proba_, 1 - clf.vote_proba_)
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(axis=1)])
    search = GridSearchCV(
        StarClusterClassifier(sparsifier="passthrough", cv=2),
        {"threshold": [0.5, 0.75], "subtract_background": [True, False]},
        cv=2,
    ).fit(X, y)
    assert search.best_estimator_.predict(X).shape == y.shape


def test_classifier_bad_inputs():
    X, y = small_patches(12)
    clf = StarClusterClassifier(sparsifier="passthrough", cv=2)
    with pytest.raises(ValueError, match="class"):
        clf.fit(X, np.zeros_like(y))
    ragged = [X[0], np.ones((3, 10, 12))]
    with pytest.raises(ValueError, match=r"shape|inhomogeneous"):
        clf.fit(ragged, y[:2])
    nan = X.copy()
    nan[0, 1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clf.fit(nan, y)
    clf.fit(X, y)
    with pytest.raises(ValueError, match=r"fitted on patches of shape|features"):
        clf.predict(X[:, :2])
    with pytest.raises(ValueError, match="Negative values"):
        clf.predict(-X)
