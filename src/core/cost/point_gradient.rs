//! The plan-weighted cost gradient `G_i = Σ_j P_ij ∇_x c(x_i, y_j)` of a point-cloud plan
//! `P_ij = exp((row_i + col_j − |x_i − y_j|^p)/ε)`, computed tile by tile on the online kernel
//! (the plan is never stored). By the envelope theorem (Feydy et al. 2019, Prop. 2) it is the
//! gradient of the entropic OT value in the points x.

use ndarray::{Array1, Array2};
use rayon::prelude::*;

use super::points::{fill_cost_tile, TILE};
use super::{rows_per_task, CostKernel, PointCost};
use crate::core::error::{check_positive, OtError, Result};
use crate::core::interrupt;
use crate::core::layout::{row_major, row_major_mut};
use crate::core::logsumexp::exp_unclamped;
use crate::core::simd::{multiversion, sum_lanes};

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
    let to_flat = row_major(to);
    let to_flat = &*to_flat;
    let inv_eps = 1.0 / eps;
    let flag = interrupt::current();
    let mut grad = Array2::zeros((n, d));
    let mut row_sums = Array1::zeros(n);
    row_major_mut(grad.view_mut())
        .par_chunks_mut(d.max(1))
        .zip(row_major_mut(row_sums.view_mut()))
        .enumerate()
        .with_min_len(rows_per_task(m))
        .for_each_init(
            || {
                (
                    vec![0.0; TILE],
                    vec![0.0; TILE],
                    vec![0.0; TILE],
                    vec![0.0; d],
                )
            },
            |(cost, weight, dist, xi), (i, (g, s))| {
                if flag.as_ref().is_some_and(|f| f.is_cancelled()) {
                    return;
                }
                xi.iter_mut().zip(from.column(i)).for_each(|(x, v)| *x = *v);
                let tiles = RowTiles { cost, weight, dist };
                *s = gradient_row(xi, to_flat, col, row[i], inv_eps, p, tiles, g);
            },
        );
    PlanGradient { grad, row_sums }
}

/// The three tile buffers of one row of [`gradient_row`].
pub struct RowTiles<'a> {
    cost: &'a mut [f64],
    weight: &'a mut [f64],
    dist: &'a mut [f64],
}

/// `g ← Σ_j P_ij ∇_x c(x_i, y_j)` for one point `xi` against `to` (d×m, row-major); returns
/// `Σ_j P_ij`. Every loop is a plain element-wise map or a lane-accumulated sum, so the whole
/// row compiles to full-width vectors on the dispatched CPU variant (a sequential iterator sum
/// would chain one add per pair through its latency).
// Scalars as separate arguments, as in `points_row_sum_generic`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn gradient_row_generic<const FMA: bool>(
    xi: &[f64],
    to: &[f64],
    col: &[f64],
    row: f64,
    inv_eps: f64,
    p: f64,
    tiles: RowTiles<'_>,
    g: &mut [f64],
) -> f64 {
    let m = col.len();
    let mut mass = 0.0;
    g.fill(0.0);
    let mut j0 = 0;
    while j0 < m {
        let len = TILE.min(m - j0);
        let (c, w, r) = (
            &mut tiles.cost[..len],
            &mut tiles.weight[..len],
            &mut tiles.dist[..len],
        );
        fill_cost_tile(xi, to, m, j0, p, c);
        for ((w, &c), &v) in w.iter_mut().zip(c.iter()).zip(&col[j0..j0 + len]) {
            *w = exp_unclamped::<FMA>((v + row - c) * inv_eps);
        }
        mass += sum_lanes(w, w, w, |w, _, _| w);
        gradient_factors(c, r, p, w);
        for (k, gk) in g.iter_mut().enumerate() {
            let (xk, yk) = (xi[k], &to[k * m + j0..k * m + j0 + len]);
            *gk += sum_lanes(w, yk, yk, |w, y, _| w * (xk - y));
        }
        j0 += len;
    }
    mass
}

multiversion! {
    /// One row of the plan-weighted cost gradient (see `gradient_row_generic`).
    pub fn gradient_row(xi: &[f64], to: &[f64], col: &[f64], row: f64, inv_eps: f64, p: f64, tiles: RowTiles<'_>, g: &mut [f64]) -> f64 => gradient_row_generic
}

/// `w_j ← P_ij · p |x_i − y_j|^{p−2}`, the factor of `(x_i − y_j)` in `P_ij ∇_x c`
/// (zero where the points coincide, the subgradient of the cone at its tip for p = 1).
#[inline(always)]
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

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    /// The tiled gradient equals `Σ_j P_ij p |x_i − y_j|^{p−2} (x_i − y_j)` from the dense plan.
    #[test]
    fn plan_gradient_matches_the_dense_plan() {
        let x = Array2::from_shape_fn((7, 3), |(i, k)| ((i * 3 + k) as f64 * 0.37).sin());
        let y = Array2::from_shape_fn((300, 3), |(j, k)| ((j * 5 + k) as f64 * 0.11).cos());
        let row: Vec<f64> = (0..7).map(|i| -0.1 * i as f64).collect();
        let col: Vec<f64> = (0..300).map(|j| -0.01 * (j % 13) as f64).collect();
        for p in [1.0, 1.5, 2.0] {
            let kernel = PointCost::new(x.view(), y.view(), p).unwrap();
            let out = kernel.plan_gradient(&row, &col, 0.3).unwrap();
            let plan = kernel.plan(&row, &col, 0.3);
            for i in 0..7 {
                let mass: f64 = plan.row(i).sum();
                assert!((out.row_sums[i] - mass).abs() <= 1e-12 * mass);
                for k in 0..3 {
                    let expected: f64 = (0..300)
                        .map(|j| {
                            let diff = &x.row(i) - &y.row(j);
                            let dist = diff.dot(&diff).sqrt();
                            plan[(i, j)] * p * dist.powf(p - 2.0) * diff[k]
                        })
                        .sum();
                    let got = out.grad[(i, k)];
                    assert!(
                        (got - expected).abs() <= 1e-10 * (1.0 + expected.abs()),
                        "p={p}"
                    );
                }
            }
        }
    }

    #[test]
    fn plan_gradient_rejects_concave_costs_and_bad_lengths() {
        let x = Array2::<f64>::zeros((2, 1));
        let kernel = PointCost::new(x.view(), x.view(), 0.5).unwrap();
        assert!(kernel.plan_gradient(&[0.0; 2], &[0.0; 2], 1.0).is_err());
        let kernel = PointCost::new(x.view(), x.view(), 2.0).unwrap();
        assert!(kernel.plan_gradient(&[0.0; 3], &[0.0; 2], 1.0).is_err());
        assert!(kernel.plan_gradient(&[0.0; 2], &[0.0; 2], -1.0).is_err());
    }
}
