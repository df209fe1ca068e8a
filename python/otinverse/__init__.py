"""otinverse: optimal transport for inverse problems, on a Rust core.

Functional API (POT-shaped): :func:`sinkhorn`, :func:`sinkhorn_points`, :func:`wasserstein`.
"""

from ._core import InvalidArgumentError, InvalidDtypeError, NumericalError, __version__
from .ot import SinkhornResult, sinkhorn, sinkhorn_points, wasserstein
from .sparsify import EntropicSparsifier, StarClusterClassifier, count_peaks
from .datasets_stars import make_star_patches

__all__ = [
    "EntropicSparsifier",
    "InvalidArgumentError",
    "InvalidDtypeError",
    "NumericalError",
    "SinkhornResult",
    "StarClusterClassifier",
    "__version__",
    "count_peaks",
    "make_star_patches",
    "sinkhorn",
    "sinkhorn_points",
    "wasserstein",
]
