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

# --- entropic sparsification (issue 4) ---
def sparsify_dense(nu: np.ndarray, cost: np.ndarray, mu0: np.ndarray | None, sparsity: float, reg: float, step_size: float, max_iter: int, tol: float, min_step: float, sinkhorn_max_iter: int, sinkhorn_tol: float, record_history: bool, objective: str) -> dict: ...
def sparsify_grid(nu: np.ndarray, ny: int, nx: int, hy: float, hx: float, mu0: np.ndarray | None, sparsity: float, reg: float, step_size: float, max_iter: int, tol: float, min_step: float, sinkhorn_max_iter: int, sinkhorn_tol: float, record_history: bool) -> dict: ...
def sinkhorn_grid(a: np.ndarray, b: np.ndarray, ny: int, nx: int, hy: float, hx: float, reg: float, max_iter: int, tol: float) -> tuple[np.ndarray, np.ndarray, float, int, bool]: ...
def grid_cost_matrix(ny: int, nx: int, hy: float, hx: float) -> np.ndarray: ...
