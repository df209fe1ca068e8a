//! Compatibility mode `objective="rawson2022"`: the procedure that produced the paper's Fig. 1–2,
//! kept to reproduce them (see [`sparsify_rawson2022`]).

use ndarray::{ArrayView1, ArrayView2};

use super::descent::{descend, OtTerm};
use super::{normalised, start, SparsifyOutput, SparsifyParams};
use crate::core::error::{OtError, Result};

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

/// Compatibility mode `objective="rawson2022"`: the procedure that produced the paper's Fig. 1–2,
/// kept to reproduce them, NOT a minimiser of eq. (7):
/// * line-search objective `√(Σ C_ij² P_ij) + λ H(μ)` with `P = diag(f) K diag(g)`,
///   `K = exp(−C/ε)`, measurement ν on the rows;
/// * gradient `−ε ln max(f, 1e-7) + λ(−ln μ − 1)` where `f` is the *measurement-side* scaling;
/// * scaling Sinkhorn from ones, tolerance `sinkhorn_tol` (1e-7) on f, ≤ `sinkhorn_max_iter` (5000).
///
/// Centring, freezing and projection are those of [`super::sparsify`]; the line search restarts from
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
    let mu = start(&nu, mu0, n)?;
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
