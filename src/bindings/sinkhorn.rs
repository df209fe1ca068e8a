//! Bindings of the Sinkhorn family, the plan and exact 1-D OT.
//!
//! Every Sinkhorn-based binding takes the arrays plus one [`SinkhornOptions`] and returns a
//! [`SinkhornSolution`] (or a result that contains one); the core validates every value.

use ndarray::ArrayView1;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

use super::interrupt::run_interruptible;
use super::options::py_options;
use crate::core::cost::{CostKernel, DenseCost, PointCost};
use crate::core::error::check_choice;
use crate::core::sinkhorn::{
    sinkhorn, KernelChoice, PointClouds, SinkhornOutput, SinkhornParams, Update,
};
use crate::core::wasserstein::wasserstein_1d;
use crate::core::OtError;

py_options! {
    /// Options of a Sinkhorn solve, shared by every Sinkhorn-based function of this module.
    ///
    /// Stored as given; the core checks the values when a solve starts (``reg > 0``, reaches > 0,
    /// ``max_iter >= 1``, ``tol >= 0``, ``eps_scaling`` in (0, 1), ``stage_iter >= 1``) and raises
    /// ``InvalidArgumentError`` naming the option.
    pub struct SinkhornOptions {
        /// Entropic regularisation ε, in cost units.
        reg: f64,
        /// KL relaxation ρ of the first marginal (rows); ``None`` keeps it exact.
        reach_a: Option<f64> = None,
        /// KL relaxation ρ of the second marginal (columns); ``None`` keeps it exact.
        reach_b: Option<f64> = None,
        /// Maximum number of full updates, over all ε-scaling stages.
        max_iter: i64 = 1000,
        /// Stop when the relative L1 marginal error is at most ``tol``.
        tol: f64 = 1e-9,
        /// ``"alternating"`` (Gauss–Seidel) or ``"symmetric"`` (averaged) updates.
        update: String = "alternating".to_owned(),
        /// Anneal ε from the cost's diameter by this factor per stage; ``None`` solves at ``reg``.
        eps_scaling: Option<f64> = None,
        /// Adaptive over-relaxation of the alternating updates.
        overrelaxation: bool = true,
        /// Updates per intermediate ε-scaling stage; ``None`` iterates each to a loose tolerance.
        stage_iter: Option<usize> = None,
        /// How the iterations evaluate the Gibbs kernel: ``"auto"``, ``"log"``, ``"stored"``,
        /// ``"stored_f32"`` or ``"sparse"`` (point clouds only).
        kernel: String = "auto".to_owned(),
    }
}

impl SinkhornOptions {
    /// The core's parameters. Only the translation happens here: the option string becomes the
    /// enum, and a negative `max_iter` becomes 0 so that the core's rule rejects it.
    pub(super) fn params(&self) -> Result<SinkhornParams, OtError> {
        let update = check_choice(
            "update",
            &self.update,
            &[
                ("alternating", Update::Alternating),
                ("symmetric", Update::Symmetric),
            ],
        )?;
        let kernel = check_choice(
            "kernel",
            &self.kernel,
            &[
                ("auto", KernelChoice::Auto),
                ("log", KernelChoice::Log),
                ("stored", KernelChoice::Stored64),
                ("stored_f32", KernelChoice::Stored32),
                ("sparse", KernelChoice::Sparse),
            ],
        )?;
        Ok(SinkhornParams {
            eps: self.reg,
            reach_a: self.reach_a,
            reach_b: self.reach_b,
            max_iter: usize::try_from(self.max_iter).unwrap_or(0),
            tol: self.tol,
            update,
            eps_scaling: self.eps_scaling,
            stage_iter: self.stage_iter,
            overrelaxation: self.overrelaxation,
            kernel,
            keep_plan: false,
        })
    }
}

/// Outcome of a Sinkhorn solve, in the plan convention `P_ij = a_i b_j exp((f_i + g_j − C_ij)/ε)`.
/// The package's one result type of the family is `otinverse.SinkhornResult`, which wraps it
/// (and computes a point cloud's plan on demand).
#[pyclass(frozen, get_all, module = "otinverse._core")]
pub struct SinkhornSolution {
    /// Dual potential of the rows (cost units).
    f: Py<PyArray1<f64>>,
    /// Dual potential of the columns (cost units).
    g: Py<PyArray1<f64>>,
    /// `<C, P>`.
    transport_cost: f64,
    /// `<C, P> + ε KL(P | a⊗b) + ρ_a KL(P1 | a) + ρ_b KL(Pᵀ1 | b)`.
    objective: f64,
    /// Full updates of both potentials, over all ε-scaling stages.
    n_iter: usize,
    /// L1 distance of the plan's marginals to their targets, relative to each marginal's mass.
    marginal_error: f64,
    /// Whether ``marginal_error <= tol`` was reached within ``max_iter``.
    converged: bool,
    /// The ε stages of a multiscale solve, coarse levels first, as ``(points, reg, n_iter,
    /// kept_per_row)``: the level's number of points (rows), its ε, its iterations and the mean
    /// stored kernel entries per row. Empty for a single-level solve.
    stages: Vec<(usize, f64, usize, f64)>,
    /// The plan whose marginal error this is, when the solve was asked for it (``with_plan``).
    plan: Option<Py<PyArray2<f64>>>,
}

impl SinkhornSolution {
    /// Moves the potentials into NumPy arrays (no copy).
    pub(super) fn new(py: Python<'_>, out: SinkhornOutput) -> Self {
        SinkhornSolution {
            f: out.f.into_pyarray(py).unbind(),
            g: out.g.into_pyarray(py).unbind(),
            transport_cost: out.transport_cost,
            objective: out.objective,
            n_iter: out.n_iter,
            marginal_error: out.marginal_error,
            converged: out.converged,
            stages: out
                .stages
                .iter()
                .map(|s| (s.points, s.eps, s.n_iter, s.kept_per_row))
                .collect(),
            plan: out.plan.map(|p| p.into_pyarray(py).unbind()),
        }
    }
}

/// Warm-start potentials `(f, g)` as the core takes them.
type WarmStart<'a> = Option<(ArrayView1<'a, f64>, ArrayView1<'a, f64>)>;

/// The warm-start potentials, which come as a pair or not at all.
pub(super) fn init_pair<'a>(
    f_init: &'a Option<PyReadonlyArray1<'_, f64>>,
    g_init: &'a Option<PyReadonlyArray1<'_, f64>>,
) -> Result<WarmStart<'a>, OtError> {
    match (f_init, g_init) {
        (Some(f), Some(g)) => Ok(Some((f.as_array(), g.as_array()))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(OtError::invalid(
            "g_init",
            "must be given together with f_init",
        )),
        (None, Some(_)) => Err(OtError::invalid(
            "f_init",
            "must be given together with g_init",
        )),
    }
}

/// Sinkhorn on a dense cost matrix (any strides, borrowed); with ``with_plan``, the result
/// carries the plan, computed in the pass that measures its marginal error.
#[pyfunction]
#[pyo3(signature = (a, b, cost, options, f_init=None, g_init=None, *, with_plan=false))]
#[allow(clippy::too_many_arguments)]
fn sinkhorn_dense(
    py: Python<'_>,
    a: PyReadonlyArray1<'_, f64>,
    b: PyReadonlyArray1<'_, f64>,
    cost: PyReadonlyArray2<'_, f64>,
    options: &SinkhornOptions,
    f_init: Option<PyReadonlyArray1<'_, f64>>,
    g_init: Option<PyReadonlyArray1<'_, f64>>,
    with_plan: bool,
) -> PyResult<SinkhornSolution> {
    let mut params = options.params()?;
    params.keep_plan = with_plan;
    let init = init_pair(&f_init, &g_init)?;
    let (view, a, b) = (cost.as_array(), a.as_array(), b.as_array());
    // The kernel is built on the worker thread too: checking a large matrix takes time.
    let out = run_interruptible(py, || sinkhorn(&DenseCost::new(view)?, a, b, &params, init))?;
    Ok(SinkhornSolution::new(py, out))
}

/// Sinkhorn on the cost |x − y|^p of two point clouds (x: n×d, y: m×d), never materialised.
#[pyfunction]
#[pyo3(signature = (a, x, b, y, p, options, f_init=None, g_init=None))]
#[allow(clippy::too_many_arguments)]
fn sinkhorn_points(
    py: Python<'_>,
    a: PyReadonlyArray1<'_, f64>,
    x: PyReadonlyArray2<'_, f64>,
    b: PyReadonlyArray1<'_, f64>,
    y: PyReadonlyArray2<'_, f64>,
    p: f64,
    options: &SinkhornOptions,
    f_init: Option<PyReadonlyArray1<'_, f64>>,
    g_init: Option<PyReadonlyArray1<'_, f64>>,
) -> PyResult<SinkhornSolution> {
    let params = options.params()?;
    let init = init_pair(&f_init, &g_init)?;
    let clouds = PointClouds {
        x: x.as_array(),
        y: y.as_array(),
        p,
        a: a.as_array(),
        b: b.as_array(),
    };
    // The core picks the kernel (online, stored or truncated multiscale) for the point clouds.
    let out = run_interruptible(py, || {
        crate::core::sinkhorn::sinkhorn_points(clouds, &params, init)
    })?;
    Ok(SinkhornSolution::new(py, out))
}

/// `P_ij = exp((row_i + col_j − C_ij)/reg)` for a dense cost (`row = f + reg·log a`, `col = g + reg·log b`).
#[pyfunction]
fn plan_dense<'py>(
    py: Python<'py>,
    row: PyReadonlyArray1<'py, f64>,
    col: PyReadonlyArray1<'py, f64>,
    cost: PyReadonlyArray2<'py, f64>,
    reg: f64,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let view = cost.as_array();
    plan_of(py, || DenseCost::new(view), &row, &col, reg)
}

/// The plan of the online cost |x − y|^p (materialised n×m on request).
#[pyfunction]
fn plan_points<'py>(
    py: Python<'py>,
    row: PyReadonlyArray1<'py, f64>,
    x: PyReadonlyArray2<'py, f64>,
    col: PyReadonlyArray1<'py, f64>,
    y: PyReadonlyArray2<'py, f64>,
    reg: f64,
    p: f64,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let (xv, yv) = (x.as_array(), y.as_array());
    plan_of(py, || PointCost::new(xv, yv, p), &row, &col, reg)
}

/// The plan `P_ij = exp((row_i + col_j − C_ij)/reg)` of the kernel `kernel` builds,
/// materialised with the GIL released.
fn plan_of<'py, K: CostKernel>(
    py: Python<'py>,
    kernel: impl FnOnce() -> Result<K, OtError> + Send,
    row: &PyReadonlyArray1<'_, f64>,
    col: &PyReadonlyArray1<'_, f64>,
    reg: f64,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let (row, col) = (row.as_array(), col.as_array());
    let plan = py.detach(|| Ok::<_, OtError>(kernel()?.plan(&row.to_vec(), &col.to_vec(), reg)))?;
    Ok(plan.into_pyarray(py))
}

/// The cost gradient of a point-cloud plan `P_ij = exp((row_i + col_j − |x_i − y_j|^p)/reg)`
/// in x, and its row sums, computed on the online kernel without storing the plan.
#[pyclass(frozen, get_all, module = "otinverse._core")]
pub struct PointPlanGradient {
    /// `Σ_j P_ij ∇_x c(x_i, y_j)` (n×d).
    grad: Py<PyArray2<f64>>,
    /// `Σ_j P_ij` (n).
    row_sums: Py<PyArray1<f64>>,
}

/// [`PointPlanGradient`] of the plan with row terms `row` and column terms `col` (in the
/// solve's convention `f + reg·log a`, `g + reg·log b`), with the GIL released (p >= 1).
#[pyfunction]
fn point_plan_gradient(
    py: Python<'_>,
    row: PyReadonlyArray1<'_, f64>,
    x: PyReadonlyArray2<'_, f64>,
    col: PyReadonlyArray1<'_, f64>,
    y: PyReadonlyArray2<'_, f64>,
    reg: f64,
    p: f64,
) -> PyResult<PointPlanGradient> {
    let (xv, yv) = (x.as_array(), y.as_array());
    let (row, col) = (row.as_array().to_vec(), col.as_array().to_vec());
    let out = run_interruptible(py, || {
        PointCost::new(xv, yv, p)?.plan_gradient(&row, &col, reg)
    })?;
    Ok(PointPlanGradient {
        grad: out.grad.into_pyarray(py).unbind(),
        row_sums: out.row_sums.into_pyarray(py).unbind(),
    })
}

/// The n×m matrix `|x_i − y_j|^p` of two point clouds (x: n×d, y: m×d).
#[pyfunction]
fn point_cost_matrix<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f64>,
    y: PyReadonlyArray2<'py, f64>,
    p: f64,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let (xv, yv) = (x.as_array(), y.as_array());
    // `wasserstein`'s exact path: W_p^p keeps p ≥ 1 (sinkhorn_points also takes concave p < 1).
    crate::core::error::check_exponent("p", p)?;
    let cost = py.detach(|| PointCost::new(xv, yv, p).map(|k| k.dense()));
    Ok(cost?.into_pyarray(py))
}

/// Exact 1-D OT cost W_p^p between the weighted points (x, a) and (y, b), masses normalised.
#[pyfunction]
fn wasserstein_1d_cost(
    py: Python<'_>,
    x: PyReadonlyArray1<'_, f64>,
    a: PyReadonlyArray1<'_, f64>,
    y: PyReadonlyArray1<'_, f64>,
    b: PyReadonlyArray1<'_, f64>,
    p: f64,
) -> PyResult<f64> {
    let (x, a, y, b) = (
        x.as_array().to_vec(),
        a.as_array().to_vec(),
        y.as_array().to_vec(),
        b.as_array().to_vec(),
    );
    Ok(py.detach(|| wasserstein_1d(&x, &a, &y, &b, p))?)
}

/// Address of the first element of the view the dense kernel borrows: lets the tests check that
/// C-ordered, F-ordered and strided float64 arrays reach the core without a copy.
#[pyfunction]
fn borrowed_address(cost: PyReadonlyArray2<'_, f64>) -> PyResult<usize> {
    let view = cost.as_array();
    let kernel = DenseCost::new(view)?;
    // The kernel stores Cᵀ for F-ordered input; its first element is still C[0, 0].
    Ok(kernel.as_ptr() as usize)
}

/// The instruction set the exp kernels were dispatched to on this CPU.
#[pyfunction]
fn simd_level() -> &'static str {
    match crate::core::simd::simd_level() {
        crate::core::simd::SimdLevel::Avx512 => "avx512",
        crate::core::simd::SimdLevel::Avx2 => "avx2",
        crate::core::simd::SimdLevel::Baseline => "baseline",
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SinkhornOptions>()?;
    m.add_class::<SinkhornSolution>()?;
    m.add_function(wrap_pyfunction!(sinkhorn_dense, m)?)?;
    m.add_function(wrap_pyfunction!(sinkhorn_points, m)?)?;
    m.add_function(wrap_pyfunction!(plan_dense, m)?)?;
    m.add_function(wrap_pyfunction!(plan_points, m)?)?;
    m.add_class::<PointPlanGradient>()?;
    m.add_function(wrap_pyfunction!(point_plan_gradient, m)?)?;
    m.add_function(wrap_pyfunction!(point_cost_matrix, m)?)?;
    m.add_function(wrap_pyfunction!(wasserstein_1d_cost, m)?)?;
    m.add_function(wrap_pyfunction!(simd_level, m)?)?;
    Ok(())
}

/// The test-only functions of `otinverse._core.testing`.
pub fn register_testing(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(borrowed_address, m)?)?;
    Ok(())
}
