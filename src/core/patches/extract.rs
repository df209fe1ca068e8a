//! Extraction of all stride-1 patches of an image and its adjoint (folding).

use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;

use crate::core::error::{check_at_least_one, check_finite, OtError, Result};

/// All `patch`×`patch` patches of `image` with stride 1, one per row, row-major inside the patch
/// (patch index `r·(w−p+1) + c` for the patch whose top-left pixel is `(r, c)`).
pub fn extract_patches(image: ArrayView2<'_, f64>, patch: usize) -> Result<Array2<f64>> {
    let (h, w) = image.dim();
    check_patch_fits("image", h, w, patch)?;
    check_finite("image", image.iter())?;
    let (nh, nw) = (h - patch + 1, w - patch + 1);
    let d = patch * patch;
    let mut out = Array2::zeros((nh * nw, d));
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(idx, mut row)| {
            let (r, c) = (idx / nw, idx % nw);
            for u in 0..patch {
                for v in 0..patch {
                    row[u * patch + v] = image[(r + u, c + v)];
                }
            }
        });
    Ok(out)
}

/// Adjoint of [`extract_patches`]: `image(r+u, c+v) += patches[(r,c), (u,v)]` over all patches.
pub fn fold_patches(
    patches: ArrayView2<'_, f64>,
    height: usize,
    width: usize,
    patch: usize,
) -> Result<Array2<f64>> {
    check_patch_fits("shape", height, width, patch)?;
    let (nh, nw) = (height - patch + 1, width - patch + 1);
    if patches.dim() != (nh * nw, patch * patch) {
        return Err(OtError::shape(
            "patches",
            format!(
                "a {height}×{width} image has {} patches of {} pixels, got shape {:?}",
                nh * nw,
                patch * patch,
                patches.shape()
            ),
        ));
    }
    check_finite("patches", patches.iter())?;
    // Gather form of the adjoint (each output row sums the patches covering it): parallel
    // over image rows without write conflicts.
    let mut image = Array2::zeros((height, width));
    image
        .axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(y, mut out_row)| {
            let u_lo = (y + 1).saturating_sub(nh);
            for u in u_lo..patch.min(y + 1) {
                let r = y - u;
                for c in 0..nw {
                    let p = patches.row(r * nw + c);
                    for v in 0..patch {
                        out_row[c + v] += p[u * patch + v];
                    }
                }
            }
        });
    Ok(image)
}

fn check_patch_fits(name: &'static str, h: usize, w: usize, patch: usize) -> Result<()> {
    check_at_least_one("patch_size", patch)?;
    if h < patch || w < patch {
        return Err(OtError::shape(
            name,
            format!("a {h}×{w} image is smaller than one {patch}×{patch} patch"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testing::cloud;

    #[test]
    fn fold_is_the_adjoint_of_extraction() {
        let img = cloud(9, 7, 1);
        let p = extract_patches(img.view(), 3).unwrap();
        assert_eq!(p.dim(), (7 * 5, 9));
        // Patch (1, 1) is row 1·5 + 1 (5 patches per row); its pixel (1, 2) is column 1·3 + 2.
        assert_eq!(p[(5 + 1, 3 + 2)], img[(2, 3)]);
        let q = cloud(35, 9, 2);
        let folded = fold_patches(q.view(), 9, 7, 3).unwrap();
        let lhs: f64 = (&p * &q).sum();
        let rhs: f64 = (&img * &folded).sum();
        assert!((lhs - rhs).abs() < 1e-12 * lhs.abs());
        assert!(extract_patches(img.view(), 10).is_err());
        assert!(fold_patches(q.view(), 9, 8, 3).is_err());
    }
}
