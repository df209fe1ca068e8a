"""Type stubs of ``otinverse._core.testing``: kernels only the tests and benchmarks call."""

from typing import final

import numpy as np
from numpy.typing import NDArray

from . import SinkhornOptions, SinkhornResult

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
    def sinkhorn(self) -> SinkhornResult: ...

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
def patch_plan(
    row: NDArray[np.float64],
    x: NDArray[np.float64],
    col: NDArray[np.float64],
    y: NDArray[np.float64],
    reg: float,
) -> NDArray[np.float64]: ...
def borrowed_address(cost: NDArray[np.float64]) -> int: ...
