//! Bindings of entropic sparsification (issue 4) and of the separable grid kernel.

use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::errors::CoreError;
use super::interrupt::run_interruptible;
use crate::core::cost::{DenseCost, GridCost};
use crate::core::sinkhorn::{sinkhorn, SinkhornParams};
use crate::core::sparsify::{
    sparsify, sparsify_rawson2022, SparsifyOutput, SparsifyParams, StopReason,
};
use crate::core::OtError;

#[allow(clippy::too_many_arguments)]
fn params(
    sparsity: f64,
    reg: f64,
    step_size: f64,
    max_iter: i64,
    tol: f64,
    min_step: f64,
    sinkhorn_max_iter: i64,
    sinkhorn_tol: f64,
    record_history: bool,
) -> Result<SparsifyParams, CoreError> {
    if max_iter < 0 {
        return Err(
            OtError::invalid("max_iter", format!("must be non-negative, got {max_iter}")).into(),
        );
    }
    if sinkhorn_max_iter < 1 {
        return Err(OtError::invalid(
            "sinkhorn_max_iter",
            format!("must be at least 1, got {sinkhorn_max_iter}"),
        )
        .into());
    }
    Ok(SparsifyParams {
        sparsity,
        eps: reg,
        step_size,
        max_iter: max_iter as usize,
        tol,
        min_step,
        sinkhorn_max_iter: sinkhorn_max_iter as usize,
        sinkhorn_tol,
        record_history,
    })
}

/// The output as a dict (mu, n_iter, objective, ot_value, entropy, grad_norm, stop, objectives,
/// history (k+1, n) or None, sinkhorn_unconverged, sinkhorn_iters).
fn into_dict(py: Python<'_>, out: SparsifyOutput) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    let n = out.mu.len();
    d.set_item("mu", out.mu.into_pyarray(py))?;
    d.set_item("n_iter", out.n_iter)?;
    d.set_item("objective", out.objective)?;
    d.set_item("ot_value", out.ot_value)?;
    d.set_item("entropy", out.entropy)?;
    d.set_item("grad_norm", out.grad_norm)?;
    let stop = match out.stop {
        StopReason::Gradient => "gradient",
        StopReason::LineSearch => "line_search",
        StopReason::MaxIter => "max_iter",
    };
    d.set_item("stop", stop)?;
    d.set_item(
        "objectives",
        numpy::ndarray::Array1::from(out.objectives).into_pyarray(py),
    )?;
    if out.history.is_empty() {
        d.set_item("history", py.None())?;
    } else {
        let k = out.history.len();
        let flat: Vec<f64> = out.history.iter().flat_map(|h| h.iter().copied()).collect();
        let arr = numpy::ndarray::Array2::from_shape_vec((k, n), flat)
            .expect("history rows have n entries");
        d.set_item("history", arr.into_pyarray(py))?;
    }
    d.set_item("sinkhorn_unconverged", out.sinkhorn_unconverged)?;
    d.set_item("sinkhorn_iters", out.sinkhorn_iters)?;
    Ok(d)
}

/// Sparsification with a dense cost; `objective` is "entropic" or "rawson2022".
#[pyfunction]
#[pyo3(signature = (nu, cost, mu0, sparsity, reg, step_size, max_iter, tol, min_step, sinkhorn_max_iter, sinkhorn_tol, record_history, objective))]
#[allow(clippy::too_many_arguments)]
fn sparsify_dense<'py>(
    py: Python<'py>,
    nu: PyReadonlyArray1<'py, f64>,
    cost: PyReadonlyArray2<'py, f64>,
    mu0: Option<PyReadonlyArray1<'py, f64>>,
    sparsity: f64,
    reg: f64,
    step_size: f64,
    max_iter: i64,
    tol: f64,
    min_step: f64,
    sinkhorn_max_iter: i64,
    sinkhorn_tol: f64,
    record_history: bool,
    objective: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let p = params(
        sparsity,
        reg,
        step_size,
        max_iter,
        tol,
        min_step,
        sinkhorn_max_iter,
        sinkhorn_tol,
        record_history,
    )?;
    let (nu, cost) = (nu.as_array(), cost.as_array());
    let mu0 = mu0.as_ref().map(|m| m.as_array());
    let out = match objective {
        "entropic" => run_interruptible(py, || -> Result<_, OtError> {
            let k = DenseCost::new(cost)?;
            sparsify(&k, nu, mu0, &p)
        }),
        "rawson2022" => run_interruptible(py, || sparsify_rawson2022(cost, nu, mu0, &p)),
        other => Err(CoreError(OtError::invalid(
            "objective",
            format!("must be 'entropic' or 'rawson2022', got {other:?}"),
        ))
        .into()),
    }?;
    into_dict(py, out)
}

/// Sparsification on an (ny, nx) grid with the separable squared-Euclidean kernel.
#[pyfunction]
#[pyo3(signature = (nu, ny, nx, hy, hx, mu0, sparsity, reg, step_size, max_iter, tol, min_step, sinkhorn_max_iter, sinkhorn_tol, record_history))]
#[allow(clippy::too_many_arguments)]
fn sparsify_grid<'py>(
    py: Python<'py>,
    nu: PyReadonlyArray1<'py, f64>,
    ny: usize,
    nx: usize,
    hy: f64,
    hx: f64,
    mu0: Option<PyReadonlyArray1<'py, f64>>,
    sparsity: f64,
    reg: f64,
    step_size: f64,
    max_iter: i64,
    tol: f64,
    min_step: f64,
    sinkhorn_max_iter: i64,
    sinkhorn_tol: f64,
    record_history: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let p = params(
        sparsity,
        reg,
        step_size,
        max_iter,
        tol,
        min_step,
        sinkhorn_max_iter,
        sinkhorn_tol,
        record_history,
    )?;
    let nu = nu.as_array();
    let mu0 = mu0.as_ref().map(|m| m.as_array());
    let out = run_interruptible(py, || -> Result<_, OtError> {
        let k = GridCost::new(ny, nx, hy, hx)?;
        sparsify(&k, nu, mu0, &p)
    })?;
    into_dict(py, out)
}

/// (f, g, objective, n_iter, converged)
type GridTuple<'py> = (
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<f64>>,
    f64,
    usize,
    bool,
);

/// Balanced Sinkhorn between `a` and `b` on an (ny, nx) grid with the separable kernel.
#[pyfunction]
#[pyo3(signature = (a, b, ny, nx, hy, hx, reg, max_iter, tol))]
#[allow(clippy::too_many_arguments)]
fn sinkhorn_grid<'py>(
    py: Python<'py>,
    a: PyReadonlyArray1<'py, f64>,
    b: PyReadonlyArray1<'py, f64>,
    ny: usize,
    nx: usize,
    hy: f64,
    hx: f64,
    reg: f64,
    max_iter: i64,
    tol: f64,
) -> PyResult<GridTuple<'py>> {
    if max_iter < 1 {
        return Err(CoreError(OtError::invalid(
            "max_iter",
            format!("must be at least 1, got {max_iter}"),
        ))
        .into());
    }
    let (a, b) = (a.as_array(), b.as_array());
    let mut p = SinkhornParams::new(reg);
    p.max_iter = max_iter as usize;
    p.tol = tol;
    let out = py
        .detach(|| -> Result<_, OtError> {
            let k = GridCost::new(ny, nx, hy, hx)?;
            sinkhorn(&k, a, b, &p, None)
        })
        .map_err(CoreError)?;
    Ok((
        out.f.into_pyarray(py),
        out.g.into_pyarray(py),
        out.objective,
        out.n_iter,
        out.converged,
    ))
}

/// The dense (ny·nx)² cost matrix of the grid kernel (for tests and small problems).
#[pyfunction]
fn grid_cost_matrix(
    py: Python<'_>,
    ny: usize,
    nx: usize,
    hy: f64,
    hx: f64,
) -> PyResult<Bound<'_, PyArray2<f64>>> {
    let k = GridCost::new(ny, nx, hy, hx).map_err(CoreError)?;
    let n = ny * nx;
    Ok(numpy::ndarray::Array2::from_shape_fn((n, n), |(i, j)| k.cost(i, j)).into_pyarray(py))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(sparsify_dense, m)?)?;
    m.add_function(wrap_pyfunction!(sparsify_grid, m)?)?;
    m.add_function(wrap_pyfunction!(sinkhorn_grid, m)?)?;
    m.add_function(wrap_pyfunction!(grid_cost_matrix, m)?)?;
    Ok(())
}
