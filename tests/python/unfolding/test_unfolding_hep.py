"""The Scikit-HEP side of unfolding: awkward/pandas/hist inputs give the NumPy path's numbers,
hist outputs carry the bootstrap or propagated errors and survive a ROOT round trip, and the
RooUnfold-style Response follows RooUnfold's conventions for misses and fakes."""

import itertools
import subprocess
import sys

import numpy as np
import pytest
from otinverse import InvalidArgumentError, OTUnfolder, Response, RichardsonLucyUnfolder
from otinverse.unfolding import bootstrap, plot_correlation, plot_unfolded, richardson_lucy
from otinverse.unfolding.hep import response_from_hist, to_numpy

ak = pytest.importorskip("awkward")
pd = pytest.importorskip("pandas")
hist = pytest.importorskip("hist")
uproot = pytest.importorskip("uproot")


@pytest.fixture
def mc():
    """A weighted MC with inefficiency, its data and fakes; one (gen, reco) pair per event."""
    rng = np.random.default_rng(7)
    n = 600
    gen = rng.gamma(4.0, 8.0, n)
    reco = gen + rng.normal(0.0, 4.0, n)
    reconstructed = rng.random(n) < 0.6 + 0.3 * np.tanh(gen / 30.0)
    weight = rng.lognormal(0.0, 0.2, n)
    measured = np.clip(rng.gamma(4.5, 7.5, 400) + rng.normal(0.0, 4.0, 400), 1.0, 90.0)
    fakes = rng.uniform(5.0, 60.0, 30)
    return dict(
        gen=gen,
        reco=np.where(reconstructed, reco, np.nan),
        reconstructed=reconstructed,
        weight=weight,
        measured=measured,
        fakes=fakes,
        fake_weight=np.full(30, 0.5),
    )


def test_import_otinverse_loads_no_scikit_hep_package():
    code = (
        "import sys, otinverse, otinverse.unfolding; "
        "bad = sorted({'uproot', 'awkward', 'hist', 'boost_histogram', 'mplhep'} "
        "& set(sys.modules)); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------
# awkward and pandas inputs
# ---------------------------------------------------------------------------------------------
def test_awkward_none_is_a_nan_row_and_records_are_columns():
    np.testing.assert_array_equal(to_numpy(ak.Array([1.5, None, 3.0])), [1.5, np.nan, 3.0])
    np.testing.assert_array_equal(
        to_numpy(ak.Array([[1.0, None], [3.0, 4.0]])), [[1.0, np.nan], [3.0, 4.0]]
    )
    # A record per event (one field per observable); a None event is a NaN row.
    events = ak.Array([{"m": 1.0, "g": -2.0}, None, {"m": 3.0, "g": -4.0}])
    np.testing.assert_array_equal(to_numpy(events), [[1.0, -2.0], [np.nan, np.nan], [3.0, -4.0]])
    # The ROOT way to store "maybe one reco": a jagged branch of 0 or 1 entries.
    np.testing.assert_array_equal(to_numpy(ak.firsts(ak.Array([[2.0], [], [5.0]]))), [2, np.nan, 5])
    np.testing.assert_array_equal(to_numpy(ak.Array([True, False])), [True, False])


def test_awkward_ragged_or_non_numeric_none_is_rejected():
    with pytest.raises(InvalidArgumentError, match="array: an awkward array must be flat"):
        to_numpy(ak.Array([[1.0], [2.0, 3.0]]))
    with pytest.raises(InvalidArgumentError, match="numeric"):
        to_numpy(ak.Array([True, None]))
    with pytest.raises(InvalidArgumentError, match="reco"):
        OTUnfolder().fit(np.ones(5), gen=np.arange(3.0), reco=ak.Array([[1.0], [2.0, 3.0], [4.0]]))


@pytest.mark.parametrize("estimator", [RichardsonLucyUnfolder(n_bins=12), OTUnfolder(max_iter=3)])
def test_awkward_and_pandas_inputs_give_the_numpy_numbers(mc, estimator):
    reco_ak = ak.Array([None if np.isnan(r) else float(r) for r in mc["reco"]])
    kw_np = dict(gen=mc["gen"], reco=mc["reco"], gen_weight=mc["weight"], fakes=mc["fakes"])
    frame = pd.DataFrame({"gen": mc["gen"], "reco": mc["reco"], "w": mc["weight"]})
    ref = estimator.fit(mc["measured"], fake_weight=mc["fake_weight"], **kw_np).weights_.copy()
    from_ak = estimator.fit(
        ak.Array(mc["measured"]),
        gen=ak.Array(mc["gen"]),
        reco=reco_ak,
        gen_weight=ak.Array(mc["weight"]),
        fakes=ak.Array(mc["fakes"]),
        fake_weight=ak.Array(mc["fake_weight"]),
    ).weights_
    from_pd = estimator.fit(
        pd.Series(mc["measured"]),
        gen=frame["gen"],
        reco=frame[["reco"]],
        gen_weight=frame["w"],
        fakes=pd.Series(mc["fakes"]),
        fake_weight=pd.Series(mc["fake_weight"]),
    ).weights_
    np.testing.assert_allclose(from_ak, ref, rtol=1e-12, atol=0)
    np.testing.assert_allclose(from_pd, ref, rtol=1e-12, atol=0)
    # A reco_mask column says the same as the NaN rows.
    masked = estimator.fit(
        mc["measured"],
        gen=mc["gen"],
        reco=np.nan_to_num(mc["reco"]),
        reco_mask=pd.Series(mc["reconstructed"]),
        gen_weight=mc["weight"],
        fakes=mc["fakes"],
        fake_weight=mc["fake_weight"],
    ).weights_
    np.testing.assert_allclose(masked, ref, rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------------------------
# The Response builder and RooUnfold's conventions
# ---------------------------------------------------------------------------------------------
def test_response_equals_a_hand_built_response():
    # Events filled one at a time, as in a RooUnfold event loop; bins [0,1), [1,2), [2,3).
    response = Response()
    fills = [(0.5, 0.2, 1.0), (1.5, 0.7, 2.0), (1.2, 1.4, 1.0), (2.5, 2.9, 0.5), (7.0, 1.5, 1.0)]
    for reco, gen, w in fills:
        response.fill(reco, gen, w)
    response.miss(0.4, 3.0)
    response.miss(2.2)
    response.fake(1.7, 0.25)
    edges = [0.0, 1.0, 2.0, 3.0]
    binned = response.binned(edges, edges)
    # By hand: counts[reco bin, gen bin]; the fill at reco 7.0 is outside the reco bins, so a
    # miss of gen bin 1 (RooUnfold's default for out-of-range reco).
    counts = np.array([[1.0, 0.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 0.5]])
    truth = np.array([1.0 + 2.0 + 3.0, 1.0 + 1.0, 0.5 + 1.0])
    np.testing.assert_array_equal(binned.counts, counts)
    np.testing.assert_array_equal(binned.truth, truth)
    np.testing.assert_array_equal(binned.fakes, [0.0, 0.25, 0.0])
    np.testing.assert_array_equal(binned.measured, [1.0, 3.25, 0.5])
    np.testing.assert_allclose(binned.matrix, counts / truth, rtol=1e-15)
    np.testing.assert_allclose(binned.efficiencies, [3 / 6, 1 / 2, 0.5 / 1.5], rtol=1e-15)
    # Its hist form gives the same matrix back (misses in the reco overflow).
    np.testing.assert_allclose(response_from_hist(binned.to_hist()), binned.matrix, rtol=1e-15)
    # The unbinned MC: fills then misses, NaN reco for a miss, fakes with their weights.
    kw = response.fit_kwargs(fake_scale=4.0)
    np.testing.assert_array_equal(kw["gen"][:, 0], [0.2, 0.7, 1.4, 2.9, 1.5, 0.4, 2.2])
    np.testing.assert_array_equal(kw["reco"], [0.5, 1.5, 1.2, 2.5, 7.0, np.nan, np.nan])
    np.testing.assert_array_equal(kw["gen_weight"], [1.0, 2.0, 1.0, 0.5, 1.0, 3.0, 1.0])
    np.testing.assert_array_equal(kw["fakes"][:, 0], [1.7])
    np.testing.assert_array_equal(kw["fake_weight"], [1.0])
    assert response.measured_total == pytest.approx(5.5 + 0.25)


def test_array_fills_equal_event_fills(mc):
    ok = mc["reconstructed"]
    by_array = Response()
    by_array.fill(pd.Series(mc["reco"][ok]), ak.Array(mc["gen"][ok]), mc["weight"][ok])
    by_array.miss(mc["gen"][~ok], mc["weight"][~ok]).fake(mc["fakes"], 0.5)
    by_event = Response()
    for g, r, w, o in zip(mc["gen"], mc["reco"], mc["weight"], ok, strict=True):
        by_event.fill(r, g, w) if o else by_event.miss(g, w)
    for f in mc["fakes"]:
        by_event.fake(f, 0.5)
    # One call with the awkward reco of the whole sample: None = not reconstructed = a miss.
    reco_ak = ak.Array([None if np.isnan(r) else float(r) for r in mc["reco"]])
    in_one = Response().fill(reco_ak, mc["gen"], mc["weight"]).fake(mc["fakes"], 0.5)
    edges = np.linspace(0.0, 100.0, 11)
    a, b, c = (r.binned(edges, edges) for r in (by_array, by_event, in_one))
    for name in ("counts", "truth", "measured", "fakes"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-12)
        np.testing.assert_allclose(getattr(c, name), getattr(b, name), rtol=1e-12)


def test_roounfold_conventions_for_misses_and_fakes():
    edges = [0.0, 1.0, 2.0]
    base = Response().fill([0.5, 1.5], [0.5, 1.5])
    before = base.binned(edges, edges)
    # A miss adds to the truth spectrum and lowers the efficiency; the matrix's other entries
    # and the measured spectrum do not change.
    missed = Response().fill([0.5, 1.5], [0.5, 1.5]).miss(0.5).binned(edges, edges)
    np.testing.assert_array_equal(missed.truth, before.truth + np.array([1.0, 0.0]))
    np.testing.assert_array_equal(missed.efficiencies, [0.5, 1.0])
    np.testing.assert_array_equal(missed.measured, before.measured)
    # A fake adds to the measured background only: truth, counts and efficiencies unchanged.
    faked = Response().fill([0.5, 1.5], [0.5, 1.5]).fake(1.5, 2.0).binned(edges, edges)
    np.testing.assert_array_equal(faked.fakes, [0.0, 2.0])
    np.testing.assert_array_equal(faked.measured, before.measured + np.array([0.0, 2.0]))
    np.testing.assert_array_equal(faked.counts, before.counts)
    np.testing.assert_array_equal(faked.efficiencies, before.efficiencies)
    # RooUnfold scales the fakes to the data by the ratio of measured totals.
    np.testing.assert_allclose(faked.background(8.0), [0.0, 2.0 * 8.0 / 4.0])


def test_response_unfolds_like_the_arrays_it_holds(mc):
    ok = mc["reconstructed"]
    response = Response().fill(mc["reco"][ok], mc["gen"][ok], mc["weight"][ok])
    response.miss(mc["gen"][~ok], mc["weight"][~ok]).fake(mc["fakes"], mc["fake_weight"])
    rl = RichardsonLucyUnfolder(n_bins=12)
    via_response = rl.fit(mc["measured"], **response.fit_kwargs()).weights_.copy()
    gen = np.concatenate([mc["gen"][ok], mc["gen"][~ok]])
    reco = np.concatenate([mc["reco"][ok], mc["reco"][~ok]])
    w = np.concatenate([mc["weight"][ok], mc["weight"][~ok]])
    by_hand = rl.fit(
        mc["measured"],
        gen=gen,
        reco=reco,
        gen_weight=w,
        fakes=mc["fakes"],
        fake_weight=mc["fake_weight"],
    ).weights_
    np.testing.assert_allclose(via_response, by_hand, rtol=1e-12)


def test_response_rejects_bad_input():
    with pytest.raises(InvalidArgumentError, match="weight"):
        Response().fill([1.0, 2.0], [1.0, 2.0], [1.0, -1.0])
    with pytest.raises(InvalidArgumentError, match="reco"):
        Response().fill([1.0, 2.0], [1.0])
    with pytest.raises(InvalidArgumentError, match="reco"):
        Response().fill([[1.0, np.nan]], [[1.0, 2.0]])  # half a reconstructed event
    with pytest.raises(InvalidArgumentError, match="gen"):
        Response().fill(1.0, 1.0).miss([[1.0, 2.0]])
    with pytest.raises(InvalidArgumentError, match="no MC event"):
        Response().fake(1.0).fit_kwargs()
    with pytest.raises(InvalidArgumentError, match="reco_bins"):
        Response().fill(1.0, 1.0).binned([1.0, 0.0], [0.0, 1.0])


# ---------------------------------------------------------------------------------------------
# hist inputs
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def binned(mc):
    ok = mc["reconstructed"]
    response = Response().fill(mc["reco"][ok], mc["gen"][ok], mc["weight"][ok])
    response.miss(mc["gen"][~ok], mc["weight"][~ok]).fake(mc["fakes"], mc["fake_weight"])
    edges = np.linspace(0.0, 100.0, 11)
    b = response.binned(edges, edges)
    measured = hist.Hist(hist.axis.Variable(edges, name="reco"), storage=hist.storage.Weight())
    measured.fill(mc["measured"])
    return b, measured


def test_hist_inputs_give_the_numpy_numbers(binned):
    b, measured = binned
    background = hist.Hist(hist.axis.Variable(b.reco_edges))
    background[...] = b.background(measured.sum().value)
    counts = measured.values()
    # Propagated errors are not available with a background (the bootstrap gives them).
    for cov_type, bg in ((None, background), ("multinomial", None)):
        errs = dict(cov_type=cov_type, efficiencies_err=np.full(10, 0.01) if cov_type else None)
        out = richardson_lucy(b.to_hist(), measured, 6, background=bg, **errs)
        ref = richardson_lucy(
            b.matrix,
            counts,
            6,
            background=None if bg is None else bg.values(),
            full_output=True,
            data_err=np.sqrt(measured.variances()),
            **errs,
        )
        np.testing.assert_allclose(out.values, ref.unfolded, rtol=1e-12, atol=0)
        np.testing.assert_array_equal(out.hist.axes[0].edges, b.gen_edges)
        if cov_type is None:
            assert out.errors == "none" and np.isnan(out.hist.variances()).all()
        else:
            cov = ref.stat_cov + ref.sys_cov
            np.testing.assert_allclose(out.covariance, cov, rtol=1e-12)
            np.testing.assert_allclose(out.hist.variances(), np.diag(cov), rtol=1e-12)
    # The estimator takes the same histograms: an explicit response between the bin centres.
    rl = RichardsonLucyUnfolder(n_bins=10, bin_range=(0, 100), efficiency="sample")
    from_hist = rl.fit(measured, response=b.to_hist()).weights_.copy()
    centres = 0.5 * (b.reco_edges[1:] + b.reco_edges[:-1])
    from_arrays = rl.fit(
        centres, gen=centres, reco=centres, response=b.matrix, measured_weight=counts
    ).weights_
    np.testing.assert_allclose(from_hist, from_arrays, rtol=1e-12)


def test_histograms_read_from_root_unfold_as_they_were_written(binned, tmp_path):
    b, measured = binned
    path = tmp_path / "response.root"
    with uproot.recreate(path) as f:
        f["response"] = b.to_hist()  # a TH2D, misses in the reco overflow
        f["measured"] = measured
    with uproot.open(path) as f:
        out = richardson_lucy(f["response"], f["measured"], 5)
        fitted = RichardsonLucyUnfolder(n_bins=10, bin_range=(0, 100)).fit(
            f["measured"], response=f["response"]
        )
    np.testing.assert_allclose(out.values, richardson_lucy(b.matrix, measured.values(), 5))
    ref = RichardsonLucyUnfolder(n_bins=10, bin_range=(0, 100)).fit(measured, response=b.to_hist())
    np.testing.assert_allclose(fitted.weights_, ref.weights_, rtol=1e-12)
    import matplotlib.pyplot as plt

    with uproot.open(path) as f:  # a TH1 read back also plots as the truth
        main, _ = plot_unfolded(out, f["measured"], truth_label="measured")
    assert "measured" in main.get_legend_handles_labels()[1]
    plt.close("all")


def test_hist_response_matches_pyunfold(binned):
    pyunfold = pytest.importorskip("pyunfold")
    b, measured = binned
    counts = measured.values()
    matrix = response_from_hist(b.to_hist())
    ref = pyunfold.iterative_unfold(
        data=counts,
        data_err=np.sqrt(counts),
        response=matrix,
        response_err=np.zeros_like(matrix),
        efficiencies=matrix.sum(axis=0),
        efficiencies_err=np.zeros(matrix.shape[1]),
        ts_stopping=-1.0,  # never stop on the test statistic: exactly max_iter iterations
        max_iter=5,
        prior=np.full(matrix.shape[1], 1.0 / matrix.shape[1]),
    )
    out = richardson_lucy(b.to_hist(), measured, 5)
    np.testing.assert_allclose(out.values, ref["unfolded"], rtol=1e-10)


def test_hist_axes_must_match(binned):
    b, _ = binned
    other = hist.Hist(hist.axis.Regular(7, 0.0, 100.0))
    other.fill([10.0, 20.0])
    with pytest.raises(InvalidArgumentError, match="measured: its axis"):
        richardson_lucy(b.to_hist(), other, 3)
    with pytest.raises(InvalidArgumentError, match="response"):
        richardson_lucy(np.eye(7), other, 3)
    with pytest.raises(InvalidArgumentError, match="measured: its axis"):
        RichardsonLucyUnfolder().fit(other, response=b.to_hist())


# ---------------------------------------------------------------------------------------------
# hist outputs
# ---------------------------------------------------------------------------------------------
def test_bootstrap_to_hist_carries_the_replica_covariance_and_survives_root(mc, tmp_path):
    boot = bootstrap(
        RichardsonLucyUnfolder(n_bins=12),
        mc["measured"],
        n_replicas=6,
        progress=False,
        gen=mc["gen"],
        reco=mc["reco"],
        gen_weight=mc["weight"],
    )
    edges = np.array([0.0, 15.0, 25.0, 35.0, 50.0, 80.0])
    out = boot.to_hist(hist.axis.Variable(edges, name="x"))
    # Independently: the replicas histogrammed with NumPy, their covariance.
    reps = np.array([np.histogram(mc["gen"], edges, weights=w)[0] for w in boot.replicas])
    nominal = np.histogram(mc["gen"], edges, weights=boot.estimator.weights_)[0]
    np.testing.assert_allclose(out.hist.values(), nominal, rtol=1e-12)
    np.testing.assert_allclose(out.covariance, np.cov(reps, rowvar=False), rtol=1e-10)
    np.testing.assert_allclose(out.hist.variances(), reps.var(axis=0, ddof=1), rtol=1e-10)
    assert out.errors == "bootstrap (data)" and out.axes == ("x",)
    np.testing.assert_allclose(
        out.values, boot.histogram(edges).values, rtol=1e-12
    )  # the same as the BinnedResult
    # The events beyond the last edge are in the overflow, not lost.
    assert out.hist.values(flow=True)[-1] == pytest.approx(
        boot.estimator.weights_[mc["gen"] >= 80.0].sum()
    )
    path = tmp_path / "unfolded.root"
    with uproot.recreate(path) as f:
        f["unfolded"] = out.hist
        f["covariance"] = out.covariance_hist()
    with uproot.open(path) as f:
        back = f["unfolded"].to_hist()
        cov = f["covariance"].values()
    np.testing.assert_array_equal(back.axes[0].edges, edges)
    np.testing.assert_allclose(back.values(), out.hist.values(), rtol=1e-15)
    np.testing.assert_allclose(back.variances(), out.hist.variances(), rtol=1e-15)
    np.testing.assert_allclose(cov, out.covariance, rtol=1e-15)


@pytest.mark.slow(15)
def test_unfolder_to_hist_bins_the_propagated_covariance(mc):
    rl = RichardsonLucyUnfolder(n_bins=12, cov_type="multinomial").fit(
        mc["measured"], gen=mc["gen"], reco=mc["reco"], gen_weight=mc["weight"]
    )
    edges = np.array([0.0, 20.0, 40.0, 100.0])
    out = rl.to_hist(edges)
    g = mc["gen"]
    a = np.stack([(g >= lo) & (g < hi) for lo, hi in itertools.pairwise(edges)]).astype(float)
    cov = a @ (rl.covariance_ + rl.mc_covariance_) @ a.T
    np.testing.assert_allclose(out.covariance, cov, rtol=1e-10)
    np.testing.assert_allclose(out.values, a @ rl.weights_, rtol=1e-12)
    assert out.errors == "propagated"
    # Without propagated errors the variances are NaN, never a made-up number.
    plain = RichardsonLucyUnfolder(n_bins=12).fit(mc["measured"], gen=mc["gen"], reco=mc["reco"])
    assert np.isnan(plain.to_hist(edges).hist.variances()).all()


def test_to_hist_of_a_2d_observable():
    rng = np.random.default_rng(3)
    gen = rng.normal(size=(300, 2))
    reco = gen + rng.normal(0, 0.3, gen.shape)
    rl = RichardsonLucyUnfolder(n_bins=5).fit(reco[:200], gen=gen, reco=reco)
    out = rl.to_hist([np.linspace(-2, 2, 5), hist.axis.Regular(3, -2, 2, name="y")])
    ref, _, _ = np.histogram2d(
        gen[:, 0],
        gen[:, 1],
        bins=(np.linspace(-2, 2, 5), np.linspace(-2, 2, 4)),
        weights=rl.weights_,
    )
    inside = (np.abs(gen) < 2).all(axis=1)
    assert inside.sum() < 300  # some events land in the flow bins, which histogram2d drops
    np.testing.assert_allclose(out.values, ref, rtol=1e-12)
    assert out.covariance.shape == (12, 12)
    with pytest.raises(InvalidArgumentError, match="bins"):
        rl.to_hist(5)


def test_plots_take_hist_results(binned):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b, measured = binned
    out = richardson_lucy(
        b.to_hist(), measured, 4, cov_type="multinomial", efficiencies_err=np.zeros(10)
    )
    truth = hist.Hist(hist.axis.Variable(b.gen_edges))
    truth[...] = b.truth
    main, _ = plot_unfolded([out, out.hist], truth, labels=["a", "b"])
    assert len(main.get_legend().get_texts()) == 3
    plot_correlation(out)
    with pytest.raises(TypeError, match="result"):
        plot_correlation(out.hist)
    plt.close("all")


def test_plots_without_mplhep_use_plain_matplotlib(binned, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from otinverse.unfolding import plotting

    monkeypatch.setattr(plotting, "_mplhep", lambda: None)
    b, measured = binned
    out = richardson_lucy(b.to_hist(), measured, 4)
    main, ratio = plot_unfolded([out, out], b.truth, labels=["a", "b"])
    assert len(main.containers) == 2 and len(ratio.containers) == 2  # errorbar containers
    plt.close("all")


def test_to_hist_bins_as_hist_fills_them(mc):
    rl = RichardsonLucyUnfolder(n_bins=12).fit(mc["measured"], gen=mc["gen"], reco=mc["reco"])
    # An axis without flow bins drops what lies outside, as hist's own fill does.
    axis = hist.axis.Regular(5, 10.0, 60.0, underflow=False, overflow=False)
    ref = hist.Hist(axis, storage=hist.storage.Weight()).fill(mc["gen"], weight=rl.weights_)
    np.testing.assert_allclose(rl.to_hist(axis).hist.values(flow=True), ref.values(flow=True))
    # An int: equal bins over the whole range, its largest value in the last bin (not overflow).
    out = rl.to_hist(7)
    assert out.hist.values(flow=True)[[0, -1]].tolist() == [0.0, 0.0]
    np.testing.assert_allclose(out.values.sum(), rl.weights_.sum(), rtol=1e-12)


def test_data_bootstrap_of_a_histogram_is_refused(binned):
    b, measured = binned
    with pytest.raises(InvalidArgumentError, match="measured: the data bootstrap resamples events"):
        bootstrap(RichardsonLucyUnfolder(), measured, n_replicas=2, response=b.to_hist())


def test_response_in_two_dimensions_gives_the_event_layout():
    rng = np.random.default_rng(11)
    gen = rng.normal(size=(200, 2))
    reco = gen + rng.normal(0, 0.2, gen.shape)
    ok = rng.random(200) < 0.8
    frame = pd.DataFrame({"m": reco[ok, 0], "g": reco[ok, 1]})
    response = Response().fill(frame, ak.zip({"m": gen[ok, 0], "g": gen[ok, 1]}))
    response.miss(gen[~ok])
    kw = response.fit_kwargs()
    assert kw["reco"].shape == (200, 2) and np.isnan(kw["reco"][ok.sum() :]).all()
    rl = RichardsonLucyUnfolder(n_bins=4)
    via_response = rl.fit(reco[ok][:120], **kw).weights_.copy()
    order = np.concatenate([np.flatnonzero(ok), np.flatnonzero(~ok)])
    by_hand = rl.fit(
        reco[ok][:120], gen=gen[order], reco=np.where(ok[:, None], reco, np.nan)[order]
    ).weights_
    np.testing.assert_allclose(via_response, by_hand, rtol=1e-12)
    with pytest.raises(InvalidArgumentError, match="1-D"):
        response.binned([0, 1], [0, 1])
