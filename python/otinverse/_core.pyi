"""Type stubs of the Rust extension module (hand-written; keep in step with src/bindings)."""

import numpy as np
from numpy.typing import NDArray

__version__: str

class InvalidArgumentError(ValueError): ...
class InvalidDtypeError(TypeError): ...
class NumericalError(ArithmeticError): ...

_SinkhornTuple = tuple[NDArray[np.float64], NDArray[np.float64], float, float, int, float, bool]

def sinkhorn_dense(
    a: NDArray[np.float64],
    b: NDArray[np.float64],
    cost: NDArray[np.float64],
    reg: float,
    reach_a: float | None,
    reach_b: float | None,
    max_iter: int,
    tol: float,
    update: str,
    eps_scaling: float | None,
    f_init: NDArray[np.float64] | None,
    g_init: NDArray[np.float64] | None,
) -> _SinkhornTuple: ...
def sinkhorn_points(
    a: NDArray[np.float64],
    x: NDArray[np.float64],
    b: NDArray[np.float64],
    y: NDArray[np.float64],
    reg: float,
    p: float,
    reach_a: float | None,
    reach_b: float | None,
    max_iter: int,
    tol: float,
    update: str,
    eps_scaling: float | None,
    f_init: NDArray[np.float64] | None,
    g_init: NDArray[np.float64] | None,
) -> _SinkhornTuple: ...
def plan_dense(
    row: NDArray[np.float64], col: NDArray[np.float64], cost: NDArray[np.float64], reg: float
) -> NDArray[np.float64]: ...
def plan_points(
    row: NDArray[np.float64],
    x: NDArray[np.float64],
    col: NDArray[np.float64],
    y: NDArray[np.float64],
    reg: float,
    p: float,
) -> NDArray[np.float64]: ...
def wasserstein_1d_cost(
    x: NDArray[np.float64], a: NDArray[np.float64], y: NDArray[np.float64], b: NDArray[np.float64], p: float
) -> float: ...
def _borrowed_address(cost: NDArray[np.float64]) -> int: ...
def simd_level() -> str: ...

# Patch kernels (WPP, issue 5).
def extract_patches(image: NDArray[np.float64], patch_size: int) -> NDArray[np.float64]: ...
def fold_patches(patches: NDArray[np.float64], height: int, width: int, patch_size: int) -> NDArray[np.float64]: ...
def patch_sinkhorn(
    a: NDArray[np.float64],
    x: NDArray[np.float64],
    b: NDArray[np.float64],
    y: NDArray[np.float64],
    reg: float,
    reach_a: float | None,
    reach_b: float | None,
    max_iter: int,
    tol: float,
    update: str,
    eps_scaling: float | None,
    f_init: NDArray[np.float64] | None,
    g_init: NDArray[np.float64] | None,
) -> tuple[
    NDArray[np.float64], NDArray[np.float64], float, float, int, float, bool,
    NDArray[np.float64], NDArray[np.float64], NDArray[np.float64],
]: ...
def patch_prior(
    image: NDArray[np.float64],
    reference_patches: NDArray[np.float64],
    patch_size: int,
    reg: float,
    reach: float | None,
    max_iter: int,
    tol: float,
    eps_scaling: float | None,
    f_init: NDArray[np.float64] | None,
    g_init: NDArray[np.float64] | None,
) -> tuple[float, NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], int, float, bool, NDArray[np.float64]]: ...
def patch_softmin(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    col: NDArray[np.float64],
    reg: float,
    shift: NDArray[np.float64] | None = None,
) -> NDArray[np.float64]: ...
def patch_plan(
    row: NDArray[np.float64], x: NDArray[np.float64], col: NDArray[np.float64], y: NDArray[np.float64], reg: float
) -> NDArray[np.float64]: ...
