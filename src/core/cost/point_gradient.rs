//! The plan-weighted cost gradient `G_i = Σ_j P_ij ∇_x c(x_i, y_j)` of a point-cloud plan
//! `P_ij = exp((row_i + col_j − |x_i − y_j|^p)/ε)`, computed tile by tile on the online kernel
//! (the plan is never stored). By the envelope theorem (Feydy et al. 2019, Prop. 2) it is the
//! gradient of the entropic OT value in the points x.

use ndarray::{Array1, Array2};
use rayon::prelude::*;

use super::points::{cost_tile, TILE};
use super::{rows_per_task, CostKernel, PointCost};
use crate::core::error::{check_positive, OtError, Result};
use crate::core::interrupt;
use crate::core::logsumexp::plan_row;

/// `Σ_j P_ij ∇_x c(x_i, y_j)` (n×d) and the plan's row sums `Σ_j P_ij` (n).
pub struct PlanGradient {
    pub grad: Array2<f64>,
    pub row_sums: Array1<f64>,
}

impl PointCost {
    /// [`PlanGradient`] of the plan with the row terms `row` (`f + ε log a`) and the column
    /// terms `col` (`g + ε log b`); the kernel of (y, x) gives the gradient in y.
    /// Only `p >= 1` has a bounded gradient (`p |x − y|^{p−2} (x − y)`, zero where x = y).
    pub fn plan_gradient(&self, row: &[f64], col: &[f64], eps: f64) -> Result<PlanGradient> {
        check_positive("reg", eps)?;
        if self.p < 1.0 {
            return Err(OtError::invalid("p", "must be >= 1 for a gradient"));
        }
        let (n, m) = self.shape();
        if row.len() != n || col.len() != m {
            return Err(OtError::invalid(
                "f",
                "potentials must match the point counts",
            ));
        }
        let out = plan_gradient_rows(&self.xt, &self.yt, row, col, eps, self.p);
        interrupt::check()?;
        Ok(out)
    }
}

/// The row pass of [`PointCost::plan_gradient`]: from (d×n) to (d×m), both standard layout.
fn plan_gradient_rows(
    from: &Array2<f64>,
    to: &Array2<f64>,
    row: &[f64],
    col: &[f64],
    eps: f64,
    p: f64,
) -> PlanGradient {
    let (d, n, m) = (from.nrows(), from.ncols(), to.ncols());
    let to_flat = to.as_slice().expect("standard layout");
    let inv_eps = 1.0 / eps;
    let flag = interrupt::current();
    let mut grad = Array2::zeros((n, d));
    let mut row_sums = Array1::zeros(n);
    grad.as_slice_mut()
        .expect("standard layout")
        .par_chunks_mut(d.max(1))
        .zip(row_sums.as_slice_mut().expect("contiguous"))
        .enumerate()
        .with_min_len(rows_per_task(m))
        .for_each_init(
            || (vec![0.0; TILE], vec![0.0; TILE], vec![0.0; TILE]),
            |(cost, weight, dist), (i, (g, s))| {
                if flag.as_ref().is_some_and(|f| f.is_cancelled()) {
                    return;
                }
                let mut j0 = 0;
                while j0 < m {
                    let len = TILE.min(m - j0);
                    let (c, w, r) = (&mut cost[..len], &mut weight[..len], &mut dist[..len]);
                    cost_tile(from, i, to, j0, p, c);
                    plan_row(c, &col[j0..j0 + len], row[i], inv_eps, w);
                    *s += w.iter().sum::<f64>();
                    gradient_factors(c, r, p, w);
                    for (k, gk) in g.iter_mut().enumerate() {
                        let xk = from[(k, i)];
                        let yk = &to_flat[k * m + j0..k * m + j0 + len];
                        *gk += w.iter().zip(yk).map(|(w, y)| w * (xk - y)).sum::<f64>();
                    }
                    j0 += len;
                }
            },
        );
    PlanGradient { grad, row_sums }
}

/// `w_j ← P_ij · p |x_i − y_j|^{p−2}`, the factor of `(x_i − y_j)` in `P_ij ∇_x c`
/// (zero where the points coincide, the subgradient of the cone at its tip for p = 1).
fn gradient_factors(cost: &[f64], dist: &mut [f64], p: f64, w: &mut [f64]) {
    if p == 2.0 {
        w.iter_mut().for_each(|v| *v *= 2.0);
        return;
    }
    dist.iter_mut()
        .zip(cost)
        .for_each(|(r, &c)| *r = c.powf(1.0 / p));
    w.iter_mut().zip(dist.iter()).for_each(|(v, &r)| {
        *v = if r > 0.0 {
            *v * p * r.powf(p - 2.0)
        } else {
            0.0
        };
    });
}
