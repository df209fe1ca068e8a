"""Forward operators (against SciPy and the WPP forward model) and the PLS baseline (against
dense normal equations and scikit-image's TV denoiser)."""

import subprocess
import sys

import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.signal as sps
from helpers import correlate_valid_adjoint
from otinverse import InvalidArgumentError, WPPRestorer
from otinverse.imaging import (
    BlurSubsampleOperator,
    CartesianMaskOperator,
    ConvolutionOperator,
    cartesian_line_mask,
    gaussian_kernel,
    penalized_least_squares,
)
from sklearn.exceptions import ConvergenceWarning


def _operators(rng):
    return [
        ConvolutionOperator(rng.random((5, 7)), (17, 20), "zero"),
        ConvolutionOperator(rng.random((4, 6)), (17, 20), "zero"),
        ConvolutionOperator(rng.random((5, 3)), (16, 13), "periodic"),
        BlurSubsampleOperator.from_scale_factor(4, (40, 44)),
        BlurSubsampleOperator(rng.random((3, 3)), 2, (23, 20)),
        CartesianMaskOperator(cartesian_line_mask(32, 4, 0.08, random_state=0), (32, 30)),
    ]


def test_dot_product_test(rng):
    for op in _operators(rng):
        x = rng.standard_normal(op.input_shape)
        y = rng.standard_normal(op.output_shape)
        lhs, rhs = np.vdot(op.apply(x), y), np.vdot(x, op.adjoint(y))
        assert abs(lhs - rhs) <= 1e-10 * max(abs(lhs), 1.0), op
        # The flattened SciPy view is the same operator.
        np.testing.assert_allclose(op.as_scipy().matvec(x.ravel()), op.apply(x).ravel())


def test_batches_broadcast(rng):
    for op in _operators(rng):
        xs = rng.standard_normal((3, *op.input_shape)).astype(np.float32)
        batch = op.apply(xs)
        assert batch.dtype == np.float64 and batch.shape == (3, *op.output_shape)
        np.testing.assert_allclose(batch[1], op.apply(xs[1]), atol=1e-12)


def test_convolution_matches_scipy(rng):
    x = rng.standard_normal((17, 20))
    for psf in (rng.random((5, 7)), rng.random((4, 6))):
        got = ConvolutionOperator(psf, x.shape, "zero").apply(x)
        np.testing.assert_allclose(got, sps.convolve(x, psf, mode="same"), atol=1e-12)
    psf = rng.random((5, 3))
    got = ConvolutionOperator(psf, x.shape, "periodic").apply(x)
    np.testing.assert_allclose(got, ndi.convolve(x, psf, mode="wrap"), atol=1e-12)


@pytest.mark.parametrize("scale", [2, 4])
def test_blur_subsample_is_the_wpp_forward_model(rng, scale):
    wpp = WPPRestorer(scale_factor=scale, noise_std=0.0)
    x = rng.random((4 * scale + 5 * scale,) * 2)
    op = BlurSubsampleOperator.from_scale_factor(scale, x.shape)
    np.testing.assert_allclose(op.apply(x), wpp.degrade(x), atol=1e-13)
    assert op.input_shape == wpp.high_res_shape(op.output_shape)
    y = rng.standard_normal(op.output_shape)
    kernel = gaussian_kernel(4 * scale, scale / 2.0)
    np.testing.assert_allclose(
        op.adjoint(y), correlate_valid_adjoint(y, kernel, scale, x.shape), atol=1e-13
    )


def test_cartesian_mask():
    mask = cartesian_line_mask(100, acceleration=4, center_fraction=0.04, random_state=1)
    assert mask.sum() == 25 and mask[48:52].all()
    np.testing.assert_array_equal(mask, cartesian_line_mask(100, 4, 0.04, random_state=1))
    # Fully sampled: H is the identity embedding of real images in complex ones.
    op = CartesianMaskOperator(np.ones(8, dtype=bool), (8, 6))
    x = np.arange(48.0).reshape(8, 6)
    np.testing.assert_allclose(op.apply(x)[..., 0], x, atol=1e-12)
    np.testing.assert_allclose(op.apply(x)[..., 1], 0.0, atol=1e-12)
    # Only the DC line: every row becomes the column means.
    dc = np.zeros(8, dtype=bool)
    dc[4] = True
    got = CartesianMaskOperator(dc, (8, 6)).apply(x)[..., 0]
    np.testing.assert_allclose(got, np.broadcast_to(x.mean(0), x.shape), atol=1e-12)


def test_operator_errors(rng):
    op = ConvolutionOperator(np.ones((3, 3)), (8, 8))
    with pytest.raises(ValueError, match=r"x:.*trailing shape"):
        op.apply(np.zeros((8, 7)))
    with pytest.raises(ValueError, match="y:"):
        op.adjoint(np.full((8, 8), np.nan))
    with pytest.raises(ValueError, match="psf:"):
        ConvolutionOperator(np.ones((9, 3)), (8, 8))
    with pytest.raises(ValueError, match="boundary"):
        ConvolutionOperator(np.ones((3, 3)), (8, 8), "reflect")
    with pytest.raises(ValueError, match="line_mask"):
        CartesianMaskOperator(np.ones(7, dtype=bool), (8, 8))
    with pytest.raises(ValueError, match="image_shape"):
        BlurSubsampleOperator(np.ones((2, 2)), 2, (8,))
    assert issubclass(InvalidArgumentError, ValueError)


def _dense(op):
    n = int(np.prod(op.input_shape))
    return np.stack([op.apply(e.reshape(op.input_shape)).ravel() for e in np.eye(n)], axis=1)


@pytest.mark.parametrize("regularizer", ["l2", "gradient_l2"])
def test_quadratic_pls_solves_the_normal_equations(rng, regularizer):
    op = ConvolutionOperator(gaussian_kernel(5, 1.0), (9, 8))
    y = op.apply(rng.random(op.input_shape)) + 0.01 * rng.standard_normal(op.output_shape)
    a = _dense(op)
    if regularizer == "l2":
        penalty = np.eye(a.shape[1])
    else:
        d0, d1 = np.diff(np.eye(9), axis=0), np.diff(np.eye(8), axis=0)
        grad = np.vstack([np.kron(d0, np.eye(8)), np.kron(np.eye(9), d1)])
        penalty = grad.T @ grad
    expected = np.linalg.solve(a.T @ a + 0.05 * penalty, a.T @ y.ravel())
    got = penalized_least_squares(y, op, reg=0.05, regularizer=regularizer, tol=1e-12)
    np.testing.assert_allclose(got.ravel(), expected, atol=1e-8)


def test_tv_pls(rng):
    from skimage.restoration import denoise_tv_chambolle

    # H = I: argmin ‖y − x‖² + λ TV(x) is the ROF problem with weight λ/2.
    y = rng.random((12, 10))
    identity = ConvolutionOperator(np.ones((1, 1)), y.shape)
    got = penalized_least_squares(y, identity, reg=0.2, tv_max_iter=400)
    np.testing.assert_allclose(got, denoise_tv_chambolle(y, weight=0.1, max_num_iter=400))
    # Deblurring a piecewise-constant image: TV beats the blurred input.
    x = np.zeros((24, 24))
    x[6:18, 8:14] = 1.0
    op = ConvolutionOperator(gaussian_kernel(7, 1.5), x.shape)
    blurred = op.apply(x) + 0.01 * rng.standard_normal(x.shape)
    restored = penalized_least_squares(blurred, op, reg=0.01, tol=1e-4)
    assert np.linalg.norm(restored - x) < 0.6 * np.linalg.norm(blurred - x)
    with pytest.warns(ConvergenceWarning):
        penalized_least_squares(blurred, op, reg=0.01, max_iter=2)


def test_pls_errors():
    op = ConvolutionOperator(np.ones((3, 3)), (8, 8))
    with pytest.raises(ValueError, match="measured"):
        penalized_least_squares(np.zeros((8, 9)), op, reg=1.0)
    with pytest.raises(ValueError, match="measured"):
        penalized_least_squares(np.zeros((2, 8, 8)), op, reg=1.0)
    with pytest.raises(ValueError, match="reg"):
        penalized_least_squares(np.zeros((8, 8)), op, reg=0.0)
    with pytest.raises(ValueError, match="regularizer"):
        penalized_least_squares(np.zeros((8, 8)), op, reg=1.0, regularizer="l1")
    with pytest.raises(ValueError, match="operator"):
        penalized_least_squares(np.zeros((8, 8)), np.eye(8), reg=1.0)


def test_importing_otinverse_does_not_import_a_tensor_library():
    code = (
        "import sys, otinverse, otinverse.imaging; "
        "bad = sorted({'jax', 'flax', 'optax', 'torch'} & set(sys.modules)); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_imaging_datasets():
    from otinverse.datasets import born_wolf_psf, make_ellipse_phantoms, make_filaments
    from scipy import special

    psf = born_wolf_psf(31, 6.0)
    assert psf.sum() == pytest.approx(1.0) and psf[15, 15] == psf.max()
    np.testing.assert_allclose(psf, psf.T)
    np.testing.assert_allclose(psf, psf[::-1])
    # The Airy pattern's first dark ring at the given radius, its first bright ring at 1.635×.
    assert psf[15, 21] < 1e-4 * psf[15, 15]
    ring = special.jn_zeros(1, 1)[0] * np.arange(16) / 6.0
    assert (
        np.argmax(psf[15, 15 + 7 :]) + 7
        == np.argmax(np.where(ring[7:] > 0, (2 * special.j1(ring[7:]) / ring[7:]) ** 2, 0)) + 7
    )
    for make in (make_filaments, make_ellipse_phantoms):
        a = make(3, 24, random_state=5)
        assert a.shape == (3, 24, 24) and 0.0 <= a.min() and a.max() <= 1.0 and a.max() > 0.3
        np.testing.assert_array_equal(a, make(3, 24, random_state=5))
        assert not np.array_equal(a, make(3, 24, random_state=6))
