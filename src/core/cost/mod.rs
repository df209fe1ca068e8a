//! Cost matrices behind one trait, [`CostKernel`]: the only thing the Sinkhorn family needs from
//! a cost is the two softmin reductions, the plan's sums and (for ε-scaling) its diameter.
//!
//! * [`DenseCost`]: an n×m matrix of any strides, borrowed (C- and F-ordered run at full speed;
//!   other strides gather one row at a time).
//! * [`PointCost`]: `|x_i − y_j|^p` for point clouds, computed tile by tile and never stored, so
//!   memory is O((n+m)·d).
//! * [`GridCost`]: the squared Euclidean cost on a regular 1-D or 2-D grid, applied as two
//!   separable 1-D passes.
//! * [`PatchCost`]: `|x_i − y_j|²` for patch clouds, from a register-blocked `x·yᵀ` micro-kernel.
//! * [`TruncatedPatchCost`]: the same on the support that matters at one small ε, for the
//!   warm-started solves of the patch prior.
//!
//! [`GroundCost`] builds dense matrices `h(‖x_i − y_j‖)` of the distance (concave ground costs
//! of Barton & Tai, §3.1) for [`DenseCost`] and the batched solver.

mod dense;
mod grid;
mod ground;
mod patches;
mod point_gradient;
mod points;
mod truncated_patches;

use ndarray::{Array2, Axis};
use rayon::prelude::*;

use crate::core::logsumexp::plan_row;

pub use dense::DenseCost;
pub use grid::GridCost;
pub use ground::{grid_cost, grid_points, pairwise_cost, GroundCost};
pub use patches::{PatchCost, PlanMoments};
pub use point_gradient::PlanGradient;
pub(crate) use points::points_row_sum;
pub use points::PointCost;
pub use truncated_patches::TruncatedPatchCost;

/// Sums of the plan `P_ij = exp((row_i + col_j − C_ij)/ε)`.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanSums {
    pub row_sums: Vec<f64>,
    pub col_sums: Vec<f64>,
    /// `⟨C, P⟩`.
    pub transport_cost: f64,
}

/// The column softmins a fused row pass computes (see [`CostKernel::softmin_rows_fused`]).
pub struct NextColumns<'a> {
    /// The row's next term from its index and its fresh softmin.
    pub row_term: &'a (dyn Fn(usize, f64) -> f64 + Sync),
    /// The columns' stabilising shift (their current potential).
    pub shift: &'a [f64],
    pub out: &'a mut [f64],
}

/// A cost matrix as the Sinkhorn iterations see it. The `row`/`col` terms below are potentials
/// with the log-weights folded in (`f_i + ε log a_i`, `g_j + ε log b_j`).
pub trait CostKernel: Sync {
    /// (n, m).
    fn shape(&self) -> (usize, usize);

    /// An upper bound of `max C − min C`, the scale ε-scaling anneals from.
    fn diameter(&self) -> f64;

    /// `out_i = −ε log Σ_j exp((col_j − C_ij)/ε)`. `shift_i` is a guess of `out_i` (the previous
    /// potential) used as stabiliser; rows whose shifted sum leaves the safe range are recomputed
    /// with the exact max shift, so the result never depends on the guess beyond rounding.
    fn softmin_rows(&self, col: &[f64], shift: &[f64], eps: f64, out: &mut [f64]);

    /// `out_j = −ε log Σ_i exp((row_i − C_ij)/ε)`, stabilised like [`Self::softmin_rows`].
    fn softmin_cols(&self, row: &[f64], shift: &[f64], eps: f64, out: &mut [f64]);

    /// [`Self::softmin_rows`] into `out`; when the kernel can in the same pass over its entries,
    /// also the column softmins against the rows' next terms `next.row_term(i, out_i)`, with the
    /// shift `next.shift`, into `next.out` (an alternating update then reads a stored kernel
    /// once instead of twice). Returns whether `next.out` was filled; the default does not.
    fn softmin_rows_fused(
        &self,
        col: &[f64],
        shift: &[f64],
        eps: f64,
        out: &mut [f64],
        _next: &mut NextColumns<'_>,
    ) -> bool {
        self.softmin_rows(col, shift, eps, out);
        false
    }

    /// Row sums, column sums and `⟨C, P⟩` of `P_ij = exp((row_i + col_j − C_ij)/ε)`.
    fn plan_sums(&self, row: &[f64], col: &[f64], eps: f64) -> PlanSums;

    /// The dense plan `P_ij = exp((row_i + col_j − C_ij)/ε)` (zero weights give exact zeros).
    fn plan(&self, row: &[f64], col: &[f64], eps: f64) -> Array2<f64>;

    /// [`Self::plan`] and [`Self::plan_sums`] together; a kernel that can computes both in one
    /// pass, the sums then being those of the returned entries.
    fn plan_with_sums(&self, row: &[f64], col: &[f64], eps: f64) -> (Array2<f64>, PlanSums) {
        (self.plan(row, col, eps), self.plan_sums(row, col, eps))
    }

    /// Whether `C_ij = C_ji` with bitwise-equal softmins along both axes (one point cloud on
    /// both sides): symmetric updates of a self-transport then compute one softmin per iteration.
    fn is_symmetric(&self) -> bool {
        false
    }

    /// Writes row `i` of the cost into `out` (length m) and returns true when this kernel can
    /// give its entries one row at a time (stored kernels are built from them); false otherwise.
    fn cost_row(&self, _i: usize, _out: &mut [f64]) -> bool {
        false
    }
}

/// Rows per rayon task: enough work per task to amortise scheduling on small problems.
pub(crate) fn rows_per_task(row_len: usize) -> usize {
    (4096 / row_len.max(1)).max(1)
}

/// Element-wise sum of two partial column sums (the reduce step of the parallel folds).
pub(crate) fn add_into(mut a: Vec<f64>, b: Vec<f64>) -> Vec<f64> {
    a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
    a
}

/// Overwrites a materialised cost matrix with the plan `P_ij = exp((row_i + col_j − C_ij)/ε)`
/// (zero weights give exact zeros).
pub(crate) fn plan_from_cost(
    mut cost: Array2<f64>,
    row: &[f64],
    col: &[f64],
    eps: f64,
) -> Array2<f64> {
    let inv_eps = 1.0 / eps;
    cost.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(row)
        .for_each_init(Vec::new, |buf, (mut prow, &r)| match prow.as_slice_mut() {
            Some(p) => {
                buf.clear();
                buf.extend_from_slice(p);
                plan_row(buf, col, r, inv_eps, p);
            }
            None => prow
                .iter_mut()
                .zip(col)
                .for_each(|(v, w)| *v = ((r + w - *v) * inv_eps).exp()),
        });
    cost
}

/// Two clouds of the same dimension, non-empty and finite (`what` names one cloud, `items` its
/// members in the messages: "point"/"points", "patch"/"patches").
pub(crate) fn check_clouds(
    x: ndarray::ArrayView2<'_, f64>,
    y: ndarray::ArrayView2<'_, f64>,
    what: &str,
    items: &str,
) -> crate::core::error::Result<()> {
    use crate::core::error::{check_finite, OtError};
    for (name, cloud) in [("x", &x), ("y", &y)] {
        if cloud.nrows() == 0 || cloud.ncols() == 0 {
            return Err(OtError::shape(
                name,
                format!(
                    "{what} cloud must not be empty, got shape {:?}",
                    cloud.shape()
                ),
            ));
        }
    }
    if x.ncols() != y.ncols() {
        return Err(OtError::shape(
            "y",
            format!(
                "{items} must have the dimension of x ({}), got {}",
                x.ncols(),
                y.ncols()
            ),
        ));
    }
    check_finite("x", x.iter())?;
    check_finite("y", y.iter())
}
