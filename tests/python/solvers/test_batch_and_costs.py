"""The batched one-to-many Sinkhorn and the distance-function ground costs against POT
(``ot.sinkhorn2`` on the support rows, ``ot.emd2``, ``ot.solve``) and independent NumPy formulas."""

import warnings

import numpy as np
import ot
import otinverse
import pytest
from otinverse import InvalidArgumentError, grid_cost, grid_points, ground_cost, sinkhorn_batch
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

H_FUNCS = {
    "distance": lambda d: d,
    "sqdistance": lambda d: d**2,
    "log1p": np.log1p,
    "atan": np.arctan,
    0.5: np.sqrt,
}


@pytest.fixture(scope="module")
def digits():
    """Histograms of 12 test digits and the 10 class-mean prototypes (fixed split)."""
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    means = np.stack([X[:1000][y[:1000] == c].mean(0) for c in range(10)])
    H = X[1000:1012]
    return H / H.sum(1, keepdims=True), means / means.sum(1, keepdims=True)


def numpy_distances(shape):
    rows, cols = np.indices(shape)
    pts = np.column_stack([rows.ravel(), cols.ravel()]).astype(float)
    return np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1))


@pytest.mark.parametrize("cost", list(H_FUNCS))
def test_ground_costs_match_numpy(cost):
    D = numpy_distances((3, 5))
    np.testing.assert_allclose(grid_cost((3, 5), cost), H_FUNCS[cost](D), rtol=1e-14, atol=0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(4, 3))
    d = np.sqrt(((x[:, None] - y[None]) ** 2).sum(-1))
    np.testing.assert_allclose(ground_cost(x, y, cost), H_FUNCS[cost](d), rtol=1e-13)
    assert grid_points((3, 5))[7].tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    "cost,reg",
    [(c, r) for c in ("distance", "sqdistance", "log1p", "atan") for r in (1.0, 0.3)]
    # At reg 0.1 the squared distance (range 98) takes POT ~10⁵ iterations: left out for time.
    + [("distance", 0.1), ("log1p", 0.1), ("atan", 0.1)],
)
def test_transport_costs_equal_pot_sinkhorn2_on_support_rows(digits, cost, reg):
    H, B = digits
    C = grid_cost((8, 8), cost)
    res = sinkhorn_batch(H[:4], B, C, reg, tol=1e-13, max_iter=200_000)
    assert res.converged.all()
    for i, h in enumerate(H[:4]):
        s = h > 0
        ref = ot.sinkhorn2(h[s], B.T, C[s], reg, stopThr=1e-14, numItermax=200_000)
        np.testing.assert_allclose(res.transport_cost[i], ref, rtol=0, atol=1e-8)


def test_objective_and_entropy_match_pot_solve(digits):
    H, B = digits
    C = grid_cost((8, 8), "atan")
    res = sinkhorn_batch(H[0], B[:3], C, 0.3, tol=1e-13)
    s = H[0] > 0
    for k in range(3):
        t = B[k] > 0
        sol = ot.solve(C[np.ix_(s, t)], H[0][s], B[k][t], reg=0.3, reg_type="KL", tol=1e-14,
                       max_iter=100_000)  # fmt: skip
        np.testing.assert_allclose(res.objective[0, k], sol.value, rtol=1e-9)
        P = sol.plan[sol.plan > 0]
        np.testing.assert_allclose(res.neg_entropy[0, k], (P * np.log(P)).sum(), rtol=1e-8)


def test_exact_costs_equal_emd2_on_full_histograms(digits):
    """The classifier's exact path solves on the supports; that is the full problem's value."""
    H, B = digits
    C = grid_cost((8, 8), "atan")
    clf = otinverse.OTClassifier(reg=None).fit(B * 3.0, np.arange(10))
    costs = -clf.decision_function(H[:3])
    ref = [[ot.emd2(h, b, C) for b in B] for h in H[:3]]
    np.testing.assert_allclose(costs, ref, rtol=0, atol=1e-10)


def test_zero_pixels_give_finite_costs_where_pot_sinkhorn_fails(digits):
    H, B = digits
    C = grid_cost((8, 8), "atan")
    assert (H == 0).any(axis=1).all()
    res = sinkhorn_batch(H, B, C, 1.0)
    assert np.isfinite(res.transport_cost).all() and res.converged.all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pot_full = ot.sinkhorn2(H[0], B.T, C, 1.0, method="sinkhorn")
    # POT divides by the zero weights and returns its initial guess for every target.
    assert np.ptp(pot_full) == 0 and np.ptp(res.transport_cost[0]) > 0.01


def test_displacement_is_the_centre_of_mass_difference(digits):
    H, B = digits
    C, pts = grid_cost((8, 8), "atan"), grid_points((8, 8))
    res = sinkhorn_batch(H[:5], B, C, 0.3, tol=1e-10, x=pts, y=pts)
    assert (res.marginal_error <= 1e-9).all()
    centre = lambda h: h @ pts  # noqa: E731
    expected = centre(B)[None] - centre(H[:5])[:, None]
    np.testing.assert_allclose(res.displacement, expected, atol=1e-6)
    # And it is the coupling's Σγ([j] − [i]) computed from POT's plan.
    s = H[0] > 0
    P = ot.sinkhorn(H[0][s], B[2], C[s], 0.3, stopThr=1e-13, numItermax=100_000)
    shift = (P[:, :, None] * (pts[None, :, :] - pts[s][:, None, :])).sum((0, 1))
    np.testing.assert_allclose(res.displacement[0, 2], shift, atol=1e-6)


def test_small_reg_stays_finite_and_reports_convergence_honestly(digits):
    H, B = digits
    C = grid_cost((8, 8), "distance")
    with pytest.warns(ConvergenceWarning):
        res = sinkhorn_batch(H[:2], B, C, 1e-3, max_iter=20)
    assert np.isfinite(res.transport_cost).all()
    np.testing.assert_array_equal(res.converged, res.marginal_error <= 1e-9)
    assert not res.converged.all()


def test_float32_and_fortran_inputs(digits):
    H, B = digits
    C = grid_cost((8, 8), "atan")
    ref = sinkhorn_batch(H[:2], B, C, 0.3).transport_cost
    # (Histograms stay float64: float32 rounding of the masses alone exceeds tol = 1e-9.)
    got = sinkhorn_batch(np.asfortranarray(H[:2]), B, np.asfortranarray(C.astype(np.float32)), 0.3)
    np.testing.assert_allclose(got.transport_cost, ref, rtol=1e-6)


def test_sinkhorn_points_accepts_concave_powers():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 2)), rng.normal(size=(25, 2)) + 0.5
    res = otinverse.sinkhorn_points(x, y, 0.05, p=0.5, tol=1e-12, max_iter=100_000)
    M = ot.dist(x, y, metric="euclidean") ** 0.5
    ref = ot.sinkhorn2(np.full(30, 1 / 30), np.full(25, 1 / 25), M, 0.05, stopThr=1e-14,
                       numItermax=100_000, method="sinkhorn_log")  # fmt: skip
    np.testing.assert_allclose(res.transport_cost, ref, rtol=1e-9)


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda C, H, B: sinkhorn_batch(-H, B, C, 0.3), "sources"),
        (lambda C, H, B: sinkhorn_batch(0 * H, B, C, 0.3), "sources"),
        (lambda C, H, B: sinkhorn_batch(H, 2 * B, C, 0.3), "targets"),
        (lambda C, H, B: sinkhorn_batch(H, B[:, :10], C, 0.3), "targets"),
        (lambda C, H, B: sinkhorn_batch(H, B, C, 0.0), "reg"),
        (lambda C, H, B: sinkhorn_batch(H, B, C, 0.3, max_iter=0), "max_iter"),
        (lambda C, H, B: sinkhorn_batch(H, B, C[:, :3], 0.3), "targets"),
        (lambda C, H, B: sinkhorn_batch(H, B, np.where(C > 1, np.nan, C), 0.3), "M"),
        (lambda C, H, B: grid_cost((8, 8), "cosine"), "cost"),
        (lambda C, H, B: grid_cost((8, 8), -1.0), "exponent"),
        (lambda C, H, B: grid_cost((8, 0), "atan"), "image_shape"),
    ],
)
def test_bad_input_raises_value_errors_naming_the_argument(digits, call, name):
    H, B = digits
    with pytest.raises(InvalidArgumentError, match=rf"\b{name}\b"):
        call(grid_cost((8, 8), "atan"), H[:2], B)
