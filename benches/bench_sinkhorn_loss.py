"""Value + gradient of the Sinkhorn divergence: otinverse.learn against OTT-JAX (run by hand).

    python benches/bench_sinkhorn_loss.py [--sizes 1000 10000] [--rel-eps 1e-2 1e-3] [--huge]
        [--ott-max-iter 100000]

The table, in four commands (the third caps OTT, see below):

    python benches/bench_sinkhorn_loss.py --sizes 1000 --rel-eps 1e-2 1e-3
    python benches/bench_sinkhorn_loss.py --sizes 10000 --rel-eps 1e-2
    python benches/bench_sinkhorn_loss.py --sizes 10000 --rel-eps 1e-3 --ott-max-iter 200
    python benches/bench_sinkhorn_loss.py --sizes --huge

Both run in this one process on the same problems (d = 2, N(0, I) against a shifted ring,
uniform weights, squared Euclidean cost, ε relative to the cost's max), float64, to the same
marginal tolerance; each time is one `jax.value_and_grad` call in the points x (JAX's compile
time is left out for both: ours after one warm-up call, OTT's compiled ahead of time, so its
solve runs once). OTT-JAX differentiates its `sinkhorn_divergence` implicitly (its default
`ImplicitDiff`); ours uses the envelope theorem on the Rust solve. `--ott-max-iter` caps OTT's
iterations per problem: when one of its three problems stops there unconverged, its time is a
lower bound of the time to `tol`, and the ratio is printed as `>=`. `--huge` adds 10⁵ points at
ε = 1e-3 (ours only). The load is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from otinverse.learn import sinkhorn_divergence  # noqa: E402

TOL = 1e-6


def clouds(n, seed=0):
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, 2 * np.pi, n)
    ring = 3 * np.stack([np.cos(angle), np.sin(angle)], 1) + np.array([4.0, 0.0])
    return rng.standard_normal((n, 2)), ring + 0.2 * rng.standard_normal((n, 2))


def max_cost(x, y):
    span = np.concatenate([x, y]).max(0) - np.concatenate([x, y]).min(0)
    return float((span**2).sum())  # the bounding box's squared diagonal bounds max |x − y|²


def ours(reg):
    def loss(x, y):
        return sinkhorn_divergence(x, y, reg=reg, tol=TOL, max_iter=100_000)

    return jax.value_and_grad(loss)


def ott(reg, max_iter):
    from ott.geometry import pointcloud
    from ott.tools.sinkhorn_divergence import sinkhorn_divergence as ott_divergence

    def loss(x, y):
        kwargs = {"threshold": TOL, "max_iterations": max_iter}
        value, out = ott_divergence(pointcloud.PointCloud, x, y, epsilon=reg, solve_kwargs=kwargs)
        return value, (jnp.all(jnp.asarray(out.converged)), jnp.asarray(out.n_iters))

    return jax.jit(jax.value_and_grad(loss, has_aux=True))


def timed(fn, x, y):
    value, grad = fn(x, y)  # warm-up: compilation
    jax.block_until_ready(grad)
    start = time.perf_counter()
    value, grad = fn(x, y)
    jax.block_until_ready(grad)
    return time.perf_counter() - start, float(value), np.asarray(grad)


def timed_ott(fn, x, y):
    """(seconds, value, gradient, converged, iterations of its three problems) of one call,
    compiled ahead of time: a capped solve of minutes runs once, not twice."""
    compiled = fn.lower(x, y).compile()
    start = time.perf_counter()
    (value, (converged, n_iters)), grad = compiled(x, y)
    jax.block_until_ready(grad)
    seconds = time.perf_counter() - start
    return seconds, float(value), np.asarray(grad), bool(converged), np.asarray(n_iters).tolist()


def main():
    # Line-buffered even into a file: a run stopped by a timeout keeps the rows it printed.
    sys.stdout.reconfigure(line_buffering=True)
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 10_000])
    parser.add_argument("--rel-eps", type=float, nargs="+", default=[1e-2, 1e-3])
    parser.add_argument("--huge", action="store_true")
    parser.add_argument("--ott-max-iter", type=int, default=100_000)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()}, {os.cpu_count()} cores, tol {TOL}")
    print(
        f"{'n':>7} {'eps/max':>8} {'ours s':>8} {'OTT s':>8} {'ratio':>7} {'rel diff':>9} "
        f"{'grad diff':>9}  OTT iterations (xy, xx, yy)"
    )
    for n in args.sizes:
        x, y = (jnp.asarray(v) for v in clouds(n))
        for rel in args.rel_eps:
            reg = rel * max_cost(np.asarray(x), np.asarray(y))
            t_ours, v_ours, g_ours = timed(ours(reg), x, y)
            try:
                t_ott, v_ott, g_ott, done, iters = timed_ott(ott(reg, args.ott_max_iter), x, y)
            except ImportError:
                t_ott, v_ott, g_ott, done, iters = float("nan"), float("nan"), np.nan, False, []
            diff = abs(v_ours - v_ott) / abs(v_ott)
            grad_diff = np.abs(g_ours - g_ott).max() / np.abs(g_ott).max()
            # Unconverged at the cap: OTT's time to tol is longer, the ratio a lower bound.
            ratio = f"{'' if done else '>='}{t_ott / t_ours:.1f}"
            print(
                f"{n:>7} {rel:>8.0e} {t_ours:>8.2f} {t_ott:>8.2f} {ratio:>7} "
                f"{diff:>9.1e} {grad_diff:>9.1e}  {iters}{'' if done else ' (cap, unconverged)'}",
                flush=True,
            )
    if args.huge:
        x, y = (jnp.asarray(v) for v in clouds(100_000))
        reg = 1e-3 * max_cost(np.asarray(x), np.asarray(y))
        start = time.perf_counter()
        _, grad = ours(reg)(x, y)
        jax.block_until_ready(grad)
        print(f"100000 points, eps/max 1e-3: value + gradient {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
