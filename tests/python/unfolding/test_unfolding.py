"""OT unfolding (Craig, Faktor, Nachman, eq. 25–28) and the Richardson–Lucy baseline, against
independent references: a plain NumPy implementation of the paper's equations written here (dense QR
projector, scipy's wrightomega and logsumexp), a direct NumPy IBU loop, scipy.special.wrightomega,
and reduced versions of the paper's reference numbers."""

import numpy as np
import otinverse as oi
import pytest
from otinverse import _core
from otinverse._core import testing
from otinverse.datasets import load_jet_mass, make_unfolding_1d
from scipy.special import logsumexp, wrightomega
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning


# ---------------------------------------------------------------------------------------------
# Plain NumPy reference of eq. (25)–(28), dense, straight from the paper.
# ---------------------------------------------------------------------------------------------
def numpy_dr_projection(log_w, Pi, tau, n_iter):
    """Eq. (28): y = Πx, z = τ W(w/τ e^{(2y−x)/τ}) (as Wright ω), x ← x + z − y; returns z."""
    x = np.exp(log_w)
    z = x.copy()
    for _ in range(n_iter):
        y = Pi @ x
        z = tau * np.real(wrightomega(log_w - np.log(tau) + (2 * y - x) / tau))
        x = x + z - y
    if (z == 0).any():
        z[z == 0] = z[z > 0].min()
    return z


def kerb_projector(R):
    m, _ = R.shape
    B = np.hstack([np.eye(m), -R])
    Q, _ = np.linalg.qr(B.T)
    return np.eye(B.shape[1]) - Q @ Q.T


# The NumPy reference implements the paper's Douglas–Rachford projection (eq. 28).
DR = "douglas-rachford"


def numpy_ot_unfold(
    y, R, yp, nu, *, eps=3e-5, eps_init=1e-2, n_init=100, n_iter=25, dr_iter=25, tau=1e-3
):
    """σ after each of the n_iter iterations of eq. (25) with the warm start of eq. (26)–(27)."""
    y = y.reshape(len(y), -1)
    yp = yp.reshape(len(yp), -1)
    C = ((y[:, None, :] - yp[None, :, :]) ** 2).sum(-1)
    C = C / C.max()
    m, L = R.shape
    sigma0 = np.full(L, 1.0 / L)
    a0 = R @ sigma0
    logv = np.zeros(len(nu))
    for _ in range(n_init):  # eq. (26), classical log-Sinkhorn from v = 1
        logu = np.log(a0) - logsumexp(-C / eps_init + logv[None, :], axis=1)
        logv = np.log(nu) - logsumexp(-C.T / eps_init + logu[None, :], axis=1)
    logu = np.concatenate([logu, np.log(sigma0)])  # eq. (27)
    Pi = kerb_projector(R)
    hist = []
    for _ in range(n_iter):  # eq. (25) in log coordinates
        logv_w = np.log(nu) - logsumexp(-C / eps + logu[:m, None], axis=0)
        logv_s = -logsumexp(logu[m:])
        logKv = np.concatenate([logsumexp(-C / eps + logv_w[None, :], axis=1), np.full(L, logv_s)])
        z = numpy_dr_projection(logu + logKv, Pi, tau, dr_iter)
        logu = np.log(z) - logKv
        hist.append(z[m:] / z[m:].sum())
    return np.array(hist)


def block_response(L, M):
    return np.kron(np.eye(L), np.full((M, 1), 1.0 / M))


def small_1d(L=20, M=2, n=30, seed=0):
    rng = np.random.default_rng(seed)
    gen = np.linspace(-1, 1, L)
    reco = gen[:, None] + 0.5 * np.sign(gen)[:, None] + 0.1 * rng.standard_normal((L, M))
    truth = rng.choice(gen, n) + 0.01 * rng.standard_normal(n)
    measured = truth + 0.5 * np.sign(truth) + 0.1 * rng.standard_normal(n)
    return gen, reco, measured


def max_rel(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


# ---------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------
def test_wright_omega_matches_scipy_on_the_whole_range():
    t = np.concatenate(
        [np.linspace(-700, 700, 100_001), np.linspace(-3, 3, 2001), [-50.0, -2.0, 1.0]]
    )
    ours = _core.wright_omega_array(t)
    ref = np.real(wrightomega(t))
    assert np.all(np.abs(ours - ref) <= 1e-13 * np.abs(ref))


RESPONSE_KINDS = ["blocks", "sampled", "dense"]


def response_and_projector(kind, L, M, rng):
    """A response R (as a dense NumPy reference) and the core's projector for it: ``blocks`` (M
    equal samples per gen point), ``sampled`` (the real MC's layout: 1 to 2M samples per gen
    point with unequal weights, the sampled form of the core) or ``dense`` (a general
    column-stochastic response: the Woodbury + Cholesky path)."""
    if kind == "blocks":
        return block_response(L, M), testing.KerBProjector(None, n_gen=L, per_point=M)
    if kind == "dense":
        R = rng.random((L * M, L)) * (rng.random((L * M, L)) < 0.4) + block_response(L, M)
        R /= R.sum(axis=0)
        return R, testing.KerBProjector(R, n_gen=L, per_point=M)
    owner = np.repeat(np.arange(L), rng.integers(1, 2 * M + 1, L)).astype(np.uintp)
    shares = rng.random(owner.size) + 0.05
    shares /= np.bincount(owner, weights=shares)[owner]
    R = np.zeros((owner.size, L))
    R[np.arange(owner.size), owner] = shares
    return R, testing.KerBProjector.sampled(owner, shares, L)


@pytest.mark.parametrize("kind", RESPONSE_KINDS)
def test_kerb_projector_matches_qr_projector(kind):
    rng = np.random.default_rng(1)
    R, projector = response_and_projector(kind, 7, 3, rng)
    x = rng.standard_normal(sum(R.shape))
    np.testing.assert_allclose(projector.orthogonal(x), kerb_projector(R) @ x, rtol=0, atol=1e-13)


@pytest.mark.parametrize("kind", RESPONSE_KINDS)
def test_douglas_rachford_matches_numpy_and_lands_in_ker_b(kind):
    rng = np.random.default_rng(2)
    R, projector = response_and_projector(kind, 9, 2, rng)
    log_w = np.log(rng.random(sum(R.shape)) / R.shape[0])
    ours = projector.douglas_rachford(log_w, 1e-3, 25)
    ref = numpy_dr_projection(log_w, kerb_projector(R), 1e-3, 25)
    assert max_rel(ours, ref) < 1e-12


# ---------------------------------------------------------------------------------------------
# The iteration against the NumPy reference
# ---------------------------------------------------------------------------------------------
# reg_init = 1e-2 runs the warm start in the scaling domain (max C/ε_init ≤ 300), 1e-3 in the
# log domain (the core's fallback when e^{−C/ε_init} would span too many decades).
@pytest.mark.parametrize("M, reg_init", [(1, 1e-2), (3, 1e-2), (3, 1e-3)])
def test_ot_iteration_matches_numpy_1d(M, reg_init):
    gen, reco, measured = small_1d(M=M)
    nu = np.full(len(measured), 1.0 / len(measured))
    est = oi.OTUnfolder(reg_init=reg_init, projection=DR, prior_updates=0)
    est.fit(measured, gen=gen, reco=reco)
    ref = numpy_ot_unfold(
        reco.reshape(-1), block_response(len(gen), M), measured, nu, eps_init=reg_init
    )
    assert est.history_["weights"].shape == ref.shape
    assert max_rel(est.history_["weights"], ref) < 1e-10
    np.testing.assert_allclose(est.normalized_weights_, ref[-1], rtol=0, atol=1e-10 * ref[-1].max())


def test_ot_iteration_matches_numpy_2d_weighted():
    data = load_jet_mass(L=15, L_measured=12, M=2, M_measured=2)
    est = oi.OTUnfolder(max_iter=10, projection=DR).fit(
        data.measured, gen=data.gen, reco=data.reco, measured_weight=data.measured_weight
    )
    nu = data.measured_weight / data.measured_weight.sum()
    ref = numpy_ot_unfold(
        data.reco.reshape(-1, 2), block_response(15, 2), data.measured, nu, n_iter=10
    )
    assert max_rel(est.history_["weights"], ref) < 1e-10


def test_ot_iteration_matches_numpy_with_general_response():
    gen, reco, measured = small_1d(L=12, M=2, n=25, seed=3)
    rng = np.random.default_rng(3)
    R = rng.random((24, 12)) * (rng.random((24, 12)) < 0.3) + block_response(12, 2)
    R /= R.sum(axis=0)
    nu = np.full(len(measured), 1.0 / len(measured))
    est = oi.OTUnfolder(max_iter=8, projection=DR).fit(
        measured, gen=gen, reco=reco.reshape(-1), response=R
    )
    ref = numpy_ot_unfold(reco.reshape(-1), R, measured, nu, n_iter=8)
    assert max_rel(est.history_["weights"], ref) < 1e-10
    # fold() is Rσ on the detector points.
    _, w = est.fold()
    np.testing.assert_allclose(w, R @ est.weights_)


def test_douglas_rachford_output_is_close_to_ker_b_after_25_iterations():
    d = make_unfolding_1d(M=1, random_state=0)
    est = oi.OTUnfolder().fit(d.measured, gen=d.gen, reco=d.reco)
    assert est.n_iter_ == 25
    assert est.history_["kerb_residual"][-1] <= 1e-4


# ---------------------------------------------------------------------------------------------
# Richardson–Lucy
# ---------------------------------------------------------------------------------------------
def numpy_ibu(R, n, n_iter, eff, prior):
    p = prior / prior.sum()
    for _ in range(n_iter):
        folded = R @ p
        unfolded = p / eff * (R.T @ (n / folded))
        p = unfolded / unfolded.sum()
    return unfolded


def test_richardson_lucy_matches_numpy_ibu_with_efficiencies():
    rng = np.random.default_rng(4)
    R = rng.random((15, 8))
    R = R / R.sum(axis=0) * rng.uniform(0.5, 0.95, 8)  # efficiencies < 1
    eff = R.sum(axis=0)
    counts = rng.poisson(200, 15).astype(float)
    prior = rng.random(8)
    ours = oi.richardson_lucy(R, counts, 30, efficiencies=eff, prior=prior)
    np.testing.assert_allclose(ours, numpy_ibu(R, counts, 30, eff, prior), rtol=1e-13)
    # Defaults: efficiencies = column sums, uniform prior.
    np.testing.assert_allclose(
        oi.richardson_lucy(R, counts, 5), numpy_ibu(R, counts, 5, eff, np.ones(8)), rtol=1e-13
    )


def test_rl_unfolder_binning_matches_reference_histograms():
    d = make_unfolding_1d(L=40, M=2, L_measured=40, random_state=5)
    est = oi.RichardsonLucyUnfolder(n_bins=14, max_iter=7).fit(d.measured, gen=d.gen, reco=d.reco)
    y = d.reco.reshape(-1)
    _, edges = np.histogram(y, 14)
    idx = np.digitize(y, edges)
    idx[idx == 15] = 14
    Rb = np.zeros((14, 40))
    np.add.at(Rb, (idx - 1, np.repeat(np.arange(40), 2)), 0.5)
    nu, _ = np.histogram(d.measured, edges, weights=d.measured_weight)
    nu /= nu.sum()
    np.testing.assert_allclose(est.binned_response_, Rb, atol=1e-15)
    np.testing.assert_allclose(
        est.binned_measured_, nu, rtol=1e-12, atol=1e-30
    )  # ε_bin = 1e-40 fills empty bins
    Rb = (1 - 1e-40) * Rb + 1e-40 / 14  # the paper's ε_bin perturbation
    nu = (1 - 1e-40) * nu + 1e-40 / 14
    ref = numpy_ibu(Rb, nu / nu.sum(), 7, Rb.sum(axis=0), np.ones(40))
    np.testing.assert_allclose(est.normalized_weights_, ref / ref.sum(), rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# Reduced versions of the paper's reference numbers (full runs: benches/bench_unfolding.py)
# ---------------------------------------------------------------------------------------------
# The paper bins over the response's range: the few measured events outside it are reported.
@pytest.mark.filterwarnings("ignore:RichardsonLucyUnfolder.*outside the range")
def test_reduced_1d_reference_numbers():
    seeds = np.linspace(0, 100, 40).astype(int)[:4]
    ot_w2, rl_w2 = [], []
    for s in seeds:
        d = make_unfolding_1d(M=1, random_state=int(s))
        ot_w2.append(oi.OTUnfolder().fit(d.measured, gen=d.gen, reco=d.reco).w2_to_measured())
        rl_w2.append(
            oi.RichardsonLucyUnfolder(n_bins=28)
            .fit(d.measured, gen=d.gen, reco=d.reco)
            .w2_to_measured()
        )
    # Reference (40 seeds): OT 3.44e-4 ± 2.1e-4, RL(28) 4.51e-3.
    assert 1e-4 <= np.mean(ot_w2) <= 6e-4
    assert 2e-3 <= np.mean(rl_w2) <= 8e-3
    assert np.mean(ot_w2) < np.mean(rl_w2)


@pytest.mark.filterwarnings("ignore:RichardsonLucyUnfolder.*outside the range")
def test_reduced_2d_jet_mass_reference_numbers():
    d = load_jet_mass(M=2)
    kw = dict(gen=d.gen, reco=d.reco, measured_weight=d.measured_weight)
    ot_w2 = oi.OTUnfolder(max_iter=30).fit(d.measured, **kw).w2_to_measured()
    assert ot_w2 <= 1.10  # reference 1.006
    for n_bins in (8, 10, 14, 18):  # n_bin = 64, 100, 196, 324
        rl = oi.RichardsonLucyUnfolder(n_bins=n_bins, max_iter=30).fit(d.measured, **kw)
        assert ot_w2 < rl.w2_to_measured()


def test_tol_runs_until_the_change_is_small_and_does_not_get_worse():
    d = make_unfolding_1d(M=2, random_state=0)
    fixed = oi.OTUnfolder().fit(d.measured, gen=d.gen, reco=d.reco)
    tolled = oi.OTUnfolder(tol=1e-5, max_iter=400).fit(d.measured, gen=d.gen, reco=d.reco)
    assert tolled.converged_ and tolled.n_iter_ > 25
    assert tolled.history_["sigma_change"][-1] <= 1e-5
    assert tolled.w2_to_measured() <= fixed.w2_to_measured()
    with pytest.warns(ConvergenceWarning):
        oi.OTUnfolder(tol=1e-12, max_iter=2).fit(d.measured, gen=d.gen, reco=d.reco)


# ---------------------------------------------------------------------------------------------
# Estimator contract, observables, tracking, progress bar
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "est", [oi.OTUnfolder(reg=1e-4, max_iter=7), oi.RichardsonLucyUnfolder(n_bins=10, max_iter=3)]
)
def test_clone_get_set_params(est):
    params = est.get_params()
    c = clone(est)
    assert c.get_params() == params
    c.set_params(verbose=True)
    assert c.verbose is True and est.verbose is False
    assert clone(c).get_params()["verbose"] is True


def test_fold_expectation_and_w2_tracking(capsys):
    gen, reco, measured = small_1d()
    est = oi.OTUnfolder(max_iter=5, track_w2=True, verbose=True).fit(measured, gen=gen, reco=reco)
    assert "OT unfolding" in capsys.readouterr().err
    assert len(est.history_["w2"]) == 5 and len(est.history_["objective"]) == 5
    assert est.history_["w2"][-1] == pytest.approx(est.w2_to_measured())
    pts, w = est.fold()
    # Absolute weights: no inefficiency and no fakes, so ν_σ holds the 30 measured events.
    assert pts.shape == (40, 1) and w.sum() == pytest.approx(30.0)
    assert est.expectation(lambda x: x[:, 0]) == pytest.approx(est.normalized_weights_ @ gen)
    m2 = est.expectation(lambda x: x**2)
    assert m2.shape == (1,) and m2[0] == pytest.approx(est.normalized_weights_ @ gen**2)
    rl = oi.RichardsonLucyUnfolder(n_bins=10, max_iter=4, track_w2=True).fit(
        measured, gen=gen, reco=reco
    )
    assert rl.history_["w2"].shape == (4,)


def test_datasets_follow_the_reference_conventions():
    d = make_unfolding_1d(L=150, M=2, M_measured=3, random_state=7)
    assert d.gen.shape == (150,) and d.reco.shape == (150, 2) and d.measured.shape == (450,)
    assert np.allclose(d.gen, np.linspace(-1, 1, 150))
    truth = d.truth
    assert (np.abs(truth[:37] - 0.75) < 0.3).all() and (np.abs(truth[37:112] + 0.75) < 0.3).all()
    assert (np.abs(truth[112:]) < 0.3).all()
    # Detector shift t(x) = x + sgn(x)/2 with sd 0.1 noise.
    resid = d.reco - (d.gen + 0.5 * np.sign(d.gen))[:, None]
    assert abs(resid.std() - 0.1) < 0.02
    j = load_jet_mass(L=100, L_measured=100, M=4, M_measured=3)
    assert j.gen.shape == (100, 2) and j.reco.shape == (100, 4, 2) and j.measured.shape == (300, 2)
    assert j.measured_weight.sum() == pytest.approx(1.0)
    assert j.reco[..., 1].min() > -100 and j.measured[:, 1].min() > -100  # sentinels replaced
    tw = np.exp(-((j.truth[:, 0] - 30) ** 2) / 80 - (j.truth[:, 1] + 5) ** 2 / 4)
    np.testing.assert_allclose(j.truth_weight, tw / tw.sum())
    p = load_jet_mass(truth_covariance="paper")
    tw = np.exp(-((p.truth[:, 0] - 30) ** 2) / 20 - (p.truth[:, 1] + 5) ** 2 / 4)
    np.testing.assert_allclose(p.truth_weight, tw / tw.sum())


# ---------------------------------------------------------------------------------------------
# Bad inputs name the argument
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("Est", [oi.OTUnfolder, oi.RichardsonLucyUnfolder])
def test_bad_inputs_raise_naming_the_argument(Est):
    gen, reco, measured = small_1d()
    w = np.full(len(measured), 1.0 / len(measured))
    cases = [
        (dict(measured_weight=-w), "measured_weight"),
        (dict(measured_weight=np.where(np.arange(len(w)) == 0, np.nan, w)), "measured_weight"),
        (dict(measured_weight=w[:-1]), "measured_weight"),
        (dict(reco=reco[:-1]), "reco"),
        (dict(reco=np.zeros((20, 2, 2))), "reco"),
        (dict(gen=np.array([])), "gen"),
        (dict(reco=np.zeros((0, 2))), "reco"),
    ]
    for kwargs, name in cases:
        args = dict(gen=gen, reco=reco, measured_weight=None)
        args.update(kwargs)
        with pytest.raises(oi.InvalidArgumentError, match=name):
            Est().fit(measured, **args)
    with pytest.raises(oi.InvalidArgumentError, match="measured"):
        Est().fit(np.array([]), gen=gen, reco=reco)
    with pytest.raises(
        oi.InvalidArgumentError, match="reco: detector points have dimension 2 but measured has 3"
    ):
        Est().fit(np.zeros((30, 3)), gen=gen, reco=reco.reshape(20, 1, 2))


@pytest.mark.parametrize(
    "param,value",
    [
        ("reg", 0.0),
        ("reg", -1.0),
        ("reg_init", 0),
        ("max_iter", 0),
        ("tol", -1.0),
        ("dr_step", 0.0),
        ("cost_normalization", "mean"),
        ("projection", "newton"),
        ("p", 0.5),
    ],
)
def test_bad_ot_hyperparameters(param, value):
    gen, reco, measured = small_1d()
    with pytest.raises(oi.InvalidArgumentError, match=param):
        oi.OTUnfolder(**{param: value}).fit(measured, gen=gen, reco=reco)


def test_bad_richardson_lucy_arguments():
    R = np.full((4, 3), 0.25)
    with pytest.raises(oi.InvalidArgumentError, match="measured"):
        oi.richardson_lucy(R, np.ones(5), 3)
    with pytest.raises(oi.InvalidArgumentError, match="efficiencies"):
        oi.richardson_lucy(R, np.ones(4), 3, efficiencies=np.array([0.5, 0.0, 1.0]))
    with pytest.raises(oi.InvalidArgumentError, match="response"):
        oi.richardson_lucy(-R, np.ones(4), 3)
    with pytest.raises(oi.InvalidArgumentError, match="n_bins"):
        oi.RichardsonLucyUnfolder(n_bins=0).fit(np.ones(3), gen=np.arange(3.0), reco=np.arange(3.0))


# ---------------------------------------------------------------------------------------------
# The exact projection option (closed form for blocks, Newton for a general response)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", RESPONSE_KINDS)
def test_exact_projection_satisfies_the_kkt_conditions(kind):
    rng = np.random.default_rng(6)
    R, projector = response_and_projector(kind, 9, 3, rng)
    m = R.shape[0]
    log_w = np.log(rng.random(sum(R.shape)) / m)
    z = projector.exact(log_w)
    # In ker B, and stationary: Rᵀ log(z_w/w_w) + log(z_s/w_s) = 0.
    np.testing.assert_allclose(z[:m], R @ z[m:], rtol=1e-14)
    grad = R.T @ (np.log(z[:m]) - log_w[:m]) + np.log(z[m:]) - log_w[m:]
    assert np.abs(grad).max() < 1e-12
    # Douglas–Rachford (NumPy, eq. 28) converges to it.
    dr = numpy_dr_projection(log_w, kerb_projector(R), 1e-2, 3000)
    assert max_rel(dr, z) < 1e-6


def test_exact_projection_unfolder_is_close_to_douglas_rachford():
    d = make_unfolding_1d(M=1, random_state=0)
    dr = oi.OTUnfolder(projection=DR).fit(d.measured, gen=d.gen, reco=d.reco)
    ex = oi.OTUnfolder().fit(d.measured, gen=d.gen, reco=d.reco)
    assert ex.history_["kerb_residual"][-1] < 1e-14
    assert np.abs(ex.normalized_weights_ - dr.normalized_weights_).sum() < 0.1
    assert ex.w2_to_measured() < 6e-4
