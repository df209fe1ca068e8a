"""The OT-cycleGAN of the optional ``learn`` extra: losses against hand-computed values, a short
training run (cycle loss goes down, reproducible), predict/save/load and input validation."""

import os

# One XLA thread, as for every training on this shared CI machine (read when JAX starts).
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import numpy as np
import otinverse
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("flax")
pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402
from otinverse.imaging import (  # noqa: E402
    BlurSubsampleOperator,
    CartesianMaskOperator,
    ConvolutionOperator,
    cartesian_line_mask,
    gaussian_kernel,
)
from otinverse.learn import OTCycleGANRestorer, SupervisedUNetRestorer  # noqa: E402
from otinverse.learn.losses import critic_loss, cycle_losses, gradient_penalty  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.utils._param_validation import InvalidParameterError  # noqa: E402

TINY = dict(unet_width=4, unet_depth=1, critic_width=4, critic_depth=2, n_critic=2)


def test_cycle_losses_hand_computed():
    x = jnp.array([[[1.0, 2.0], [3.0, 4.0]]])
    y = jnp.array([[[0.0, 1.0], [1.0, 0.0]]])
    forward = lambda z: 0.5 * z  # noqa: E731
    generate = lambda m: m + 1.0  # noqa: E731
    # G(Hx) = [[1.5, 2], [2.5, 3]]: |x − G(Hx)| = [0.5, 0, 0.5, 1]; H G(y) = [[0.5, 1], [1, 0.5]].
    ic, mc, g_y = cycle_losses(generate, forward, x, y)
    assert float(ic) == pytest.approx(0.5) and float(mc) == pytest.approx(0.25)
    np.testing.assert_allclose(g_y, y + 1.0)
    ic, mc, _ = cycle_losses(
        generate,
        forward,
        x,
        y,
        image_mask=jnp.array([[1.0, 0.0], [0.0, 0.0]]),
        measured_mask=jnp.array([[0.0, 1.0], [1.0, 1.0]]),
    )
    assert float(ic) == pytest.approx(0.5) and float(mc) == pytest.approx(0.5 / 3)


def test_gradient_penalty_hand_computed():
    real = jnp.array([[[1.0, 0.0], [0.0, 0.0]], [[2.0, 0.0], [0.0, 0.0]]])
    fake = jnp.array([[[0.0, 0.0], [0.0, 3.0]], [[0.0, 5.0], [0.0, 0.0]]])
    t = jnp.array([0.5, 1.0])
    # Linear critic ⟨w, z⟩ with ‖w‖ = 5: the penalty is (5 − 1)² wherever it is evaluated.
    w = jnp.array([[3.0, 4.0], [0.0, 0.0]])
    linear = lambda z: (z * w).sum(axis=(1, 2))  # noqa: E731
    assert float(gradient_penalty(linear, real, fake, t)) == pytest.approx(16.0)
    # Quadratic critic ½‖z‖²: ∇ = x̂; x̂₀ = [[.5, 0], [0, 1.5]] (‖·‖ = √2.5), x̂₁ = real₁ (‖·‖ = 2).
    quadratic = lambda z: 0.5 * (z**2).sum(axis=(1, 2))  # noqa: E731
    expected = ((np.sqrt(2.5) - 1.0) ** 2 + 1.0) / 2.0
    assert float(gradient_penalty(quadratic, real, fake, t)) == pytest.approx(expected, rel=1e-6)
    # E φ(real) − E φ(fake) = (3 + 6)/2 − (0 + 20)/2 = −5.5; loss = 5.5 + γ·16.
    loss, (distance, penalty) = critic_loss(linear, real, fake, t, 0.1)
    assert float(distance) == pytest.approx(-5.5) and float(loss) == pytest.approx(5.5 + 1.6)
    assert float(penalty) == pytest.approx(16.0)


def _blur_problem():
    rng = np.random.default_rng(7)
    op = ConvolutionOperator(gaussian_kernel(5, 1.0), (16, 16))
    images = rng.random((8, 16, 16))
    measured = op.apply(rng.random((8, 16, 16)))
    return op, measured, images


@pytest.fixture(scope="module")
def fitted():
    op, measured, images = _blur_problem()
    est = OTCycleGANRestorer(
        op, **TINY, batch_size=8, learning_rate=1e-3, max_iter=20, random_state=0
    )
    return est.fit(measured, images), measured, images


# The two tests on `fitted` have the same duration mark, so they stay adjacent at the head of one
# worker's queue (work stealing takes from the tail): another worker would train it again.
@pytest.mark.slow(60)
def test_training_lowers_the_cycle_loss_and_is_reproducible(fitted):
    est, measured, images = fitted
    h = est.history_
    assert set(h) == set(OTCycleGANRestorer._HISTORY) and all(len(v) == 20 for v in h.values())
    assert all(np.isfinite(v).all() for v in h.values())
    # Full batches (batch_size = n): the cycle terms are evaluated on the same data every step.
    cycle = h["image_cycle"] + h["measurement_cycle"]
    assert cycle[-1] < 0.9 * cycle[0]
    again = clone(est).fit(measured, images)
    for name in h:
        np.testing.assert_array_equal(again.history_[name], h[name])
    np.testing.assert_array_equal(again.predict(measured), est.predict(measured))


@pytest.mark.slow(60)
def test_predict_and_save_load(fitted, tmp_path):
    est, measured, _ = fitted
    restored = est.predict(measured)
    assert restored.shape == measured.shape and restored.dtype == np.float64
    np.testing.assert_allclose(est.predict(measured[3]), restored[3], atol=1e-6)
    path = tmp_path / "weights.npz"
    est.save_weights(path)
    loaded = clone(est).load_weights(path)
    np.testing.assert_array_equal(loaded.predict(measured), restored)
    np.testing.assert_array_equal(loaded.history_["generator"], est.history_["generator"])
    with pytest.raises(ValueError, match="path:"):
        clone(est).set_params(unet_width=8).load_weights(path)


@pytest.mark.slow(17)
def test_supervised_on_blur_subsample_patches():
    rng = np.random.default_rng(3)
    op = BlurSubsampleOperator.from_scale_factor(2, (16, 16))
    images = rng.random((4, 16, 16))
    est = SupervisedUNetRestorer(
        op, unet_width=4, unet_depth=1, patch_size=12, max_iter=3, random_state=0
    )
    est.fit(op.apply(images), images)
    assert est.history_["l1"].shape == (3,)
    assert est.predict(op.apply(images)).shape == images.shape


def test_bad_inputs():
    op, measured, images = _blur_problem()
    est = OTCycleGANRestorer(op, **TINY, max_iter=1)
    with pytest.raises(NotFittedError):
        est.predict(measured)
    with pytest.raises(ValueError, match=r"measured:.*shape"):
        est.fit(measured[:, :15], images)
    with pytest.raises(ValueError, match=r"images:.*shape"):
        est.fit(measured, images[0])
    bad = images.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="images:"):
        est.fit(measured, bad)
    with pytest.raises(ValueError, match=r"measured:.*empty"):
        est.fit(measured[:0], images)
    with pytest.raises(ValueError, match="n_critic"):
        clone(est).set_params(n_critic=0).fit(measured, images)
    with pytest.raises(ValueError, match="operator"):
        OTCycleGANRestorer(np.eye(3)).fit(measured, images)
    with pytest.raises(ValueError, match="patch_size"):
        clone(est).set_params(patch_size=17).fit(measured, images)
    mri = CartesianMaskOperator(cartesian_line_mask(16, 4, 0.08, random_state=0), (16, 16))
    with pytest.raises(ValueError, match="patch_size"):
        OTCycleGANRestorer(mri, patch_size=8).fit(mri.apply(images), images)
    with pytest.raises(ValueError, match=r"images:.*pairs"):
        SupervisedUNetRestorer(op).fit(measured, images[:3])


BAD_HYPER_PARAMETERS = [
    (OTCycleGANRestorer, "n_critic", 0),
    (OTCycleGANRestorer, "critic_depth", 7),
    (OTCycleGANRestorer, "gp_weight", -1.0),
    (OTCycleGANRestorer, "adversarial_weight", "large"),
    (SupervisedUNetRestorer, "unet_depth", 7),
    (SupervisedUNetRestorer, "unet_width", 0),
    (SupervisedUNetRestorer, "learning_rate", 0.0),
    (SupervisedUNetRestorer, "lr_schedule", "cosine"),
    (SupervisedUNetRestorer, "batch_size", 1.5),
    (SupervisedUNetRestorer, "max_iter", 0),
]


@pytest.mark.parametrize(("estimator", "name", "value"), BAD_HYPER_PARAMETERS)
def test_bad_hyper_parameter_raises_the_package_error_naming_it(estimator, name, value):
    # The package's one error type for a bad hyper-parameter (a ValueError), not scikit-learn's
    # InvalidParameterError; raised by fit and by load_weights before any network is built.
    op, measured, images = _blur_problem()
    est = estimator(op, max_iter=1).set_params(**{name: value})
    for call in (lambda: est.fit(measured, images), lambda: est.load_weights("unused.npz")):
        with pytest.raises(otinverse.InvalidArgumentError, match=rf"'{name}' parameter") as info:
            call()
        assert not isinstance(info.value, InvalidParameterError)
