"""otinverse: optimal transport for inverse problems, on a Rust core.

* Functional API (POT-shaped): :func:`sinkhorn`, :func:`sinkhorn_points`, :func:`wasserstein`.
* Unfolding: :class:`OTUnfolder`, :class:`RichardsonLucyUnfolder`, :func:`richardson_lucy`.
* Restoration with a patch prior: :class:`WPPRestorer`.
* Sparse approximation and peak counting: :class:`EntropicSparsifier`, :func:`count_peaks`,
  :class:`StarClusterClassifier`.
"""

from . import datasets, metrics
from ._core import InvalidArgumentError, InvalidDtypeError, NumericalError, __version__
from .datasets_stars import make_star_groups, make_star_patches
from .metrics import wasserstein2_squared
from .ot import SinkhornResult, sinkhorn, sinkhorn_points, wasserstein
from .restore import WPPRestorer, add_defects
from .sparsify import EntropicSparsifier, StarClusterClassifier, count_peaks
from .unfolding import OTUnfolder, RichardsonLucyUnfolder, richardson_lucy

__all__ = [
    "EntropicSparsifier",
    "InvalidArgumentError",
    "InvalidDtypeError",
    "NumericalError",
    "OTUnfolder",
    "RichardsonLucyUnfolder",
    "SinkhornResult",
    "StarClusterClassifier",
    "WPPRestorer",
    "__version__",
    "add_defects",
    "count_peaks",
    "datasets",
    "make_star_groups",
    "make_star_patches",
    "metrics",
    "richardson_lucy",
    "sinkhorn",
    "sinkhorn_points",
    "wasserstein",
    "wasserstein2_squared",
]
