"""Over-relaxation never makes convergence much slower, and `converged` is exactly
`marginal_error <= tol` of the returned plan."""

import numpy as np
import otinverse
import pytest

# A 19-point against 3-point problem in 3-D with unequal weights (rounded from a hypothesis
# counterexample) on which the unguarded adaptive over-relaxation took 45k updates while its
# potentials drifted to 1e7, and reported converged at a marginal error of 1e-7 > tol = 1e-12.
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
    args = (B, Y, A, X) if not swap else (A, X, B, Y)
    kw = dict(tol=1e-12, max_iter=100_000)
    relaxed = otinverse.sinkhorn_points(*args, 0.05, overrelaxation=True, **kw)
    plain = otinverse.sinkhorn_points(*args, 0.05, overrelaxation=False, **kw)
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
    res = otinverse.sinkhorn_points(
        None, x, None, y, 0.05, reach_b=reach_b, tol=1e-9, max_iter=max_iter
    )
    assert res.converged == (res.marginal_error <= 1e-9)
