"""EntropicSparsifier, count_peaks, StarClusterClassifier, make_star_patches.

References: the paper's toy (§V) with the ν the authors actually used, POT (ot.sinkhorn /
ot.emd2), scipy.ndimage.label and a plain flood fill written here, a NumPy Sinkhorn on the dense
grid cost, and a 1-D minimisation of eq. (7) on the two-atom face done with POT.
"""

from collections import deque

import numpy as np
import ot
import otinverse
import pytest
from otinverse import (
    EntropicSparsifier,
    InvalidArgumentError,
    StarClusterClassifier,
    _core,
    count_peaks,
    make_star_patches,
)
from otinverse.sparsify._sparsify import _sparsify_dense as sparsify
from scipy import ndimage, optimize
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

NU = np.array([3, 2, 0.1, 0.1, 0.1, 1, 2, 3, 2, 1]) / 14.3
X1 = np.arange(1.0, 11.0)
C1 = np.abs(X1[:, None] - X1[None, :])


def toy(lam, objective="entropic", **kw):
    return sparsify(
        NU,
        C1,
        sparsity=lam,
        reg=0.1,
        step_size=0.01,
        max_iter=50,
        objective=objective,
        record_history=True,
        **kw,
    )


# ---------------------------------------------------------------- toy, textbook conventions
def test_toy_lambda_100_single_atom_within_10_steps():
    out = toy(100.0)
    hist = out.history
    first = next(k for k, h in enumerate(hist) if h[7] >= 0.999)
    assert first <= 10
    assert out.mu[7] >= 0.999


def test_toy_lambda_10_single_atom_at_8():
    out = toy(10.0)
    assert out.n_iter <= 50
    np.testing.assert_array_equal(np.flatnonzero(out.mu), [7])
    assert out.stop == "gradient"  # a single atom has a zero projected gradient


def _two_atom_objective(m, lam, reg=0.1):
    """J on the face {1, 8}, solved exactly by 1-D root finding (independent of the core):
    with f = (d, 0) and g eliminated by the column constraint, the row-1 mass is increasing in d."""
    from scipy.special import expit, logsumexp

    mu = np.array([m, 1 - m])
    c = C1[[0, 7]]

    def share(d):  # fraction of column j's mass sent to atom 1
        return expit((d - c[0] + c[1]) / reg + np.log(mu[0] / mu[1]))

    d = optimize.brentq(lambda d: NU @ share(d) - mu[0], -50, 50, xtol=1e-14)
    f = np.array([d, 0.0])
    g = -reg * logsumexp((f[:, None] - c) / reg, b=mu[:, None], axis=0)
    return float(f @ mu + g @ NU - lam * (mu @ np.log(mu)))


def test_toy_lambda_5_two_spikes():
    out = toy(5.0)
    mu = out.mu
    np.testing.assert_array_equal(np.flatnonzero(mu), [0, 7])
    assert abs(mu[0] - 0.352) <= 0.01 and abs(mu[7] - 0.648) <= 0.01
    # Independent check: the minimiser of eq. (7) on the two-atom face, by POT + scipy.
    res = optimize.minimize_scalar(
        _two_atom_objective,
        bounds=(0.2, 0.5),
        args=(5.0,),
        method="bounded",
        options={"xatol": 1e-6},
    )
    assert abs(mu[0] - res.x) < 2e-3, (mu[0], res.x)


def test_objective_decreases_monotonically():
    for lam in (100.0, 5.0):
        obj = toy(lam).objectives
        assert np.all(np.diff(obj) < 0)


# ---------------------------------------------------------------- compatibility mode
def test_rawson2022_lambda_10_reproduces_published_two_spikes():
    out = toy(10.0, "rawson2022")
    mu = out.mu
    np.testing.assert_array_equal(np.flatnonzero(mu), [0, 7])
    assert abs(mu[0] - 0.3556) < 1e-3 and abs(mu[7] - 0.6444) < 1e-3
    # The paper's Fig. 1 shows the two spikes after about 11 steps; we reach them (within 1e-3)
    # at step 11 or 12, and the line search stops at step 14.
    hist = out.history
    first = next(
        k for k, h in enumerate(hist) if abs(h[0] - 0.3556) < 1e-3 and abs(h[7] - 0.6444) < 1e-3
    )
    assert 11 <= first <= 12
    assert out.stop == "line_search"


def test_rawson2022_lambda_100_delta_after_6_steps():
    out = toy(100.0, "rawson2022")
    np.testing.assert_array_equal(np.flatnonzero(out.mu), [7])
    assert out.n_iter == 6


# ---------------------------------------------------------------- objective vs POT
def test_objective_matches_pot_sinkhorn2():
    rng = np.random.default_rng(0)
    for _ in range(3):
        mu = rng.random(10) + 0.01
        mu /= mu.sum()
        out = sparsify(
            NU,
            C1,
            sparsity=0.0,
            reg=0.5,
            mu0=mu,
            max_iter=0,
            sinkhorn_tol=1e-14,
            sinkhorn_max_iter=100000,
        )
        P = ot.sinkhorn(mu, NU, C1, 0.5, method="sinkhorn_log", stopThr=1e-15, numItermax=100000)
        transport = ot.sinkhorn2(
            mu, NU, C1, 0.5, method="sinkhorn_log", stopThr=1e-15, numItermax=100000
        )
        value = float(transport) + 0.5 * np.sum(P * np.log(P / np.outer(mu, NU)))
        assert abs(out.ot_value - value) < 1e-8


def test_final_delta_objective_is_w1_by_emd2():
    out = toy(100.0)
    delta = np.zeros(10)
    delta[7] = 1.0
    w1 = ot.emd2(NU, delta, C1)
    assert abs(w1 - 2.951) < 5e-4
    assert abs(out.ot_value - w1) < 1e-8
    assert abs(out.objective - w1) < 1e-8  # H(δ) = 0


# ---------------------------------------------------------------- grid kernel
def _numpy_sinkhorn_potentials(a, b, C, reg, n_iter):
    """Plain log-domain Sinkhorn with the same update order as the core (g then f)."""
    from scipy.special import logsumexp

    f = np.zeros(len(a))
    g = np.zeros(len(b))
    la, lb = np.log(a), np.log(b)
    for _ in range(n_iter):
        g = -reg * logsumexp((f[:, None] + reg * la[:, None] - C) / reg, axis=0)
        f = -reg * logsumexp((g[None, :] + reg * lb[None, :] - C) / reg, axis=1)
    return f, g


def test_grid_and_dense_potentials_agree_on_32x32():
    rng = np.random.default_rng(1)
    n = 32
    a = rng.random(n * n) + 0.1
    b = rng.random(n * n) + 0.1
    a /= a.sum()
    b /= b.sum()
    C = _core.grid_cost_matrix((n, n), (1.0, 1.0))
    yy, xx = np.divmod(np.arange(n * n), n)
    np.testing.assert_array_equal(C, (yy[:, None] - yy) ** 2 + (xx[:, None] - xx) ** 2)
    reg = 20.0
    res = _core.sinkhorn_grid(a, b, (n, n), (1.0, 1.0), reg=reg, max_iter=5000, tol=1e-13)
    fg, gg, obj_g, conv_g = res.f, res.g, res.objective, res.converged
    dense = otinverse.sinkhorn(a, b, C, reg, max_iter=5000, tol=1e-13)
    assert conv_g and dense.converged
    shift_g, shift_d = fg.mean(), dense.f.mean()
    np.testing.assert_allclose(fg - shift_g, dense.f - shift_d, atol=1e-10, rtol=0)
    np.testing.assert_allclose(gg + shift_g, dense.g + shift_d, atol=1e-10, rtol=0)
    assert abs(obj_g - dense.objective) < 1e-10 * abs(dense.objective)


# Five iterations on purpose (the two kernels must agree step by step), so both fits warn.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_grid_sparsifier_matches_dense_sparsifier_on_images():
    rng = np.random.default_rng(2)
    img = rng.random((1, 8, 9)) ** 4 + 1e-3
    grid = EntropicSparsifier(reg=0.5, sparsity=0.05, cost="sqeuclidean", max_iter=5).fit(img)
    dense = EntropicSparsifier(
        reg=0.5, sparsity=0.05, cost=_core.grid_cost_matrix((8, 9), (1.0, 1.0)), max_iter=5
    )
    out_g = grid.sparse_approximation(img)
    out_d = dense.fit(img.reshape(1, -1)).sparse_approximation(img.reshape(1, -1))
    assert grid._cost_ is None  # the separable kernel was used
    np.testing.assert_allclose(out_g.mu, out_d.mu, atol=1e-7)
    np.testing.assert_array_equal(out_g.n_iter, out_d.n_iter)


# ---------------------------------------------------------------- count_peaks
def _flood_fill_count(mask, connectivity):
    """Connected components by breadth-first search (independent of scipy)."""
    h, w = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if connectivity == 8:
        steps += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    count = 0
    for i in range(h):
        for j in range(w):
            if mask[i, j] and not seen[i, j]:
                count += 1
                seen[i, j] = True
                queue = deque([(i, j)])
                while queue:
                    y, x = queue.popleft()
                    for dy, dx in steps:
                        v, u = y + dy, x + dx
                        if 0 <= v < h and 0 <= u < w and mask[v, u] and not seen[v, u]:
                            seen[v, u] = True
                            queue.append((v, u))
    return count


@pytest.mark.parametrize("connectivity", [4, 8])
def test_count_peaks_matches_label_and_flood_fill(connectivity):
    rng = np.random.default_rng(3)
    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    for density in (0.2, 0.4, 0.6):
        for _ in range(10):
            mask = rng.random((17, 23)) < density
            mask[0, 0] = True
            img = np.where(mask, 1.0 + rng.random(mask.shape) * 0.2, rng.random(mask.shape) * 0.5)
            # strictly greater than 0.75·max
            expected_mask = img > 0.75 * img.max()
            n = count_peaks(img, threshold=0.75, connectivity=connectivity)
            assert n == ndimage.label(expected_mask, structure=structure)[1]
            assert n == _flood_fill_count(expected_mask, connectivity)


def test_count_peaks_u_shapes_and_diagonals():
    u = np.zeros((9, 9))
    u[1:8, 1] = u[1:8, 7] = u[7, 1:8] = 1.0  # a U: one component, whose bounding box holds a hole
    assert count_peaks(u, connectivity=4) == count_peaks(u, connectivity=8) == 1
    two_u = np.hstack([u, u])
    assert count_peaks(two_u, connectivity=4) == 2
    diag = np.eye(5)
    assert count_peaks(diag, connectivity=4) == 5
    assert count_peaks(diag, connectivity=8) == 1
    # Strictly greater: a pixel at exactly 0.75·max does not count.
    img = np.zeros((5, 5))
    img[0, 0], img[4, 4] = 1.0, 0.75
    assert count_peaks(img) == 1


# ---------------------------------------------------------------- estimator contract, bad inputs
def test_transformer_on_vectors_and_sklearn_contract():
    est = EntropicSparsifier(reg=0.1, sparsity=100.0, cost="cityblock")
    params = est.get_params()
    assert clone(est).get_params() == params
    X = np.vstack([NU, NU[::-1]])
    out = est.fit_transform(X)
    assert out.shape == (2, 10)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    assert out[0, 7] > 0.999 and out[1, 2] > 0.999
    state = dict(vars(est))
    info = est.sparse_approximation(X)
    assert info.n_iter.shape == (2,) and info.objective.shape == (2,)
    assert vars(est).keys() == state.keys()  # neither call stores per-call results
    assert est.reg_ == 0.1


def test_default_reg_scales_with_the_cost():
    est = EntropicSparsifier(cost="euclidean").fit(np.ones((1, 4, 4)))
    assert est.reg_ == pytest.approx(0.1)
    est = EntropicSparsifier(cost="sqeuclidean", spacing=2.0).fit(np.ones((1, 4, 4)))
    assert est.reg_ == pytest.approx(0.4)


def test_convergence_warning_on_max_iter():
    with pytest.warns(ConvergenceWarning):
        EntropicSparsifier(reg=0.1, sparsity=5.0, cost="cityblock", max_iter=2).fit_transform(
            NU[None]
        )


@pytest.mark.parametrize(
    "X, kw, match",
    [
        (-NU[None], {}, "Negative values"),
        (np.where(np.arange(10) == 3, np.nan, NU)[None], {}, "NaN|infinity"),
        (np.zeros((1, 10)), {}, "sample 0: total mass must be positive"),
        (NU, {}, "2D array"),
        (np.ones((1, 2, 3, 4)), {}, "expected vectors"),
        (NU[None], {"sparsity": -1.0}, "sparsity"),
        (NU[None], {"reg": 0.0}, "reg"),
        (NU[None], {"reg": -1.0}, "reg"),
        (NU[None], {"objective": "paper"}, "objective"),
        (NU[None], {"cost": "cosine"}, "cost"),
        (NU[None], {"solver": "newton"}, "solver"),
    ],
)
def test_bad_inputs_raise(X, kw, match):
    with pytest.raises(ValueError, match=match):
        EntropicSparsifier(**kw).fit_transform(X)


def test_count_peaks_bad_inputs():
    for img, match in [
        (np.zeros((3, 3)), "all zero"),
        (-np.ones((3, 3)), "non-negative"),
        (np.ones(3), "2-D"),
        (np.full((3, 3), np.nan), "NaN|infinity"),
    ]:
        with pytest.raises(InvalidArgumentError, match=match):
            count_peaks(img)
    with pytest.raises(InvalidArgumentError, match="connectivity"):
        count_peaks(np.ones((3, 3)), connectivity=6)


def test_core_rejects_bad_parameters():
    with pytest.raises(InvalidArgumentError, match="sparsity"):
        sparsify(NU, C1, sparsity=-1.0, reg=0.1)
    with pytest.raises(InvalidArgumentError, match="reg"):
        sparsify(NU, C1, sparsity=1.0, reg=0.0)
    options = _core.SparsifyOptions(sparsity=1.0, reg=0.1)
    with pytest.raises(InvalidArgumentError, match="nu"):
        _core.sparsify_dense(NU[:5], C1, options)
    with pytest.raises(InvalidArgumentError, match="max_iter"):
        _core.sparsify_dense(NU, C1, _core.SparsifyOptions(sparsity=1.0, reg=0.1, max_iter=-1))
    with pytest.raises(InvalidArgumentError, match="rawson2022"):
        _core.sparsify_grid_batch(
            NU[None],
            (2, 5),
            (1.0, 1.0),
            _core.SparsifyOptions(sparsity=1, reg=1, objective="rawson2022"),
        )


# ---------------------------------------------------------------- stars
def test_make_star_patches_shapes_labels_and_determinism():
    X, y = make_star_patches(6, bands=3, size=16, random_state=0)
    assert X.shape == (6, 3, 16, 16) and y.shape == (6,)
    assert set(np.unique(y)) <= {0, 1} and (X >= 0).all()
    X2, y2 = make_star_patches(6, bands=3, size=16, random_state=0)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    with pytest.raises(InvalidArgumentError, match="n_samples"):
        make_star_patches(0)


def test_star_cluster_classifier_votes():
    X, y = make_star_patches(10, bands=3, size=10, min_separation=3.0, random_state=1)
    raw = StarClusterClassifier(sparsifier="passthrough", threshold=0.75, cv=2).fit(X, y)
    peaks = raw.predict_peaks(X)
    votes = (peaks > 1).sum(axis=1)
    np.testing.assert_allclose(raw.predict_proba(X)[:, 1], raw.vote_proba_[votes])
    np.testing.assert_array_equal(
        raw.predict(X), raw.classes_[(raw.vote_proba_[votes] > 0.5).astype(int)]
    )
    with pytest.raises(ValueError, match="features"):
        raw.predict(X[0])
