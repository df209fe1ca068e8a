"""Time to a converged plan: otinverse against POT, OTT-JAX and GeomLoss (run by hand).

    python benches/bench_time_to_tol.py [--cases table|small|medium|tiny|large|huge|unbalanced|all]
        [--tol 1e-6] [--stabilized-max-iter 10000]

The unbalanced table (semi and full, ε = 1e-2 and 1e-3), quick to re-run:

    python benches/bench_time_to_tol.py --cases unbalanced --stabilized-max-iter 300

Every solver runs in this one process on the same problems (uniform weights, squared Euclidean
cost scaled to max 1), so the ratios are fair even on a loaded machine; the load is printed.
Each solver's L1 marginal error (both marginals, relative to the mass) is recomputed here from the
plan it returns, never taken from its own report; every dense solver's time includes building
that plan (POT's `sinkhorn` returns it). A peer's stopping threshold is not our L1
error, so each peer is run with a ladder of thresholds and its time is that of the loosest one
whose recomputed error meets the target ("best converged peer"). Peers that are not installed
are left out (OTT-JAX runs in float64; GeomLoss needs PyTorch, not installed here).

Problems: d = 2, N(0, I) against a noisy shifted ring; d = 36, two Gaussian clouds; and the
large cases, uniform points in the unit square (online cost, only solvers that never store
the n×m matrix); the tiny case, 400 uniform points at ε = 1e-5.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import ot
import otinverse
from otinverse import _core
from scipy.special import logsumexp

SMALL = [(1000, 2, 1e-2), (1000, 2, 1e-3), (4000, 2, 1e-2), (1000, 36, 1e-2)]
MEDIUM = [(4000, 2, 1e-3), (4000, 36, 1e-2)]
LARGE = [(10_000, 2, 1e-3), (100_000, 2, 3e-5)]
# Small ε, where Sinkhorn's rate collapses (run with --cases tiny).
TINY = [(400, 2, 1e-5)]
# Its truncated kernel keeps ~2·10⁹ entries (≈ 8 GB in float32): stored when half the available
# memory holds it, else the target stage runs on the online kernel (run with --cases huge).
HUGE = [(100_000, 2, 1e-3)]
LADDER = (1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10)
# Semi- (b relaxed) and fully-unbalanced: (n, d, ε, reach), b carrying 0.8 of a's mass.
UNBALANCED = [(1000, 2, 1e-2, 0.1), (1000, 2, 1e-3, 0.1)]


def clouds(n, d, seed=0):
    rng = np.random.default_rng(seed)
    if d == 2:
        x = rng.standard_normal((n, 2))
        angle = rng.uniform(0, 2 * np.pi, n)
        ring = 3 * np.stack([np.cos(angle), np.sin(angle)], 1) + np.array([4.0, 0.0])
        return x, ring + 0.2 * rng.standard_normal((n, 2))
    return rng.standard_normal((n, d)), rng.standard_normal((n, d)) + 0.5


def uniform_square(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 2)), rng.random((n, 2))


def l1_error_from_potentials(x, y, scale, f, g, reg, a, b, weighted=True, block=2048):
    """Marginal error of P_ij = a_i b_j exp((f_i + g_j - |x_i - y_j|²/scale)/reg), in blocks
    (without the factor a_i b_j when not `weighted`: OTT's potentials carry the weights)."""
    cols = np.full(y.shape[0], -np.inf)
    err_rows = 0.0
    y2 = (y * y).sum(1)
    for i0 in range(0, x.shape[0], block):
        xb = x[i0 : i0 + block]
        c = ((xb * xb).sum(1)[:, None] + y2[None, :] - 2 * xb @ y.T) / scale
        logp = (f[i0 : i0 + block, None] + g[None, :] - c) / reg
        if weighted:
            logp += np.log(a[i0 : i0 + block])[:, None] + np.log(b)[None, :]
        err_rows += np.abs(np.exp(logsumexp(logp, axis=1)) - a[i0 : i0 + block]).sum()
        cols = np.logaddexp(cols, logsumexp(logp, axis=0))
    return err_rows / a.sum() + np.abs(np.exp(cols) - b).sum() / b.sum()


def plan_error(plan, a, b):
    plan = np.asarray(plan, dtype=np.float64)
    if not np.all(np.isfinite(plan)):
        return np.inf
    return np.abs(plan.sum(1) - a).sum() / a.sum() + np.abs(plan.sum(0) - b).sum() / b.sum()


WARM_UP = 0.3
# Timed calls of a sub-second solve: at least REPEATS, and as many more as fit in TIMED seconds.
REPEATS = 5
TIMED = 1.0


def timed(fn):
    """(seconds, result) of `fn()`, the same for every solver (ours and the peers): a call under
    a second is first repeated untimed for at least WARM_UP seconds, then timed as the best of
    at least REPEATS calls and of as many as fit in TIMED seconds (a 10 ms solve: ~100 calls),
    so no solver pays one-off costs (thread-pool start, the first page faults of its buffers,
    the allocator's first large blocks, an idle second vCPU) that a user's later calls do not,
    and a short solve's time does not hang on one scheduling slice of a shared machine (the
    full-unbalanced ε = 1e-2 ratio, an ~11 ms solve, read 2.1× and 4.1× in two runs of a
    best of five). On this 2-vCPU VM the first ~10 solves of the 1000² case take 25 → 7 ms
    before settling (3 solves with one thread): one untimed call was not enough."""
    t = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t
    if first >= 1.0:
        return first, out
    while time.perf_counter() - t < WARM_UP:
        out = fn()
    best, calls, start = np.inf, 0, time.perf_counter()
    while calls < REPEATS or time.perf_counter() - start < TIMED:
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
        calls += 1
    return best, out


def best_on_ladder(run, tol, budget):
    """(seconds, iterations, error) of the loosest threshold whose recomputed error ≤ tol; else
    the last attempt (marked unconverged by its error). `run(thr)` returns (seconds, it, err)."""
    last = None
    for thr in LADDER:
        try:
            last = run(thr)
        except Exception as exc:  # a peer that fails (overflow, NaN) is reported, not fatal
            return (np.inf, 0, f"failed: {type(exc).__name__}")
        if last[2] <= tol or last[0] > budget:
            return last
    return last


# ---------------------------------------------------------------------------- solvers


def ours_dense(M, a, b, reg, tol):
    def solve():
        r = otinverse.sinkhorn(a, b, M, reg, tol=tol, max_iter=100_000, warn=False)
        _ = r.plan  # POT returns the plan: every solver's time includes building it
        return r

    t, r = timed(solve)
    return t, r.n_iter, plan_error(r.plan, a, b), r


def ours_points(x, y, scale, a, b, reg, tol):
    xs, ys = x / np.sqrt(scale), y / np.sqrt(scale)
    t, r = timed(
        lambda: otinverse.sinkhorn_points(
            xs, ys, reg, a=a, b=b, tol=tol, max_iter=100_000, eps_scaling=0.5, warn=False
        )
    )
    return t, r.n_iter, r


def pot_solver(method):
    def run(M, a, b, reg, thr):
        t, (plan, log) = timed(
            lambda: ot.sinkhorn(
                a, b, M, reg, method=method, numItermax=100_000, stopThr=thr, log=True, warn=False
            )
        )
        return t, log.get("niter", 0), plan_error(plan, a, b)

    return run


def ott_solvers():
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        from ott.geometry import geometry, pointcloud
        from ott.problems.linear import linear_problem
        from ott.solvers.linear import acceleration, sinkhorn
    except ImportError:
        return {}

    def make(kind):
        def solver(thr):
            extra = {}
            if kind == "Anderson":
                extra["anderson"] = acceleration.AndersonAcceleration(memory=5)
            elif kind == "momentum":
                extra["momentum"] = acceleration.Momentum(start=20)
            return sinkhorn.Sinkhorn(threshold=thr, max_iterations=100_000, norm_error=1, **extra)

        def run(M, a, b, reg, thr):
            geom = geometry.Geometry(cost_matrix=jnp.asarray(M), epsilon=reg)
            prob = linear_problem.LinearProblem(geom, jnp.asarray(a), jnp.asarray(b))
            s = jax.jit(solver(thr))
            s(prob).f.block_until_ready()  # compile outside the timing
            t, (out, plan) = timed(lambda: jax.block_until_ready((o := s(prob), o.matrix)))
            return t, int(out.n_iters), plan_error(plan, a, b)

        def run_points(x, y, scale, a, b, reg, thr):
            # (OTT's batched online cost needs an older JAX than this OTT's dependency range
            # installs; at n ≤ 10⁴ the materialised cost fits.)
            geom = pointcloud.PointCloud(
                jnp.asarray(x / np.sqrt(scale)), jnp.asarray(y / np.sqrt(scale)), epsilon=reg
            )
            prob = linear_problem.LinearProblem(geom, jnp.asarray(a), jnp.asarray(b))
            s = jax.jit(solver(thr))
            s(prob).f.block_until_ready()  # compile outside the timing
            t, out = timed(lambda: jax.block_until_ready(s(prob)))
            f, g = np.asarray(out.f), np.asarray(out.g)
            err = l1_error_from_potentials(x, y, scale, f, g, reg, a, b, weighted=False)
            return t, int(out.n_iters), err

        run.points = run_points
        return run

    return {f"OTT {k}": make(k) for k in ("plain", "Anderson", "momentum")}


# ---------------------------------------------------------------------------- unbalanced


def plan_distance(plan, reference):
    """‖P − P_ref‖₁ / ‖P_ref‖₁: an unbalanced plan's marginals are not known in advance, so its
    accuracy is measured against a tightly converged reference plan."""
    plan = np.asarray(plan, dtype=np.float64)
    if not np.all(np.isfinite(plan)):
        return np.inf
    return float(np.abs(plan - reference).sum() / reference.sum())


def unbalanced_peers(reach_a, reach_b, stabilized_max_iter=10_000):
    """(name, run(M, a, b, reg, thr) → (seconds, iterations, plan)) of POT's and OTT's solvers."""
    reg_m = (np.inf if reach_a is None else reach_a, reach_b)

    def pot(method, max_iter):
        def run(M, a, b, reg, thr):
            t, (plan, log) = timed(
                lambda: ot.unbalanced.sinkhorn_unbalanced(
                    a, b, M, reg, reg_m, method=method, numItermax=max_iter, stopThr=thr, log=True
                )
            )
            return t, log.get("niter", 0), plan

        return run

    # POT's stabilized solver ran its whole 10⁵-iteration cap (> 200 s per attempt at n = 1000,
    # ε = 1e-2) without reaching 1e-6, and the budget is checked between attempts only: 10⁴
    # by default (540 s per attempt at load 10, still unconverged), `--stabilized-max-iter`.
    peers = {
        "POT scaling": pot("sinkhorn", 100_000),
        "POT stabilized": pot("sinkhorn_stabilized", stabilized_max_iter),
    }
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        from ott.geometry import geometry
        from ott.problems.linear import linear_problem
        from ott.solvers.linear import sinkhorn
    except ImportError:
        return peers

    def ott_run(M, a, b, reg, thr):
        # OTT's relaxation τ = ρ / (ρ + ε) (its ρ = ε τ / (1 − τ)); τ = 1 keeps a side exact.
        tau_a, tau_b = (1.0 if r is None else r / (r + reg) for r in (reach_a, reach_b))
        # OTT's entropy is relative to the counting measure, not to a⊗b as ours and POT's: its
        # plan for (a, b, τ) is ours for (a^τ, b^τ, ρ) (ε log a_i joins the relaxed side's KL,
        # whose weight becomes ρ + ε). Given a^(1/τ_a), b^(1/τ_b) it solves our problem; on an
        # exact side τ = 1 leaves the marginal as it is.
        geom = geometry.Geometry(cost_matrix=jnp.asarray(M), epsilon=reg)
        prob = linear_problem.LinearProblem(
            geom,
            jnp.asarray(a ** (1 / tau_a)),
            jnp.asarray(b ** (1 / tau_b)),
            tau_a=tau_a,
            tau_b=tau_b,
        )
        # 10⁴ iterations: on these problems OTT's relaxed iterations can stall below threshold,
        # and 10⁵ of them per ladder rung kept the whole table from finishing.
        s = jax.jit(sinkhorn.Sinkhorn(threshold=thr, max_iterations=10_000, norm_error=1))
        s(prob).f.block_until_ready()  # compile outside the timing
        t, (out, plan) = timed(lambda: jax.block_until_ready((o := s(prob), o.matrix)))
        return t, int(out.n_iters), plan

    peers["OTT tau_a/tau_b"] = ott_run
    return peers


def unbalanced_case(n, d, reg, reach, semi, tol, budget, stabilized_max_iter):
    """Rows (name, seconds, iterations, plan distance) of every solver on one relaxed problem."""
    x, y = clouds(n, d)
    M = ot.dist(x, y)
    M /= M.max()
    a, b = np.full(n, 1.0 / n), np.full(n, 0.8 / n)
    reach_a = None if semi else reach
    reference = otinverse.sinkhorn(
        a, b, M, reg, reach_a=reach_a, reach_b=reach, tol=1e-13, max_iter=1_000_000
    ).plan

    def ours(thr):
        def solve():
            r = otinverse.sinkhorn(
                a, b, M, reg, reach_a=reach_a, reach_b=reach, tol=thr, max_iter=100_000, warn=False
            )
            return r, r.plan

        t, (r, plan) = timed(solve)
        return t, r.n_iter, plan_distance(plan, reference)

    rows = [("otinverse", *best_on_ladder(ours, tol, budget))]
    for name, run in unbalanced_peers(reach_a, reach, stabilized_max_iter).items():

        def attempt(thr, run=run):
            t, it, plan = run(M, a, b, reg, thr)
            return t, it, plan_distance(plan, reference)

        rows.append((name, *best_on_ladder(attempt, tol, budget)))
    return rows


# ---------------------------------------------------------------------------- table


def dense_case(n, d, reg, tol, peers, budget):
    x, y = clouds(n, d)
    M = ot.dist(x, y)
    M /= M.max()
    a = np.full(n, 1.0 / n)
    t, it, err, res = ours_dense(M, a, a, reg, tol)
    rows = [("otinverse", t, it, err)]
    # Today's log-domain kernel, for the plan comparison (and its time).
    t_log, log = timed(
        lambda: otinverse.sinkhorn(a, a, M, reg, tol=tol, max_iter=100_000, kernel="log")
    )
    rows.append(("otinverse log", t_log, log.n_iter, plan_error(log.plan, a, a)))
    print(f"\n  max |P - P_log| = {np.abs(res.plan - log.plan).max():.1e} (n = {n}, reg = {reg:g})")
    for name, run in peers.items():
        out = best_on_ladder(lambda thr, run=run: run(M, a, a, reg, thr), tol, budget)
        rows.append((name, *out))
    best = best_peer(rows, tol)
    if best and best[3] < err:
        # Equal footing: ours again, asked for the best peer's (smaller) recomputed error.
        t_eq, it_eq, err_eq, _ = ours_dense(M, a, a, reg, best[3])
        rows.append((EQUAL, t_eq, it_eq, err_eq))
    return rows


EQUAL = "otinverse at peer's error"


def best_peer(rows, tol):
    """The fastest peer whose recomputed error meets `tol` (None when none does)."""
    good = [
        r
        for r in rows[1:]
        if not r[0].startswith("otinverse") and isinstance(r[3], float) and r[3] <= tol
    ]
    return min(good, key=lambda r: r[1]) if good else None


def large_case(n, reg, tol, peers, budget):
    x, y = uniform_square(n)
    scale = 2.0  # max |x - y|² on the unit square
    a = np.full(n, 1.0 / n)
    t, it, res = ours_points(x, y, scale, a, a, reg, tol)
    rows = [("otinverse", t, it, res.marginal_error)]
    print(f"\n  otinverse stages (n = {n}, reg = {reg:g}): points, reg, iterations, kept per row")
    for points, eps, iters, kept in res.stages:
        print(f"    {points:>7} {eps:9.3g} {iters:>6} {kept:10.1f}")
    if n <= 10_000:
        # The reported error is that of the returned plan: check it here independently.
        err = l1_error_from_potentials(x, y, scale, res.f, res.g, reg, a, a)
        rows[0] = ("otinverse", t, it, err)
    for name, run in peers.items():
        if n > 10_000 or not hasattr(run, "points"):
            rows.append((name, np.nan, 0, "skipped (online peer, > budget)"))
            continue
        out = best_on_ladder(
            lambda thr, run=run: run.points(x, y, scale, a, a, reg, thr), tol, budget
        )
        rows.append((name, *out))
    return rows


def report(case, rows, tol):
    n, d, reg = case
    ours = rows[0][1]
    best = best_peer(rows, tol)
    print(f"\nn = {n}, d = {d}, reg = {reg:g}  ({os.getloadavg()[0]:.2f} load)")
    for name, t, it, err in rows:
        err_s = f"{err:.1e}" if isinstance(err, float) else err
        ratio = f"{t / ours:6.2f}x" if np.isfinite(t) and name != "otinverse" else ""
        print(f"  {name:<18} {t:9.3f} s {it:>7} it  err {err_s:<10} {ratio}")
    if best:
        print(f"  best converged peer: {best[0]}, peer / otinverse = {best[1] / ours:.2f}x")
    return best


def at_peer_error(rows, best):
    """The table cell of ours at the best peer's error: time and ratio, or a dash."""
    equal = [r for r in rows if r[0] == EQUAL]
    if not best or not equal:
        return "–"
    _, t, it, err = equal[0]
    return f"{t:.3f} s ({it} it, err {err:.1e}), {best[1] / t:.2f}×"


def main():
    # Line-buffered even into a file: a run stopped by a timeout keeps the rows it printed.
    sys.stdout.reconfigure(line_buffering=True)
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--cases",
        choices=("small", "medium", "table", "tiny", "large", "huge", "unbalanced", "all"),
        default="table",
    )
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per peer attempt")
    parser.add_argument(
        "--stabilized-max-iter",
        type=int,
        default=10_000,
        help="iteration cap of POT's stabilized unbalanced solver (it did not converge at 10⁴)",
    )
    args = parser.parse_args()
    peers = {"POT plain": pot_solver("sinkhorn"), "POT log": pot_solver("sinkhorn_log")}
    peers.update(ott_solvers())
    threads = os.environ.get("RAYON_NUM_THREADS", str(os.cpu_count()))
    print(
        f"otinverse {otinverse.__version__} ({_core.simd_level()}, {threads} threads), "
        f"POT {ot.__version__}; peers: {', '.join(peers)}; target L1 error {args.tol:g}"
    )
    print(f"uptime load: {os.getloadavg()}")
    summary = []
    dense = {"small": SMALL, "medium": MEDIUM, "table": SMALL + MEDIUM, "all": SMALL + MEDIUM}
    for case in dense.get(args.cases, []):
        rows = dense_case(*case, args.tol, peers, args.budget)
        best = report(case, rows, args.tol)
        summary.append((case, rows[0], best, at_peer_error(rows, best)))
    large = {"tiny": TINY, "large": LARGE, "huge": HUGE, "all": TINY + LARGE + HUGE}
    if args.cases in large:
        for n, d, reg in large[args.cases]:
            rows = large_case(n, reg, args.tol, peers, args.budget)
            report((n, d, reg), rows, args.tol)
    if args.cases in ("unbalanced", "all"):
        for n, d, reg, reach in UNBALANCED:
            for semi in (True, False):
                rows = unbalanced_case(
                    n, d, reg, reach, semi, args.tol, args.budget, args.stabilized_max_iter
                )
                kind = "semi" if semi else "full"
                print(f"\n{kind}-unbalanced, reach {reach:g} (plan distance to the reference):")
                report((n, d, reg), rows, args.tol)
    print(
        "\n| n | d | ε | otinverse | best converged peer (err) | peer / otinverse "
        "| otinverse at the peer's error |"
    )
    print("|---|---|---|---|---|---|---|")
    for (n, d, reg), ours, best, equal in summary:
        peer = f"{best[0]} {best[1]:.3f} s ({best[3]:.1e})" if best else "none converged"
        ratio = f"{best[1] / ours[1]:.2f}×" if best else "–"
        row = f"{ours[1]:.3f} s ({ours[2]} it, err {ours[3]:.1e})"
        print(f"| {n} | {d} | {reg:g} | {row} | {peer} | {ratio} | {equal} |")


if __name__ == "__main__":
    main()
