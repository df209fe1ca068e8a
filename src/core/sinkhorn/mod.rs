//! The Sinkhorn family in the log domain, one implementation for every variant.
//!
//! Objective: `⟨C,P⟩ + ε KL(P | a⊗b) + ρ_a KL(P1 | a) + ρ_b KL(Pᵀ1 | b)`, ρ = ∞ meaning the
//! marginal is exact. With `softmin_ε(h)_i = −ε log Σ_j b_j exp((h_j − C_ij)/ε)` the updates are
//! `f ← λ_a softmin_ε(g)`, `g ← λ_b softmin_ε(f)ᵀ` with damping `λ = 1/(1 + ε/ρ)` (λ = 1 for
//! ρ = ∞), and the plan is `P_ij = a_i b_j exp((f_i + g_j − C_ij)/ε)` (Mignon et al., Thm. 1 with the
//! corrected damping ρ/(ρ+ε)).
//!
//! The marginal error costs nothing extra: after a `g` update the column condition holds exactly,
//! and the next `f` softmin `f̃` gives the row sums of the current plan,
//! `Σ_j P_ij = a_i exp((f_i − f̃_i)/ε)`, whose target is `a_i exp(−f_i/ρ_a)`.

pub(crate) mod relaxation;

use ndarray::{Array1, Array2, ArrayView1};

mod blocks;
mod multiscale;
mod newton;
mod one_to_many;
mod sparse;
mod stabilized;

use crate::core::cost::{CostKernel, NextColumns};
use crate::core::error::{check_positive, check_weights, OtError, Result};
use crate::core::interrupt;
use crate::core::simd;
pub(crate) use multiscale::clusters;
pub use multiscale::sinkhorn_points;
pub use one_to_many::{sinkhorn_one_to_many, sinkhorn_pairwise, BatchOutput, BatchParams};
use relaxation::{safe_factor, HalfStep, Relaxation};
pub use sparse::{SparseBuilder, SparseStore};
pub use stabilized::{KernelBuilder, KernelStore, Stabilized, Stored, StoredKernel};

/// How the iterations evaluate the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelChoice {
    /// The stored kernel when the cost can be materialised within [`STORED_BUDGET`] bytes and
    /// the iterations are many: f32 when `tol` allows it (see [`F32_MIN_TOL`]), else f64; the
    /// log domain when neither fits.
    Auto,
    /// Log-domain softmins, `2·n·m` exponentials per iteration: exact, memory O(n + m) beyond the cost.
    Log,
    /// A stabilized stored kernel in f64 (Schmitzer 2019, Alg. 2).
    Stored64,
    /// The same in f32: half the memory traffic, sums in f64, marginal error still measured on
    /// the exact plan.
    Stored32,
    /// The truncated stabilized kernel with a coarse-to-fine start: point clouds only
    /// ([`sinkhorn_points`]).
    Sparse,
}

/// Largest stored kernel `Auto` builds, in bytes.
pub const STORED_BUDGET: usize = 1 << 29;
/// Smallest `tol` `Auto` serves from an f32 kernel. Its rounding (≈ 6e-8 relative per entry)
/// is random across a row's entries, so the row sums err far less: the bench problems reach
/// 1e-9 in f32; a stage held above `tol` finishes in f64.
pub const F32_MIN_TOL: f64 = 1e-8;

/// How the two potentials are updated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Update {
    /// Gauss–Seidel: one side, then the other with the fresh potential.
    Alternating,
    /// Both sides from the same state, averaged with the previous potentials (the usual choice
    /// for unbalanced problems); finishes with one alternating step so the exact side holds.
    Symmetric,
}

#[derive(Clone, Debug)]
pub struct SinkhornParams {
    /// Entropic regularisation ε > 0, in cost units.
    pub eps: f64,
    /// ρ_a of the KL penalty on the first marginal; `None` = exact.
    pub reach_a: Option<f64>,
    /// ρ_b of the KL penalty on the second marginal; `None` = exact.
    pub reach_b: Option<f64>,
    pub max_iter: usize,
    /// Stop when the L1 marginal error, relative to the marginal's mass, is at most `tol`
    /// (see [`SinkhornOutput::marginal_error`]).
    pub tol: f64,
    pub update: Update,
    /// ε-scaling: anneal ε from the cost's diameter by this factor per stage (in (0, 1)).
    pub eps_scaling: Option<f64>,
    /// Iterations per intermediate ε-scaling stage; `None` iterates each stage to a loose
    /// tolerance. `Some(1)` is the annealing of Feydy's thesis (§3.3.3, one update per ε, as
    /// used by Mignon et al. §II), which only prepares the start of the target-ε iterations.
    pub stage_iter: Option<usize>,
    /// Adaptive over-relaxation of the alternating updates (same fixed point, far fewer
    /// iterations at small ε; the last update is always a plain one).
    pub overrelaxation: bool,
    /// The kernel representation of the iterations.
    pub kernel: KernelChoice,
    /// Return the plan in [`SinkhornOutput::plan`], computed in the pass that gives the final
    /// statistics (one pass over the kernel instead of two for a caller that wants it).
    pub keep_plan: bool,
}

impl SinkhornParams {
    pub fn new(eps: f64) -> Self {
        SinkhornParams {
            eps,
            reach_a: None,
            reach_b: None,
            max_iter: 1000,
            tol: 1e-9,
            update: Update::Alternating,
            eps_scaling: None,
            stage_iter: None,
            overrelaxation: true,
            kernel: KernelChoice::Auto,
            keep_plan: false,
        }
    }

    fn validate(&self) -> Result<()> {
        check_positive("reg", self.eps)?;
        if let Some(r) = self.reach_a {
            check_positive("reach_a", r)?;
        }
        if let Some(r) = self.reach_b {
            check_positive("reach_b", r)?;
        }
        if self.max_iter < 1 {
            return Err(OtError::invalid("max_iter", "must be at least 1"));
        }
        if !(self.tol.is_finite() && self.tol >= 0.0) {
            return Err(OtError::invalid(
                "tol",
                format!("must be finite and non-negative, got {}", self.tol),
            ));
        }
        if self.stage_iter == Some(0) {
            return Err(OtError::invalid("stage_iter", "must be at least 1"));
        }
        if let Some(q) = self.eps_scaling {
            if !(q > 0.0 && q < 1.0) {
                return Err(OtError::invalid(
                    "eps_scaling",
                    format!("must lie in (0, 1), got {q}"),
                ));
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
pub struct SinkhornOutput {
    pub f: Array1<f64>,
    pub g: Array1<f64>,
    /// `⟨C, P⟩`.
    pub transport_cost: f64,
    /// The regularised primal objective above.
    pub objective: f64,
    /// Full (f, g) updates, summed over all ε-scaling stages.
    pub n_iter: usize,
    /// `‖P1 − t_a‖₁/max(|a|, |t_a|) + ‖Pᵀ1 − t_b‖₁/max(|b|, |t_b|)` of the returned
    /// potentials, with the targets `t_a = a e^{−f/ρ_a}`, `t_b = b e^{−g/ρ_b}` (the weights
    /// themselves for an exact side). The larger mass: a relaxed target can be many times the
    /// weights, and the rounding of the potentials then sets that many times higher a floor.
    pub marginal_error: f64,
    pub converged: bool,
    /// The stages of a multiscale solve (coarse levels first), empty for a single-level one.
    pub stages: Vec<StageReport>,
    /// The plan whose statistics these are, when [`SinkhornParams::keep_plan`] asked for it.
    pub plan: Option<Array2<f64>>,
}

/// One ε stage of a multiscale solve.
#[derive(Clone, Debug, PartialEq)]
pub struct StageReport {
    /// Points (rows) of the level this stage ran on.
    pub points: usize,
    pub eps: f64,
    pub n_iter: usize,
    /// Mean stored kernel entries per row at the end of the stage (m for a dense level).
    pub kept_per_row: f64,
}

/// One marginal: weights, their logs, its potential and its relaxation.
struct Side {
    weights: Vec<f64>,
    log_weights: Vec<f64>,
    mass: f64,
    reach: Option<f64>,
    potential: Vec<f64>,
    axis: Axis,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Axis {
    Rows,
    Cols,
}

impl Side {
    fn damping(&self, eps: f64) -> f64 {
        self.reach.map_or(1.0, |rho| 1.0 / (1.0 + eps / rho))
    }

    /// `potential + ε log w`: the term this side contributes to the other side's softmin.
    fn term(&self, eps: f64, out: &mut [f64]) {
        for ((o, p), lw) in out.iter_mut().zip(&self.potential).zip(&self.log_weights) {
            *o = p + eps * lw;
        }
    }

    /// `φ ← φ + ω (λ φ̃ − φ)` with ω shrunk (never below 1) until the dual objective does not
    /// decrease; returns the factor used.
    fn relax(&mut self, softmin: &[f64], eps: f64, omega: f64) -> f64 {
        let lam = self.damping(eps);
        let omega = safe_factor(
            &HalfStep {
                weights: &self.weights,
                potential: &self.potential,
                softmin,
                damping: lam,
                reach: self.reach,
                eps,
            },
            omega,
        );
        self.potential
            .iter_mut()
            .zip(softmin)
            .for_each(|(p, &s)| *p = relaxed(*p, s, lam, omega));
        omega
    }

    /// `φ ← (φ + λ φ̃)/2`: the averaged step of the symmetric updates.
    fn average(&mut self, softmin: &[f64], eps: f64) {
        let half_lam = 0.5 * self.damping(eps);
        self.potential
            .iter_mut()
            .zip(softmin)
            .for_each(|(p, s)| *p = 0.5 * *p + half_lam * s);
    }

    /// [`marginal_distance`] of this side's plan marginal `w e^{(φ − φ̃)/ε}` to its target
    /// `w e^{−φ/ρ}`, given `φ̃ = softmin` of the other side.
    fn error(&self, softmin: &[f64], eps: f64) -> f64 {
        if self.reach.is_none() {
            let distance = exact_distance(&self.weights, &self.potential, softmin, 1.0 / eps);
            return distance / self.mass;
        }
        let entries = self
            .weights
            .iter()
            .zip(&self.potential)
            .zip(softmin)
            .filter(|((w, _), _)| **w > 0.0)
            .map(|((w, p), s)| (*w, (p - s) / eps, self.log_target(*p)));
        marginal_distance(entries, self.mass, self.reach.is_some())
    }

    /// [`marginal_distance`] of a plan marginal (computed from the plan itself) to this side's
    /// target.
    fn plan_error(&self, marginal: &[f64]) -> f64 {
        let entries = marginal
            .iter()
            .zip(&self.weights)
            .zip(&self.potential)
            .filter(|((_, w), _)| **w > 0.0)
            .map(|((r, w), p)| (*w, (r / w).ln(), self.log_target(*p)));
        marginal_distance(entries, self.mass, self.reach.is_some())
    }

    /// `log(target/w)` of one entry: `−φ/ρ`, or 0 for an exact side.
    fn log_target(&self, potential: f64) -> f64 {
        self.reach.map_or(0.0, |rho| -potential / rho)
    }
}

/// `φ + ω (λ φ̃ − φ)` of one entry (`λ φ̃` exactly for ω = 1).
#[inline]
fn relaxed(potential: f64, softmin: f64, damping: f64, omega: f64) -> f64 {
    if omega == 1.0 {
        damping * softmin
    } else {
        (1.0 - omega) * potential + (omega * damping) * softmin
    }
}

/// `Σ_i w_i |e^{(φ_i − φ̃_i)/ε} − 1|` over the positive weights: the unnormalised
/// [`marginal_distance`] of an exact side from its potential and softmin, vectorised.
#[inline(always)]
fn exact_distance_generic<const FMA: bool>(
    weights: &[f64],
    potential: &[f64],
    softmin: &[f64],
    inv_eps: f64,
) -> f64 {
    let entry = |w: f64, p: f64, s: f64| {
        let d = w * simd::expm1::<FMA>((p - s) * inv_eps).abs();
        if w > 0.0 {
            d
        } else {
            0.0
        }
    };
    simd::sum_lanes(weights, potential, softmin, entry)
}

simd::multiversion! { pub fn exact_distance(weights: &[f64], potential: &[f64], softmin: &[f64], inv_eps: f64) -> f64 => exact_distance_generic }

/// `‖m − t‖₁` relative to the larger of the weights' mass `mass` and the target's mass `‖t‖₁`,
/// from the entries `(w_i, u_i, v_i)` of `m_i = w_i e^{u_i}`, `t_i = w_i e^{v_i}` (positive
/// weights only). A relaxed target can be orders of magnitude above or below its weights, and
/// the rounding of the potentials sets a floor relative to the larger of the two; the target's
/// sums are scaled by its largest exponent, so they stay within f64's range. For an exact side
/// (`relaxed` false) the target is the weights.
fn marginal_distance(
    entries: impl Iterator<Item = (f64, f64, f64)> + Clone,
    mass: f64,
    relaxed: bool,
) -> f64 {
    let to_weights = entries
        .clone()
        .map(|(w, u, v)| w * abs_diff_exp(u, v))
        .sum::<f64>()
        / mass;
    if !relaxed {
        return to_weights;
    }
    let top = entries
        .clone()
        .fold(f64::NEG_INFINITY, |t, (_, _, v)| t.max(v));
    let (mut distance, mut target) = (0.0, 0.0);
    for (w, u, v) in entries {
        distance += w * abs_diff_exp(u - top, v - top);
        target += w * (v - top).exp();
    }
    let to_target = if distance == 0.0 {
        0.0
    } else {
        distance / target
    };
    // `min` keeps a finite measure when the other one left f64's range; NaN only from both.
    to_weights.min(to_target)
}

/// `|e^u − e^v|` without `∞ − ∞`: far from the solution both can leave f64's range (a relaxed
/// marginal's target `e^{−φ/ρ}` on a cost shifted by −300 at ρ = 0.1), and the error is then
/// infinite, not NaN.
fn abs_diff_exp(u: f64, v: f64) -> f64 {
    let (hi, lo) = if u >= v { (u, v) } else { (v, u) };
    if hi == lo {
        return 0.0;
    }
    -hi.exp() * (lo - hi).exp_m1()
}

/// Computes `softmin` of `to`'s axis against the `from` side's term.
fn softmin<K: CostKernel + ?Sized>(
    kernel: &K,
    to: &Side,
    from: &Side,
    eps: f64,
    term: &mut Vec<f64>,
    out: &mut [f64],
) {
    term.resize(from.potential.len(), 0.0);
    from.term(eps, term);
    match to.axis {
        Axis::Rows => kernel.softmin_rows(term, &to.potential, eps, out),
        Axis::Cols => kernel.softmin_cols(term, &to.potential, eps, out),
    }
}

/// Solves the (semi-/un-)balanced entropic OT problem between `a` (rows) and `b` (columns).
/// `init` warm-starts from given potentials (ε-scaling is then skipped: the start is already close).
/// The iterations run on the representation `params.kernel` picks; the returned statistics and
/// marginal error are always those of the exact plan.
pub fn sinkhorn<K: CostKernel + ?Sized>(
    kernel: &K,
    a: ArrayView1<'_, f64>,
    b: ArrayView1<'_, f64>,
    params: &SinkhornParams,
    init: Option<(ArrayView1<'_, f64>, ArrayView1<'_, f64>)>,
) -> Result<SinkhornOutput> {
    let (a_vec, b_vec) = (a.to_vec(), b.to_vec());
    match choose_kernel(kernel.shape(), params) {
        KernelChoice::Stored64 => {
            if let Some(k) = StoredKernel::<K, f64>::new(kernel, &a_vec, &b_vec) {
                return solve(&k, a, b, params, init);
            }
        }
        KernelChoice::Stored32 => {
            if let Some(k) = StoredKernel::<K, f32>::new(kernel, &a_vec, &b_vec) {
                let out = solve(&k, a, b, params, init)?;
                if out.converged || out.n_iter >= params.max_iter {
                    return Ok(out);
                }
                // The f32 rounding can leave the exact plan just above `tol` where the stored
                // kernel's own estimate is below it: the last updates run in f64.
                let mut exact = params.clone();
                exact.kernel = KernelChoice::Stored64;
                exact.max_iter = params.max_iter - out.n_iter;
                let mut finished =
                    sinkhorn(kernel, a, b, &exact, Some((out.f.view(), out.g.view())))?;
                finished.n_iter += out.n_iter;
                return Ok(finished);
            }
        }
        KernelChoice::Sparse => {
            return Err(OtError::invalid(
                "kernel",
                "'sparse' needs point clouds (sinkhorn_points), not a cost matrix",
            ))
        }
        KernelChoice::Log | KernelChoice::Auto => {}
    }
    solve(kernel, a, b, params, init)
}

/// The representation `Auto` resolves to (an explicit choice is kept).
fn choose_kernel((n, m): (usize, usize), params: &SinkhornParams) -> KernelChoice {
    if params.kernel != KernelChoice::Auto {
        return params.kernel;
    }
    // Building the kernel costs about one log-domain iteration.
    if params.max_iter < 3 {
        return KernelChoice::Log;
    }
    let entries = n.saturating_mul(m);
    // f32 first: it halves the bytes each update reads (the widening products run at the same
    // bandwidth-bound speed per byte as f64 ones), and a stage its rounding keeps above `tol`
    // is finished in f64 (see `sinkhorn`).
    if params.tol >= F32_MIN_TOL && entries.saturating_mul(4) <= STORED_BUDGET {
        KernelChoice::Stored32
    } else if entries.saturating_mul(8) <= STORED_BUDGET {
        KernelChoice::Stored64
    } else {
        KernelChoice::Log
    }
}

fn solve<K: CostKernel + ?Sized>(
    kernel: &K,
    a: ArrayView1<'_, f64>,
    b: ArrayView1<'_, f64>,
    params: &SinkhornParams,
    init: Option<(ArrayView1<'_, f64>, ArrayView1<'_, f64>)>,
) -> Result<SinkhornOutput> {
    params.validate()?;
    let (n, m) = kernel.shape();
    if a.len() != n {
        return Err(OtError::shape(
            "a",
            format!("has {} weights but the cost has {n} rows", a.len()),
        ));
    }
    if b.len() != m {
        return Err(OtError::shape(
            "b",
            format!("has {} weights but the cost has {m} columns", b.len()),
        ));
    }
    let mass_a = check_weights("a", a.iter())?;
    let mass_b = check_weights("b", b.iter())?;
    if params.reach_a.is_none()
        && params.reach_b.is_none()
        && (mass_a - mass_b).abs() > 1e-8 * mass_a.max(mass_b)
    {
        return Err(OtError::invalid(
            "b",
            format!("balanced OT needs equal total masses, got {mass_a} for a and {mass_b} for b (set a reach to relax a marginal)"),
        ));
    }
    let (f0, g0) = match init {
        Some((f, g)) => (initial("f_init", f, n)?, initial("g_init", g, m)?),
        None => (vec![0.0; n], vec![0.0; m]),
    };
    let side = |w: ArrayView1<'_, f64>, mass, reach, potential, axis| Side {
        weights: w.to_vec(),
        log_weights: w.iter().map(|v| v.ln()).collect(),
        mass,
        reach,
        potential,
        axis,
    };
    let rows = side(a, mass_a, params.reach_a, f0, Axis::Rows);
    let cols = side(b, mass_b, params.reach_b, g0, Axis::Cols);
    // The side updated last satisfies its condition exactly on return: the exact marginal when
    // only one is exact (rows when both are, as POT's sinkhorn_log).
    let (mut first, mut last) = if params.reach_a.is_some() && params.reach_b.is_none() {
        (rows, cols)
    } else {
        (cols, rows)
    };

    let n_iter = anneal(kernel, &mut first, &mut last, params, init.is_some())?;
    solve_target(kernel, first, last, params, n_iter)
}

/// A warm-start potential `name`: `len` finite entries.
fn initial(name: &'static str, potential: ArrayView1<'_, f64>, len: usize) -> Result<Vec<f64>> {
    if potential.len() != len {
        return Err(OtError::shape(
            name,
            format!("must have {len} entries, got {}", potential.len()),
        ));
    }
    crate::core::error::check_finite(name, potential.iter())?;
    Ok(potential.to_vec())
}

/// The ε-scaling stages before the target ε; returns the updates they used.
fn anneal<K: CostKernel + ?Sized>(
    kernel: &K,
    first: &mut Side,
    last: &mut Side,
    params: &SinkhornParams,
    warm: bool,
) -> Result<usize> {
    let Some(q) = params.eps_scaling.filter(|_| !warm) else {
        return Ok(0);
    };
    let mut n_iter = 0;
    let mut stage_eps = kernel.diameter();
    while stage_eps > params.eps {
        // Intermediate stages only prepare a warm start for the next one, so a loose tolerance
        // (or a fixed number of updates) suffices; the iterations at the target ε have their own
        // budget `max_iter` when `stage_iter` is set, otherwise one of it is always kept for them.
        let stage = match params.stage_iter {
            Some(k) => Stage::new(params, stage_eps, 0.0, k),
            None => Stage::new(
                params,
                stage_eps,
                params.tol.max(1e-3),
                params.max_iter - 1 - n_iter,
            ),
        };
        if stage.max_iter == 0 {
            break;
        }
        n_iter += iterate(kernel, first, last, &stage)?.0;
        stage_eps *= q;
    }
    Ok(n_iter)
}

/// Iterations at the target ε. `converged` is judged on the returned plan itself: when the
/// iteration's own error estimate and the plan's differ by rounding across `tol`, a few more
/// updates settle it (or `converged` is false).
fn solve_target<K: CostKernel + ?Sized>(
    kernel: &K,
    mut first: Side,
    mut last: Side,
    params: &SinkhornParams,
    mut n_iter: usize,
) -> Result<SinkhornOutput> {
    let mut budget = match params.stage_iter {
        Some(_) => params.max_iter,
        None => params.max_iter - n_iter,
    };
    let mut loop_tol = params.tol;
    for attempt in 0.. {
        // A retry gets a short budget: near the rounding floor of the plan's error no amount of
        // updates helps, and `converged` then says false.
        let attempt_budget = if attempt == 0 {
            budget
        } else {
            budget.min(RETRY_BUDGET)
        };
        let mut stage = Stage::new(params, params.eps, loop_tol, attempt_budget);
        stage.newton = attempt == 0 && newton_applies(params);
        let (iters, claimed) = iterate(kernel, &mut first, &mut last, &stage)?;
        n_iter += iters;
        budget -= iters;
        let (rows, cols) = if first.axis == Axis::Rows {
            (&first, &last)
        } else {
            (&last, &first)
        };
        let out = finish(kernel, rows, cols, params, n_iter)?;
        if out.converged || !claimed || budget == 0 || attempt == 4 {
            return Ok(out);
        }
        // The iteration's estimate (from its softmins, or a stored kernel's) met its tolerance
        // while the plan's error did not: ask the iteration for proportionally more.
        loop_tol *= 0.5 * params.tol / out.marginal_error;
    }
    unreachable!("the loop returns by its fifth attempt")
}

/// Whether a stalled target stage may switch to Newton steps ([`newton`]): balanced problems
/// with alternating updates.
fn newton_applies(params: &SinkhornParams) -> bool {
    params.reach_a.is_none() && params.reach_b.is_none() && params.update == Update::Alternating
}

/// Sinkhorn updates at the target ε before Newton steps are tried: far from the solution and
/// at moderate ε Sinkhorn is the faster method, and most problems converge within them.
const NEWTON_AFTER: usize = 500;
/// Newton steps at most (each costs two to a few exact passes over the plan).
const NEWTON_MAX_STEPS: usize = 50;

/// Newton steps from the current state of a stalled stage (0 when the kernel cannot serve them).
fn newton_pause<K: CostKernel + ?Sized>(
    kernel: &K,
    first: &mut Side,
    last: &mut Side,
    stage: &Stage,
) -> usize {
    let (rows, cols) = if first.axis == Axis::Rows {
        (first, last)
    } else {
        (last, first)
    };
    let max_steps = (stage.max_iter - NEWTON_AFTER).min(NEWTON_MAX_STEPS);
    newton::newton_steps(kernel, rows, cols, stage.eps, stage.tol, max_steps)
}

/// Updates of each retry of [`solve_target`].
const RETRY_BUDGET: usize = 100;

/// One ε's iteration budget and stopping rule.
struct Stage {
    /// Whether the iteration may switch to Newton steps after [`NEWTON_AFTER`] updates.
    newton: bool,
    eps: f64,
    tol: f64,
    max_iter: usize,
    update: Update,
    overrelaxation: bool,
}

impl Stage {
    fn new(params: &SinkhornParams, eps: f64, tol: f64, max_iter: usize) -> Self {
        Stage {
            newton: false,
            eps,
            tol,
            max_iter,
            update: params.update,
            overrelaxation: params.overrelaxation,
        }
    }
}

/// Runs at most `stage.max_iter` full updates at one ε; returns (iterations, whether the
/// iteration's own marginal-error estimate reached `stage.tol`).
fn iterate<K: CostKernel + ?Sized>(
    kernel: &K,
    first: &mut Side,
    last: &mut Side,
    stage: &Stage,
) -> Result<(usize, bool)> {
    match stage.update {
        Update::Alternating => iterate_alternating(kernel, first, last, stage),
        Update::Symmetric => iterate_symmetric(kernel, first, last, stage),
    }
}

/// `Err` for a NaN error: the iteration broke down. An infinite error is only a state far from
/// the solution (a plan marginal beyond f64's range, as for zero potentials on a cost shifted by
/// −700 ε), which the next updates bring back.
fn check_error(err: f64, k: usize, eps: f64) -> Result<()> {
    // A kernel pass that saw the cancellation flag stops early and leaves NaN.
    interrupt::check()?;
    if !err.is_nan() {
        Ok(())
    } else {
        Err(OtError::Numerical(format!(
            "non-finite marginal error at iteration {k} (ε = {eps:e})"
        )))
    }
}

/// Softmin buffers of one iteration.
struct Scratch {
    term: Vec<f64>,
    s_first: Vec<f64>,
    s_last: Vec<f64>,
}

impl Scratch {
    fn new(first: &Side, last: &Side) -> Self {
        Scratch {
            term: Vec::new(),
            s_first: vec![0.0; first.potential.len()],
            s_last: vec![0.0; last.potential.len()],
        }
    }
}

/// Gauss–Seidel updates `φ ← φ + ω (λ φ̃ − φ)` of both sides, ω from [`Relaxation`] (1 when
/// over-relaxation is off). Both sides' marginal errors come from softmins the iteration
/// computes anyway: after a plain update the last side's condition holds exactly.
fn iterate_alternating<K: CostKernel + ?Sized>(
    kernel: &K,
    first: &mut Side,
    last: &mut Side,
    stage: &Stage,
) -> Result<(usize, bool)> {
    let eps = stage.eps;
    let mut buf = Scratch::new(first, last);
    let mut relaxation = Relaxation::new(stage.overrelaxation);
    // Marginal error of the `last` side for the current state.
    let mut err_last = f64::INFINITY;
    // Whether `buf.s_first` already holds the first side's softmin for the current state.
    let mut have_first = false;
    // Newton steps taken; they count against the budget like updates.
    let mut newton = 0;
    for k in 0..stage.max_iter {
        if k + newton >= stage.max_iter {
            break;
        }
        interrupt::check()?;
        if stage.newton && k == NEWTON_AFTER {
            let steps = newton_pause(kernel, first, last, stage);
            if steps > 0 {
                // New potentials: the relaxation's rate estimates and both softmins are stale.
                newton += steps;
                relaxation = Relaxation::new(stage.overrelaxation);
                (err_last, have_first) = (f64::INFINITY, false);
            }
        }
        if err_last != 0.0 && relaxation.wants_projected_error() {
            softmin(kernel, last, first, eps, &mut buf.term, &mut buf.s_last);
            last.relax(&buf.s_last, eps, 1.0);
            err_last = 0.0;
            have_first = false;
        }
        if !have_first {
            softmin(kernel, first, last, eps, &mut buf.term, &mut buf.s_first);
        }
        if k > 0 {
            let err = first.error(&buf.s_first, eps) + err_last;
            check_error(err, k, eps)?;
            if err <= stage.tol
                && (err_last == 0.0 || finish_plain(kernel, first, last, eps, &mut buf, stage.tol)?)
            {
                return Ok((k + newton, true));
            }
            relaxation.observe(err);
        }
        let omega = relaxation.omega();
        first.relax(&buf.s_first, eps, omega);
        let used;
        (used, have_first) = update_last(kernel, last, first, eps, omega, &mut buf);
        err_last = if used == 1.0 {
            0.0
        } else {
            last.error(&buf.s_last, eps)
        };
    }
    if err_last != 0.0 {
        // Out of budget after a relaxed update: a plain one, so the last side's condition (the
        // exact marginal, when there is one) holds on return.
        softmin(kernel, last, first, eps, &mut buf.term, &mut buf.s_last);
        last.relax(&buf.s_last, eps, 1.0);
    }
    Ok((stage.max_iter, false))
}

/// The last side's update `φ ← φ + ω (λ φ̃ − φ)` from its softmin against `first`. When the
/// last side is the rows, the same pass over the kernel also gives the first side's next
/// softmin (`buf.s_first`), valid unless the dual safeguard changed ω. Returns (the factor used,
/// whether `buf.s_first` holds that softmin).
fn update_last<K: CostKernel + ?Sized>(
    kernel: &K,
    last: &mut Side,
    first: &Side,
    eps: f64,
    omega: f64,
    buf: &mut Scratch,
) -> (f64, bool) {
    if last.axis != Axis::Rows {
        softmin(kernel, last, first, eps, &mut buf.term, &mut buf.s_last);
        return (last.relax(&buf.s_last, eps, omega), false);
    }
    buf.term.resize(first.potential.len(), 0.0);
    first.term(eps, &mut buf.term);
    let fused = {
        let (lam, pot, lw) = (last.damping(eps), &last.potential, &last.log_weights);
        let row_term = |i: usize, s: f64| relaxed(pot[i], s, lam, omega) + eps * lw[i];
        let mut next = NextColumns {
            row_term: &row_term,
            shift: &first.potential,
            out: &mut buf.s_first,
        };
        kernel.softmin_rows_fused(&buf.term, pot, eps, &mut buf.s_last, &mut next)
    };
    let used = last.relax(&buf.s_last, eps, omega);
    (used, fused && used == omega)
}

/// After a relaxed update met `tol`: a plain update of the last side removes its remaining
/// error, then the first side is measured again. Returns whether the state still meets `tol`.
fn finish_plain<K: CostKernel + ?Sized>(
    kernel: &K,
    first: &Side,
    last: &mut Side,
    eps: f64,
    buf: &mut Scratch,
    tol: f64,
) -> Result<bool> {
    softmin(kernel, last, first, eps, &mut buf.term, &mut buf.s_last);
    last.relax(&buf.s_last, eps, 1.0);
    softmin(kernel, first, last, eps, &mut buf.term, &mut buf.s_first);
    let err = first.error(&buf.s_first, eps);
    check_error(err, 0, eps)?;
    Ok(err <= tol)
}

/// Both sides from the same state, averaged with the previous potentials; on convergence one
/// alternating step so that `last` (the exact side, if any) holds exactly.
fn iterate_symmetric<K: CostKernel + ?Sized>(
    kernel: &K,
    first: &mut Side,
    last: &mut Side,
    stage: &Stage,
) -> Result<(usize, bool)> {
    let eps = stage.eps;
    let mut buf = Scratch::new(first, last);
    for k in 0..stage.max_iter {
        interrupt::check()?;
        softmin(kernel, first, last, eps, &mut buf.term, &mut buf.s_first);
        softmin(kernel, last, first, eps, &mut buf.term, &mut buf.s_last);
        let err = first.error(&buf.s_first, eps) + last.error(&buf.s_last, eps);
        check_error(err, k, eps)?;
        if err <= stage.tol {
            first.relax(&buf.s_first, eps, 1.0);
            softmin(kernel, last, first, eps, &mut buf.term, &mut buf.s_last);
            last.relax(&buf.s_last, eps, 1.0);
            return Ok((k + 1, true));
        }
        first.average(&buf.s_first, eps);
        last.average(&buf.s_last, eps);
    }
    Ok((stage.max_iter, false))
}

/// Transport cost, objective and marginal error of the final potentials, from one pass over the
/// plan (which is kept when `params.keep_plan` asks for it).
fn finish<K: CostKernel + ?Sized>(
    kernel: &K,
    rows: &Side,
    cols: &Side,
    params: &SinkhornParams,
    n_iter: usize,
) -> Result<SinkhornOutput> {
    let eps = params.eps;
    let mut row_term = vec![0.0; rows.potential.len()];
    let mut col_term = vec![0.0; cols.potential.len()];
    rows.term(eps, &mut row_term);
    cols.term(eps, &mut col_term);
    let (plan, sums) = if params.keep_plan {
        let (plan, sums) = kernel.plan_with_sums(&row_term, &col_term, eps);
        (Some(plan), sums)
    } else {
        (None, kernel.plan_sums(&row_term, &col_term, eps))
    };
    interrupt::check()?;
    // Σ P log(P/(a⊗b)) = (Σ_i r_i f_i + Σ_j c_j g_j − ⟨C,P⟩)/ε.
    let dot = |s: &[f64], p: &[f64]| s.iter().zip(p).map(|(x, y)| x * y).sum::<f64>();
    let plan_mass: f64 = sums.row_sums.iter().sum();
    let entropic = dot(&sums.row_sums, &rows.potential) + dot(&sums.col_sums, &cols.potential)
        - sums.transport_cost
        - eps * plan_mass
        + eps * rows.mass * cols.mass;
    let kl = |marginal: &[f64], w: &[f64]| {
        marginal
            .iter()
            .zip(w)
            .map(|(&r, &w)| if r > 0.0 { r * (r / w).ln() - r + w } else { w })
            .sum::<f64>()
    };
    let relaxation =
        |s: &Side, marginal: &[f64]| s.reach.map_or(0.0, |rho| rho * kl(marginal, &s.weights));
    let objective = sums.transport_cost
        + entropic
        + relaxation(rows, &sums.row_sums)
        + relaxation(cols, &sums.col_sums);
    let error = rows.plan_error(&sums.row_sums) + cols.plan_error(&sums.col_sums);
    if !(error.is_finite() && sums.transport_cost.is_finite() && objective.is_finite()) {
        return Err(OtError::Numerical(format!(
            "non-finite plan statistics (ε = {eps:e})"
        )));
    }
    Ok(SinkhornOutput {
        f: Array1::from(rows.potential.clone()),
        g: Array1::from(cols.potential.clone()),
        transport_cost: sums.transport_cost,
        objective,
        n_iter,
        marginal_error: error,
        converged: error <= params.tol,
        stages: Vec::new(),
        plan,
    })
}

#[cfg(test)]
mod tests;
