"""The JAX Sinkhorn loss and divergence against POT, OTT-JAX and finite differences."""

import numpy as np
import pytest

jax = pytest.importorskip("jax")
ot = pytest.importorskip("ot")

import jax.numpy as jnp  # noqa: E402
import otinverse  # noqa: E402
from otinverse.learn import sinkhorn_divergence, sinkhorn_loss  # noqa: E402

REG = 0.5
TIGHT = {"tol": 1e-13, "max_iter": 100_000}


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def clouds(seed=0, n=30, m=40, mass_b=1.0):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(m, 2)) + 1.0
    a, b = rng.uniform(0.5, 1.0, n), rng.uniform(0.5, 1.0, m)
    return x, y, a / a.sum(), mass_b * b / b.sum()


def kl(p, q):
    return float((p * np.log(p / q) - p + q).sum())


def pot_cost(x, y, p):
    return ot.dist(x, y) if p == 2 else ot.dist(x, y, metric="euclidean")


def pot_objective(x, y, a, b, p, reach=None):
    """⟨C, P⟩ + ε KL(P | a⊗b) (+ the reach terms) of POT's plan, and POT's sinkhorn2."""
    M = pot_cost(x, y, p)
    if reach is None:
        P = ot.sinkhorn(a, b, M, REG, stopThr=1e-14, numItermax=100_000)
        linear = ot.sinkhorn2(a, b, M, REG, stopThr=1e-14, numItermax=100_000)
        return (P * M).sum() + REG * kl(P, np.outer(a, b)), float(linear)
    P = ot.unbalanced.sinkhorn_unbalanced(
        a, b, M, REG, reach, stopThr=1e-15, numItermax=100_000, reg_type="kl"
    )
    marginals = reach * (kl(P.sum(1), a) + kl(P.sum(0), b))
    return (P * M).sum() + REG * kl(P, np.outer(a, b)) + marginals, None


@pytest.mark.parametrize("p", [1, 2])
def test_balanced_loss_is_pot_objective_and_sinkhorn2_its_linear_part(p):
    x, y, a, b = clouds()
    value = float(sinkhorn_loss(x, y, a=a, b=b, reg=REG, p=p, **TIGHT))
    objective, linear = pot_objective(x, y, a, b, p)
    np.testing.assert_allclose(value, objective, rtol=1e-8)
    # ot.sinkhorn2 is ⟨C, P⟩ alone: our value minus the entropic term.
    plan = otinverse.sinkhorn_points(x, y, REG, a=a, b=b, p=p, **TIGHT).plan
    np.testing.assert_allclose(value - REG * kl(plan, np.outer(a, b)), linear, rtol=1e-8)


@pytest.mark.parametrize("p", [1, 2])
def test_unbalanced_loss_is_pot_objective(p):
    x, y, a, b = clouds(1, mass_b=0.7)
    value = float(sinkhorn_loss(x, y, a=a, b=b, reg=REG, p=p, reach=0.8, **TIGHT))
    np.testing.assert_allclose(value, pot_objective(x, y, a, b, p, reach=0.8)[0], rtol=1e-8)


@pytest.mark.parametrize("reach", [None, 0.8])
def test_divergence_is_pot_built_divergence(reach):
    x, y, a, b = clouds(2, mass_b=1.0 if reach is None else 0.7)
    value = float(sinkhorn_divergence(x, y, a=a, b=b, reg=REG, reach=reach, **TIGHT))
    expected = (
        pot_objective(x, y, a, b, 2, reach)[0]
        - 0.5 * pot_objective(x, x, a, a, 2, reach)[0]
        - 0.5 * pot_objective(y, y, b, b, 2, reach)[0]
        + 0.5 * REG * (a.sum() - b.sum()) ** 2
    )
    np.testing.assert_allclose(value, expected, rtol=1e-7)
    assert float(sinkhorn_divergence(x, x, a=a, b=a, reg=REG, reach=reach, **TIGHT)) == (
        pytest.approx(0.0, abs=1e-10)
    )


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize(
    ("loss", "reach"),
    [
        (sinkhorn_loss, None),
        (sinkhorn_loss, 0.8),
        (sinkhorn_loss, (None, 0.8)),
        (sinkhorn_divergence, None),
        (sinkhorn_divergence, 0.8),
    ],
)
def test_gradients_equal_finite_differences(loss, reach, p):
    x, y, a, b = clouds(3)

    def value(*args):
        return loss(*args[:2], a=args[2], b=args[3], reg=REG, p=p, reach=reach, **TIGHT)

    grads = jax.grad(lambda *v: value(*v), argnums=(0, 1, 2, 3))(x, y, a, b)
    rng = np.random.default_rng(4)
    for k, arg in enumerate((x, y, a, b)):
        direction = rng.normal(size=arg.shape)
        if reach is None and k >= 2:
            direction -= direction.mean()  # balanced weights keep their mass
        step = 1e-6
        plus, minus = [x, y, a, b], [x, y, a, b]
        plus[k], minus[k] = arg + step * direction, arg - step * direction
        finite = (float(value(*plus)) - float(value(*minus))) / (2 * step)
        analytic = float(jnp.sum(grads[k] * direction))
        assert analytic == pytest.approx(finite, rel=1e-5, abs=1e-8), f"argument {k}"


def test_gradients_under_jit_and_vmap():
    x, y, _, _ = clouds(5)
    loss = jax.jit(jax.value_and_grad(lambda x, y: sinkhorn_divergence(x, y, reg=REG, **TIGHT)))
    value, grad = loss(x, y)
    eager_value, eager_grad = jax.value_and_grad(
        lambda x, y: sinkhorn_divergence(x, y, reg=REG, **TIGHT)
    )(x, y)
    np.testing.assert_allclose(value, eager_value, rtol=1e-12)
    np.testing.assert_allclose(grad, eager_grad, rtol=1e-10, atol=1e-14)
    shifts = jnp.array([0.0, 0.5, 1.0])
    batched = jax.vmap(lambda s: sinkhorn_loss(x + s, y, reg=REG, **TIGHT))(shifts)
    one_by_one = [float(sinkhorn_loss(x + s, y, reg=REG, **TIGHT)) for s in shifts]
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-12)
    batched_grad = jax.vmap(jax.grad(lambda s: sinkhorn_loss(x + s, y, reg=REG, **TIGHT)))(shifts)
    assert batched_grad.shape == (3,)
    assert np.all(np.isfinite(batched_grad))


def test_float32_inputs_give_float32_results():
    x, y, a, b = (v.astype(np.float32) for v in clouds(6))
    value, grad = jax.value_and_grad(lambda x: sinkhorn_loss(x, y, a=a, b=b, reg=REG, **TIGHT))(x)
    assert value.dtype == jnp.float32 and grad.dtype == jnp.float32
    reference = sinkhorn_loss(*(v.astype(np.float64) for v in (x, y)), a=a, b=b, reg=REG, **TIGHT)
    np.testing.assert_allclose(value, reference, rtol=1e-6)


def test_ott_balanced_values_and_implicit_gradients():
    pytest.importorskip("ott")
    from ott.geometry import costs, pointcloud
    from ott.tools.sinkhorn_divergence import sinkhorn_divergence as ott_divergence

    x, y, a, b = clouds(7)
    for p, cost_fn in ((2, costs.SqEuclidean()), (1, costs.Euclidean())):

        def theirs(x, y, a, b, cost_fn=cost_fn):
            kwargs = {"threshold": 1e-13, "max_iterations": 100_000}
            return ott_divergence(
                pointcloud.PointCloud,
                x,
                y,
                epsilon=REG,
                cost_fn=cost_fn,
                a=a,
                b=b,
                solve_kwargs=kwargs,
            )[0]

        def ours(x, y, a, b, p=p):
            return sinkhorn_divergence(x, y, a=a, b=b, reg=REG, p=p, **TIGHT)

        np.testing.assert_allclose(ours(x, y, a, b), theirs(x, y, a, b), rtol=1e-6)
        g_ours = jax.grad(ours, argnums=(0, 1, 2, 3))(x, y, a, b)
        g_theirs = jax.grad(theirs, argnums=(0, 1, 2, 3))(x, y, a, b)
        for k, (u, v) in enumerate(zip(g_ours, g_theirs, strict=True)):
            if k >= 2:  # balanced weight gradients are defined up to a constant
                u, v = u - u.mean(), v - v.mean()
            scale = float(jnp.abs(v).max())
            assert float(jnp.abs(u - v).max()) <= 1e-5 * scale, f"argument {k}, p={p}"


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"x": np.full((3, 2), np.nan)}, "x"),
        ({"y": np.ones((3, 3))}, "y"),
        ({"a": -np.ones(4)}, "a"),
        ({"b": np.ones(2)}, "b"),
        ({"reg": -1.0}, "reg"),
        ({"p": 0.5}, "p"),
        ({"reach": -2.0}, "reach"),
        ({"kernel": "dense"}, "kernel"),
        ({"max_iter": 0}, "max_iter"),
    ],
)
def test_bad_input_names_the_argument(kwargs, name):
    args = {"x": np.ones((4, 2)), "y": np.zeros((3, 2)), "reg": 0.1, **kwargs}
    x, y = args.pop("x"), args.pop("y")
    with pytest.raises(otinverse.InvalidArgumentError, match=name):
        sinkhorn_loss(x, y, **args)
