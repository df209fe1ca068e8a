//! The block-sparse truncated kernel for large point clouds (Schmitzer 2019, §4; Feydy's
//! thesis, §3.3.3: cluster-to-cluster kernel truncation).
//!
//! Rows are grouped by the leaves of a k-d tree over x (≤ 16 points each). For each leaf, the
//! leaves of the y tree that may hold an entry `(p_i + q_j − C_ij)/ε ≥ −T` for *some* row of the
//! leaf are found once, by box-to-box distances and the largest potentials, and merged into runs
//! of consecutive y leaf positions. Every row of the leaf stores the same runs densely. The
//! support is thus a superset of the point-wise truncation of [`super::sparse`] (what the
//! dropped-mass bound needs), with no column index per entry: an update streams the stored values
//! against contiguous slices of the scalings, at the memory bandwidth, and an f32 store halves it.
//!
//! The exact plan statistics walk the same blocks at the threshold `T_eval` of the plan's own
//! support, recomputing the entries (nothing left out reaches `e^{−40}` of the mass).

use rayon::prelude::*;

use super::stabilized::{two_pass_products, KernelBuilder, KernelStore, ScalingOf, Stored};
use crate::core::cost::{add_into, PlanSums};
use crate::core::logsumexp::plan_row_sums;
use crate::core::neighbours::{cost_from_sq, to_leaf_order, to_point_order, BoxQuery, KdTree};

/// Truncation threshold `T`: blocks that cannot hold an entry `≥ e^{−T}` of the reference are dropped.
const TRUNCATION: f64 = 32.0;
/// Absorption bound `τ`: dropped entries stay below `e^{2τ−T}` ≈ 1e-10 of their plan weight.
const DRIFT: f64 = 5.0;
/// Mean stored entries per row from which one fused pass beats two: a wide row read twice costs
/// a second trip to memory, while short rows scatter the fused pass over many accumulator
/// slices (measured: 6409 per row, 5.8 s fused against 8.3 s in two passes; 1170 per row,
/// 47.6 s against 41.1 s).
const FUSE_MIN_WIDTH: usize = 4096;

/// Rows of one x leaf and the runs of y leaf positions they store.
#[derive(Clone, Debug)]
struct Block {
    /// Leaf positions `rows.0..rows.1` of x.
    rows: (usize, usize),
    /// `(start, end)` leaf positions of y, ascending and disjoint.
    runs: Vec<(u32, u32)>,
    /// Σ run lengths: stored entries per row.
    width: usize,
}

/// The blocks, and for each its rows' values (row-major, `width` per row) in one buffer.
pub struct BlockStore<T> {
    row_order: Vec<u32>,
    col_order: Vec<u32>,
    blocks: Vec<Block>,
    /// Offset of each block's values in `vals`.
    offsets: Vec<usize>,
    vals: Vec<T>,
}

impl<T: Stored> BlockStore<T> {
    /// The rows of block `b`: each leaf row position with its stored values (empty when the
    /// block keeps no runs — every row is visited, so products stay aligned with the rows).
    fn block_rows(&self, b: usize) -> impl Iterator<Item = (usize, &[T])> + '_ {
        let block = &self.blocks[b];
        let (start, width, offset) = (block.rows.0, block.width, self.offsets[b]);
        (start..block.rows.1).map(move |r| {
            let at = offset + (r - start) * width;
            (r, &self.vals[at..at + width])
        })
    }

    /// Σ_k K̃_rk v_k for one stored row (`v` in y leaf order).
    fn row_dot(runs: &[(u32, u32)], row: &[T], v_leaf: &[f64]) -> f64 {
        let mut at = 0;
        let mut sum = 0.0;
        for &(s, e) in runs {
            let (s, e) = (s as usize, e as usize);
            sum += T::dot(&row[at..at + e - s], &v_leaf[s..e]);
            at += e - s;
        }
        sum
    }

    /// `acc_k += u K̃_rk` for one stored row (`acc` in y leaf order).
    fn row_axpy(runs: &[(u32, u32)], row: &[T], u: f64, acc: &mut [f64]) {
        let mut at = 0;
        for &(s, e) in runs {
            let (s, e) = (s as usize, e as usize);
            T::axpy(u, &row[at..at + e - s], &mut acc[s..e]);
            at += e - s;
        }
    }

    /// The row products in x leaf order, block by block.
    fn leaf_row_products(&self, v_leaf: &[f64]) -> Vec<f64> {
        (0..self.blocks.len())
            .into_par_iter()
            .flat_map_iter(|b| {
                let runs = &self.blocks[b].runs;
                self.block_rows(b)
                    .map(|(_, row)| Self::row_dot(runs, row, v_leaf))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

impl<T: Stored> KernelStore for BlockStore<T> {
    fn entries(&self) -> usize {
        self.vals.len()
    }

    fn row_products(&self, v: &[f64]) -> Vec<f64> {
        let sums = self.leaf_row_products(&to_leaf_order(&self.col_order, v));
        to_point_order(&self.row_order, &sums)
    }

    fn col_products(&self, u: &[f64]) -> Vec<f64> {
        let m = self.col_order.len();
        let acc = (0..self.blocks.len())
            .into_par_iter()
            .fold(
                || vec![0.0; m],
                |mut acc, b| {
                    let runs = &self.blocks[b].runs;
                    for (r, row) in self.block_rows(b) {
                        let ui = u[self.row_order[r] as usize];
                        if ui != 0.0 {
                            Self::row_axpy(runs, row, ui, &mut acc);
                        }
                    }
                    acc
                },
            )
            .reduce(|| vec![0.0; m], add_into);
        to_point_order(&self.col_order, &acc)
    }

    fn fused_products(&self, v: &[f64], u_of: &ScalingOf<'_>) -> (Vec<f64>, Vec<f64>) {
        if self.vals.len() < FUSE_MIN_WIDTH * self.row_order.len() {
            return two_pass_products(self, v, u_of);
        }
        let m = self.col_order.len();
        let v_leaf = to_leaf_order(&self.col_order, v);
        // Each row is read once: its product, its scaling, then its share of the columns while
        // it is still in cache (a block's rows share their runs, so the slices of `v_leaf` and
        // of the accumulator they touch stay in cache too).
        // Per task: its column accumulator and its rows' (point, product).
        type Part = (Vec<f64>, Vec<(usize, f64)>);
        let parts: Vec<Part> = (0..self.blocks.len())
            .into_par_iter()
            .fold(
                || (vec![0.0; m], Vec::new()),
                |(mut acc, mut sums), b| {
                    let runs = &self.blocks[b].runs;
                    for (r, row) in self.block_rows(b) {
                        let i = self.row_order[r] as usize;
                        let s = Self::row_dot(runs, row, &v_leaf);
                        sums.push((i, s));
                        let ui = u_of(i, s);
                        if ui != 0.0 {
                            Self::row_axpy(runs, row, ui, &mut acc);
                        }
                    }
                    (acc, sums)
                },
            )
            .collect();
        let mut sums = vec![0.0; self.row_order.len()];
        let mut acc = vec![0.0; m];
        for (part, rows) in parts {
            acc = add_into(acc, part);
            for (i, s) in rows {
                sums[i] = s;
            }
        }
        (sums, to_point_order(&self.col_order, &acc))
    }
}

/// Builds block-sparse truncated kernels between two point clouds with the cost `|x − y|^p`,
/// storing entries of type `T`.
pub struct BlockBuilder<T> {
    x_tree: KdTree,
    y_tree: KdTree,
    p: f64,
    /// `T_eval`: the plan statistics leave out less than `e^{−40}` of the mass.
    eval_threshold: f64,
    element: std::marker::PhantomData<T>,
}

impl<T: Stored> BlockBuilder<T> {
    /// `x`, `y` row-major with `dim` coordinates per point; `mass` is the plan's mass |a|.
    pub fn new(x: &[f64], y: &[f64], dim: usize, p: f64, mass: f64) -> Self {
        let (n, m) = (x.len() / dim, y.len() / dim);
        BlockBuilder {
            x_tree: KdTree::new(x, dim),
            y_tree: KdTree::new(y, dim),
            p,
            eval_threshold: 40.0 + ((n as f64) * (m as f64)).ln() - mass.min(1.0).ln(),
            element: std::marker::PhantomData,
        }
    }

    /// Entries [`KernelBuilder::build`] stores for the reference potentials `p`, `q` (point
    /// order) at `eps`, counted without storing them.
    pub fn stored_entries(&self, p: &[f64], q: &[f64], eps: f64) -> usize {
        let p_leaf = to_leaf_order(&self.x_tree.order, p);
        let q_leaf = to_leaf_order(&self.y_tree.order, q);
        let blocks = self.blocks(&p_leaf, &q_leaf, eps, TRUNCATION);
        blocks.iter().map(|b| (b.rows.1 - b.rows.0) * b.width).sum()
    }

    /// The blocks whose rows may hold an entry `(p_i + q_j − C_ij)/ε ≥ −t` (`p`, `q` in leaf order).
    fn blocks(&self, p_leaf: &[f64], q_leaf: &[f64], eps: f64, t: f64) -> Vec<Block> {
        let node_max = self.y_tree.node_max(q_leaf);
        self.x_tree
            .leaves()
            .into_par_iter()
            .map_init(Vec::new, |stack, (start, end, lo, hi)| {
                let top = p_leaf[start..end]
                    .iter()
                    .filter(|v| v.is_finite())
                    .fold(f64::NEG_INFINITY, |a, &b| a.max(b));
                let mut runs: Vec<(u32, u32)> = Vec::new();
                if top.is_finite() {
                    let reach = top + t * eps;
                    let query = BoxQuery {
                        lo,
                        hi,
                        p: self.p,
                        reach,
                    };
                    self.y_tree
                        .for_leaves_near_box(query, &node_max, stack, |s, e| {
                            match runs.last_mut() {
                                Some(last) if last.1 as usize == s => last.1 = e as u32,
                                _ => runs.push((s as u32, e as u32)),
                            }
                        });
                }
                let width = runs.iter().map(|&(s, e)| (e - s) as usize).sum();
                Block {
                    rows: (start, end),
                    runs,
                    width,
                }
            })
            .collect()
    }

    /// Cost of x leaf row `r` against the y leaf positions `s..e`, into `out`.
    fn cost_run(&self, r: usize, s: usize, e: usize, out: &mut Vec<f64>) {
        let d = self.x_tree.dim();
        let xi = &self.x_tree.coords[r * d..(r + 1) * d];
        out.clear();
        out.extend(self.y_tree.coords[s * d..e * d].chunks_exact(d).map(|y| {
            let sq: f64 = xi.iter().zip(y).map(|(a, b)| (a - b) * (a - b)).sum();
            cost_from_sq(sq, self.p)
        }));
    }
}

impl<T: Stored> KernelBuilder for BlockBuilder<T> {
    type Store = BlockStore<T>;

    fn drift(&self) -> f64 {
        DRIFT
    }

    fn build(&self, p: &[f64], q: &[f64], eps: f64) -> BlockStore<T> {
        let p_leaf = to_leaf_order(&self.x_tree.order, p);
        let q_leaf = to_leaf_order(&self.y_tree.order, q);
        let blocks = self.blocks(&p_leaf, &q_leaf, eps, TRUNCATION);
        let mut offsets = Vec::with_capacity(blocks.len());
        let mut total = 0;
        for block in &blocks {
            offsets.push(total);
            total += (block.rows.1 - block.rows.0) * block.width;
        }
        let mut vals = vec![T::default(); total];
        // Disjoint slices, one per block, filled in parallel.
        let mut slices = Vec::with_capacity(blocks.len());
        let mut rest = vals.as_mut_slice();
        for block in &blocks {
            let (head, tail) = rest.split_at_mut((block.rows.1 - block.rows.0) * block.width);
            slices.push(head);
            rest = tail;
        }
        let inv_eps = 1.0 / eps;
        blocks
            .par_iter()
            .zip(slices)
            .for_each_init(Vec::new, |cost, (block, out)| {
                let rows = out.chunks_exact_mut(block.width.max(1));
                for (r, row) in (block.rows.0..block.rows.1).zip(rows) {
                    let mut at = 0;
                    for &(s, e) in &block.runs {
                        let (s, e) = (s as usize, e as usize);
                        let seg = &mut row[at..at + e - s];
                        if p_leaf[r].is_finite() {
                            self.cost_run(r, s, e, cost);
                            T::fill(cost, &q_leaf[s..e], p_leaf[r], inv_eps, seg);
                        }
                        at += e - s;
                    }
                }
            });
        BlockStore {
            row_order: self.x_tree.order.clone(),
            col_order: self.y_tree.order.clone(),
            blocks,
            offsets,
            vals,
        }
    }

    fn plan_sums(&self, row: &[f64], col: &[f64], eps: f64) -> Option<PlanSums> {
        let p_leaf = to_leaf_order(&self.x_tree.order, row);
        let q_leaf = to_leaf_order(&self.y_tree.order, col);
        let blocks = self.blocks(&p_leaf, &q_leaf, eps, self.eval_threshold);
        let m = q_leaf.len();
        let inv_eps = 1.0 / eps;
        type Acc = (Vec<f64>, Vec<(usize, f64)>, f64, Vec<f64>);
        let parts: Vec<Acc> = blocks
            .par_iter()
            .fold(
                || (vec![0.0; m], Vec::new(), 0.0, Vec::new()),
                |(mut acc, mut rows, mut transport, mut cost), block| {
                    let (start, end) = block.rows;
                    for (r, &pr) in (start..end).zip(&p_leaf[start..end]) {
                        let mut mass = 0.0;
                        if pr.is_finite() {
                            for &(s, e) in &block.runs {
                                let (s, e) = (s as usize, e as usize);
                                self.cost_run(r, s, e, &mut cost);
                                let (ms, tc) = plan_row_sums(
                                    &cost,
                                    &q_leaf[s..e],
                                    pr,
                                    inv_eps,
                                    &mut acc[s..e],
                                );
                                mass += ms;
                                transport += tc;
                            }
                        }
                        rows.push((r, mass));
                    }
                    (acc, rows, transport, cost)
                },
            )
            .collect();
        let mut row_leaf = vec![0.0; p_leaf.len()];
        let mut col_leaf = vec![0.0; m];
        let mut transport_cost = 0.0;
        for (acc, rows, transport, _) in parts {
            col_leaf = add_into(col_leaf, acc);
            for (r, mass) in rows {
                row_leaf[r] = mass;
            }
            transport_cost += transport;
        }
        Some(PlanSums {
            row_sums: to_point_order(&self.x_tree.order, &row_leaf),
            col_sums: to_point_order(&self.y_tree.order, &col_leaf),
            transport_cost,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testing::uniform;

    /// Block products against the dense kernel, for both element types and both the fused and
    /// the two-pass products (4200 columns: the fused one).
    fn check_products<T: Stored>(tol: f64) {
        let (n, m, eps) = (64, 4200, 0.5);
        let mut next = uniform(11);
        let xs: Vec<f64> = (0..2 * n).map(|_| next()).collect();
        let ys: Vec<f64> = (0..2 * m).map(|_| next()).collect();
        let p: Vec<f64> = (0..n).map(|_| 0.1 * next()).collect();
        let q: Vec<f64> = (0..m).map(|_| 0.1 * next()).collect();
        let v: Vec<f64> = (0..m).map(|_| next()).collect();
        let u: Vec<f64> = (0..n).map(|_| next()).collect();
        let kernel = |i: usize, j: usize| {
            let c = (xs[2 * i] - ys[2 * j]).powi(2) + (xs[2 * i + 1] - ys[2 * j + 1]).powi(2);
            ((p[i] + q[j] - c) / eps).exp()
        };
        let rows: Vec<f64> = (0..n)
            .map(|i| (0..m).map(|j| kernel(i, j) * v[j]).sum())
            .collect();
        let cols: Vec<f64> = (0..m)
            .map(|j| (0..n).map(|i| kernel(i, j) * u[i]).sum())
            .collect();
        let builder = BlockBuilder::<T>::new(&xs, &ys, 2, 2.0, 1.0);
        let store = builder.build(&p, &q, eps);
        // At this ε nothing is truncated.
        assert_eq!(store.entries(), n * m);
        assert!(store.entries() >= FUSE_MIN_WIDTH * n);
        let close =
            |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol * y.abs());
        assert!(close(&store.row_products(&v), &rows));
        assert!(close(&store.col_products(&u), &cols));
        let scaling = |i: usize, s: f64| u[i] * s / rows[i];
        let (fused_rows, fused_cols) = store.fused_products(&v, &scaling);
        assert!(close(&fused_rows, &rows));
        assert!(close(&fused_cols, &cols), "fused columns");
        let (two_rows, two_cols) = two_pass_products(&store, &v, &scaling);
        assert!(close(&two_rows, &fused_rows) && close(&two_cols, &fused_cols));
    }

    #[test]
    fn counted_entries_are_the_stored_ones() {
        // A Gaussian-like cluster inside a wide box: truncation keeps a part of the pairs.
        let (n, m) = (300, 400);
        let mut next = uniform(5);
        let mut point = |spread: f64| spread * (next() + next() + next() - 1.5);
        let xs: Vec<f64> = (0..2 * n).map(|_| point(1.0)).collect();
        let ys: Vec<f64> = (0..2 * m).map(|_| point(4.0)).collect();
        let p: Vec<f64> = (0..n).map(|i| 0.01 * (i % 7) as f64).collect();
        let q = vec![0.0; m];
        let builder = BlockBuilder::<f32>::new(&xs, &ys, 2, 2.0, 1.0);
        for eps in [1e-3, 1e-2, 0.1] {
            let stored = builder.build(&p, &q, eps).entries();
            assert_eq!(builder.stored_entries(&p, &q, eps), stored, "ε = {eps}");
            assert!(stored > 0 && stored <= n * m);
        }
    }

    #[test]
    fn block_products_match_the_dense_kernel() {
        check_products::<f64>(1e-13);
        check_products::<f32>(1e-6);
    }

    #[test]
    fn rows_without_entries_keep_their_place() {
        // Half the rows lie far beyond reach of every column: their blocks keep no runs, and
        // every product must still land on its own row.
        let (n, m, eps) = (64, 50, 1e-2);
        let mut next = uniform(13);
        let xs: Vec<f64> = (0..n)
            .flat_map(|i| {
                let far = if i % 2 == 0 { 100.0 } else { 0.0 };
                [far + 0.1 * next(), far + 0.1 * next()]
            })
            .collect();
        let ys: Vec<f64> = (0..2 * m).map(|_| 0.1 * next()).collect();
        let (p, q, v) = (vec![0.0; n], vec![0.0; m], vec![1.0; m]);
        let store = BlockBuilder::<f64>::new(&xs, &ys, 2, 2.0, 1.0).build(&p, &q, eps);
        assert!(store.blocks.iter().any(|b| b.runs.is_empty()));
        let rows = store.row_products(&v);
        let (fused, _) = store.fused_products(&v, &|_, _| 1.0);
        for i in 0..n {
            let exact: f64 = (0..m)
                .map(|j| {
                    let c =
                        (xs[2 * i] - ys[2 * j]).powi(2) + (xs[2 * i + 1] - ys[2 * j + 1]).powi(2);
                    (-c / eps).exp()
                })
                .sum();
            assert!(
                (rows[i] - exact).abs() <= 1e-12 * exact.max(1e-300),
                "row {i}"
            );
            assert_eq!(fused[i], rows[i]);
        }
    }

    #[test]
    fn exact_statistics_cover_the_plan() {
        let (n, m, eps) = (300, 250, 1e-3);
        let mut next = uniform(12);
        let xs: Vec<f64> = (0..2 * n).map(|_| next()).collect();
        let ys: Vec<f64> = (0..2 * m).map(|_| next()).collect();
        // Terms of a product plan's scale: every entry below e^{−T_eval} may be dropped.
        let row: Vec<f64> = (0..n)
            .map(|_| -eps * (n as f64).ln() + 0.01 * next())
            .collect();
        let col: Vec<f64> = (0..m)
            .map(|_| -eps * (m as f64).ln() + 0.01 * next())
            .collect();
        let builder = BlockBuilder::<f32>::new(&xs, &ys, 2, 2.0, 1.0);
        let sums = builder.plan_sums(&row, &col, eps).expect("computed here");
        let entry = |i: usize, j: usize| {
            let c = (xs[2 * i] - ys[2 * j]).powi(2) + (xs[2 * i + 1] - ys[2 * j + 1]).powi(2);
            ((row[i] + col[j] - c) / eps).exp()
        };
        let total: f64 = (0..n)
            .map(|i| (0..m).map(|j| entry(i, j)).sum::<f64>())
            .sum();
        for i in 0..n {
            let exact: f64 = (0..m).map(|j| entry(i, j)).sum();
            assert!((sums.row_sums[i] - exact).abs() <= 1e-14 * total, "row {i}");
        }
        for j in 0..m {
            let exact: f64 = (0..n).map(|i| entry(i, j)).sum();
            assert!(
                (sums.col_sums[j] - exact).abs() <= 1e-14 * total,
                "column {j}"
            );
        }
    }
}
