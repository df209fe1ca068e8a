"""Speed of OT image retrieval against POT (run by hand: python benches/bench_classify.py).

The whole 8×8 test set of scikit-learn's digits (fixed split: last 797 images) against the ten
class means, ground cost atan(d) between pixel positions, reg 0.3, every problem converged to a
marginal error of 1e-9. Prints, in one run, best of three:

* otinverse's ``sinkhorn_batch`` (all 797 × 10 pairs in one call, rayon over pairs);
* POT's batched ``ot.sinkhorn2`` (one call per test image, the ten prototypes as the columns of
  ``b``, the source restricted to its support rows: on the full grid POT's ``method="sinkhorn"``
  divides by the empty pixels' zero weights);
* POT's exact ``ot.emd2`` per pair, for reference;
* the ratio of each to otinverse, and the largest transport-cost difference to POT.
"""

from __future__ import annotations

import os
import time

import numpy as np
import ot
from otinverse import grid_cost, sinkhorn_batch
from sklearn.datasets import load_digits

REG, TOL = 0.3, 1e-9


def best_of(fn, repeat=3):
    best, out = np.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def data():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    means = np.stack([X[:1000][y[:1000] == c].mean(0) for c in range(10)])
    H = X[1000:] / X[1000:].sum(1, keepdims=True)
    return H, means / means.sum(1, keepdims=True), grid_cost((8, 8), "atan")


def pot_batched(H, B, C):
    values, worst = [], 0.0
    for h in H:
        s = h > 0
        v, log = ot.sinkhorn2(h[s], B.T, C[s], REG, stopThr=TOL, log=True)
        values.append(v)
        worst = max(worst, float(np.max(log["err"][-1])))
    return np.array(values), worst


def main():
    H, B, C = data()
    print(f"{len(H)} test digits × {len(B)} class means, atan, reg {REG}, tol {TOL}")
    threads = os.environ.get("RAYON_NUM_THREADS", "all")
    print(f"threads: RAYON_NUM_THREADS={threads}, {os.cpu_count()} CPUs")
    t_ours, res = best_of(lambda: sinkhorn_batch(H, B, C, REG, tol=TOL))
    print(
        f"otinverse sinkhorn_batch   {t_ours:8.3f} s   converged {res.converged.all()}, "
        f"max iterations {res.n_iter.max()}"
    )
    t_pot, (vals, err) = best_of(lambda: pot_batched(H, B, C))
    diff = np.abs(vals - res.transport_cost).max()
    print(
        f"POT sinkhorn2 (batched)    {t_pot:8.3f} s   {t_pot / t_ours:5.1f}× otinverse, last POT "
        f"error {err:.1e}, max |Δ cost| {diff:.1e}"
    )
    t, _ = best_of(
        lambda: np.array([[ot.emd2(h[h > 0], b, C[h > 0]) for b in B] for h in H]), repeat=1
    )
    print(f"POT emd2 (exact)           {t:8.3f} s   {t / t_ours:5.1f}× otinverse")


if __name__ == "__main__":
    main()
