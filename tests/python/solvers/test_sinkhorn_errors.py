"""Bad input gets a clear exception naming the argument: never a panic, a hang or a NaN result."""

import numpy as np
import otinverse
import pytest
from otinverse import InvalidArgumentError, InvalidDtypeError

rng = np.random.default_rng(0)
X, Y = rng.random((6, 2)), rng.random((5, 2))
M = ((X[:, None] - Y[None]) ** 2).sum(-1)
A, B = np.full(6, 1 / 6), np.full(5, 1 / 5)


def with_nan(v, idx):
    v = np.array(v, dtype=float)
    v[idx] = np.nan
    return v


def with_inf(v, idx):
    v = np.array(v, dtype=float)
    v[idx] = np.inf
    return v


DENSE_CASES = [
    ("a", dict(a=with_nan(A, 0))),
    ("a", dict(a=with_inf(A, 2))),
    ("b", dict(b=with_nan(B, 1))),
    ("M", dict(M=with_nan(M, (1, 1)))),
    ("M", dict(M=with_inf(M, (0, 3)))),
    ("a", dict(a=np.r_[-0.1, A[1:] + 0.02])),
    ("a", dict(a=np.zeros(6))),
    ("b", dict(b=np.zeros(5))),
    ("a", dict(a=np.full(5, 0.2))),  # a vs M rows
    ("b", dict(b=np.full(6, 1 / 6))),  # b vs M columns
    ("M", dict(M=np.zeros((0, 5)))),
    ("a", dict(a=np.zeros(0))),
    ("M", dict(M=np.ones(5))),  # wrong dimensionality
    ("b", dict(b=2 * B)),  # balanced needs equal masses
    ("reg", dict(reg=0.0)),
    ("reg", dict(reg=-1.0)),
    ("reg", dict(reg=np.nan)),
    ("reg", dict(reg=np.inf)),
    ("reach_a", dict(reach_a=0.0)),
    ("reach_b", dict(reach_b=-2.0)),
    ("reach_b", dict(reach_b=np.nan)),
    ("max_iter", dict(max_iter=0)),
    ("tol", dict(tol=-1.0)),
    ("update", dict(update="gauss-seidel")),
    ("eps_scaling", dict(eps_scaling=1.5)),
    ("f_init", dict(f_init=np.zeros(6))),
    ("f_init", dict(f_init=np.zeros(4), g_init=np.zeros(5))),
    ("g_init", dict(f_init=np.zeros(6), g_init=np.full(5, np.nan))),
]


@pytest.mark.parametrize(
    "name,override", DENSE_CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(DENSE_CASES)]
)
def test_dense_bad_input_names_the_argument(name, override):
    kw = dict(a=A, b=B, M=M, reg=0.1)
    kw.update(override)
    with pytest.raises(InvalidArgumentError, match=rf"\b{name}\b"):
        otinverse.sinkhorn(kw.pop("a"), kw.pop("b"), kw.pop("M"), kw.pop("reg"), **kw)


POINT_CASES = [
    ("x", dict(x=with_nan(X, (0, 0)))),
    ("y", dict(y=with_inf(Y, (1, 1)))),
    ("y", dict(y=rng.random((5, 3)))),  # x vs y dimension
    ("x", dict(x=np.zeros((0, 2)))),
    ("a", dict(a=np.full(4, 0.25))),
    ("p", dict(p=-1.0)),  # 0 < p < 1 is a valid concave cost
    ("p", dict(p=0)),
    ("p", dict(p=np.nan)),
    ("reg", dict(reg=0)),
]


@pytest.mark.parametrize(
    "name,override", POINT_CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(POINT_CASES)]
)
def test_points_bad_input_names_the_argument(name, override):
    kw = dict(a=A, x=X, b=B, y=Y, reg=0.1)
    kw.update(override)
    with pytest.raises(InvalidArgumentError, match=rf"\b{name}\b"):
        otinverse.sinkhorn_points(kw.pop("x"), kw.pop("y"), kw.pop("reg"), **kw)


@pytest.mark.parametrize(
    "call",
    [
        lambda: otinverse.sinkhorn(A, B, M.astype(str), 0.1),
        lambda: otinverse.sinkhorn(np.array(["a"] * 6), B, M, 0.1),
        lambda: otinverse.sinkhorn(A, B, M.astype(complex), 0.1),
        lambda: otinverse.sinkhorn(A, B, np.array([[object()] * 5] * 6), 0.1),
        lambda: otinverse.sinkhorn_points(X.astype(bool), Y, 0.1, a=A, b=B),
    ],
)
def test_non_numeric_dtype_is_a_type_error(call):
    with pytest.raises(InvalidDtypeError, match=r"\b(M|a|x)\b"):
        call()
    assert issubclass(InvalidDtypeError, TypeError)


def test_wasserstein_bad_input():
    with pytest.raises(InvalidArgumentError, match=r"\bb\b"):
        otinverse.wasserstein(X, Y, a=A, b=2 * B)
    with pytest.raises(InvalidArgumentError, match=r"\bp\b"):
        otinverse.wasserstein(X, Y, a=A, b=B, p=0.9)
    with pytest.raises(InvalidArgumentError, match=r"\by\b"):
        otinverse.wasserstein(X, rng.random((5, 3)), a=A, b=B)


def test_errors_from_the_core_are_mapped_not_panics():
    # The Python layer only coerces arrays: the values are checked once, in the Rust core, and its
    # errors reach Python as InvalidArgumentError naming the argument.
    from otinverse import _core

    options = _core.SinkhornOptions(reg=0.1, max_iter=10)
    with pytest.raises(InvalidArgumentError, match=r"^a: "):
        _core.sinkhorn_dense(with_nan(A, 0), B, M, options)
    with pytest.raises(InvalidArgumentError, match=r"^reg: "):
        _core.sinkhorn_dense(A, B, M, _core.SinkhornOptions(reg=-1.0))
    with pytest.raises(InvalidArgumentError, match=r"^max_iter: "):
        _core.sinkhorn_dense(A, B, M, _core.SinkhornOptions(reg=0.1, max_iter=-3))
    with pytest.raises(InvalidArgumentError, match=r"^y: "):
        _core.sinkhorn_points(A, X, B, rng.random((5, 3)), 2.0, options)
    with pytest.raises(InvalidArgumentError, match=r"^M: "):
        _core.sinkhorn_dense(A, B, np.zeros((6, 0)), options)
    with pytest.raises(InvalidArgumentError, match=r"^g_init: "):
        _core.sinkhorn_dense(A, B, M, options, np.zeros(6))


@pytest.mark.parametrize(
    "name,kw", [("max_iter", dict(max_iter=2.5)), ("reg", dict(reg="small")), ("tol", dict(tol=[]))]
)
def test_options_of_the_wrong_type_are_type_errors_naming_them(name, kw):
    with pytest.raises(TypeError, match=rf"\b{name}\b"):
        otinverse.sinkhorn(A, B, M, **{"reg": 0.1, **kw})


def test_options_object_keeps_what_it_was_given():
    from otinverse import _core

    o = _core.SinkhornOptions(reg=0.5, reach_b=0.1, update="symmetric", stage_iter=2)
    assert (o.reg, o.reach_a, o.reach_b, o.update, o.stage_iter) == (0.5, None, 0.1, "symmetric", 2)
    assert (o.max_iter, o.tol, o.eps_scaling, o.overrelaxation) == (1000, 1e-9, None, True)
    assert "reach_b=0.1" in repr(o)
    with pytest.raises(AttributeError):
        o.reg = 1.0
