"""The kernel layer: stored (f64, f32) and truncated multiscale kernels against the log domain.

Each representation must give the log-domain plan, stay finite at tiny ε, and report the
marginal error of the returned plan (recomputed here from the plan itself).
"""

import numpy as np
import otinverse
import pytest
from otinverse import InvalidArgumentError


def uniform_square(n, seed):
    return np.random.default_rng(seed).random((n, 2))


def plan_error(res, a, b):
    P = res.plan
    return np.abs(P.sum(1) - a).sum() / a.sum() + np.abs(P.sum(0) - b).sum() / b.sum()


@pytest.mark.parametrize("kernel", ["stored", "stored_f32"])
@pytest.mark.parametrize("reg", [1e-2, 1e-3])
def test_stored_kernels_match_the_log_domain(kernel, reg):
    x, y = uniform_square(150, 0), uniform_square(120, 1)
    M = ((x[:, None] - y[None]) ** 2).sum(-1)
    a = np.random.default_rng(2).uniform(0.5, 1.5, 150)
    a /= a.sum()
    b = np.full(120, 1 / 120)
    tol = 1e-6 if kernel == "stored_f32" else 1e-10
    kw = dict(tol=tol, max_iter=50_000, eps_scaling=0.5)
    ref = otinverse.sinkhorn(a, b, M, reg, kernel="log", **kw)
    res = otinverse.sinkhorn(a, b, M, reg, kernel=kernel, **kw)
    assert ref.converged and res.converged
    assert res.marginal_error == pytest.approx(plan_error(res, a, b), rel=1e-6, abs=1e-12)
    # Both plans are within tol of the fixed point (total mass 1).
    np.testing.assert_allclose(res.plan, ref.plan, atol=1e-8 if kernel == "stored" else tol)


# tol 1e-6 stores the truncated kernel in float32, 1e-9 in float64.
@pytest.mark.parametrize("tol", [1e-9, 1e-6])
def test_sparse_multiscale_matches_the_log_domain_and_reports_its_stages(tol):
    x, y = uniform_square(500, 3), uniform_square(400, 4)
    a, b = np.full(500, 1 / 500), np.full(400, 1 / 400)
    kw = dict(max_iter=50_000, eps_scaling=0.5)
    ref = otinverse.sinkhorn_points(x, y, 1e-3, a=a, b=b, kernel="log", tol=1e-10, **kw)
    res = otinverse.sinkhorn_points(x, y, 1e-3, a=a, b=b, kernel="sparse", tol=tol, **kw)
    assert ref.converged and res.converged
    # The reported error is that of the full plan, not of the truncated kernel.
    assert res.marginal_error == pytest.approx(plan_error(res, a, b), rel=1e-6, abs=1e-13)
    np.testing.assert_allclose(res.plan, ref.plan, atol=tol)
    assert ref.stages == []
    _, eps, iters, kept = zip(*res.stages, strict=True)
    assert eps[-1] == 1e-3 and sum(iters) == res.n_iter
    # At ε = 1e-3 the truncated kernel keeps a small part of each row.
    assert 0 < kept[-1] < 0.5 * 400


def test_tiny_eps_stays_finite_and_honest():
    x, y = uniform_square(60, 5), uniform_square(60, 6)
    M = ((x[:, None] - y[None]) ** 2).sum(-1)
    for kernel in ["stored", "sparse"]:
        kw = dict(tol=1e-6, max_iter=100_000, eps_scaling=0.5, warn=False, kernel=kernel)
        if kernel == "sparse":
            res = otinverse.sinkhorn_points(x, y, 1e-5, **kw)
        else:
            res = otinverse.sinkhorn(None, None, M, 1e-5, **kw)
        assert np.isfinite(res.f).all() and np.isfinite(res.g).all()
        assert np.isfinite(res.plan).all()
        assert res.converged == (res.marginal_error <= 1e-6)
        a = np.full(60, 1 / 60)
        assert res.marginal_error == pytest.approx(plan_error(res, a, a), rel=1e-6, abs=1e-13)


def test_unknown_or_misplaced_kernels_name_the_argument():
    x = uniform_square(5, 7)
    M = ((x[:, None] - x[None]) ** 2).sum(-1)
    with pytest.raises(InvalidArgumentError, match="kernel"):
        otinverse.sinkhorn(None, None, M, 0.1, kernel="fast")
    with pytest.raises(InvalidArgumentError, match="kernel"):
        otinverse.sinkhorn(None, None, M, 0.1, kernel="sparse")
    with pytest.raises(InvalidArgumentError, match="kernel"):
        otinverse.sinkhorn_points(x, x, 0.1, kernel="dense")
