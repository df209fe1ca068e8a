//! Bindings of OT unfolding, the ker B projection, Wright omega and Richardson–Lucy.

use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

use super::errors::CoreError;
use super::interrupt::run_interruptible;
use crate::core::unfold::{
    douglas_rachford, exact_kl_projection, ot_unfold, richardson_lucy, wright_omega,
    CostNormalization, KerBProjector, OtUnfoldParams, Projection, Response,
};
use crate::core::OtError;

fn make_response(
    response: Option<PyReadonlyArray2<'_, f64>>,
    n_gen: usize,
    per_point: usize,
) -> Result<Response, CoreError> {
    Ok(match response {
        Some(r) => Response::new_dense(r.as_array().to_owned())?,
        None => Response::new_blocks(n_gen, per_point)?,
    })
}

/// The ker B projector of a response and a vector `name` of matching length (m + L).
fn projector_and_vector(
    name: &'static str,
    v: PyReadonlyArray1<'_, f64>,
    response: Option<PyReadonlyArray2<'_, f64>>,
    n_gen: usize,
    per_point: usize,
) -> Result<(KerBProjector, Vec<f64>), CoreError> {
    let proj = KerBProjector::new(make_response(response, n_gen, per_point)?)?;
    let v = v.as_array();
    if v.len() != proj.len() {
        return Err(OtError::shape(
            name,
            format!("has {} entries, expected m + L = {}", v.len(), proj.len()),
        )
        .into());
    }
    Ok((proj, v.to_vec()))
}

/// (sigma, sigma_history, objective, sigma_change, kerb_residual, n_iter, converged, cost_scale)
type UnfoldTuple<'py> = (
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray2<f64>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<f64>>,
    usize,
    bool,
    f64,
);

/// OT unfolding (eq. 25–28). The response is `response` (m×L, dense) if given, else blocks of
/// `per_point` consecutive samples for each of `n_gen` gen points. `progress(i)` is called after
/// each outer iteration (with the GIL) when given.
#[pyfunction]
#[pyo3(signature = (response_points, measured_points, measured_weights, prior, response, n_gen, per_point,
    reg, reg_init, p, cost_normalization, n_init_iter, max_iter, tol, dr_iter, dr_step, projection="douglas-rachford", progress=None))]
#[allow(clippy::too_many_arguments)]
fn ot_unfold_points<'py>(
    py: Python<'py>,
    response_points: PyReadonlyArray2<'py, f64>,
    measured_points: PyReadonlyArray2<'py, f64>,
    measured_weights: PyReadonlyArray1<'py, f64>,
    prior: Option<PyReadonlyArray1<'py, f64>>,
    response: Option<PyReadonlyArray2<'py, f64>>,
    n_gen: usize,
    per_point: usize,
    reg: f64,
    reg_init: f64,
    p: f64,
    cost_normalization: &str,
    n_init_iter: usize,
    max_iter: usize,
    tol: Option<f64>,
    dr_iter: usize,
    dr_step: f64,
    projection: &str,
    progress: Option<Py<PyAny>>,
) -> PyResult<UnfoldTuple<'py>> {
    let cost_normalization = match cost_normalization {
        "max" => CostNormalization::Max,
        "none" => CostNormalization::None,
        other => {
            return Err(CoreError(OtError::invalid(
                "cost_normalization",
                format!("must be 'max' or 'none', got {other:?}"),
            ))
            .into())
        }
    };
    let projection = match projection {
        "douglas-rachford" => Projection::DouglasRachford,
        "exact" => Projection::Exact,
        other => {
            return Err(CoreError(OtError::invalid(
                "projection",
                format!("must be 'douglas-rachford' or 'exact', got {other:?}"),
            ))
            .into())
        }
    };
    let params = OtUnfoldParams {
        eps: reg,
        eps_init: reg_init,
        n_init_iter,
        max_iter,
        tol,
        dr_iter,
        dr_step,
        projection,
        p,
        cost_normalization,
    };
    let resp = make_response(response, n_gen, per_point)?;
    let (y, yp, nu) = (
        response_points.as_array(),
        measured_points.as_array(),
        measured_weights.as_array(),
    );
    let prior = prior.as_ref().map(|s| s.as_array());
    let out = run_interruptible(py, || {
        let mut cb = |i: usize| {
            if let Some(f) = &progress {
                Python::attach(|py| {
                    let _ = f.call1(py, (i,));
                });
            }
        };
        ot_unfold(y, resp, yp, nu, prior, &params, Some(&mut cb))
    })?;
    Ok((
        out.sigma.into_pyarray(py),
        out.sigma_history.into_pyarray(py),
        out.objective.into_pyarray(py),
        out.sigma_change.into_pyarray(py),
        out.kerb_residual.into_pyarray(py),
        out.n_iter,
        out.converged,
        out.cost_scale,
    ))
}

/// `Proj^KL_{ker B}(exp(log_w))` by `dr_iter` Douglas–Rachford steps (eq. 28).
#[pyfunction]
#[pyo3(signature = (log_w, response, n_gen, per_point, dr_step, dr_iter))]
fn kerb_projection_dr<'py>(
    py: Python<'py>,
    log_w: PyReadonlyArray1<'py, f64>,
    response: Option<PyReadonlyArray2<'py, f64>>,
    n_gen: usize,
    per_point: usize,
    dr_step: f64,
    dr_iter: usize,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let (proj, lw) = projector_and_vector("log_w", log_w, response, n_gen, per_point)?;
    let z = py.detach(|| douglas_rachford(&proj, &lw, dr_step, dr_iter));
    Ok(z.into_pyarray(py))
}

/// The exact KL projection onto ker B of `exp(log_w)` (closed form for blocks, Newton otherwise).
#[pyfunction]
#[pyo3(signature = (log_w, response, n_gen, per_point))]
fn kerb_projection_exact<'py>(
    py: Python<'py>,
    log_w: PyReadonlyArray1<'py, f64>,
    response: Option<PyReadonlyArray2<'py, f64>>,
    n_gen: usize,
    per_point: usize,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let (proj, lw) = projector_and_vector("log_w", log_w, response, n_gen, per_point)?;
    let z = py
        .detach(|| exact_kl_projection(&proj, &lw))
        .map_err(CoreError)?;
    Ok(z.into_pyarray(py))
}

/// The orthogonal projection onto ker B (for tests).
#[pyfunction]
#[pyo3(signature = (x, response, n_gen, per_point))]
fn kerb_orthogonal_projection<'py>(
    py: Python<'py>,
    x: PyReadonlyArray1<'py, f64>,
    response: Option<PyReadonlyArray2<'py, f64>>,
    n_gen: usize,
    per_point: usize,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let (proj, x) = projector_and_vector("x", x, response, n_gen, per_point)?;
    let mut out = vec![0.0; x.len()];
    proj.project(&x, &mut out);
    Ok(out.into_pyarray(py))
}

/// Elementwise Wright omega.
#[pyfunction]
fn wright_omega_array<'py>(
    py: Python<'py>,
    t: PyReadonlyArray1<'py, f64>,
) -> Bound<'py, PyArray1<f64>> {
    let t = t.as_array();
    let out: Vec<f64> = py.detach(|| t.iter().map(|v| wright_omega(*v)).collect());
    out.into_pyarray(py)
}

/// (unfolded counts, normalised history (n_iter, L))
type RichardsonLucyTuple<'py> = (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray2<f64>>);

/// Richardson–Lucy / IBU: (unfolded counts, normalised history (n_iter, L)).
#[pyfunction]
#[pyo3(signature = (response, measured, n_iter, efficiencies=None, prior=None))]
fn richardson_lucy_binned<'py>(
    py: Python<'py>,
    response: PyReadonlyArray2<'py, f64>,
    measured: PyReadonlyArray1<'py, f64>,
    n_iter: usize,
    efficiencies: Option<PyReadonlyArray1<'py, f64>>,
    prior: Option<PyReadonlyArray1<'py, f64>>,
) -> PyResult<RichardsonLucyTuple<'py>> {
    let (r, nu) = (response.as_array(), measured.as_array());
    let eff = efficiencies.as_ref().map(|e| e.as_array());
    let pr = prior.as_ref().map(|e| e.as_array());
    let out = py
        .detach(|| richardson_lucy(r, nu, n_iter, eff, pr))
        .map_err(CoreError)?;
    Ok((out.unfolded.into_pyarray(py), out.history.into_pyarray(py)))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(ot_unfold_points, m)?)?;
    m.add_function(wrap_pyfunction!(kerb_projection_dr, m)?)?;
    m.add_function(wrap_pyfunction!(kerb_projection_exact, m)?)?;
    m.add_function(wrap_pyfunction!(kerb_orthogonal_projection, m)?)?;
    m.add_function(wrap_pyfunction!(wright_omega_array, m)?)?;
    m.add_function(wrap_pyfunction!(richardson_lucy_binned, m)?)?;
    Ok(())
}
