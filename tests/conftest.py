"""Test-session environment and Hypothesis profiles for every test under tests/.

POT's array backends: ``import ot`` imports JAX (and PyTorch, TensorFlow, CuPy when installed)
to register their backends, which costs each process that imports POT seconds (about 1.4 s of
CPU for JAX alone): the pytest workers, the notebook kernels and the child interpreters, all of
which inherit this environment. No test hands POT anything but NumPy arrays (JAX is tested against
POT's NumPy results), so the session disables them; a variable already set is kept (POT reads
any non-empty value as "disabled", so ``POT_BACKEND_DISABLE_JAX=`` keeps its JAX backend).

JAX's persistent compilation cache: one fresh directory per test session, shared through the
environment by every process that compiles (each pytest-xdist worker, the notebook kernels), so a
program that two of them compile, or that one compiles twice (a reproducibility re-fit, which
traces new closures), is compiled once. It starts empty, as on a fresh clone, and is removed at
the end; a ``JAX_COMPILATION_CACHE_DIR`` already set is used as it is.

Hypothesis profiles:

* ``ci`` (the default, and always when ``CI`` is set): derandomised, so every run draws the same
  examples and a red or green result is reproducible.
* ``fuzz``: the deep search run by hand before a release, 2000 fresh random examples per
  property: ``HYPOTHESIS_PROFILE=fuzz pytest -k properties``.
"""

import os
import shutil
import tempfile

from hypothesis import HealthCheck, settings

# Read by POT when ``ot`` is first imported, which no module imported above does.
for _backend in ("JAX", "PYTORCH", "TENSORFLOW", "CUPY"):
    os.environ.setdefault(f"POT_BACKEND_DISABLE_{_backend}", "1")

# Read by JAX when it is imported. This conftest is loaded by the pytest process before it starts
# its xdist workers, which inherit the variable (and find it set when they load this file).
_OWN_XLA_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _OWN_XLA_CACHE = tempfile.mkdtemp(prefix="otinverse-xla-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_XLA_CACHE
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"


def pytest_unconfigure(config):
    if _OWN_XLA_CACHE is not None:
        shutil.rmtree(_OWN_XLA_CACHE, ignore_errors=True)


settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=25,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "fuzz",
    derandomize=False,
    deadline=None,
    max_examples=2000,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
profile = "ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(profile)
