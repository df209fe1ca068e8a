//! The truncated kernel of 1-D problems without storage: sorted, the entries a row keeps are
//! (within) a contiguous range of the measured points, summed online.
//!
//! At the unfolding's ε in 1-D a row keeps a band of ~10 % of the measured points (the measured
//! clusters are about as wide as the band `|y − y'| ≤ (Tε)^{1/p}`), so at 10⁵ × 3·10⁵ points the
//! kept entries (≈ 3·10⁹) do not fit in memory. Each pass recomputes them instead — exponentials
//! over the kept ranges only, with the vectorised row kernel of the online cost.
//!
//! For reference potentials (p, q) row `i` keeps the sorted positions between the first and the
//! last `j` with `p_i + q_j − C_ij ≥ −Tε`, found by a branch-and-bound descent of a max-tree over
//! q (bound: the largest q of a node minus the cost to its interval). The ranges are then made
//! monotone in the rows (a superset), so the rows that keep a column are contiguous too.
//!
//! For the squared cost the sums need few exponentials: a block of sorted rows around `c`
//! whose ranges stay within distance `B` of `c` and whose offsets `δ_i = x_i − c` are at most
//! `h` shares them (the univariate fast Gauss transform, Greengard & Strain 1991, with a Taylor
//! expansion): with `d_j = y_j − c`,
//!
//! `Σ_j e^{(t_j − (x_i − y_j)²)/ε} = e^{−δ_i²/ε} Σ_k (2δ_i/ε)^k/k! · Σ_j e^{(t_j − d_j²)/ε} d_j^k`,
//!
//! one exponential per (block, kept column) and R moments, then R terms per row. With
//! `ρ = 2hB/ε ≤ 1` the series truncated after R = 16 terms has relative error below
//! `e^{2ρ} ρ^R/R! < 4e-13` (every term of the sum is positive and `e^{2δd/ε} ≥ e^{−ρ}`).

use rayon::prelude::*;

use crate::core::cost::points_row_sum;
use crate::core::logsumexp::{accumulate_exp, SUM_MAX, SUM_MIN};

/// Largest `ρ = 2hB/ε` of a block of the squared-cost sums.
const BLOCK_RHO: f64 = 1.0;
/// Terms of the Taylor series of a block.
const TERMS: usize = 16;

/// Sorted rows and columns of a 1-D problem and the kept range of each.
pub struct Band {
    row_order: Vec<usize>,
    col_order: Vec<usize>,
    rows: Vec<f64>,
    cols: Vec<f64>,
    p_exp: f64,
    /// Kept columns `[lo, hi)` (sorted positions) of each sorted row.
    row_ranges: Vec<(usize, usize)>,
    /// Kept rows of each sorted column.
    col_ranges: Vec<(usize, usize)>,
    /// ε of the ranges, and the blocks of sorted rows / columns of the squared cost's series.
    eps: f64,
    row_blocks: Vec<(usize, usize)>,
    col_blocks: Vec<(usize, usize)>,
}

fn sorted(points: &[f64]) -> (Vec<usize>, Vec<f64>) {
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|&a, &b| points[a].total_cmp(&points[b]));
    let values = order.iter().map(|&i| points[i]).collect();
    (order, values)
}

impl Band {
    pub fn new(rows: &[f64], cols: &[f64], p_exp: f64) -> Self {
        let (row_order, rows) = sorted(rows);
        let (col_order, cols) = sorted(cols);
        Band {
            row_order,
            col_order,
            rows,
            cols,
            p_exp,
            row_ranges: Vec::new(),
            col_ranges: Vec::new(),
            eps: 1.0,
            row_blocks: Vec::new(),
            col_blocks: Vec::new(),
        }
    }

    /// Kept entries (the ranges' total).
    pub fn entries(&self) -> usize {
        self.row_ranges.iter().map(|(lo, hi)| hi - lo).sum()
    }

    /// The ranges for the references `p` (rows) and `q` (columns), original order: every
    /// entry with `(p_i + q_j − C_ij)/ε ≥ −threshold` is kept.
    pub fn set_ranges(&mut self, p: &[f64], q: &[f64], eps: f64, threshold: f64) {
        let q_sorted: Vec<f64> = self.col_order.iter().map(|&j| q[j]).collect();
        let tree = MaxTree::new(&q_sorted);
        let mut ranges: Vec<(usize, usize)> = (0..self.rows.len())
            .into_par_iter()
            .map(|r| {
                let floor = -threshold * eps - p[self.row_order[r]];
                let (y, c) = (self.rows[r], &self.cols);
                let kept = |j: usize| q_sorted[j] - cost(y - c[j], self.p_exp) >= floor;
                let bound = |lo: usize, hi: usize, top: f64| {
                    let gap = if y < c[lo] {
                        c[lo] - y
                    } else if y > c[hi - 1] {
                        y - c[hi - 1]
                    } else {
                        0.0
                    };
                    top - cost(gap, self.p_exp) >= floor
                };
                // The last kept point exists whenever a first one does.
                tree.first(&bound, &kept, false)
                    .and_then(|lo| Some((lo, tree.first(&bound, &kept, true)? + 1)))
                    .unwrap_or((c.len(), 0))
            })
            .collect();
        // Monotone hull: lo non-decreasing from the right, hi from the left.
        let n = self.cols.len();
        let mut lo = n;
        for r in (0..ranges.len()).rev() {
            lo = lo.min(ranges[r].0);
            ranges[r].0 = lo;
        }
        let mut hi = 0;
        for range in ranges.iter_mut() {
            hi = hi.max(range.1);
            range.1 = hi.max(range.0);
        }
        let his: Vec<usize> = ranges.iter().map(|r| r.1).collect();
        let los: Vec<usize> = ranges.iter().map(|r| r.0).collect();
        self.col_ranges = (0..n)
            .map(|c| {
                let first = his.partition_point(|&h| h <= c);
                (first, los.partition_point(|&l| l <= c).max(first))
            })
            .collect();
        self.row_ranges = ranges;
        self.eps = eps;
        if self.p_exp == 2.0 {
            self.row_blocks = blocks(&self.rows, &self.row_ranges, &self.cols, eps);
            self.col_blocks = blocks(&self.cols, &self.col_ranges, &self.rows, eps);
        }
    }

    /// `L_i = log Σ_{j kept} exp((shift_i + col_j − C_ij)/ε)` per row (original order; NaN
    /// when the sum leaves the safe range).
    pub fn row_log_sums(&self, col: &[f64], shift: &[f64], eps: f64) -> Vec<f64> {
        let side = (&self.row_order[..], &self.rows[..], &self.row_ranges[..]);
        let other = (&self.col_order[..], &self.cols[..]);
        self.log_sums(side, &self.row_blocks, other, col, shift, eps)
    }

    /// `L_j = log Σ_{i kept} exp((shift_j + row_i − C_ij)/ε)` per column (original order).
    pub fn col_log_sums(&self, row: &[f64], shift: &[f64], eps: f64) -> Vec<f64> {
        let side = (&self.col_order[..], &self.cols[..], &self.col_ranges[..]);
        let other = (&self.row_order[..], &self.rows[..]);
        self.log_sums(side, &self.col_blocks, other, row, shift, eps)
    }

    fn log_sums(
        &self,
        side: Side<'_>,
        blocks: &[(usize, usize)],
        (other_order, other): (&[usize], &[f64]),
        terms: &[f64],
        shift: &[f64],
        eps: f64,
    ) -> Vec<f64> {
        let t_sorted: Vec<f64> = other_order.iter().map(|&j| terms[j]).collect();
        let sorted = if self.p_exp == 2.0 && eps == self.eps {
            series_log_sums(side, blocks, other, &t_sorted, shift, eps)
        } else {
            direct_log_sums(side, other, &t_sorted, shift, eps, self.p_exp)
        };
        let mut out = vec![0.0; sorted.len()];
        side.0.iter().zip(&sorted).for_each(|(&i, s)| out[i] = *s);
        out
    }
}

/// One side of the band: sorted order, sorted coordinates, kept ranges.
type Side<'a> = (&'a [usize], &'a [f64], &'a [(usize, usize)]);

/// Blocks of consecutive sorted points whose series converges fast: `ρ = 2hB/ε ≤ BLOCK_RHO`,
/// `h` the largest offset from the block's centre, `B` the largest distance from the centre to
/// the block's kept range (the union of its points' monotone ranges).
fn blocks(
    coords: &[f64],
    ranges: &[(usize, usize)],
    other: &[f64],
    eps: f64,
) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < coords.len() {
        let mut end = start + 1;
        while end < coords.len() {
            let (lo, hi) = (ranges[start].0, ranges[end].1);
            let c = 0.5 * (coords[start] + coords[end]);
            let h = 0.5 * (coords[end] - coords[start]);
            let reach = if lo < hi {
                (other[lo] - c).abs().max((other[hi - 1] - c).abs())
            } else {
                0.0
            };
            if 2.0 * h * reach / eps > BLOCK_RHO {
                break;
            }
            end += 1;
        }
        out.push((start, end));
        start = end;
    }
    out
}

/// The log-sums by blocks with the Taylor series of the module documentation.
fn series_log_sums(
    (order, coords, ranges): Side<'_>,
    blocks: &[(usize, usize)],
    other: &[f64],
    t: &[f64],
    shift: &[f64],
    eps: f64,
) -> Vec<f64> {
    let per_block: Vec<Vec<f64>> = blocks
        .par_iter()
        .map_init(
            || (Vec::new(), Vec::new()),
            |(cost, acc), &(start, end)| {
                let (lo, hi) = (ranges[start].0, ranges[end - 1].1);
                if lo >= hi {
                    return vec![f64::NAN; end - start];
                }
                let c = 0.5 * (coords[start] + coords[end - 1]);
                let scale = (other[lo] - c)
                    .abs()
                    .max((other[hi - 1] - c).abs())
                    .max(1e-300);
                let (ys, ts) = (&other[lo..hi], &t[lo..hi]);
                cost.clear();
                cost.extend(ys.iter().map(|y| (y - c) * (y - c)));
                let top = ts
                    .iter()
                    .zip(cost.iter())
                    .map(|(t, c)| t - c)
                    .fold(f64::NEG_INFINITY, f64::max);
                acc.clear();
                acc.resize(hi - lo, 0.0);
                accumulate_exp(cost, ts, -top, 1.0 / eps, acc);
                let moments = moments(acc, ys, c, scale);
                (start..end)
                    .map(|r| {
                        let delta = coords[r] - c;
                        let s = 2.0 * delta * scale / eps;
                        let (mut term, mut sum) = (1.0, 0.0);
                        for (k, m) in moments.iter().enumerate() {
                            sum += term * m;
                            term *= s / (k + 1) as f64;
                        }
                        (top + shift[order[r]] - delta * delta) / eps + sum.ln()
                    })
                    .collect()
            },
        )
        .collect();
    per_block.into_iter().flatten().collect()
}

/// `M_k = Σ_j a_j ((y_j − c)/scale)^k`, k < TERMS, four columns at a time.
fn moments(a: &[f64], ys: &[f64], c: f64, scale: f64) -> [f64; TERMS] {
    let inv = 1.0 / scale;
    let mut acc = [[0.0f64; 4]; TERMS];
    let (ac, yc) = (a.chunks_exact(4), ys.chunks_exact(4));
    let (at, yt) = (ac.remainder(), yc.remainder());
    for (a4, y4) in ac.zip(yc) {
        let mut p = [a4[0], a4[1], a4[2], a4[3]];
        let d = [
            (y4[0] - c) * inv,
            (y4[1] - c) * inv,
            (y4[2] - c) * inv,
            (y4[3] - c) * inv,
        ];
        for row in acc.iter_mut() {
            for l in 0..4 {
                row[l] += p[l];
                p[l] *= d[l];
            }
        }
    }
    let mut out = [0.0; TERMS];
    for (o, row) in out.iter_mut().zip(&acc) {
        *o = row.iter().sum();
    }
    for (a, y) in at.iter().zip(yt) {
        let (mut p, d) = (*a, (y - c) * inv);
        for o in out.iter_mut() {
            *o += p;
            p *= d;
        }
    }
    out
}

/// The log-sums exponential by exponential over the kept ranges (any exponent p).
fn direct_log_sums(
    (order, coords, ranges): Side<'_>,
    other: &[f64],
    t: &[f64],
    shift: &[f64],
    eps: f64,
    p: f64,
) -> Vec<f64> {
    let inv_eps = 1.0 / eps;
    (0..coords.len())
        .into_par_iter()
        .with_min_len(16)
        .map_init(
            || vec![0.0; 256],
            |tile, r| {
                let (lo, hi) = ranges[r];
                if lo >= hi {
                    return f64::NAN;
                }
                let sh = shift[order[r]];
                let s = points_row_sum(
                    &[coords[r]],
                    &other[lo..hi],
                    &t[lo..hi],
                    sh,
                    inv_eps,
                    p,
                    false,
                    tile,
                );
                if (SUM_MIN..=SUM_MAX).contains(&s) {
                    s.ln()
                } else {
                    f64::NAN
                }
            },
        )
        .collect()
}

fn cost(d: f64, p: f64) -> f64 {
    if p == 2.0 {
        d * d
    } else {
        d.abs().powf(p)
    }
}

/// A max-tree over values in sorted position order, for the leftmost / rightmost position
/// passing a test, pruned by an upper bound on each node's interval.
struct MaxTree {
    size: usize,
    len: usize,
    max: Vec<f64>,
}

impl MaxTree {
    fn new(values: &[f64]) -> Self {
        let size = values.len().next_power_of_two().max(1);
        let mut max = vec![f64::NEG_INFINITY; 2 * size];
        max[size..size + values.len()].copy_from_slice(values);
        for k in (1..size).rev() {
            max[k] = max[2 * k].max(max[2 * k + 1]);
        }
        MaxTree {
            size,
            len: values.len(),
            max,
        }
    }

    /// The first position (the last, with `from_right`) with `kept(j)`, visiting only nodes
    /// `[lo, hi)` with `bound(lo, hi, max)`.
    fn first(
        &self,
        bound: &impl Fn(usize, usize, f64) -> bool,
        kept: &impl Fn(usize) -> bool,
        from_right: bool,
    ) -> Option<usize> {
        let mut stack = vec![(1usize, 0usize, self.size)];
        while let Some((k, lo, hi)) = stack.pop() {
            let hi_c = hi.min(self.len);
            if lo >= hi_c || !bound(lo, hi_c, self.max[k]) {
                continue;
            }
            if k >= self.size {
                if kept(lo) {
                    return Some(lo);
                }
                continue;
            }
            let mid = (lo + hi) / 2;
            let (left, right) = ((2 * k, lo, mid), (2 * k + 1, mid, hi));
            // The side searched first is pushed last.
            if from_right {
                stack.push(left);
                stack.push(right);
            } else {
                stack.push(right);
                stack.push(left);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_hold_every_kept_entry_and_sums_match_a_direct_sum() {
        let mut next = crate::core::testing::uniform(5);
        let rows: Vec<f64> = (0..300).map(|_| next()).collect();
        let cols: Vec<f64> = (0..500).map(|_| next()).collect();
        let eps = 1e-3;
        let p: Vec<f64> = (0..300).map(|_| 0.01 * next()).collect();
        let q: Vec<f64> = (0..500).map(|_| 0.01 * next()).collect();
        let mut band = Band::new(&rows, &cols, 2.0);
        band.set_ranges(&p, &q, eps, 5.0);
        let (row_pos, col_pos) = (inverse(&band.row_order), inverse(&band.col_order));
        let mut kept = 0;
        for (i, y) in rows.iter().enumerate() {
            for (j, c) in cols.iter().enumerate() {
                if (p[i] + q[j] - (y - c) * (y - c)) / eps >= -5.0 {
                    kept += 1;
                    let (lo, hi) = band.row_ranges[row_pos[i]];
                    assert!(lo <= col_pos[j] && col_pos[j] < hi, "row {i} col {j}");
                    let (lo, hi) = band.col_ranges[col_pos[j]];
                    assert!(lo <= row_pos[i] && row_pos[i] < hi, "col {j} row {i}");
                }
            }
        }
        assert!(kept > 0 && band.entries() < rows.len() * cols.len() / 2);
    }

    #[test]
    fn block_series_gives_the_direct_sums() {
        let mut next = crate::core::testing::uniform(7);
        let rows: Vec<f64> = (0..200).map(|_| next()).collect();
        let cols: Vec<f64> = (0..300).map(|_| next()).collect();
        let (eps, p, q) = (2e-3, vec![0.0; 200], vec![0.0; 300]);
        let t: Vec<f64> = (0..300).map(|_| 0.05 * next()).collect();
        let shift: Vec<f64> = (0..200).map(|_| -0.01 * next()).collect();
        let mut band = Band::new(&rows, &cols, 2.0);
        // Every entry kept: each row's range is the whole of its block's.
        band.set_ranges(&p, &q, eps, 1e9);
        assert!(band.row_blocks.len() > 1);
        let series = band.row_log_sums(&t, &shift, eps);
        for (i, y) in rows.iter().enumerate() {
            let direct: f64 = cols
                .iter()
                .zip(&t)
                .map(|(c, tj)| ((shift[i] + tj - (y - c) * (y - c)) / eps).exp())
                .sum();
            assert!(
                (series[i] - direct.ln()).abs() < 1e-12,
                "{i}: {} vs {}",
                series[i],
                direct.ln()
            );
        }
        let cols_series = band.col_log_sums(&shift, &t, eps);
        for (j, c) in cols.iter().enumerate() {
            let direct: f64 = rows
                .iter()
                .zip(&shift)
                .map(|(y, s)| ((t[j] + s - (y - c) * (y - c)) / eps).exp())
                .sum();
            assert!((cols_series[j] - direct.ln()).abs() < 1e-12, "{j}");
        }
    }

    fn inverse(order: &[usize]) -> Vec<usize> {
        let mut pos = vec![0; order.len()];
        order.iter().enumerate().for_each(|(k, &i)| pos[i] = k);
        pos
    }
}
