//! The truncated stabilized kernel for point clouds, and the coarse-to-fine ε-scaling that
//! serves it (Schmitzer 2019, §3.3–3.4 and §4; Feydy's thesis, §3.3.3, multiscale kernel
//! truncation).
//!
//! At small ε almost every entry of `exp((f_i + g_j − C_ij)/ε)` is negligible. The stored kernel
//! keeps the entries with `(p_i + q_j − C_ij)/ε ≥ −T` for reference potentials (p, q) — found
//! with a k-d tree over y, never by scanning the n×m matrix — so an iteration costs O(kept
//! entries). A dropped entry is below `e^{−T}` of its reference and, with the scalings kept
//! within `e^{±τ}` by absorption, below `e^{2τ−T}` of `a_i b_j` in the plan, so the dropped
//! mass is at most `e^{2τ−T}·|a|·|b|` (Schmitzer, Prop. 8). The support is rebuilt (re-truncated)
//! at every absorption and every ε stage, from the potentials of that moment.
//!
//! The plan statistics — hence the reported marginal error — are computed on the plan's own
//! support at a far lower threshold `T_eval`, chosen so that everything left out totals below
//! `e^{−40}` of the mass: the error of the returned plan to f64 rounding, not of the truncated
//! surrogate.
//!
//! ε-scaling needs large ε first, where nothing can be truncated. Those stages run on a coarse
//! problem — the clusters of the k-d trees, with summed weights at their barycentres, solved
//! recursively — and the potentials are carried to the points by one c-transform (softmin) at
//! the switching ε, as in Feydy's multiscale Sinkhorn.

use rayon::prelude::*;

use super::stabilized::{KernelBuilder, KernelStore};
use crate::core::cost::{add_into, PlanSums};
use crate::core::neighbours::{cost_from_sq, to_leaf_order, to_point_order, KdTree};

/// Truncation threshold `T` of the iterations: entries below `e^{−T}` of the reference are dropped.
const TRUNCATION: f64 = 32.0;
/// Absorption bound `τ` of the truncated kernel: dropped entries stay below `e^{2τ−T}` ≈ 1e-10.
const SPARSE_DRIFT: f64 = 5.0;

/// Rows of kept entries in compressed form; rows in the x tree's leaf order, columns as leaf
/// positions of the y tree (so nearby rows touch nearby columns).
pub struct SparseStore {
    row_order: Vec<u32>,
    col_order: Vec<u32>,
    row_ptr: Vec<usize>,
    cols: Vec<u32>,
    vals: Vec<f64>,
}

impl SparseStore {
    fn row(&self, r: usize) -> (&[u32], &[f64]) {
        let (s, e) = (self.row_ptr[r], self.row_ptr[r + 1]);
        (&self.cols[s..e], &self.vals[s..e])
    }
}

// The default two-pass `fused_products`, not one pass: at 10⁵ points the column accumulator and
// the gathered scalings (800 KB each) do not both fit in the L2 cache, and one fused pass
// measured slower (77 s against about 60 s for n = m = 10⁵ at ε = 3e-5).
impl KernelStore for SparseStore {
    fn entries(&self) -> usize {
        self.vals.len()
    }

    fn row_products(&self, v: &[f64]) -> Vec<f64> {
        let v_leaf = to_leaf_order(&self.col_order, v);
        let sums: Vec<f64> = (0..self.row_order.len())
            .into_par_iter()
            .with_min_len(64)
            .map(|r| self.row_dot(r, &v_leaf))
            .collect();
        to_point_order(&self.row_order, &sums)
    }

    fn col_products(&self, u: &[f64]) -> Vec<f64> {
        let m = self.col_order.len();
        let acc = (0..self.row_order.len())
            .into_par_iter()
            .with_min_len(256)
            .fold(
                || vec![0.0; m],
                |mut acc, r| {
                    let ui = u[self.row_order[r] as usize];
                    if ui != 0.0 {
                        self.row_axpy(r, ui, &mut acc);
                    }
                    acc
                },
            )
            .reduce(|| vec![0.0; m], add_into);
        to_point_order(&self.col_order, &acc)
    }
}

impl SparseStore {
    /// Σ_k K̃_rk v_k over the kept entries of leaf row `r` (`v` in leaf order).
    fn row_dot(&self, r: usize, v_leaf: &[f64]) -> f64 {
        let (cols, vals) = self.row(r);
        cols.iter()
            .zip(vals)
            .map(|(&k, &w)| w * v_leaf[k as usize])
            .sum()
    }

    /// `acc_k += u K̃_rk` over the kept entries of leaf row `r`.
    fn row_axpy(&self, r: usize, u: f64, acc: &mut [f64]) {
        let (cols, vals) = self.row(r);
        for (&k, &w) in cols.iter().zip(vals) {
            acc[k as usize] += u * w;
        }
    }
}

/// Builds truncated kernels between two point clouds with the cost `|x − y|^p`.
pub struct SparseBuilder {
    x_tree: KdTree,
    y_tree: KdTree,
    p: f64,
    /// `T_eval`: the plan statistics leave out less than `e^{−40}` of the mass.
    eval_threshold: f64,
}

impl SparseBuilder {
    /// The truncation threshold `T`: a stored kernel keeps the entries `≥ e^{−T}`.
    pub const THRESHOLD: f64 = TRUNCATION;

    /// `x`, `y` row-major with `dim` coordinates per point; `mass` is the plan's mass |a|.
    pub fn new(x: &[f64], y: &[f64], dim: usize, p: f64, mass: f64) -> Self {
        let (n, m) = (x.len() / dim, y.len() / dim);
        SparseBuilder {
            x_tree: KdTree::new(x, dim),
            y_tree: KdTree::new(y, dim),
            p,
            eval_threshold: 40.0 + ((n as f64) * (m as f64)).ln() - mass.min(1.0).ln(),
        }
    }

    /// Calls `visit(r, i, k, j, C_ij, z)` for every pair with `z = (p_i + q_j − C_ij)/ε ≥ −t`,
    /// rows in parallel (by leaf position r of x, point i; leaf position k of y, point j);
    /// `fold` state per task.
    fn for_kept<A: Send>(
        &self,
        p: &[f64],
        q: &[f64],
        eps: f64,
        t: f64,
        init: impl Fn() -> A + Sync + Send,
        visit: impl Fn(&mut A, usize, usize, usize, f64, f64) + Sync + Send,
    ) -> Vec<A> {
        let d = self.x_tree.dim();
        let q_leaf = to_leaf_order(&self.y_tree.order, q);
        let node_max = self.y_tree.node_max(&q_leaf);
        let n = self.x_tree.len();
        (0..n)
            .into_par_iter()
            .with_min_len(64)
            .fold(
                || (init(), Vec::new()),
                |(mut acc, mut stack), r| {
                    let i = self.x_tree.order[r] as usize;
                    let xi = &self.x_tree.coords[r * d..(r + 1) * d];
                    let pi = p[i];
                    if pi.is_finite() {
                        let reach = pi + t * eps;
                        self.y_tree.for_candidates(
                            xi,
                            self.p,
                            reach,
                            &node_max,
                            &mut stack,
                            |k, s| {
                                let c = cost_from_sq(s, self.p);
                                let z = (pi + q_leaf[k] - c) / eps;
                                if z >= -t {
                                    visit(&mut acc, r, i, k, c, z);
                                }
                            },
                        );
                    }
                    (acc, stack)
                },
            )
            .map(|(acc, _)| acc)
            .collect()
    }
}

impl SparseBuilder {
    /// [`KernelBuilder::build`] with every stored entry at most `e^{cap}`: a row whose largest
    /// entry `z_max` exceeds `cap` — its reference `p_i` too high for `q`, as an estimated pair
    /// of references can be — is stored against the lowered reference `p_i − ε z_max` (its
    /// largest entry 1), keeping its entries `≥ e^{−T}` of that. Entries are multiplied by
    /// scalings normalised to at most 1, so the cap keeps every kept product representable: an
    /// entry of `e^{1700}` (overflow) times a scaling of `e^{−1600}` (underflow) would be lost
    /// silently. Returns the store and the row references it was built on (`p`, lowered where
    /// capped).
    pub fn build_capped(
        &self,
        p: &[f64],
        q: &[f64],
        eps: f64,
        cap: f64,
    ) -> (SparseStore, Vec<f64>) {
        let mut parts: Vec<KeptRows> = self.for_kept(
            p,
            q,
            eps,
            TRUNCATION,
            KeptRows::default,
            |rows: &mut KeptRows, r, _, k, _, z| rows.push(r, k, z, cap),
        );
        parts.par_iter_mut().for_each(|part| part.finish_row(cap));
        let mut reference = p.to_vec();
        for part in &parts {
            for &(r, lowered) in &part.lowered {
                reference[self.x_tree.order[r] as usize] -= eps * lowered;
            }
        }
        let n = self.x_tree.len();
        let mut counts = vec![0usize; n];
        for part in &parts {
            for (w, &(r, start)) in part.rows.iter().enumerate() {
                counts[r] = part.row_end(w) - start;
            }
        }
        let mut row_ptr = vec![0usize; n + 1];
        for r in 0..n {
            row_ptr[r + 1] = row_ptr[r] + counts[r];
        }
        let total = row_ptr[n];
        let (mut cols_all, mut vals_all) = (vec![0u32; total], vec![0.0f64; total]);
        for part in &parts {
            for (w, &(r, start)) in part.rows.iter().enumerate() {
                let end = part.row_end(w);
                let at = row_ptr[r];
                cols_all[at..at + end - start].copy_from_slice(&part.cols[start..end]);
                vals_all[at..at + end - start].copy_from_slice(&part.vals[start..end]);
            }
        }
        let store = SparseStore {
            row_order: self.x_tree.order.clone(),
            col_order: self.y_tree.order.clone(),
            row_ptr,
            cols: cols_all,
            vals: vals_all,
        };
        (store, reference)
    }
}

/// The kept entries of the consecutive rows one build task visits: (leaf row, start) of each
/// row, columns, values (`z` until the row is finished, then `e^z`), and the rows whose
/// reference was lowered, by how much (units of ε).
#[derive(Default)]
struct KeptRows {
    rows: Vec<(usize, usize)>,
    cols: Vec<u32>,
    vals: Vec<f64>,
    /// Rows already exponentiated.
    finished: usize,
    lowered: Vec<(usize, f64)>,
}

impl KeptRows {
    fn push(&mut self, r: usize, k: usize, z: f64, cap: f64) {
        if self.rows.last().is_none_or(|&(last, _)| last != r) {
            self.finish_row(cap);
            self.rows.push((r, self.cols.len()));
        }
        self.cols.push(k as u32);
        self.vals.push(z);
    }

    fn row_end(&self, w: usize) -> usize {
        self.rows.get(w + 1).map_or(self.cols.len(), |x| x.1)
    }

    /// Exponentiates the last row's entries, lowering its reference first if its largest
    /// entry exceeds `e^{cap}` (then only the entries `≥ e^{−T}` of the largest stay).
    fn finish_row(&mut self, cap: f64) {
        let Some(&(r, start)) = self.rows.last() else {
            return;
        };
        if self.finished == self.rows.len() {
            return;
        }
        let top = self.vals[start..]
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        if top > cap && top.is_finite() {
            let mut kept = start;
            for at in start..self.vals.len() {
                let z = self.vals[at] - top;
                if z >= -TRUNCATION {
                    self.cols[kept] = self.cols[at];
                    self.vals[kept] = z;
                    kept += 1;
                }
            }
            self.cols.truncate(kept);
            self.vals.truncate(kept);
            self.lowered.push((r, top));
        }
        self.vals[start..].iter_mut().for_each(|v| *v = v.exp());
        self.finished = self.rows.len();
    }
}

impl KernelBuilder for SparseBuilder {
    type Store = SparseStore;

    fn drift(&self) -> f64 {
        SPARSE_DRIFT
    }

    fn build(&self, p: &[f64], q: &[f64], eps: f64) -> SparseStore {
        self.build_capped(p, q, eps, f64::INFINITY).0
    }

    fn plan_sums(&self, row: &[f64], col: &[f64], eps: f64) -> Option<PlanSums> {
        let m = self.y_tree.len();
        let n = self.x_tree.len();
        type Acc = (Vec<(usize, f64)>, Vec<f64>, f64);
        let parts: Vec<Acc> = self.for_kept(
            row,
            col,
            eps,
            self.eval_threshold,
            || (Vec::new(), vec![0.0; m], 0.0),
            |(rows, cols, cost): &mut Acc, _, i, k, c, z| {
                let pij = z.exp();
                match rows.last_mut() {
                    Some((last, s)) if *last == i => *s += pij,
                    _ => rows.push((i, pij)),
                }
                cols[k] += pij;
                *cost += pij * c;
            },
        );
        let mut row_sums = vec![0.0; n];
        let mut col_leaf = vec![0.0; m];
        let mut transport_cost = 0.0;
        for (rows, cols, cost) in parts {
            for (i, s) in rows {
                row_sums[i] += s;
            }
            col_leaf = add_into(col_leaf, cols);
            transport_cost += cost;
        }
        Some(PlanSums {
            row_sums,
            col_sums: to_point_order(&self.y_tree.order, &col_leaf),
            transport_cost,
        })
    }
}
