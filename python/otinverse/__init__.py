"""otinverse: optimal transport for inverse problems, on a Rust core.

One subpackage per task; every public name is also importable from here.

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

import sys as _sys

from . import (
    _deprecated,
    classification,
    costs,
    da,
    datasets,
    imaging,
    solvers,
    sparsify,
    unfolding,
)
from ._core import InvalidArgumentError, InvalidDtypeError, NumericalError, __version__
from .classification import BernoulliMixture, OTClassifier
from .costs import grid_cost, grid_points, ground_cost
from .da import EMDTransport, SinkhornTransport
from .datasets import add_defects, make_star_groups, make_star_patches
from .imaging import WPPRestorer, penalized_least_squares
from .solvers import (
    BatchSinkhornResult,
    SinkhornResult,
    sinkhorn,
    sinkhorn_batch,
    sinkhorn_points,
    wasserstein,
    wasserstein2_squared,
)
from .sparsify import EntropicSparsifier, StarClusterClassifier, count_peaks
from .unfolding import (
    OTUnfolder,
    Response,
    RichardsonLucyUnfolder,
    iterative_unfold,
    richardson_lucy,
)

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
    # ``otinverse.operators`` and the other flat-layout modules, forwarded with a warning.
    if name in _deprecated.MOVED:
        return _deprecated.forwarded(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
