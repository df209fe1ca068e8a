//! Entropic sparsification (Rawson & Hultgren, eq. 7):
//! `μ* = argmin_{μ ∈ simplex} OT_ε(μ, ν) + λ H(μ)`, `H(μ) = −Σ μ_i ln μ_i` (eq. 3).
//!
//! * `OT_ε(μ, ν) = min_P ⟨C, P⟩ + ε KL(P | μ⊗ν)` is the value the Sinkhorn solver returns
//!   (`SinkhornOutput::objective`); its gradient with respect to μ is μ's own dual potential `f`
//!   (up to a constant that the projection removes). Algorithm 1 writes `F = −ε ln f` with the
//!   opposite sign; we use `+f`.
//! * Two solvers of the same objective:
//!   - [`Solver::ProjectedGradient`] ([`descent`]): the paper's Algorithm 2, projected gradient
//!     descent with a backtracking line search, one Sinkhorn solve per trial step (§IV);
//!   - [`Solver::Majorize`] ([`majorize`]): a majorize–minimize iteration (Blahut–Arimoto type)
//!     that needs two kernel applications per step and no inner Sinkhorn loop.
//! * [`sparsify_rawson2022`] reproduces the paper's published toy figures (see its doc).
//! * [`sparsify_batch`] runs many measures on one kernel in parallel (rayon over samples).

mod descent;
mod majorize;
mod rawson2022;

use ndarray::{Array1, ArrayView1, ArrayView2};
use rayon::prelude::*;

use crate::core::cost::CostKernel;
use crate::core::error::{
    check_at_least_one, check_non_negative, check_positive, check_weights, OtError, Result,
};
use crate::core::interrupt;

pub use rawson2022::sparsify_rawson2022;

/// How eq. (7) is minimised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Solver {
    /// Algorithm 2: projected gradient steps, each trial step a warm-started Sinkhorn solve.
    ProjectedGradient,
    /// Majorize–minimize on the plan (see [`majorize`]): monotone, two softmins per step.
    Majorize,
}

#[derive(Clone, Debug)]
pub struct SparsifyParams {
    /// λ ≥ 0 of eq. (7).
    pub sparsity: f64,
    /// Entropic regularisation ε > 0 of the OT term, in cost units.
    pub eps: f64,
    pub solver: Solver,
    /// Initial (largest) step of the line search (projected gradient only).
    pub step_size: f64,
    /// Maximum number of accepted descent steps.
    pub max_iter: usize,
    /// Projected gradient: stop when the L1 norm of the projected gradient is below this.
    /// Majorize: stop when one step changes μ by less than this in L1.
    pub tol: f64,
    /// The line search gives up (a stationary point for it) below this step.
    pub min_step: f64,
    pub sinkhorn_max_iter: usize,
    pub sinkhorn_tol: f64,
    /// Keep every iterate (for plots of small problems).
    pub record_history: bool,
}

impl SparsifyParams {
    pub fn new(sparsity: f64, eps: f64) -> Self {
        SparsifyParams {
            sparsity,
            eps,
            solver: Solver::ProjectedGradient,
            step_size: 0.01,
            max_iter: 50,
            tol: 1e-9,
            min_step: 1e-12,
            sinkhorn_max_iter: 10_000,
            sinkhorn_tol: 1e-9,
            record_history: false,
        }
    }

    fn validate(&self) -> Result<()> {
        check_non_negative("sparsity", self.sparsity)?;
        check_positive("reg", self.eps)?;
        check_positive("step_size", self.step_size)?;
        check_positive("min_step", self.min_step)?;
        check_non_negative("tol", self.tol)?;
        check_at_least_one("sinkhorn_max_iter", self.sinkhorn_max_iter)?;
        if self.solver == Solver::Majorize && self.max_iter < 1 {
            return Err(OtError::invalid(
                "max_iter",
                "must be at least 1 for the majorize solver (its objective comes from a step)",
            ));
        }
        check_positive("sinkhorn_tol", self.sinkhorn_tol)
    }
}

/// Why the descent stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The stationarity measure fell below `tol` (for the projected gradient this includes a
    /// single remaining atom, where the projected gradient is exactly 0).
    Gradient,
    /// No step ≥ `min_step` decreased the objective.
    LineSearch,
    /// `max_iter` steps were taken.
    MaxIter,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Gradient => "gradient",
            StopReason::LineSearch => "line_search",
            StopReason::MaxIter => "max_iter",
        }
    }
}

#[derive(Clone, Debug)]
pub struct SparsifyOutput {
    pub mu: Array1<f64>,
    /// Accepted descent steps.
    pub n_iter: usize,
    /// `J(μ)` of the returned μ (rawson2022: the paper's line-search objective; majorize: the
    /// majorizer's value, an upper bound of `J(μ)` that is exact at a fixed point).
    pub objective: f64,
    /// The OT term of `objective`.
    pub ot_value: f64,
    /// `H(μ)` of the returned μ.
    pub entropy: f64,
    /// The stationarity measure compared with `tol` at the returned μ (the last one computed).
    pub grad_norm: f64,
    pub stop: StopReason,
    /// `J` after each accepted step, starting with `J(μ₀)`.
    pub objectives: Vec<f64>,
    /// The iterates μ₀, μ₁, … when `record_history`.
    pub history: Vec<Array1<f64>>,
    /// Sinkhorn solves that hit `sinkhorn_max_iter` before `sinkhorn_tol`.
    pub sinkhorn_unconverged: usize,
    pub sinkhorn_iters: usize,
}

/// `H(μ) = −Σ μ_i ln μ_i` with `0 ln 0 = 0` (eq. 3).
pub fn entropy(mu: &[f64]) -> f64 {
    -mu.iter()
        .filter(|&&m| m > 0.0)
        .map(|&m| m * m.ln())
        .sum::<f64>()
}

fn normalised(name: &'static str, w: ArrayView1<'_, f64>) -> Result<Vec<f64>> {
    let mass = check_weights(name, w.iter())?;
    Ok(w.iter().map(|v| v / mass).collect())
}

/// The starting point: `mu0` normalised, or ν itself (§V) when the cost is square.
fn start(nu: &[f64], mu0: Option<ArrayView1<'_, f64>>, rows: usize) -> Result<Vec<f64>> {
    match mu0 {
        Some(m0) if m0.len() != rows => Err(OtError::shape(
            "mu0",
            format!("has {} entries but the cost has {rows} rows", m0.len()),
        )),
        Some(m0) => normalised("mu0", m0),
        None if rows != nu.len() => Err(OtError::shape(
            "mu0",
            "must be given when the cost is not square",
        )),
        None => Ok(nu.to_vec()),
    }
}

/// Minimises `J(μ) = OT_ε(μ, ν) + λ H(μ)` (eq. 7) for any cost kernel (rows = μ's positions,
/// columns = ν's) with the solver of `params`. `mu0` defaults to ν (§V).
pub fn sparsify<K: CostKernel + ?Sized>(
    kernel: &K,
    nu: ArrayView1<'_, f64>,
    mu0: Option<ArrayView1<'_, f64>>,
    params: &SparsifyParams,
) -> Result<SparsifyOutput> {
    params.validate()?;
    let (n, m) = kernel.shape();
    if nu.len() != m {
        return Err(OtError::shape(
            "nu",
            format!("has {} entries but the cost has {m} columns", nu.len()),
        ));
    }
    let nu = normalised("nu", nu)?;
    let mu = start(&nu, mu0, n)?;
    match params.solver {
        Solver::ProjectedGradient => descent::projected_gradient(kernel, &nu, mu, params),
        Solver::Majorize => majorize::majorize(kernel, &nu, mu, params),
    }
}

/// `solve` (e.g. [`sparsify`] with a shared kernel, started from ν) of every row of `nus`, in
/// parallel over the rows. Each row is checked first, and errors name the first offending row.
pub fn sparsify_batch(
    nus: ArrayView2<'_, f64>,
    solve: impl Fn(ArrayView1<'_, f64>) -> Result<SparsifyOutput> + Sync,
) -> Result<Vec<SparsifyOutput>> {
    for (i, row) in nus.outer_iter().enumerate() {
        check_weights("X", row.iter()).map_err(|e| match e {
            OtError::InvalidArgument { name, message } => {
                OtError::invalid(name, format!("sample {i}: {message}"))
            }
            other => other,
        })?;
    }
    // rayon's workers do not inherit this thread's cancellation flag: hand it to each task.
    let flag = interrupt::current();
    (0..nus.nrows())
        .into_par_iter()
        .map(|i| match &flag {
            Some(f) => interrupt::with_flag(f, || solve(nus.row(i))),
            None => solve(nus.row(i)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cost::DenseCost;
    use ndarray::Array2;

    fn toy() -> (Array2<f64>, Array1<f64>) {
        let nu = Array1::from(vec![3.0, 2.0, 0.1, 0.1, 0.1, 1.0, 2.0, 3.0, 2.0, 1.0]) / 14.3;
        let c = Array2::from_shape_fn((10, 10), |(i, j)| (i as f64 - j as f64).abs());
        (c, nu)
    }

    #[test]
    fn toy_lambda_100_is_a_single_atom_at_8() {
        let (c, nu) = toy();
        let k = DenseCost::new(c.view()).unwrap();
        let out = sparsify(&k, nu.view(), None, &SparsifyParams::new(100.0, 0.1)).unwrap();
        assert!(out.mu[7] > 0.999, "{:?}", out.mu);
        assert!(out.n_iter <= 10);
        // Objective decreases monotonically.
        assert!(out.objectives.windows(2).all(|w| w[1] < w[0]));
    }

    #[test]
    fn majorize_reaches_the_two_spikes_of_lambda_5_monotonically() {
        let (c, nu) = toy();
        let k = DenseCost::new(c.view()).unwrap();
        let mut p = SparsifyParams::new(5.0, 0.1);
        p.solver = Solver::Majorize;
        p.max_iter = 5000;
        p.tol = 1e-12;
        let out = sparsify(&k, nu.view(), None, &p).unwrap();
        assert_eq!(out.stop, StopReason::Gradient);
        assert!((out.mu[0] - 0.352).abs() < 0.01 && (out.mu[7] - 0.648).abs() < 0.01);
        assert!(out.objectives.windows(2).all(|w| w[1] <= w[0] + 1e-12));
    }

    #[test]
    fn batch_equals_one_by_one() {
        let (c, nu) = toy();
        let k = DenseCost::new(c.view()).unwrap();
        let mut nus = Array2::zeros((2, 10));
        nus.row_mut(0).assign(&nu);
        nus.row_mut(1).assign(&nu.slice(ndarray::s![..;-1]));
        let p = SparsifyParams::new(5.0, 0.1);
        let solve = |nu: ArrayView1<'_, f64>| sparsify(&k, nu, None, &p);
        let batch = sparsify_batch(nus.view(), solve).unwrap();
        for (i, out) in batch.iter().enumerate() {
            let one = sparsify(&k, nus.row(i), None, &p).unwrap();
            assert_eq!(out.mu, one.mu);
        }
        nus[[1, 3]] = f64::NAN;
        let err = sparsify_batch(nus.view(), solve).unwrap_err();
        assert!(err.to_string().contains("sample 1"), "{err}");
    }

    #[test]
    fn bad_parameters_are_errors() {
        let (c, nu) = toy();
        let k = DenseCost::new(c.view()).unwrap();
        assert!(sparsify(&k, nu.view(), None, &SparsifyParams::new(-1.0, 0.1)).is_err());
        assert!(sparsify(&k, nu.view(), None, &SparsifyParams::new(1.0, 0.0)).is_err());
        let zero = Array1::zeros(10);
        assert!(sparsify(&k, zero.view(), None, &SparsifyParams::new(1.0, 0.1)).is_err());
    }
}
