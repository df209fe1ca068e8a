"""One 32×32 sparsification (50 descent steps): separable grid kernel vs dense kernel (Rust) vs
a NumPy/POT implementation of the same algorithm. Run by hand:

    python benches/bench_sparsify.py [--size 32] [--steps 50] [--reg 10] [--sparsity 0.5]

Prints wall times, ratios, and the agreement of the three results. The image is a synthetic
two-star patch from make_star_patches (one band, sky included so that ν has full support).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import ot
from otinverse import _core, make_star_patches


def numpy_pot_sparsify(nu, C, lam, reg, step_size, steps, sk_tol, sk_iter, min_step=1e-12):
    """Same algorithm as the core, with POT's log-domain Sinkhorn on the support sub-problem."""

    def ot_eps(mu, warm):
        S = mu > 0
        a = mu[S]
        Cs = C[S]
        ws = None
        if warm is not None:
            ws = (warm[0][S], warm[1])
        P, log = ot.sinkhorn(
            a,
            nu,
            Cs,
            reg,
            method="sinkhorn_log",
            stopThr=sk_tol,
            numItermax=sk_iter,
            warmstart=ws,
            log=True,
        )
        f = reg * (log["log_u"] - np.log(a))  # P = a b exp((f + g − C)/reg)
        kl = np.sum(
            P * (np.log(np.where(P > 0, P, 1.0)) - np.log(a)[:, None] - np.log(nu)[None, :]),
            where=P > 0,
        )
        value = float(np.sum(P * Cs) + reg * kl)
        F = np.zeros_like(mu)
        F[S] = f
        lu = np.full_like(mu, 0.0)
        lu[S] = log["log_u"]
        return value, F, (lu, log["log_v"])

    H = lambda m: -np.sum(m[m > 0] * np.log(m[m > 0]))
    mu = nu.copy()
    val, F, warm = ot_eps(mu, None)
    J = val + lam * H(mu)
    k = 0
    start = step_size
    for k in range(steps):
        S = mu > 0
        w = np.zeros_like(mu)
        w[S] = F[S] + lam * (-np.log(mu[S]) - 1)
        w[S] -= w[S].mean()
        if np.abs(w).sum() < 1e-9:
            break
        alpha = start  # twice the last accepted step, capped at step_size (as the core)
        while alpha >= min_step:
            cand = np.where(S, np.maximum(mu - alpha * w, 0), 0)
            cand /= cand.sum()
            v, Fc, wc = ot_eps(cand, warm)
            if v + lam * H(cand) < J:
                mu, F, warm, J = cand, Fc, wc, v + lam * H(cand)
                break
            alpha /= 2
        else:
            break
        start = min(2 * alpha, step_size)
    return mu, J, k


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--reg", type=float, default=10.0)
    p.add_argument("--sparsity", type=float, default=0.5)
    p.add_argument("--skip-pot", action="store_true")
    args = p.parse_args()
    n = args.size
    X, y = make_star_patches(4, bands=1, size=n, random_state=3)
    img = X[int(np.argmin(y)), 0]
    nu = img.ravel() / img.sum()
    C = _core.grid_cost_matrix(n, n, 1.0, 1.0)
    common = (args.sparsity, args.reg, 0.01, args.steps, 1e-9, 1e-12, 10_000, 1e-9, False)

    rows = []
    t = time.perf_counter()
    grid = _core.sparsify_grid(nu, n, n, 1.0, 1.0, None, *common)
    rows.append(
        (
            "Rust, separable grid kernel",
            time.perf_counter() - t,
            grid["mu"],
            grid["objective"],
            grid["n_iter"],
            grid["sinkhorn_iters"],
        )
    )
    t = time.perf_counter()
    dense = _core.sparsify_dense(nu, C, None, *common, "entropic")
    rows.append(
        (
            "Rust, dense kernel",
            time.perf_counter() - t,
            dense["mu"],
            dense["objective"],
            dense["n_iter"],
            dense["sinkhorn_iters"],
        )
    )
    for name, sec, *_ in rows:
        print(f"{name}: {sec:.3f} s", flush=True)
    if not args.skip_pot:
        t = time.perf_counter()
        mu, J, k = numpy_pot_sparsify(
            nu, C, args.sparsity, args.reg, 0.01, args.steps, 1e-9, 10_000
        )
        rows.append(("NumPy + POT sinkhorn_log", time.perf_counter() - t, mu, J, k, float("nan")))

    base = rows[0][1]
    print(f"{n}x{n} image, reg={args.reg}, sparsity={args.sparsity}, {args.steps} steps max\n")
    print(
        "| implementation | time [s] | × grid | steps | Sinkhorn iters | final J | ‖μ − μ_grid‖₁ |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, sec, mu, J, k, it in rows:
        print(
            f"| {name} | {sec:.3f} | {sec / base:.1f} | {k} | {it} | {J:.10f} | {np.abs(mu - grid['mu']).sum():.2e} |"
        )


if __name__ == "__main__":
    main()
