"""Type stubs of ``otinverse._core.testing``: kernels only the tests and benchmarks call."""

from typing import final

import numpy as np
from numpy.typing import NDArray

from . import SinkhornOptions, SinkhornSolution

@final
class PatchOtResult:
    """Patch OT between two patch clouds with its gradient."""

    @property
    def gradient(self) -> NDArray[np.float64]: ...
    @property
    def received(self) -> NDArray[np.float64]: ...
    @property
    def row_mass(self) -> NDArray[np.float64]: ...
    @property
    def sinkhorn(self) -> SinkhornSolution: ...

def patch_sinkhorn(
    a: NDArray[np.float64],
    x: NDArray[np.float64],
    b: NDArray[np.float64],
    y: NDArray[np.float64],
    options: SinkhornOptions,
    f_init: NDArray[np.float64] | None = None,
    g_init: NDArray[np.float64] | None = None,
) -> PatchOtResult: ...
def patch_softmin(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    col: NDArray[np.float64],
    reg: float,
    shift: NDArray[np.float64] | None = None,
) -> NDArray[np.float64]: ...
def borrowed_address(cost: NDArray[np.float64]) -> int: ...

@final
class KerBProjector:
    """The projections onto ker B of one response: orthogonal, Douglas–Rachford's KL
    approximation (Craig et al., eq. 28) and the exact KL projection."""

    def __new__(
        cls, response: NDArray[np.float64] | None, *, n_gen: int, per_point: int
    ) -> KerBProjector: ...
    @staticmethod
    def sampled(
        owner: NDArray[np.uintp], shares: NDArray[np.float64], n_gen: int
    ) -> KerBProjector: ...
    def orthogonal(self, x: NDArray[np.float64]) -> NDArray[np.float64]: ...
    def douglas_rachford(
        self, log_w: NDArray[np.float64], dr_step: float, dr_iter: int
    ) -> NDArray[np.float64]: ...
    def exact(self, log_w: NDArray[np.float64]) -> NDArray[np.float64]: ...
