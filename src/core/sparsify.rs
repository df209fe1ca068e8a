//! Entropic sparsification (paper 000, eq. 7; DESIGN §3.5; issue 4):
//! `μ* = argmin_{μ ∈ simplex} OT_ε(μ, ν) + λ H(μ)`, `H(μ) = −Σ μ_i ln μ_i` (eq. 3),
//! by projected gradient descent with a backtracking line search.
//!
//! * `OT_ε(μ, ν) = min_P ⟨C, P⟩ + ε KL(P | μ⊗ν)` is the value the foundation's Sinkhorn returns
//!   (`SinkhornOutput::objective`); its gradient with respect to μ is μ's own dual potential `f`
//!   (up to a constant that the projection removes). Paper Algorithm 1 writes `F = −ε ln f` with
//!   the wrong sign (issue 4); we use `+f`.
//! * Coordinates with `μ_i = 0` are frozen (§IV): their gradient is set to zero so the iterate
//!   stays on its face. Sinkhorn sees zero weights as `ln 0 = −∞` terms, which is exactly the
//!   problem restricted to the support (no flooring).
//! * Step: the largest `α = step_size·2^{−k}` (down to `min_step`, and at most twice the previous
//!   accepted step) with `J(Proj(μ − αw)) < J(μ)`, where `Proj` clips negatives and renormalises
//!   (Algorithm 2's update).
//!
//! [`sparsify_rawson2022`] reproduces the paper's published toy figure (see its doc).

use ndarray::{Array1, ArrayView1, ArrayView2};

use crate::core::cost::CostKernel;
use crate::core::error::{check_positive, check_weights, OtError, Result};
use crate::core::interrupt;
use crate::core::sinkhorn::{sinkhorn, SinkhornParams};

#[derive(Clone, Debug)]
pub struct SparsifyParams {
    /// λ ≥ 0 of eq. (7).
    pub sparsity: f64,
    /// Entropic regularisation ε > 0 of the OT term, in cost units.
    pub eps: f64,
    /// Initial (largest) step of the line search.
    pub step_size: f64,
    /// Maximum number of accepted descent steps.
    pub max_iter: usize,
    /// Stop when the L1 norm of the projected gradient is below this.
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
        if !(self.sparsity.is_finite() && self.sparsity >= 0.0) {
            return Err(OtError::invalid(
                "sparsity",
                format!("must be finite and non-negative, got {}", self.sparsity),
            ));
        }
        check_positive("reg", self.eps)?;
        check_positive("step_size", self.step_size)?;
        check_positive("min_step", self.min_step)?;
        if !(self.tol.is_finite() && self.tol >= 0.0) {
            return Err(OtError::invalid(
                "tol",
                format!("must be finite and non-negative, got {}", self.tol),
            ));
        }
        if self.sinkhorn_max_iter < 1 {
            return Err(OtError::invalid("sinkhorn_max_iter", "must be at least 1"));
        }
        check_positive("sinkhorn_tol", self.sinkhorn_tol)
    }
}

/// Why the descent stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// ‖projected gradient‖₁ < tol (includes a single remaining atom, where it is exactly 0).
    Gradient,
    /// No step ≥ `min_step` decreased the objective.
    LineSearch,
    /// `max_iter` steps were taken.
    MaxIter,
}

#[derive(Clone, Debug)]
pub struct SparsifyOutput {
    pub mu: Array1<f64>,
    /// Accepted descent steps.
    pub n_iter: usize,
    /// `J(μ)` of the returned μ (for the rawson2022 mode: the paper's line-search objective).
    pub objective: f64,
    /// The OT term of `objective`.
    pub ot_value: f64,
    /// `H(μ)` of the returned μ.
    pub entropy: f64,
    /// ‖projected gradient‖₁ at the returned μ (the last one computed).
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

/// Clip negatives and renormalise (Algorithm 2: `v = diag(1_{v>0}) v; v = v/‖v‖₁`).
fn project(mu: &[f64], w: &[f64], alpha: f64) -> Option<Vec<f64>> {
    let mut out: Vec<f64> = mu
        .iter()
        .zip(w)
        .map(|(m, g)| {
            if *m > 0.0 {
                (m - alpha * g).max(0.0)
            } else {
                0.0
            }
        })
        .collect();
    let s: f64 = out.iter().sum();
    if !(s > 0.0 && s.is_finite()) {
        return None;
    }
    out.iter_mut().for_each(|v| *v /= s);
    Some(out)
}

/// Projection of `w` onto the tangent space of μ's face: zero off the support, mean-free on it.
fn centre_on_support(mu: &[f64], w: &mut [f64]) -> f64 {
    let support = mu.iter().filter(|&&m| m > 0.0).count().max(1) as f64;
    let mean = mu
        .iter()
        .zip(w.iter())
        .filter(|(m, _)| **m > 0.0)
        .map(|(_, g)| *g)
        .sum::<f64>()
        / support;
    let mut norm = 0.0;
    for (m, g) in mu.iter().zip(w.iter_mut()) {
        *g = if *m > 0.0 { *g - mean } else { 0.0 };
        norm += g.abs();
    }
    norm
}

fn normalised(name: &'static str, w: ArrayView1<'_, f64>) -> Result<Vec<f64>> {
    let mass = check_weights(name, w.iter())?;
    Ok(w.iter().map(|v| v / mass).collect())
}

/// The OT term of `J` at one μ: its value, its gradient with respect to μ (up to a constant,
/// which the centring removes) and whatever the next evaluation warm-starts from.
struct OtTerm<S> {
    value: f64,
    grad: Vec<f64>,
    state: S,
}

/// The projected gradient descent shared by both objectives: gradient `∂OT + λ(−ln μ − 1)` on
/// the support, centred (frozen zeros, §IV), backtracking from `step_size` by halving until
/// `J(Proj(μ − αw)) < J(μ)` (§IV's α* = sup{α : J(μ − α∇J) < J(μ)}). With `adaptive_start`
/// the search starts from twice the previous accepted step (capped at `step_size`) instead of
/// `step_size`: on images the accepted steps are orders of magnitude below `step_size` (the
/// potentials are in pixel² units), and every rejected trial is a Sinkhorn solve. The Sinkhorn
/// counters of the returned output are left at zero for the caller.
fn descend<S>(
    mut mu: Vec<f64>,
    params: &SparsifyParams,
    adaptive_start: bool,
    mut ot_term: impl FnMut(&[f64], &S) -> Result<OtTerm<S>>,
    first: OtTerm<S>,
) -> Result<SparsifyOutput> {
    let lam = params.sparsity;
    let n = mu.len();
    let mut ot = first;
    let mut j = ot.value + lam * entropy(&mu);
    let mut objectives = vec![j];
    let mut history = if params.record_history {
        vec![Array1::from(mu.clone())]
    } else {
        Vec::new()
    };
    let mut w = vec![0.0; n];
    let mut n_iter = 0;
    let mut grad_norm;
    let mut start = params.step_size;
    let stop = loop {
        interrupt::check()?;
        for ((g, &mi), &oi) in w.iter_mut().zip(&mu).zip(&ot.grad) {
            *g = if mi > 0.0 {
                oi + lam * (-mi.ln() - 1.0)
            } else {
                0.0
            };
        }
        grad_norm = centre_on_support(&mu, &mut w);
        if grad_norm < params.tol {
            break StopReason::Gradient;
        }
        if n_iter >= params.max_iter {
            break StopReason::MaxIter;
        }
        let mut alpha = start;
        let mut accepted = None;
        while alpha >= params.min_step {
            if let Some(cand) = project(&mu, &w, alpha) {
                let ot_c = ot_term(&cand, &ot.state)?;
                let j_c = ot_c.value + lam * entropy(&cand);
                if j_c < j {
                    accepted = Some((cand, ot_c, j_c));
                    break;
                }
            }
            alpha *= 0.5;
        }
        if adaptive_start {
            start = (2.0 * alpha).min(params.step_size);
        }
        match accepted {
            Some((cand, ot_c, j_c)) => {
                mu = cand;
                ot = ot_c;
                j = j_c;
                n_iter += 1;
                objectives.push(j);
                if params.record_history {
                    history.push(Array1::from(mu.clone()));
                }
            }
            None => break StopReason::LineSearch,
        }
    };
    let h = entropy(&mu);
    Ok(SparsifyOutput {
        mu: Array1::from(mu),
        n_iter,
        objective: j,
        ot_value: ot.value,
        entropy: h,
        grad_norm,
        stop,
        objectives,
        history,
        sinkhorn_unconverged: 0,
        sinkhorn_iters: 0,
    })
}

/// Projected gradient descent on `J(μ) = OT_ε(μ, ν) + λ H(μ)` (eq. 7) for any cost kernel
/// (rows = μ's positions, columns = ν's). `mu0` defaults to ν (§V).
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
    let nu = Array1::from(normalised("nu", nu)?);
    let mu = match mu0 {
        Some(m0) => {
            if m0.len() != n {
                return Err(OtError::shape(
                    "mu0",
                    format!("has {} entries but the cost has {n} rows", m0.len()),
                ));
            }
            normalised("mu0", m0)?
        }
        None => {
            if n != m {
                return Err(OtError::shape(
                    "mu0",
                    "must be given when the cost is not square",
                ));
            }
            nu.to_vec()
        }
    };
    let mut sk_params = SinkhornParams::new(params.eps);
    sk_params.max_iter = params.sinkhorn_max_iter;
    sk_params.tol = params.sinkhorn_tol;
    // ε-scaling only for the cold first solve; every later solve is warm-started (DESIGN §3.5).
    sk_params.eps_scaling = Some(0.5);

    let (mut unconverged, mut sk_iters) = (0, 0);
    // OT_ε and its gradient, μ's dual potential f (eq. 7); the state is the (f, g) warm start.
    let mut solve = |mu: &[f64],
                     init: Option<&(Array1<f64>, Array1<f64>)>|
     -> Result<OtTerm<(Array1<f64>, Array1<f64>)>> {
        let out = sinkhorn(
            kernel,
            ArrayView1::from(mu),
            nu.view(),
            &sk_params,
            init.map(|(f, g)| (f.view(), g.view())),
        )?;
        unconverged += usize::from(!out.converged);
        sk_iters += out.n_iter;
        Ok(OtTerm {
            value: out.objective,
            grad: out.f.to_vec(),
            state: (out.f, out.g),
        })
    };
    let first = solve(&mu, None)?;
    let mut out = descend(mu, params, true, |mu, fg| solve(mu, Some(fg)), first)?;
    out.sinkhorn_unconverged = unconverged;
    out.sinkhorn_iters = sk_iters;
    Ok(out)
}

/// Scaling-domain Sinkhorn of the authors' code: `f ← ν/(K g)`, `g ← μ/(Kᵀ f)` from ones, at
/// most `max_iter` sweeps, stopping when `max |Δf| < tol` (f = the measurement-side scaling).
fn rawson_sinkhorn(
    k: &[f64],
    n: usize,
    nu: &[f64],
    mu: &[f64],
    max_iter: usize,
    tol: f64,
) -> (Vec<f64>, Vec<f64>, usize) {
    let mut f = vec![1.0; n];
    let mut g = vec![1.0; n];
    let mut it = 0;
    while it < max_iter {
        it += 1;
        let mut change: f64 = 0.0;
        for i in 0..n {
            let kg: f64 = (0..n).map(|j| k[i * n + j] * g[j]).sum();
            let v = nu[i] / kg;
            change = change.max((v - f[i]).abs());
            f[i] = v;
        }
        for j in 0..n {
            let kf: f64 = (0..n).map(|i| k[i * n + j] * f[i]).sum();
            g[j] = mu[j] / kf;
        }
        if change < tol {
            break;
        }
    }
    (f, g, it)
}

/// Compatibility mode `objective="rawson2022"`: the procedure that produced the paper's Fig. 1–2
/// (issue 4), kept to reproduce them, NOT a minimiser of eq. (7):
/// * line-search objective `√(Σ C_ij² P_ij) + λ H(μ)` with `P = diag(f) K diag(g)`,
///   `K = exp(−C/ε)`, measurement ν on the rows;
/// * gradient `−ε ln max(f, 1e-7) + λ(−ln μ − 1)` where `f` is the *measurement-side* scaling;
/// * scaling Sinkhorn from ones, tolerance `sinkhorn_tol` (1e-7) on f, ≤ `sinkhorn_max_iter` (5000).
///
/// Centring, freezing and projection are those of [`sparsify`]; the line search restarts from
/// `step_size` at every step, as the paper's code does. Dense costs only.
pub fn sparsify_rawson2022(
    cost: ArrayView2<'_, f64>,
    nu: ArrayView1<'_, f64>,
    mu0: Option<ArrayView1<'_, f64>>,
    params: &SparsifyParams,
) -> Result<SparsifyOutput> {
    params.validate()?;
    let (n, m) = cost.dim();
    if n != m {
        return Err(OtError::shape(
            "cost",
            format!("rawson2022 needs a square cost, got ({n}, {m})"),
        ));
    }
    crate::core::error::check_finite("cost", cost.iter())?;
    if nu.len() != n {
        return Err(OtError::shape(
            "nu",
            format!("has {} entries but the cost has {n} columns", nu.len()),
        ));
    }
    let nu = normalised("nu", nu)?;
    let mu = match mu0 {
        Some(m0) if m0.len() != n => {
            return Err(OtError::shape(
                "mu0",
                format!("has {} entries, expected {n}", m0.len()),
            ))
        }
        Some(m0) => normalised("mu0", m0)?,
        None => nu.clone(),
    };
    let eps = params.eps;
    let c: Vec<f64> = cost.iter().copied().collect();
    let k: Vec<f64> = c.iter().map(|x| (-x / eps).exp()).collect();
    let (mut unconverged, mut sk_iters) = (0, 0);
    let mut eval = |mu: &[f64], _: &()| -> Result<OtTerm<()>> {
        let (f, g, it) = rawson_sinkhorn(
            &k,
            n,
            &nu,
            mu,
            params.sinkhorn_max_iter,
            params.sinkhorn_tol,
        );
        sk_iters += it;
        unconverged += usize::from(it >= params.sinkhorn_max_iter);
        let mut s = 0.0;
        for i in 0..n {
            for j in 0..n {
                s += c[i * n + j] * c[i * n + j] * f[i] * k[i * n + j] * g[j];
            }
        }
        if !s.is_finite() {
            return Err(OtError::Numerical(format!(
                "rawson2022 Sinkhorn scalings overflowed (ε = {eps:e})"
            )));
        }
        let grad = f.iter().map(|fi| -eps * fi.max(1e-7).ln()).collect();
        Ok(OtTerm {
            value: s.sqrt(),
            grad,
            state: (),
        })
    };
    let first = eval(&mu, &())?;
    // The paper's procedure restarts every line search from step_size.
    let mut out = descend(mu, params, false, &mut eval, first)?;
    out.sinkhorn_unconverged = unconverged;
    out.sinkhorn_iters = sk_iters;
    Ok(out)
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
    fn bad_parameters_are_errors() {
        let (c, nu) = toy();
        let k = DenseCost::new(c.view()).unwrap();
        assert!(sparsify(&k, nu.view(), None, &SparsifyParams::new(-1.0, 0.1)).is_err());
        assert!(sparsify(&k, nu.view(), None, &SparsifyParams::new(1.0, 0.0)).is_err());
        let zero = Array1::zeros(10);
        assert!(sparsify(&k, zero.view(), None, &SparsifyParams::new(1.0, 0.1)).is_err());
    }
}
