//! Problem-level patch OT: the Sinkhorn solve on the patch cost and the patch gradient.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use rayon::prelude::*;

use super::extract::{extract_patches, fold_patches};
use crate::core::cost::{PatchCost, TruncatedPatchCost};
use crate::core::error::{OtError, Result};
use crate::core::sinkhorn::{sinkhorn, KernelChoice, SinkhornOutput, SinkhornParams};

/// Result of [`patch_ot`].
#[derive(Clone, Debug)]
pub struct PatchOt {
    pub sinkhorn: SinkhornOutput,
    /// `∂OT/∂x_i = 2(m_i x_i − Σ_j π_ij y_j)` (n×d), g held fixed (envelope theorem).
    pub gradient: Array2<f64>,
    /// `Σ_i π_ij` (m): the mass each reference patch receives.
    pub received: Array1<f64>,
    /// `Σ_j π_ij` (n); equals `a` after the final exact row update.
    pub row_mass: Array1<f64>,
}

/// Solves OT between patch clouds `x` (weights `a`) and `y` (weights `b`) with
/// Sinkhorn on [`PatchCost`], then takes the patch gradient in one more tiled pass. With
/// `params.kernel` `Auto` (and positive weights) the updates at the target ε, the plan's
/// statistics and the gradient run on one [`TruncatedPatchCost`] built at the first of them;
/// `Log` keeps every pass on the online kernel.
pub fn patch_ot(
    x: ArrayView2<'_, f64>,
    a: ArrayView1<'_, f64>,
    y: ArrayView2<'_, f64>,
    b: ArrayView1<'_, f64>,
    params: &SinkhornParams,
    init: Option<(ArrayView1<'_, f64>, ArrayView1<'_, f64>)>,
) -> Result<PatchOt> {
    let kernel = PatchCost::new(x, y)?;
    let truncated = match params.kernel {
        KernelChoice::Auto => {
            TruncatedPatchCost::new(&kernel, &a.to_vec(), &b.to_vec(), params.eps)
        }
        _ => None,
    };
    let out = match &truncated {
        Some(t) => {
            // The truncated kernel is the representation: the driver must not wrap it again.
            let mut on_support = params.clone();
            on_support.kernel = KernelChoice::Log;
            sinkhorn(t, a, b, &on_support, init)?
        }
        None => sinkhorn(&kernel, a, b, params, init)?,
    };
    let eps = params.eps;
    // Row/column terms f + ε log a, g + ε log b of the plan convention.
    let row: Vec<f64> = out
        .f
        .iter()
        .zip(a.iter())
        .map(|(f, w)| f + eps * w.ln())
        .collect();
    let col: Vec<f64> = out
        .g
        .iter()
        .zip(b.iter())
        .map(|(g, w)| g + eps * w.ln())
        .collect();
    let mom = match &truncated {
        Some(t) => t.moments(&row, &col, eps),
        None => kernel.moments(&row, &col, eps),
    };
    let d = x.ncols();
    let mut gradient = Array2::zeros((x.nrows(), d));
    gradient
        .axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(i, mut g)| {
            let mi = mom.row_mass[i];
            for k in 0..d {
                g[k] = 2.0 * (mi * x[(i, k)] - mom.barycentric[(i, k)]);
            }
        });
    Ok(PatchOt {
        sinkhorn: out,
        gradient,
        received: mom.col_mass,
        row_mass: mom.row_mass,
    })
}

/// The patch prior on an image: OT between the uniform measure on all patches of `image` and
/// the uniform measure on the reference patches `y`, with its gradient with respect to the
/// pixels (patch gradients folded back by the adjoint of extraction).
pub fn image_patch_ot(
    image: ArrayView2<'_, f64>,
    patch: usize,
    y: ArrayView2<'_, f64>,
    params: &SinkhornParams,
    init: Option<(ArrayView1<'_, f64>, ArrayView1<'_, f64>)>,
) -> Result<(PatchOt, Array2<f64>)> {
    let x = extract_patches(image, patch)?;
    if y.ncols() != patch * patch {
        return Err(OtError::shape(
            "reference_patches",
            format!(
                "must have {} columns for {patch}×{patch} patches, got {}",
                patch * patch,
                y.ncols()
            ),
        ));
    }
    let (n, m) = (x.nrows(), y.nrows());
    if m == 0 {
        return Err(OtError::shape("reference_patches", "must not be empty"));
    }
    let a = Array1::from_elem(n, 1.0 / n as f64);
    let b = Array1::from_elem(m, 1.0 / m as f64);
    let res = patch_ot(x.view(), a.view(), y, b.view(), params, init)?;
    let (h, w) = image.dim();
    let grad = fold_patches(res.gradient.view(), h, w, patch)?;
    Ok((res, grad))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testing::cloud;

    #[test]
    fn semi_unbalanced_rows_are_exact() {
        let x = cloud(30, 4, 7);
        let y = cloud(40, 4, 8);
        let a = Array1::from_elem(30, 1.0 / 30.0);
        let b = Array1::from_elem(40, 1.0 / 40.0);
        let mut params = SinkhornParams::new(0.05);
        params.reach_b = Some(0.1);
        params.tol = 1e-12;
        let res = patch_ot(x.view(), a.view(), y.view(), b.view(), &params, None).unwrap();
        assert!(res.sinkhorn.converged);
        assert!((&res.row_mass - &a).iter().all(|v| v.abs() < 1e-14));
    }
}
