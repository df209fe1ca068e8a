//! Bindings of the patch kernels (WPP, paper 004): extraction/fold, the fused patch-cost
//! Sinkhorn with its gradient, and the image-level prior term.

use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

use super::errors::CoreError;
use super::interrupt::run_interruptible;
use super::sinkhorn::{init_pair, params};
use crate::core::cost::{CostKernel, PatchCost};
use crate::core::patches::{
    extract_patches as core_extract, fold_patches as core_fold, image_patch_ot, patch_ot,
};
use crate::core::OtError;

/// All patch_size×patch_size patches (stride 1) of a 2-D image, one per row.
#[pyfunction]
fn extract_patches<'py>(
    py: Python<'py>,
    image: PyReadonlyArray2<'py, f64>,
    patch_size: usize,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let view = image.as_array();
    let out = py
        .detach(|| core_extract(view, patch_size))
        .map_err(CoreError)?;
    Ok(out.into_pyarray(py))
}

/// Adjoint of `extract_patches`: sums the patches back onto a height×width image.
#[pyfunction]
fn fold_patches<'py>(
    py: Python<'py>,
    patches: PyReadonlyArray2<'py, f64>,
    height: usize,
    width: usize,
    patch_size: usize,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let view = patches.as_array();
    let out = py
        .detach(|| core_fold(view, height, width, patch_size))
        .map_err(CoreError)?;
    Ok(out.into_pyarray(py))
}

/// (f, g, transport_cost, objective, n_iter, marginal_error, converged, gradient, received, row_mass)
type PatchTuple<'py> = (
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<f64>>,
    f64,
    f64,
    usize,
    f64,
    bool,
    Bound<'py, PyArray2<f64>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<f64>>,
);

/// Sinkhorn on the fused squared-distance kernel of two patch clouds, plus the gradient
/// `2(m_i x_i − Σ_j π_ij y_j)` and the plan's marginals.
#[pyfunction]
#[pyo3(signature = (a, x, b, y, reg, reach_a, reach_b, max_iter, tol, update, eps_scaling, f_init, g_init))]
#[allow(clippy::too_many_arguments)]
fn patch_sinkhorn<'py>(
    py: Python<'py>,
    a: PyReadonlyArray1<'py, f64>,
    x: PyReadonlyArray2<'py, f64>,
    b: PyReadonlyArray1<'py, f64>,
    y: PyReadonlyArray2<'py, f64>,
    reg: f64,
    reach_a: Option<f64>,
    reach_b: Option<f64>,
    max_iter: i64,
    tol: f64,
    update: &str,
    eps_scaling: Option<f64>,
    f_init: Option<PyReadonlyArray1<'py, f64>>,
    g_init: Option<PyReadonlyArray1<'py, f64>>,
) -> PyResult<PatchTuple<'py>> {
    let p = params(
        reg,
        reach_a,
        reach_b,
        max_iter,
        tol,
        update,
        eps_scaling,
        true,
    )?;
    let init = init_pair(&f_init, &g_init)?;
    let (a, x, b, y) = (a.as_array(), x.as_array(), b.as_array(), y.as_array());
    let r = run_interruptible(py, || patch_ot(x, a, y, b, &p, init))?;
    let s = r.sinkhorn;
    Ok((
        s.f.into_pyarray(py),
        s.g.into_pyarray(py),
        s.transport_cost,
        s.objective,
        s.n_iter,
        s.marginal_error,
        s.converged,
        r.gradient.into_pyarray(py),
        r.received.into_pyarray(py),
        r.row_mass.into_pyarray(py),
    ))
}

/// (objective, image_gradient, f, g, n_iter, marginal_error, converged, received)
type ImageTuple<'py> = (
    f64,
    Bound<'py, PyArray2<f64>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<f64>>,
    usize,
    f64,
    bool,
    Bound<'py, PyArray1<f64>>,
);

/// OT_{ε,ρ} between the uniform patch measure of `image` and the reference patches, with the
/// gradient with respect to the pixels. `reach=None` is balanced OT_ε; `image_reach` also relaxes
/// the image's marginal (the fully unbalanced OT_{ε,ρ,ρ} of paper 004 §II). `stage_iter` fixes
/// the updates per ε-scaling stage (then `max_iter` is the budget at the target ε alone).
#[pyfunction]
#[pyo3(signature = (image, reference_patches, patch_size, reg, reach, max_iter, tol, eps_scaling, f_init, g_init, image_reach=None, stage_iter=None))]
#[allow(clippy::too_many_arguments)]
fn patch_prior<'py>(
    py: Python<'py>,
    image: PyReadonlyArray2<'py, f64>,
    reference_patches: PyReadonlyArray2<'py, f64>,
    patch_size: usize,
    reg: f64,
    reach: Option<f64>,
    max_iter: i64,
    tol: f64,
    eps_scaling: Option<f64>,
    f_init: Option<PyReadonlyArray1<'py, f64>>,
    g_init: Option<PyReadonlyArray1<'py, f64>>,
    image_reach: Option<f64>,
    stage_iter: Option<usize>,
) -> PyResult<ImageTuple<'py>> {
    // Semi-unbalanced: the image's patch marginal exact, the reference's relaxed; alternating
    // updates end with the exact row update (issue 5).
    let mut p = params(
        reg,
        image_reach,
        reach,
        max_iter,
        tol,
        "alternating",
        eps_scaling,
        true,
    )?;
    p.stage_iter = stage_iter;
    let init = init_pair(&f_init, &g_init)?;
    let (img, y) = (image.as_array(), reference_patches.as_array());
    let (r, grad) = run_interruptible(py, || image_patch_ot(img, patch_size, y, &p, init))?;
    let s = r.sinkhorn;
    Ok((
        s.objective,
        grad.into_pyarray(py),
        s.f.into_pyarray(py),
        s.g.into_pyarray(py),
        s.n_iter,
        s.marginal_error,
        s.converged,
        r.received.into_pyarray(py),
    ))
}

/// One softmin pass `−reg log Σ_j exp((col_j − |x_i − y_j|²)/reg)` of the fused kernel
/// (benchmarks); `shift` is the stabilising guess (the previous potential inside Sinkhorn).
#[pyfunction]
#[pyo3(signature = (x, y, col, reg, shift=None))]
fn patch_softmin<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f64>,
    y: PyReadonlyArray2<'py, f64>,
    col: PyReadonlyArray1<'py, f64>,
    reg: f64,
    shift: Option<PyReadonlyArray1<'py, f64>>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let (xv, yv, col) = (x.as_array(), y.as_array(), col.as_array());
    let shift = shift.as_ref().map(|s| s.as_array());
    let out = py
        .detach(|| -> Result<Vec<f64>, OtError> {
            let k = PatchCost::new(xv, yv)?;
            let (n, m) = k.shape();
            if col.len() != m {
                return Err(OtError::shape(
                    "col",
                    format!("must have {m} entries, got {}", col.len()),
                ));
            }
            crate::core::error::check_positive("reg", reg)?;
            let shift = match shift {
                Some(s) if s.len() != n => {
                    return Err(OtError::shape(
                        "shift",
                        format!("must have {n} entries, got {}", s.len()),
                    ))
                }
                Some(s) => s.to_vec(),
                None => vec![0.0; n],
            };
            let mut out = vec![0.0; n];
            k.softmin_rows(&col.to_vec(), &shift, reg, &mut out);
            Ok(out)
        })
        .map_err(CoreError)?;
    Ok(out.into_pyarray(py))
}

/// The plan `P_ij = exp((row_i + col_j − |x_i − y_j|²)/reg)` (materialised, for tests).
#[pyfunction]
fn patch_plan<'py>(
    py: Python<'py>,
    row: PyReadonlyArray1<'py, f64>,
    x: PyReadonlyArray2<'py, f64>,
    col: PyReadonlyArray1<'py, f64>,
    y: PyReadonlyArray2<'py, f64>,
    reg: f64,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let (row, col, xv, yv) = (row.as_array(), col.as_array(), x.as_array(), y.as_array());
    let plan = py.detach(|| -> Result<_, OtError> {
        let k = PatchCost::new(xv, yv)?;
        Ok(k.plan(&row.to_vec(), &col.to_vec(), reg))
    });
    Ok(plan.map_err(CoreError)?.into_pyarray(py))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(extract_patches, m)?)?;
    m.add_function(wrap_pyfunction!(fold_patches, m)?)?;
    m.add_function(wrap_pyfunction!(patch_sinkhorn, m)?)?;
    m.add_function(wrap_pyfunction!(patch_prior, m)?)?;
    m.add_function(wrap_pyfunction!(patch_softmin, m)?)?;
    m.add_function(wrap_pyfunction!(patch_plan, m)?)?;
    Ok(())
}
