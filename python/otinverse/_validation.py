"""Input validation shared by the functional API and the estimators.

Errors name the argument the user passed. Float64 input of any strides comes back as the same
buffer (no copy); other numeric dtypes are upcast to float64 once here.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.utils import check_array
from sklearn.utils._param_validation import InvalidParameterError

from ._core import InvalidArgumentError, InvalidDtypeError

__all__ = ["as_float_array", "as_points", "as_weights", "check_option", "check_scalar_positive"]


def as_float_array(x, name: str, *, ndim: int, finite: bool = True) -> np.ndarray:
    """A float64 array with ``ndim`` dimensions and no empty axis (a view when possible), finite
    unless ``finite`` is false (for arrays whose entries the core checks in its own pass)."""
    arr = x if isinstance(x, np.ndarray) else np.asarray(x)
    if arr.dtype.kind not in "iuf":
        raise InvalidDtypeError(f"{name}: expected a real numeric array, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise InvalidArgumentError(f"{name}: expected a {ndim}-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise InvalidArgumentError(f"{name}: must not be empty, got shape {arr.shape}")
    try:
        # order=None and copy=False: float64 arrays of any strides pass through uncopied.
        return check_array(
            arr,
            dtype=np.float64,
            ensure_2d=False,
            allow_nd=True,
            order=None,
            copy=False,
            ensure_all_finite=finite,
            input_name=name,
        )
    except ValueError as exc:
        raise InvalidArgumentError(f"{name}: {exc}") from None


def weights_or_uniform(w, name: str, n: int) -> np.ndarray:
    """Float64 weights (``None``: uniform 1/n), coerced only: for a core function that checks
    their length, sign and mass itself."""
    return np.full(n, 1.0 / n) if w is None else as_float_array(w, name, ndim=1)


def as_weights(w, name: str, n: int, n_name: str) -> np.ndarray:
    """Non-negative, finite weights of length ``n`` with positive mass (``None``: uniform 1/n),
    for the computations no core function checks (POT's network simplex, a normalisation)."""
    if w is None:
        return np.full(n, 1.0 / n)
    arr = as_float_array(w, name, ndim=1)
    if arr.shape[0] != n:
        raise InvalidArgumentError(f"{name}: has {arr.shape[0]} weights but {n_name} has {n}")
    if (arr < 0).any():
        raise InvalidArgumentError(f"{name}: weights must be non-negative, found {arr.min()}")
    if not arr.sum() > 0:
        raise InvalidArgumentError(f"{name}: total mass must be positive")
    return arr


def as_points(x, name: str) -> np.ndarray:
    """Points as an (n, d) float64 array; a 1-D array is n points on the line (a view)."""
    arr = x if isinstance(x, np.ndarray) else np.asarray(x)
    if arr.ndim == 1:
        arr = arr[:, None]
    return as_float_array(arr, name, ndim=2)


def check_scalar_positive(value, name: str, *, allow_none: bool = False) -> float | None:
    """A finite number > 0 (or ``None`` when allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidArgumentError(f"{name}: must be a positive number, got {value!r}")
    value = float(value)
    if not (np.isfinite(value) and value > 0):
        raise InvalidArgumentError(f"{name}: must be positive and finite, got {value}")
    return value


def check_real(
    value, name: str, *, low=None, low_inclusive: bool = True, allow_none: bool = False
) -> float | None:
    """A finite real number (not bool), optionally bounded below (or ``None`` when allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise InvalidArgumentError(f"{name}: must be a finite number, got {value!r}")
    value = float(value)
    if low is not None and (value < low or (value == low and not low_inclusive)):
        op = ">=" if low_inclusive else ">"
        raise InvalidArgumentError(f"{name}: must be {op} {low}, got {value}")
    return value


def check_int(value, name: str, minimum: int, maximum: int | None = None) -> int:
    """An integer (Python or NumPy, not bool) in ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidArgumentError(f"{name}: must be an integer, got {value!r}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        hi = "" if maximum is None else f" and at most {maximum}"
        raise InvalidArgumentError(f"{name}: must be an integer >= {minimum}{hi}, got {value}")
    return value


def check_option(value, name: str, options) -> str:
    if value not in options:
        raise InvalidArgumentError(f"{name}: must be one of {sorted(options)}, got {value!r}")
    return value


class ValidatedParams:
    """Estimator mixin (listed before ``BaseEstimator``): scikit-learn's check of
    ``_parameter_constraints``, raising :class:`otinverse.InvalidArgumentError` (a ``ValueError``
    naming the parameter), the one error type for a bad hyper-parameter across the package."""

    def _validate_params(self):
        try:
            super()._validate_params()
        except InvalidParameterError as exc:
            raise InvalidArgumentError(str(exc)) from None
