//! A k-d tree over a point cloud for the truncated kernels: finds, for a point `x` with
//! potential `f`, every `y_j` with `f + g_j − |x − y_j|^p ≥ −t` — the entries a truncated Gibbs
//! kernel keeps (Schmitzer 2019, §4.2 uses a multiscale hierarchy of cells for the same query).
//! A subtree is skipped when even its nearest box point and its largest potential cannot reach
//! the threshold. Its nodes at one depth are also the clusters of a coarse-to-fine start.

/// Points per leaf.
const LEAF: usize = 16;

/// What [`KdTree::for_leaves_near_box`] looks for: points whose cost `|x − y|^p` to some point
/// of the box `[lo, hi]` may be within `reach`.
#[derive(Clone, Copy, Debug)]
pub struct BoxQuery<'a> {
    pub lo: &'a [f64],
    pub hi: &'a [f64],
    pub p: f64,
    pub reach: f64,
}

pub struct KdTree {
    dim: usize,
    /// Point indices in leaf order: each node covers `order[start..end]`.
    pub order: Vec<u32>,
    /// Coordinates in leaf order (row-major, `dim` per point).
    pub coords: Vec<f64>,
    nodes: Vec<Node>,
    /// Bounding boxes, `2·dim` values (lower corner, upper corner) per node.
    boxes: Vec<f64>,
}

#[derive(Clone, Copy)]
struct Node {
    start: u32,
    end: u32,
    /// Children (0 for a leaf: the root is never anyone's child).
    left: u32,
    right: u32,
    depth: u32,
}

impl KdTree {
    /// `points` is row-major, `dim` coordinates per point.
    pub fn new(points: &[f64], dim: usize) -> Self {
        let n = points.len() / dim;
        let mut tree = KdTree {
            dim,
            order: (0..n as u32).collect(),
            coords: Vec::new(),
            nodes: Vec::new(),
            boxes: Vec::new(),
        };
        tree.split(points, 0, n, 0);
        tree.coords = tree
            .order
            .iter()
            .flat_map(|&i| {
                points[i as usize * dim..(i as usize + 1) * dim]
                    .iter()
                    .copied()
            })
            .collect();
        tree
    }

    /// Appends the node over `order[start..end]` and its subtree; returns its index.
    fn split(&mut self, points: &[f64], start: usize, end: usize, depth: u32) -> usize {
        let d = self.dim;
        let id = self.nodes.len();
        let (mut lo, mut hi) = (vec![f64::INFINITY; d], vec![f64::NEG_INFINITY; d]);
        for &i in &self.order[start..end] {
            for k in 0..d {
                let v = points[i as usize * d + k];
                lo[k] = lo[k].min(v);
                hi[k] = hi[k].max(v);
            }
        }
        self.boxes.extend(&lo);
        self.boxes.extend(&hi);
        self.nodes.push(Node {
            start: start as u32,
            end: end as u32,
            left: 0,
            right: 0,
            depth,
        });
        if end - start > LEAF {
            let axis = (0..d)
                .max_by(|&a, &b| (hi[a] - lo[a]).total_cmp(&(hi[b] - lo[b])))
                .unwrap_or(0);
            let mid = (start + end) / 2;
            self.order[start..end].select_nth_unstable_by(mid - start, |&i, &j| {
                points[i as usize * d + axis].total_cmp(&points[j as usize * d + axis])
            });
            let left = self.split(points, start, mid, depth + 1);
            let right = self.split(points, mid, end, depth + 1);
            self.nodes[id].left = left as u32;
            self.nodes[id].right = right as u32;
        }
        id
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The largest value of `values` (given in leaf order) under each node.
    pub fn node_max(&self, values_in_leaf_order: &[f64]) -> Vec<f64> {
        let mut out = vec![f64::NEG_INFINITY; self.nodes.len()];
        // Children come after their parent, so a reverse sweep sees them first.
        for (id, node) in self.nodes.iter().enumerate().rev() {
            out[id] = if node.left == 0 {
                values_in_leaf_order[node.start as usize..node.end as usize]
                    .iter()
                    .fold(f64::NEG_INFINITY, |m, &v| m.max(v))
            } else {
                out[node.left as usize].max(out[node.right as usize])
            };
        }
        out
    }

    /// Calls `visit(k, |x − y_k|²)` for every point (by leaf position `k`) of every leaf whose
    /// box may hold a point with `|x − y|^p ≤ reach + node_max` (`node_max` from [`Self::node_max`]):
    /// the leaves near the degenerate box `[x, x]`.
    pub fn for_candidates(
        &self,
        x: &[f64],
        p: f64,
        reach: f64,
        node_max: &[f64],
        stack: &mut Vec<u32>,
        mut visit: impl FnMut(usize, f64),
    ) {
        let d = self.dim;
        let query = BoxQuery {
            lo: x,
            hi: x,
            p,
            reach,
        };
        self.for_leaves_near_box(query, node_max, stack, |start, end| {
            for k in start..end {
                let y = &self.coords[k * d..(k + 1) * d];
                let mut s = 0.0;
                for (a, b) in x.iter().zip(y) {
                    s += (a - b) * (a - b);
                }
                visit(k, s);
            }
        });
    }

    /// Calls `visit(start, end)` for every leaf, in leaf order, that may hold a point within
    /// reach of some point of the box `[lo, hi]`: its box-to-box cost is at most `reach` plus
    /// the leaf's largest `node_max` value (for a single point, `lo = hi` = the point).
    pub fn for_leaves_near_box(
        &self,
        query: BoxQuery<'_>,
        node_max: &[f64],
        stack: &mut Vec<u32>,
        mut visit: impl FnMut(usize, usize),
    ) {
        let BoxQuery { lo, hi, p, reach } = query;
        let d = self.dim;
        stack.clear();
        stack.push(0);
        while let Some(id) = stack.pop() {
            let id = id as usize;
            let bound = reach + node_max[id];
            if bound < 0.0 {
                continue;
            }
            let (blo, bhi) = (
                &self.boxes[2 * d * id..2 * d * id + d],
                &self.boxes[2 * d * id + d..2 * d * (id + 1)],
            );
            let mut r2 = 0.0;
            for k in 0..d {
                let t = (blo[k] - hi[k]).max(lo[k] - bhi[k]).max(0.0);
                r2 += t * t;
            }
            if cost_from_sq(r2, p) > bound {
                continue;
            }
            let node = self.nodes[id];
            if node.left == 0 {
                visit(node.start as usize, node.end as usize);
            } else {
                // Right first: the left subtree (lower leaf positions) is popped first.
                stack.push(node.right);
                stack.push(node.left);
            }
        }
    }

    /// The leaves in leaf order, as (range of leaf positions, lower corner, upper corner).
    pub fn leaves(&self) -> Vec<(usize, usize, &[f64], &[f64])> {
        let d = self.dim;
        let mut out: Vec<_> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, node)| node.left == 0)
            .map(|(id, node)| {
                (
                    node.start as usize,
                    node.end as usize,
                    &self.boxes[2 * d * id..2 * d * id + d],
                    &self.boxes[2 * d * id + d..2 * d * (id + 1)],
                )
            })
            .collect();
        out.sort_by_key(|leaf| leaf.0);
        out
    }

    /// The clusters at `depth` (or the leaves above it): each as the range of leaf positions it covers.
    pub fn clusters(&self, depth: u32) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut stack = vec![0usize];
        while let Some(id) = stack.pop() {
            let node = self.nodes[id];
            if node.depth == depth || node.left == 0 {
                out.push((node.start as usize, node.end as usize));
            } else {
                stack.push(node.right as usize);
                stack.push(node.left as usize);
            }
        }
        out
    }

    /// The depth at which the tree has about `count` clusters.
    pub fn depth_for(&self, count: usize) -> u32 {
        (count.max(1) as f64).log2().ceil() as u32
    }

    pub fn dim(&self) -> usize {
        self.dim
    }
}

/// `v` (point order) in the leaf order `order` (a tree's [`KdTree::order`]).
pub fn to_leaf_order(order: &[u32], v: &[f64]) -> Vec<f64> {
    order.iter().map(|&i| v[i as usize]).collect()
}

/// Leaf-ordered values back in point order: the inverse of [`to_leaf_order`].
pub fn to_point_order(order: &[u32], leaf: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; leaf.len()];
    for (&i, &v) in order.iter().zip(leaf) {
        out[i as usize] = v;
    }
    out
}

/// `|x − y|^p` from `|x − y|²`.
#[inline(always)]
pub fn cost_from_sq(s: f64, p: f64) -> f64 {
    if p == 2.0 {
        s
    } else if p == 1.0 {
        s.sqrt()
    } else {
        s.powf(0.5 * p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_cover_every_point_within_reach() {
        let mut next = crate::core::testing::uniform(99);
        let m = 500;
        let y: Vec<f64> = (0..2 * m).map(|_| next()).collect();
        let g: Vec<f64> = (0..m).map(|_| 0.05 * next()).collect();
        let tree = KdTree::new(&y, 2);
        let g_leaf: Vec<f64> = tree.order.iter().map(|&j| g[j as usize]).collect();
        let node_max = tree.node_max(&g_leaf);
        let mut stack = Vec::new();
        for (x, reach) in [([0.3, 0.7], 0.01), ([0.0, 0.0], 0.05), ([2.0, 2.0], 0.1)] {
            for p in [1.0, 2.0] {
                let mut found = Vec::new();
                tree.for_candidates(&x, p, reach, &node_max, &mut stack, |k, s| {
                    if cost_from_sq(s, p) <= reach + g_leaf[k] {
                        found.push(tree.order[k]);
                    }
                });
                found.sort();
                let expected: Vec<u32> = (0..m as u32)
                    .filter(|&j| {
                        let j = j as usize;
                        let s = (x[0] - y[2 * j]).powi(2) + (x[1] - y[2 * j + 1]).powi(2);
                        cost_from_sq(s, p) <= reach + g[j]
                    })
                    .collect();
                assert_eq!(found, expected);
            }
        }
        // The leaves near a box cover every point within reach of any point in it.
        let (lo, hi) = ([0.2, 0.6], [0.35, 0.75]);
        let mut covered = vec![false; m];
        let mut last = 0;
        let query = BoxQuery {
            lo: &lo,
            hi: &hi,
            p: 2.0,
            reach: 0.01,
        };
        tree.for_leaves_near_box(query, &node_max, &mut stack, |s, e| {
            assert!(s >= last, "leaves come in leaf order");
            last = e;
            covered[s..e].iter_mut().for_each(|c| *c = true);
        });
        let mut inner = crate::core::testing::uniform(7);
        for _ in 0..200 {
            let x = [lo[0] + 0.15 * inner(), lo[1] + 0.15 * inner()];
            for k in 0..m {
                let s =
                    (x[0] - tree.coords[2 * k]).powi(2) + (x[1] - tree.coords[2 * k + 1]).powi(2);
                if s <= 0.01 + g_leaf[k] {
                    assert!(covered[k], "point {k} within reach of {x:?} missed");
                }
            }
        }
        let leaves = tree.leaves();
        assert_eq!(leaves.iter().map(|l| l.1 - l.0).sum::<usize>(), m);
        assert!(leaves.windows(2).all(|w| w[0].1 == w[1].0));
        let clusters = tree.clusters(tree.depth_for(8));
        assert_eq!(clusters.len(), 8);
        assert_eq!(clusters.iter().map(|(s, e)| e - s).sum::<usize>(), m);
    }
}
