"""Binned Richardson–Lucy against pyunfold's iterative_unfold (central values, propagated
statistical and MC errors, test-statistic stopping) and the bootstrap against the propagation."""

import numpy as np
import otinverse as oi
import pytest

pyunfold = pytest.importorskip("pyunfold")


def problem(seed=0, n_effects=14, n_causes=9, n_mc=4000):
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, n_causes)
    centres = np.linspace(0, 1, n_effects)
    R = np.exp(-((centres[:, None] - x[None, :]) ** 2) / (2 * 0.12**2))
    eff = rng.uniform(0.6, 0.95, n_causes)
    R = R / R.sum(0) * eff
    truth = 2000 * np.exp(-((x - 0.4) ** 2) / 0.05)
    data = rng.poisson(R @ truth).astype(float)
    n_per_cause = np.full(n_causes, n_mc / n_causes)
    eff_err = np.sqrt(eff * (1 - eff) / n_per_cause)
    R_err = np.sqrt(R * (1 - R) / n_per_cause)
    return R, eff, data, eff_err, R_err


@pytest.mark.parametrize("cov_type", ["multinomial", "poisson"])
@pytest.mark.parametrize("ts", ["ks", "chi2"])
def test_central_values_and_errors_equal_pyunfold(cov_type, ts):
    R, eff, data, eff_err, R_err = problem()
    ref = pyunfold.iterative_unfold(
        data=data,
        data_err=np.sqrt(data),
        response=R,
        response_err=R_err,
        efficiencies=eff,
        efficiencies_err=eff_err,
        ts=ts,
        ts_stopping=0.005,
        max_iter=50,
        cov_type=cov_type,
    )
    ours = oi.richardson_lucy(
        R,
        data,
        50,
        efficiencies=eff,
        ts=ts,
        ts_stopping=0.005,
        cov_type=cov_type,
        response_err=R_err,
        efficiencies_err=eff_err,
        full_output=True,
    )
    assert ours.n_iter == ref["num_iterations"] > 1
    np.testing.assert_allclose(ours.unfolded, ref["unfolded"], rtol=1e-12)
    np.testing.assert_allclose(np.sqrt(np.diag(ours.stat_cov)), ref["stat_err"], rtol=1e-6)
    np.testing.assert_allclose(np.sqrt(np.diag(ours.sys_cov)), ref["sys_err"], rtol=1e-6)
    assert ours.ts_values[-1] == pytest.approx(ref["ts_iter"], rel=1e-12)


def test_fixed_iterations_without_ts_and_bad_options():
    R, _, data, _, _ = problem(1)
    a = oi.richardson_lucy(R, data, 4, full_output=True)
    assert a.n_iter == 4 and a.stat_cov is None and len(a.ts_values) == 0
    with pytest.raises(oi.InvalidArgumentError, match="ts"):
        oi.richardson_lucy(R, data, 4, ts="bf")
    with pytest.raises(oi.InvalidArgumentError, match="cov_type"):
        oi.richardson_lucy(R, data, 4, cov_type="gauss")
    with pytest.raises(oi.InvalidArgumentError, match="efficiencies_err"):
        oi.richardson_lucy(R, data, 4, cov_type="multinomial")
    with pytest.raises(oi.InvalidArgumentError, match="cov_type"):
        oi.richardson_lucy(R, data, 4, cov_type="poisson", background=np.ones(len(data)))


def test_bootstrap_errors_agree_with_the_propagated_ones():
    # Poisson(1) replicas of the data, refitted, against D'Agostini's propagated stat errors.
    R, _, data, _, _ = problem(2)
    prop = oi.richardson_lucy(R, data, 4, cov_type="poisson", response_err=0 * R, full_output=True)
    rng = np.random.default_rng(2)
    reps = np.array([oi.richardson_lucy(R, rng.poisson(data).astype(float), 4) for _ in range(400)])
    boot = reps.std(axis=0, ddof=1)
    prop_err = np.sqrt(np.diag(prop.stat_cov))
    populated = prop.unfolded > 0.01 * prop.unfolded.max()
    ratio = boot[populated] / prop_err[populated]
    assert np.all(np.abs(ratio - 1) < 0.15), ratio
