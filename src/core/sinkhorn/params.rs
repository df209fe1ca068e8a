//! What a Sinkhorn solve is asked and what it answers: [`SinkhornParams`] (ε, reaches,
//! tolerances, ε-scaling, the kernel representation), the update order, and
//! [`SinkhornOutput`] with the per-stage reports of a multiscale solve.

use super::*;

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

    pub(super) fn validate(&self) -> Result<()> {
        check_positive("reg", self.eps)?;
        if let Some(r) = self.reach_a {
            check_positive("reach_a", r)?;
        }
        if let Some(r) = self.reach_b {
            check_positive("reach_b", r)?;
        }
        check_at_least_one("max_iter", self.max_iter)?;
        check_non_negative("tol", self.tol)?;
        if let Some(k) = self.stage_iter {
            check_at_least_one("stage_iter", k)?;
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
