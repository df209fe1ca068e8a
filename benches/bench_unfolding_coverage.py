"""Coverage of the bootstrap errors of OT unfolding (run by hand; prints a table).

    python benches/bench_unfolding_coverage.py [n_experiments] [n_replicas] [estimator] [eff]
                                               [n_events]
    python benches/bench_unfolding_coverage.py realistic [n_experiments] [n_replicas] [estimator]
                                               [n_mc]
    python benches/bench_unfolding_coverage.py prior-bias [max_updates] [n_experiments]
                                               [oracle] [param=value ...]

Pseudo-experiments of the 1-D problem of Craig et al. (§4.1.1; ``make_unfolding_1d_events``,
L = 150, M = 4) with a 20 % x-dependent inefficiency, ε(x) = 0.8 + 0.1 x, and 10 % fakes. Each
pseudo-experiment draws new data AND a new MC (detector samples, MC fakes), unfolds, and takes
the error as the data ⊕ MC bootstrap (``n_replicas`` Poisson(1) replicas each). The pull
``(estimate − truth)/error`` is taken for the truth-level mean and for the events in 5 bins,
edges (−1, −0.75, −0.4, 0, 0.4, 1): each populated — the halves of the peaks at −0.75 and 0 test
the resolution, the last holds the peak at 0.75 — against the expected truth (``n_events`` ·
ΔCDF, mean −0.1875): the data bootstrap covers the Poisson fluctuation of the data about its
expectation, the MC bootstrap that of the response. ``estimator``: ``ot`` (default) or ``rl``;
``eff``: ``kernel`` (default) or ``sample``; ``n_events``: expected true events (default 2000).

The regularisation bias is measured separately: the unfolding of the Asimov data (the expected
measured distribution on a fine grid, weights = expected events) with a large MC (M = 100); its
deviation from the truth divided by the mean error of the pseudo-experiments is the part of the
pulls' mean that regularisation (the finite iteration count and ε, the MC prior) explains.

``realistic``: the physics MC layout instead (``make_unfolding_mc``: one reco per event, 45-10 %
lost with ε rising in x, 10 % fakes, weighted MC, the data's truth shifted and wider than the
MC's), ``n_mc`` MC events (default 2000) against half as many expected data events per
pseudo-experiment, each with new data and a new MC; pulls of the total and of 5 truth-level bins against their expectations, errors
from the data ⊕ MC bootstrap; and the shape distance (L1 of the normalised 5-bin histograms) to
the expected truth beside the oracle's (the same unfolder on the same events fully
reconstructed, divided by the true efficiency). ``estimator``: ``ot`` (default settings: two
prior updates on this layout), ``ot-dr``
(the paper's Douglas–Rachford projection), ``ot-uK`` (``prior_updates=K``) or ``rl`` (28 truth
bins).

``prior-bias``: the bias of OT's nominal fits on the ``realistic`` problem after 0 …
``max_updates`` prior updates (no bootstrap; bias over the spread of the estimates, and in
10⁻³ of the expected events), with OTUnfolder parameters given as ``param=value`` (e.g.
``reg=3e-6``) and the problem's as ``n_mc=``, ``n_data=``, ``fake_fraction=`` (defaults 2000,
1000, 0.1); ``oracle`` fits the fully reconstructed MC divided by the true efficiency. The bias
in events separates the causes: a cause in the MC (its size, the smoothing) moves with
``n_mc``, a cause in the data's noise with ``n_data``, the fakes' treatment with
``fake_fraction=0``.
"""

import itertools
import sys
import time

import numpy as np
import otinverse as oi
from otinverse.datasets import make_unfolding_1d_events, make_unfolding_mc
from otinverse.unfolding import bootstrap
from otinverse.unfolding.estimators import as_problem
from sklearn.base import clone

N_EVENTS = 2000  # expected true events per pseudo-experiment (``n_events`` on the command line)
EDGES = np.array([-1.0, -0.75, -0.4, 0.0, 0.4, 1.0])
TRUTH_MEAN = -0.1875


def efficiency(x):
    return 0.8 + 0.1 * x


def make_estimator(name, eff="kernel"):
    if name == "ot":
        return oi.OTUnfolder(max_iter=25, efficiency=eff)
    return oi.RichardsonLucyUnfolder(n_bins=28, max_iter=10, bin_range=(-1.8, 1.8), efficiency=eff)


def fit_kwargs(d):
    return dict(gen=d.gen, reco=d.reco, fakes=d.fakes, fake_weight=d.fake_weight)


def expected_truth(d):
    """Expected events in the 5 bins and the truth mean."""
    return N_EVENTS * np.diff(d.truth_cdf(EDGES)), TRUTH_MEAN


def estimates(weights, gen):
    """Events in the 5 bins and the mean of the unfolded weights (rows of ``weights``)."""
    weights = np.atleast_2d(weights)
    bins = np.array([np.histogram(gen, EDGES, weights=w)[0] for w in weights])
    return bins, weights @ gen / weights.sum(axis=1)


def data_and_mc_bootstrap(estimator, measured, n_replicas, seed, fit_kwargs):
    """The nominal fit and the replicas of the data and of the MC bootstrap of one
    pseudo-experiment (each source its own seed)."""
    boots = [
        bootstrap(
            estimator,
            measured,
            n_replicas=n_replicas,
            source=source,
            random_state=1000 * seed + k,
            progress=False,
            **fit_kwargs,
        )
        for k, source in enumerate(("data", "mc"))
    ]
    return boots[0].estimator, [b.replicas for b in boots]


def pseudo_experiment(seed, estimator, n_replicas, L=150, M=4):
    """Pulls (6,) of the 5 bins and the mean, their estimates, errors and truths."""
    d = make_unfolding_1d_events(
        N_EVENTS, L=L, M=M, efficiency=efficiency, fake_fraction=0.1, random_state=seed
    )
    nominal, replicas = data_and_mc_bootstrap(
        estimator, d.measured, n_replicas, seed, fit_kwargs(d)
    )
    errors = []
    for reps in replicas:
        bins, mean = estimates(reps, d.gen)
        errors.append(np.append(bins.std(axis=0, ddof=1), mean.std(ddof=1)))
    nominal_bins, nominal_mean = estimates(nominal.weights_, d.gen)
    value = np.append(nominal_bins[0], nominal_mean[0])
    truth = np.append(*expected_truth(d))
    error = np.hypot(*errors)
    return (value - truth) / error, value, error, truth


def asimov_data(d, n_grid=800):
    """The expected measured distribution on a y grid: points with weights = expected events
    (signal folded through ε(x) and the detector of Table 1, plus the uniform fakes)."""
    x = np.linspace(-1.3, 1.3, 4001)
    truth = N_EVENTS * np.diff(d.truth_cdf(x))
    xc = 0.5 * (x[1:] + x[:-1])
    y = np.linspace(-1.9, 1.9, n_grid)
    dy = y[1] - y[0]
    shift = xc + 0.5 * np.sign(xc)
    kernel = np.exp(-0.5 * ((y[:, None] - shift[None, :]) / 0.1) ** 2) / (0.1 * np.sqrt(2 * np.pi))
    signal = kernel @ (truth * efficiency(xc)) * dy
    fakes = d.fake_weight.sum() * np.where(np.abs(y) <= 1.6, 1.0, 0.0) * dy / 3.2
    return y, signal + fakes


def regularisation_bias(estimator, L=150):
    """(estimate − truth) of the unfolding of the Asimov data (no data fluctuation) with a large
    MC (M = 100): the bias of the method at this regularisation."""
    d = make_unfolding_1d_events(
        N_EVENTS, L=L, M=100, efficiency=efficiency, fake_fraction=0.1, random_state=12345
    )
    y, w = asimov_data(d)
    est = clone(estimator).fit(y, measured_weight=w, **fit_kwargs(d))
    bins, mean = estimates(est.weights_, d.gen)
    return np.append(bins[0], mean[0]) - np.append(*expected_truth(d))


LABELS = [f"bin [{a:+.2f}, {b:+.2f}]" for a, b in itertools.pairwise(EDGES)] + ["mean"]


def main(n_experiments=200, n_replicas=40, name="ot", eff="kernel", n_events=N_EVENTS):
    global N_EVENTS
    N_EVENTS = n_events
    est = make_estimator(name, eff)
    t0 = time.perf_counter()
    rows = []
    for s in range(n_experiments):
        rows.append(pseudo_experiment(s, est, n_replicas))
        if (s + 1) % 20 == 0:
            print(f"{s + 1} pseudo-experiments, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    pulls, values, errors, truths = (np.array(r) for r in zip(*rows, strict=True))
    bias = regularisation_bias(est)
    print(
        f"\n## {name.upper()} (efficiency={eff}), {n_experiments} pseudo-experiments of "
        f"{N_EVENTS} events, "
        f"{n_replicas} + {n_replicas} bootstrap replicas, {time.perf_counter() - t0:.0f} s"
    )
    print(
        "| quantity | truth | mean estimate | mean error | pull mean | pull std | "
        "reg. bias / error |"
    )
    print("|---|---|---|---|---|---|---|")
    for j, label in enumerate(LABELS):
        print(
            f"| {label} | {truths[0, j]:.4g} | {values[:, j].mean():.4g} | "
            f"{errors[:, j].mean():.3g} | {pulls[:, j].mean():+.2f} ± "
            f"{pulls[:, j].std(ddof=1) / np.sqrt(n_experiments):.2f} | "
            f"{pulls[:, j].std(ddof=1):.2f} | {bias[j] / errors[:, j].mean():+.2f} |"
        )


REALISTIC_EDGES = np.array([-2.0, -0.8, 0.0, 0.6, 1.3, 2.6])


def realistic_estimator(name):
    """``ot`` (default settings), ``ot-dr`` (the paper's Douglas–Rachford projection), ``ot-uK``
    (K prior updates) or ``rl``."""
    if name == "rl":
        return oi.RichardsonLucyUnfolder(gen_bins=28)
    if name == "ot-dr":
        return oi.OTUnfolder(projection="douglas-rachford")
    return oi.OTUnfolder(prior_updates=int(name[4:]) if name.startswith("ot-u") else "auto")


def realistic_summary(d, weights):
    """Total and events in the 5 bins of each row of ``weights``, and the normalised shape."""
    weights = np.atleast_2d(weights)
    bins = np.array([np.histogram(d.gen, REALISTIC_EDGES, weights=w)[0] for w in weights])
    return np.column_stack([weights.sum(axis=1), bins])


def realistic_experiment(seed, estimator, n_replicas, n_mc=2000, n_data=1000):
    d = make_unfolding_mc(n_mc=n_mc, n_data=n_data, random_state=seed)
    kw = dict(gen=d.gen, reco=d.reco, gen_weight=d.gen_weight, fakes=d.fakes)
    kw["fake_weight"] = d.fake_weight
    nominal, replicas = data_and_mc_bootstrap(estimator, d.measured, n_replicas, seed, kw)
    spreads = [realistic_summary(d, reps).std(axis=0, ddof=1) for reps in replicas]
    value = realistic_summary(d, nominal.weights_)[0]
    truth = n_data * np.append(1.0, np.diff(d.truth_cdf(REALISTIC_EDGES)))
    oracle = clone(estimator).fit(d.measured, **{**kw, "reco": d.reco_all}).weights_
    oracle_value = realistic_summary(d, oracle / d.efficiency(d.gen))[0]

    def distance(v):
        return np.abs(v[1:] / v[1:].sum() - truth[1:] / truth[1:].sum()).sum()

    pull = (value - truth) / np.hypot(*spreads)
    return pull, distance(value), distance(oracle_value)


def realistic(n_experiments=200, n_replicas=10, name="ot", n_mc=2000):
    """The table of the module docs, printed every 40 pseudo-experiments and at the end (a long
    run can be read as it goes)."""
    est = realistic_estimator(name)
    t0 = time.perf_counter()
    rows = []
    for s in range(n_experiments):
        rows.append(realistic_experiment(s, est, n_replicas, n_mc, n_mc // 2))
        if (s + 1) % 40 == 0 or s + 1 == n_experiments:
            print(
                f"\n## {name.upper()}, physics MC layout: {s + 1} pseudo-experiments of {n_mc} MC "
                f"and {n_mc // 2} expected data events, {n_replicas} + {n_replicas} bootstrap "
                f"replicas, {time.perf_counter() - t0:.0f} s"
            )
            realistic_table(rows)
            sys.stdout.flush()


def realistic_table(rows):
    pulls = np.array([r[0] for r in rows])
    dist, oracle = np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
    print("| quantity | pull mean | pull std |")
    print("|---|---|---|")
    labels = ["total"] + [
        f"bin [{a:+.1f}, {b:+.1f}]" for a, b in itertools.pairwise(REALISTIC_EDGES)
    ]
    for j, label in enumerate(labels):
        p = pulls[:, j]
        print(
            f"| {label} | {p.mean():+.2f} ± {p.std(ddof=1) / np.sqrt(len(p)):.2f} | "
            f"{p.std(ddof=1):.2f} |"
        )
    print(
        f"shape distance to the truth: {dist.mean():.4f} ± {dist.std(ddof=1) / np.sqrt(len(dist)):.4f}; "
        f"oracle {oracle.mean():.4f} ± {oracle.std(ddof=1) / np.sqrt(len(oracle)):.4f}; "
        f"ratio {dist.mean() / oracle.mean():.2f}"
    )


def prior_bias(max_updates=3, n_experiments=200, oracle=False, **params):
    """Bias over spread of the total and the 5 bins after 0 … ``max_updates`` prior updates."""
    problem_params = {k: params.pop(k) for k in ("n_mc", "n_data", "fake_fraction") if k in params}
    n_data = problem_params.setdefault("n_data", 1000)
    problem_params.setdefault("n_mc", 2000)
    est = oi.OTUnfolder(**params)
    est._validate_params()
    rows = []
    for s in range(n_experiments):
        d = make_unfolding_mc(**problem_params, random_state=s)
        kw = dict(gen=d.gen, reco=d.reco_all if oracle else d.reco, gen_weight=d.gen_weight)
        problem = as_problem(d.measured, fakes=d.fakes, fake_weight=d.fake_weight, **kw)
        scale = 1 / d.efficiency(d.gen) if oracle else 1.0
        truth = n_data * np.append(1.0, np.diff(d.truth_cdf(REALISTIC_EDGES)))
        # The estimator's own update loop, recording every fit (private API: a bench).
        efficiency, prior = est._smoothed_efficiency(problem), problem.prior
        res = est._solve(problem, prior, efficiency, None)
        seen, fits = problem.reconstructed_fraction(), []
        for k in range(max_updates + 1):
            if k:
                prior = est._updated_prior(problem, res, prior, seen)
                res = est._solve(problem, prior, efficiency, None)
            fits.append(realistic_summary(d, res.weights * scale)[0] - truth)
        rows.append(fits)
    dev = np.array(rows)  # (experiment, updates, quantity)
    print(
        f"\n## Prior-update bias, {params or 'default fit'}, {problem_params}, oracle={oracle}: "
        "over the spread | in 10⁻³ of the expected events"
    )
    print("| updates | total | 5 bins | total (10⁻³) | 5 bins (10⁻³) |")
    print("|---|---|---|---|---|")
    for k in range(max_updates + 1):
        mean = dev[:, k].mean(axis=0)
        z, per_mille = mean / dev[:, k].std(axis=0, ddof=1), 1000 * mean / n_data
        print(
            f"| {k} | {z[0]:+.2f} | "
            + " ".join(f"{v:+.2f}" for v in z[1:])
            + f" | {per_mille[0]:+.1f} | "
            + " ".join(f"{v:+.1f}" for v in per_mille[1:])
            + " |"
        )


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["prior-bias"]:
        params = dict(a.split("=") for a in args[4:])
        prior_bias(
            int(args[1]) if len(args) > 1 else 3,
            int(args[2]) if len(args) > 2 else 200,
            len(args) > 3 and args[3] == "oracle",
            **{k: int(v) if v.isdigit() else float(v) for k, v in params.items()},
        )
        sys.exit()
    if args[:1] == ["realistic"]:
        realistic(
            int(args[1]) if len(args) > 1 else 200,
            int(args[2]) if len(args) > 2 else 10,
            args[3] if len(args) > 3 else "ot",
            int(args[4]) if len(args) > 4 else 2000,
        )
        sys.exit()
    main(
        int(args[0]) if args else 200,
        int(args[1]) if len(args) > 1 else 40,
        args[2] if len(args) > 2 else "ot",
        args[3] if len(args) > 3 else "kernel",
        int(args[4]) if len(args) > 4 else N_EVENTS,
    )
