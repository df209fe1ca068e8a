"""OT unfolding on the truncated kernel (stabilized, truncated log-sum-exps of eq. 25; the
squared cost's banded series in 1-D, the stored sparse kernel in 2-D) and the coarse warm start,
against the paper's equations in NumPy and against the online kernel. Small problems: the
truncation is forced with ``kernel="truncated"``."""

import numpy as np
import otinverse as oi
import pytest
from otinverse.datasets import make_unfolding_1d, make_unfolding_1d_events, make_unfolding_mc
from test_unfolding import block_response, max_rel, numpy_ot_unfold


def data_1d(L, seed=0):
    return make_unfolding_1d(
        L=L, M=1, M_measured=3, L_measured=L, random_state=np.random.RandomState(seed)
    )


def data_2d(L, n, seed=0):
    """A smooth 2-D problem: Gaussian truth, Gaussian detector smearing, broad gen prior."""
    rng = np.random.default_rng(seed)
    truth = np.concatenate(
        [rng.normal((-0.5, 0.0), 0.15, (n // 2, 2)), rng.normal((0.5, 0.3), 0.2, (n - n // 2, 2))]
    )
    gen = rng.normal(0.0, 0.6, (L, 2))
    reco = (gen + rng.normal(0.0, 0.1, gen.shape))[:, None, :]
    return gen, reco, truth + rng.normal(0.0, 0.1, truth.shape)


def fit(measured, gen, reco, **kw):
    # The kernels are compared on the paper's single fit (the prior updates refit the same way).
    return oi.OTUnfolder(**{"prior_updates": 0, **kw}).fit(measured, gen=gen, reco=reco)


@pytest.mark.parametrize("p", [2, 1.5])
def test_truncated_1d_follows_the_numpy_equations(p):
    # p = 2 sums the kept ranges by the Taylor series of blocks, p = 1.5 exponential by
    # exponential; both must give the dense iteration of eq. (25).
    d = data_1d(200)
    est = fit(d.measured, d.gen, d.reco, kernel="truncated", p=p, projection="douglas-rachford")
    info = est.kernel_info_
    assert info["kernel"] == "truncated"
    # Reductions failing the truncation bound run exactly; they must stay rare.
    assert info["exact_fallbacks"] <= 0.01 * 25 * (200 + d.measured.size)
    assert info["kept_per_row"] < 0.5 * d.measured.size  # it did truncate
    if p == 2:
        nu = np.full(d.measured.size, 1.0 / d.measured.size)
        ref = numpy_ot_unfold(d.reco.reshape(-1), block_response(200, 1), d.measured, nu)
        assert max_rel(est.history_["weights"], ref) < 1e-9
    online = fit(d.measured, d.gen, d.reco, kernel="online", p=p, projection="douglas-rachford")
    assert np.abs(est.normalized_weights_ - online.normalized_weights_).sum() < 1e-10


def test_truncated_2d_stored_kernel_matches_online():
    gen, reco, measured = data_2d(600, 900)
    est = fit(measured, gen, reco, kernel="truncated")
    online = fit(measured, gen, reco, kernel="online")
    assert est.kernel_info_["kernel"] == "truncated"
    assert est.kernel_info_["kept_per_row"] < 0.2 * len(measured)
    assert np.abs(est.normalized_weights_ - online.normalized_weights_).sum() < 1e-10
    np.testing.assert_allclose(est.history_["objective"], online.history_["objective"], rtol=1e-9)


def test_truncated_with_fakes_and_inefficiency_matches_online():
    d = make_unfolding_1d_events(
        3000, L=80, M=10, efficiency=lambda x: 0.7 + 0.2 * x, fake_fraction=0.1, random_state=4
    )
    kw = dict(gen=d.gen, reco=d.reco, fakes=d.fakes, fake_weight=d.fake_weight)
    ests = [oi.OTUnfolder(kernel=k).fit(d.measured, **kw) for k in ("truncated", "online")]
    assert ests[0].kernel_info_["kernel"] == "truncated"
    np.testing.assert_allclose(ests[0].weights_, ests[1].weights_, rtol=1e-9)


def test_coarse_warm_start_is_close_to_the_point_warm_start():
    d = data_1d(1000)
    point = fit(d.measured, d.gen, d.reco, kernel="online")
    coarse = fit(d.measured, d.gen, d.reco, kernel="online", warm_start_clusters=256)
    assert coarse.kernel_info_["coarse_warm_start"] and not point.kernel_info_["coarse_warm_start"]
    # 256 clusters for 3000 measured points move σ by a few 1e-6 in L1 (measured: 4.9e-6).
    gap = np.abs(coarse.normalized_weights_ - point.normalized_weights_).sum()
    assert 0 < gap < 2e-5
    assert abs(coarse.w2_to_measured() / point.w2_to_measured() - 1) < 1e-3


def test_auto_picks_the_kernel_by_size_and_eps():
    d = data_1d(150)
    assert fit(d.measured, d.gen, d.reco, max_iter=2).kernel_info_["kernel"] == "online"
    d = data_1d(2500)  # 2500 × 7500 response × measured pairs: more than 2^24
    auto = fit(d.measured, d.gen, d.reco, max_iter=2)
    assert auto.kernel_info_["kernel"] == "truncated" and auto.kernel_info_["coarse_warm_start"]
    # A wide ε keeps most of the kernel: no truncation.
    wide = fit(d.measured, d.gen, d.reco, max_iter=1, reg=1e-2, kernel="auto")
    assert wide.kernel_info_["kernel"] == "online"


def test_truncated_convergence_is_reported_honestly():
    d = data_1d(200)
    est = fit(d.measured, d.gen, d.reco, kernel="truncated", tol=1e-6, max_iter=400)
    assert est.converged_ == (est.history_["sigma_change"][-1] <= 1e-6)
    assert np.all(np.isfinite(est.weights_))


@pytest.mark.parametrize(
    "param, value", [("kernel", "sparse"), ("warm_start_clusters", 0), ("warm_start_clusters", 1.5)]
)
def test_bad_kernel_options(param, value):
    d = data_1d(50)
    with pytest.raises(ValueError, match=param):
        oi.OTUnfolder(**{param: value}).fit(d.measured, gen=d.gen, reco=d.reco)


@pytest.mark.parametrize("n_dims", [1, 2])
@pytest.mark.parametrize("reco_grid", ["off", 0.05])
def test_truncated_matches_online_with_fakes_weights_and_lost_events(n_dims, reco_grid):
    # A physics MC: event weights, lost events (NaN reco rows), fakes. In 2-D the coarse
    # references of the stored kernel are far from consistent here (entries up to e^1700 before
    # they were capped, which silently lost the kept sums: 0.1 in L1 with fakes). Each reduction
    # that passes the truncation check is exact to e^-20 ≈ 2e-9 relative; 25 iterations stay
    # within 1e-7 (measured: ~1e-12).
    d = make_unfolding_mc(n_mc=600, n_data=400, n_dims=n_dims, random_state=1)
    assert np.isnan(d.reco).any()
    kw = dict(gen=d.gen, reco=d.reco, gen_weight=d.gen_weight)
    kw.update(fakes=d.fakes, fake_weight=d.fake_weight)
    ests = [
        oi.OTUnfolder(kernel=k, reco_grid=reco_grid).fit(d.measured, **kw)
        for k in ("truncated", "online")
    ]
    assert ests[0].kernel_info_["kernel"] == "truncated"
    np.testing.assert_allclose(
        ests[0].normalized_weights_, ests[1].normalized_weights_, rtol=1e-7, atol=1e-15
    )
