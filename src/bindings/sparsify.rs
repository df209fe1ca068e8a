//! Bindings of entropic sparsification and of the separable grid kernel: arrays plus one
//! [`SparsifyOptions`] in, a [`SparsifyResult`] (one measure) or [`SparsifyBatch`] (a stack,
//! solved in parallel) out.

use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

use super::interrupt::run_interruptible;
use super::options::py_options;
use crate::core::cost::{DenseCost, GridCost};
use crate::core::error::check_choice;
use crate::core::sinkhorn::{sinkhorn, SinkhornParams};
use crate::core::sparsify::{
    sparsify, sparsify_batch, sparsify_rawson2022, Solver, SparsifyOutput, SparsifyParams,
};
use crate::core::OtError;
use numpy::ndarray::{Array1, Array2, ArrayView1, ArrayView2};

py_options! {
    /// Options of eq. (7)'s solvers. Value rules (λ ≥ 0, ε > 0, …) are checked by the core when a
    /// solve starts; this class only converts.
    pub struct SparsifyOptions {
        /// λ ≥ 0.
        sparsity: f64,
        /// ε > 0, in cost units.
        reg: f64,
        /// "projected_gradient" (Algorithm 2) or "majorize".
        solver: String = "projected_gradient".to_owned(),
        /// Largest step of the line search (projected gradient).
        step_size: f64 = 0.01,
        max_iter: i64 = 50,
        /// Projected gradient: L1 norm of the projected gradient; majorize: L1 change of μ per step.
        tol: f64 = 1e-9,
        /// Smallest step the line search tries.
        min_step: f64 = 1e-12,
        sinkhorn_max_iter: i64 = 10_000,
        sinkhorn_tol: f64 = 1e-9,
        /// Keep every iterate (single-measure calls only).
        record_history: bool = false,
        /// "entropic" (eq. 7) or "rawson2022" (the paper's figures; dense costs only).
        objective: String = "entropic".to_owned(),
    }
}

impl SparsifyOptions {
    fn params(&self) -> Result<SparsifyParams, OtError> {
        let count = |name: &'static str, v: i64, low: i64| {
            usize::try_from(v)
                .ok()
                .filter(|&u| u as i64 >= low)
                .ok_or_else(|| OtError::invalid(name, format!("must be at least {low}, got {v}")))
        };
        let solver = check_choice(
            "solver",
            &self.solver,
            &[
                ("projected_gradient", Solver::ProjectedGradient),
                ("majorize", Solver::Majorize),
            ],
        )?;
        Ok(SparsifyParams {
            sparsity: self.sparsity,
            eps: self.reg,
            solver,
            step_size: self.step_size,
            max_iter: count("max_iter", self.max_iter, 0)?,
            tol: self.tol,
            min_step: self.min_step,
            sinkhorn_max_iter: count("sinkhorn_max_iter", self.sinkhorn_max_iter, 1)?,
            sinkhorn_tol: self.sinkhorn_tol,
            record_history: self.record_history,
        })
    }

    /// Whether the dense solve uses the paper's compatibility procedure.
    fn rawson2022(&self) -> Result<bool, OtError> {
        match self.objective.as_str() {
            "entropic" => Ok(false),
            "rawson2022" if self.solver == "projected_gradient" => Ok(true),
            "rawson2022" => Err(OtError::invalid(
                "solver",
                "objective 'rawson2022' is the paper's projected gradient procedure",
            )),
            other => Err(OtError::invalid(
                "objective",
                format!("must be 'entropic' or 'rawson2022', got {other:?}"),
            )),
        }
    }
}

/// One sparse approximation and its diagnostics.
#[pyclass(frozen, get_all, module = "otinverse._core")]
pub struct SparsifyResult {
    /// The sparse approximation μ (sums to 1).
    mu: Py<PyArray1<f64>>,
    /// Accepted descent steps.
    n_iter: usize,
    /// J(μ) (rawson2022: the paper's line-search objective; majorize: an upper bound of J(μ),
    /// exact at a fixed point).
    objective: f64,
    /// The OT term of `objective`.
    ot_value: f64,
    /// H(μ).
    entropy: f64,
    /// The stationarity measure compared with `tol`.
    grad_norm: f64,
    /// "gradient", "line_search" or "max_iter".
    stop: &'static str,
    /// J after each accepted step (projected gradient: starting with J(μ₀)).
    objectives: Py<PyArray1<f64>>,
    /// The iterates, shape (k + 1, n), when `record_history`; otherwise None.
    history: Option<Py<PyArray2<f64>>>,
    /// Sinkhorn solves that stopped at `sinkhorn_max_iter` before `sinkhorn_tol`.
    sinkhorn_unconverged: usize,
    /// Sinkhorn iterations, summed over all solves.
    sinkhorn_iters: usize,
}

impl SparsifyResult {
    fn new(py: Python<'_>, out: SparsifyOutput) -> Self {
        let n = out.mu.len();
        let history = (!out.history.is_empty()).then(|| {
            let rows: Vec<ArrayView1<'_, f64>> = out.history.iter().map(|h| h.view()).collect();
            let arr = numpy::ndarray::stack(numpy::ndarray::Axis(0), &rows)
                .unwrap_or_else(|_| Array2::zeros((0, n)));
            arr.into_pyarray(py).unbind()
        });
        SparsifyResult {
            mu: out.mu.into_pyarray(py).unbind(),
            n_iter: out.n_iter,
            objective: out.objective,
            ot_value: out.ot_value,
            entropy: out.entropy,
            grad_norm: out.grad_norm,
            stop: out.stop.as_str(),
            objectives: Array1::from(out.objectives).into_pyarray(py).unbind(),
            history,
            sinkhorn_unconverged: out.sinkhorn_unconverged,
            sinkhorn_iters: out.sinkhorn_iters,
        }
    }
}

/// Sparse approximations of a stack of measures, one row each, with per-row diagnostics.
#[pyclass(frozen, get_all, module = "otinverse._core")]
pub struct SparsifyBatch {
    /// The sparse approximations, shape (n_samples, n_features), rows summing to 1.
    mu: Py<PyArray2<f64>>,
    /// Accepted descent steps per row.
    n_iter: Py<PyArray1<u64>>,
    /// J of each returned μ (see `SparsifyResult.objective`).
    objective: Py<PyArray1<f64>>,
    /// H(μ) per row.
    entropy: Py<PyArray1<f64>>,
    /// The stationarity measure per row.
    grad_norm: Py<PyArray1<f64>>,
    /// Why each row stopped: "gradient", "line_search" or "max_iter".
    stop: Vec<&'static str>,
    /// Sinkhorn solves per row that stopped before `sinkhorn_tol`.
    sinkhorn_unconverged: Py<PyArray1<u64>>,
}

impl SparsifyBatch {
    fn new(py: Python<'_>, outs: Vec<SparsifyOutput>, n_features: usize) -> Self {
        let n = outs.len();
        let mut mu = Array2::zeros((n, n_features));
        for (mut row, out) in mu.outer_iter_mut().zip(&outs) {
            row.assign(&out.mu);
        }
        let floats = |f: fn(&SparsifyOutput) -> f64| {
            outs.iter()
                .map(f)
                .collect::<Array1<f64>>()
                .into_pyarray(py)
                .unbind()
        };
        let counts = |f: fn(&SparsifyOutput) -> usize| {
            outs.iter()
                .map(|o| f(o) as u64)
                .collect::<Array1<u64>>()
                .into_pyarray(py)
                .unbind()
        };
        SparsifyBatch {
            mu: mu.into_pyarray(py).unbind(),
            n_iter: counts(|o| o.n_iter),
            objective: floats(|o| o.objective),
            entropy: floats(|o| o.entropy),
            grad_norm: floats(|o| o.grad_norm),
            stop: outs.iter().map(|o| o.stop.as_str()).collect(),
            sinkhorn_unconverged: counts(|o| o.sinkhorn_unconverged),
        }
    }
}

fn dense_one(
    cost: ArrayView2<'_, f64>,
    nu: ArrayView1<'_, f64>,
    mu0: Option<ArrayView1<'_, f64>>,
    p: &SparsifyParams,
    rawson2022: bool,
) -> Result<SparsifyOutput, OtError> {
    if rawson2022 {
        sparsify_rawson2022(cost, nu, mu0, p)
    } else {
        sparsify(&DenseCost::new(cost)?, nu, mu0, p)
    }
}

/// Sparsification of one measure with a dense cost.
#[pyfunction]
#[pyo3(signature = (nu, cost, options, mu0=None))]
fn sparsify_dense(
    py: Python<'_>,
    nu: PyReadonlyArray1<'_, f64>,
    cost: PyReadonlyArray2<'_, f64>,
    options: &SparsifyOptions,
    mu0: Option<PyReadonlyArray1<'_, f64>>,
) -> PyResult<SparsifyResult> {
    let (p, rawson) = (options.params()?, options.rawson2022()?);
    let (nu, cost) = (nu.as_array(), cost.as_array());
    let mu0 = mu0.as_ref().map(|m| m.as_array());
    let out = run_interruptible(py, || dense_one(cost, nu, mu0, &p, rawson))?;
    Ok(SparsifyResult::new(py, out))
}

/// Sparsification of every row of `X` with a dense cost, in parallel over rows.
#[pyfunction]
fn sparsify_dense_batch(
    py: Python<'_>,
    x: PyReadonlyArray2<'_, f64>,
    cost: PyReadonlyArray2<'_, f64>,
    options: &SparsifyOptions,
) -> PyResult<SparsifyBatch> {
    let (p, rawson) = (options.params()?, options.rawson2022()?);
    let (x, cost) = (x.as_array(), cost.as_array());
    let outs = run_interruptible(py, || {
        sparsify_batch(x, |nu| dense_one(cost, nu, None, &p, rawson))
    })?;
    Ok(SparsifyBatch::new(py, outs, x.ncols()))
}

fn grid(shape: (usize, usize), spacing: (f64, f64)) -> Result<GridCost, OtError> {
    GridCost::new(shape.0, shape.1, spacing.0, spacing.1)
}

fn entropic_only(options: &SparsifyOptions) -> Result<SparsifyParams, OtError> {
    if options.rawson2022()? {
        return Err(OtError::invalid(
            "objective",
            "'rawson2022' needs a dense cost, not the grid kernel",
        ));
    }
    options.params()
}

/// Sparsification of one image (flattened in C order) with the separable squared-Euclidean
/// kernel on a `shape` grid of `spacing` (dy, dx).
#[pyfunction]
#[pyo3(signature = (nu, shape, spacing, options, mu0=None))]
fn sparsify_grid(
    py: Python<'_>,
    nu: PyReadonlyArray1<'_, f64>,
    shape: (usize, usize),
    spacing: (f64, f64),
    options: &SparsifyOptions,
    mu0: Option<PyReadonlyArray1<'_, f64>>,
) -> PyResult<SparsifyResult> {
    let p = entropic_only(options)?;
    let nu = nu.as_array();
    let mu0 = mu0.as_ref().map(|m| m.as_array());
    let out = run_interruptible(py, || sparsify(&grid(shape, spacing)?, nu, mu0, &p))?;
    Ok(SparsifyResult::new(py, out))
}

/// Sparsification of every row of `X` (images flattened in C order) on one grid, in parallel
/// over rows.
#[pyfunction]
fn sparsify_grid_batch(
    py: Python<'_>,
    x: PyReadonlyArray2<'_, f64>,
    shape: (usize, usize),
    spacing: (f64, f64),
    options: &SparsifyOptions,
) -> PyResult<SparsifyBatch> {
    let p = entropic_only(options)?;
    let x = x.as_array();
    let outs = run_interruptible(py, || {
        let k = grid(shape, spacing)?;
        sparsify_batch(x, |nu| sparsify(&k, nu, None, &p))
    })?;
    Ok(SparsifyBatch::new(py, outs, x.ncols()))
}

/// Balanced Sinkhorn on a grid.
#[pyclass(frozen, get_all, module = "otinverse._core")]
pub struct GridSinkhornResult {
    /// Potential of `a`.
    f: Py<PyArray1<f64>>,
    /// Potential of `b`.
    g: Py<PyArray1<f64>>,
    /// ⟨C, P⟩ + ε KL(P | a⊗b).
    objective: f64,
    n_iter: usize,
    /// Marginal error ≤ tol.
    converged: bool,
}

/// Balanced Sinkhorn between `a` and `b` on a `shape` grid with the separable kernel.
#[pyfunction]
#[pyo3(signature = (a, b, shape, spacing, *, reg, max_iter=1000, tol=1e-9))]
#[allow(clippy::too_many_arguments)]
fn sinkhorn_grid(
    py: Python<'_>,
    a: PyReadonlyArray1<'_, f64>,
    b: PyReadonlyArray1<'_, f64>,
    shape: (usize, usize),
    spacing: (f64, f64),
    reg: f64,
    max_iter: usize,
    tol: f64,
) -> PyResult<GridSinkhornResult> {
    let (a, b) = (a.as_array(), b.as_array());
    let mut p = SinkhornParams::new(reg);
    p.max_iter = max_iter;
    p.tol = tol;
    let out = run_interruptible(py, || sinkhorn(&grid(shape, spacing)?, a, b, &p, None))?;
    Ok(GridSinkhornResult {
        f: out.f.into_pyarray(py).unbind(),
        g: out.g.into_pyarray(py).unbind(),
        objective: out.objective,
        n_iter: out.n_iter,
        converged: out.converged,
    })
}

/// The dense (ny·nx)² cost matrix of the grid kernel (for tests and small problems).
#[pyfunction]
fn grid_cost_matrix(
    py: Python<'_>,
    shape: (usize, usize),
    spacing: (f64, f64),
) -> PyResult<Bound<'_, PyArray2<f64>>> {
    let k = grid(shape, spacing)?;
    let n = shape.0 * shape.1;
    Ok(Array2::from_shape_fn((n, n), |(i, j)| k.cost(i, j)).into_pyarray(py))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SparsifyOptions>()?;
    m.add_class::<SparsifyResult>()?;
    m.add_class::<SparsifyBatch>()?;
    m.add_class::<GridSinkhornResult>()?;
    m.add_function(wrap_pyfunction!(sparsify_dense, m)?)?;
    m.add_function(wrap_pyfunction!(sparsify_dense_batch, m)?)?;
    m.add_function(wrap_pyfunction!(sparsify_grid, m)?)?;
    m.add_function(wrap_pyfunction!(sparsify_grid_batch, m)?)?;
    m.add_function(wrap_pyfunction!(sinkhorn_grid, m)?)?;
    m.add_function(wrap_pyfunction!(grid_cost_matrix, m)?)?;
    Ok(())
}
