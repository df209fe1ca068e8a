//! Algorithm 2 of Rawson & Hultgren: projected gradient descent on eq. (7) with a backtracking
//! line search (§IV).
//!
//! * Coordinates with `μ_i = 0` are frozen (§IV): their gradient is set to zero so the iterate
//!   stays on its face. Sinkhorn sees zero weights as `ln 0 = −∞` terms, which is exactly the
//!   problem restricted to the support (no flooring).
//! * Step: the largest `α = step_size·2^{−k}` (down to `min_step`, and at most twice the previous
//!   accepted step) with `J(Proj(μ − αw)) < J(μ)`, where `Proj` clips negatives and renormalises
//!   (Algorithm 2's update).
//! * Every trial's Sinkhorn solve starts from the potentials of the last accepted iterate, so
//!   ε-scaling runs once, for the cold first solve.

use ndarray::{Array1, ArrayView1};

use super::{entropy, SparsifyOutput, SparsifyParams, StopReason};
use crate::core::cost::CostKernel;
use crate::core::error::Result;
use crate::core::interrupt;
use crate::core::sinkhorn::{sinkhorn, SinkhornParams};

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

/// The OT term of `J` at one μ: its value, its gradient with respect to μ (up to a constant,
/// which the centring removes) and whatever the next evaluation warm-starts from.
pub(super) struct OtTerm<S> {
    pub value: f64,
    pub grad: Vec<f64>,
    pub state: S,
}

/// Backtracking from `start` by halving until `J(Proj(μ − αw)) < j` (§IV's
/// α* = sup{α : J(μ − α∇J) < J(μ)}); returns the last α tried and the accepted candidate.
#[allow(clippy::type_complexity)]
fn line_search<S>(
    mu: &[f64],
    w: &[f64],
    j: f64,
    start: f64,
    params: &SparsifyParams,
    state: &S,
    ot_term: &mut impl FnMut(&[f64], &S) -> Result<OtTerm<S>>,
) -> Result<(f64, Option<(Vec<f64>, OtTerm<S>, f64)>)> {
    let mut alpha = start;
    while alpha >= params.min_step {
        if let Some(cand) = project(mu, w, alpha) {
            let ot_c = ot_term(&cand, state)?;
            let j_c = ot_c.value + params.sparsity * entropy(&cand);
            if j_c < j {
                return Ok((alpha, Some((cand, ot_c, j_c))));
            }
        }
        alpha *= 0.5;
    }
    Ok((alpha, None))
}

/// The projected gradient descent shared by both objectives: gradient `∂OT + λ(−ln μ − 1)` on
/// the support, centred (frozen zeros, §IV), then [`line_search`]. With `adaptive_start` the
/// search starts from twice the previous accepted step (capped at `step_size`) instead of
/// `step_size`: on images the accepted steps are orders of magnitude below `step_size` (the
/// potentials are in pixel² units), and every rejected trial is a Sinkhorn solve. The Sinkhorn
/// counters of the returned output are left at zero for the caller.
pub(super) fn descend<S>(
    mut mu: Vec<f64>,
    params: &SparsifyParams,
    adaptive_start: bool,
    mut ot_term: impl FnMut(&[f64], &S) -> Result<OtTerm<S>>,
    first: OtTerm<S>,
) -> Result<SparsifyOutput> {
    let lam = params.sparsity;
    let mut ot = first;
    let mut j = ot.value + lam * entropy(&mu);
    let mut objectives = vec![j];
    let mut history = Vec::new();
    if params.record_history {
        history.push(Array1::from(mu.clone()));
    }
    let mut w = vec![0.0; mu.len()];
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
        let (alpha, accepted) = line_search(&mu, &w, j, start, params, &ot.state, &mut ot_term)?;
        if adaptive_start {
            start = (2.0 * alpha).min(params.step_size);
        }
        let Some((cand, ot_c, j_c)) = accepted else {
            break StopReason::LineSearch;
        };
        (mu, ot, j) = (cand, ot_c, j_c);
        n_iter += 1;
        objectives.push(j);
        if params.record_history {
            history.push(Array1::from(mu.clone()));
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

/// Algorithm 2 on `J(μ) = OT_ε(μ, ν) + λ H(μ)` with the OT term from Sinkhorn (its value and
/// μ's potential `f`); `nu` and `mu` are normalised and sized for `kernel`.
pub(super) fn projected_gradient<K: CostKernel + ?Sized>(
    kernel: &K,
    nu: &[f64],
    mu: Vec<f64>,
    params: &SparsifyParams,
) -> Result<SparsifyOutput> {
    let nu = ArrayView1::from(nu);
    let mut sk_params = SinkhornParams::new(params.eps);
    sk_params.max_iter = params.sinkhorn_max_iter;
    sk_params.tol = params.sinkhorn_tol;
    // ε-scaling only for the cold first solve; every later solve is warm-started.
    sk_params.eps_scaling = Some(0.5);

    let (mut unconverged, mut sk_iters) = (0, 0);
    // OT_ε and its gradient, μ's dual potential f (eq. 7); the state is the (f, g) warm start.
    let mut solve = |mu: &[f64],
                     init: Option<&(Array1<f64>, Array1<f64>)>|
     -> Result<OtTerm<(Array1<f64>, Array1<f64>)>> {
        let out = sinkhorn(
            kernel,
            ArrayView1::from(mu),
            nu,
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
