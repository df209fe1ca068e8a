"""Type stubs of the Rust extension module (hand-written; keep in step with src/bindings; checked
by ``python -m mypy.stubtest otinverse._core``)."""

from collections.abc import Callable
from typing import final

import numpy as np
from numpy.typing import NDArray

from . import testing as testing

__version__: str

class InvalidArgumentError(ValueError): ...
class InvalidDtypeError(TypeError): ...
class NumericalError(ArithmeticError): ...

@final
class SinkhornOptions:
    """Options of a Sinkhorn solve; the core checks the values when a solve starts."""

    def __new__(
        cls,
        *,
        reg: float,
        reach_a: float | None = ...,
        reach_b: float | None = ...,
        max_iter: int = ...,
        tol: float = ...,
        update: str = ...,
        eps_scaling: float | None = ...,
        overrelaxation: bool = ...,
        stage_iter: int | None = ...,
        kernel: str = ...,
    ) -> SinkhornOptions: ...
    @property
    def reg(self) -> float: ...
    @property
    def reach_a(self) -> float | None: ...
    @property
    def reach_b(self) -> float | None: ...
    @property
    def max_iter(self) -> int: ...
    @property
    def tol(self) -> float: ...
    @property
    def update(self) -> str: ...
    @property
    def eps_scaling(self) -> float | None: ...
    @property
    def overrelaxation(self) -> bool: ...
    @property
    def stage_iter(self) -> int | None: ...
    @property
    def kernel(self) -> str: ...

@final
class SinkhornSolution:
    """Outcome of a Sinkhorn solve (potentials in cost units); ``otinverse.SinkhornResult``
    wraps it."""

    @property
    def f(self) -> NDArray[np.float64]: ...
    @property
    def g(self) -> NDArray[np.float64]: ...
    @property
    def transport_cost(self) -> float: ...
    @property
    def objective(self) -> float: ...
    @property
    def n_iter(self) -> int: ...
    @property
    def marginal_error(self) -> float: ...
    @property
    def converged(self) -> bool: ...
    @property
    def stages(self) -> list[tuple[int, float, int, float]]: ...
    @property
    def plan(self) -> NDArray[np.float64] | None: ...

def sinkhorn_dense(
    a: NDArray[np.float64],
    b: NDArray[np.float64],
    cost: NDArray[np.float64],
    options: SinkhornOptions,
    f_init: NDArray[np.float64] | None = None,
    g_init: NDArray[np.float64] | None = None,
    *,
    with_plan: bool = False,
) -> SinkhornSolution: ...
def sinkhorn_points(
    a: NDArray[np.float64],
    x: NDArray[np.float64],
    b: NDArray[np.float64],
    y: NDArray[np.float64],
    p: float,
    options: SinkhornOptions,
    f_init: NDArray[np.float64] | None = None,
    g_init: NDArray[np.float64] | None = None,
) -> SinkhornSolution: ...
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

@final
class PointPlanGradient:
    """The cost gradient in x of a point-cloud plan and its row sums, without storing it."""

    @property
    def grad(self) -> NDArray[np.float64]: ...
    @property
    def row_sums(self) -> NDArray[np.float64]: ...

def point_plan_gradient(
    row: NDArray[np.float64],
    x: NDArray[np.float64],
    col: NDArray[np.float64],
    y: NDArray[np.float64],
    reg: float,
    p: float,
) -> PointPlanGradient: ...
def point_cost_matrix(
    x: NDArray[np.float64], y: NDArray[np.float64], p: float
) -> NDArray[np.float64]: ...
def wasserstein_1d_cost(
    x: NDArray[np.float64],
    a: NDArray[np.float64],
    y: NDArray[np.float64],
    b: NDArray[np.float64],
    p: float,
) -> float: ...
def simd_level() -> str: ...

# --- unfolding (src/bindings/unfold.rs) ---

@final
class OtUnfoldOptions:
    reg: float
    reg_init: float
    p: float
    cost_normalization: str
    n_init_iter: int
    max_iter: int
    tol: float | None
    dr_iter: int
    dr_step: float
    projection: str
    kernel: str
    warm_start_clusters: int | None
    reco_grid: str
    grid_spacing: float | None
    def __new__(
        cls,
        *,
        reg: float = ...,
        reg_init: float = ...,
        p: float = ...,
        cost_normalization: str = ...,
        n_init_iter: int = ...,
        max_iter: int = ...,
        tol: float | None = ...,
        dr_iter: int = ...,
        dr_step: float = ...,
        projection: str = ...,
        kernel: str = ...,
        warm_start_clusters: int | None = ...,
        reco_grid: str = ...,
        grid_spacing: float | None = ...,
    ) -> OtUnfoldOptions: ...

@final
class OtUnfoldResult:
    weights: NDArray[np.float64]
    shape_history: NDArray[np.float64]
    efficiency: NDArray[np.float64]
    mc_weight: NDArray[np.float64]
    objective: NDArray[np.float64]
    sigma_change: NDArray[np.float64]
    kerb_residual: NDArray[np.float64]
    n_iter: int
    converged: bool
    cost_scale: float
    kernel: str
    grid_spacing: float | None
    row_cells: int
    col_cells: int
    kept_per_row: float | None
    kernel_builds: int
    exact_fallbacks: int
    coarse_warm_start: bool

def ot_unfold_events(
    reco: NDArray[np.float64],
    measured: NDArray[np.float64],
    measured_weight: NDArray[np.float64],
    options: OtUnfoldOptions,
    *,
    n_gen: int,
    per_point: int = 0,
    sample_weight: NDArray[np.float64] | None = None,
    response: NDArray[np.float64] | None = None,
    gen_weight: NDArray[np.float64] | None = None,
    fakes: NDArray[np.float64] | None = None,
    fake_weight: NDArray[np.float64] | None = None,
    prior: NDArray[np.float64] | None = None,
    efficiency: NDArray[np.float64] | None = None,
    progress: Callable[[int], object] | None = None,
) -> OtUnfoldResult: ...
def wright_omega_array(t: NDArray[np.float64]) -> NDArray[np.float64]: ...

@final
class RichardsonLucyOptions:
    max_iter: int
    ts: str | None
    ts_stopping: float
    cov_type: str | None
    def __new__(
        cls,
        *,
        max_iter: int,
        ts: str | None = ...,
        ts_stopping: float = ...,
        cov_type: str | None = ...,
    ) -> RichardsonLucyOptions: ...

@final
class RichardsonLucyResult:
    unfolded: NDArray[np.float64]
    history: NDArray[np.float64]
    ts_values: NDArray[np.float64]
    stat_cov: NDArray[np.float64] | None
    sys_cov: NDArray[np.float64] | None
    n_iter: int

def richardson_lucy_binned(
    response: NDArray[np.float64],
    measured: NDArray[np.float64],
    options: RichardsonLucyOptions,
    *,
    efficiencies: NDArray[np.float64] | None = None,
    prior: NDArray[np.float64] | None = None,
    background: NDArray[np.float64] | None = None,
    data_err: NDArray[np.float64] | None = None,
    response_err: NDArray[np.float64] | None = None,
    efficiencies_err: NDArray[np.float64] | None = None,
) -> RichardsonLucyResult: ...

@final
class IbuErrorPropagator:
    """pyunfold's propagated errors of iterative Bayesian unfolding, recorded step by step."""

    def __new__(
        cls,
        response: NDArray[np.float64],
        data: NDArray[np.float64],
        data_err: NDArray[np.float64],
        efficiencies: NDArray[np.float64],
        cov_type: str,
        *,
        efficiencies_err: NDArray[np.float64] | None = None,
        response_err: NDArray[np.float64] | None = None,
    ) -> IbuErrorPropagator: ...
    def step(self, prev: NDArray[np.float64], new: NDArray[np.float64]) -> None: ...
    @property
    def n_steps(self) -> int: ...
    def stat_err(self) -> NDArray[np.float64]: ...
    def sys_err(self) -> NDArray[np.float64]: ...

# --- patch kernels of the Wasserstein patch prior (src/bindings/patches.rs) ---
def extract_patches(image: NDArray[np.float64], patch_size: int) -> NDArray[np.float64]: ...
def fold_patches(
    patches: NDArray[np.float64], height: int, width: int, patch_size: int
) -> NDArray[np.float64]: ...

@final
class PatchPriorResult:
    """The patch prior of an image: value, pixel gradient, received masses and the solve."""

    @property
    def value(self) -> float: ...
    @property
    def gradient(self) -> NDArray[np.float64]: ...
    @property
    def received(self) -> NDArray[np.float64]: ...
    @property
    def sinkhorn(self) -> SinkhornSolution: ...

def patch_prior(
    image: NDArray[np.float64],
    reference_patches: NDArray[np.float64],
    patch_size: int,
    options: SinkhornOptions,
    f_init: NDArray[np.float64] | None = None,
    g_init: NDArray[np.float64] | None = None,
) -> PatchPriorResult: ...

# --- entropic sparsification ---
@final
class SparsifyOptions:
    """Options of eq. (7)'s solvers; the core checks the values when a solve starts."""

    @property
    def sparsity(self) -> float: ...
    @property
    def reg(self) -> float: ...
    @property
    def solver(self) -> str: ...
    @property
    def step_size(self) -> float: ...
    @property
    def max_iter(self) -> int: ...
    @property
    def tol(self) -> float: ...
    @property
    def min_step(self) -> float: ...
    @property
    def sinkhorn_max_iter(self) -> int: ...
    @property
    def sinkhorn_tol(self) -> float: ...
    @property
    def record_history(self) -> bool: ...
    @property
    def objective(self) -> str: ...
    def __new__(
        cls,
        *,
        sparsity: float,
        reg: float,
        solver: str = ...,
        step_size: float = ...,
        max_iter: int = ...,
        tol: float = ...,
        min_step: float = ...,
        sinkhorn_max_iter: int = ...,
        sinkhorn_tol: float = ...,
        record_history: bool = ...,
        objective: str = ...,
    ) -> SparsifyOptions: ...

@final
class SparsifyResult:
    """One sparse approximation and its diagnostics."""

    @property
    def mu(self) -> NDArray[np.float64]: ...
    @property
    def n_iter(self) -> int: ...
    @property
    def objective(self) -> float: ...
    @property
    def ot_value(self) -> float: ...
    @property
    def entropy(self) -> float: ...
    @property
    def grad_norm(self) -> float: ...
    @property
    def stop(self) -> str: ...
    @property
    def objectives(self) -> NDArray[np.float64]: ...
    @property
    def history(self) -> NDArray[np.float64] | None: ...
    @property
    def sinkhorn_unconverged(self) -> int: ...
    @property
    def sinkhorn_iters(self) -> int: ...

@final
class SparsifyBatch:
    """Sparse approximations of a stack of measures, one row each."""

    @property
    def mu(self) -> NDArray[np.float64]: ...
    @property
    def n_iter(self) -> NDArray[np.uint64]: ...
    @property
    def objective(self) -> NDArray[np.float64]: ...
    @property
    def entropy(self) -> NDArray[np.float64]: ...
    @property
    def grad_norm(self) -> NDArray[np.float64]: ...
    @property
    def stop(self) -> list[str]: ...
    @property
    def sinkhorn_unconverged(self) -> NDArray[np.uint64]: ...

@final
class GridSinkhornResult:
    """Balanced Sinkhorn on a grid."""

    @property
    def f(self) -> NDArray[np.float64]: ...
    @property
    def g(self) -> NDArray[np.float64]: ...
    @property
    def objective(self) -> float: ...
    @property
    def n_iter(self) -> int: ...
    @property
    def converged(self) -> bool: ...

def sparsify_dense(
    nu: NDArray[np.float64],
    cost: NDArray[np.float64],
    options: SparsifyOptions,
    mu0: NDArray[np.float64] | None = None,
) -> SparsifyResult: ...
def sparsify_dense_batch(
    x: NDArray[np.float64], cost: NDArray[np.float64], options: SparsifyOptions
) -> SparsifyBatch: ...
def sparsify_grid(
    nu: NDArray[np.float64],
    shape: tuple[int, int],
    spacing: tuple[float, float],
    options: SparsifyOptions,
    mu0: NDArray[np.float64] | None = None,
) -> SparsifyResult: ...
def sparsify_grid_batch(
    x: NDArray[np.float64],
    shape: tuple[int, int],
    spacing: tuple[float, float],
    options: SparsifyOptions,
) -> SparsifyBatch: ...
def sinkhorn_grid(
    a: NDArray[np.float64],
    b: NDArray[np.float64],
    shape: tuple[int, int],
    spacing: tuple[float, float],
    *,
    reg: float,
    max_iter: int = 1000,
    tol: float = 1e-9,
) -> GridSinkhornResult: ...
def grid_cost_matrix(
    shape: tuple[int, int], spacing: tuple[float, float]
) -> NDArray[np.float64]: ...

# --- OT classification (src/bindings/classify.rs) ---
@final
class GroundCostOptions:
    """A ground cost ``h(‖x − y‖)``: "distance", "sqdistance", "log1p", "atan" or "power"."""

    @property
    def cost(self) -> str: ...
    @property
    def exponent(self) -> float | None: ...
    def __new__(cls, *, cost: str, exponent: float | None = ...) -> GroundCostOptions: ...

@final
class BatchSinkhornOptions:
    """Options of the batched Sinkhorn: ``reg`` ε > 0, ``max_iter`` per pair, ``tol``."""

    @property
    def reg(self) -> float: ...
    @property
    def max_iter(self) -> int: ...
    @property
    def tol(self) -> float: ...
    def __new__(
        cls, *, reg: float, max_iter: int = ..., tol: float = ...
    ) -> BatchSinkhornOptions: ...

@final
class BatchSinkhornResult:
    """Per-pair results of :func:`sinkhorn_batch`, arrays of shape (n_sources, n_targets)."""

    @property
    def transport_cost(self) -> NDArray[np.float64]: ...
    @property
    def objective(self) -> NDArray[np.float64]: ...
    @property
    def neg_entropy(self) -> NDArray[np.float64]: ...
    @property
    def marginal_error(self) -> NDArray[np.float64]: ...
    @property
    def n_iter(self) -> NDArray[np.uint64]: ...
    @property
    def converged(self) -> NDArray[np.bool_]: ...
    @property
    def displacement(self) -> NDArray[np.float64] | None: ...

def ground_cost_matrix(
    x: NDArray[np.float64], y: NDArray[np.float64], options: GroundCostOptions
) -> NDArray[np.float64]: ...
def sinkhorn_batch(
    cost: NDArray[np.float64],
    sources: NDArray[np.float64],
    targets: NDArray[np.float64],
    options: BatchSinkhornOptions,
    x: NDArray[np.float64] | None = None,
    y: NDArray[np.float64] | None = None,
) -> BatchSinkhornResult: ...
