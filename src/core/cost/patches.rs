//! `C_ij = |x_i − y_j|²` for patch clouds in d = p² dimensions, computed tile by tile from the
//! matrix-product form `|x_i|² + |y_j|² − 2 x_i·y_j` with a register-blocked micro-kernel (4 rows
//! × 8 columns of `x·yᵀ` held in registers over the d coordinates) and fed straight into the
//! streaming shifted log-sum-exp of [`crate::core::logsumexp`]. The cost matrix is never stored.
//! It implements [`CostKernel`], so [`crate::core::sinkhorn::sinkhorn`] solves OT_{ε,ρ} on it
//! unchanged; [`PatchCost::moments`] adds the one extra pass the patch gradient needs.

use ndarray::{Array1, Array2, ArrayView2};
use rayon::prelude::*;

use super::{add_into, check_clouds, plan_from_cost, CostKernel, PlanSums};
use crate::core::error::Result;
use crate::core::logsumexp::{
    exp_in_place_sum, finish_shifted, max_gap, plan_row_sums, sum_exp, sum_exp_sparse,
};
use crate::core::simd::{dot, lanes, lanes_mut, mul_add, multiversion, LANES};

/// Rows of `x·yᵀ` computed together: each loaded vector of `y` is reused for this many rows.
pub(super) const ROWS: usize = 4; // the micro-kernel below is written out for exactly 4 rows
/// Columns per tile: a ROWS×TILE block of costs stays in L1 while its exponentials are summed.
pub(super) const TILE: usize = 256;
/// Row blocks per task of the softmin pass (see `softmin_clouds`).
const PANEL: usize = 8;

/// One patch cloud in the two layouts the micro-kernel needs.
pub struct Cloud {
    pub(super) n: usize,
    pub(super) d: usize,
    /// n×d, row-major: the broadcast side.
    pub(super) rows: Vec<f64>,
    /// d×n_pad, zero-padded to a multiple of [`LANES`]: the vector side.
    cols: Vec<f64>,
    n_pad: usize,
    /// `|x_i|²`, padded with zeros.
    norms: Vec<f64>,
}

impl Cloud {
    fn new(x: ArrayView2<'_, f64>) -> Self {
        let (n, d) = x.dim();
        let n_pad = n.div_ceil(LANES) * LANES;
        let rows: Vec<f64> = x.iter().copied().collect();
        let mut cols = vec![0.0; d * n_pad];
        let mut norms = vec![0.0; n_pad];
        for (i, p) in rows.chunks_exact(d).enumerate() {
            for (k, &v) in p.iter().enumerate() {
                cols[k * n_pad + i] = v;
            }
            norms[i] = p.iter().map(|v| v * v).sum();
        }
        Cloud {
            n,
            d,
            rows,
            cols,
            n_pad,
            norms,
        }
    }
}

/// `out[r·TILE + jj] = |from_{i0+r}|² + |to_{j0+jj}|² − 2 from_{i0+r}·to_{j0+jj}` for r < ROWS,
/// jj < len (rounded up to LANES; rows past the end repeat the last row and are ignored).
#[inline(always)]
fn sq_dist_block_generic<const FMA: bool>(
    from: &Cloud,
    i0: usize,
    to: &Cloud,
    j0: usize,
    len: usize,
    out: &mut [f64],
) {
    let madd = mul_add::<FMA>;
    let d = from.d;
    let last = from.n - 1;
    debug_assert_eq!(ROWS, 4);
    let idx: [usize; ROWS] = std::array::from_fn(|r| (i0 + r).min(last));
    let x: [&[f64]; ROWS] = std::array::from_fn(|r| &from.rows[idx[r] * d..(idx[r] + 1) * d]);
    let xn: [f64; ROWS] = std::array::from_fn(|r| from.norms[idx[r]]);
    let mp = to.n_pad;
    let rows_of_y = to.cols.chunks_exact(mp);
    for jc in (0..len).step_by(LANES) {
        let j = j0 + jc;
        // Four independent accumulators of LANES columns: stay in registers over the d
        // coordinates, and each loaded vector of y feeds four rows (tiles of x·yᵀ).
        let (mut acc0, mut acc1, mut acc2, mut acc3) = (
            [0.0f64; LANES],
            [0.0f64; LANES],
            [0.0f64; LANES],
            [0.0f64; LANES],
        );
        for ((((yrow, &a0), &a1), &a2), &a3) in
            rows_of_y.clone().zip(x[0]).zip(x[1]).zip(x[2]).zip(x[3])
        {
            let y = lanes(yrow, j);
            for l in 0..LANES {
                acc0[l] = madd(a0, y[l], acc0[l]);
                acc1[l] = madd(a1, y[l], acc1[l]);
                acc2[l] = madd(a2, y[l], acc2[l]);
                acc3[l] = madd(a3, y[l], acc3[l]);
            }
        }
        let yn = lanes(&to.norms, j);
        for (r, acc) in [acc0, acc1, acc2, acc3].iter().enumerate() {
            let o = lanes_mut(out, r * TILE + jc);
            for l in 0..LANES {
                // Rounding can make the expanded form slightly negative for near-equal patches.
                o[l] = (xn[r] + yn[l] - 2.0 * acc[l]).max(0.0);
            }
        }
    }
}

multiversion! {
    /// A ROWS×len block of squared distances (see `sq_dist_block_generic`).
    pub fn sq_dist_block(from: &Cloud, i0: usize, to: &Cloud, j0: usize, len: usize, out: &mut [f64]) => sq_dist_block_generic
}

/// [`sum_exp_sparse`] results below this are recomputed densely: then every skipped term is
/// below `e^{SKIP_BELOW}/SPARSE_MIN_SUM = e^{-60}` of the sum, i.e. beneath double rounding for any
/// realistic number of reference patches.
const SPARSE_MIN_SUM: f64 = 2.061_153_622_438_558e-9; // e^{-20}

multiversion! {
    /// Overwrites a cost row with the plan entries `exp((row + col_j − c_j)/ε)`; returns their sum.
    pub fn plan_tile(cost: &mut [f64], col: &[f64], row: f64, inv_eps: f64) -> f64 => exp_in_place_sum
}

/// Row blocks per rayon task: enough pairs per task to amortise scheduling.
fn blocks_per_task(m: usize) -> usize {
    (2048 / (ROWS * m.max(1))).max(1)
}

/// `out_i = −ε log Σ_j exp((col_j − |from_i − to_j|²)/ε)`, stabilised by `shift_i` with the
/// exact two-pass fallback [`softmin_exact_row`].
fn softmin_clouds(from: &Cloud, to: &Cloud, col: &[f64], shift: &[f64], eps: f64, out: &mut [f64]) {
    let m = to.n;
    let inv_eps = 1.0 / eps;
    // A panel of PANEL·ROWS rows per task, tiles of `to` in the outer loop: one tile of `to`
    // (d·TILE values) is reused by the whole panel while it sits in L2.
    out.par_chunks_mut(PANEL * ROWS).enumerate().for_each_init(
        || vec![0.0; ROWS * TILE],
        |tile, (pb, panel)| {
            let p0 = pb * PANEL * ROWS;
            let mut sums = [0.0; PANEL * ROWS];
            for j0 in (0..m).step_by(TILE) {
                let len = TILE.min(m - j0);
                for b0 in (0..panel.len()).step_by(ROWS) {
                    sq_dist_block(from, p0 + b0, to, j0, len, tile);
                    for r in 0..ROWS.min(panel.len() - b0) {
                        let i = p0 + b0 + r;
                        sums[b0 + r] += sum_exp_sparse(
                            &tile[r * TILE..r * TILE + len],
                            &col[j0..j0 + len],
                            shift[i],
                            inv_eps,
                        );
                    }
                }
            }
            for (q, o) in panel.iter_mut().enumerate() {
                let (i, i0, r) = (p0 + q, p0 + q / ROWS * ROWS, q % ROWS);
                let usable = if sums[q] >= SPARSE_MIN_SUM {
                    Some(sums[q])
                } else {
                    None
                };
                *o = usable
                    .and_then(|s| finish_shifted(s, shift[i], eps))
                    .unwrap_or_else(|| softmin_exact_row(from, i0, r, to, col, eps, tile));
            }
        },
    );
}

/// Row `i0 + r` of [`softmin_clouds`] evaluated exactly, in two passes with the true max shift:
/// the fallback when the guessed shift left the sum unusable.
pub(super) fn softmin_exact_row(
    from: &Cloud,
    i0: usize,
    r: usize,
    to: &Cloud,
    col: &[f64],
    eps: f64,
    tile: &mut [f64],
) -> f64 {
    let m = to.n;
    let mut hi = f64::NEG_INFINITY;
    for j0 in (0..m).step_by(TILE) {
        let len = TILE.min(m - j0);
        sq_dist_block(from, i0, to, j0, len, tile);
        hi = hi.max(max_gap(&tile[r * TILE..r * TILE + len], &col[j0..j0 + len]));
    }
    if hi == f64::NEG_INFINITY {
        return f64::INFINITY;
    }
    let mut s = 0.0;
    for j0 in (0..m).step_by(TILE) {
        let len = TILE.min(m - j0);
        sq_dist_block(from, i0, to, j0, len, tile);
        s += sum_exp(
            &tile[r * TILE..r * TILE + len],
            &col[j0..j0 + len],
            -hi,
            1.0 / eps,
        );
    }
    -hi - eps * s.ln()
}

/// `C_ij = |x_i − y_j|²` for two patch clouds of the same dimension, never stored.
pub struct PatchCost {
    pub(super) x: Cloud,
    pub(super) y: Cloud,
}

/// What one extra pass over the plan gives besides the Sinkhorn output.
#[derive(Clone, Debug)]
pub struct PlanMoments {
    /// `Σ_j π_ij` (n).
    pub row_mass: Array1<f64>,
    /// `Σ_i π_ij`: the mass each reference patch receives (m).
    pub col_mass: Array1<f64>,
    /// `Σ_j π_ij y_j` (n×d).
    pub barycentric: Array2<f64>,
}

impl PatchCost {
    pub fn new(x: ArrayView2<'_, f64>, y: ArrayView2<'_, f64>) -> Result<Self> {
        check_clouds(x, y, "patch", "patches")?;
        Ok(PatchCost {
            x: Cloud::new(x),
            y: Cloud::new(y),
        })
    }

    /// Row masses, column masses and barycentric sums `Σ_j π_ij y_j` of
    /// `π_ij = exp((row_i + col_j − C_ij)/ε)`, in one tiled pass.
    pub fn moments(&self, row: &[f64], col: &[f64], eps: f64) -> PlanMoments {
        let (n, m, d) = (self.x.n, self.y.n, self.x.d);
        let inv_eps = 1.0 / eps;
        let mut row_mass = vec![0.0; n];
        let mut bary = vec![0.0; n * d];
        let col_mass = row_mass
            .par_chunks_mut(ROWS)
            .zip(bary.par_chunks_mut(ROWS * d))
            .enumerate()
            .with_min_len(blocks_per_task(m))
            .fold(
                || (vec![0.0; m], vec![0.0; ROWS * TILE]),
                |(mut acc, mut tile), (b, (rm, bc))| {
                    let i0 = b * ROWS;
                    for j0 in (0..m).step_by(TILE) {
                        let len = TILE.min(m - j0);
                        sq_dist_block(&self.x, i0, &self.y, j0, len, &mut tile);
                        for (r, mass) in rm.iter_mut().enumerate() {
                            let p = &mut tile[r * TILE..r * TILE + len];
                            *mass += plan_tile(p, &col[j0..j0 + len], row[i0 + r], inv_eps);
                            acc[j0..j0 + len]
                                .iter_mut()
                                .zip(p.iter())
                                .for_each(|(a, v)| *a += v);
                            for (k, s) in bc[r * d..(r + 1) * d].iter_mut().enumerate() {
                                let yk = &self.y.cols
                                    [k * self.y.n_pad + j0..k * self.y.n_pad + j0 + len];
                                *s += dot(p, yk);
                            }
                        }
                    }
                    (acc, tile)
                },
            )
            .map(|(acc, _)| acc)
            .reduce(|| vec![0.0; m], add_into);
        PlanMoments {
            row_mass: Array1::from(row_mass),
            col_mass: Array1::from(col_mass),
            barycentric: Array2::from_shape_fn((n, d), |(i, k)| bary[i * d + k]),
        }
    }

    /// The full n×m cost matrix (tests and small problems only).
    pub fn dense(&self) -> Array2<f64> {
        let (n, m) = self.shape();
        let mut c = Array2::zeros((n, m));
        let mut tile = vec![0.0; ROWS * TILE];
        for i0 in (0..n).step_by(ROWS) {
            for j0 in (0..m).step_by(TILE) {
                let len = TILE.min(m - j0);
                sq_dist_block(&self.x, i0, &self.y, j0, len, &mut tile);
                for r in 0..ROWS.min(n - i0) {
                    for jj in 0..len {
                        c[(i0 + r, j0 + jj)] = tile[r * TILE + jj];
                    }
                }
            }
        }
        c
    }
}

impl CostKernel for PatchCost {
    fn shape(&self) -> (usize, usize) {
        (self.x.n, self.y.n)
    }

    fn diameter(&self) -> f64 {
        // Squared diagonal of the joint bounding box bounds every |x_i − y_j|² (for patches of
        // [0, 1] pixels it is at most d, far below (max|x| + max|y|)²), so ε-scaling starts low.
        let (n, m, d) = (self.x.n, self.y.n, self.x.d);
        (0..d)
            .map(|k| {
                let xs = &self.x.cols[k * self.x.n_pad..k * self.x.n_pad + n];
                let ys = &self.y.cols[k * self.y.n_pad..k * self.y.n_pad + m];
                let (lo, hi) = xs
                    .iter()
                    .chain(ys)
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                        (lo.min(v), hi.max(v))
                    });
                (hi - lo) * (hi - lo)
            })
            .sum()
    }

    fn softmin_rows(&self, col: &[f64], shift: &[f64], eps: f64, out: &mut [f64]) {
        softmin_clouds(&self.x, &self.y, col, shift, eps, out)
    }

    fn softmin_cols(&self, row: &[f64], shift: &[f64], eps: f64, out: &mut [f64]) {
        softmin_clouds(&self.y, &self.x, row, shift, eps, out)
    }

    fn plan_sums(&self, row: &[f64], col: &[f64], eps: f64) -> PlanSums {
        let (n, m) = self.shape();
        let inv_eps = 1.0 / eps;
        let mut row_sums = vec![0.0; n];
        let (col_sums, transport_cost) = row_sums
            .par_chunks_mut(ROWS)
            .enumerate()
            .with_min_len(blocks_per_task(m))
            .fold(
                || (vec![0.0; m], 0.0, vec![0.0; ROWS * TILE]),
                |(mut acc, mut t_acc, mut tile), (b, rs)| {
                    let i0 = b * ROWS;
                    for j0 in (0..m).step_by(TILE) {
                        let len = TILE.min(m - j0);
                        sq_dist_block(&self.x, i0, &self.y, j0, len, &mut tile);
                        for (r, s) in rs.iter_mut().enumerate() {
                            let (mass, cost) = plan_row_sums(
                                &tile[r * TILE..r * TILE + len],
                                &col[j0..j0 + len],
                                row[i0 + r],
                                inv_eps,
                                &mut acc[j0..j0 + len],
                            );
                            *s += mass;
                            t_acc += cost;
                        }
                    }
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
        plan_from_cost(self.dense(), row, col, eps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cost::PointCost;
    use crate::core::testing::cloud;
    use ndarray::Axis;

    #[test]
    fn fused_kernel_matches_point_cost() {
        // Sizes that are not multiples of ROWS, LANES or TILE.
        let x = cloud(37, 36, 3);
        let y = cloud(301, 36, 4);
        let pc = PointCost::new(x.view(), y.view(), 2.0).unwrap();
        let k = PatchCost::new(x.view(), y.view()).unwrap();
        let col: Vec<f64> = (0..301).map(|j| 0.01 * (j % 7) as f64).collect();
        let row: Vec<f64> = (0..37).map(|i| -0.02 * (i % 5) as f64).collect();
        for eps in [1.0, 0.05, 1e-3] {
            let (mut a, mut b) = (vec![0.0; 37], vec![0.0; 37]);
            pc.softmin_rows(&col, &[0.0; 37], eps, &mut a);
            k.softmin_rows(&col, &[0.0; 37], eps, &mut b);
            assert!(
                a.iter().zip(&b).all(|(u, v)| (u - v).abs() < 1e-11),
                "{a:?} {b:?}"
            );
            let (mut a, mut b) = (vec![0.0; 301], vec![0.0; 301]);
            pc.softmin_cols(&row, &[0.0; 301], eps, &mut a);
            k.softmin_cols(&row, &[0.0; 301], eps, &mut b);
            assert!(a.iter().zip(&b).all(|(u, v)| (u - v).abs() < 1e-11));
            let (s1, s2) = (pc.plan_sums(&row, &col, eps), k.plan_sums(&row, &col, eps));
            assert!(
                (s1.transport_cost - s2.transport_cost).abs()
                    < 1e-9 * s1.transport_cost.abs().max(1e-300)
            );
        }
        assert!(k.diameter() >= k.dense().iter().fold(0.0f64, |a, &b| a.max(b)));
    }

    #[test]
    fn sparse_sums_are_exact_for_any_shift() {
        let x = cloud(21, 36, 11);
        let y = cloud(517, 36, 12);
        let pc = PointCost::new(x.view(), y.view(), 2.0).unwrap();
        let k = PatchCost::new(x.view(), y.view()).unwrap();
        let col: Vec<f64> = (0..517).map(|j| 0.002 * (j % 11) as f64).collect();
        let eps = 4e-4;
        let mut exact = vec![0.0; 21];
        pc.softmin_rows(&col, &[0.0; 21], eps, &mut exact);
        // Good guesses (sparse path), guesses off by ±5ε and ±30ε (the latter: dense fallback).
        for off in [0.0, 5.0, -5.0, 30.0, -30.0] {
            let shift: Vec<f64> = exact.iter().map(|v| v + off * eps).collect();
            let mut out = vec![0.0; 21];
            k.softmin_rows(&col, &shift, eps, &mut out);
            for (a, b) in out.iter().zip(&exact) {
                assert!(
                    (a - b).abs() < 1e-12 * eps.max(b.abs()),
                    "offset {off}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn moments_match_the_dense_plan() {
        let x = cloud(13, 9, 5);
        let y = cloud(21, 9, 6);
        let k = PatchCost::new(x.view(), y.view()).unwrap();
        let row: Vec<f64> = (0..13).map(|i| -0.3 - 0.01 * i as f64).collect();
        let col: Vec<f64> = (0..21).map(|j| -0.2 + 0.01 * j as f64).collect();
        let p = k.plan(&row, &col, 0.1);
        let mom = k.moments(&row, &col, 0.1);
        let bary = p.dot(&y);
        assert!((&bary - &mom.barycentric).iter().all(|v| v.abs() < 1e-12));
        assert!((&p.sum_axis(Axis(1)) - &mom.row_mass)
            .iter()
            .all(|v| v.abs() < 1e-12));
        assert!((&p.sum_axis(Axis(0)) - &mom.col_mass)
            .iter()
            .all(|v| v.abs() < 1e-12));
    }

    #[test]
    #[ignore]
    fn time_softmin() {
        let x = cloud(3481, 36, 9);
        let y = cloud(1000, 36, 10);
        let k = PatchCost::new(x.view(), y.view()).unwrap();
        let col = vec![0.0; 1000];
        let mut out = vec![0.0; 3481];
        k.softmin_rows(&col, &vec![0.0; 3481], 1.0, &mut out);
        let t = std::time::Instant::now();
        for _ in 0..10 {
            k.softmin_rows(&col, &out.clone(), 1.0, &mut out);
        }
        let ns = t.elapsed().as_secs_f64() / 10.0 / (3481.0 * 1000.0) * 1e9;
        let mut tile = vec![0.0; ROWS * TILE];
        let t = std::time::Instant::now();
        for _ in 0..10 {
            for i0 in (0..3481).step_by(ROWS) {
                for j0 in (0..1000).step_by(TILE) {
                    sq_dist_block(&k.x, i0, &k.y, j0, TILE.min(1000 - j0), &mut tile);
                }
            }
        }
        let ns_dist = t.elapsed().as_secs_f64() / 10.0 / (3481.0 * 1000.0) * 1e9;
        eprintln!("softmin {ns:.2} ns/pair, distances alone (1 thread) {ns_dist:.2} ns/pair");
    }
}
