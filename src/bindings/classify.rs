//! Bindings of the distance-function ground costs and the batched one-to-many Sinkhorn used by
//! OT classification (Barton & Tai).

use numpy::{IntoPyArray, PyArray2, PyArray3, PyReadonlyArray2};
use pyo3::prelude::*;

use super::interrupt::run_interruptible;
use super::options::py_options;
use crate::core::cost::{pairwise_cost, GroundCost};
use crate::core::sinkhorn::{sinkhorn_pairwise, BatchOutput, BatchParams};

py_options! {
    /// A ground cost `h(‖x − y‖)`: `cost` is one of "distance", "sqdistance", "log1p", "atan",
    /// "power" (the last with `exponent` p > 0, concave for p < 1).
    pub struct GroundCostOptions {
        cost: String,
        exponent: Option<f64> = None,
    }
}

/// `C_ij = h(‖x_i − y_j‖)` for point clouds x (n, d) and y (m, d).
#[pyfunction]
fn ground_cost_matrix<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f64>,
    y: PyReadonlyArray2<'py, f64>,
    options: &GroundCostOptions,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let cost = GroundCost::from_name(&options.cost, options.exponent)?;
    let (x, y) = (x.as_array(), y.as_array());
    let c = py.detach(|| pairwise_cost(x, y, cost))?;
    Ok(c.into_pyarray(py))
}

py_options! {
    /// Options of the batched Sinkhorn: `reg` = ε > 0, at most `max_iter` iterations per pair,
    /// stop at relative L1 marginal error `tol`.
    pub struct BatchSinkhornOptions {
        reg: f64,
        max_iter: i64 = 10_000,
        tol: f64 = 1e-9,
    }
}

/// Per-pair results of a batched Sinkhorn, arrays of shape (n_sources, n_targets).
#[pyclass(frozen, get_all, module = "otinverse._core")]
pub struct BatchSinkhornResult {
    /// `⟨C, P⟩`.
    transport_cost: Py<PyArray2<f64>>,
    /// `⟨C, P⟩ + reg·KL(P | a⊗b)`.
    objective: Py<PyArray2<f64>>,
    /// `Σ P log P` (Barton & Tai's regularised value is `⟨C, P⟩ + reg·neg_entropy`).
    neg_entropy: Py<PyArray2<f64>>,
    /// L1 marginal error of the returned plan, relative to the mass.
    marginal_error: Py<PyArray2<f64>>,
    n_iter: Py<PyArray2<usize>>,
    /// `marginal_error <= tol`.
    converged: Py<PyArray2<bool>>,
    /// `Σ_ij P_ij (y_j − x_i)`, shape (n_sources, n_targets, d), when points were given.
    displacement: Option<Py<PyArray3<f64>>>,
}

impl BatchSinkhornResult {
    fn new(py: Python<'_>, out: BatchOutput) -> Self {
        BatchSinkhornResult {
            transport_cost: out.transport_cost.into_pyarray(py).unbind(),
            objective: out.objective.into_pyarray(py).unbind(),
            neg_entropy: out.neg_entropy.into_pyarray(py).unbind(),
            marginal_error: out.marginal_error.into_pyarray(py).unbind(),
            n_iter: out.n_iter.into_pyarray(py).unbind(),
            converged: out.converged.into_pyarray(py).unbind(),
            displacement: out.displacement.map(|d| d.into_pyarray(py).unbind()),
        }
    }
}

/// Entropic OT of every (source, target) pair of histograms on a shared support: `sources`
/// (N, n), `targets` (K, m), `cost` (n, m); zero-weight bins are skipped exactly. `x` (n, d)
/// and `y` (m, d), given together, are the support coordinates for the plans' displacement.
#[pyfunction]
#[pyo3(signature = (cost, sources, targets, options, x=None, y=None))]
fn sinkhorn_batch<'py>(
    py: Python<'py>,
    cost: PyReadonlyArray2<'py, f64>,
    sources: PyReadonlyArray2<'py, f64>,
    targets: PyReadonlyArray2<'py, f64>,
    options: &BatchSinkhornOptions,
    x: Option<PyReadonlyArray2<'py, f64>>,
    y: Option<PyReadonlyArray2<'py, f64>>,
) -> PyResult<BatchSinkhornResult> {
    let params = BatchParams {
        eps: options.reg,
        // A negative count becomes 0, which the core rejects by name.
        max_iter: usize::try_from(options.max_iter).unwrap_or(0),
        tol: options.tol,
    };
    let points = match (&x, &y) {
        (Some(x), Some(y)) => Some((x.as_array(), y.as_array())),
        (None, None) => None,
        _ => {
            return Err(
                crate::core::OtError::invalid("points", "x and y must be given together").into(),
            )
        }
    };
    let (c, s, t) = (cost.as_array(), sources.as_array(), targets.as_array());
    let out = run_interruptible(py, || sinkhorn_pairwise(c, s, t, &params, points))?;
    Ok(BatchSinkhornResult::new(py, out))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<GroundCostOptions>()?;
    m.add_class::<BatchSinkhornOptions>()?;
    m.add_class::<BatchSinkhornResult>()?;
    m.add_function(wrap_pyfunction!(ground_cost_matrix, m)?)?;
    m.add_function(wrap_pyfunction!(sinkhorn_batch, m)?)?;
    Ok(())
}
