"""otinverse: optimal transport for inverse problems, on a Rust core.

Functional API (POT-shaped): :func:`sinkhorn`, :func:`sinkhorn_points`, :func:`wasserstein`.
"""

from ._core import InvalidArgumentError, InvalidDtypeError, NumericalError, __version__
from .ot import SinkhornResult, sinkhorn, sinkhorn_points, wasserstein

__all__ = [
    "InvalidArgumentError",
    "InvalidDtypeError",
    "NumericalError",
    "SinkhornResult",
    "__version__",
    "sinkhorn",
    "sinkhorn_points",
    "wasserstein",
]

from . import datasets, metrics  # noqa: E402
from .metrics import wasserstein2_squared  # noqa: E402
from .unfolding import OTUnfolder, RichardsonLucyUnfolder, richardson_lucy  # noqa: E402

__all__ += ["OTUnfolder", "RichardsonLucyUnfolder", "datasets", "metrics", "richardson_lucy", "wasserstein2_squared"]
