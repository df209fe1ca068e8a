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


@pytest.mark.parametrize("reach", [None, 0.8])
def test_divergence_self_terms_equal_the_plain_alternating_solves(reach):
    """The divergence's self-terms take symmetric updates and one gradient pass on the averaged
    potentials; the same divergence built from three plain (alternating, two-pass) losses must
    agree in value and in every gradient to the solver's tolerance."""
    x, y, a, b = clouds(6, n=150, m=120, mass_b=1.0 if reach is None else 0.7)
    tight = {"reg": 0.1, "reach": reach, "tol": 1e-11, "max_iter": 100_000}

    def fast(x, y, a, b):
        return sinkhorn_divergence(x, y, a=a, b=b, **tight)

    def plain(x, y, a, b):
        mass_gap = jnp.sum(a) - jnp.sum(b)
        return (
            sinkhorn_loss(x, y, a=a, b=b, **tight)
            - 0.5 * sinkhorn_loss(x, x, a=a, b=a, **tight)
            - 0.5 * sinkhorn_loss(y, y, a=b, b=b, **tight)
            + 0.5 * tight["reg"] * mass_gap**2
        )

    args = (x, y, a, b)
    fast_value, fast_grads = jax.value_and_grad(fast, argnums=(0, 1, 2, 3))(*args)
    plain_value, plain_grads = jax.value_and_grad(plain, argnums=(0, 1, 2, 3))(*args)
    np.testing.assert_allclose(fast_value, plain_value, rtol=1e-9)
    for k, (got, expected) in enumerate(zip(fast_grads, plain_grads, strict=True)):
        if reach is None and k >= 2:
            # Balanced weight gradients are defined up to a constant (the potentials' gauge).
            got, expected = got - got.mean(), expected - expected.mean()
        scale = np.abs(expected).max()
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-8 * scale, err_msg=f"arg {k}")


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
    # The float64 reference with the float32 masses equalised as the float32 call does: two
    # float32 masses a rounding apart admit no balanced plan to TIGHT's tolerance.
    x64, y64, a64, b64 = (v.astype(np.float64) for v in (x, y, a, b))
    b64 *= a64.sum() / b64.sum()
    reference = sinkhorn_loss(x64, y64, a=a64, b=b64, reg=REG, **TIGHT)
    np.testing.assert_allclose(value, reference, rtol=1e-6)


def test_float32_default_weights_of_unequal_sizes_are_balanced():
    # 1/n and 1/m rounded to float32 sum to masses 1e-7 apart; the float64 host solve must
    # take them as equal (JAX's default precision, the README's example).
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 2)).astype(np.float32)
    y = rng.normal(1.0, 0.5, size=(400, 2)).astype(np.float32)
    value, grad = jax.value_and_grad(lambda x: sinkhorn_divergence(x, y, reg=1e-2))(x)
    reference = sinkhorn_divergence(x.astype(np.float64), y.astype(np.float64), reg=1e-2)
    np.testing.assert_allclose(value, reference, rtol=1e-5)
    assert np.isfinite(grad).all()


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


def ott_tau(reach):
    """OTT's ``tau`` for a reach ρ (ε = REG): ``τ = ρ / (ρ + ε)``, 1 on an exact side."""
    return 1.0 if reach is None else reach / (reach + REG)


def ott_entropic_ot(x, y, a, b, reach_a, reach_b, cost_fn):
    """Our ``OT_ε`` solved by OTT-JAX, differentiated by OTT's implicit differentiation.

    OTT's Sinkhorn regularises with the entropy relative to the counting measure, so its plan for
    marginals (a, b) and ``tau`` is ours for (a^τ_a, b^τ_b) (see the conventions page): OTT is
    given ``a^(1/τ_a)``, ``b^(1/τ_b)``. Its potentials, shifted to ours (``f − ε log a``), enter
    the dual objective of Séjourné et al. 2019 (eq. 7), which equals ``OT_ε`` at the optimum.
    """
    from ott.geometry import pointcloud
    from ott.solvers import linear

    tau_a, tau_b = ott_tau(reach_a), ott_tau(reach_b)
    geom = pointcloud.PointCloud(x, y, epsilon=REG, cost_fn=cost_fn)
    out = linear.solve(
        geom,
        a=a ** (1 / tau_a),
        b=b ** (1 / tau_b),
        tau_a=tau_a,
        tau_b=tau_b,
        threshold=1e-13,
        max_iterations=100_000,
    )

    def dual_term(potential, reach):
        return potential if reach is None else -reach * jnp.expm1(-potential / reach)

    f, g = out.f - REG * jnp.log(a), out.g - REG * jnp.log(b)
    plan_mass = jnp.sum(geom.marginal_from_potentials(out.f, out.g))
    return (
        jnp.sum(a * dual_term(f, reach_a))
        + jnp.sum(b * dual_term(g, reach_b))
        - REG * (plan_mass - jnp.sum(a) * jnp.sum(b))
    )


def ott_divergence_ours_convention(x, y, a, b, reach_a, reach_b, cost_fn):
    """Debiased with symmetric self-terms: ``OT_ε(a, a)`` with ρ_a on both sides, and so on."""
    return (
        ott_entropic_ot(x, y, a, b, reach_a, reach_b, cost_fn)
        - 0.5 * ott_entropic_ot(x, x, a, a, reach_a, reach_a, cost_fn)
        - 0.5 * ott_entropic_ot(y, y, b, b, reach_b, reach_b, cost_fn)
        + 0.5 * REG * (jnp.sum(a) - jnp.sum(b)) ** 2
    )


@pytest.mark.parametrize(
    ("loss", "reach", "p"),
    [
        (sinkhorn_loss, (0.8, 0.8), 1),
        (sinkhorn_loss, (None, 0.8), 2),
        # p = 1 divergences are left out: OTT's implicit gradient of an unbalanced p = 1
        # self-term (x against x) disagrees with finite differences, which ours match.
        (sinkhorn_divergence, (0.8, 0.8), 2),
        (sinkhorn_divergence, (0.3, None), 2),
    ],
)
def test_ott_unbalanced_values_and_implicit_gradients(loss, reach, p):
    pytest.importorskip("ott")
    from ott.geometry import costs

    cost_fn = costs.SqEuclidean() if p == 2 else costs.Euclidean()
    theirs_fn = ott_entropic_ot if loss is sinkhorn_loss else ott_divergence_ours_convention
    x, y, a, b = clouds(8, n=8, m=10, mass_b=0.7)

    def ours(x, y, a, b):
        return loss(x, y, a=a, b=b, reg=REG, p=p, reach=reach, **TIGHT)

    def theirs(x, y, a, b):
        return theirs_fn(x, y, a, b, *reach, cost_fn)

    np.testing.assert_allclose(ours(x, y, a, b), theirs(x, y, a, b), rtol=1e-6)
    g_ours = jax.grad(ours, argnums=(0, 1, 2, 3))(x, y, a, b)
    g_theirs = jax.grad(theirs, argnums=(0, 1, 2, 3))(x, y, a, b)
    for k, (u, v) in enumerate(zip(g_ours, g_theirs, strict=True)):
        scale = float(jnp.abs(v).max())
        assert float(jnp.abs(u - v).max()) <= 1e-5 * scale, f"argument {k}"


def test_ott_unbalanced_convention_is_the_counting_measure_entropy():
    """Why OTT's unbalanced ``reg_ot_cost`` is not ours, pinned so a change in OTT shows.

    OTT's plan for (a, b, τ) is ours for (a^τ, b^τ, ρ = ε τ / (1 − τ)), and its ``reg_ot_cost``
    is the KL(P | a⊗b) dual evaluated at those potentials: below the optimum of that objective
    (ours), as any dual value at non-optimal potentials is.
    """
    pytest.importorskip("ott")
    from ott.geometry import pointcloud
    from ott.solvers import linear

    x, y, a, b = clouds(9, n=5, m=6, mass_b=0.7)
    reach = 0.8
    tau = ott_tau(reach)
    geom = pointcloud.PointCloud(x, y, epsilon=REG)
    out = linear.solve(geom, a=a, b=b, tau_a=tau, tau_b=tau, threshold=1e-13)
    mapped = otinverse.sinkhorn_points(
        x, y, REG, a=a**tau, b=b**tau, reach_a=reach, reach_b=reach, **TIGHT
    )
    np.testing.assert_allclose(np.asarray(out.matrix), mapped.plan, atol=1e-10)
    f, g = np.asarray(out.f) - REG * np.log(a), np.asarray(out.g) - REG * np.log(b)
    dual_at_ott_potentials = (
        (a * -reach * np.expm1(-f / reach)).sum()
        + (b * -reach * np.expm1(-g / reach)).sum()
        - REG * (np.asarray(out.matrix).sum() - a.sum() * b.sum())
    )
    np.testing.assert_allclose(float(out.reg_ot_cost), dual_at_ott_potentials, rtol=1e-10)
    ours = float(sinkhorn_loss(x, y, a=a, b=b, reg=REG, reach=reach, **TIGHT))
    assert float(out.reg_ot_cost) < ours * (1 - 1e-3)


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
