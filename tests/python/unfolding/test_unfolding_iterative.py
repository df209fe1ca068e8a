"""``otinverse.unfolding.iterative_unfold`` as a drop-in for ``pyunfold.iterative_unfold``.

1. pyunfold's own test modules (``test_unfold``, ``test_callbacks``, ``test_init`` of the
   installed pyunfold, not copied here) run in a subprocess with pyunfold's function replaced
   by otinverse's (``pyunfold_dropin_plugin``). Its three example tests compare with HDF files
   that pyunfold's wheel does not install: they run against the files of pyunfold 0.5.0's sdist,
   downloaded with pip into a temporary directory, and are skipped, saying so, when that fails
   (offline) or PyTables is missing.
2. Side by side with pyunfold on random problems with fixed seeds: central values, stat and sys
   errors, iterations, test statistics and unfolding matrices to 1e-12.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import otinverse
import pytest
from otinverse.unfolding import Logger, SplineRegularizer, iterative_unfold

pyunfold = pytest.importorskip("pyunfold")
from pyunfold.callbacks import Logger as PyunfoldLogger  # noqa: E402
from pyunfold.callbacks import SplineRegularizer as PyunfoldSpline  # noqa: E402
from pyunfold.priors import jeffreys_prior  # noqa: E402

HERE = Path(__file__).resolve().parent
PYUNFOLD_MODULES = [
    "pyunfold.tests.test_unfold",
    "pyunfold.tests.test_callbacks",
    "pyunfold.tests.test_init",
]
# The example tests read pyunfold's reference HDF files (absent from its wheel).
EXAMPLE_TESTS = "test_example"


def download_reference_data(where: Path) -> Path | str:
    """pyunfold 0.5.0's ``tests/test_data`` from its sdist (pip download), or why it is not
    available."""
    if importlib.util.find_spec("tables") is None:
        return "pyunfold's example tests read HDF5 with PyTables, which is not installed"
    cmd = [sys.executable, "-m", "pip", "download", "pyunfold==0.5.0", "--no-binary", ":all:"]
    cmd += ["--no-deps", "-q", "-d", str(where)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return "pip could not download pyunfold 0.5.0's sdist in 120 s (offline?)"
    archives = list(where.glob("*.tar.gz"))
    if proc.returncode != 0 or not archives:
        return f"pip could not download pyunfold 0.5.0's sdist (offline?): {proc.stderr}"
    with tarfile.open(archives[0]) as tar:
        members = [m for m in tar.getmembers() if "/tests/test_data/" in m.name]
        tar.extractall(where, members=members, filter="data")
    (data_dir,) = where.glob("*/pyunfold/tests/test_data")
    return data_dir


@dataclass
class PyunfoldRun:
    """Outcome (``"passed"``, ``"failure"``, ``"error"``, ``"skipped"``) of each of pyunfold's
    tests, by name; ``no_examples`` says why the example tests did not run (or is None)."""

    outcomes: dict[str, str]
    no_examples: str | None
    log: str

    def group(self, examples: bool) -> dict[str, str]:
        return {k: v for k, v in self.outcomes.items() if (EXAMPLE_TESTS in k) == examples}


@pytest.fixture(scope="session")
def pyunfold_run(tmp_path_factory) -> PyunfoldRun:
    """pyunfold's test modules run once against otinverse in a subprocess (each such pytest
    session spends seconds importing pytest, pandas and otinverse), with the example tests
    when their reference data could be downloaded."""
    where = tmp_path_factory.mktemp("pyunfold")
    data_dir = download_reference_data(where)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    report = where / "report.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    cmd += ["-p", "pyunfold_dropin_plugin", f"--junitxml={report}"]
    if isinstance(data_dir, Path):
        env["PYUNFOLD_TEST_DATA_DIR"] = str(data_dir)
    else:
        cmd += ["-k", f"not {EXAMPLE_TESTS}"]
    cmd += ["--pyargs", *PYUNFOLD_MODULES]
    proc = subprocess.run(cmd, cwd=where, env=env, capture_output=True, text=True)
    log = proc.stdout[-4000:] + proc.stderr[-2000:]
    assert report.exists(), log
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        verdicts = [c.tag for c in case if c.tag in ("failure", "error", "skipped")]
        outcomes[case.get("name")] = verdicts[0] if verdicts else "passed"
    return PyunfoldRun(outcomes, None if isinstance(data_dir, Path) else data_dir, log)


# Both tests read the one session-scoped run: the same duration mark keeps them adjacent at the
# head of one worker's queue (work stealing takes from the tail), so no other worker runs it again.
@pytest.mark.slow(30)
def test_pyunfold_own_tests_pass_against_otinverse(pyunfold_run):
    own = pyunfold_run.group(examples=False)
    # 46 tests of pyunfold 0.5.0 besides the three example tests, none skipped.
    assert len(own) == 46, (own, pyunfold_run.log)
    assert set(own.values()) == {"passed"}, (own, pyunfold_run.log)


@pytest.mark.slow(30)
def test_pyunfold_example_tests_pass_against_otinverse(pyunfold_run):
    if pyunfold_run.no_examples:
        pytest.skip(pyunfold_run.no_examples)
    examples = pyunfold_run.group(examples=True)
    assert len(examples) == 3, (examples, pyunfold_run.log)
    assert set(examples.values()) == {"passed"}, (examples, pyunfold_run.log)


def test_exported_from_the_package():
    assert otinverse.iterative_unfold is iterative_unfold
    assert otinverse.unfolding.iterative_unfold is iterative_unfold


# --- side by side with pyunfold ---------------------------------------------------------


def random_problem(seed: int, n_effects: int, n_causes: int) -> dict:
    """A smeared, inefficient response from MC counts, with pyunfold's usual error inputs."""
    rng = np.random.default_rng(seed)
    centres = np.linspace(0, 1, n_causes)
    effects = np.linspace(0, 1, n_effects)
    mc = np.exp(-0.5 * ((effects[:, None] - centres[None, :]) / 0.12) ** 2)
    mc = rng.poisson(200 * mc / mc.sum(axis=0) * rng.uniform(0.5, 1.0, n_causes)).astype(float)
    thrown = mc.sum(axis=0) / rng.uniform(0.6, 0.95, n_causes)
    response = mc / thrown
    truth = 1000 * np.exp(-((centres - 0.4) ** 2) / 0.05) + 50
    data = rng.poisson(response @ truth).astype(float)
    efficiencies = response.sum(axis=0)
    return {
        "data": data,
        "data_err": np.sqrt(data),
        "response": response,
        "response_err": np.sqrt(mc) / thrown,
        "efficiencies": efficiencies,
        "efficiencies_err": np.sqrt(efficiencies * (1 - efficiencies) / thrown),
    }


KEYS = ["unfolded", "stat_err", "sys_err", "unfolding_matrix", "ts_iter", "ts_stopping"]


def assert_same_result(ours: dict, ref: dict) -> None:
    assert list(ours) == list(ref)
    assert ours["num_iterations"] == ref["num_iterations"]
    for key in KEYS:
        np.testing.assert_allclose(ours[key], ref[key], rtol=1e-12, atol=0, err_msg=key)


CASES = [
    # seed, effects, causes, ts, cov_type, prior
    (0, 12, 12, "ks", "multinomial", None),
    (1, 20, 20, "chi2", "poisson", None),
    (2, 25, 15, "bf", "multinomial", "jeffreys"),
    (3, 15, 25, "rmd", "Poisson", "jeffreys"),
    (4, 40, 40, "ks", "multinomial", None),
]


@pytest.mark.parametrize("seed,n_effects,n_causes,ts,cov_type,prior", CASES)
def test_matches_pyunfold_on_random_problems(seed, n_effects, n_causes, ts, cov_type, prior):
    problem = random_problem(seed, n_effects, n_causes)
    if prior == "jeffreys":
        prior = jeffreys_prior(np.arange(1, n_causes + 1, dtype=float))
    kwargs = dict(problem, ts=ts, ts_stopping=1e-4, max_iter=30, cov_type=cov_type, prior=prior)
    ours = iterative_unfold(**kwargs)
    ref = pyunfold.iterative_unfold(**kwargs)
    assert ref["num_iterations"] >= 3
    assert_same_result(ours, ref)


@pytest.mark.parametrize("cov_type", ["multinomial", "poisson"])
def test_zero_bins_match_pyunfold(cov_type):
    """Empty data bins, a cause nothing reconstructs and a zero efficiency error: the places
    where pyunfold's safe inverses decide."""
    problem = random_problem(13, 16, 12)
    problem["data"][[2, 9]] = 0.0
    problem["response"][:, 4] = problem["response_err"][:, 4] = 0.0
    problem["efficiencies"][4] = 0.0
    problem["efficiencies_err"][7] = 0.0
    kwargs = dict(problem, ts_stopping=1e-4, max_iter=15, cov_type=cov_type)
    assert_same_result(iterative_unfold(**kwargs), pyunfold.iterative_unfold(**kwargs))


@pytest.mark.parametrize("cov_type", ["multinomial", "poisson"])
def test_every_iteration_matches_pyunfold(cov_type):
    problem = random_problem(5, 18, 14)
    kwargs = dict(problem, ts_stopping=1e-3, cov_type=cov_type, return_iterations=True)
    ours = iterative_unfold(**kwargs)
    ref = pyunfold.iterative_unfold(**kwargs)
    assert list(ours.columns) == list(ref.columns) and len(ours) == len(ref) > 3
    for (_, a), (_, b) in zip(ours.iterrows(), ref.iterrows(), strict=True):
        assert_same_result(dict(a), dict(b))


@pytest.mark.parametrize("make_spline", [SplineRegularizer, PyunfoldSpline])
def test_regularised_iterations_match_pyunfold(make_spline):
    problem = random_problem(6, 20, 20)
    kwargs = dict(problem, ts_stopping=1e-3, return_iterations=True)
    ours = iterative_unfold(**kwargs, callbacks=[make_spline(degree=3, smooth=50.0)])
    ref = pyunfold.iterative_unfold(**kwargs, callbacks=[PyunfoldSpline(degree=3, smooth=50.0)])
    assert len(ours) == len(ref) > 1
    for (_, a), (_, b) in zip(ours.iterrows(), ref.iterrows(), strict=True):
        assert_same_result(dict(a), dict(b))


def test_pyunfold_reference_examples():
    """pyunfold's three documented examples (its test_example*), against pyunfold itself."""
    base = dict(data=[100, 150], data_err=[10, 12.2], efficiencies_err=[0.01, 0.01])
    examples = [
        dict(base, response=[[0.9, 0.1], [0.1, 0.9]], efficiencies=[0.4, 0.67],
             prior=jeffreys_prior(np.arange(2) + 0.5)),
        dict(base, response=[[0.8, 0.1], [0.2, 0.9]], efficiencies=[0.4, 0.67],
             prior=[0.34, 1 - 0.34]),
        dict(base, response=[[0.8, 0.1, 0.6], [0.2, 0.9, 0.4]], efficiencies=[0.4, 0.67, 0.8],
             prior=[0.34, 0.21, 1 - (0.34 + 0.21)], efficiencies_err=[0.01] * 3),
    ]  # fmt: skip
    for example in examples:
        example["response_err"] = np.full(np.shape(example["response"]), 0.01)
        ours = iterative_unfold(**example, return_iterations=True)
        ref = pyunfold.iterative_unfold(**example, return_iterations=True)
        for (_, a), (_, b) in zip(ours.iterrows(), ref.iterrows(), strict=True):
            assert_same_result(dict(a), dict(b))


def test_logger_writes_what_pyunfolds_writes(capsys):
    problem = random_problem(7, 10, 10)
    iterative_unfold(**problem, callbacks=Logger())
    ours = capsys.readouterr().out
    pyunfold.iterative_unfold(**problem, callbacks=PyunfoldLogger())
    assert ours == capsys.readouterr().out and ours.count("\n") > 2


def test_callbacks_see_the_errors_of_each_iteration():
    seen = []

    class Recorder(otinverse.unfolding.Callback):
        def on_iteration_end(self, iteration, status=None):
            seen.append((iteration, status["sys_err"].copy()))

    problem = random_problem(8, 12, 12)
    ref = pyunfold.iterative_unfold(**problem, return_iterations=True)
    iterative_unfold(**problem, callbacks=[Recorder()])
    assert [i for i, _ in seen] == list(range(1, len(ref) + 1))
    for (_, err), (_, row) in zip(seen, ref.iterrows(), strict=True):
        np.testing.assert_allclose(err, row["sys_err"], rtol=1e-12)


def test_integer_inputs_match_pyunfold():
    """Lists of ints, as in pyunfold's examples, including an integer prior."""
    kwargs = dict(data=[100, 150], data_err=[10, 12], response=[[1, 0], [0, 1]],
                  response_err=[[0, 0], [0, 0]], efficiencies=[1, 1], efficiencies_err=[0, 0],
                  prior=[0, 1], return_iterations=True)  # fmt: skip
    ours, ref = iterative_unfold(**kwargs), pyunfold.iterative_unfold(**kwargs)
    for (_, a), (_, b) in zip(ours.iterrows(), ref.iterrows(), strict=True):
        assert_same_result(dict(a), dict(b))


def test_skipping_errors_keeps_the_central_values():
    problem = random_problem(9, 15, 15)
    full = iterative_unfold(**problem)
    fast = iterative_unfold(**problem, propagate_errors=False)
    assert fast["stat_err"] is None and fast["sys_err"] is None
    np.testing.assert_array_equal(fast["unfolded"], full["unfolded"])
    assert fast["num_iterations"] == full["num_iterations"]


def test_matches_the_dense_propagation_of_richardson_lucy():
    """At 60 bins, against otinverse's full-covariance propagation (another implementation)."""
    problem = random_problem(10, 60, 60)
    ours = iterative_unfold(**problem, ts_stopping=1e-3)
    dense = otinverse.richardson_lucy(
        problem["response"],
        problem["data"],
        n_iter=ours["num_iterations"],
        efficiencies=problem["efficiencies"],
        data_err=problem["data_err"],
        efficiencies_err=problem["efficiencies_err"],
        cov_type="multinomial",
        full_output=True,
    )
    np.testing.assert_allclose(ours["sys_err"], np.sqrt(np.diag(dense.sys_cov)), rtol=1e-10)
    np.testing.assert_allclose(ours["stat_err"], np.sqrt(np.diag(dense.stat_cov)), rtol=1e-10)


@pytest.mark.parametrize("name", ["data", "response_err", "efficiencies"])
def test_non_finite_input_names_the_argument(name):
    problem = random_problem(11, 8, 8)
    problem[name] = np.array(problem[name], dtype=float)
    problem[name].flat[0] = np.nan
    with pytest.raises(ValueError, match=f"The items in {name} must be finite"):
        iterative_unfold(**problem)


def test_invalid_arguments_raise_as_pyunfold():
    problem = random_problem(12, 8, 8)
    for kwargs, exc in [
        (dict(ts="nope"), ValueError),
        (dict(prior="flat"), TypeError),
        (dict(prior=np.full(8, 0.5)), ValueError),
        (dict(callbacks=["not a callback"]), TypeError),
        (dict(callbacks=[PyunfoldSpline(), PyunfoldSpline()]), NotImplementedError),
    ]:
        with pytest.raises(exc):
            pyunfold.iterative_unfold(**problem, **kwargs)
        with pytest.raises(exc):
            iterative_unfold(**problem, **kwargs)
    with pytest.raises(NotImplementedError, match="Multiple regularizer"):
        iterative_unfold(**problem, callbacks=[SplineRegularizer(), PyunfoldSpline()])
    with pytest.raises(ValueError, match="max_iter"):
        iterative_unfold(**problem, max_iter=0)
