"""otinverse: optimal transport for inverse problems, on a Rust core.

* Functional API (POT-shaped): :func:`sinkhorn`, :func:`sinkhorn_points`, :func:`wasserstein`.
* Unfolding: :class:`OTUnfolder`, :class:`RichardsonLucyUnfolder`, :func:`richardson_lucy`,
  :func:`iterative_unfold` (pyunfold's, as a drop-in).
* Restoration with a patch prior: :class:`WPPRestorer`.
* OT classification (Barton & Tai): :class:`OTClassifier`, :class:`BernoulliMixture`,
  :class:`SinkhornTransport`, :class:`EMDTransport`, :func:`sinkhorn_batch`,
  :func:`ground_cost`, :func:`grid_cost`.
* Known forward operators (:mod:`otinverse.operators`) and the penalised-least-squares baseline
  :func:`penalized_least_squares`; the OT-cycleGAN of the optional ``learn`` extra lives in
  :mod:`otinverse.learn` (not imported here, so the core stays free of a tensor library).
* Sparse approximation and peak counting: :class:`EntropicSparsifier`, :func:`count_peaks`,
  :class:`StarClusterClassifier`.
"""

from . import datasets, metrics, operators
from ._core import InvalidArgumentError, InvalidDtypeError, NumericalError, __version__
from .batch import sinkhorn_batch
from .classify import OTClassifier
from .datasets_stars import make_star_groups, make_star_patches
from .ground_cost import grid_cost, grid_points, ground_cost
from .metrics import wasserstein2_squared
from .mixture import BernoulliMixture
from .ot import SinkhornResult, sinkhorn, sinkhorn_points, wasserstein
from .pls import penalized_least_squares
from .restore import WPPRestorer, add_defects
from .sparsify import EntropicSparsifier, StarClusterClassifier, count_peaks
from .transport import EMDTransport, SinkhornTransport
from .unfolding import OTUnfolder, RichardsonLucyUnfolder, iterative_unfold, richardson_lucy

__all__ = [
    "BernoulliMixture",
    "EMDTransport",
    "EntropicSparsifier",
    "InvalidArgumentError",
    "InvalidDtypeError",
    "NumericalError",
    "OTClassifier",
    "OTUnfolder",
    "RichardsonLucyUnfolder",
    "SinkhornResult",
    "SinkhornTransport",
    "StarClusterClassifier",
    "WPPRestorer",
    "__version__",
    "add_defects",
    "count_peaks",
    "datasets",
    "grid_cost",
    "grid_points",
    "ground_cost",
    "iterative_unfold",
    "make_star_groups",
    "make_star_patches",
    "metrics",
    "operators",
    "penalized_least_squares",
    "richardson_lucy",
    "sinkhorn",
    "sinkhorn_batch",
    "sinkhorn_points",
    "wasserstein",
    "wasserstein2_squared",
]
