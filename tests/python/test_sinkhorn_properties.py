"""Property tests (hypothesis) of the Sinkhorn invariants."""

import numpy as np
import otinverse
from hypothesis import given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def problems(draw):
    n = draw(st.integers(1, 25))
    m = draw(st.integers(1, 25))
    d = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    a = rng.uniform(0.01, 1, n)
    b = rng.uniform(0.01, 1, m)
    b *= a.sum() / b.sum()
    reg = draw(st.sampled_from([0.05, 0.2, 1.0]))
    return x, a, y, b, reg


@SETTINGS
@given(problems())
def test_plan_marginals_are_the_weights(problem):
    x, a, y, b, reg = problem
    res = otinverse.sinkhorn_points(a, x, b, y, reg, tol=1e-11, max_iter=100_000)
    assert res.converged
    np.testing.assert_allclose(res.plan.sum(1), a, atol=1e-10 * a.sum())
    np.testing.assert_allclose(res.plan.sum(0), b, atol=1e-10 * a.sum())
    assert (res.plan >= 0).all()


@SETTINGS
@given(problems())
def test_balanced_cost_is_symmetric_under_swapping_the_measures(problem):
    x, a, y, b, reg = problem
    kw = dict(tol=1e-12, max_iter=100_000)
    forward = otinverse.sinkhorn_points(a, x, b, y, reg, **kw)
    backward = otinverse.sinkhorn_points(b, y, a, x, reg, **kw)
    np.testing.assert_allclose(
        backward.transport_cost, forward.transport_cost, rtol=1e-8, atol=1e-12
    )
    np.testing.assert_allclose(backward.objective, forward.objective, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(backward.plan, forward.plan.T, atol=1e-10 * a.sum())


@SETTINGS
@given(problems(), st.floats(-50, 50), st.sampled_from([None, 0.5]))
def test_plan_is_invariant_to_adding_a_constant_to_the_cost(problem, shift, reach_b):
    x, a, y, b, reg = problem
    M = ((x[:, None] - y[None]) ** 2).sum(-1)
    kw = dict(reach_b=reach_b, tol=1e-12, max_iter=100_000)
    # With one marginal exact the plan's mass is fixed, so <M + c, P> = <M, P> + c|a| and the
    # minimiser does not move (also when the other marginal is relaxed).
    base = otinverse.sinkhorn(a, b, M, reg, **kw)
    shifted = otinverse.sinkhorn(a, b, M + shift, reg, **kw)
    assert base.converged and shifted.converged
    np.testing.assert_allclose(shifted.plan, base.plan, atol=1e-10 * a.sum())
    np.testing.assert_allclose(
        shifted.transport_cost, base.transport_cost + shift * a.sum(), rtol=1e-9, atol=1e-9
    )
