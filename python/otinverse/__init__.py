"""otinverse: optimal transport for inverse problems, on a Rust core.

* Functional API (POT-shaped): :func:`sinkhorn`, :func:`sinkhorn_points`, :func:`wasserstein`.
* Unfolding: :class:`OTUnfolder`, :class:`RichardsonLucyUnfolder`, :func:`richardson_lucy`.
* Restoration with a patch prior: :class:`WPPRestorer`.
"""

from . import datasets, metrics
from ._core import InvalidArgumentError, InvalidDtypeError, NumericalError, __version__
from .metrics import wasserstein2_squared
from .ot import SinkhornResult, sinkhorn, sinkhorn_points, wasserstein
from .restore import WPPRestorer, add_defects
from .unfolding import OTUnfolder, RichardsonLucyUnfolder, richardson_lucy

__all__ = [
    "InvalidArgumentError",
    "InvalidDtypeError",
    "NumericalError",
    "OTUnfolder",
    "RichardsonLucyUnfolder",
    "SinkhornResult",
    "WPPRestorer",
    "__version__",
    "add_defects",
    "datasets",
    "metrics",
    "richardson_lucy",
    "sinkhorn",
    "sinkhorn_points",
    "wasserstein",
    "wasserstein2_squared",
]
