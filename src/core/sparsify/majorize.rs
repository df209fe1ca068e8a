//! Majorize–minimize for eq. (7) of Rawson & Hultgren, a Blahut–Arimoto-type iteration
//! (Blahut 1972; Arimoto 1972; the concave–convex procedure of Yuille & Rangarajan 2003).
//!
//! With `P ∈ Π(μ, ν)`, `ε KL(P | μ⊗ν) = ε Σ P ln P + ε H(μ) + ε H(ν)`, so eliminating μ = P1,
//! `J(μ) = min { F(P) : Pᵀ1 = ν, P1 = μ }` with
//! `F(P) = ⟨C, P⟩ + ε Σ P ln P + (ε + λ) H(P1) + ε H(ν)`: convex in P plus a concave term of
//! the row marginal. Replacing `H(P1)` by its tangent at the current `μ = P1` majorizes F, and
//! the majorizer's minimiser under the column constraint alone is explicit:
//! `P_ij = ν_j μ_i^γ e^{−C_ij/ε} / Σ_l μ_l^γ e^{−C_lj/ε}`, `γ = 1 + λ/ε`, whose row marginal is
//! the next μ. Each step costs two softmins (no inner Sinkhorn loop), never increases F, and a
//! fixed point satisfies Algorithm 2's stationarity condition: with the plan's potential
//! `f_i = λ ln μ_i + const`, the gradient `f_i + λ(−ln μ_i − 1)` is constant on the support.
//! Zeros of μ stay zero (μ^γ), as in §IV; entries off the final support decay towards zero.

use ndarray::Array1;

use super::{entropy, SparsifyOutput, SparsifyParams, StopReason};
use crate::core::cost::CostKernel;
use crate::core::error::{OtError, Result};
use crate::core::interrupt;

/// `Σ_i w_i v_i` over the entries with positive weight (skips `0·(−∞)`).
fn weighted_sum(w: &[f64], v: &[f64]) -> f64 {
    w.iter()
        .zip(v)
        .filter(|(w, _)| **w > 0.0)
        .map(|(w, v)| w * v)
        .sum()
}

/// `ε·ln x` with `ln 0 = −∞` (the log-domain weight of a zero entry).
fn eps_log(x: &[f64], eps: f64) -> Vec<f64> {
    x.iter()
        .map(|&v| {
            if v > 0.0 {
                eps * v.ln()
            } else {
                f64::NEG_INFINITY
            }
        })
        .collect()
}

/// One step from μ: returns the next μ (the plan's row marginal) and `F` of that plan.
struct Step<'a, K: ?Sized> {
    kernel: &'a K,
    eps_log_nu: Vec<f64>,
    /// `ε H(ν)`.
    nu_entropy: f64,
    nu: &'a [f64],
    /// Softmins of the previous step, the stabilising guesses of the next ones.
    col_guess: Vec<f64>,
    row_guess: Vec<f64>,
}

impl<K: CostKernel + ?Sized> Step<'_, K> {
    fn run(&mut self, mu: &[f64], params: &SparsifyParams) -> Result<(Vec<f64>, f64)> {
        let (eps, lam) = (params.eps, params.sparsity);
        let gamma = 1.0 + lam / eps;
        // row_i = εγ ln μ_i; s_j = −ε ln Σ_i μ_i^γ e^{−C_ij/ε}.
        let row: Vec<f64> = eps_log(mu, eps).iter().map(|r| gamma * r).collect();
        let mut s = vec![0.0; self.nu.len()];
        self.kernel.softmin_cols(&row, &self.col_guess, eps, &mut s);
        // col_j = ε ln ν_j + s_j, so that P_ij = exp((row_i + col_j − C_ij)/ε) has columns ν.
        let col: Vec<f64> = self.eps_log_nu.iter().zip(&s).map(|(l, s)| l + s).collect();
        let mut r = vec![0.0; mu.len()];
        self.kernel.softmin_rows(&col, &self.row_guess, eps, &mut r);
        // Row sums of P: exp((row_i − r_i)/ε), which add up to Σν = 1 up to rounding.
        let mut next: Vec<f64> = row
            .iter()
            .zip(&r)
            .map(|(&a, &b)| {
                if a == f64::NEG_INFINITY {
                    0.0
                } else {
                    ((a - b) / eps).exp()
                }
            })
            .collect();
        let mass: f64 = next.iter().sum();
        if !(mass.is_finite() && mass > 0.0) {
            return Err(OtError::Numerical(format!(
                "majorize step lost the mass of μ (ε = {eps:e}, λ = {lam:e})"
            )));
        }
        next.iter_mut().for_each(|m| *m /= mass);
        // F(P) = Σ_i μ'_i row_i + Σ_j ν_j col_j + (ε + λ) H(μ') + ε H(ν) (module doc).
        let value = weighted_sum(&next, &row)
            + weighted_sum(self.nu, &col)
            + (eps + lam) * entropy(&next)
            + self.nu_entropy;
        self.col_guess = s;
        self.row_guess = r;
        Ok((next, value))
    }
}

/// Majorize–minimize from `mu` until one step changes μ by less than `tol` in L1.
pub(super) fn majorize<K: CostKernel + ?Sized>(
    kernel: &K,
    nu: &[f64],
    mut mu: Vec<f64>,
    params: &SparsifyParams,
) -> Result<SparsifyOutput> {
    let mut step = Step {
        kernel,
        eps_log_nu: eps_log(nu, params.eps),
        nu_entropy: params.eps * entropy(nu),
        nu,
        col_guess: vec![0.0; nu.len()],
        row_guess: vec![0.0; mu.len()],
    };
    let mut history = Vec::new();
    if params.record_history {
        history.push(Array1::from(mu.clone()));
    }
    let mut objectives = Vec::new();
    let mut change = f64::INFINITY;
    let mut n_iter = 0;
    let stop = loop {
        interrupt::check()?;
        if change < params.tol {
            break StopReason::Gradient;
        }
        if n_iter >= params.max_iter {
            break StopReason::MaxIter;
        }
        let (next, value) = step.run(&mu, params)?;
        change = next.iter().zip(&mu).map(|(a, b)| (a - b).abs()).sum();
        mu = next;
        n_iter += 1;
        objectives.push(value);
        if params.record_history {
            history.push(Array1::from(mu.clone()));
        }
    };
    let h = entropy(&mu);
    let objective = objectives.last().copied().unwrap_or(f64::NAN);
    Ok(SparsifyOutput {
        mu: Array1::from(mu),
        n_iter,
        objective,
        ot_value: objective - params.sparsity * h,
        entropy: h,
        grad_norm: change,
        stop,
        objectives,
        history,
        sinkhorn_unconverged: 0,
        sinkhorn_iters: 0,
    })
}
