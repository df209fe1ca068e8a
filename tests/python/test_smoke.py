from importlib import metadata

import numpy as np
import otinverse


def test_package_exposes_version_and_kernels():
    # The extension's version (Cargo.toml) is the one the installed distribution declares.
    assert otinverse.__version__ == metadata.version("otinverse")
    assert otinverse._core.simd_level() in {"baseline", "avx2", "avx512"}


def test_two_points_transport_exactly():
    # Two Diracs onto two Diracs, cost 0 on the diagonal: the plan is the identity / 2.
    M = np.array([[0.0, 1.0], [1.0, 0.0]])
    res = otinverse.sinkhorn(None, None, M, 0.01, tol=1e-14)
    assert res.converged
    np.testing.assert_allclose(res.plan, np.eye(2) / 2, atol=1e-40)
    assert res.transport_cost < 1e-40
