"""Sparsification of 32×32 star patches: this build's solvers side by side with the previous
path and a NumPy/POT implementation of Algorithm 2. Run by hand:

    python benches/bench_sparsify.py [--baseline /path/to/old/python] [--skip-pot]

``--baseline`` points at the ``python/`` folder of a previous build of otinverse (its positional
``_core.sparsify_grid`` API); it is run in a subprocess on the same patches. Printed:

1. the previous notebook setting (Algorithm 2, ε = 2, λ = 0.05, 30 steps, Sinkhorn 2000 / 1e-6,
   sky included) on one patch: this build's grid kernel, the dense kernel, the baseline, NumPy/POT;
2. agreement at tight Sinkhorn tolerance (1e-12) on the paper's toy and a fixed 16² patch;
3. the notebook setting (majorize, ε = 2, λ ∈ {0.1, 0.5}, ≤ 300 steps, tol 1e-6, sky subtracted)
   per patch, and a batch of patches × 3 bands through ``EntropicSparsifier`` (rayon over images).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import ot
from otinverse import EntropicSparsifier, _core
from otinverse.datasets import make_star_groups
from otinverse.sparsify import _subtract_background
from sklearn.exceptions import ConvergenceWarning

NU_TOY = np.array([3, 2, 0.1, 0.1, 0.1, 1, 2, 3, 2, 1]) / 14.3
C_TOY = np.abs(np.arange(10.0)[:, None] - np.arange(10.0)[None, :])


def numpy_pot_sparsify(nu, C, lam, reg, steps, sk_tol, sk_iter, step_size=0.01, min_step=1e-12):
    """Algorithm 2 as the core runs it, with POT's log-domain Sinkhorn on μ's support."""

    def ot_eps(mu):
        s = mu > 0
        P, log = ot.sinkhorn(
            mu[s],
            nu,
            C[s],
            reg,
            method="sinkhorn_log",
            stopThr=sk_tol,
            numItermax=sk_iter,
            log=True,
        )
        kl = np.sum(P * np.log(np.where(P > 0, P, 1.0) / np.outer(mu[s], nu)), where=P > 0)
        F = np.zeros_like(mu)
        F[s] = reg * (log["log_u"] - np.log(mu[s]))
        return float(np.sum(P * C[s]) + reg * kl), F

    def H(m):
        return -np.sum(m[m > 0] * np.log(m[m > 0]))

    mu = nu.copy()
    val, F = ot_eps(mu)
    J = val + lam * H(mu)
    start = step_size
    for _ in range(steps):
        S = mu > 0
        w = np.zeros_like(mu)
        w[S] = F[S] + lam * (-np.log(mu[S]) - 1)
        w[S] -= w[S].mean()
        alpha = start
        while alpha >= min_step:
            cand = np.where(S, np.maximum(mu - alpha * w, 0), 0)
            cand /= cand.sum()
            v, Fc = ot_eps(cand)
            if v + lam * H(cand) < J:
                mu, F, J = cand, Fc, v + lam * H(cand)
                break
            alpha /= 2
        else:
            break
        start = min(2 * alpha, step_size)
    return mu


BASELINE_SCRIPT = """
import json, sys, time
import numpy as np
from otinverse import _core
job = json.load(sys.stdin)
out = []
for case in job:
    nu = np.array(case["nu"])
    t = time.perf_counter()
    if case["kind"] == "grid":
        n = case["n"]
        d = _core.sparsify_grid(nu, n, n, 1.0, 1.0, None, *case["args"])
    else:
        d = _core.sparsify_dense(nu, np.array(case["cost"]), None, *case["args"], "entropic")
    out.append({"seconds": time.perf_counter() - t, "mu": d["mu"].tolist()})
json.dump(out, sys.stdout)
"""


def run_baseline(path, cases):
    """Runs the previous build's positional API on ``cases`` in a subprocess."""
    env = dict(os.environ, PYTHONPATH=path)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(BASELINE_SCRIPT)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(done.stdout)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def old_setting(nu, n, C, baseline, skip_pot):
    """Section 1: Algorithm 2 at the previous notebook's setting."""
    lam, reg, steps = 0.05, 2.0, 30
    options = _core.SparsifyOptions(
        sparsity=lam, reg=reg, max_iter=steps, sinkhorn_max_iter=2000, sinkhorn_tol=1e-6
    )
    rows = [
        (
            "this build, grid kernel",
            *timed(lambda: _core.sparsify_grid(nu, (n, n), (1.0, 1.0), options).mu),
        )
    ]
    rows.append(
        ("this build, dense kernel", *timed(lambda: _core.sparsify_dense(nu, C, options).mu))
    )
    if baseline:
        args = [lam, reg, 0.01, steps, 1e-9, 1e-12, 2000, 1e-6, False]
        res = run_baseline(baseline, [{"kind": "grid", "n": n, "nu": nu.tolist(), "args": args}])[0]
        rows.append(("previous build, grid kernel", res["seconds"], np.array(res["mu"])))
    if not skip_pot:
        rows.append(
            (
                "NumPy + POT sinkhorn_log",
                *timed(lambda: numpy_pot_sparsify(nu, C, lam, reg, steps, 1e-6, 2000)),
            )
        )
    best = min(sec for _, sec, _ in rows)
    print(
        f"\n1. Algorithm 2, previous notebook setting ({n}x{n}, eps={reg}, lambda={lam}, "
        f"{steps} steps)"
    )
    print("| implementation | time [s] | x fastest | max |mu - mu_grid| |")
    print("|---|---|---|---|")
    for name, sec, mu in rows:
        print(f"| {name} | {sec:.3f} | {sec / best:.1f} | {np.abs(mu - rows[0][2]).max():.1e} |")


def agreement(patch, baseline):
    """Section 2: tight-tolerance agreement with the previous build and NumPy/POT."""
    n = patch.shape[0]
    nu = patch.ravel() / patch.sum()
    C = _core.grid_cost_matrix((n, n), (1.0, 1.0))
    print("\n2. Agreement at Sinkhorn tol 1e-12 (Algorithm 2)")
    print("| problem | reference | max |mu - reference| |")
    print("|---|---|---|")
    cases = [
        ("paper's toy, lambda=5, eps=0.1, 50 steps", NU_TOY, C_TOY, 5.0, 0.1, 50, "dense"),
        (f"fixed {n}x{n} patch, lambda=0.05, eps=2, 10 steps", nu, C, 0.05, 2.0, 10, "grid"),
    ]
    for label, v, cost, lam, reg, steps, kind in cases:
        options = _core.SparsifyOptions(
            sparsity=lam, reg=reg, max_iter=steps, sinkhorn_tol=1e-12, sinkhorn_max_iter=100000
        )
        if kind == "grid":
            mu = _core.sparsify_grid(v, (n, n), (1.0, 1.0), options).mu
        else:
            mu = _core.sparsify_dense(v, cost, options).mu
        ref = numpy_pot_sparsify(v, cost, lam, reg, steps, 1e-13, 100000)
        print(f"| {label} | NumPy + POT | {np.abs(mu - ref).max():.1e} |")
        if baseline:
            args = [lam, reg, 0.01, steps, 1e-9, 1e-12, 100000, 1e-12, False]
            case = {"kind": kind, "n": n, "nu": v.tolist(), "args": args, "cost": cost.tolist()}
            old = np.array(run_baseline(baseline, [case])[0]["mu"])
            print(f"| {label} | previous build | {np.abs(mu - old).max():.1e} |")


def notebook_setting(data):
    """Section 3: the notebook's majorize setting, one image and a batch (a few images stop at
    the 300-step cap, as in the notebook; their warnings are silenced here)."""
    warnings.simplefilter("ignore", ConvergenceWarning)
    stack = _subtract_background(data.reshape(-1, *data.shape[2:]))
    n = stack.shape[-1]
    print(f"\n3. Notebook setting: majorize, eps=2, <= 300 steps, tol 1e-6, {n}x{n}")
    print(
        f"| lambda | one image [s] (median of 9) | batch of {len(stack)} images [s] "
        "| per image in batch [s] |"
    )
    print("|---|---|---|---|")
    for lam in (0.1, 0.5):
        est = EntropicSparsifier(reg=2.0, sparsity=lam, solver="majorize", max_iter=300, tol=1e-6)
        est.fit(stack[:1])
        one = np.median(
            [timed(lambda i=i, est=est: est.transform(stack[i : i + 1]))[0] for i in range(9)]
        )
        sec, _ = timed(lambda est=est: est.transform(stack))
        print(f"| {lam} | {one:.3f} | {sec:.2f} | {sec / len(stack):.3f} |")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--baseline", help="python/ folder of a previous otinverse build")
    p.add_argument("--skip-pot", action="store_true")
    p.add_argument("--patches", type=int, default=16)
    args = p.parse_args()
    data = make_star_groups(args.patches, bands=3, size=32, cluster_fraction=1.0, random_state=3)
    img = data.data[0, 0]
    n = img.shape[0]
    old_setting(
        img.ravel() / img.sum(),
        n,
        _core.grid_cost_matrix((n, n), (1.0, 1.0)),
        args.baseline,
        args.skip_pot,
    )
    agreement(data.data[1, 0, 8:24, 8:24], args.baseline)
    notebook_setting(data.data)


if __name__ == "__main__":
    main()
