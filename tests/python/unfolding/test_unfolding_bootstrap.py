"""Bootstrap replicas: serial and on a real dask.distributed LocalCluster give the same
replicas for the same seed; helpers; absolute normalisation within the bootstrap error."""

import numpy as np
import otinverse as oi
import pytest
from otinverse.datasets import make_unfolding_1d_events
from otinverse.unfolding import bootstrap


def small_events(seed=0, **kw):
    return make_unfolding_1d_events(
        400, L=30, M=4, efficiency=lambda x: 0.8 + 0.1 * x, fake_fraction=0.1, random_state=seed
    )


def fit_kwargs(d):
    return dict(gen=d.gen, reco=d.reco, fakes=d.fakes, fake_weight=d.fake_weight)


def test_dask_local_cluster_gives_the_serial_replicas(capsys):
    distributed = pytest.importorskip("distributed")
    d = small_events()
    est = oi.OTUnfolder(max_iter=10)
    serial = bootstrap(est, d.measured, n_replicas=6, source="mc", random_state=3, **fit_kwargs(d))
    assert "bootstrap (mc)" in capsys.readouterr().err  # the progress bar
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        on_dask = bootstrap(
            est,
            d.measured,
            n_replicas=6,
            source="mc",
            random_state=3,
            client=client,
            progress=False,
            **fit_kwargs(d),
        )
    np.testing.assert_array_equal(on_dask.replicas, serial.replicas)
    assert serial.replicas.shape == (6, 30)
    assert np.ptp(serial.replicas, axis=0).max() > 0  # the replicas differ


def test_histogram_and_expectation_helpers():
    d = small_events(1)
    res = bootstrap(
        oi.RichardsonLucyUnfolder(n_bins=10, max_iter=4, bin_range=(-2, 2)),
        d.measured,
        n_replicas=40,
        random_state=1,
        progress=False,
        **fit_kwargs(d),
    )
    h = res.histogram(np.linspace(-1, 1, 6))
    np.testing.assert_allclose(h.values.sum(), res.estimator.weights_.sum())
    np.testing.assert_allclose(h.std, h.replicas.std(axis=0, ddof=1), rtol=1e-12)
    np.testing.assert_allclose(np.diag(h.corr), 1.0)
    h2 = res.histogram(3, observable=lambda g: g[:, 0] ** 2)
    assert h2.cov.shape == (3, 3)
    value, err = res.expectation(lambda g: g[:, 0])
    assert value == pytest.approx(res.estimator.expectation(lambda g: g[:, 0]))
    assert 0 < err < 0.1
    with pytest.raises(oi.InvalidArgumentError, match="observable"):
        res.histogram(3, observable=lambda g: g)
    with pytest.raises(oi.InvalidArgumentError, match="source"):
        bootstrap(oi.OTUnfolder(), d.measured, source="both", **fit_kwargs(d))


def test_bootstrap_factors_are_poisson_and_never_negative():
    d = small_events(2)
    problem = oi.unfolding.estimators.as_problem(d.measured, **fit_kwargs(d))
    with pytest.raises(oi.InvalidArgumentError, match="measured_weight"):
        oi.OTUnfolder().fit_problem(
            problem.replica(data_factor=-np.ones(problem.measured.shape[0]))
        )


@pytest.mark.filterwarnings("ignore:RichardsonLucyUnfolder.*outside the range")
@pytest.mark.slow(15)
def test_absolute_normalisation_within_its_bootstrap_error():
    # Efficiency 50–90 %, 10 % fakes, M = 20 samples per gen point (see test_unfolding_events).
    d = make_unfolding_1d_events(
        1500, L=40, M=20, efficiency=lambda x: 0.7 + 0.2 * x, fake_fraction=0.1, random_state=9
    )
    # The error of the total combines the data and the MC (response) bootstrap.
    for est in (oi.OTUnfolder(max_iter=15), oi.RichardsonLucyUnfolder(n_bins=16, max_iter=6)):
        kw = dict(n_replicas=25, random_state=0, progress=False, **fit_kwargs(d))
        total, data_err = bootstrap(est, d.measured, **kw).total()
        mc_err = bootstrap(est, d.measured, source="mc", **kw).total()[1]
        err = np.hypot(data_err, mc_err)
        assert abs(total - d.n_true) < 2 * err, (type(est).__name__, total, err, d.n_true)
