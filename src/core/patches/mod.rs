//! Patch clouds of 2-D images and the semi-unbalanced patch OT of the Wasserstein Patch Prior
//! (Mignon, Galerne, Hidane, Louchet & Mille, §II–III).
//!
//! * [`extract_patches`] / [`fold_patches`]: all p×p patches (stride 1) of an image and the
//!   adjoint, which scatters patch values back onto the pixels (sums overlaps).
//! * [`patch_ot`]: Sinkhorn on [`crate::core::cost::PatchCost`] (or on its certified truncation
//!   [`crate::core::cost::TruncatedPatchCost`] at small ε) plus one more pass giving
//!   the gradient `∂OT/∂x_i = 2(m_i x_i − Σ_j π_ij y_j)` with `m_i = Σ_j π_ij` (= a_i once the
//!   exact row marginal holds), and the mass each reference patch receives.
//! * [`image_patch_ot`]: the same on all patches of an image, gradient folded back onto pixels.

mod extract;
mod ot;

pub use extract::{extract_patches, fold_patches};
pub use ot::{image_patch_ot, patch_ot, PatchOt};
