//! Sinkhorn between point clouds: the kernel layer's choice between the online log-domain
//! kernel, a stored dense kernel and the truncated kernel with a coarse-to-fine start (see
//! [`super::sparse`]).

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

use super::blocks::BlockBuilder;
use super::stabilized::{Stabilized, Stored};
use super::{
    sinkhorn, KernelChoice, SinkhornOutput, SinkhornParams, StageReport, Update, F32_MIN_TOL,
    STORED_BUDGET,
};
use crate::core::cost::{CostKernel, PointCost};
use crate::core::error::{check_weights, Result};
use crate::core::neighbours::KdTree;

/// Largest dimension served by the truncated kernel: the k-d tree prunes well only in low d.
const SPARSE_MAX_DIM: usize = 3;
/// Points per coarse cluster.
const COARSENING: usize = 16;
/// Largest fraction of the n·m entries an intermediate truncated stage may keep: above it the
/// stage runs on the coarse level (at 10⁵ points, stages of 10⁹ entries cost more than the
/// coarse level's whole ε-scaling: 68 s against 41 s at ε = 3e-5 with 12.5 % here).
const SPARSE_FRACTION: f64 = 0.02;
/// Factor on the counted entries of the target's truncated kernel that must fit the budget.
const SUPPORT_GROWTH: f64 = 1.5;
/// Largest coarse level solved without truncation (entries).
const DENSE_COARSE: usize = 4_000_000;

/// Whether `Auto` sends a point-cloud problem to the truncated kernel.
fn wants_sparse(n: usize, m: usize, dim: usize, params: &SinkhornParams) -> bool {
    match params.kernel {
        KernelChoice::Sparse => true,
        KernelChoice::Auto => {
            dim <= SPARSE_MAX_DIM
                && params.update == Update::Alternating
                && n.saturating_mul(m).saturating_mul(8) > STORED_BUDGET
        }
        _ => false,
    }
}

/// Two weighted point clouds and the exponent of their cost `|x_i − y_j|^p`.
#[derive(Clone, Copy, Debug)]
pub struct PointClouds<'a> {
    /// Source points, one per row.
    pub x: ArrayView2<'a, f64>,
    /// Target points, one per row.
    pub y: ArrayView2<'a, f64>,
    pub p: f64,
    /// Source weights.
    pub a: ArrayView1<'a, f64>,
    /// Target weights.
    pub b: ArrayView1<'a, f64>,
}

/// Sinkhorn with the cost `|x_i − y_j|^p`, on the kernel `params.kernel` asks for (see
/// [`KernelChoice`]); the truncated kernel always anneals ε (factor `eps_scaling`, 0.5 if unset)
/// from a coarse level unless warm-started.
pub fn sinkhorn_points(
    clouds: PointClouds<'_>,
    params: &SinkhornParams,
    init: Option<(ArrayView1<'_, f64>, ArrayView1<'_, f64>)>,
) -> Result<SinkhornOutput> {
    solve_points(clouds, params, init, truncated_budget() as f64)
}

/// Bytes a truncated kernel may store: half the memory the system reports available (Linux),
/// at least 1 GiB; 2 GiB where that is unknown.
fn truncated_budget() -> usize {
    const GIB: usize = 1 << 30;
    let available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
            let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        });
    available.map_or(2 * GIB, |bytes| (bytes / 2).max(GIB))
}

/// Bytes per stored entry of the truncated kernel: f32 when `tol` allows it (as for the dense
/// stored kernel, [`F32_MIN_TOL`]).
fn entry_bytes(params: &SinkhornParams) -> f64 {
    if params.tol >= F32_MIN_TOL {
        4.0
    } else {
        8.0
    }
}

/// [`sinkhorn_points`] with the largest number of bytes a truncated kernel may store.
fn solve_points(
    clouds: PointClouds<'_>,
    params: &SinkhornParams,
    init: Option<(ArrayView1<'_, f64>, ArrayView1<'_, f64>)>,
    budget: f64,
) -> Result<SinkhornOutput> {
    let PointClouds { x, y, p, a, b } = clouds;
    let kernel = PointCost::new(x, y, p)?;
    let (n, m) = kernel.shape();
    if !wants_sparse(n, m, x.ncols(), params) || a.len() != n || b.len() != m {
        return sinkhorn(&kernel, a, b, params, init);
    }
    params.validate()?;
    check_weights("a", a.iter())?;
    check_weights("b", b.iter())?;
    let flat = |v: ArrayView2<'_, f64>| v.as_standard_layout().iter().copied().collect::<Vec<_>>();
    let level = Level {
        kernel: &kernel,
        xs: flat(x),
        ys: flat(y),
        dim: x.ncols(),
        p,
        a,
        b,
    };
    let q = params.eps_scaling.unwrap_or(0.5);
    let (f, g, schedule, mut reports) = match init {
        Some((f, g)) => (f.to_owned(), g.to_owned(), Vec::new(), Vec::new()),
        None => coarse_start(&level, params, q, budget)?,
    };
    let n_iter: usize = reports.iter().map(|r: &StageReport| r.n_iter).sum();
    // Counted, not estimated: the bounding-box estimate assumes uniform density, and clouds
    // concentrated inside their box keep several times more (a Gaussian cloud and a ring of
    // 10⁵ points at ε = 1e-3 of the cost's range passed the estimate, asked for 6.5·10⁹
    // entries, 26 GB in f32, and the failed allocation aborted the process). The margin covers
    // the support's growth as the potentials move from the coarse start.
    let kept = BlockBuilder::<f32>::new(&level.xs, &level.ys, level.dim, p, a.sum()).stored_entries(
        &f.to_vec(),
        &g.to_vec(),
        params.eps,
    ) as f64;
    if SUPPORT_GROWTH * kept * entry_bytes(params) > budget {
        // Too many entries to store even at the target: the online kernel finishes from the
        // coarse start.
        let mut fine = params.clone();
        fine.kernel = KernelChoice::Log;
        fine.eps_scaling = None;
        fine.max_iter = params.max_iter.saturating_sub(n_iter).max(1);
        let mut out = sinkhorn(&kernel, a, b, &fine, Some((f.view(), g.view())))?;
        reports.push(report(n, params.eps, out.n_iter, n * m));
        out.n_iter += n_iter;
        out.stages = reports;
        return Ok(out);
    }
    let start = Start { f, g, n_iter };
    let mut out = if params.tol >= F32_MIN_TOL {
        let out = level.truncated::<f32>(params, start, &schedule, &mut reports)?;
        if out.converged || out.n_iter >= params.max_iter {
            out
        } else {
            // The f32 rounding held the plan's error above `tol`: the last updates in f64.
            let start = Start {
                f: out.f,
                g: out.g,
                n_iter: out.n_iter,
            };
            level.truncated::<f64>(params, start, &[], &mut reports)?
        }
    } else {
        level.truncated::<f64>(params, start, &schedule, &mut reports)?
    };
    out.stages = reports;
    Ok(out)
}

/// One level of a multiscale solve: the points, their weights and their online cost.
struct Level<'l> {
    kernel: &'l PointCost,
    /// Row-major coordinates.
    xs: Vec<f64>,
    ys: Vec<f64>,
    dim: usize,
    p: f64,
    a: ArrayView1<'l, f64>,
    b: ArrayView1<'l, f64>,
}

/// Potentials to start from, and the updates already spent on them.
struct Start {
    f: Array1<f64>,
    g: Array1<f64>,
    n_iter: usize,
}

impl Level<'_> {
    /// The ε stages `schedule`, then the target, on the block-sparse truncated kernel with
    /// entries of type `T`; each stage's report is appended to `reports`. The returned
    /// `n_iter` counts `start.n_iter` too.
    fn truncated<T: Stored>(
        &self,
        params: &SinkhornParams,
        start: Start,
        schedule: &[f64],
        reports: &mut Vec<StageReport>,
    ) -> Result<SinkhornOutput> {
        let (n, _) = self.kernel.shape();
        let mass: f64 = self.a.sum();
        let builder = BlockBuilder::<T>::new(&self.xs, &self.ys, self.dim, self.p, mass);
        let (a_vec, b_vec) = (self.a.to_vec(), self.b.to_vec());
        let sparse = Stabilized::with_builder(self.kernel, builder, &a_vec, &b_vec);
        let Start {
            mut f,
            mut g,
            mut n_iter,
        } = start;
        let mut stage = params.clone();
        stage.kernel = KernelChoice::Log; // `sparse` is the kernel itself
        stage.eps_scaling = None;
        // Intermediate stages only prepare the next one's start: their statistics are not
        // returned, so they come from the stored kernel instead of the plan's full support.
        sparse.set_exact_statistics(false);
        for &eps in schedule {
            stage.eps = eps;
            stage.tol = params.tol.max(1e-3);
            stage.max_iter = params.max_iter.saturating_sub(n_iter).max(1);
            let out = sinkhorn(&sparse, self.a, self.b, &stage, Some((f.view(), g.view())))?;
            reports.push(report(n, eps, out.n_iter, sparse.entries()));
            (f, g, n_iter) = (out.f, out.g, n_iter + out.n_iter);
        }
        sparse.set_exact_statistics(true);
        stage.eps = params.eps;
        stage.tol = params.tol;
        stage.max_iter = params.max_iter.saturating_sub(n_iter).max(1);
        let mut out = sinkhorn(&sparse, self.a, self.b, &stage, Some((f.view(), g.view())))?;
        reports.push(report(n, params.eps, out.n_iter, sparse.entries()));
        out.n_iter += n_iter;
        Ok(out)
    }
}

fn report(points: usize, eps: f64, n_iter: usize, entries: usize) -> StageReport {
    StageReport {
        points,
        eps,
        n_iter,
        kept_per_row: entries as f64 / points.max(1) as f64,
    }
}

/// The reports of a coarse solve: its own stages, or one line for a single-level solve.
fn coarse_reports(out: SinkhornOutput, points: usize, eps: f64) -> Vec<StageReport> {
    if out.stages.is_empty() {
        vec![report(points, eps, out.n_iter, points * points)]
    } else {
        out.stages
    }
}

/// The ε stages above the target, from the cost's diameter by the factor `q`; a stage closer
/// than √q to the target is left out (the target stage starts from the one before).
fn schedule(diameter: f64, target: f64, q: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut e = diameter;
    while e * q.sqrt() > target {
        out.push(e);
        e *= q;
    }
    out
}

/// Stored entries a truncated kernel keeps at `eps`, estimated from the volume of the ball
/// `|x − y|^p ≤ Tε` against the clouds' bounding box.
fn kept_entries(xs: &[f64], ys: &[f64], dim: usize, p: f64, eps: f64) -> f64 {
    let mut volume = 1.0;
    for k in 0..dim {
        let (lo, hi) = xs
            .iter()
            .skip(k)
            .step_by(dim)
            .chain(ys.iter().skip(k).step_by(dim))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        volume *= (hi - lo).max(1e-12);
    }
    let radius = (32.0 * eps).powf(1.0 / p);
    let ball = match dim {
        1 => 2.0 * radius,
        2 => std::f64::consts::PI * radius * radius,
        _ => 4.0 / 3.0 * std::f64::consts::PI * radius.powi(3),
    };
    let (n, m) = ((xs.len() / dim) as f64, (ys.len() / dim) as f64);
    n * m * (ball / volume).min(1.0)
}

/// (f, g) at the switching ε, the fine stages left, and the coarse levels' stage reports.
type CoarseStart = (Array1<f64>, Array1<f64>, Vec<f64>, Vec<StageReport>);

/// Solves the stages where the kernel is too dense to truncate on clusters of the points, and
/// carries the potentials to the points at the first ε the truncated kernel can afford.
fn coarse_start(
    level: &Level<'_>,
    params: &SinkhornParams,
    q: f64,
    budget: f64,
) -> Result<CoarseStart> {
    let Level {
        kernel,
        xs,
        ys,
        dim,
        p,
        a,
        b,
    } = level;
    let (dim, p, a, b) = (*dim, *p, *a, *b);
    let stages = schedule(kernel.diameter(), params.eps, q);
    // Truncation pays once it drops most entries; above that the clusters are cheaper.
    let (n, m) = kernel.shape();
    let affordable = (budget / entry_bytes(params)).min(SPARSE_FRACTION * n as f64 * m as f64);
    let first_fine = stages
        .iter()
        .position(|&e| kept_entries(xs, ys, dim, p, e) <= affordable)
        .unwrap_or(stages.len());
    if first_fine == 0 {
        return Ok((Array1::zeros(n), Array1::zeros(m), stages, Vec::new()));
    }
    let switch = stages.get(first_fine).copied().unwrap_or(params.eps);
    let (cx, ca, x_of) = clusters(xs, a, dim, n / COARSENING);
    let (cy, cb, y_of) = clusters(ys, b, dim, m / COARSENING);
    let mut coarse = params.clone();
    coarse.eps = switch;
    coarse.eps_scaling = Some(q);
    coarse.tol = params.tol.max(1e-3);
    // A large coarse level truncates its own small-ε stages, on a coarser level still.
    coarse.kernel = if cx.nrows() * cy.nrows() > DENSE_COARSE {
        KernelChoice::Sparse
    } else {
        KernelChoice::Auto
    };
    let coarse_clouds = PointClouds {
        x: cx.view(),
        y: cy.view(),
        p,
        a: ca.view(),
        b: cb.view(),
    };
    let out = solve_points(coarse_clouds, &coarse, None, budget)?;
    // f_i = softmin_ε over the coarse columns, and likewise g_j: the c-transforms that
    // extend the coarse potentials to every point.
    let x_view = ArrayView2::from_shape((n, dim), xs)?;
    let y_view = ArrayView2::from_shape((m, dim), ys)?;
    let term = |pot: &Array1<f64>, w: &Array1<f64>| -> Vec<f64> {
        pot.iter()
            .zip(w)
            .map(|(v, w)| v + switch * w.ln())
            .collect()
    };
    let to_x = PointCost::new(x_view, cy.view(), p)?;
    let to_y = PointCost::new(y_view, cx.view(), p)?;
    let mut f = vec![0.0; n];
    let mut g = vec![0.0; m];
    let shift_f: Vec<f64> = x_of.iter().map(|&c| out.f[c]).collect();
    let shift_g: Vec<f64> = y_of.iter().map(|&c| out.g[c]).collect();
    to_x.softmin_rows(&term(&out.g, &cb), &shift_f, switch, &mut f);
    to_y.softmin_rows(&term(&out.f, &ca), &shift_g, switch, &mut g);
    Ok((
        Array1::from(f),
        Array1::from(g),
        stages[first_fine.min(stages.len())..].to_vec(),
        coarse_reports(out, cx.nrows(), switch),
    ))
}

/// About `count` clusters of the points (k-d tree cells): barycentres, summed weights, and the
/// cluster of each point.
pub(crate) fn clusters(
    points: &[f64],
    w: ArrayView1<'_, f64>,
    dim: usize,
    count: usize,
) -> (Array2<f64>, Array1<f64>, Vec<usize>) {
    let tree = KdTree::new(points, dim);
    let cells = tree.clusters(tree.depth_for(count.max(1)));
    let mut centres = Array2::zeros((cells.len(), dim));
    let mut mass = Array1::zeros(cells.len());
    let mut of = vec![0; w.len()];
    for (c, &(s, e)) in cells.iter().enumerate() {
        let members = &tree.order[s..e];
        let total: f64 = members.iter().map(|&i| w[i as usize]).sum();
        for &i in members {
            let i = i as usize;
            of[i] = c;
            // Zero-mass cells keep their plain mean so they stay finite.
            let weight = if total > 0.0 {
                w[i] / total
            } else {
                1.0 / members.len() as f64
            };
            for k in 0..dim {
                centres[(c, k)] += weight * points[i * dim + k];
            }
        }
        mass[c] = total;
    }
    (centres, mass, of)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testing::{cloud, plan_of};

    #[test]
    fn truncated_multiscale_gives_the_log_domain_plan() {
        let (n, m) = (400, 300);
        let (x, y) = (cloud(n, 2, 5), cloud(m, 2, 6));
        let mut a = Array1::from_shape_fn(n, |i| 1.0 + (i % 7) as f64);
        a /= a.sum();
        let b = Array1::from_elem(m, 1.0 / m as f64);
        let k = PointCost::new(x.view(), y.view(), 2.0).unwrap();
        // Budgets in bytes of f64 entries (tol 1e-9).
        for (eps, budget) in [(1e-3, 8e12), (1e-3, 1.6e5), (2e-4, 4e4)] {
            let mut params = SinkhornParams::new(eps);
            params.tol = 1e-9;
            params.max_iter = 100_000;
            params.eps_scaling = Some(0.5);
            params.kernel = KernelChoice::Log;
            let reference = sinkhorn(&k, a.view(), b.view(), &params, None).unwrap();
            params.kernel = KernelChoice::Sparse;
            let clouds = PointClouds {
                x: x.view(),
                y: y.view(),
                p: 2.0,
                a: a.view(),
                b: b.view(),
            };
            let out = solve_points(clouds, &params, None, budget).unwrap();
            assert!(out.converged && out.marginal_error <= 1e-9, "{out:?}");
            let (p0, p1) = (
                plan_of(&k, &reference, &a, &b, eps),
                plan_of(&k, &out, &a, &b, eps),
            );
            // The reported error is that of the full plan.
            let rows = p1.sum_axis(ndarray::Axis(1));
            let cols = p1.sum_axis(ndarray::Axis(0));
            let err = (&rows - &a).mapv(f64::abs).sum() + (&cols - &b).mapv(f64::abs).sum();
            assert!(
                (err - out.marginal_error).abs() < 1e-12,
                "{err} vs {}",
                out.marginal_error
            );
            let gap = (&p0 - &p1).iter().fold(0.0f64, |s, v| s.max(v.abs()));
            assert!(gap < 1e-9, "eps {eps} budget {budget}: {gap}");
        }
    }
}
