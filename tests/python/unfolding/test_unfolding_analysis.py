"""The analysis layer of unfolding: the smoothed efficiency, closure tests and regularisation
scans, the plots, and a reduced coverage study of the bootstrap errors (the full one is
benches/bench_unfolding_coverage.py)."""

import importlib.util
import re
from pathlib import Path

import matplotlib
import numpy as np
import otinverse as oi
import pytest
from otinverse import _core
from otinverse.datasets import make_unfolding_1d_events
from otinverse.unfolding import (
    closure_test,
    plot_correlation,
    plot_scan,
    plot_unfolded,
    scan,
    smoothed_efficiency,
)
from sklearn.base import clone

matplotlib.use("Agg")


def _load_coverage_bench():
    path = Path(__file__).resolve().parents[3] / "benches" / "bench_unfolding_coverage.py"
    spec = importlib.util.spec_from_file_location("bench_unfolding_coverage", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def linear_eff(x):
    return 0.7 + 0.2 * x


def events(seed, n=1500, L=150, M=4, fake_fraction=0.1):
    return make_unfolding_1d_events(
        n, L=L, M=M, efficiency=linear_eff, fake_fraction=fake_fraction, random_state=seed
    )


def fit_kwargs(d):
    return dict(gen=d.gen, reco=d.reco, fakes=d.fakes, fake_weight=d.fake_weight)


# --------------------------------------------------------------------------------------------
# Smoothed efficiency
# --------------------------------------------------------------------------------------------
def test_smoothed_efficiency_recovers_a_linear_efficiency_better_than_fractions():
    gen = np.linspace(-1, 1, 150)
    truth = linear_eff(gen)
    rng = np.random.default_rng(1)
    edge_errors, ratio = [], []
    for _ in range(100):
        n_reco = (rng.random((150, 4)) < truth[:, None]).sum(axis=1).astype(float)
        smooth = smoothed_efficiency(gen, n_reco, np.full(150, 4.0))
        rms = lambda e: np.sqrt(np.mean((e - truth) ** 2))  # noqa: E731
        ratio.append(rms(smooth) / rms(n_reco / 4))
        edge_errors += [smooth[0] - truth[0], smooth[-1] - truth[-1]]
    assert np.mean(ratio) < 0.3
    # Local-linear: no systematic pull towards the interior at the edges (a kernel average is
    # off by slope × bandwidth × √(2/π) ≈ 0.034 there, towards the interior's values).
    assert abs(np.mean(edge_errors[::2])) < 0.015 and abs(np.mean(edge_errors[1::2])) < 0.015


def test_full_efficiency_is_unchanged_by_the_kernel_model():
    d = events(2, fake_fraction=0.0)
    reco = np.nan_to_num(d.reco, nan=0.5)  # every sample reconstructed
    a = oi.OTUnfolder(max_iter=5).fit(d.measured, gen=d.gen, reco=reco)
    b = oi.OTUnfolder(max_iter=5, efficiency="sample").fit(d.measured, gen=d.gen, reco=reco)
    np.testing.assert_allclose(a.weights_, b.weights_, rtol=1e-12)
    np.testing.assert_array_equal(a.efficiency_, np.ones(150))


@pytest.mark.parametrize(
    "make",
    [
        lambda: oi.OTUnfolder(max_iter=25),
        lambda: oi.RichardsonLucyUnfolder(n_bins=28, max_iter=10, bin_range=(-1.8, 1.8)),
    ],
)
def test_kernel_efficiency_is_used_and_counts_true_events(make):
    # Mean over 6 pseudo-experiments of the unfolded count relative to the true count, M = 4.
    ratios = {"kernel": [], "sample": []}
    for seed in range(6):
        d = events(seed, n=800)
        for eff in ratios:
            est = clone(make()).set_params(efficiency=eff).fit(d.measured, **fit_kwargs(d))
            ratios[eff].append(est.weights_.sum() / d.n_true)
            if eff == "kernel":
                rms = np.sqrt(np.mean((est.efficiency_ - linear_eff(d.gen)) ** 2))
                assert rms < 0.08  # the fractions k/4 are off by ~0.22 (rms)
    assert abs(np.mean(ratios["kernel"]) - 1) < 0.03


def test_efficiency_override_is_validated_by_the_core():
    d = events(3)
    rows = d.reco.reshape(-1, 1)
    opts = oi.OTUnfolder()._options()
    call = lambda e: _core.ot_unfold_events(  # noqa: E731
        rows,
        d.measured[:, None],
        np.ones(d.measured.size),
        opts,
        n_gen=150,
        per_point=4,
        efficiency=e,
    )
    for bad, word in (
        (np.full(149, 0.5), "149"),
        (np.full(150, 1.5), "[0, 1]"),
        (np.full(150, np.nan), "NaN"),
        (np.zeros(150), "zero"),
    ):
        with pytest.raises(oi.InvalidArgumentError, match="efficiency"):
            call(bad)
        with pytest.raises(oi.InvalidArgumentError, match=re.escape(word)):
            call(bad)
    with pytest.raises(oi.InvalidArgumentError, match="efficiency_bandwidth"):
        oi.OTUnfolder(efficiency_bandwidth=-1.0).fit(d.measured, **fit_kwargs(d))
    with pytest.raises(oi.InvalidArgumentError, match="efficiency"):
        oi.RichardsonLucyUnfolder(efficiency="smooth").fit(d.measured, **fit_kwargs(d))


# --------------------------------------------------------------------------------------------
# Closure test, scan, plots
# --------------------------------------------------------------------------------------------
def _closure_setup():
    mc, data = events(10), events(11)
    return mc, data, dict(bins=np.linspace(-1, 1, 6), truth=data.truth, **fit_kwargs(mc))


def test_closure_test_numbers_follow_from_the_binned_result():
    _, data, kw = _closure_setup()
    res = closure_test(
        oi.RichardsonLucyUnfolder(n_bins=28, max_iter=5), data.measured, n_replicas=8, **kw
    )
    dev = res.unfolded.values - res.truth
    assert res.bias2 == pytest.approx((dev**2).sum())
    assert res.variance == pytest.approx((res.unfolded.std**2).sum())
    assert res.mse == pytest.approx(res.bias2 + res.variance)
    assert res.truth.sum() == d_in_range(data.truth)
    assert np.isfinite(res.chi2)
    # The unfolded total is close to the true total (within a few percent).
    assert res.unfolded.values.sum() == pytest.approx(res.truth.sum(), rel=0.08)


def d_in_range(truth):
    return float(((truth >= -1) & (truth <= 1)).sum())


def test_scan_of_iterations_trades_bias_for_variance():
    _, data, kw = _closure_setup()
    est = oi.RichardsonLucyUnfolder(n_bins=28, max_iter=1, bin_range=(-1.8, 1.8))
    res = scan(est, "max_iter", [1, 4, 100], data.measured, n_replicas=8, **kw)
    assert res.bias2[0] > res.bias2[-1]  # one iteration stays near the flat prior
    assert res.variance[0] < res.variance[-1]  # many iterations fit the fluctuations
    assert res.best in (1, 4, 100) and res.mse.min() == res.mse[res.values.index(res.best)]
    with pytest.raises(oi.InvalidArgumentError, match="param"):
        scan(est, "n_iterations", [1], data.measured, **kw)


def test_plots_return_axes_with_the_data():
    _, data, kw = _closure_setup()
    est = oi.RichardsonLucyUnfolder(n_bins=28, max_iter=4, bin_range=(-1.8, 1.8))
    res = closure_test(est, data.measured, n_replicas=6, **kw)
    main, ratio = plot_unfolded(res.unfolded, res.truth)
    assert len(main.containers) == 1 and len(ratio.containers) == 1
    _, _, (bars,) = main.containers[0]
    np.testing.assert_allclose(main.lines[0].get_ydata(), res.unfolded.values)
    heights = [seg[1, 1] - seg[0, 1] for seg in bars.get_segments()]
    np.testing.assert_allclose(heights, 2 * res.unfolded.std)
    ax = plot_correlation(res.unfolded)
    np.testing.assert_allclose(ax.collections[0].get_array().reshape(5, 5), res.unfolded.corr)
    s = scan(est, "max_iter", [1, 4], data.measured, n_replicas=4, **kw)
    ax = plot_scan(s)
    np.testing.assert_allclose(ax.lines[2].get_ydata(), s.mse)
    matplotlib.pyplot.close("all")


# --------------------------------------------------------------------------------------------
# Coverage (reduced)
# --------------------------------------------------------------------------------------------
def test_reduced_coverage_of_the_bootstrap_errors():
    # The acceptance numbers on 30 pseudo-experiments (L = 150, M = 4, 20 % x-dependent
    # inefficiency, 10 % fakes, new data and MC each), data ⊕ MC bootstrap with 10 + 10 replicas.
    # Richardson–Lucy keeps this fast (~0.02 s a fit); the bootstrap, efficiency and fakes code
    # is the one OT uses, whose full table is in the bench.
    bench = _load_coverage_bench()
    est = bench.make_estimator("rl")
    pulls = np.array([bench.pseudo_experiment(s, est, n_replicas=10)[0] for s in range(30)])
    mean, std = pulls.mean(axis=0), pulls.std(axis=0, ddof=1)
    assert np.all(np.abs(mean) <= 0.3), mean
    assert np.all((std >= 0.8) & (std <= 1.25)), std
