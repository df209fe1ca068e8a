"""Full-size unfolding experiments and speed (run by hand; prints tables).

    python benches/bench_unfolding.py [reference] [tol] [jet] [speed] [scaling]

* reference: Craig, Faktor, Nachman's 1-D experiment, 40 seeds linspace(0, 100, 40).astype(int), M = 1, 2, 4, 12,
  25 iterations, final W2²(ν_σ, ν) (exact, unbinned) for OT and RL with 14/28/38 bins.
* tol: M = 12 with ``tol`` instead of a fixed count, against 25 iterations.
* jet: 2-D jet mass, L = L' = 100, M' = 3, 30 iterations, M = 2, 4, 12; RL n_bin = 64/100/196/324.
* speed: one 1-D fit at M = 1 and M = 12 (25 iterations, no W2 tracking) against the NumPy
  implementation of eq. (25)–(28) in tests/python/test_unfolding.py.
* scaling: fit time for n measured events up to 10⁵.
* projection: the paper's DR projection against the exact one.
"""

import sys
import time
from pathlib import Path

import numpy as np
import otinverse as oi
from otinverse.datasets import load_jet_mass, make_unfolding_1d

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
from test_unfolding import block_response, numpy_ot_unfold

SEEDS = np.linspace(0, 100, 40).astype(int)


def reference():
    print("\n## 1-D, 40 seeds, 25 iterations: mean ± sd of final W2²(ν_σ, ν)")
    print("| M | OT | RL 14 bins | RL 28 bins | RL 38 bins | OT < best RL |")
    print("|---|---|---|---|---|---|")
    for M in (1, 2, 4, 12):
        rows = {"OT": [], 14: [], 28: [], 38: []}
        t0 = time.perf_counter()
        for s in SEEDS:
            d = make_unfolding_1d(M=M, random_state=int(s))
            kw = dict(gen=d.gen, reco=d.reco)
            rows["OT"].append(oi.OTUnfolder().fit(d.measured, **kw).w2_to_measured())
            for nb in (14, 28, 38):
                rows[nb].append(
                    oi.RichardsonLucyUnfolder(n_bins=nb, n_iter=25)
                    .fit(d.measured, **kw)
                    .w2_to_measured()
                )
        f = {k: f"{np.mean(v):.3g} ± {np.std(v):.2g}" for k, v in rows.items()}
        best = min(np.mean(rows[nb]) for nb in (14, 28, 38))
        print(
            f"| {M} | {f['OT']} | {f[14]} | {f[28]} | {f[38]} | {np.mean(rows['OT']) < best} |  ({time.perf_counter() - t0:.0f} s)"
        )
        sys.stdout.flush()


def tol(n_seeds=10, tol_value=1e-5):
    print(
        f"\n## 1-D, M = 12, first {n_seeds} seeds: 25 iterations vs tol={tol_value:g} (max_iter 2000)"
    )
    fixed, tolled, iters = [], [], []
    for s in SEEDS[:n_seeds]:
        d = make_unfolding_1d(M=12, random_state=int(s))
        kw = dict(gen=d.gen, reco=d.reco)
        fixed.append(oi.OTUnfolder().fit(d.measured, **kw).w2_to_measured())
        est = oi.OTUnfolder(tol=tol_value, max_iter=2000).fit(d.measured, **kw)
        tolled.append(est.w2_to_measured())
        iters.append(est.n_iter_)
    print(
        f"25 iterations: mean W2² {np.mean(fixed):.3g}; tol: mean W2² {np.mean(tolled):.3g} "
        f"(iterations {min(iters)}–{max(iters)}); per seed no worse: {np.sum(np.array(tolled) <= np.array(fixed))}/{n_seeds}"
    )


def jet():
    print("\n## 2-D jet mass, L = L' = 100, M' = 3, 30 iterations: final W2²(ν_σ, ν)")
    print("| M | OT | RL 64 | RL 100 | RL 196 | RL 324 | OT < every RL |")
    print("|---|---|---|---|---|---|---|")
    for M in (2, 4, 12):
        d = load_jet_mass(M=M)
        kw = dict(gen=d.gen, reco=d.reco, measured_weight=d.measured_weight)
        ot_w2 = oi.OTUnfolder(max_iter=30).fit(d.measured, **kw).w2_to_measured()
        rl = [
            oi.RichardsonLucyUnfolder(n_bins=nb, n_iter=30).fit(d.measured, **kw).w2_to_measured()
            for nb in (8, 10, 14, 18)
        ]
        print(
            f"| {M} | {ot_w2:.4g} | "
            + " | ".join(f"{v:.4g}" for v in rl)
            + f" | {ot_w2 < min(rl)} |"
        )


def projection(n_seeds=10):
    print(
        f"\n## Douglas–Rachford (paper, 25 steps) vs exact KL projection, 1-D, first {n_seeds} seeds, 25 iterations"
    )
    print("| M | DR W2² | exact W2² | DR fit (s) | exact fit (s) |")
    print("|---|---|---|---|---|")
    for M in (1, 4):
        w2 = {"douglas-rachford": [], "exact": []}
        tt = {"douglas-rachford": 0.0, "exact": 0.0}
        for s in SEEDS[:n_seeds]:
            d = make_unfolding_1d(M=M, random_state=int(s))
            for proj in w2:
                t0 = time.perf_counter()
                est = oi.OTUnfolder(projection=proj).fit(d.measured, gen=d.gen, reco=d.reco)
                tt[proj] += time.perf_counter() - t0
                w2[proj].append(est.w2_to_measured())
        print(
            f"| {M} | {np.mean(w2['douglas-rachford']):.3g} | {np.mean(w2['exact']):.3g} | "
            f"{tt['douglas-rachford'] / n_seeds:.3f} | {tt['exact'] / n_seeds:.3f} |"
        )


def _best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def speed():
    print("\n## Speed: one 1-D fit, 25 iterations, no W2 tracking (best of 3 / NumPy best of 1)")
    print("| M | m × n | otinverse (s) | NumPy eq. 25–28 (s) | ratio | max |Δσ| |")
    print("|---|---|---|---|---|---|")
    for M in (1, 12):
        d = make_unfolding_1d(M=M, random_state=0)
        t_rust, est = _best_of(lambda: oi.OTUnfolder().fit(d.measured, gen=d.gen, reco=d.reco), 3)
        nu = d.measured_weight
        t_np, hist = _best_of(
            lambda: numpy_ot_unfold(d.reco.reshape(-1), block_response(150, M), d.measured, nu), 1
        )
        diff = np.abs(est.normalized_weights_ - hist[-1]).max()
        print(
            f"| {M} | {150 * M} × {d.measured.size} | {t_rust:.3f} | {t_np:.2f} | {t_np / t_rust:.1f}× | {diff:.1e} |"
        )


def scaling():
    print(
        "\n## Scaling: 1-D, L = 150, M = 1, n measured events growing (25 iterations + 100 warm-start)"
    )
    print("| n measured | m | fit (s) | fit time per kernel entry (µs) |")
    print("|---|---|---|---|")
    for m_meas in (3, 30, 300, 667):
        d = make_unfolding_1d(M=1, M_measured=m_meas, random_state=1)
        t, _ = _best_of(lambda: oi.OTUnfolder().fit(d.measured, gen=d.gen, reco=d.reco), 1)
        n = d.measured.size
        print(f"| {n} | 150 | {t:.3f} | {t / (150 * n) * 1e6:.3f} |")
        sys.stdout.flush()


if __name__ == "__main__":
    sections = sys.argv[1:] or ["speed", "scaling", "jet", "reference", "tol"]
    for name in sections:
        globals()[name]()
        sys.stdout.flush()
