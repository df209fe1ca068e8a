"""Ctrl-C stops every long call within a second, and leaves the interpreter and the estimators
usable. Each case runs in a child interpreter that the test interrupts with a real SIGINT."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.skipif(os.name != "posix", reason="sends POSIX signals")

# Each snippet defines `fitted` (an estimator fitted on a small problem, or None) and `long_call`
# (a call that runs for minutes unless interrupted, on other data than `fitted` saw).
CASES = {
    "sinkhorn_points": """
        rng = np.random.default_rng(0)
        x, y = rng.random((3000, 2)), rng.random((3000, 2))
        fitted = None
        def long_call():
            otinverse.sinkhorn_points(x, y, 1e-3, tol=0.0, max_iter=10**7)
    """,
    "sinkhorn_points_large_pass": """
        # A single softmin over 10⁵ × 10⁵ online entries takes many seconds: the rows check the
        # flag, not only the iterations.
        rng = np.random.default_rng(0)
        x, y = rng.random((100_000, 2)), rng.random((100_000, 2))
        fitted = None
        def long_call():
            otinverse.sinkhorn_points(x, y, 1e-3, kernel="log", max_iter=3)
    """,
    "OTUnfolder.fit": """
        from otinverse.datasets import make_unfolding_1d
        small = make_unfolding_1d(L=60, M=1, random_state=0)
        big = make_unfolding_1d(L=3000, M=1, random_state=1)
        fitted = otinverse.OTUnfolder(max_iter=3)
        fitted.fit(small.measured, gen=small.gen, reco=small.reco).set_params(max_iter=10**6)
        def long_call():
            fitted.fit(big.measured, gen=big.gen, reco=big.reco)
    """,
    "EntropicSparsifier.transform": """
        rng = np.random.default_rng(0)
        X = rng.random((200, 24, 24))
        fitted = otinverse.EntropicSparsifier(reg=0.5, sparsity=0.05, max_iter=10**6, tol=0.0)
        fitted.fit(X)
        def long_call():
            fitted.transform(X)
    """,
    "WPPRestorer.predict": """
        rng = np.random.default_rng(0)
        reference = rng.random((96, 96))
        fitted = otinverse.WPPRestorer(scale_factor=2, max_iter=10**6, n_scales=1, random_state=0)
        fitted.fit(reference)
        low = fitted.degrade(rng.random((64, 64)))
        def long_call():
            fitted.predict(low)
    """,
}

# The child installs Python's SIGINT handler itself: a process started from a background job
# inherits SIGINT ignored, and would otherwise never see the signal.
CHILD = """
import pickle, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
import numpy as np
import otinverse
# Resolve the lazily imported subpackages before "ready": under load their import outlasts the
# test's one-second wait, and a SIGINT inside an import leaves a half-initialised module behind
# (asyncio, whose later import then fails) instead of interrupting the kernel call.
from otinverse import sinkhorn, sinkhorn_points
{setup}
before = pickle.dumps(fitted)
print("ready", flush=True)
try:
    long_call()
    print("finished", flush=True)
except KeyboardInterrupt:
    print("interrupted", time.monotonic(), flush=True)
assert pickle.dumps(fitted) == before, "the estimator changed state"
print("unchanged", flush=True)
# The interpreter is usable: another kernel call runs and answers.
res = otinverse.sinkhorn(None, None, np.random.default_rng(1).random((20, 30)), 0.1)
print("usable", res.converged, flush=True)
"""


@pytest.mark.parametrize("case", sorted(CASES))
def test_sigint_stops_a_long_call_within_a_second(case):
    script = CHILD.format(setup=textwrap.dedent(CASES[case]))
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        time.sleep(1.0)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()
    lines = out.split("\n")
    assert lines[0].startswith("interrupted"), (out, err)
    latency = float(lines[0].split()[1]) - sent
    assert latency < 1.0, f"KeyboardInterrupt came {latency:.2f} s after the signal"
    assert lines[1] == "unchanged", (out, err)
    assert lines[2] == "usable True", (out, err)
