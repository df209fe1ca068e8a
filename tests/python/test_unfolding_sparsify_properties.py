"""Property tests (hypothesis) of the unfolding and sparsification kernels on small random inputs.

Run deep by hand with ``HYPOTHESIS_PROFILE=fuzz pytest tests/python/test_*properties*`` (2000
examples per property, see tests/conftest.py); CI runs the derandomised profile.
"""

import warnings

import numpy as np
import otinverse
import pytest
from hypothesis import given, note
from hypothesis import strategies as st
from sklearn.exceptions import ConvergenceWarning

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def log_uniform(draw, low, high):
    return 10.0 ** draw(st.floats(np.log10(low), np.log10(high)))


def seeded(draw):
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1)))


@st.composite
def binned_problems(draw):
    rng = seeded(draw)
    n_effects, n_causes = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    # Response probabilities spanning six decades, each cause's column summing to its
    # efficiency in (0, 1].
    response = 10.0 ** rng.uniform(-6, 0, (n_effects, n_causes))
    response *= rng.uniform(0.05, 1.0, n_causes) / response.sum(0)
    measured = np.round(10.0 ** rng.uniform(0, 4, n_effects))
    note(f"{n_effects} effects × {n_causes} causes")
    return response, measured, draw(st.integers(1, 20))


def richardson_lucy_reference(response, measured, n_iter):
    """D'Agostini's EM update written out in NumPy, from a uniform prior."""
    efficiency = response.sum(0)
    unfolded = np.full(response.shape[1], measured.sum() / response.shape[1])
    for _ in range(n_iter):
        unfolded = unfolded / efficiency * (response.T @ (measured / (response @ unfolded)))
    return unfolded


@given(binned_problems())
def test_richardson_lucy_is_the_em_update(problem):
    response, measured, n_iter = problem
    unfolded = otinverse.richardson_lucy(response, measured, n_iter)
    assert np.isfinite(unfolded).all() and (unfolded >= 0).all()
    expected = richardson_lucy_reference(response, measured, n_iter)
    np.testing.assert_allclose(unfolded, expected, rtol=1e-9, atol=1e-12 * measured.sum())
    # Every EM step folds back to the measured total: Σ_c η_c U_c = Σ_e n_e.
    folded = (response.sum(0) * unfolded).sum()
    assert folded == pytest.approx(measured.sum(), rel=1e-9)


@st.composite
def event_samples(draw):
    rng = seeded(draw)
    n_gen, n_measured = draw(st.integers(2, 40)), draw(st.integers(1, 60))
    gen = rng.normal(size=n_gen)
    if draw(st.booleans()):
        gen[rng.integers(0, n_gen, n_gen // 2)] = gen[0]  # duplicated gen points
    reco = gen + log_uniform(draw, 1e-3, 1.0) * rng.normal(size=n_gen)
    measured = rng.normal(rng.normal(0, 0.3), rng.uniform(0.5, 2), n_measured)
    weight = 10.0 ** rng.uniform(-3, 0, n_measured)
    reg = log_uniform(draw, 1e-5, 1e-1)
    note(f"{n_gen} gen points, {n_measured} measured events, reg={reg:.3g}")
    return gen, reco, measured, weight, reg


@given(event_samples(), st.sampled_from(["douglas-rachford", "exact"]))
def test_ot_unfolding_returns_the_measured_events_on_the_gen_points(sample, projection):
    gen, reco, measured, weight, reg = sample
    est = otinverse.OTUnfolder(reg=reg, max_iter=5, n_init_iter=20, projection=projection)
    est.fit(measured, measured_weight=weight, gen=gen, reco=reco)
    assert np.isfinite(est.weights_).all() and (est.weights_ >= 0).all()
    # Every gen point is reconstructed (efficiency 1, no fakes): the unfolded events are the
    # measured ones.
    assert est.weights_.sum() == pytest.approx(weight.sum(), rel=1e-9)
    np.testing.assert_allclose(est.normalized_weights_.sum(), 1.0, rtol=1e-12)


@st.composite
def physics_mc(draw):
    """The real MC layout: one reco per event, NaN rows for the lost ones (at least one
    reconstructed), event weights spanning three decades, optional fakes."""
    rng = seeded(draw)
    n_gen, n_measured = draw(st.integers(2, 60)), draw(st.integers(2, 60))
    gen = rng.normal(size=n_gen)
    reco = gen + log_uniform(draw, 1e-3, 1.0) * rng.normal(size=n_gen)
    lost = rng.random(n_gen) < draw(st.floats(0.0, 0.6))
    lost[rng.integers(0, n_gen)] = False
    reco[lost] = np.nan
    gen_weight = 10.0 ** rng.uniform(-3, 0, n_gen) if draw(st.booleans()) else None
    measured = rng.normal(rng.normal(0, 0.3), rng.uniform(0.5, 2), n_measured)
    weight = 10.0 ** rng.uniform(-1, 0, n_measured)
    fakes = None
    if draw(st.booleans()):
        fakes = {"fakes": rng.normal(size=3), "fake_weight": np.full(3, 0.1 * weight.sum() / 3)}
    note(f"{n_gen} events ({lost.sum()} lost), {n_measured} measured, fakes: {fakes is not None}")
    return gen, reco, gen_weight, measured, weight, fakes or {}


@given(physics_mc(), st.sampled_from(["kernel", "sample"]))
def test_ot_unfolding_of_a_physics_mc_folds_back_to_the_signal(mc, efficiency):
    gen, reco, gen_weight, measured, weight, fakes = mc
    est = otinverse.OTUnfolder(max_iter=5, n_init_iter=20, efficiency=efficiency)
    est.fit(measured, measured_weight=weight, gen=gen, reco=reco, gen_weight=gen_weight, **fakes)
    assert np.isfinite(est.weights_).all() and (est.weights_ >= 0).all()
    # The reconstructed part of the unfolded events is the measured signal: Σ σ_k ε_k.
    signal = weight.sum() - fakes.get("fake_weight", np.zeros(1)).sum()
    assert est.weights_ @ est.efficiency_ == pytest.approx(signal, rel=1e-9)
    if efficiency == "kernel":  # the seen events' 1/ε̂ carries the lost ones: no second share
        assert (est.weights_[np.isnan(reco)] == 0).all()


@st.composite
def sparsify_inputs(draw):
    rng = seeded(draw)
    n_samples, n_features, d = (
        draw(st.integers(1, 4)),
        draw(st.integers(2, 30)),
        draw(st.integers(1, 3)),
    )
    X = 10.0 ** rng.uniform(-6, 0, (n_samples, n_features))
    X[rng.random(X.shape) < draw(st.floats(0, 0.7))] = 0.0
    X[:, rng.integers(0, n_features)] += 1.0  # every sample has mass
    positions = rng.normal(size=(n_features, d))
    note(f"{n_samples} samples × {n_features} features in {d}-D")
    return X, positions, log_uniform(draw, 1e-2, 10.0), draw(st.floats(0.0, 2.0))


def sparsify(X, positions, reg, sparsity, solver, max_iter):
    est = otinverse.EntropicSparsifier(
        positions=positions, reg=reg, sparsity=sparsity, solver=solver, max_iter=max_iter
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X).transform(X)


@given(sparsify_inputs(), st.sampled_from(["majorize", "projected_gradient"]))
def test_sparse_approximations_are_probability_vectors(inputs, solver):
    X, positions, reg, sparsity = inputs
    mu = sparsify(X, positions, reg, sparsity, solver, max_iter=20)
    assert np.isfinite(mu).all() and (mu >= 0).all()
    np.testing.assert_allclose(mu.sum(1), 1.0, rtol=1e-9)


@given(sparsify_inputs())
def test_majorize_sparsification_is_equivariant_under_permutation(inputs):
    # The positions carry the geometry, not the order of the features. (Algorithm 2 is left
    # out: its line search accepts or rejects a step on a comparison that rounding in another
    # order can flip, so its iterates before convergence take different paths.)
    X, positions, reg, sparsity = inputs
    mu = sparsify(X, positions, reg, sparsity, "majorize", max_iter=50)
    perm = np.random.default_rng(X.shape[1]).permutation(X.shape[1])
    mu_perm = sparsify(X[:, perm], positions[perm], reg, sparsity, "majorize", max_iter=50)
    np.testing.assert_allclose(mu_perm, mu[:, perm], atol=1e-8)
