"""otinverse: optimal transport for inverse problems, on a Rust core.

One subpackage per task; every public name is also importable from here. The subpackages are
imported when first used (``otinverse.unfolding``, ``from otinverse import OTUnfolder``), so that
``import otinverse`` alone loads neither scikit-learn nor SciPy.

* :mod:`otinverse.solvers`, the functional API (POT-shaped): :func:`sinkhorn`,
  :func:`sinkhorn_points`, :func:`sinkhorn_batch`, :func:`wasserstein`,
  :func:`wasserstein2_squared`.
* :mod:`otinverse.costs`: :func:`ground_cost`, :func:`grid_cost`, :func:`grid_points`.
* :mod:`otinverse.unfolding`: :class:`OTUnfolder`, :class:`RichardsonLucyUnfolder`,
  :func:`richardson_lucy`, :class:`Response`,
  :func:`iterative_unfold` (pyunfold's, as a drop-in).
* :mod:`otinverse.classification` (Barton & Tai): :class:`OTClassifier`,
  :class:`BernoulliMixture`; :mod:`otinverse.da`: :class:`SinkhornTransport`,
  :class:`EMDTransport`.
* :mod:`otinverse.sparsify`: :class:`EntropicSparsifier`, :func:`count_peaks`,
  :class:`StarClusterClassifier`.
* :mod:`otinverse.imaging`: the known forward operators, :class:`WPPRestorer` and the
  penalised-least-squares baseline :func:`penalized_least_squares`; the OT-cycleGAN of the
  optional ``learn`` extra lives in :mod:`otinverse.learn` (not imported here, so the core stays
  free of a tensor library).
* :mod:`otinverse.datasets`: every problem generator and data loader.
"""

import importlib as _importlib
import sys as _sys

from . import _deprecated
from ._core import InvalidArgumentError, InvalidDtypeError, NumericalError, __version__

#: The subpackages, and each public name re-exported here → the subpackage that defines it.
#: Both are imported on first access (PEP 562 ``__getattr__``): ``import otinverse`` then loads
#: the extension only, not scikit-learn and SciPy, which every subpackage imports (about 2.5 s,
#: mostly scikit-learn's own import of scipy.stats and pandas).
_SUBPACKAGES = (
    "classification",
    "costs",
    "da",
    "datasets",
    "imaging",
    "solvers",
    "sparsify",
    "unfolding",
)
_EXPORTS = {
    "BernoulliMixture": "classification",
    "OTClassifier": "classification",
    "grid_cost": "costs",
    "grid_points": "costs",
    "ground_cost": "costs",
    "EMDTransport": "da",
    "SinkhornTransport": "da",
    "add_defects": "datasets",
    "make_star_groups": "datasets",
    "make_star_patches": "datasets",
    "WPPRestorer": "imaging",
    "penalized_least_squares": "imaging",
    "BatchSinkhornResult": "solvers",
    "SinkhornResult": "solvers",
    "sinkhorn": "solvers",
    "sinkhorn_batch": "solvers",
    "sinkhorn_points": "solvers",
    "wasserstein": "solvers",
    "wasserstein2_squared": "solvers",
    "EntropicSparsifier": "sparsify",
    "StarClusterClassifier": "sparsify",
    "count_peaks": "sparsify",
    "OTUnfolder": "unfolding",
    "Response": "unfolding",
    "RichardsonLucyUnfolder": "unfolding",
    "iterative_unfold": "unfolding",
    "richardson_lucy": "unfolding",
}

_deprecated.install(_sys.modules[__name__])

__all__ = [
    "BatchSinkhornResult",
    "BernoulliMixture",
    "EMDTransport",
    "EntropicSparsifier",
    "InvalidArgumentError",
    "InvalidDtypeError",
    "NumericalError",
    "OTClassifier",
    "OTUnfolder",
    "Response",
    "RichardsonLucyUnfolder",
    "SinkhornResult",
    "SinkhornTransport",
    "StarClusterClassifier",
    "WPPRestorer",
    "__version__",
    "add_defects",
    "classification",
    "costs",
    "count_peaks",
    "da",
    "datasets",
    "grid_cost",
    "grid_points",
    "ground_cost",
    "imaging",
    "iterative_unfold",
    "make_star_groups",
    "make_star_patches",
    "penalized_least_squares",
    "richardson_lucy",
    "sinkhorn",
    "sinkhorn_batch",
    "sinkhorn_points",
    "solvers",
    "sparsify",
    "unfolding",
    "wasserstein",
    "wasserstein2_squared",
]


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return _importlib.import_module(f"{__name__}.{name}")
    if name in _EXPORTS:
        value = getattr(_importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    # ``otinverse.operators`` and the other flat-layout modules, forwarded with a warning.
    if name in _deprecated.MOVED:
        return _deprecated.forwarded(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
