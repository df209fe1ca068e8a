import os
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import numpy as np
import otinverse
import pytest


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


def test_installed_package_is_the_one_tested():
    """With OTINVERSE_TEST_INSTALLED=1 (CI's run against the wheel) the tests must import the
    installed package from site-packages, never the source tree's ``python/``."""
    if os.environ.get("OTINVERSE_TEST_INSTALLED") != "1":
        pytest.skip("runs in CI's test of the installed wheel (OTINVERSE_TEST_INSTALLED=1)")
    package = Path(otinverse.__file__).resolve()
    assert package.is_relative_to(Path(sysconfig.get_paths()["purelib"]).resolve()), package
    assert not package.is_relative_to(Path(__file__).resolve().parents[2] / "python"), package


def test_baseline_simd_path_matches_the_dispatched_one():
    """OTINVERSE_SIMD=baseline forces the portable x86-64 kernels (what a CPU without AVX2
    runs): the same Sinkhorn solve there agrees with this CPU's dispatched kernels and POT."""
    import ot

    script = (
        "import numpy as np, otinverse\n"
        "rng = np.random.default_rng(0)\n"
        "x, y = rng.random((60, 2)), rng.random((50, 2))\n"
        "res = otinverse.sinkhorn_points(x, y, 0.05, tol=1e-12)\n"
        "print(otinverse._core.simd_level())\n"
        "print(repr(res.transport_cost))\n"
    )
    env = {**os.environ, "OTINVERSE_SIMD": "baseline"}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == "baseline"
    rng = np.random.default_rng(0)
    x, y = rng.random((60, 2)), rng.random((50, 2))
    dispatched = otinverse.sinkhorn_points(x, y, 0.05, tol=1e-12).transport_cost
    M = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    reference = ot.sinkhorn2(
        np.full(60, 1 / 60),
        np.full(50, 1 / 50),
        M,
        0.05,
        method="sinkhorn_log",
        stopThr=1e-12,
        numItermax=100_000,
    )
    np.testing.assert_allclose(float(out[1]), dispatched, rtol=1e-10)
    np.testing.assert_allclose(float(out[1]), reference, rtol=1e-8)
