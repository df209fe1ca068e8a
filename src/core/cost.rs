//! Cost matrices behind one trait, [`CostKernel`]: the only thing the Sinkhorn family needs from
//! a cost is the two softmin reductions, the plan's sums and (for ε-scaling) its diameter.
//!
//! * [`DenseCost`]: an n×m matrix of any strides, borrowed (C- and F-ordered run at full speed;
//!   other strides gather one row at a time).
//! * [`PointCost`]: `|x_i − y_j|^p` for point clouds, computed tile by tile and never stored, so
//!   memory is O((n+m)·d) (DESIGN §3.1).

use ndarray::{Array2, ArrayView2, Axis, Zip};
use rayon::prelude::*;

use crate::core::error::{check_finite, OtError, Result};
use crate::core::logsumexp::{
    accumulate_exp, finish_shifted, max_gap, multiversion, plan_row_sums, softmin_exact, sum_exp,
    sum_exp_generic, sum_exp_sparse_generic,
};

/// Sums of the plan `P_ij = exp((row_i + col_j − C_ij)/ε)`.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanSums {
    pub row_sums: Vec<f64>,
    pub col_sums: Vec<f64>,
    /// `⟨C, P⟩`.
    pub transport_cost: f64,
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

    /// Row sums, column sums and `⟨C, P⟩` of `P_ij = exp((row_i + col_j − C_ij)/ε)`.
    fn plan_sums(&self, row: &[f64], col: &[f64], eps: f64) -> PlanSums;

    /// The dense plan `P_ij = exp((row_i + col_j − C_ij)/ε)` (exact `f64::exp`, so zero weights give exact zeros).
    fn plan(&self, row: &[f64], col: &[f64], eps: f64) -> Array2<f64>;
}

/// Rows per rayon task: enough work per task to amortise scheduling on small problems.
fn rows_per_task(row_len: usize) -> usize {
    (4096 / row_len.max(1)).max(1)
}

/// Row `i` of `c` as a slice: borrowed when contiguous, gathered into `buf` otherwise.
#[inline]
fn row_of<'b>(c: &'b ArrayView2<'_, f64>, i: usize, buf: &'b mut Vec<f64>) -> &'b [f64] {
    let row = c.row(i);
    match row.to_slice() {
        Some(s) => s,
        None => {
            buf.clear();
            buf.extend(row.iter().copied());
            buf.as_slice()
        }
    }
}

/// A dense cost matrix of any strides, borrowed from the caller.
pub struct DenseCost<'a> {
    /// Stored so that rows are contiguous whenever either axis is: `transposed` says whether
    /// `view` is `Cᵀ` (an F-ordered input).
    view: ArrayView2<'a, f64>,
    transposed: bool,
}

impl<'a> DenseCost<'a> {
    pub fn new(cost: ArrayView2<'a, f64>) -> Result<Self> {
        if cost.is_empty() {
            return Err(OtError::shape(
                "M",
                format!(
                    "cost matrix must not be empty, got shape {:?}",
                    cost.shape()
                ),
            ));
        }
        check_finite("M", cost.iter())?;
        let strides = cost.strides();
        let transposed = strides[1] != 1 && strides[0] == 1 && cost.ncols() > 1;
        let view = if transposed {
            cost.reversed_axes()
        } else {
            cost
        };
        Ok(DenseCost { view, transposed })
    }

    /// The borrowed matrix as given (for tests of the zero-copy boundary).
    pub fn as_ptr(&self) -> *const f64 {
        self.view.as_ptr()
    }

    /// `out_i = −ε log Σ_j exp((col_j − V_ij)/ε)` over the rows of the stored view.
    fn reduce_rows(&self, col: &[f64], shift: &[f64], eps: f64, out: &mut [f64]) {
        let v = &self.view;
        let inv_eps = 1.0 / eps;
        out.par_iter_mut()
            .enumerate()
            .with_min_len(rows_per_task(v.ncols()))
            .for_each_init(Vec::new, |buf, (i, o)| {
                let row = row_of(v, i, buf);
                let s = sum_exp(row, col, shift[i], inv_eps);
                *o = finish_shifted(s, shift[i], eps)
                    .unwrap_or_else(|| softmin_exact(row, col, eps));
            });
    }

    /// `out_j = −ε log Σ_i exp((row_i − V_ij)/ε)`: accumulated row by row so the matrix is read
    /// along its contiguous axis; columns whose shifted sum is unusable are redone exactly.
    fn accumulate_cols(&self, row: &[f64], shift: &[f64], eps: f64, out: &mut [f64]) {
        let v = &self.view;
        let (n, m) = v.dim();
        let inv_eps = 1.0 / eps;
        let sums = (0..n)
            .into_par_iter()
            .with_min_len(rows_per_task(m))
            .fold(
                || (vec![0.0; m], Vec::new()),
                |(mut acc, mut buf), i| {
                    accumulate_exp(row_of(v, i, &mut buf), shift, row[i], inv_eps, &mut acc);
                    (acc, buf)
                },
            )
            .map(|(acc, _)| acc)
            .reduce(|| vec![0.0; m], add_into);
        out.par_iter_mut().enumerate().for_each(|(j, o)| {
            *o = finish_shifted(sums[j], shift[j], eps).unwrap_or_else(|| {
                let column: Vec<f64> = v.column(j).to_vec();
                softmin_exact(&column, row, eps)
            });
        });
    }
}

fn add_into(mut a: Vec<f64>, b: Vec<f64>) -> Vec<f64> {
    a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
    a
}

impl CostKernel for DenseCost<'_> {
    fn shape(&self) -> (usize, usize) {
        let (r, c) = self.view.dim();
        if self.transposed {
            (c, r)
        } else {
            (r, c)
        }
    }

    fn diameter(&self) -> f64 {
        let (lo, hi) = self
            .view
            .axis_iter(Axis(0))
            .into_par_iter()
            .map(|r| {
                r.iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &c| {
                        (lo.min(c), hi.max(c))
                    })
            })
            .reduce(
                || (f64::INFINITY, f64::NEG_INFINITY),
                |a, b| (a.0.min(b.0), a.1.max(b.1)),
            );
        hi - lo
    }

    fn softmin_rows(&self, col: &[f64], shift: &[f64], eps: f64, out: &mut [f64]) {
        if self.transposed {
            self.accumulate_cols(col, shift, eps, out)
        } else {
            self.reduce_rows(col, shift, eps, out)
        }
    }

    fn softmin_cols(&self, row: &[f64], shift: &[f64], eps: f64, out: &mut [f64]) {
        if self.transposed {
            self.reduce_rows(row, shift, eps, out)
        } else {
            self.accumulate_cols(row, shift, eps, out)
        }
    }

    fn plan_sums(&self, row: &[f64], col: &[f64], eps: f64) -> PlanSums {
        // Work on the stored view V (= C or Cᵀ) and swap the roles back at the end.
        let (vrow, vcol) = if self.transposed {
            (col, row)
        } else {
            (row, col)
        };
        let v = &self.view;
        let (n, m) = v.dim();
        let inv_eps = 1.0 / eps;
        let mut sums_v_rows = vec![0.0; n];
        let (sums_v_cols, transport) = sums_v_rows
            .par_iter_mut()
            .enumerate()
            .with_min_len(rows_per_task(m))
            .fold(
                || (vec![0.0; m], 0.0, Vec::new()),
                |(mut acc, t, mut buf), (i, rs)| {
                    let (mass, cost) =
                        plan_row_sums(row_of(v, i, &mut buf), vcol, vrow[i], inv_eps, &mut acc);
                    *rs = mass;
                    (acc, t + cost, buf)
                },
            )
            .map(|(acc, t, _)| (acc, t))
            .reduce(
                || (vec![0.0; m], 0.0),
                |a, b| (add_into(a.0, b.0), a.1 + b.1),
            );
        let (row_sums, col_sums) = if self.transposed {
            (sums_v_cols, sums_v_rows)
        } else {
            (sums_v_rows, sums_v_cols)
        };
        PlanSums {
            row_sums,
            col_sums,
            transport_cost: transport,
        }
    }

    fn plan(&self, row: &[f64], col: &[f64], eps: f64) -> Array2<f64> {
        let c = if self.transposed {
            self.view.t()
        } else {
            self.view.view()
        };
        let mut p = Array2::zeros(c.dim());
        Zip::indexed(&mut p)
            .and(&c)
            .par_for_each(|(i, j), p, &c| *p = ((row[i] + col[j] - c) / eps).exp());
        p
    }
}

/// Columns per tile of an online cost: the tile stays in L1 while its exponentials are summed.
const TILE: usize = 256;

/// `C_ij = |x_i − y_j|^p` for point clouds x (n×d), y (m×d), never stored.
pub struct PointCost {
    /// Coordinates transposed (d×n and d×m, contiguous) so a tile of distances is a
    /// vectorisable loop over j.
    xt: Array2<f64>,
    yt: Array2<f64>,
    p: f64,
}

impl PointCost {
    pub fn new(x: ArrayView2<'_, f64>, y: ArrayView2<'_, f64>, p: f64) -> Result<Self> {
        if x.nrows() == 0 || x.ncols() == 0 {
            return Err(OtError::shape(
                "x",
                format!("point cloud must not be empty, got shape {:?}", x.shape()),
            ));
        }
        if y.nrows() == 0 || y.ncols() == 0 {
            return Err(OtError::shape(
                "y",
                format!("point cloud must not be empty, got shape {:?}", y.shape()),
            ));
        }
        if x.ncols() != y.ncols() {
            return Err(OtError::shape(
                "y",
                format!(
                    "points must have the dimension of x ({}), got {}",
                    x.ncols(),
                    y.ncols()
                ),
            ));
        }
        check_finite("x", x.iter())?;
        check_finite("y", y.iter())?;
        if !(p.is_finite() && p >= 1.0) {
            return Err(OtError::invalid(
                "p",
                format!("must be a finite exponent ≥ 1, got {p}"),
            ));
        }
        Ok(PointCost {
            xt: x.t().as_standard_layout().into_owned(),
            yt: y.t().as_standard_layout().into_owned(),
            p,
        })
    }

    pub fn dim(&self) -> usize {
        self.xt.nrows()
    }
}

/// Costs from point `i` of `from` (d×n) to points `j0..j0+out.len()` of `to` (d×m).
#[inline]
fn cost_tile(from: &Array2<f64>, i: usize, to: &Array2<f64>, j0: usize, p: f64, out: &mut [f64]) {
    out.fill(0.0);
    for k in 0..from.nrows() {
        let xk = from[(k, i)];
        let yk = &to.row(k).to_slice().expect("standard layout")[j0..j0 + out.len()];
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
fn fill_cost_tile(xi: &[f64], to: &[f64], m: usize, j0: usize, p: f64, out: &mut [f64]) {
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
            sum_exp_generic::<FMA>(t, &col[j0..j0 + len], shift, inv_eps)
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
    let to_flat = to.as_slice().expect("standard layout");
    let inv_eps = 1.0 / eps;
    out.par_iter_mut()
        .enumerate()
        .with_min_len(rows_per_task(m))
        .for_each_init(
            || (vec![0.0; TILE], vec![0.0; from.nrows()]),
            |(tile, xi), (i, o)| {
                xi.iter_mut().zip(from.column(i)).for_each(|(x, v)| *x = *v);
                let s = points_row_sum(xi, to_flat, col, shift[i], inv_eps, p, false, tile);
                *o = finish_shifted(s, shift[i], eps).unwrap_or_else(|| {
                    // Exact two-pass fallback: max over all tiles, then the shifted sum.
                    let mut hi = f64::NEG_INFINITY;
                    for j0 in (0..m).step_by(TILE) {
                        let t = &mut tile[..TILE.min(m - j0)];
                        cost_tile(from, i, to, j0, p, t);
                        hi = hi.max(max_gap(t, &col[j0..j0 + t.len()]));
                    }
                    if hi == f64::NEG_INFINITY {
                        return f64::INFINITY;
                    }
                    -hi - eps * points_row_sum(xi, to_flat, col, -hi, inv_eps, p, true, tile).ln()
                });
            },
        );
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
        let (col_sums, transport_cost) = row_sums
            .par_iter_mut()
            .enumerate()
            .with_min_len(rows_per_task(m))
            .fold(
                || (vec![0.0; m], 0.0, vec![0.0; TILE]),
                |(mut acc, mut t_acc, mut tile), (i, rs)| {
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

    fn plan(&self, row: &[f64], col: &[f64], eps: f64) -> Array2<f64> {
        let (n, m) = self.shape();
        let mut p = Array2::zeros((n, m));
        p.axis_iter_mut(Axis(0))
            .into_par_iter()
            .enumerate()
            .for_each(|(i, mut prow)| {
                let prow = prow.as_slice_mut().expect("standard layout");
                cost_tile(&self.xt, i, &self.yt, 0, self.p, prow);
                prow.iter_mut()
                    .zip(col)
                    .for_each(|(v, w)| *v = ((row[i] + w - *v) / eps).exp());
            });
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, s};

    fn naive_softmin_rows(c: &ArrayView2<f64>, col: &[f64], eps: f64) -> Vec<f64> {
        c.outer_iter()
            .map(|r| {
                let m = r
                    .iter()
                    .zip(col)
                    .map(|(c, w)| w - c)
                    .fold(f64::NEG_INFINITY, f64::max);
                -m - eps
                    * r.iter()
                        .zip(col)
                        .map(|(c, w)| ((w - c - m) / eps).exp())
                        .sum::<f64>()
                        .ln()
            })
            .collect()
    }

    #[test]
    fn dense_layouts_agree() {
        let c = Array2::from_shape_fn((7, 11), |(i, j)| ((i * 31 + j * 17) % 13) as f64 / 13.0);
        let col: Vec<f64> = (0..11).map(|j| 0.01 * j as f64).collect();
        let row: Vec<f64> = (0..7).map(|i| -0.02 * i as f64).collect();
        let eps = 0.05;
        let expected = naive_softmin_rows(&c.view(), &col, eps);
        let expected_cols = naive_softmin_rows(&c.t(), &row, eps);
        let f_order = c.t().as_standard_layout().into_owned();
        let big = Array2::from_shape_fn((14, 22), |(i, j)| c[(i / 2, j / 2)]);
        for view in [c.view(), f_order.t(), big.slice(s![..;2, ..;2])] {
            let k = DenseCost::new(view).unwrap();
            let mut out = vec![0.0; 7];
            // A deliberately poor shift exercises the fallback as well.
            k.softmin_rows(&col, &[1e6; 7], eps, &mut out);
            for (a, b) in out.iter().zip(&expected) {
                assert!((a - b).abs() < 1e-13, "{a} vs {b}");
            }
            let mut out = vec![0.0; 11];
            k.softmin_cols(&row, &vec![0.0; 11], eps, &mut out);
            for (a, b) in out.iter().zip(&expected_cols) {
                assert!((a - b).abs() < 1e-13, "{a} vs {b}");
            }
            let sums = k.plan_sums(&row, &col, eps);
            let plan = k.plan(&row, &col, eps);
            assert!((plan.sum_axis(Axis(1)).to_vec().iter().zip(&sums.row_sums))
                .all(|(a, b)| (a - b).abs() < 1e-12));
            assert!((plan.sum_axis(Axis(0)).to_vec().iter().zip(&sums.col_sums))
                .all(|(a, b)| (a - b).abs() < 1e-12));
            assert!(((&plan * &c).sum() - sums.transport_cost).abs() < 1e-12);
        }
    }

    #[test]
    fn points_match_dense() {
        let x: Array2<f64> = array![[0.0, 0.0], [1.0, 0.5], [0.3, -0.2]];
        let y: Array2<f64> = array![[0.1, 0.9], [-0.5, 0.2], [0.7, 0.7], [0.0, 0.0]];
        for p in [1.0, 2.0, 1.5] {
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
        assert!(PointCost::new(x.view(), y.view(), 0.5).is_err());
    }
}
