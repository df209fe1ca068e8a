//! `C_ij = |x_i − y_j|^p` for point clouds, computed tile by tile and never stored.

use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;

use super::{add_into, check_clouds, plan_from_cost, rows_per_task, CostKernel, PlanSums};
use crate::core::error::{check_positive, Result};
use crate::core::interrupt::{self, CancelFlag};
use crate::core::layout::{row_major, row_major_mut};
use crate::core::logsumexp::{
    exp_in_place_sum, finish_shifted, max_gap, plan_row_sums, sum_exp_sparse_generic,
};
use crate::core::simd::multiversion;

/// Columns per tile of an online cost: the tile stays in L1 while its exponentials are summed.
pub(super) const TILE: usize = 256;

/// `C_ij = |x_i − y_j|^p` for point clouds x (n×d), y (m×d), never stored.
pub struct PointCost {
    /// Coordinates transposed (d×n and d×m, contiguous) so a tile of distances is a
    /// vectorisable loop over j.
    pub(super) xt: Array2<f64>,
    pub(super) yt: Array2<f64>,
    pub(super) p: f64,
    /// x = y: the softmins along both axes run the same code on the same data.
    symmetric: bool,
}

impl PointCost {
    pub fn new(x: ArrayView2<'_, f64>, y: ArrayView2<'_, f64>, p: f64) -> Result<Self> {
        check_clouds(x, y, "point", "points")?;
        // 0 < p < 1 is the concave cost d^p (Barton & Tai, §3.1).
        check_positive("p", p)?;
        Ok(PointCost {
            xt: x.t().as_standard_layout().into_owned(),
            yt: y.t().as_standard_layout().into_owned(),
            p,
            symmetric: x == y,
        })
    }

    pub fn dim(&self) -> usize {
        self.xt.nrows()
    }

    /// The full n×m cost matrix.
    pub fn dense(&self) -> Array2<f64> {
        let (n, m) = self.shape();
        let mut c = Array2::zeros((n, m));
        c.axis_iter_mut(Axis(0))
            .into_par_iter()
            .enumerate()
            .for_each(|(i, row)| {
                cost_tile(&self.xt, i, &self.yt, 0, self.p, row_major_mut(row));
            });
        c
    }
}

/// Costs from point `i` of `from` (d×n) to points `j0..j0+out.len()` of `to` (d×m).
#[inline]
pub(super) fn cost_tile(
    from: &Array2<f64>,
    i: usize,
    to: &Array2<f64>,
    j0: usize,
    p: f64,
    out: &mut [f64],
) {
    out.fill(0.0);
    for k in 0..from.nrows() {
        let xk = from[(k, i)];
        let to_k = to.row(k);
        let to_k = row_major(&to_k);
        let yk = &to_k[j0..j0 + out.len()];
        for (o, y) in out.iter_mut().zip(yk) {
            let t = xk - y;
            *o += t * t;
        }
    }
    if p == 2.0 {
    } else if p == 1.0 {
        out.iter_mut().for_each(|o| *o = o.sqrt());
    } else {
        let half = 0.5 * p;
        out.iter_mut().for_each(|o| *o = o.powf(half));
    }
}

/// `cost_tile` on a point given by its coordinates `xi` and `to` flattened (d×m, row-major).
#[inline(always)]
pub(super) fn fill_cost_tile(xi: &[f64], to: &[f64], m: usize, j0: usize, p: f64, out: &mut [f64]) {
    out.fill(0.0);
    for (k, &xk) in xi.iter().enumerate() {
        let yk = &to[k * m + j0..k * m + j0 + out.len()];
        for (o, y) in out.iter_mut().zip(yk) {
            let t = xk - y;
            *o += t * t;
        }
    }
    if p == 1.0 {
        out.iter_mut().for_each(|o| *o = o.sqrt());
    } else if p != 2.0 {
        let half = 0.5 * p;
        out.iter_mut().for_each(|o| *o = o.powf(half));
    }
}

// The scalars stay separate arguments: the row kernel is dispatched once per row and inlined.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn points_row_sum_generic<const FMA: bool>(
    xi: &[f64],
    to: &[f64],
    col: &[f64],
    shift: f64,
    inv_eps: f64,
    p: f64,
    skip_far: bool,
    tile: &mut [f64],
) -> f64 {
    let m = col.len();
    let mut s = 0.0;
    let mut j0 = 0;
    while j0 < m {
        let len = TILE.min(m - j0);
        let t = &mut tile[..len];
        fill_cost_tile(xi, to, m, j0, p, t);
        s += if skip_far {
            sum_exp_sparse_generic::<FMA>(t, &col[j0..j0 + len], shift, inv_eps)
        } else {
            exp_in_place_sum::<FMA>(t, &col[j0..j0 + len], shift, inv_eps)
        };
        j0 += len;
    }
    s
}

multiversion! {
    /// `Σ_j exp((shift + col_j − |x_i − to_j|^p)/ε)` over a whole row: distances and
    /// exponentials compiled together for the running CPU, dispatched once per row. `skip_far`
    /// skips chunks below e^{SKIP_BELOW} (see `sum_exp_sparse`; only with the exact max shift).
    pub fn points_row_sum(xi: &[f64], to: &[f64], col: &[f64], shift: f64, inv_eps: f64, p: f64, skip_far: bool, tile: &mut [f64]) -> f64 => points_row_sum_generic
}

/// Rows of one block of the online softmin: their column tiles are read once per block.
const BLOCK_ROWS: usize = 16;

// Scalars as separate arguments, as in `points_row_sum_generic`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn block_row_sums_generic<const FMA: bool>(
    xs: &[f64],
    to: &[f64],
    col: &[f64],
    shifts: &[f64],
    inv_eps: f64,
    p: f64,
    tile: &mut [f64],
    sums: &mut [f64],
) {
    let (m, d) = (col.len(), xs.len() / shifts.len().max(1));
    sums.fill(0.0);
    let mut j0 = 0;
    while j0 < m {
        let len = TILE.min(m - j0);
        for ((xi, &shift), s) in xs.chunks_exact(d).zip(shifts).zip(sums.iter_mut()) {
            let t = &mut tile[..len];
            fill_cost_tile(xi, to, m, j0, p, t);
            *s += exp_in_place_sum::<FMA>(t, &col[j0..j0 + len], shift, inv_eps);
        }
        j0 += len;
    }
}

multiversion! {
    /// `sums_r = Σ_j exp((shifts_r + col_j − |xs_r − to_j|^p)/ε)` for a block of rows `xs`
    /// (row-major, d per row), column tile outermost: at 10⁵ points the columns (2.4 MB in
    /// d = 2) leave the core's cache, and a row-by-row pass streamed them from memory per row.
    pub fn block_row_sums(xs: &[f64], to: &[f64], col: &[f64], shifts: &[f64], inv_eps: f64, p: f64, tile: &mut [f64], sums: &mut [f64]) => block_row_sums_generic
}

/// `out_i = −ε log Σ_j exp((col_j − |from_i − to_j|^p)/ε)`, tile by tile.
fn softmin_points(
    from: &Array2<f64>,
    to: &Array2<f64>,
    p: f64,
    col: &[f64],
    shift: &[f64],
    eps: f64,
    out: &mut [f64],
) {
    let m = to.ncols();
    let to_flat = row_major(to);
    let to_flat = &*to_flat;
    let inv_eps = 1.0 / eps;
    // One pass at 10⁵ × 10⁵ points takes seconds: rows check the cancellation flag, and a
    // cancelled pass leaves NaN, which the caller's next `interrupt::check` turns into the error.
    let flag = interrupt::current();
    let d = from.nrows();
    out.par_chunks_mut(BLOCK_ROWS)
        .enumerate()
        .with_min_len(rows_per_task(m * BLOCK_ROWS))
        .for_each_init(
            || {
                (
                    vec![0.0; TILE],
                    vec![0.0; d * BLOCK_ROWS],
                    vec![0.0; BLOCK_ROWS],
                )
            },
            |(tile, xs, sums), (b, out)| {
                if flag.as_ref().is_some_and(CancelFlag::is_cancelled) {
                    out.fill(f64::NAN);
                    return;
                }
                let i0 = b * BLOCK_ROWS;
                let rows = out.len();
                for r in 0..rows {
                    for k in 0..d {
                        xs[r * d + k] = from[(k, i0 + r)];
                    }
                }
                let shifts = &shift[i0..i0 + rows];
                let sums = &mut sums[..rows];
                block_row_sums(
                    &xs[..rows * d],
                    to_flat,
                    col,
                    shifts,
                    inv_eps,
                    p,
                    tile,
                    sums,
                );
                for (r, o) in out.iter_mut().enumerate() {
                    let xi = &xs[r * d..(r + 1) * d];
                    *o = finish_shifted(sums[r], shifts[r], eps)
                        .unwrap_or_else(|| softmin_row_exact(xi, to_flat, col, eps, p, tile));
                }
            },
        );
}

/// The exact two-pass softmin of one row, for a row whose shifted sum left the safe range: the
/// max over all tiles, then the sum shifted by it.
fn softmin_row_exact(
    xi: &[f64],
    to: &[f64],
    col: &[f64],
    eps: f64,
    p: f64,
    tile: &mut [f64],
) -> f64 {
    let m = col.len();
    let mut hi = f64::NEG_INFINITY;
    for j0 in (0..m).step_by(TILE) {
        let t = &mut tile[..TILE.min(m - j0)];
        fill_cost_tile(xi, to, m, j0, p, t);
        hi = hi.max(max_gap(t, &col[j0..j0 + t.len()]));
    }
    if hi == f64::NEG_INFINITY {
        return f64::INFINITY;
    }
    -hi - eps * points_row_sum(xi, to, col, -hi, 1.0 / eps, p, true, tile).ln()
}

impl CostKernel for PointCost {
    fn shape(&self) -> (usize, usize) {
        (self.xt.ncols(), self.yt.ncols())
    }

    fn diameter(&self) -> f64 {
        // Diagonal of the joint bounding box: an upper bound of max |x − y|, cheap in O((n+m)d).
        let sq: f64 = self
            .xt
            .outer_iter()
            .zip(self.yt.outer_iter())
            .map(|(xk, yk)| {
                let (lo, hi) = xk
                    .iter()
                    .chain(yk.iter())
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                        (lo.min(v), hi.max(v))
                    });
                (hi - lo) * (hi - lo)
            })
            .sum();
        sq.powf(0.5 * self.p)
    }

    fn softmin_rows(&self, col: &[f64], shift: &[f64], eps: f64, out: &mut [f64]) {
        softmin_points(&self.xt, &self.yt, self.p, col, shift, eps, out)
    }

    fn softmin_cols(&self, row: &[f64], shift: &[f64], eps: f64, out: &mut [f64]) {
        softmin_points(&self.yt, &self.xt, self.p, row, shift, eps, out)
    }

    fn plan_sums(&self, row: &[f64], col: &[f64], eps: f64) -> PlanSums {
        let (n, m) = self.shape();
        let inv_eps = 1.0 / eps;
        let mut row_sums = vec![0.0; n];
        // As in `softmin_points`: a cancelled pass stops early, and its caller checks the flag.
        let flag = interrupt::current();
        let (col_sums, transport_cost) = row_sums
            .par_iter_mut()
            .enumerate()
            .with_min_len(rows_per_task(m))
            .fold(
                || (vec![0.0; m], 0.0, vec![0.0; TILE]),
                |(mut acc, mut t_acc, mut tile), (i, rs)| {
                    if flag.as_ref().is_some_and(CancelFlag::is_cancelled) {
                        *rs = f64::NAN;
                        return (acc, t_acc, tile);
                    }
                    let mut mass = 0.0;
                    for j0 in (0..m).step_by(TILE) {
                        let len = TILE.min(m - j0);
                        let t = &mut tile[..len];
                        cost_tile(&self.xt, i, &self.yt, j0, self.p, t);
                        let (mm, tc) = plan_row_sums(
                            t,
                            &col[j0..j0 + len],
                            row[i],
                            inv_eps,
                            &mut acc[j0..j0 + len],
                        );
                        mass += mm;
                        t_acc += tc;
                    }
                    *rs = mass;
                    (acc, t_acc, tile)
                },
            )
            .map(|(acc, t, _)| (acc, t))
            .reduce(
                || (vec![0.0; m], 0.0),
                |a, b| (add_into(a.0, b.0), a.1 + b.1),
            );
        PlanSums {
            row_sums,
            col_sums,
            transport_cost,
        }
    }

    fn is_symmetric(&self) -> bool {
        self.symmetric
    }

    fn cost_row(&self, i: usize, out: &mut [f64]) -> bool {
        cost_tile(&self.xt, i, &self.yt, 0, self.p, out);
        true
    }

    fn plan(&self, row: &[f64], col: &[f64], eps: f64) -> Array2<f64> {
        plan_from_cost(self.dense(), row, col, eps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cost::DenseCost;
    use ndarray::array;

    #[test]
    fn points_match_dense() {
        let x: Array2<f64> = array![[0.0, 0.0], [1.0, 0.5], [0.3, -0.2]];
        let y: Array2<f64> = array![[0.1, 0.9], [-0.5, 0.2], [0.7, 0.7], [0.0, 0.0]];
        for p in [1.0, 2.0, 1.5, 0.5] {
            let dense = Array2::from_shape_fn((3, 4), |(i, j)| {
                ((x[(i, 0)] - y[(j, 0)]).powi(2) + (x[(i, 1)] - y[(j, 1)]).powi(2)).powf(p / 2.0)
            });
            let pc = PointCost::new(x.view(), y.view(), p).unwrap();
            let dc = DenseCost::new(dense.view()).unwrap();
            let col = [0.1, -0.2, 0.0, 0.3];
            let (mut a, mut b) = (vec![0.0; 3], vec![0.0; 3]);
            pc.softmin_rows(&col, &[0.0; 3], 0.1, &mut a);
            dc.softmin_rows(&col, &[0.0; 3], 0.1, &mut b);
            assert!(a.iter().zip(&b).all(|(u, v)| (u - v).abs() < 1e-13));
            assert!(pc.diameter() >= dc.diameter());
        }
        assert!(PointCost::new(x.view(), array![[1.0]].view(), 2.0).is_err());
        assert!(PointCost::new(x.view(), y.view(), 0.0).is_err());
    }
}
