//! Bindings of the patch kernels of the Wasserstein patch prior: extraction and folding, and the
//! image-level prior term; the cloud-level solve, one softmin pass and the plan are test-only.

use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

use super::interrupt::run_interruptible;
use super::sinkhorn::{init_pair, SinkhornOptions, SinkhornSolution};
use crate::core::cost::{CostKernel, PatchCost};
use crate::core::error::check_positive;
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
    let out = py.detach(|| core_extract(view, patch_size))?;
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
    let out = py.detach(|| core_fold(view, height, width, patch_size))?;
    Ok(out.into_pyarray(py))
}

/// The patch prior of an image: OT between its patches and the reference patches, with the
/// gradient with respect to the pixels.
#[pyclass(frozen, get_all, module = "otinverse._core")]
pub struct PatchPriorResult {
    /// The regularised OT objective (the prior's value).
    value: f64,
    /// Its gradient with respect to the pixels (the image's shape).
    gradient: Py<PyArray2<f64>>,
    /// The mass each reference patch receives.
    received: Py<PyArray1<f64>>,
    /// The Sinkhorn solve (potentials of the image's and the reference's patches, convergence).
    sinkhorn: Py<SinkhornSolution>,
}

/// OT between the uniform measure on the patches of `image` and the uniform measure on the
/// reference patches (the rows of `reference_patches`), with the gradient with respect to the
/// pixels. `options.reach_a` relaxes the image's side and `options.reach_b` the reference's
/// (both `None`: balanced OT_ε; only `reach_b`: the semi-unbalanced OT_{ε,ρ}). `options.kernel`
/// `"auto"` runs the solve at `reg` and the gradient on a certified truncated support, `"log"`
/// on the online kernel over all pairs.
#[pyfunction]
#[pyo3(signature = (image, reference_patches, patch_size, options, f_init=None, g_init=None))]
fn patch_prior(
    py: Python<'_>,
    image: PyReadonlyArray2<'_, f64>,
    reference_patches: PyReadonlyArray2<'_, f64>,
    patch_size: usize,
    options: &SinkhornOptions,
    f_init: Option<PyReadonlyArray1<'_, f64>>,
    g_init: Option<PyReadonlyArray1<'_, f64>>,
) -> PyResult<PatchPriorResult> {
    let params = options.params()?;
    let init = init_pair(&f_init, &g_init)?;
    let (img, y) = (image.as_array(), reference_patches.as_array());
    let (r, grad) = run_interruptible(py, || image_patch_ot(img, patch_size, y, &params, init))?;
    Ok(PatchPriorResult {
        value: r.sinkhorn.objective,
        gradient: grad.into_pyarray(py).unbind(),
        received: r.received.into_pyarray(py).unbind(),
        sinkhorn: Py::new(py, SinkhornSolution::new(py, r.sinkhorn))?,
    })
}

/// Patch OT between two patch clouds with its gradient.
#[pyclass(frozen, get_all, module = "otinverse._core.testing")]
pub struct PatchOtResult {
    /// `∂OT/∂x_i = 2(m_i x_i − Σ_j π_ij y_j)` (n×d), with `m_i = Σ_j π_ij`.
    gradient: Py<PyArray2<f64>>,
    /// `Σ_i π_ij`: the mass each patch of `y` receives (m).
    received: Py<PyArray1<f64>>,
    /// `Σ_j π_ij` (n); equals `a` when the row marginal is exact.
    row_mass: Py<PyArray1<f64>>,
    /// The Sinkhorn solve.
    sinkhorn: Py<SinkhornSolution>,
}

/// Sinkhorn on the fused squared-distance kernel of two patch clouds, plus the gradient
/// `2(m_i x_i − Σ_j π_ij y_j)` and the plan's marginals.
#[pyfunction]
#[pyo3(signature = (a, x, b, y, options, f_init=None, g_init=None))]
#[allow(clippy::too_many_arguments)]
fn patch_sinkhorn(
    py: Python<'_>,
    a: PyReadonlyArray1<'_, f64>,
    x: PyReadonlyArray2<'_, f64>,
    b: PyReadonlyArray1<'_, f64>,
    y: PyReadonlyArray2<'_, f64>,
    options: &SinkhornOptions,
    f_init: Option<PyReadonlyArray1<'_, f64>>,
    g_init: Option<PyReadonlyArray1<'_, f64>>,
) -> PyResult<PatchOtResult> {
    let params = options.params()?;
    let init = init_pair(&f_init, &g_init)?;
    let (a, x, b, y) = (a.as_array(), x.as_array(), b.as_array(), y.as_array());
    let r = run_interruptible(py, || patch_ot(x, a, y, b, &params, init))?;
    Ok(PatchOtResult {
        gradient: r.gradient.into_pyarray(py).unbind(),
        received: r.received.into_pyarray(py).unbind(),
        row_mass: r.row_mass.into_pyarray(py).unbind(),
        sinkhorn: Py::new(py, SinkhornSolution::new(py, r.sinkhorn))?,
    })
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
    let out = py.detach(|| -> Result<Vec<f64>, OtError> {
        let k = PatchCost::new(xv, yv)?;
        let (n, m) = k.shape();
        if col.len() != m {
            return Err(OtError::shape(
                "col",
                format!("must have {m} entries, got {}", col.len()),
            ));
        }
        check_positive("reg", reg)?;
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
    })?;
    Ok(out.into_pyarray(py))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PatchPriorResult>()?;
    m.add_function(wrap_pyfunction!(extract_patches, m)?)?;
    m.add_function(wrap_pyfunction!(fold_patches, m)?)?;
    m.add_function(wrap_pyfunction!(patch_prior, m)?)?;
    Ok(())
}

/// The test-only functions of `otinverse._core.testing`.
pub fn register_testing(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PatchOtResult>()?;
    m.add_function(wrap_pyfunction!(patch_sinkhorn, m)?)?;
    m.add_function(wrap_pyfunction!(patch_softmin, m)?)?;
    Ok(())
}
