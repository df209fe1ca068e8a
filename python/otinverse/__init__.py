"""otinverse: optimal transport for inverse problems, on a Rust core.

Functional API (POT-shaped): :func:`sinkhorn`, :func:`sinkhorn_points`, :func:`wasserstein`.
"""

from ._core import InvalidArgumentError, InvalidDtypeError, NumericalError, __version__
from .ot import SinkhornResult, sinkhorn, sinkhorn_points, wasserstein
from .restore import WPPRestorer, add_defects

__all__ = [
    "InvalidArgumentError",
    "InvalidDtypeError",
    "NumericalError",
    "SinkhornResult",
    "WPPRestorer",
    "add_defects",
    "__version__",
    "sinkhorn",
    "sinkhorn_points",
    "wasserstein",
]
