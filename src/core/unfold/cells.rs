//! The reco space quantized on a regular grid: the two log-sum-exps of eq. (25) (Craig et al.)
//! on the occupied cells instead of the points.
//!
//! Every response (and fake) row and every measured point is snapped to the centre of its cell
//! of a regular grid of spacing `h` per axis. Snapped points of one cell share their cost row,
//! so a column softmin needs only the per-cell log-sum-exp of the row terms,
//! `T_c = ε log Σ_{i∈c} e^{t_i/ε}` (a scatter, O(rows)), then a softmin between the occupied
//! row cells and the occupied measured cells, gathered back per measured point; the row softmin
//! likewise. The result is exactly that of the points snapped beforehand: the grid is a change
//! of the detector model (a detector that also bins at `h`, extra variance `h²/12` per axis),
//! carried by the response and the data alike, so the unfolding stays consistent.
//!
//! For the squared cost in 1-D and 2-D the cells' softmin runs on the dense grid spanning both
//! sides as a separable log-domain convolution ([`SeparableCells`]; Solomon et al. 2015,
//! "Convolutional Wasserstein distances"), O(N) plus the kernel's width in cells per output for
//! N grid cells, nothing stored. Otherwise it runs on the occupied cells with the online or
//! truncated kernel.

use ndarray::{Array1, Array2, ArrayView2};
use rayon::prelude::*;

use crate::core::error::{check_positive, OtError, Result};
use crate::core::logsumexp::sum_exp;

/// Largest dense grid (cells) the separable convolution runs on: a few vectors of it per
/// reduction, and the 1-D cost matrices of its sides.
pub const DENSE_MAX_CELLS: usize = 1 << 22;
/// Largest side of the dense grid (its `side²` 1-D cost matrix is stored).
pub const DENSE_MAX_SIDE: usize = 4096;

/// The snapping of the rows and columns of a problem to the occupied cells of one grid.
pub struct Cells {
    /// Grid spacing in raw reco units.
    pub spacing: f64,
    /// Occupied cell of every row (response and fake rows) and of every measured point.
    pub row_cell: Vec<usize>,
    pub col_cell: Vec<usize>,
    /// Centres (raw units) of the occupied row cells and measured cells.
    pub row_centres: Array2<f64>,
    pub col_centres: Array2<f64>,
    /// Integer grid coordinates of the occupied cells (per axis, from the grid's origin).
    row_index: Vec<Vec<usize>>,
    col_index: Vec<Vec<usize>>,
    /// Cells per axis of the grid spanning both sides.
    pub shape: Vec<usize>,
}

impl Cells {
    /// Snaps `rows` and `cols` (raw units, same dimension) to a grid of spacing `h` whose
    /// origin is the per-axis minimum over both: centre `o + ⌊(x − o)/h + ½⌋·h`.
    pub fn new(rows: ArrayView2<'_, f64>, cols: ArrayView2<'_, f64>, h: f64) -> Result<Self> {
        check_positive("grid_spacing", h)?;
        let d = rows.ncols();
        let origin: Vec<f64> = (0..d)
            .map(|a| {
                rows.column(a)
                    .iter()
                    .chain(cols.column(a).iter())
                    .fold(f64::INFINITY, |m, &v| m.min(v))
            })
            .collect();
        let index = |x: ArrayView2<'_, f64>| -> Vec<Vec<usize>> {
            x.outer_iter()
                .into_par_iter()
                .map(|p| {
                    p.iter()
                        .zip(&origin)
                        .map(|(v, o)| ((v - o) / h + 0.5).floor() as usize)
                        .collect()
                })
                .collect()
        };
        let (ri, ci) = (index(rows), index(cols));
        let shape: Vec<usize> = (0..d)
            .map(|a| ri.iter().chain(&ci).map(|k| k[a]).max().unwrap_or(0) + 1)
            .collect();
        let cells = shape
            .iter()
            .try_fold(1usize, |acc, &s| acc.checked_mul(s))
            .filter(|&n| n < usize::MAX / 2);
        if cells.is_none() {
            return Err(OtError::invalid(
                "grid_spacing",
                format!("{h} is too fine for the extent of the reco points"),
            ));
        }
        let (row_cell, row_index) = occupied(&ri, &shape);
        let (col_cell, col_index) = occupied(&ci, &shape);
        let centres = |idx: &[Vec<usize>]| {
            Array2::from_shape_fn((idx.len(), d), |(c, a)| origin[a] + idx[c][a] as f64 * h)
        };
        Ok(Cells {
            spacing: h,
            row_cell,
            col_cell,
            row_centres: centres(&row_index),
            col_centres: centres(&col_index),
            row_index,
            col_index,
            shape,
        })
    }

    /// Whether the separable convolution can run: squared cost, 1-D or 2-D, a grid small enough.
    pub fn fits_dense(&self, p: f64) -> bool {
        p == 2.0 && shape_fits_dense(&self.shape)
    }

    /// The separable kernel on the dense grid, the spacing divided by `scale` (the cost's
    /// normalisation `s`).
    pub fn separable(&self, scale: f64) -> Result<SeparableCells> {
        let (ny, nx) = match self.shape[..] {
            [nx] => (1, nx),
            [ny, nx] => (ny, nx),
            _ => {
                return Err(OtError::invalid(
                    "grid_spacing",
                    "the separable kernel runs in 1-D and 2-D",
                ))
            }
        };
        let flat = |idx: &[Vec<usize>]| -> Vec<usize> {
            idx.iter().map(|k| flat_index(k, &self.shape)).collect()
        };
        Ok(SeparableCells {
            ny,
            nx,
            h: self.spacing / scale,
            row_flat: flat(&self.row_index),
            col_flat: flat(&self.col_index),
        })
    }
}

/// Whether a dense grid of `shape` is small enough for the separable convolution (1-D or 2-D).
fn shape_fits_dense(shape: &[usize]) -> bool {
    shape.len() <= 2
        && shape.iter().all(|&s| s <= DENSE_MAX_SIDE)
        && shape.iter().product::<usize>() <= DENSE_MAX_CELLS
}

/// Whether the grid of spacing `h` spanning `rows` and `cols` fits the separable convolution,
/// from the points' extent (before snapping them).
pub fn dense_grid_fits(rows: ArrayView2<'_, f64>, cols: ArrayView2<'_, f64>, h: f64) -> bool {
    let shape: Option<Vec<usize>> = (0..rows.ncols())
        .map(|a| {
            let all = || rows.column(a).into_iter().chain(cols.column(a));
            let lo = all().fold(f64::INFINITY, |m, &v| m.min(v));
            let hi = all().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            let side = ((hi - lo) / h + 0.5).floor() + 1.0;
            (side <= DENSE_MAX_SIDE as f64).then_some(side as usize)
        })
        .collect();
    shape.is_some_and(|s| shape_fits_dense(&s))
}

/// The row-major (C order) index of grid coordinates `k` in a grid of `shape`.
fn flat_index(k: &[usize], shape: &[usize]) -> usize {
    k.iter().zip(shape).fold(0, |acc, (v, s)| acc * s + v)
}

/// The occupied cells of the points with grid indices `idx`: the cell of every point (into the
/// returned list) and the occupied cells' indices, in row-major order of the grid.
fn occupied(idx: &[Vec<usize>], shape: &[usize]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let keys: Vec<usize> = idx.par_iter().map(|k| flat_index(k, shape)).collect();
    let mut unique = keys.clone();
    unique.par_sort_unstable();
    unique.dedup();
    // Every key is in `unique`.
    let cell: Vec<usize> = keys
        .par_iter()
        .map(|k| unique.binary_search(k).unwrap_or_default())
        .collect();
    let mut member = vec![0; unique.len()];
    cell.iter().enumerate().for_each(|(i, &c)| member[c] = i);
    (cell, member.iter().map(|&i| idx[i].clone()).collect())
}

/// `T_c = ε log Σ_{i∈c} e^{t_i/ε}` for the cells `cell_of` of `terms` (−∞ for a cell whose
/// terms are all −∞).
pub fn cell_log_sums(terms: &[f64], cell_of: &[usize], n_cells: usize, eps: f64) -> Vec<f64> {
    let mut top = vec![f64::NEG_INFINITY; n_cells];
    for (t, &c) in terms.iter().zip(cell_of) {
        top[c] = top[c].max(*t);
    }
    let mut sum = vec![0.0; n_cells];
    for (t, &c) in terms.iter().zip(cell_of) {
        if top[c] > f64::NEG_INFINITY {
            sum[c] += ((t - top[c]) / eps).exp();
        }
    }
    top.iter()
        .zip(&sum)
        .map(|(m, s)| {
            if *m == f64::NEG_INFINITY {
                *m
            } else {
                m + eps * s.ln()
            }
        })
        .collect()
}

/// Sums of `values` per cell.
pub fn cell_sums(values: &[f64], cell_of: &[usize], n_cells: usize) -> Array1<f64> {
    let mut out = Array1::zeros(n_cells);
    for (v, &c) in values.iter().zip(cell_of) {
        out[c] += v;
    }
    out
}

/// The squared-cost softmins between occupied cells on the dense grid spanning both sides:
/// `exp(−C/ε)` factorises over the axes, so a softmin is one pass of 1-D log-sum-exps per axis
/// (Solomon et al. 2015). Each 1-D output sums only the window where its terms can matter
/// ([`line_softmin`]), so a pass costs the grid's cells times the kernel's width in cells.
pub struct SeparableCells {
    /// Cells along y and x (C order, `i = i_y·n_x + i_x`; 1-D is `n_y = 1`).
    ny: usize,
    nx: usize,
    /// The spacing in the units of the normalised cost.
    h: f64,
    row_flat: Vec<usize>,
    col_flat: Vec<usize>,
}

/// Each dropped 1-D term is below `e^{−LINE_MARGIN}` times the largest one (relative error
/// ≤ side·e^{−40} ≈ 2e-14 for sides up to [`DENSE_MAX_SIDE`]).
const LINE_MARGIN: f64 = 40.0;

impl SeparableCells {
    /// `out_c = −ε log Σ_r exp((t_r − C_rc)/ε)` from the measured cells' terms to the row cells
    /// (`rows`) or from the row cells' terms to the measured cells (the cost is symmetric).
    ///
    /// The pass along x is evaluated lazily: its max-plus transforms (exact lower bounds, at
    /// most `ε log n_x` below the log-sums) are computed for the whole grid in O(N), and the
    /// log-sums only where a target's window along y needs them. Far from the occupied cells a
    /// log-sum would need a window reaching back to them, and no target ever reads it.
    pub fn softmin(&self, rows: bool, terms: &[f64], eps: f64, out: &mut [f64]) {
        let (from, to) = if rows {
            (&self.col_flat, &self.row_flat)
        } else {
            (&self.row_flat, &self.col_flat)
        };
        let (ny, nx) = (self.ny, self.nx);
        let mut dense = vec![f64::NEG_INFINITY; ny * nx];
        from.iter().zip(terms).for_each(|(&f, t)| dense[f] = *t);
        let (cost_x, cost_y) = (self.offset_costs(nx), self.offset_costs(ny));
        let mut top_x = vec![0.0; ny * nx];
        top_x
            .par_chunks_mut(nx)
            .zip(dense.par_chunks(nx))
            .for_each(|(top, line)| top.copy_from_slice(&max_plus_transform(line, &cost_x)));
        let mut by_column: Vec<Vec<(usize, usize)>> = vec![Vec::new(); nx];
        for (i, &f) in to.iter().enumerate() {
            by_column[f % nx].push((f / nx, i));
        }
        let slack_x = eps * (nx as f64).ln();
        let along_x = |y: usize, x: usize| {
            let line = y * nx..(y + 1) * nx;
            let (t, top) = (&dense[line.clone()], &top_x[line]);
            window(top, |_| 0.0, x, &cost_x, eps).map_or(f64::NEG_INFINITY, |(lo, hi)| {
                shifted_log_sum(&t[lo..hi], offsets(&cost_x, x, lo, hi), eps)
            })
        };
        let values: Vec<(usize, f64)> = by_column
            .par_iter()
            .enumerate()
            .filter(|(_, targets)| !targets.is_empty())
            .flat_map_iter(|(x, targets)| {
                let lower: Vec<f64> = (0..ny).map(|y| top_x[y * nx + x]).collect();
                let top_y = max_plus_transform(&lower, &cost_y);
                let mut v = vec![f64::NAN; ny];
                let mut column = Vec::with_capacity(targets.len());
                for &(y, i) in targets {
                    let value = match window(&top_y, |_| slack_x, y, &cost_y, eps) {
                        None => f64::NEG_INFINITY,
                        Some((lo, hi)) => {
                            for (k, vk) in v.iter_mut().enumerate().take(hi).skip(lo) {
                                if vk.is_nan() {
                                    *vk = along_x(k, x);
                                }
                            }
                            shifted_log_sum(&v[lo..hi], offsets(&cost_y, y, lo, hi), eps)
                        }
                    };
                    column.push((i, -value));
                }
                column
            })
            .collect();
        values.into_iter().for_each(|(i, v)| out[i] = v);
    }

    /// `cost[len − 1 + δ] = (hδ)²` for the offsets δ in (−len, len) of a line of `len` cells.
    fn offset_costs(&self, len: usize) -> Vec<f64> {
        (0..2 * len - 1)
            .map(|k| {
                let d = (k as f64 - (len - 1) as f64) * self.h;
                d * d
            })
            .collect()
    }
}

/// The costs from output `l` to the cells `lo..hi` of its line.
fn offsets(cost: &[f64], l: usize, lo: usize, hi: usize) -> &[f64] {
    let centre = cost.len() / 2;
    &cost[centre + lo - l..centre + hi - l]
}

/// The window `lo..hi` of output `l` of a line outside which every term
/// `t_k − (h(k − l))²` is `e^{−LINE_MARGIN}` below the largest, given `top`, a lower bound of
/// each output's largest term that is exact up to `slack(j)`:
/// `top_j ≤ max_k (t_k − (h(k − j))²) ≤ top_j + slack(j)`; `None` if the line is empty.
///
/// For `k > l + W`, `(k − l)² ≥ (k − j)² + (W + 1)²` with `j = l + W + 1`, so the terms beyond
/// the window are at most `top_j + slack(j) − (h(W + 1))²` (likewise on the left): the window
/// grows until both bounds are `e^{−LINE_MARGIN}` below `top_l`.
fn window(
    top: &[f64],
    slack: impl Fn(usize) -> f64,
    l: usize,
    cost: &[f64],
    eps: f64,
) -> Option<(usize, usize)> {
    let n = top.len();
    let m = top[l];
    if m == f64::NEG_INFINITY {
        return None;
    }
    let margin = LINE_MARGIN * eps;
    let bound = |k: Option<usize>| {
        k.filter(|&k| k < n)
            .map_or(f64::NEG_INFINITY, |k| top[k] + slack(k))
    };
    let centre = n - 1;
    let mut w = 0;
    while w + 1 < n {
        let outside = bound(Some(l + w + 1)).max(bound(l.checked_sub(w + 1)));
        if outside - cost[centre + w + 1] < m - margin {
            break;
        }
        w += 1;
    }
    Some((l.saturating_sub(w), (l + w + 1).min(n)))
}

/// `ε log Σ_k exp((t_k − c_k)/ε)`, shifted by its exact maximum.
fn shifted_log_sum(t: &[f64], c: &[f64], eps: f64) -> f64 {
    let shift = t
        .iter()
        .zip(c)
        .map(|(t, c)| t - c)
        .fold(f64::NEG_INFINITY, f64::max);
    if shift == f64::NEG_INFINITY {
        return shift;
    }
    shift + eps * sum_exp(c, t, -shift, 1.0 / eps).ln()
}

/// `M_l = max_k (t_k − cost(k − l))` for the squared cost `cost[len − 1 + δ] = (hδ)²`, by the
/// lower envelope of the parabolas `(hδ)² − t_k` (Felzenszwalb & Huttenlocher, "Distance
/// transforms of sampled functions", 2012); −∞ where every `t` is.
fn max_plus_transform(t: &[f64], cost: &[f64]) -> Vec<f64> {
    let n = t.len();
    // cost[n] = h² (when the line has a second cell; else no two parabolas ever meet).
    let h2 = cost.get(n).map_or(1.0, |c| *c);
    let finite: Vec<usize> = (0..n).filter(|&k| t[k] > f64::NEG_INFINITY).collect();
    if finite.is_empty() {
        return vec![f64::NEG_INFINITY; n];
    }
    // Parabola k: (h(l − k))² − t_k; where parabola q overtakes parabola v.
    let meet = |q: usize, v: usize| {
        let (qf, vf) = (q as f64, v as f64);
        ((h2 * qf * qf - t[q]) - (h2 * vf * vf - t[v])) / (2.0 * h2 * (qf - vf))
    };
    let mut hull = vec![finite[0]];
    let mut from = vec![f64::NEG_INFINITY];
    for &q in &finite[1..] {
        let mut s = meet(q, hull[hull.len() - 1]);
        while s <= from[from.len() - 1] {
            hull.pop();
            from.pop();
            s = meet(q, hull[hull.len() - 1]);
        }
        hull.push(q);
        from.push(s);
    }
    let mut j = 0;
    (0..n)
        .map(|l| {
            while j + 1 < hull.len() && from[j + 1] < l as f64 {
                j += 1;
            }
            t[hull[j]] - cost[n - 1 + l.abs_diff(hull[j])]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cost::{CostKernel, PointCost};

    /// Deterministic pseudo-random values in [0, 1).
    fn uniform(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (s >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect()
    }

    fn cloud(n: usize, d: usize, seed: u64) -> Array2<f64> {
        // Two clusters far apart, so lines hold empty stretches and far cells.
        let u = uniform(n * d, seed);
        Array2::from_shape_fn((n, d), |(i, a)| {
            u[i * d + a] * 0.3 + if i % 3 == 0 { 0.7 } else { 0.0 }
        })
    }

    #[test]
    fn separable_softmins_equal_the_online_kernel_on_the_cells() {
        for d in [1, 2] {
            let (rows, cols) = (cloud(300, d, 1), cloud(200, d, 2));
            let cells = Cells::new(rows.view(), cols.view(), 0.01).unwrap();
            let sep = cells.separable(1.0).unwrap();
            let online =
                PointCost::new(cells.row_centres.view(), cells.col_centres.view(), 2.0).unwrap();
            let (nr, nc) = (cells.row_centres.nrows(), cells.col_centres.nrows());
            for eps in [1e-4, 3e-3, 0.1] {
                // Terms with a large trend and some rows without mass.
                let row_terms: Vec<f64> = uniform(nr, 3)
                    .iter()
                    .enumerate()
                    .map(|(i, u)| {
                        if i % 7 == 0 {
                            f64::NEG_INFINITY
                        } else {
                            0.5 * u - 0.2
                        }
                    })
                    .collect();
                let col_terms: Vec<f64> = uniform(nc, 4).iter().map(|u| 40.0 * eps * u).collect();
                let (mut a, mut b) = (vec![0.0; nc], vec![0.0; nc]);
                sep.softmin(false, &row_terms, eps, &mut a);
                online.softmin_cols(&row_terms, &vec![0.0; nc], eps, &mut b);
                let (mut c, mut e) = (vec![0.0; nr], vec![0.0; nr]);
                sep.softmin(true, &col_terms, eps, &mut c);
                online.softmin_rows(&col_terms, &vec![0.0; nr], eps, &mut e);
                for (x, y) in a.iter().zip(&b).chain(c.iter().zip(&e)) {
                    assert!(
                        (x - y).abs() <= 1e-12 * y.abs().max(1.0),
                        "d={d} ε={eps}: {x} vs {y}"
                    );
                }
            }
        }
    }

    #[test]
    fn cells_snap_to_centres_and_reduce_by_log_sum_exp() {
        let rows = Array2::from_shape_vec((4, 1), vec![0.0, 0.04, 0.26, 0.27]).unwrap();
        let cols = Array2::from_shape_vec((2, 1), vec![0.11, 0.5]).unwrap();
        let cells = Cells::new(rows.view(), cols.view(), 0.1).unwrap();
        assert_eq!(cells.row_cell, vec![0, 0, 1, 1]);
        assert_eq!(
            cells.row_centres.column(0).to_vec(),
            vec![0.0, 0.30000000000000004]
        );
        assert_eq!(cells.col_centres.column(0).to_vec(), vec![0.1, 0.5]);
        assert_eq!(cells.shape, vec![6]);
        let t = cell_log_sums(&[0.0, 0.0, f64::NEG_INFINITY, 1.0], &cells.row_cell, 2, 0.5);
        assert!((t[0] - 0.5 * 2f64.ln()).abs() < 1e-15 && t[1] == 1.0);
        assert!(Cells::new(rows.view(), cols.view(), 0.0).is_err());
    }
}
