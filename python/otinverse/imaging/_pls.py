"""Penalised least squares (PLS) with a known forward operator, without learning.

``x̂ = argmin_x ‖y − H x‖² + λ R(x)`` (Sim et al., eq. 1, the classical baseline that their
OT-cycleGAN generalises) for an operator of :mod:`otinverse.imaging` and

* ``"tv"``: isotropic total variation (forward differences), solved by FISTA (Beck & Teboulle,
  2009) whose proximal step is scikit-image's Chambolle TV denoiser;
* ``"l2"``: ``R(x) = ‖x‖²`` and ``"gradient_l2"``: ``R(x) = ‖∇x‖²`` (forward differences,
  reflecting boundary), whose normal equations ``(HᵀH + λ R) x = Hᵀy`` are solved by SciPy's
  conjugate gradients.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse.linalg as spla
from scipy import ndimage
from sklearn.exceptions import ConvergenceWarning

from .._core import InvalidArgumentError
from .._validation import check_int, check_option, check_real, check_scalar_positive
from ._operators import LinearOperator

__all__ = ["penalized_least_squares"]


def _squared_norm(operator: LinearOperator, random_state: int = 0) -> float:
    """``‖H‖²`` (largest singular value squared) by ARPACK on ``HᵀH``."""
    a = operator.as_scipy()
    normal = spla.LinearOperator((a.shape[1],) * 2, matvec=lambda v: a.rmatvec(a.matvec(v)))
    v0 = np.random.default_rng(random_state).standard_normal(a.shape[1])
    return float(spla.eigsh(normal, k=1, which="LM", v0=v0, return_eigenvectors=False)[0])


def _solve_quadratic(operator, measured, reg, regularizer, max_iter, tol):
    a = operator.as_scipy()
    shape = operator.input_shape
    if regularizer == "l2":
        penalty = lambda v: v  # noqa: E731
    else:
        penalty = lambda v: -ndimage.laplace(v.reshape(shape), mode="nearest").ravel()  # noqa: E731
    normal = spla.LinearOperator(
        (a.shape[1],) * 2, matvec=lambda v: a.rmatvec(a.matvec(v)) + reg * penalty(v)
    )
    x, info = spla.cg(normal, a.rmatvec(measured.ravel()), rtol=tol, maxiter=max_iter)
    if info > 0:
        warnings.warn(
            f"conjugate gradients stopped after {max_iter} iterations above rtol={tol}",
            ConvergenceWarning,
            stacklevel=3,
        )
    return x.reshape(shape)


def _solve_tv(operator, measured, reg, max_iter, tol, tv_max_iter):
    from skimage.restoration import denoise_tv_chambolle

    step = 1.0 / (2.0 * _squared_norm(operator))  # 1/L with L = 2‖H‖², the gradient's Lipschitz
    x = operator.adjoint(measured)
    z, t = x, 1.0
    for _ in range(max_iter):
        grad = 2.0 * operator.adjoint(operator.apply(z) - measured)
        # prox of step·λ·TV: argmin ½‖u − v‖² + step·λ·TV(u) is Chambolle's ROF with that weight.
        x_new = denoise_tv_chambolle(z - step * grad, weight=step * reg, max_num_iter=tv_max_iter)
        t_new = (1.0 + np.sqrt(1.0 + 4.0 * t * t)) / 2.0
        z = x_new + ((t - 1.0) / t_new) * (x_new - x)
        change = np.linalg.norm(x_new - x) / max(np.linalg.norm(x), 1e-12)
        x, t = x_new, t_new
        if change <= tol:
            return x
    warnings.warn(
        f"FISTA stopped after {max_iter} iterations with a relative change {change:.2e} "
        f"> tol={tol}",
        ConvergenceWarning,
        stacklevel=3,
    )
    return x


def penalized_least_squares(
    measured,
    operator: LinearOperator,
    *,
    reg: float,
    regularizer: str = "tv",
    max_iter: int = 300,
    tol: float = 1e-5,
    tv_max_iter: int = 50,
) -> np.ndarray:
    """``argmin_x ‖y − H x‖² + reg · R(x)`` for one measurement ``y`` of ``operator.output_shape``.

    Parameters
    ----------
    measured : array-like of shape ``operator.output_shape``
        One measurement ``y``.
    operator : otinverse.imaging.LinearOperator
        The known forward model ``H``.
    reg : float
        λ, positive.
    regularizer : {"tv", "l2", "gradient_l2"}, default="tv"
        ``R``: isotropic total variation (FISTA with Chambolle's TV prox, which needs
        scikit-image), ``‖x‖²`` or ``‖∇x‖²`` (both by conjugate gradients on the normal
        equations).
    max_iter : int, default=300
        FISTA iterations (``"tv"``) or conjugate-gradient iterations.
    tol : float, default=1e-5
        ``"tv"``: relative change of ``x`` between iterations; otherwise CG's relative residual.
        Not reaching it raises a :class:`~sklearn.exceptions.ConvergenceWarning`.
    tv_max_iter : int, default=50
        Iterations of each Chambolle proximal step.

    Returns
    -------
    ndarray of shape ``operator.input_shape``
        The estimate ``x̂`` (float64).
    """
    if not isinstance(operator, LinearOperator):
        raise InvalidArgumentError(
            f"operator: expected an otinverse.imaging.LinearOperator, got {type(operator).__name__}"
        )
    measured = operator._check(measured, "measured", operator.output_shape)
    if measured.shape != tuple(operator.output_shape):
        raise InvalidArgumentError(
            f"measured: expected one measurement of shape {operator.output_shape}, "
            f"got shape {measured.shape}"
        )
    reg = check_scalar_positive(reg, "reg")
    regularizer = check_option(regularizer, "regularizer", ("tv", "l2", "gradient_l2"))
    max_iter = check_int(max_iter, "max_iter", 1)
    tol = check_real(tol, "tol", low=0.0, low_inclusive=False)
    tv_max_iter = check_int(tv_max_iter, "tv_max_iter", 1)
    if regularizer == "tv":
        return _solve_tv(operator, measured, reg, max_iter, tol, tv_max_iter)
    return _solve_quadratic(operator, measured, reg, regularizer, max_iter, tol)
