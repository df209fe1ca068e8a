"""Over-relaxation never makes convergence much slower, and `converged` is exactly
`marginal_error <= tol` of the returned plan."""

import numpy as np
import ot
import otinverse
import pytest
from sklearn.exceptions import ConvergenceWarning

# A 19-point against 3-point problem in 3-D with unequal weights (rounded from a hypothesis
# example) that stalls an adaptive over-relaxation without a safeguard: the safeguarded one must
# converge to tol = 1e-12 in about as many updates as plain Sinkhorn, with bounded potentials.
X = np.array(
    [
        [1.17708268, -0.90750088, 2.14063806],
        [0.33620406, -0.49774502, -1.47380571],
        [0.40203452, 0.48719365, -1.00167465],
        [-0.69022566, 0.81770988, 0.09962876],
        [0.72100053, 0.76742807, 1.2304588],
        [0.80080422, -0.34726163, -1.40261063],
        [-0.06676309, -0.05401394, 0.59082435],
        [1.28016981, -1.32074733, -1.40269284],
        [-0.10833629, 0.24314645, 0.16912061],
        [-1.24925138, -1.72437264, -1.036758],
        [1.80540113, 0.08960097, 0.49941762],
        [-1.28336815, -0.03104683, -1.43274644],
        [0.691687, -0.46896304, 0.03320417],
        [-0.27010187, -0.76665567, 0.3999221],
        [0.07396204, -0.06228433, -0.63198609],
        [-1.09095635, -0.1439314, -1.04653141],
        [0.01910649, 0.05471733, -1.52130055],
        [-0.43792025, 0.63075717, 0.54594787],
        [2.41335303, 2.82281204, 0.40385941],
    ]
)
A = np.array(
    [0.23006714, 0.88804142, 0.823594, 0.82927344, 0.8819361, 0.85697621, 0.47500071,
     0.98946139, 0.19229042, 0.11241644, 0.56835449, 0.10289261, 0.23411359, 0.17137092,
     0.53790969, 0.57443023, 0.6740341, 0.0255628, 0.79543873]
)  # fmt: skip
Y = np.array(
    [[-0.32753647, 1.69002767, 0.01705988], [-1.674776, 0.31642854, -1.16706327],
     [0.1352632, 0.1607823, 1.78283682]]
)  # fmt: skip
B = np.array([0.5450584, 2.84086673, 6.57723931])
B *= A.sum() / B.sum()


@pytest.mark.parametrize("swap", [False, True], ids=["3x19", "19x3"])
def test_over_relaxation_is_not_slower_on_the_stalling_example(swap):
    points, weights = ((Y, X), {"a": B, "b": A}) if not swap else ((X, Y), {"a": A, "b": B})
    kw = dict(tol=1e-12, max_iter=100_000)
    relaxed = otinverse.sinkhorn_points(*points, 0.05, **weights, overrelaxation=True, **kw)
    plain = otinverse.sinkhorn_points(*points, 0.05, **weights, overrelaxation=False, **kw)
    assert relaxed.converged and relaxed.marginal_error <= 1e-12
    assert plain.converged
    assert relaxed.n_iter <= 1.2 * plain.n_iter
    np.testing.assert_allclose(relaxed.plan, plain.plan, atol=1e-12)
    # No drift along the balanced gauge (f + c, g − c), which costs precision.
    assert max(np.abs(relaxed.f).max(), np.abs(relaxed.g).max()) < 100


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("max_iter", [1, 3, 10, 30, 100, 1000])
@pytest.mark.parametrize("reach_b", [None, 0.3])
def test_converged_is_the_reported_error_within_tol(max_iter, reach_b):
    rng = np.random.default_rng(max_iter)
    x, y = rng.normal(size=(40, 2)), rng.normal(size=(30, 2))
    res = otinverse.sinkhorn_points(x, y, 0.05, reach_b=reach_b, tol=1e-9, max_iter=max_iter)
    assert res.converged == (res.marginal_error <= 1e-9)


# A problem (from the fuzz profile) whose plain updates sit on an error plateau (a steady rate of
# 0.999 for 60 updates) and then converge at a rate of 0.35: a relaxation factor estimated on
# the plateau must be revised once the rate changes, so the relaxed run stays within 1.25× the
# plain run's updates.
PLATEAU_X = np.array([0.4817275679692379, -0.5061516153936956])
PLATEAU_A = np.array([0.02132701336780752, 0.0014194690735804358])
PLATEAU_Y = np.array(
    [1.843679006277172, -0.20814246759908325, -2.6624448620497754, 0.7753683144552476,
     4.386134763707309, 3.0186213700389115, -3.3063788229302977, -5.458444903069623,
     -2.998098345197607, -0.4517228456863735, -9.518272432030763, -1.4483475123206955,
     -5.383691537531353, -3.4156978722843165, -2.6953554204880787, -1.821945271947181,
     0.9670761678935277, 3.3842647340529997, -1.1025333938034299, 4.625459515964252,
     -3.1587130414395292, 0.7367283187056682, 2.8515293573496416, -0.24985847438459605,
     -3.458732182146732, -4.141594567305191, -2.3638089792322394, 0.2336032201845636,
     -4.478350423812316, -1.4115040616660626]
)  # fmt: skip
PLATEAU_B = np.array(
    [1.3231218170001062e-06, 1.4967895079620361e-05, 0.0039543543449955055,
     0.007318290974154558, 2.5522296958714666e-06, 4.890210587915433e-05,
     1.5536919790565438e-06, 6.698055756960985e-05, 1.9391702076864245e-06,
     4.072513948053569e-06, 0.003997557223931673, 4.1984998155310074e-07,
     9.983238472536278e-05, 5.81086303121282e-08, 0.0018030736354065421,
     0.0009610332686889328, 4.970101238624269e-07, 0.0033041059277463597,
     4.0884320681210975e-08, 1.8916942358464061e-06, 1.4515278690251278e-07,
     9.166103928836797e-06, 0.0010916770967666918, 4.405567211098715e-07,
     3.734877686079256e-08, 4.869222455211313e-06, 2.8263558750706307e-07,
     6.377740594456809e-08, 5.522591157082037e-05, 1.1280422708271955e-06]
)  # fmt: skip


def test_a_plateau_of_the_plain_iteration_does_not_hold_back_the_relaxed_one():
    b = PLATEAU_B * PLATEAU_A.sum() / PLATEAU_B.sum()
    args = (PLATEAU_X, PLATEAU_Y, 0.1)
    kw = {"a": PLATEAU_A, "b": b}
    plain = otinverse.sinkhorn_points(*args, **kw, tol=1e-9, max_iter=3000, overrelaxation=False)
    relaxed = otinverse.sinkhorn_points(*args, **kw, tol=1e-9, max_iter=3000, overrelaxation=True)
    assert plain.converged and relaxed.converged
    assert relaxed.n_iter <= 1.25 * plain.n_iter


@pytest.mark.parametrize("kernel", ["log", "stored"])
@pytest.mark.parametrize("overrelaxation", [False, True])
def test_a_relaxed_target_far_above_its_weights_converges(kernel, overrelaxation):
    # The column target b·e^{−g/ρ} is 3·10⁵ times b: measured against b's mass, one rounding
    # unit of g would be an error of 6e-10, so the marginal error is relative to the larger of
    # the two masses, where the floor is 1e-15 and tol = 1e-9 is reached.
    x = np.array(
        [0.005073717944066123, 0.0006711657209975528, 0.026740777548505228,
         -0.014669257960124395, 0.005035423258471072, 0.005616372992262668,
         -0.015799538884890454, 0.0052012443499616316, 0.0007081683679374507,
         0.005073717944066123, 0.0006711657209975528, -0.015799538884890454,
         0.026740777548505228, -0.015799538884890454, 0.005073717944066123,
         0.005035423258471072]
    )  # fmt: skip
    a = np.array(
        [0.0022216153742034756, 0.5181433091251049, 1.3597737762341782e-05,
         0.002768219821184205, 1.1767196891077141e-05, 0.0002538286709069779,
         0.08788536679789294, 0.05062742789969369, 0.32872039920409357, 0.20124921343535762,
         0.009660361616169037, 3.894052228951227e-06, 0.0035846109676661206,
         0.006435800929367985, 0.33643302944564957, 0.7082309390951772]
    )  # fmt: skip
    res = otinverse.sinkhorn_points(
        x, [0.019986627428822432], 0.005623413251903491, a=a, b=[5.696303325386058e-06],
        reach_a=1.0, reach_b=0.012806496994327185, tol=1e-9, max_iter=1000,
        kernel=kernel, overrelaxation=overrelaxation,
    )  # fmt: skip
    assert res.converged and res.n_iter < 150
    target = 5.696303325386058e-06 * np.exp(-res.g / 0.012806496994327185)
    assert target.sum() > 1e5 * 5.696303325386058e-06


def test_a_target_below_f64_range_is_not_a_breakdown():
    # Both reaches 0.1 on a cost of 10³ at ε = 0.1: the solution destroys all mass (targets
    # e^{−2500}·w, far below f64's range), so the plan is zero to f64 and matches it.
    M = np.array([[(42.01500846 - 10.39223186) ** 2]])
    res = otinverse.sinkhorn([1.25650961e-06], [0.07579166], M, 0.1, reach_a=0.1, reach_b=0.1)
    assert res.converged and np.isfinite([res.transport_cost, res.objective]).all()


def test_a_stored_f32_kernel_past_f32_range_follows_the_exact_one():
    # ε-scaling from the diameter with symmetric updates passes through states whose Gibbs
    # kernel exceeds f32's range; a softmin over out-of-range entries is computed on the exact
    # kernel (clamping them would give a finite but wrong value and an overflowing plan).
    kw = dict(reach_b=100.0, tol=1e-6, max_iter=3000, update="symmetric", eps_scaling=0.5)
    args = ([0.42851408], [1.42851408], 0.01)
    weights = {"a": [0.4919225], "b": [7.42999826e-05]}
    with pytest.warns(ConvergenceWarning):
        stored = otinverse.sinkhorn_points(*args, **weights, kernel="stored_f32", **kw)
        exact = otinverse.sinkhorn_points(*args, **weights, kernel="log", **kw)
    np.testing.assert_allclose(stored.f, exact.f, rtol=1e-6)
    np.testing.assert_allclose(stored.plan, exact.plan, rtol=1e-4)


@pytest.mark.parametrize("kernel", ["auto", "log"])
def test_tiny_reg_converges_in_few_updates_to_the_entropic_plan(kernel):
    # ε = 1e-5 with the cost's maximum 1: plain Sinkhorn does not converge in 10⁶ updates and
    # over-relaxed updates needed ~66 000; the stalled target stage switches to Newton steps.
    rng = np.random.default_rng(3)
    n = 200
    x, y = rng.random((n, 2)) / np.sqrt(2), rng.random((n, 2)) / np.sqrt(2)
    a = np.full(n, 1.0 / n)
    r = otinverse.sinkhorn_points(
        x, y, 1e-5, a=a, b=a, tol=1e-6, max_iter=100_000, eps_scaling=0.5, kernel=kernel
    )
    assert r.converged and r.n_iter < 10_000, r
    # Independent of the solver: the Gibbs plan of the returned potentials, from NumPy, has
    # the marginals within tol, so it is the entropic plan (Sinkhorn's theorem: the only
    # plan of the form diag(u) K diag(v) with these marginals).
    M = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    P = a[:, None] * a[None, :] * np.exp((r.f[:, None] + r.g[None, :] - M) / 1e-5)
    error = np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - a).sum()
    assert error <= 1e-6 and abs(error - r.marginal_error) < 1e-9
    assert np.isclose((P * M).sum(), r.transport_cost, rtol=1e-9)
    # At this ε the entropic cost is the exact OT cost within a fraction of a percent.
    exact = ot.emd2(a, a, M)
    assert exact <= r.transport_cost + 1e-9 and r.transport_cost < exact * 1.01
