//! Bindings of the Sinkhorn family, the plan and exact 1-D OT.

use ndarray::ArrayView1;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

use super::errors::CoreError;
use super::interrupt::run_interruptible;
use crate::core::cost::{CostKernel, DenseCost, PointCost};
use crate::core::sinkhorn::{sinkhorn, SinkhornOutput, SinkhornParams, Update};
use crate::core::wasserstein::wasserstein_1d;
use crate::core::OtError;

/// (f, g, transport_cost, objective, n_iter, marginal_error, converged)
type SinkhornTuple<'py> = (
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<f64>>,
    f64,
    f64,
    usize,
    f64,
    bool,
);

/// The shared parameter parsing of every Sinkhorn-based binding.
#[allow(clippy::too_many_arguments)]
pub(super) fn params(
    reg: f64,
    reach_a: Option<f64>,
    reach_b: Option<f64>,
    max_iter: i64,
    tol: f64,
    update: &str,
    eps_scaling: Option<f64>,
    overrelaxation: bool,
) -> Result<SinkhornParams, CoreError> {
    let update = match update {
        "alternating" => Update::Alternating,
        "symmetric" => Update::Symmetric,
        other => {
            return Err(OtError::invalid(
                "update",
                format!("must be 'alternating' or 'symmetric', got {other:?}"),
            )
            .into())
        }
    };
    if max_iter < 1 {
        return Err(
            OtError::invalid("max_iter", format!("must be at least 1, got {max_iter}")).into(),
        );
    }
    Ok(SinkhornParams {
        eps: reg,
        reach_a,
        reach_b,
        max_iter: max_iter as usize,
        tol,
        update,
        eps_scaling,
        stage_iter: None,
        overrelaxation,
    })
}

fn into_tuple(py: Python<'_>, out: SinkhornOutput) -> SinkhornTuple<'_> {
    (
        out.f.into_pyarray(py),
        out.g.into_pyarray(py),
        out.transport_cost,
        out.objective,
        out.n_iter,
        out.marginal_error,
        out.converged,
    )
}

/// The warm-start potentials, which come as a pair or not at all.
pub(super) fn init_pair<'a>(
    f_init: &'a Option<PyReadonlyArray1<'_, f64>>,
    g_init: &'a Option<PyReadonlyArray1<'_, f64>>,
) -> Result<Option<(ArrayView1<'a, f64>, ArrayView1<'a, f64>)>, CoreError> {
    match (f_init, g_init) {
        (Some(f), Some(g)) => Ok(Some((f.as_array(), g.as_array()))),
        (None, None) => Ok(None),
        (Some(_), None) => {
            Err(OtError::invalid("g_init", "must be given together with f_init").into())
        }
        (None, Some(_)) => {
            Err(OtError::invalid("f_init", "must be given together with g_init").into())
        }
    }
}

fn run<K: CostKernel>(
    py: Python<'_>,
    kernel: &K,
    a: &PyReadonlyArray1<'_, f64>,
    b: &PyReadonlyArray1<'_, f64>,
    params: &SinkhornParams,
    f_init: &Option<PyReadonlyArray1<'_, f64>>,
    g_init: &Option<PyReadonlyArray1<'_, f64>>,
) -> PyResult<SinkhornOutput> {
    let (a, b) = (a.as_array(), b.as_array());
    let init = init_pair(f_init, g_init)?;
    run_interruptible(py, || sinkhorn(kernel, a, b, params, init))
}

/// Sinkhorn on a dense cost matrix (any strides, borrowed).
#[pyfunction]
#[pyo3(signature = (a, b, cost, reg, reach_a, reach_b, max_iter, tol, update, eps_scaling, overrelaxation, f_init, g_init))]
#[allow(clippy::too_many_arguments)]
fn sinkhorn_dense<'py>(
    py: Python<'py>,
    a: PyReadonlyArray1<'py, f64>,
    b: PyReadonlyArray1<'py, f64>,
    cost: PyReadonlyArray2<'py, f64>,
    reg: f64,
    reach_a: Option<f64>,
    reach_b: Option<f64>,
    max_iter: i64,
    tol: f64,
    update: &str,
    eps_scaling: Option<f64>,
    overrelaxation: bool,
    f_init: Option<PyReadonlyArray1<'py, f64>>,
    g_init: Option<PyReadonlyArray1<'py, f64>>,
) -> PyResult<SinkhornTuple<'py>> {
    let p = params(
        reg,
        reach_a,
        reach_b,
        max_iter,
        tol,
        update,
        eps_scaling,
        overrelaxation,
    )?;
    let view = cost.as_array();
    let kernel = py.detach(|| DenseCost::new(view)).map_err(CoreError)?;
    let out = run(py, &kernel, &a, &b, &p, &f_init, &g_init)?;
    Ok(into_tuple(py, out))
}

/// Sinkhorn on the online cost |x − y|^p of two point clouds.
#[pyfunction]
#[pyo3(signature = (a, x, b, y, reg, p, reach_a, reach_b, max_iter, tol, update, eps_scaling, overrelaxation, f_init, g_init))]
#[allow(clippy::too_many_arguments)]
fn sinkhorn_points<'py>(
    py: Python<'py>,
    a: PyReadonlyArray1<'py, f64>,
    x: PyReadonlyArray2<'py, f64>,
    b: PyReadonlyArray1<'py, f64>,
    y: PyReadonlyArray2<'py, f64>,
    reg: f64,
    p: f64,
    reach_a: Option<f64>,
    reach_b: Option<f64>,
    max_iter: i64,
    tol: f64,
    update: &str,
    eps_scaling: Option<f64>,
    overrelaxation: bool,
    f_init: Option<PyReadonlyArray1<'py, f64>>,
    g_init: Option<PyReadonlyArray1<'py, f64>>,
) -> PyResult<SinkhornTuple<'py>> {
    let params = params(
        reg,
        reach_a,
        reach_b,
        max_iter,
        tol,
        update,
        eps_scaling,
        overrelaxation,
    )?;
    let (xv, yv) = (x.as_array(), y.as_array());
    let kernel = py.detach(|| PointCost::new(xv, yv, p)).map_err(CoreError)?;
    let out = run(py, &kernel, &a, &b, &params, &f_init, &g_init)?;
    Ok(into_tuple(py, out))
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
    let (row, col, view) = (row.as_array(), col.as_array(), cost.as_array());
    let plan = py.detach(|| -> Result<_, OtError> {
        let k = DenseCost::new(view)?;
        Ok(k.plan(&row.to_vec(), &col.to_vec(), reg))
    });
    Ok(plan.map_err(CoreError)?.into_pyarray(py))
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
    let (row, col, xv, yv) = (row.as_array(), col.as_array(), x.as_array(), y.as_array());
    let plan = py.detach(|| -> Result<_, OtError> {
        let k = PointCost::new(xv, yv, p)?;
        Ok(k.plan(&row.to_vec(), &col.to_vec(), reg))
    });
    Ok(plan.map_err(CoreError)?.into_pyarray(py))
}

/// Exact 1-D OT cost W_p^p.
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
    Ok(py
        .detach(|| wasserstein_1d(&x, &a, &y, &b, p))
        .map_err(CoreError)?)
}

/// Address of the first element of the view the dense kernel borrows: lets the tests check that
/// C-ordered, F-ordered and strided float64 arrays reach the core without a copy.
#[pyfunction]
fn _borrowed_address(cost: PyReadonlyArray2<'_, f64>) -> PyResult<usize> {
    let view = cost.as_array();
    let kernel = DenseCost::new(view).map_err(CoreError)?;
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
    m.add_function(wrap_pyfunction!(sinkhorn_dense, m)?)?;
    m.add_function(wrap_pyfunction!(sinkhorn_points, m)?)?;
    m.add_function(wrap_pyfunction!(plan_dense, m)?)?;
    m.add_function(wrap_pyfunction!(plan_points, m)?)?;
    m.add_function(wrap_pyfunction!(wasserstein_1d_cost, m)?)?;
    m.add_function(wrap_pyfunction!(_borrowed_address, m)?)?;
    m.add_function(wrap_pyfunction!(simd_level, m)?)?;
    Ok(())
}
