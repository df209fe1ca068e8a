"""The functional optimal-transport API, shaped like POT's (``ot.sinkhorn``, ``ot.emd2``).

Entropic solvers on a dense cost (:func:`sinkhorn`), between point clouds with the cost computed
on the fly (:func:`sinkhorn_points`), and between many pairs of histograms on one support
(:func:`sinkhorn_batch`); exact OT (:func:`wasserstein`, :func:`wasserstein2_squared`).
"""

from ._batch import BatchSinkhornResult, sinkhorn_batch
from ._exact import wasserstein, wasserstein2_squared
from ._sinkhorn import SinkhornResult, sinkhorn, sinkhorn_points

__all__ = [
    "BatchSinkhornResult",
    "SinkhornResult",
    "sinkhorn",
    "sinkhorn_batch",
    "sinkhorn_points",
    "wasserstein",
    "wasserstein2_squared",
]
