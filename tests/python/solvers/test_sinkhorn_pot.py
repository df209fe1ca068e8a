"""Agreement with POT on random problems: balanced vs ot.sinkhorn(method="sinkhorn_log"),
semi-unbalanced vs sinkhorn_unbalanced(reg_m=(inf, rho)), unbalanced vs reg_m=(rho, rho), both
solvers run to convergence; plan max abs difference <= 1e-9, transport cost relative <= 1e-9."""

import numpy as np
import ot
import otinverse
import pytest
from helpers import sq_cost

N_PROBLEMS = 18  # per variant: 3 variants x 18 = 54 random problems


def random_problem(seed):
    rng = np.random.default_rng(seed)
    n, m = rng.integers(5, 301, size=2)
    d = rng.choice([1, 2, 5])
    x, y = rng.normal(size=(n, d)), rng.normal(size=(m, d)) + 0.3
    M = sq_cost(x, y)
    M /= M.max()
    a = rng.uniform(0.05, 1.0, n)
    b = rng.uniform(0.05, 1.0, m)
    reg = [1e-1, 1e-2][seed % 2]
    return a / a.sum(), b / b.sum(), M, reg


def assert_agree(P_ours, P_ref, M, label):
    assert np.abs(P_ours - P_ref).max() <= 1e-9, label
    cost_ours, cost_ref = (P_ours * M).sum(), (P_ref * M).sum()
    assert abs(cost_ours - cost_ref) <= 1e-9 * cost_ref, label


@pytest.mark.parametrize("seed", range(N_PROBLEMS))
def test_balanced_matches_pot_sinkhorn_log(seed):
    a, b, M, reg = random_problem(seed)
    res = otinverse.sinkhorn(a, b, M, reg, tol=1e-13, max_iter=100_000)
    assert res.converged
    P_ref = ot.sinkhorn(a, b, M, reg, method="sinkhorn_log", stopThr=1e-14, numItermax=100_000)
    assert_agree(res.plan, P_ref, M, f"seed {seed}")
    np.testing.assert_allclose(res.transport_cost, (res.plan * M).sum(), rtol=1e-12)


def pot_unbalanced(a, b, M, reg, reg_m):
    return ot.unbalanced.sinkhorn_unbalanced(
        a, b, M, reg, reg_m, method="sinkhorn", reg_type="kl", stopThr=1e-14, numItermax=200_000
    )


@pytest.mark.parametrize("seed", range(N_PROBLEMS))
def test_semi_unbalanced_matches_pot(seed):
    a, b, M, reg = random_problem(100 + seed)
    rho = [0.05, 0.5, 5.0][seed % 3]
    res = otinverse.sinkhorn(a, b, M, reg, reach_b=rho, tol=1e-13, max_iter=100_000)
    assert res.converged
    assert_agree(res.plan, pot_unbalanced(a, b, M, reg, (np.inf, rho)), M, f"seed {seed}")
    # The exact side holds exactly after the final update.
    np.testing.assert_allclose(res.plan.sum(1), a, atol=1e-14)


@pytest.mark.parametrize("seed", range(N_PROBLEMS))
def test_unbalanced_matches_pot(seed):
    a, b, M, reg = random_problem(200 + seed)
    rho = [0.05, 0.5, 2.0][seed % 3]
    # Symmetric (averaged) updates converge more slowly: exercise them on the cheaper problems.
    update = "symmetric" if seed % 3 == 0 else "alternating"
    res = otinverse.sinkhorn(
        a, b, M, reg, reach_a=rho, reach_b=rho, update=update, tol=1e-13, max_iter=100_000
    )
    assert res.converged
    assert_agree(res.plan, pot_unbalanced(a, b, M, reg, (rho, rho)), M, f"seed {seed}")


def test_objective_matches_pot_formula():
    a, b, M, reg = random_problem(7)
    rho = 0.3
    res = otinverse.sinkhorn(a, b, M, reg, reach_a=rho, reach_b=rho, tol=1e-14, max_iter=100_000)
    P = res.plan

    def kl(p, q):
        return (p * np.log(p / q) - p + q).sum()

    expected = (
        (P * M).sum() + reg * kl(P, np.outer(a, b)) + rho * kl(P.sum(1), a) + rho * kl(P.sum(0), b)
    )
    np.testing.assert_allclose(res.objective, expected, rtol=1e-10)
