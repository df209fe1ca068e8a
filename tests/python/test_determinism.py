"""Determinism: repeated calls and concurrent Python threads give the same bits; 1 and 2 rayon
threads give the same results to 1e-13 (relative to the largest entry).

Why not bit for bit across pool sizes: reductions over rows (each output entry summed by one
task in a fixed order) are exact, but the column reductions of dense costs and the plan's sums
add per-task partial sums whose split follows rayon's work stealing, so their rounding depends on
the pool. Measured: point-cost potentials, the sparsifier and the WPP restorer are bitwise equal;
dense potentials, plans and transport costs differ by at most ~5e-15 relative.
"""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import otinverse
import pytest


def workloads():
    """Small problems, one per kernel family; each returns a dict of arrays."""
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(300, 2)), rng.normal(size=(250, 2)) + 0.5
    a, b = rng.random(300), rng.random(250)
    b *= a.sum() / b.sum()
    M = ((x[:, None] - y[None]) ** 2).sum(-1)

    def dense():
        r = otinverse.sinkhorn(a, b, M, 0.05, reach_b=0.5, tol=1e-12)
        return {"f": r.f, "g": r.g, "plan": r.plan}

    def points():
        r = otinverse.sinkhorn_points(x, y, 0.02, a=a, b=b, eps_scaling=0.5, tol=1e-12)
        return {"f": r.f, "g": r.g, "cost": np.array([r.transport_cost])}

    def unfold():
        from otinverse.datasets import make_unfolding_1d

        data = make_unfolding_1d(L=80, M=2, random_state=0)
        est = otinverse.OTUnfolder(max_iter=5).fit(data.measured, gen=data.gen, reco=data.reco)
        return {"weights": est.weights_}

    def sparsify():
        X = np.random.default_rng(1).random((2, 8, 8))
        return {"sparse": otinverse.EntropicSparsifier(reg=0.5, max_iter=5).fit_transform(X)}

    def restore():
        img = np.random.default_rng(2).random((32, 32))
        est = otinverse.WPPRestorer(scale_factor=2, max_iter=2, n_scales=1, random_state=0)
        est.fit(img)
        return {"image": est.predict(est.degrade(img[:20, :20]))}

    return {f.__name__: f for f in (dense, points, unfold, sparsify, restore)}


def as_lists(result):
    return {k: np.asarray(v, dtype=float).ravel().tolist() for k, v in result.items()}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("name", sorted(workloads()))
def test_repeated_calls_give_identical_bits(name):
    run = workloads()[name]
    first, second = run(), run()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=f"{name}.{key}")


CHILD = """
import json, sys, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, {here!r})
from test_determinism import workloads, as_lists
print(json.dumps({{name: as_lists(run()) for name, run in workloads().items()}}))
"""


def run_with_threads(n_threads):
    env = {**os.environ, "RAYON_NUM_THREADS": str(n_threads)}
    script = CHILD.format(here=os.path.dirname(__file__))
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


@pytest.mark.slow(17)
def test_results_do_not_depend_on_the_number_of_rayon_threads():
    one, two = run_with_threads(1), run_with_threads(2)
    for name in one:
        for key in one[name]:
            u, v = np.array(one[name][key]), np.array(two[name][key])
            np.testing.assert_allclose(
                v, u, rtol=0, atol=1e-13 * np.abs(u).max(), err_msg=f"{name}.{key}"
            )


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_concurrent_python_threads_match_sequential_calls():
    runs = workloads()
    sequential = {name: run() for name, run in runs.items()}
    jobs = [name for name in runs for _ in range(2)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(lambda name: (name, runs[name]()), jobs))
    for name, result in concurrent:
        for key, value in result.items():
            np.testing.assert_array_equal(value, sequential[name][key], err_msg=f"{name}.{key}")
