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

use rayon::prelude::*;

use crate::core::cost::points_row_sum;

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
                match tree.first(&bound, &kept, false) {
                    Some(lo) => (lo, tree.first(&bound, &kept, true).expect("lo is kept") + 1),
                    None => (c.len(), 0),
                }
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
    }

    /// `s_i = Σ_{j kept} exp((shift_i + col_j − C_ij)/ε)` per row (original order).
    pub fn row_sums(&self, col: &[f64], shift: &[f64], eps: f64) -> Vec<f64> {
        sums(
            (&self.row_order, &self.rows, &self.row_ranges),
            (&self.col_order, &self.cols),
            col,
            shift,
            eps,
            self.p_exp,
        )
    }

    /// `s_j = Σ_{i kept} exp((shift_j + row_i − C_ij)/ε)` per column (original order).
    pub fn col_sums(&self, row: &[f64], shift: &[f64], eps: f64) -> Vec<f64> {
        sums(
            (&self.col_order, &self.cols, &self.col_ranges),
            (&self.row_order, &self.rows),
            row,
            shift,
            eps,
            self.p_exp,
        )
    }
}

fn cost(d: f64, p: f64) -> f64 {
    if p == 2.0 {
        d * d
    } else {
        d.abs().powf(p)
    }
}

/// The shifted sums over the kept ranges of one side (`to` the side reduced over).
fn sums(
    (order, coords, ranges): (&[usize], &[f64], &[(usize, usize)]),
    (other_order, other): (&[usize], &[f64]),
    terms: &[f64],
    shift: &[f64],
    eps: f64,
    p: f64,
) -> Vec<f64> {
    let t_sorted: Vec<f64> = other_order.iter().map(|&j| terms[j]).collect();
    let inv_eps = 1.0 / eps;
    let sorted: Vec<f64> = (0..coords.len())
        .into_par_iter()
        .with_min_len(16)
        .map_init(
            || vec![0.0; 256],
            |tile, r| {
                let (lo, hi) = ranges[r];
                if lo >= hi {
                    return 0.0;
                }
                let s = shift[order[r]];
                points_row_sum(
                    &[coords[r]],
                    &other[lo..hi],
                    &t_sorted[lo..hi],
                    s,
                    inv_eps,
                    p,
                    false,
                    tile,
                )
            },
        )
        .collect();
    let mut out = vec![0.0; sorted.len()];
    order.iter().zip(&sorted).for_each(|(&i, s)| out[i] = *s);
    out
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
        // The sums over the ranges are the direct sums over the same ranges.
        let shift = vec![0.0; rows.len()];
        let sums = band.row_sums(&q, &shift, eps);
        for (i, y) in rows.iter().enumerate() {
            let (lo, hi) = band.row_ranges[row_pos[i]];
            let direct: f64 = (lo..hi)
                .map(|k| band.col_order[k])
                .map(|j| ((q[j] - (y - cols[j]) * (y - cols[j])) / eps).exp())
                .sum();
            assert!((sums[i] - direct).abs() <= 1e-12 * direct.max(1e-300), "{i}");
        }
    }

    fn inverse(order: &[usize]) -> Vec<usize> {
        let mut pos = vec![0; order.len()];
        order.iter().enumerate().for_each(|(k, &i)| pos[i] = k);
        pos
    }
}
