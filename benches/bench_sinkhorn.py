"""Speed of otinverse's log-domain Sinkhorn against POT (run by hand:
`python benches/bench_sinkhorn.py`).

Prints, in one run:
* dense n = m in {1000, 4000}, d = 2, reg in {1e-2, 1e-3} on costs scaled to max 1: time per
  iteration at equal iterations (both run a fixed count) against POT's sinkhorn_log, and the
  wall time to reach the same marginal-error tolerance;
* the online (never stored) cost at n = m in {1e4, 1e5}: time per iteration;
* the exp-throughput bound of this machine (2·n·m exponentials per iteration at NumPy's rate,
  for reference) and OTT-JAX as an extra column if it is installed.
"""

from __future__ import annotations

import os
import time

import numpy as np
import ot
import otinverse
from otinverse import _core


def timed(fn, repeat=1):
    best = np.inf
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def per_iteration(run, iters, repeat=2):
    """Seconds per iteration of `run(max_iter)`, net of the one-off work (validation, ε-scaling
    set-up, the final transport cost): the difference between `iters` and `2 * iters` iterations."""
    t1, r1 = timed(lambda: run(iters), repeat)
    t2, r2 = timed(lambda: run(2 * iters), repeat)
    return (t2 - t1) / (r2.n_iter - r1.n_iter)


def points(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 2)), rng.random((n, 2))


def problem(n, seed=0):
    x, y = points(n, seed)
    M = ot.dist(x, y)
    M /= M.max()
    return x, y, M


def exp_rate():
    v = -np.random.default_rng(1).random(20_000_000)
    t, _ = timed(lambda: np.exp(v), repeat=3)
    return v.size / t


def ott_per_iter(M, reg, iters):
    try:
        import jax.numpy as jnp
        from ott.geometry import geometry
        from ott.problems.linear import linear_problem
        from ott.solvers.linear import sinkhorn
    except ImportError:
        return None
    geom = geometry.Geometry(cost_matrix=jnp.asarray(M), epsilon=reg)
    solver = sinkhorn.Sinkhorn(min_iterations=iters, max_iterations=iters, threshold=0.0)
    solver(linear_problem.LinearProblem(geom)).f.block_until_ready()
    t, _ = timed(lambda: solver(linear_problem.LinearProblem(geom)).f.block_until_ready())
    return t / iters


def main():
    threads = os.environ.get("RAYON_NUM_THREADS", str(os.cpu_count()))
    print(
        f"otinverse {otinverse.__version__}, kernel {_core.simd_level()}, {threads} threads, "
        f"POT {ot.__version__}"
    )
    rate = exp_rate()
    print(f"NumPy exp throughput (1 thread): {rate / 1e9:.2f}e9/s\n")

    print("dense cost, equal iterations")
    print(
        f"{'n':>6} {'reg':>6} {'iters':>6} {'ours s/it':>10} {'POT log s/it':>13} {'ratio':>7} "
        f"{'bound s/it':>11} {'OTT s/it':>9}"
    )
    for n in (1000, 4000):
        _, _, M = problem(n)
        a = np.full(n, 1 / n)
        for reg in (1e-2, 1e-3):
            iters = 20 if n == 1000 else 10
            pot_iters = iters if n == 1000 else 3
            ours = per_iteration(
                lambda k, a=a, M=M, reg=reg: otinverse.sinkhorn(
                    a, a, M, reg, max_iter=k, tol=0, warn=False
                ),
                iters,
            )
            t_pot, _ = timed(
                lambda a=a, M=M, reg=reg, k=pot_iters: ot.sinkhorn(
                    a, a, M, reg, method="sinkhorn_log", numItermax=k, stopThr=0, warn=False
                )
            )
            pot = t_pot / pot_iters
            bound = 2 * n * n / (2 * rate)  # NumPy's exp rate on both cores
            ott = ott_per_iter(M, reg, iters)
            ott_s = f"{ott:9.4f}" if ott else "      n/a"
            print(
                f"{n:>6} {reg:>6g} {iters:>6} {ours:10.4f} {pot:13.4f} {pot / ours:6.1f}x "
                f"{bound:11.4f} {ott_s}"
            )

    tol = 1e-5
    print(
        f"\ndense cost, equal tolerance (L1 marginal error {tol:g}; POT's stopThr is an L2 column "
        "error, set to tol/sqrt(n))"
    )
    print(
        f"{'n':>6} {'reg':>6} {'ours s':>8} {'ours it':>8} {'POT s':>8} {'POT it':>8} {'ratio':>7}"
    )
    n = 1000
    _, _, M = problem(n)
    a = np.full(n, 1 / n)
    for reg in (1e-2, 1e-3):
        t_ours, res = timed(
            lambda reg=reg: otinverse.sinkhorn(a, a, M, reg, max_iter=100_000, tol=tol, warn=False)
        )
        t_pot, (_, log) = timed(
            lambda reg=reg: ot.sinkhorn(
                a,
                a,
                M,
                reg,
                method="sinkhorn_log",
                numItermax=100_000,
                stopThr=tol / np.sqrt(n),
                log=True,
                warn=False,
            )
        )
        err_pot = np.exp(log["log_u"][:, None] + log["log_v"][None, :] - M / reg).sum(0) - a
        print(
            f"{n:>6} {reg:>6g} {t_ours:8.3f} {res.n_iter:>8} {t_pot:8.3f} {log['niter']:>8} "
            f"{t_pot / t_ours:6.1f}x   (final L1 errors: ours {res.marginal_error:.1e}, "
            f"POT {np.abs(err_pot).sum() / a.sum():.1e})"
        )

    print("\nonline cost |x - y|^2 (never stored), reg = 1e-2")
    print(f"{'n':>7} {'iters':>6} {'s/it':>8} {'bound s/it':>11}")
    for n, iters in ((10_000, 3), (100_000, 1)):
        x, y = points(n)
        t = per_iteration(
            lambda k, x=x, y=y: otinverse.sinkhorn_points(
                x, y, 1e-2, max_iter=k, tol=0, warn=False
            ),
            iters,
            repeat=1 if n > 10_000 else 2,
        )
        print(f"{n:>7} {iters:>6} {t:8.3f} {2 * n * n / (2 * rate):11.3f}")


if __name__ == "__main__":
    main()
