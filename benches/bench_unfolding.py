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
* large: 25 iterations at the paper's settings on the 1-D problem with L = 10⁵ gen points
  (M = 1, 3·10⁵ measured events) and a 2-D problem with 10⁵ events (below), with the kernel
  the fit ran on, its kept entries per row and builds; then, at L = 10⁴, σ and W2² of the default
  (truncated kernel, coarse warm start) against the online kernel with the point-level warm
  start, and the coarse warm start alone against the point-level one on the online kernel.
* realistic: the real MC layout (``make_unfolding_mc``: one reco per event, 55–90 % efficiency
  rising with x, 10 % fakes, event weights, data truth shifted and wider than the MC's, n_data =
  L/4), default settings: per L (1-D 10⁴, 10⁵, 10⁶; 2-D 10⁵, 10⁶) the fit time with and without
  inefficiency (the same events fully reconstructed), peak RSS (each fit in its own process),
  unfolded total against the true events, and the truth-level distance (L1 of the normalised
  10-bin histograms, per axis summed) for OT, RL (28 truth bins per axis) and OmniFold
  (``benches/omnifold.py``, boosted trees; 10⁴ events: minutes beyond), beside the oracle (same unfolder,
  fully reconstructed MC, divided by the true efficiency). ``realistic=1:10000,2:100000`` picks
  rows (dimension:MC events); a fit beyond 900 s is reported as nan.
* bootstrap: the data bootstrap of the 1-D 10⁶-event realistic problem (default OT settings),
  20 replicas on a 2-worker ``dask.distributed.LocalCluster`` (one thread each), against the
  nominal fit alone; ``bootstrap=100000`` sets the MC events.

The 2-D problem (``make_unfolding_2d``): truth = equal mixture of N((−0.5, 0), 0.15² I) and
N((0.5, 0.3), diag(0.25², 0.1²)); smooth detector y = x + N(0, 0.1² I) (a Gaussian smearing);
gen points drawn from N(0, 0.6² I) (a broad prior), one detector sample each; measured = the
detector image of ``n`` truth events, uniform weights.
"""

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import otinverse as oi
from otinverse.datasets import load_jet_mass, make_unfolding_1d, make_unfolding_mc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python" / "unfolding"))
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
            rows["OT"].append(oi.OTUnfolder(prior_updates=0).fit(d.measured, **kw).w2_to_measured())
            for nb in (14, 28, 38):
                rows[nb].append(
                    oi.RichardsonLucyUnfolder(n_bins=nb, max_iter=25)
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
        fixed.append(oi.OTUnfolder(prior_updates=0).fit(d.measured, **kw).w2_to_measured())
        est = oi.OTUnfolder(tol=tol_value, max_iter=2000, prior_updates=0).fit(d.measured, **kw)
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
            oi.RichardsonLucyUnfolder(n_bins=nb, max_iter=30).fit(d.measured, **kw).w2_to_measured()
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
                est = oi.OTUnfolder(projection=proj, prior_updates=0).fit(
                    d.measured, gen=d.gen, reco=d.reco
                )
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
        t_rust, est = _best_of(
            lambda: oi.OTUnfolder(prior_updates=0).fit(d.measured, gen=d.gen, reco=d.reco), 3
        )
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
        t, _ = _best_of(
            lambda: oi.OTUnfolder(prior_updates=0).fit(d.measured, gen=d.gen, reco=d.reco), 1
        )
        n = d.measured.size
        print(f"| {n} | 150 | {t:.3f} | {t / (150 * n) * 1e6:.3f} |")
        sys.stdout.flush()


def make_unfolding_2d(L=100_000, n=100_000, seed=0):
    """The 2-D problem of the module docstring: (gen (L, 2), reco (L, 1, 2), measured (n, 2))."""
    rng = np.random.default_rng(seed)
    half = n // 2
    truth = np.concatenate(
        [
            rng.normal((-0.5, 0.0), 0.15, (half, 2)),
            rng.normal((0.5, 0.3), (0.25, 0.1), (n - half, 2)),
        ]
    )
    measured = truth + rng.normal(0.0, 0.1, truth.shape)
    gen = rng.normal(0.0, 0.6, (L, 2))
    reco = (gen + rng.normal(0.0, 0.1, gen.shape))[:, None, :]
    return gen, reco, measured


def _large_row(name, measured, gen, reco, **kw):
    t0 = time.perf_counter()
    est = oi.OTUnfolder(prior_updates=0, **kw).fit(measured, gen=gen, reco=reco)
    t = time.perf_counter() - t0
    info = est.kernel_info_
    kept = info["kept_per_row"]
    print(
        f"| {name} | {reco.shape[0] * reco.shape[1]} × {measured.shape[0]} | {info['kernel']} | "
        f"{'—' if kept is None else f'{kept:.0f}'} | {info['builds']} | "
        f"{info['exact_fallbacks']} | {info['coarse_warm_start']} | {est.n_iter_} | {t:.1f} |"
    )
    sys.stdout.flush()
    return est, t


def _large_header():
    print(
        "| problem | m × n | kernel | kept entries per row | builds | exact fallbacks | "
        "coarse warm start | iterations | fit (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")


def large(L=100_000):
    print(f"\n## Large problems, 25 iterations, paper's settings (load average {os.getloadavg()})")
    _large_header()
    d = make_unfolding_1d(
        L=L, M=1, M_measured=3, L_measured=L, random_state=np.random.RandomState(0)
    )
    _large_row(f"1-D, L = {L}", d.measured, d.gen, d.reco)
    gen, reco, measured = make_unfolding_2d(L=L, n=L)
    _large_row(f"2-D, L = {L}", measured, gen, reco)
    print(f"load average after: {os.getloadavg()}")


def agreement(L=10_000):
    print(
        f"\n## L = {L}, 1-D: default (truncated, coarse warm start) vs online with the point-level "
        f"warm start (load average {os.getloadavg()})"
    )
    _large_header()
    d = make_unfolding_1d(
        L=L, M=1, M_measured=3, L_measured=L, random_state=np.random.RandomState(0)
    )
    args = (d.measured, d.gen, d.reco)
    fast, _ = _large_row("default", *args)
    online, _ = _large_row("online, point warm start", *args, kernel="online")
    coarse, _ = _large_row(
        "online, coarse warm start", *args, kernel="online", warm_start_clusters=2048
    )
    ref = online.normalized_weights_
    w2 = {
        k: e.w2_to_measured()
        for k, e in (("default", fast), ("online", online), ("coarse", coarse))
    }
    print(f"σ L1, default vs online: {np.abs(fast.normalized_weights_ - ref).sum():.3g}")
    print(
        f"σ L1, coarse vs point warm start (online): {np.abs(coarse.normalized_weights_ - ref).sum():.3g}"
    )
    print(
        f"W2²: default {w2['default']:.6g}, online {w2['online']:.6g} "
        f"(relative difference {abs(w2['default'] / w2['online'] - 1):.2g}), coarse warm start {w2['coarse']:.6g}"
    )


REALISTIC_SIZES = ((1, 10_000), (1, 100_000), (1, 1_000_000), (2, 100_000), (2, 1_000_000))


def _truth_distance(d, gen, weights):
    """L1 distance between the normalised 10-bin histograms (per axis, summed) of the unfolded
    weights on the gen points and of the data's true events, over the truth's central 99 %."""
    gen, truth = gen.reshape(len(gen), -1), d.truth.reshape(len(d.truth), -1)
    total = 0.0
    for a in range(gen.shape[1]):
        edges = np.linspace(*np.quantile(truth[:, a], [0.005, 0.995]), 11)
        h = np.histogram(gen[:, a], edges, weights=weights)[0]
        t = np.histogram(truth[:, a], edges)[0]
        total += np.abs(h / h.sum() - t / t.sum()).sum()
    return total


def _realistic_fit(spec):
    """One fit of ``spec`` (method, n_dims, L, full) in this process: time, total, distance."""
    method, n_dims, L, full = spec["method"], spec["n_dims"], spec["L"], spec["full"]
    d = make_unfolding_mc(n_mc=L, n_data=L // 4, n_dims=n_dims, random_state=0)
    reco = d.reco_all if full else d.reco
    kw = dict(
        gen=d.gen, reco=reco, gen_weight=d.gen_weight, fakes=d.fakes, fake_weight=d.fake_weight
    )
    t0 = time.perf_counter()
    if method == "omnifold":
        from omnifold import omnifold

        weights = omnifold(d.measured, **kw)
    else:
        est = oi.OTUnfolder() if method == "ot" else oi.RichardsonLucyUnfolder(gen_bins=28)
        weights = est.fit(d.measured, **kw).weights_
    t = time.perf_counter() - t0
    if full:  # the oracle: the fully reconstructed MC unfolds the reconstructed signal
        weights = weights / d.efficiency(d.gen)
    return {
        "time": t,
        "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "total": float(weights.sum()),
        "n_true": int(d.n_true),
        "distance": _truth_distance(d, d.gen, weights),
    }


REALISTIC_TIMEOUT = 900  # seconds per fit; beyond, the row says so


def _in_subprocess(**spec):
    try:
        out = subprocess.run(
            [sys.executable, __file__, "_realistic_fit", json.dumps(spec)],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
            timeout=REALISTIC_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        nan = float("nan")
        return {"time": nan, "rss_gb": nan, "total": nan, "n_true": 1, "distance": nan}
    return json.loads(out.stdout.strip().splitlines()[-1])


def realistic(sizes=None):
    """The table of the module docs; ``sizes`` (e.g. ``"1:10000,2:100000"``) picks rows."""
    if sizes is not None:
        sizes = [tuple(int(v) for v in item.split(":")) for item in sizes.split(",")]
    print(f"\n## Realistic MC layout, default settings (load average {os.getloadavg()})")
    print(
        "| d | MC events | method | fit, inefficient (s) | fit, fully reconstructed (s) | "
        "peak RSS (GB) | total / true | truth distance | oracle distance |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for n_dims, L in sizes or REALISTIC_SIZES:
        for method in ("ot", "rl", "omnifold"):
            if method == "omnifold" and L > 10_000:
                continue  # minutes of boosted trees per step; the 10⁴ rows place it
            ineff = _in_subprocess(method=method, n_dims=n_dims, L=L, full=False)
            full = _in_subprocess(method=method, n_dims=n_dims, L=L, full=True)
            print(
                f"| {n_dims} | {L:.0e} | {method} | {ineff['time']:.1f} | {full['time']:.1f} | "
                f"{max(ineff['rss_gb'], full['rss_gb']):.2f} | "
                f"{ineff['total']:.0f} / {ineff['n_true']} ({ineff['total'] / ineff['n_true'] - 1:+.1%}) | "
                f"{ineff['distance']:.3f} | {full['distance']:.3f} |"
            )
            sys.stdout.flush()
    print(f"load average after: {os.getloadavg()}")


def bootstrap(n_mc="1000000"):
    """The data bootstrap of the 1-D realistic problem on a 2-worker LocalCluster (module docs)."""
    from dask.distributed import Client, LocalCluster
    from otinverse.unfolding import bootstrap as unfolding_bootstrap

    d = make_unfolding_mc(n_mc=int(n_mc), n_data=int(n_mc) // 4, random_state=0)
    kw = dict(gen=d.gen, reco=d.reco, gen_weight=d.gen_weight)
    kw.update(fakes=d.fakes, fake_weight=d.fake_weight)
    t0 = time.perf_counter()
    oi.OTUnfolder().fit(d.measured, **kw)
    nominal = time.perf_counter() - t0
    print(f"\n## Data bootstrap, 1-D, {int(n_mc):.0e} MC events (load {os.getloadavg()})")
    print(f"nominal fit alone: {nominal:.1f} s")
    with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster) as client:
        t0 = time.perf_counter()
        res = unfolding_bootstrap(
            oi.OTUnfolder(), d.measured, n_replicas=20, client=client, progress=False, **kw
        )
        total = time.perf_counter() - t0
    spread = res.replicas.sum(axis=1).std(ddof=1)
    print(
        f"nominal + 20 replicas on 2 Dask workers: {total:.1f} s "
        f"(total {res.estimator.weights_.sum():.0f} ± {spread:.0f} events)"
    )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["_realistic_fit"]:
        print(json.dumps(_realistic_fit(json.loads(sys.argv[2]))))
        sys.exit()
    sections = sys.argv[1:] or ["speed", "scaling", "jet", "reference", "tol"]
    for name in sections:
        name, _, arg = name.partition("=")
        globals()[name](*([arg] if arg else []))
        sys.stdout.flush()
