//! A truncated copy of [`PatchCost`] for the Sinkhorn solves of the Wasserstein patch prior
//! (kernel truncation of Schmitzer, "Stabilized sparse scaling algorithms for entropy
//! regularized transport problems", SIAM J. Sci. Comput. 2019, §3.3, kept in the log domain).
//!
//! At the ε of the patch prior (4e-4 against patch costs of 0.1–0.5) a row of the plan has a
//! handful of entries above `e^{−40}` of its largest among thousands. The support kept here is
//! every pair within `T·ε` of its row's or its column's best match for reference terms `row⁰`,
//! `col⁰` (those of the first softmin at the target ε): `C_ij − col⁰_j − p_i ≤ Tε` or
//! `C_ij − row⁰_i − q_j ≤ Tε`, with `p_i = min_j (C_ij − col⁰_j)` and
//! `q_j = min_i (C_ij − row⁰_i)`. Building it costs two passes of the register-blocked
//! distances; every softmin, the plan's sums and the patch gradient then cost O(kept entries),
//! so one build serves all the updates of a warm-started solve.
//!
//! Exactness. With the drifts `δ_j = (col_j − col⁰_j)/ε` of the terms a row softmin receives,
//! the entries row i dropped sum to less than `e^{−p_i/ε − T} Σ_j e^{δ_j}` (the bound of
//! Schmitzer, Prop. 8, for a support chosen from other potentials). It is checked against the
//! kept sum row by row: a row whose dropped part could exceed `e^{−R}` of its kept sum (R = 40,
//! below f64 rounding) is recomputed exactly over all m columns, and when many rows need that
//! the support is rebuilt from the current terms. `T = R + ln max(n, m) + D` leaves a drift
//! allowance of `D` ε before either happens (the same for columns). The plan's sums and moments
//! come from the support only when the bound on all dropped mass,
//! `e^{LSE_i((row_i − p_i)/ε) + LSE_j δ_j − T}`, is below `e^{−R}` of the kept mass, otherwise
//! from the exact kernel: the reported marginal error is that of the exact plan to rounding,
//! never of the truncated surrogate.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use ndarray::{Array1, Array2};
use rayon::prelude::*;

use super::patches::{plan_tile, softmin_exact_row, sq_dist_block, Cloud, ROWS, TILE};
use super::{CostKernel, PatchCost, PlanMoments, PlanSums};
use crate::core::logsumexp::{log_sum_exp, plan_row_sums, softmin_exact, sum_exp};
use crate::core::simd::{multiversion, LANES};

/// `R`: what the dropped entries may contribute, relative to the kept ones, is below `e^{−R}`.
const EXACT: f64 = 40.0;
/// `D`: drift of the terms (in units of ε, spread over a side) the support absorbs before rows
/// need exact recomputation. A warm-started step of the patch prior moves the potentials by up
/// to ~270 ε at ε = 4e-4; a 64² image against 1000 reference patches then keeps 20–100 entries
/// per row.
const DRIFT: f64 = 300.0;
/// Largest support, in bytes (each entry is stored by row and by column, 12 bytes each).
const BUDGET_BYTES: usize = 1 << 29;
/// The support is rebuilt when more than 1/REBUILD_SHARE of the lines of a softmin failed the
/// check (each costs a full exact row).
const REBUILD_SHARE: usize = 16;

/// The kept entries of one orientation: line k has `index[ptr[k]..ptr[k + 1]]`, with costs.
struct Lines {
    ptr: Vec<usize>,
    index: Vec<u32>,
    cost: Vec<f64>,
}

impl Lines {
    fn line(&self, k: usize) -> (&[u32], &[f64]) {
        let (s, e) = (self.ptr[k], self.ptr[k + 1]);
        (&self.index[s..e], &self.cost[s..e])
    }

    /// The same entries by the other index (`len` lines), by counting sort.
    fn transpose(&self, len: usize) -> Lines {
        let mut ptr = vec![0usize; len + 1];
        for &j in &self.index {
            ptr[j as usize + 1] += 1;
        }
        for k in 0..len {
            ptr[k + 1] += ptr[k];
        }
        let mut next = ptr.clone();
        let (mut index, mut cost) = (vec![0u32; self.index.len()], vec![0.0; self.cost.len()]);
        for i in 0..self.ptr.len() - 1 {
            let (idx, c) = self.line(i);
            for (&j, &c) in idx.iter().zip(c) {
                let at = &mut next[j as usize];
                index[*at] = i as u32;
                cost[*at] = c;
                *at += 1;
            }
        }
        Lines { ptr, index, cost }
    }
}

/// A support and the reference terms it was chosen from.
struct Support {
    row_ref: Vec<f64>,
    col_ref: Vec<f64>,
    /// `p_i = min_j (C_ij − col⁰_j)`.
    row_min: Vec<f64>,
    /// `q_j = min_i (C_ij − row⁰_i)`.
    col_min: Vec<f64>,
    rows: Lines,
    cols: Lines,
}

enum State {
    Unbuilt,
    Built(Box<Support>),
    /// The support would exceed [`BUDGET_BYTES`]: everything runs on the exact kernel.
    TooLarge,
}

/// [`PatchCost`] with a truncated support for one ε (see the module documentation). Softmins
/// at any other ε (the stages of ε-scaling) and everything the support cannot certify run on
/// the exact kernel.
pub struct TruncatedPatchCost<'k> {
    exact: &'k PatchCost,
    eps: f64,
    /// `T`, in units of ε.
    threshold: f64,
    log_a: Vec<f64>,
    log_b: Vec<f64>,
    state: Mutex<State>,
    builds: AtomicUsize,
    exact_lines: AtomicUsize,
}

/// `LSE_k (term_k − reference_k)/ε`.
fn log_drift(term: &[f64], reference: &[f64], eps: f64) -> f64 {
    log_sum_exp(term.iter().zip(reference).map(move |(t, r)| (t - r) / eps))
}

impl<'k> TruncatedPatchCost<'k> {
    /// `None` unless every weight is positive and finite and the weights match the clouds (the
    /// exact kernel then reports what is wrong). Nothing is built before the first softmin at
    /// `eps`.
    pub fn new(exact: &'k PatchCost, a: &[f64], b: &[f64], eps: f64) -> Option<Self> {
        let (n, m) = exact.shape();
        let positive = |w: &[f64]| w.iter().all(|v| *v > 0.0 && v.is_finite());
        if a.len() != n || b.len() != m || !positive(a) || !positive(b) {
            return None;
        }
        if !(eps > 0.0 && eps.is_finite()) {
            return None;
        }
        Some(TruncatedPatchCost {
            exact,
            eps,
            threshold: EXACT + (n.max(m) as f64).ln() + DRIFT,
            log_a: a.iter().map(|w| w.ln()).collect(),
            log_b: b.iter().map(|w| w.ln()).collect(),
            state: Mutex::new(State::Unbuilt),
            builds: AtomicUsize::new(0),
            exact_lines: AtomicUsize::new(0),
        })
    }

    /// Times the support was built.
    pub fn builds(&self) -> usize {
        self.builds.load(Ordering::Relaxed)
    }

    /// Rows and columns that failed the check and were recomputed exactly.
    pub fn exact_lines(&self) -> usize {
        self.exact_lines.load(Ordering::Relaxed)
    }

    /// Entries of the current support (0 when none is built).
    pub fn kept(&self) -> usize {
        match &*self.state.lock().unwrap_or_else(PoisonError::into_inner) {
            State::Built(s) => s.rows.index.len(),
            _ => 0,
        }
    }

    /// The support for the reference terms, or `TooLarge`.
    fn build(&self, row_ref: Vec<f64>, col_ref: Vec<f64>) -> State {
        self.builds.fetch_add(1, Ordering::Relaxed);
        let (x, y) = (&self.exact.x, &self.exact.y);
        let (row_min, col_min) = minima(x, y, &row_ref, &col_ref);
        let reach = self.threshold * self.eps;
        let budget = BUDGET_BYTES / 24;
        let refs = References {
            row: &row_ref,
            col: &col_ref,
            row_min: &row_min,
            col_min: &col_min,
        };
        let Some(rows) = keep(x, y, refs, reach, budget) else {
            return State::TooLarge;
        };
        let cols = rows.transpose(y.n);
        State::Built(Box::new(Support {
            row_ref,
            col_ref,
            row_min,
            col_min,
            rows,
            cols,
        }))
    }

    /// The softmin of the rows (`rows`, `other` = the columns' terms, `shift` = the rows'
    /// potentials) or of the columns.
    fn softmin(&self, rows: bool, other: &[f64], shift: &[f64], eps: f64, out: &mut [f64]) {
        let mine_log_w = if rows { &self.log_a } else { &self.log_b };
        let mine: Vec<f64> = shift
            .iter()
            .zip(mine_log_w)
            .map(|(s, lw)| s + eps * lw)
            .collect();
        let finite = |v: &[f64]| v.iter().all(|t| t.is_finite());
        if eps != self.eps || !finite(&mine) || !finite(other) {
            return self.exact_softmin(rows, other, shift, eps, out);
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut fresh = false;
        if matches!(*state, State::Unbuilt) {
            *state = self.terms_build(rows, mine.clone(), other.to_vec());
            fresh = true;
        }
        loop {
            let State::Built(support) = &*state else {
                return self.exact_softmin(rows, other, shift, eps, out);
            };
            let failed = self.sparse_softmin(support, rows, other, out);
            if failed.len() * REBUILD_SHARE > out.len() && !fresh {
                *state = self.terms_build(rows, mine.clone(), other.to_vec());
                fresh = true;
                continue;
            }
            self.exact_lines.fetch_add(failed.len(), Ordering::Relaxed);
            self.exact_softmin_lines(rows, other, eps, &failed, out);
            return;
        }
    }

    fn terms_build(&self, rows: bool, mine: Vec<f64>, other: Vec<f64>) -> State {
        if rows {
            self.build(mine, other)
        } else {
            self.build(other, mine)
        }
    }

    /// Softmins of every line from its kept entries; returns the lines that failed the check.
    fn sparse_softmin(
        &self,
        support: &Support,
        rows: bool,
        other: &[f64],
        out: &mut [f64],
    ) -> Vec<usize> {
        let eps = self.eps;
        let (lines, minima, other_ref) = if rows {
            (&support.rows, &support.row_min, &support.col_ref)
        } else {
            (&support.cols, &support.col_min, &support.row_ref)
        };
        // A line is certified when (s − min)/ε + LSE δ ≤ T − R.
        let slack = self.threshold - EXACT - log_drift(other, other_ref, eps);
        out.par_iter_mut()
            .enumerate()
            .with_min_len(64)
            .fold(
                || (Vec::new(), Vec::new()),
                |(mut failed, mut gathered), (k, o)| {
                    let (idx, cost) = lines.line(k);
                    gathered.clear();
                    gathered.extend(idx.iter().map(|&j| other[j as usize]));
                    *o = softmin_exact(cost, &gathered, eps);
                    // NaN (a NaN drift) fails too.
                    let certified = (*o - minima[k]) / eps <= slack;
                    if !certified {
                        failed.push(k);
                    }
                    (failed, gathered)
                },
            )
            .map(|(failed, _)| failed)
            .reduce(Vec::new, |mut a, b| {
                a.extend(b);
                a
            })
    }

    fn exact_softmin(&self, rows: bool, other: &[f64], shift: &[f64], eps: f64, out: &mut [f64]) {
        if rows {
            self.exact.softmin_rows(other, shift, eps, out)
        } else {
            self.exact.softmin_cols(other, shift, eps, out)
        }
    }

    /// The listed lines of the softmin over all their entries.
    fn exact_softmin_lines(
        &self,
        rows: bool,
        other: &[f64],
        eps: f64,
        lines: &[usize],
        out: &mut [f64],
    ) {
        let (from, to) = if rows {
            (&self.exact.x, &self.exact.y)
        } else {
            (&self.exact.y, &self.exact.x)
        };
        let values: Vec<f64> = lines
            .par_iter()
            .map_init(
                || vec![0.0; ROWS * TILE],
                |tile, &k| softmin_exact_row(from, k / ROWS * ROWS, k % ROWS, to, other, eps, tile),
            )
            .collect();
        for (&k, v) in lines.iter().zip(values) {
            out[k] = v;
        }
    }

    /// Whether the plan at (row, col) drops less than `e^{−R}/n` of `kept_mass` on `support`.
    fn certified(&self, support: &Support, row: &[f64], col: &[f64], kept_mass: f64) -> bool {
        let eps = self.eps;
        let dropped = log_drift(row, &support.row_min, eps) + log_drift(col, &support.col_ref, eps)
            - self.threshold;
        // Below e^{−R} of the mass per row on average: each row's sums and moments are then
        // exact to rounding relative to the mean row mass, not only the total.
        let n = row.len() as f64;
        kept_mass.is_finite() && kept_mass > 0.0 && dropped <= kept_mass.ln() - EXACT - n.ln()
    }

    /// The support, when it can serve statistics at `eps`.
    fn support_at(&self, eps: f64) -> Option<std::sync::MutexGuard<'_, State>> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        (eps == self.eps && matches!(*state, State::Built(_))).then_some(state)
    }

    /// [`PatchCost::moments`] from the support when it certifies them, else exactly.
    pub fn moments(&self, row: &[f64], col: &[f64], eps: f64) -> PlanMoments {
        if let Some(state) = self.support_at(eps) {
            let State::Built(support) = &*state else {
                unreachable!()
            };
            let mom = support_moments(support, &self.exact.y, row, col, eps);
            if self.certified(support, row, col, mom.row_mass.sum()) {
                return mom;
            }
        }
        self.exact.moments(row, col, eps)
    }
}

#[inline(always)]
fn tile_minima_generic<const FMA: bool>(
    cost: &[f64],
    col: &[f64],
    row: f64,
    col_min: &mut [f64],
) -> f64 {
    let mut lo = [f64::INFINITY; LANES];
    let mut chunks = col_min.chunks_exact_mut(LANES);
    let (cc, wc) = (cost.chunks_exact(LANES), col.chunks_exact(LANES));
    let (ct, wt) = (cc.remainder(), wc.remainder());
    for ((q, c), w) in (&mut chunks).zip(cc).zip(wc) {
        for l in 0..LANES {
            let (u, v) = (c[l] - w[l], c[l] - row);
            lo[l] = if u < lo[l] { u } else { lo[l] };
            q[l] = if v < q[l] { v } else { q[l] };
        }
    }
    let mut p = lo.iter().fold(f64::INFINITY, |a, &b| a.min(b));
    for ((q, c), w) in chunks.into_remainder().iter_mut().zip(ct).zip(wt) {
        p = p.min(c - w);
        *q = q.min(c - row);
    }
    p
}

multiversion! {
    /// `min_j (cost_j − col_j)` of one cost row, and `col_min_j ← min(col_min_j, cost_j − row)`.
    pub fn tile_minima(cost: &[f64], col: &[f64], row: f64, col_min: &mut [f64]) -> f64 => tile_minima_generic
}

// The scalars stay separate arguments, as in `points_row_sum_generic`: the tile kernel is
// dispatched once per tile and inlined.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile_keep_generic<const FMA: bool>(
    cost: &[f64],
    col: &[f64],
    col_min: &[f64],
    row: f64,
    row_min: f64,
    reach: f64,
    j0: usize,
    kept: &mut Vec<(u32, f64)>,
) {
    let test =
        |j: usize| cost[j] - col[j] - row_min <= reach || cost[j] - row - col_min[j] <= reach;
    let full = cost.len() / LANES * LANES;
    for start in (0..full).step_by(LANES) {
        // Most chunks of 8 hold no kept entry: one vectorised test decides.
        let mut lo = [0.0; LANES];
        for (l, v) in lo.iter_mut().enumerate() {
            let j = start + l;
            let (by_row, by_col) = (cost[j] - col[j] - row_min, cost[j] - row - col_min[j]);
            *v = if by_row < by_col { by_row } else { by_col };
        }
        if lo.iter().fold(f64::INFINITY, |a, &b| a.min(b)) <= reach {
            kept.extend(
                (start..start + LANES)
                    .filter(|&j| test(j))
                    .map(|j| ((j0 + j) as u32, cost[j])),
            );
        }
    }
    kept.extend(
        (full..cost.len())
            .filter(|&j| test(j))
            .map(|j| ((j0 + j) as u32, cost[j])),
    );
}

multiversion! {
    /// Appends `(j0 + j, cost_j)` for the entries of one cost row within `reach` of its row's
    /// or its column's best match.
    pub fn tile_keep(cost: &[f64], col: &[f64], col_min: &[f64], row: f64, row_min: f64, reach: f64, j0: usize, kept: &mut Vec<(u32, f64)>) => tile_keep_generic
}

/// `p_i = min_j (C_ij − col_j)` and `q_j = min_i (C_ij − row_i)`, in one pass over the pairs.
fn minima(x: &Cloud, y: &Cloud, row: &[f64], col: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let m = y.n;
    let mut row_min = vec![f64::INFINITY; x.n];
    let col_min = row_min
        .par_chunks_mut(ROWS)
        .enumerate()
        .fold(
            || (vec![f64::INFINITY; m], vec![0.0; ROWS * TILE]),
            |(mut acc, mut tile), (b, rm)| {
                let i0 = b * ROWS;
                for j0 in (0..m).step_by(TILE) {
                    let len = TILE.min(m - j0);
                    sq_dist_block(x, i0, y, j0, len, &mut tile);
                    for (r, p) in rm.iter_mut().enumerate() {
                        let c = &tile[r * TILE..r * TILE + len];
                        let tile_min =
                            tile_minima(c, &col[j0..j0 + len], row[i0 + r], &mut acc[j0..j0 + len]);
                        *p = p.min(tile_min);
                    }
                }
                (acc, tile)
            },
        )
        .map(|(acc, _)| acc)
        .reduce(
            || vec![f64::INFINITY; m],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(u, v)| *u = u.min(*v));
                a
            },
        );
    (row_min, col_min)
}

/// The reference terms a support is built for, and each row's and column's smallest reduced
/// cost under them (see the module documentation).
#[derive(Clone, Copy)]
struct References<'a> {
    row: &'a [f64],
    col: &'a [f64],
    row_min: &'a [f64],
    col_min: &'a [f64],
}

/// The kept entries by row (see the module documentation), or `None` beyond `budget` entries.
fn keep(x: &Cloud, y: &Cloud, refs: References<'_>, reach: f64, budget: usize) -> Option<Lines> {
    let References {
        row,
        col,
        row_min,
        col_min,
    } = refs;
    let m = y.n;
    let total = AtomicUsize::new(0);
    // Per block of ROWS rows: the kept (column, cost) pairs of each row.
    type Block = Vec<Vec<(u32, f64)>>;
    let blocks: Vec<Option<Block>> = (0..x.n.div_ceil(ROWS))
        .into_par_iter()
        .map_init(
            || vec![0.0; ROWS * TILE],
            |tile, b| {
                if total.load(Ordering::Relaxed) > budget {
                    return None;
                }
                let i0 = b * ROWS;
                let rows_here = ROWS.min(x.n - i0);
                let mut kept = vec![Vec::new(); rows_here];
                for j0 in (0..m).step_by(TILE) {
                    let len = TILE.min(m - j0);
                    sq_dist_block(x, i0, y, j0, len, tile);
                    for (r, line) in kept.iter_mut().enumerate() {
                        let i = i0 + r;
                        let (c, cols) = (&tile[r * TILE..r * TILE + len], j0..j0 + len);
                        let (w, q) = (&col[cols.clone()], &col_min[cols]);
                        tile_keep(c, w, q, row[i], row_min[i], reach, j0, line);
                    }
                }
                total.fetch_add(kept.iter().map(Vec::len).sum(), Ordering::Relaxed);
                Some(kept)
            },
        )
        .collect();
    if total.load(Ordering::Relaxed) > budget {
        return None;
    }
    let mut ptr = Vec::with_capacity(x.n + 1);
    ptr.push(0);
    let (mut index, mut cost) = (Vec::new(), Vec::new());
    for line in blocks.into_iter().flatten().flatten() {
        for (j, c) in line {
            index.push(j);
            cost.push(c);
        }
        ptr.push(index.len());
    }
    Some(Lines { ptr, index, cost })
}

/// Row masses, column masses and `Σ_j π_ij y_j` of `π_ij = exp((row_i + col_j − C_ij)/ε)` on
/// the support.
fn support_moments(
    support: &Support,
    y: &Cloud,
    row: &[f64],
    col: &[f64],
    eps: f64,
) -> PlanMoments {
    let (n, m, d) = (row.len(), col.len(), y.d);
    let inv_eps = 1.0 / eps;
    let mut row_mass = vec![0.0; n];
    let mut bary = vec![0.0; n * d];
    row_mass
        .par_iter_mut()
        .zip(bary.par_chunks_mut(d))
        .enumerate()
        .with_min_len(64)
        .for_each_init(
            || (Vec::new(), Vec::new()),
            |(gathered, plan), (i, (mass, bc))| {
                let (idx, cost) = support.rows.line(i);
                gathered.clear();
                gathered.extend(idx.iter().map(|&j| col[j as usize]));
                plan.clear();
                plan.extend_from_slice(cost);
                *mass = plan_tile(plan, gathered, row[i], inv_eps);
                for (&j, &p) in idx.iter().zip(plan.iter()) {
                    let yj = &y.rows[j as usize * d..(j as usize + 1) * d];
                    bc.iter_mut().zip(yj).for_each(|(s, v)| *s += p * v);
                }
            },
        );
    let col_mass = column_sums(support, row, col, eps);
    debug_assert_eq!(col_mass.len(), m);
    PlanMoments {
        row_mass: Array1::from(row_mass),
        col_mass: Array1::from(col_mass),
        barycentric: Array2::from_shape_fn((n, d), |(i, k)| bary[i * d + k]),
    }
}

/// `Σ_i exp((row_i + col_j − C_ij)/ε)` over the support, by column.
fn column_sums(support: &Support, row: &[f64], col: &[f64], eps: f64) -> Vec<f64> {
    (0..col.len())
        .into_par_iter()
        .with_min_len(64)
        .map_init(Vec::new, |gathered, j| {
            let (idx, cost) = support.cols.line(j);
            gathered.clear();
            gathered.extend(idx.iter().map(|&i| row[i as usize]));
            sum_exp(cost, gathered, col[j], 1.0 / eps)
        })
        .collect()
}

impl CostKernel for TruncatedPatchCost<'_> {
    fn shape(&self) -> (usize, usize) {
        self.exact.shape()
    }

    fn diameter(&self) -> f64 {
        self.exact.diameter()
    }

    fn softmin_rows(&self, col: &[f64], shift: &[f64], eps: f64, out: &mut [f64]) {
        self.softmin(true, col, shift, eps, out)
    }

    fn softmin_cols(&self, row: &[f64], shift: &[f64], eps: f64, out: &mut [f64]) {
        self.softmin(false, row, shift, eps, out)
    }

    fn plan_sums(&self, row: &[f64], col: &[f64], eps: f64) -> PlanSums {
        if let Some(state) = self.support_at(eps) {
            let State::Built(support) = &*state else {
                unreachable!()
            };
            let inv_eps = 1.0 / eps;
            let (row_sums, costs): (Vec<f64>, Vec<f64>) = (0..row.len())
                .into_par_iter()
                .with_min_len(64)
                .map_init(
                    || (Vec::new(), Vec::new()),
                    |(gathered, scratch), i| {
                        let (idx, cost) = support.rows.line(i);
                        gathered.clear();
                        gathered.extend(idx.iter().map(|&j| col[j as usize]));
                        scratch.clear();
                        scratch.resize(idx.len(), 0.0);
                        plan_row_sums(cost, gathered, row[i], inv_eps, scratch)
                    },
                )
                .unzip();
            let mass: f64 = row_sums.iter().sum();
            if self.certified(support, row, col, mass) {
                return PlanSums {
                    col_sums: column_sums(support, row, col, eps),
                    row_sums,
                    transport_cost: costs.iter().sum(),
                };
            }
        }
        self.exact.plan_sums(row, col, eps)
    }

    fn plan(&self, row: &[f64], col: &[f64], eps: f64) -> Array2<f64> {
        self.exact.plan(row, col, eps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sinkhorn::{sinkhorn, SinkhornParams};
    use crate::core::testing::cloud;
    use ndarray::ArrayView2;

    /// Two patch clouds, uniform weights and the exact solve at a small ε (most entries of the
    /// plan are below `e^{−400}` of their row's largest).
    const EPS: f64 = 2e-4;

    fn clouds() -> (Array2<f64>, Array2<f64>, Vec<f64>, Vec<f64>) {
        // Sizes that are not multiples of ROWS, LANES or TILE.
        let (x, y) = (cloud(61, 9, 21), cloud(283, 9, 22));
        (x, y, vec![1.0 / 61.0; 61], vec![1.0 / 283.0; 283])
    }

    fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
        a.iter()
            .zip(b)
            .all(|(u, v)| (u - v).abs() <= tol * v.abs().max(1.0))
    }

    fn exact_solve(
        x: ArrayView2<'_, f64>,
        y: ArrayView2<'_, f64>,
        a: &[f64],
        b: &[f64],
    ) -> (Vec<f64>, Vec<f64>) {
        let k = PatchCost::new(x, y).unwrap();
        let mut p = SinkhornParams::new(EPS);
        p.tol = 1e-10;
        p.max_iter = 20_000;
        p.eps_scaling = Some(0.5);
        let out = sinkhorn(
            &k,
            Array1::from(a.to_vec()).view(),
            Array1::from(b.to_vec()).view(),
            &p,
            None,
        )
        .unwrap();
        assert!(out.converged, "{out:?}");
        let row = out.f.iter().zip(a).map(|(f, w)| f + EPS * w.ln()).collect();
        let col = out.g.iter().zip(b).map(|(g, w)| g + EPS * w.ln()).collect();
        (row, col)
    }

    #[test]
    fn softmins_statistics_and_moments_match_the_exact_kernel() {
        let (x, y, a, b) = clouds();
        let exact = PatchCost::new(x.view(), y.view()).unwrap();
        let t = TruncatedPatchCost::new(&exact, &a, &b, EPS).unwrap();
        let (row, col) = exact_solve(x.view(), y.view(), &a, &b);
        let f: Vec<f64> = row.iter().zip(&a).map(|(r, w)| r - EPS * w.ln()).collect();
        let g: Vec<f64> = col.iter().zip(&b).map(|(c, w)| c - EPS * w.ln()).collect();
        // Terms drifted by up to ±100 ε (within the allowance), then by 2000 ε (rows fail the
        // check and are recomputed exactly, or the support is rebuilt).
        for drift in [0.0, 100.0, 2000.0] {
            let wobble = |v: &[f64], k: usize| -> Vec<f64> {
                v.iter()
                    .enumerate()
                    .map(|(i, t)| t + drift * EPS * (((i * k) % 7) as f64 / 3.0 - 1.0))
                    .collect()
            };
            let (row_d, col_d) = (wobble(&row, 3), wobble(&col, 5));
            let (mut ours, mut theirs) = (vec![0.0; 61], vec![0.0; 61]);
            t.softmin_rows(&col_d, &f, EPS, &mut ours);
            exact.softmin_rows(&col_d, &f, EPS, &mut theirs);
            assert!(close(&ours, &theirs, 1e-13), "rows, drift {drift}");
            let (mut ours, mut theirs) = (vec![0.0; 283], vec![0.0; 283]);
            t.softmin_cols(&row_d, &g, EPS, &mut ours);
            exact.softmin_cols(&row_d, &g, EPS, &mut theirs);
            assert!(close(&ours, &theirs, 1e-13), "cols, drift {drift}");
        }
        assert!(t.kept() < 61 * 283 / 4, "kept {} of {}", t.kept(), 61 * 283);
        assert!(
            t.exact_lines() + t.builds() > 1,
            "the large drift must be noticed"
        );
        // The statistics at the solution: from the support, equal to the exact ones.
        let (s, e) = (
            t.plan_sums(&row, &col, EPS),
            exact.plan_sums(&row, &col, EPS),
        );
        assert!(close(&s.row_sums, &e.row_sums, 1e-12) && close(&s.col_sums, &e.col_sums, 1e-12));
        assert!((s.transport_cost - e.transport_cost).abs() < 1e-12 * e.transport_cost);
        let (m, me) = (t.moments(&row, &col, EPS), exact.moments(&row, &col, EPS));
        assert!((&m.barycentric - &me.barycentric)
            .iter()
            .all(|v| v.abs() < 1e-12));
        assert!(close(
            m.col_mass.as_slice().unwrap(),
            me.col_mass.as_slice().unwrap(),
            1e-12
        ));
    }

    #[test]
    fn statistics_the_support_cannot_certify_come_from_the_exact_kernel() {
        let (x, y, a, b) = clouds();
        let exact = PatchCost::new(x.view(), y.view()).unwrap();
        let t = TruncatedPatchCost::new(&exact, &a, &b, EPS).unwrap();
        let (row, col) = exact_solve(x.view(), y.view(), &a, &b);
        let f: Vec<f64> = row.iter().zip(&a).map(|(r, w)| r - EPS * w.ln()).collect();
        // A support chosen for column terms 1000 ε away from the solution's, irregularly.
        let wrong: Vec<f64> = col
            .iter()
            .enumerate()
            .map(|(j, c)| c + 1000.0 * EPS * ((j % 7) as f64 / 3.0 - 1.0))
            .collect();
        t.softmin_rows(&wrong, &f, EPS, &mut vec![0.0; 61]);
        {
            let state = t.state.lock().unwrap();
            let State::Built(support) = &*state else {
                panic!("built")
            };
            assert!(!t.certified(support, &row, &col, 1.0));
        }
        let (s, e) = (
            t.plan_sums(&row, &col, EPS),
            exact.plan_sums(&row, &col, EPS),
        );
        assert!(close(&s.row_sums, &e.row_sums, 1e-12) && close(&s.col_sums, &e.col_sums, 1e-12));
        let (m, me) = (t.moments(&row, &col, EPS), exact.moments(&row, &col, EPS));
        assert!((&m.barycentric - &me.barycentric)
            .iter()
            .all(|v| v.abs() < 1e-12));
        // Another ε: the exact kernel.
        let (s, e) = (
            t.plan_sums(&row, &col, 2.0 * EPS),
            exact.plan_sums(&row, &col, 2.0 * EPS),
        );
        assert_eq!(s, e);
    }

    #[test]
    fn zero_weights_and_mismatched_shapes_are_left_to_the_exact_kernel() {
        let (x, y, mut a, b) = clouds();
        let exact = PatchCost::new(x.view(), y.view()).unwrap();
        assert!(TruncatedPatchCost::new(&exact, &a[1..], &b, EPS).is_none());
        a[0] = 0.0;
        assert!(TruncatedPatchCost::new(&exact, &a, &b, EPS).is_none());
    }
}
