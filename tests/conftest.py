"""Hypothesis profiles for every test under tests/.

* ``ci`` (the default, and always when ``CI`` is set): derandomised, so every run draws the same
  examples and a red or green result is reproducible.
* ``fuzz``: the deep search run by hand before a release, 2000 fresh random examples per
  property: ``HYPOTHESIS_PROFILE=fuzz pytest -k properties``.
"""

import os

from hypothesis import HealthCheck, settings

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
