//! Separable log-domain kernel for the squared Euclidean cost on a regular 1-D or 2-D grid:
//! `C_ij = (h_y(i₁ − j₁))² + (h_x(i₂ − j₂))²` for pixels `i = i₁·n_x + i₂` (C order). Because
//! `exp(−C/ε)` factorises into a y-kernel times an x-kernel, every softmin is two passes of 1-D
//! log-sum-exps: O(N·(n_x + n_y)) per application instead of O(N²), and the N×N cost matrix is
//! never stored.
//!
//! The softmins run each pass in the scaling domain (one exponential per pixel, then dot products
//! with `exp(−C/ε)`), falling back to the exact max shift wherever a sum leaves the safe range;
//! the plan sums use the exact max shift throughout. Both agree with
//! [`crate::core::cost::DenseCost`] on the same matrix to rounding.

use ndarray::Array2;
use rayon::prelude::*;

use super::{CostKernel, PlanSums};
use crate::core::error::{OtError, Result};
use crate::core::logsumexp::{log_sum_exp_gap, SUM_MAX, SUM_MIN};
use crate::core::simd::dot;

/// Squared Euclidean cost on an `n_y × n_x` grid with spacings `h_y`, `h_x` (a 1-D grid is `n_y = 1`).
pub struct GridCost {
    ny: usize,
    nx: usize,
    /// 1-D cost matrices, row-major: `cx[i₂·n_x + j₂] = (h_x(i₂ − j₂))²`.
    cx: Vec<f64>,
    cy: Vec<f64>,
    hx: f64,
    hy: f64,
}

fn cost_1d(n: usize, h: f64) -> Vec<f64> {
    let mut c = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            let d = h * (i as f64 - j as f64);
            c[i * n + j] = d * d;
        }
    }
    c
}

/// Grids with fewer pixel·line products than this run the passes on the calling thread: at 32²
/// a pass takes microseconds, less than rayon's scheduling, and batches parallelise over images.
const PARALLEL_WORK: usize = 1 << 18;

/// One separable pass in the scaling domain: for every line `r` of `vals` (`rows` lines of `len`)
/// and every position `i` of the 1-D grid,
/// `out[i·rows + r] = ε log Σ_j exp((vals[r, j] − cost[i, j])/ε)`
/// computed as `m_r + ε log Σ_j gibbs[i, j] exp((vals[r, j] − m_r)/ε)` with the line's max
/// `m_r` (one exponential per pixel instead of one per pixel and position, and dot products).
/// A sum outside [`SUM_MIN`, `SUM_MAX`] lost its large terms to underflow and is recomputed
/// with the exact max shift, so the result agrees with the log-domain pass to rounding.
fn scaling_pass(vals: &[f64], rows: usize, cost: &[f64], gibbs: &[f64], eps: f64, out: &mut [f64]) {
    let len = vals.len() / rows;
    let shift: Vec<f64> = vals
        .chunks_exact(len)
        .map(|v| v.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x)))
        .collect();
    let mut scaled = vec![0.0; vals.len()];
    for ((s, v), &m) in scaled
        .chunks_exact_mut(len)
        .zip(vals.chunks_exact(len))
        .zip(&shift)
    {
        if m > f64::NEG_INFINITY {
            s.iter_mut()
                .zip(v)
                .for_each(|(s, x)| *s = ((x - m) / eps).exp());
        }
    }
    let line = |i: usize, orow: &mut [f64]| {
        let k = &gibbs[i * len..(i + 1) * len];
        for (r, o) in orow.iter_mut().enumerate() {
            let sum = dot(k, &scaled[r * len..(r + 1) * len]);
            *o = if shift[r] == f64::NEG_INFINITY {
                f64::NEG_INFINITY
            } else if (SUM_MIN..=SUM_MAX).contains(&sum) {
                shift[r] + eps * sum.ln()
            } else {
                log_sum_exp_gap(
                    &cost[i * len..(i + 1) * len],
                    &vals[r * len..(r + 1) * len],
                    eps,
                )
            };
        }
    };
    if rows * len * len >= PARALLEL_WORK {
        out.par_chunks_mut(rows)
            .enumerate()
            .for_each(|(i, o)| line(i, o));
    } else {
        out.chunks_mut(rows)
            .enumerate()
            .for_each(|(i, o)| line(i, o));
    }
}

impl GridCost {
    /// `out_i = −ε log Σ_j exp((col_j − C_ij)/ε)` by two [`scaling_pass`]es: along x into
    /// `t[i₂·n_y + j₁]`, then along y straight into C order.
    fn softmin(&self, col: &[f64], eps: f64, out: &mut [f64]) {
        let (ny, nx) = (self.ny, self.nx);
        let gibbs = |c: &[f64]| c.iter().map(|v| (-v / eps).exp()).collect::<Vec<f64>>();
        let mut t = vec![0.0; nx * ny];
        scaling_pass(col, ny, &self.cx, &gibbs(&self.cx), eps, &mut t);
        scaling_pass(&t, nx, &self.cy, &gibbs(&self.cy), eps, out);
        out.iter_mut().for_each(|o| *o = -*o);
    }

    pub fn new(ny: usize, nx: usize, hy: f64, hx: f64) -> Result<Self> {
        if ny == 0 || nx == 0 {
            return Err(OtError::shape(
                "shape",
                format!("grid must not be empty, got ({ny}, {nx})"),
            ));
        }
        for (name, h) in [("spacing", hy), ("spacing", hx)] {
            if !(h.is_finite() && h > 0.0) {
                return Err(OtError::invalid(
                    name,
                    format!("grid spacing must be positive and finite, got {h}"),
                ));
            }
        }
        Ok(GridCost {
            ny,
            nx,
            cx: cost_1d(nx, hx),
            cy: cost_1d(ny, hy),
            hx,
            hy,
        })
    }

    /// The cost of pixels `i` and `j` (flat C-order indices).
    #[inline]
    pub fn cost(&self, i: usize, j: usize) -> f64 {
        let (i1, i2, j1, j2) = (i / self.nx, i % self.nx, j / self.nx, j % self.nx);
        self.cy[i1 * self.ny + j1] + self.cx[i2 * self.nx + j2]
    }

    /// `out_i = −ε log Σ_j exp((col_j − C_ij)/ε)`; with `mean_cost`, also `Σ_j C_ij w_ij / Σ_j w_ij`
    /// for the weights `w_ij = exp((col_j − C_ij)/ε)` (for ⟨C, P⟩).
    fn reduce(&self, col: &[f64], eps: f64, out: &mut [f64], mean_cost: Option<&mut [f64]>) {
        let (t, tx_mean) = self.pass_x(col, eps, mean_cost.is_some());
        self.pass_y(&t, &tx_mean, eps, out, mean_cost);
    }

    /// Pass 1 (along x): `t[i₂·n_y + j₁] = ε log Σ_{j₂} exp((col[j₁, j₂] − Cx(i₂, j₂))/ε)` and,
    /// with `want_mean`, the x-cost mean under those weights (same layout; empty otherwise).
    fn pass_x(&self, col: &[f64], eps: f64, want_mean: bool) -> (Vec<f64>, Vec<f64>) {
        let (ny, nx) = (self.ny, self.nx);
        let mut t = vec![0.0; nx * ny];
        let mut tx_mean = if want_mean {
            vec![0.0; nx * ny]
        } else {
            Vec::new()
        };
        let pass1 = |i2: usize, trow: &mut [f64], mrow: Option<&mut [f64]>| {
            let cxr = &self.cx[i2 * nx..(i2 + 1) * nx];
            for j1 in 0..ny {
                trow[j1] = log_sum_exp_gap(cxr, &col[j1 * nx..(j1 + 1) * nx], eps);
            }
            if let Some(mrow) = mrow {
                for j1 in 0..ny {
                    let c = &col[j1 * nx..(j1 + 1) * nx];
                    let l = trow[j1];
                    mrow[j1] = if l == f64::NEG_INFINITY {
                        0.0
                    } else {
                        cxr.iter()
                            .zip(c)
                            .map(|(x, w)| x * ((w - x - l) / eps).exp())
                            .sum()
                    };
                }
            }
        };
        if want_mean {
            t.par_chunks_mut(ny)
                .zip(tx_mean.par_chunks_mut(ny))
                .enumerate()
                .for_each(|(i2, (trow, mrow))| pass1(i2, trow, Some(mrow)));
        } else {
            t.par_chunks_mut(ny)
                .enumerate()
                .for_each(|(i2, trow)| pass1(i2, trow, None));
        }
        (t, tx_mean)
    }

    /// Pass 2 (along y): `out[i₁, i₂] = −ε log Σ_{j₁} exp((t[i₂, j₁] − Cy(i₁, j₁))/ε)` and, with
    /// `mean_cost`, the total cost mean from the x-means of [`Self::pass_x`].
    fn pass_y(
        &self,
        t: &[f64],
        tx_mean: &[f64],
        eps: f64,
        out: &mut [f64],
        mean_cost: Option<&mut [f64]>,
    ) {
        let (ny, nx) = (self.ny, self.nx);
        let pass2 = |i1: usize, orow: &mut [f64], mrow: Option<&mut [f64]>| {
            let cyr = &self.cy[i1 * ny..(i1 + 1) * ny];
            for i2 in 0..nx {
                let tcol = &t[i2 * ny..(i2 + 1) * ny];
                let l = log_sum_exp_gap(cyr, tcol, eps);
                orow[i2] = -l;
            }
            if let Some(mrow) = mrow {
                for i2 in 0..nx {
                    let tcol = &t[i2 * ny..(i2 + 1) * ny];
                    let mcol = &tx_mean[i2 * ny..(i2 + 1) * ny];
                    let l = -orow[i2];
                    mrow[i2] = if l == f64::NEG_INFINITY {
                        0.0
                    } else {
                        (0..ny)
                            .map(|j1| ((tcol[j1] - cyr[j1] - l) / eps).exp() * (cyr[j1] + mcol[j1]))
                            .sum()
                    };
                }
            }
        };
        match mean_cost {
            Some(m) => out
                .par_chunks_mut(nx)
                .zip(m.par_chunks_mut(nx))
                .enumerate()
                .for_each(|(i1, (orow, mrow))| pass2(i1, orow, Some(mrow))),
            None => out
                .par_chunks_mut(nx)
                .enumerate()
                .for_each(|(i1, orow)| pass2(i1, orow, None)),
        }
    }
}

impl CostKernel for GridCost {
    fn shape(&self) -> (usize, usize) {
        (self.ny * self.nx, self.ny * self.nx)
    }

    fn diameter(&self) -> f64 {
        let dy = self.hy * (self.ny - 1) as f64;
        let dx = self.hx * (self.nx - 1) as f64;
        dy * dy + dx * dx
    }

    fn softmin_rows(&self, col: &[f64], _shift: &[f64], eps: f64, out: &mut [f64]) {
        self.softmin(col, eps, out)
    }

    fn softmin_cols(&self, row: &[f64], _shift: &[f64], eps: f64, out: &mut [f64]) {
        // The cost is symmetric.
        self.softmin(row, eps, out)
    }

    fn plan_sums(&self, row: &[f64], col: &[f64], eps: f64) -> PlanSums {
        let n = self.ny * self.nx;
        let mut s_rows = vec![0.0; n];
        let mut mean_rows = vec![0.0; n];
        self.reduce(col, eps, &mut s_rows, Some(&mut mean_rows));
        let mut s_cols = vec![0.0; n];
        self.reduce(row, eps, &mut s_cols, None);
        // Σ_j P_ij = exp((row_i − softmin_i)/ε); Σ_j C_ij P_ij = that mass times the mean cost.
        let mass = |r: f64, s: f64| {
            if r == f64::NEG_INFINITY {
                0.0
            } else {
                ((r - s) / eps).exp()
            }
        };
        let row_sums: Vec<f64> = row.iter().zip(&s_rows).map(|(&r, &s)| mass(r, s)).collect();
        let col_sums: Vec<f64> = col.iter().zip(&s_cols).map(|(&c, &s)| mass(c, s)).collect();
        let transport_cost = row_sums.iter().zip(&mean_rows).map(|(m, c)| m * c).sum();
        PlanSums {
            row_sums,
            col_sums,
            transport_cost,
        }
    }

    fn plan(&self, row: &[f64], col: &[f64], eps: f64) -> Array2<f64> {
        let n = self.ny * self.nx;
        Array2::from_shape_fn((n, n), |(i, j)| {
            ((row[i] + col[j] - self.cost(i, j)) / eps).exp()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cost::DenseCost;

    #[test]
    fn grid_softmin_and_plan_sums_match_dense() {
        let (ny, nx) = (5, 7);
        let grid = GridCost::new(ny, nx, 0.5, 1.0).unwrap();
        let n = ny * nx;
        let c = Array2::from_shape_fn((n, n), |(i, j)| grid.cost(i, j));
        let dense = DenseCost::new(c.view()).unwrap();
        let col: Vec<f64> = (0..n)
            .map(|j| ((j * 7919) % 13) as f64 * 0.03 - 0.2)
            .collect();
        let row: Vec<f64> = (0..n)
            .map(|i| ((i * 104729) % 11) as f64 * 0.02 - 0.1)
            .collect();
        let zero = vec![0.0; n];
        for eps in [0.05, 0.3, 2.0] {
            let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
            grid.softmin_rows(&col, &zero, eps, &mut a);
            dense.softmin_rows(&col, &zero, eps, &mut b);
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() < 1e-12, "{x} vs {y}");
            }
            let (pg, pd) = (
                grid.plan_sums(&row, &col, eps),
                dense.plan_sums(&row, &col, eps),
            );
            for (x, y) in pg
                .row_sums
                .iter()
                .zip(&pd.row_sums)
                .chain(pg.col_sums.iter().zip(&pd.col_sums))
            {
                assert!((x - y).abs() < 1e-12 * y.abs().max(1.0), "{x} vs {y}");
            }
            assert!(
                (pg.transport_cost - pd.transport_cost).abs()
                    < 1e-10 * pd.transport_cost.abs().max(1.0)
            );
        }
    }
}
