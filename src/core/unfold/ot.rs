//! OT unfolding with a Wasserstein loss (paper 001, §3.2; DESIGN §3.3).
//!
//! Discrete problem (eq. 21/23): response points `y_i` (m) with response `R` (m×L), measured
//! points `y'_j` with weights `ν_j` (n), cost `C_ij = |y_i − y'_j|^p` divided by its maximum
//! (the reference code's convention, so ε means what the paper means). In the log domain, with
//! `u = [u_w; u_s]`, `v = [v_w; v_s]`, `b = [ν; 1]`, eq. (25) reads
//!
//! 1. `log v_w = log ν − LSE_i(log u_w,i − C_ij/ε)`, `log v_s = −LSE_k(log u_s,k)`;
//! 2. `log a = log u + log K̃v`, `log K̃v_w = LSE_j(log v_w,j − C_ij/ε)`, `log K̃v_s = log v_s`;
//! 3. `z = Proj^KL_{ker B}(a)` (Douglas–Rachford, eq. 28);
//! 4. `log u = log z − log K̃v`, and `σ = z_s / Σ z_s`.
//!
//! Both log-sum-exps are the softmin reductions of a [`CostKernel`] (here a [`PointCost`] on
//! rescaled points, so the m×n cost is never stored): `LSE_i(log u_i − C_ij/ε) =
//! −softmin_cols(ε log u)_j / ε`. The warm start (eq. 26–27) is the foundation's classical
//! Sinkhorn between `Rσ⁰` and `ν` at `ε_init`.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use rayon::prelude::*;

use super::projection::{douglas_rachford, exact_kl_projection, KerBProjector, Response};
use crate::core::cost::{CostKernel, PointCost};
use crate::core::error::{check_finite, check_positive, OtError, Result};
use crate::core::interrupt;
use crate::core::simd::dot;
use crate::core::sinkhorn::{sinkhorn, SinkhornParams};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CostNormalization {
    /// Divide the cost by its maximum over all (response, measured) pairs (reference code).
    Max,
    /// Raw cost.
    None,
}

/// How `Proj^KL_{ker B}` (step 3 of eq. 25) is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Projection {
    /// The paper's Douglas–Rachford splitting, eq. (28), `dr_iter` steps of size `dr_step`.
    DouglasRachford,
    /// The exact projection (closed form for block responses, Newton otherwise).
    Exact,
}

#[derive(Clone, Debug)]
pub struct OtUnfoldParams {
    /// ε of eq. (21), in units of the (normalised) cost.
    pub eps: f64,
    /// ε_init of the warm start, eq. (26).
    pub eps_init: f64,
    /// Classical Sinkhorn iterations of the warm start (the paper uses 100).
    pub n_init_iter: usize,
    /// Outer iterations of eq. (25) (at most, when `tol` is set).
    pub max_iter: usize,
    /// Stop when `‖σ_l − σ_{l−1}‖₁ ≤ tol`; `None` runs exactly `max_iter` iterations.
    pub tol: Option<f64>,
    /// Douglas–Rachford iterations per projection and step τ (eq. 28).
    pub dr_iter: usize,
    pub dr_step: f64,
    pub projection: Projection,
    pub p: f64,
    pub cost_normalization: CostNormalization,
}

impl OtUnfoldParams {
    pub fn new() -> Self {
        OtUnfoldParams {
            eps: 3e-5,
            eps_init: 1e-2,
            n_init_iter: 100,
            max_iter: 25,
            tol: None,
            dr_iter: 25,
            dr_step: 1e-3,
            projection: Projection::DouglasRachford,
            p: 2.0,
            cost_normalization: CostNormalization::Max,
        }
    }

    fn validate(&self) -> Result<()> {
        check_positive("reg", self.eps)?;
        check_positive("reg_init", self.eps_init)?;
        check_positive("dr_step", self.dr_step)?;
        if self.n_init_iter < 1 {
            return Err(OtError::invalid("n_init_iter", "must be at least 1"));
        }
        if self.max_iter < 1 {
            return Err(OtError::invalid("max_iter", "must be at least 1"));
        }
        if let Some(t) = self.tol {
            if !(t.is_finite() && t >= 0.0) {
                return Err(OtError::invalid(
                    "tol",
                    format!("must be finite and non-negative, got {t}"),
                ));
            }
        }
        if !(self.p.is_finite() && self.p >= 1.0) {
            return Err(OtError::invalid(
                "p",
                format!("must be a finite exponent ≥ 1, got {}", self.p),
            ));
        }
        Ok(())
    }
}

impl Default for OtUnfoldParams {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Clone, Debug)]
pub struct OtUnfoldOutput {
    /// σ after the last iteration (sums to one).
    pub sigma: Array1<f64>,
    /// σ after each iteration, (n_iter, L).
    pub sigma_history: Array2<f64>,
    /// `εKL(P|K̃)` of the iterate `P^{2l} = diag(u) K̃ diag(v)` (eq. 23) per iteration, in raw
    /// cost units; it needs only the marginals (`Σ_ij P_ij log(P_ij/K̃_ij) = Σ a log u + Σ b log v`).
    pub objective: Vec<f64>,
    /// `‖σ_l − σ_{l−1}‖₁` per iteration.
    pub sigma_change: Vec<f64>,
    /// `‖Bz‖/‖z‖` of the projection's output per iteration.
    pub kerb_residual: Vec<f64>,
    pub n_iter: usize,
    /// `tol` reached (always false when `tol` is `None`).
    pub converged: bool,
    /// The factor the cost was divided by.
    pub cost_scale: f64,
}

/// `max_ij |y_i − y'_j|^p` (exact, one parallel pass).
fn max_cost(y: ArrayView2<'_, f64>, yp: ArrayView2<'_, f64>, p: f64) -> f64 {
    let max_sq = (0..y.nrows())
        .into_par_iter()
        .map(|i| {
            let yi = y.row(i);
            yp.rows()
                .into_iter()
                .map(|r| {
                    r.iter()
                        .zip(yi.iter())
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum::<f64>()
                })
                .fold(0.0, f64::max)
        })
        .reduce(|| 0.0, f64::max);
    max_sq.powf(0.5 * p)
}

/// Runs OT unfolding. `progress` is called after every outer iteration with its index.
#[allow(clippy::too_many_arguments)]
pub fn ot_unfold(
    response_points: ArrayView2<'_, f64>,
    response: Response,
    measured_points: ArrayView2<'_, f64>,
    measured_weights: ArrayView1<'_, f64>,
    prior: Option<ArrayView1<'_, f64>>,
    params: &OtUnfoldParams,
    mut progress: Option<&mut dyn FnMut(usize)>,
) -> Result<OtUnfoldOutput> {
    params.validate()?;
    let m = response.n_response();
    let l = response.n_gen();
    let n = measured_points.nrows();
    if response_points.nrows() != m {
        return Err(OtError::shape(
            "reco",
            format!(
                "has {} detector points but the response has {m} rows",
                response_points.nrows()
            ),
        ));
    }
    if measured_weights.len() != n {
        return Err(OtError::shape(
            "measured_weight",
            format!(
                "has {} weights but measured has {n} points",
                measured_weights.len()
            ),
        ));
    }
    check_finite("measured_weight", measured_weights.iter())?;
    if measured_weights.iter().any(|w| w.is_nan() || *w <= 0.0) {
        return Err(OtError::invalid(
            "measured_weight",
            "weights must be positive (drop zero-weight events first)",
        ));
    }
    let nu_mass: f64 = measured_weights.sum();
    let log_nu: Vec<f64> = measured_weights
        .iter()
        .map(|w| (w / nu_mass).ln())
        .collect();
    let sigma0: Vec<f64> = match prior {
        None => vec![1.0 / l as f64; l],
        Some(s) => {
            if s.len() != l {
                return Err(OtError::shape(
                    "prior",
                    format!("has {} entries for {l} gen points", s.len()),
                ));
            }
            check_finite("prior", s.iter())?;
            if s.iter().any(|v| v.is_nan() || *v <= 0.0) {
                return Err(OtError::invalid("prior", "entries must be positive"));
            }
            let t: f64 = s.sum();
            s.iter().map(|v| v / t).collect()
        }
    };
    if measured_points.ncols() != response_points.ncols() {
        return Err(OtError::shape(
            "measured",
            format!(
                "points have dimension {} but reco has {}",
                measured_points.ncols(),
                response_points.ncols()
            ),
        ));
    }

    // Normalised cost |y/s − y'/s|^p = C/max C with s = (max C)^{1/p}, computed online. max C
    // also decides the warm start's domain (below).
    let raw_max_cost = max_cost(response_points, measured_points, params.p);
    let cost_scale = match params.cost_normalization {
        CostNormalization::Max => raw_max_cost,
        CostNormalization::None => 1.0,
    };
    if !(cost_scale > 0.0 && cost_scale.is_finite()) {
        return Err(OtError::invalid(
            "measured",
            "all response and measured points coincide: the cost is zero",
        ));
    }
    let s = cost_scale.powf(1.0 / params.p);
    let kernel = PointCost::new(
        response_points.mapv(|v| v / s).view(),
        measured_points.mapv(|v| v / s).view(),
        params.p,
    )?;
    let projector = KerBProjector::new(response)?;

    // Warm start, eq. (26)–(27): classical Sinkhorn between Rσ⁰ and ν at ε_init, started like
    // the reference code from v = 1 with a u-update.
    let mut a0 = vec![0.0; m];
    projector.response().apply(&sigma0, &mut a0);
    let nu: Array1<f64> = measured_weights.mapv(|w| w / nu_mass);
    let log_u_w = warm_start_scaling(&kernel, &a0, nu.view(), raw_max_cost / cost_scale, params)
        .map_or_else(|| warm_start_log(&kernel, &a0, nu.view(), params), Ok)?;
    // log u = [log u_w; log σ⁰] (eq. 27).
    let mut log_u: Vec<f64> = log_u_w
        .into_iter()
        .chain(sigma0.iter().map(|v| v.ln()))
        .collect();

    let eps = params.eps;
    let (mut shift_n, mut shift_m) = (vec![0.0; n], vec![0.0; m]);
    let (mut out_n, mut out_m) = (vec![0.0; n], vec![0.0; m]);
    let mut term_m = vec![0.0; m];
    let mut term_n = vec![0.0; n];
    let mut log_kv = vec![0.0; m + l];
    let mut log_a = vec![0.0; m + l];
    let mut sigma = sigma0.clone();
    let mut history = Vec::new();
    let (mut objective, mut sigma_change, mut kerb_residual) = (Vec::new(), Vec::new(), Vec::new());
    let mut converged = false;
    let mut n_iter = 0;
    for it in 0..params.max_iter {
        interrupt::check()?;
        // 1. log v_w = log ν − LSE_i(log u_w − C/ε), as a column softmin of ε log u_w.
        term_m
            .iter_mut()
            .zip(&log_u[..m])
            .for_each(|(t, lu)| *t = eps * lu);
        kernel.softmin_cols(&term_m, &shift_n, eps, &mut out_n);
        shift_n.copy_from_slice(&out_n);
        let log_v_w: Vec<f64> = log_nu
            .iter()
            .zip(&out_n)
            .map(|(ln, o)| ln + o / eps)
            .collect();
        let log_v_s = -log_sum_exp(&log_u[m..]);
        // 2. log K̃v_w = LSE_j(log v_w − C/ε), a row softmin of ε log v_w; log K̃v_s = log v_s.
        term_n
            .iter_mut()
            .zip(&log_v_w)
            .for_each(|(t, lv)| *t = eps * lv);
        kernel.softmin_rows(&term_n, &shift_m, eps, &mut out_m);
        shift_m.copy_from_slice(&out_m);
        log_kv[..m]
            .iter_mut()
            .zip(&out_m)
            .for_each(|(k, o)| *k = -o / eps);
        log_kv[m..].fill(log_v_s);
        log_a
            .iter_mut()
            .zip(log_u.iter().zip(&log_kv))
            .for_each(|(a, (u, k))| *a = u + k);
        // εKL(P|K̃) of P = diag(u)K̃diag(v): ε(Σ a log u + Σ b log v − Σ a), b = [ν; 1].
        let mut kl = 0.0;
        let mut mass = 0.0;
        for (la, lu) in log_a.iter().zip(&log_u) {
            let a = la.exp();
            kl += a * lu;
            mass += a;
        }
        kl += log_nu
            .iter()
            .zip(&log_v_w)
            .map(|(ln, lv)| ln.exp() * lv)
            .sum::<f64>()
            + log_v_s
            - mass;
        objective.push(eps * kl * cost_scale);
        // 3. z = Proj^KL_{ker B}(a), eq. (28) or exactly.
        let z = match params.projection {
            Projection::DouglasRachford => {
                douglas_rachford(&projector, &log_a, params.dr_step, params.dr_iter)
            }
            Projection::Exact => exact_kl_projection(&projector, &log_a)?,
        };
        kerb_residual.push(projector.residual(&z));
        // 4. log u = log z − log K̃v; σ = z_s normalised.
        for i in 0..m + l {
            log_u[i] = z[i].ln() - log_kv[i];
        }
        let zs_sum: f64 = z[m..].iter().sum();
        let new_sigma: Vec<f64> = z[m..].iter().map(|v| v / zs_sum).collect();
        if !new_sigma.iter().all(|v| v.is_finite()) || !log_u.iter().all(|v| v.is_finite()) {
            return Err(OtError::Numerical(format!(
                "non-finite iterate at outer iteration {it} (ε = {eps:e})"
            )));
        }
        let change: f64 = new_sigma
            .iter()
            .zip(&sigma)
            .map(|(a, b)| (a - b).abs())
            .sum();
        sigma = new_sigma;
        sigma_change.push(change);
        history.extend_from_slice(&sigma);
        n_iter = it + 1;
        if let Some(p) = progress.as_deref_mut() {
            p(it);
        }
        if let Some(t) = params.tol {
            if change <= t {
                converged = true;
                break;
            }
        }
    }
    Ok(OtUnfoldOutput {
        sigma: Array1::from(sigma),
        sigma_history: Array2::from_shape_vec((n_iter, l), history).expect("n_iter rows of L"),
        objective,
        sigma_change,
        kerb_residual,
        n_iter,
        converged,
        cost_scale,
    })
}

/// Largest `max C / ε_init` for which the warm start runs in the scaling domain: then every
/// kernel entry `e^{−C/ε}` is at least e^{−300} ≈ 5e−131, and the scalings, whose ratios are
/// bounded by the kernel's dynamic range, stay far inside the double range.
const SCALING_MAX_EXPONENT: f64 = 300.0;
/// Largest m·n for which the warm start stores the kernel (128 MiB).
const SCALING_MAX_ENTRIES: usize = 1 << 24;

/// The warm start (eq. 26–27) as the reference code runs it, in the scaling domain:
/// `u = a/(K1)`, then `n_init_iter − 1` times `v = ν/(Kᵀu)`, `u = a/(Kv)`, with
/// `K = e^{−C/ε_init}` computed once. Same iterates as the log domain up to rounding, but
/// 2·n_init_iter matrix–vector products instead of as many passes of exponentials (the warm
/// start is 4/5 of the passes of a default fit). `None` when the kernel's dynamic range or size
/// does not allow it, or if an iterate is not finite and positive; the caller then runs
/// [`warm_start_log`].
fn warm_start_scaling(
    kernel: &PointCost,
    a0: &[f64],
    nu: ArrayView1<'_, f64>,
    max_c: f64,
    params: &OtUnfoldParams,
) -> Option<Vec<f64>> {
    let (m, n) = kernel.shape();
    let e0 = params.eps_init;
    if max_c / e0 > SCALING_MAX_EXPONENT || m.saturating_mul(n) > SCALING_MAX_ENTRIES {
        return None;
    }
    let k = kernel.plan(&vec![0.0; m], &vec![0.0; n], e0);
    let k = k.as_slice().expect("plan is in standard layout");
    let (mut u, mut v) = (vec![0.0; m], vec![1.0; n]);
    let mut kv = vec![0.0; m];
    mat_vec(k, &v, &mut kv);
    u.iter_mut()
        .zip(a0.iter().zip(&kv))
        .for_each(|(ui, (a, s))| *ui = a / s);
    for _ in 1..params.n_init_iter {
        let ktu = mat_t_vec(k, &u, n);
        v.iter_mut()
            .zip(nu.iter().zip(&ktu))
            .for_each(|(vj, (b, s))| *vj = b / s);
        mat_vec(k, &v, &mut kv);
        u.iter_mut()
            .zip(a0.iter().zip(&kv))
            .for_each(|(ui, (a, s))| *ui = a / s);
    }
    u.iter()
        .all(|x| x.is_finite() && *x > 0.0)
        .then(|| u.iter().map(|x| x.ln()).collect())
}

/// `out = K v` for a row-major K with `v.len()` columns.
fn mat_vec(k: &[f64], v: &[f64], out: &mut [f64]) {
    out.par_iter_mut()
        .zip(k.par_chunks_exact(v.len()))
        .for_each(|(o, row)| *o = dot(row, v));
}

/// `Kᵀ u` for a row-major K with n columns: rows accumulated along the contiguous axis.
fn mat_t_vec(k: &[f64], u: &[f64], n: usize) -> Vec<f64> {
    k.par_chunks_exact(n)
        .zip(u.par_iter())
        .with_min_len((4096 / n.max(1)).max(1))
        .fold(
            || vec![0.0; n],
            |mut acc, (row, &ui)| {
                acc.iter_mut().zip(row).for_each(|(s, kij)| *s += ui * kij);
                acc
            },
        )
        .reduce(
            || vec![0.0; n],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            },
        )
}

/// The warm start in the log domain with the foundation's Sinkhorn (any ε_init): `log u`.
fn warm_start_log(
    kernel: &PointCost,
    a0: &[f64],
    nu: ArrayView1<'_, f64>,
    params: &OtUnfoldParams,
) -> Result<Vec<f64>> {
    let (m, n) = kernel.shape();
    let e0 = params.eps_init;
    // The foundation updates g first, so the first u-update (from v = 1) is done here and the
    // remaining n_init_iter − 1 by `sinkhorn`.
    let mut f = vec![0.0; m];
    kernel.softmin_rows(&vec![0.0; n], &vec![0.0; m], e0, &mut f);
    if params.n_init_iter > 1 {
        let mut sp = SinkhornParams::new(e0);
        sp.max_iter = params.n_init_iter - 1;
        sp.tol = 0.0;
        // The paper's warm start is plain classical Sinkhorn (eq. 26–27): keep its iterates.
        sp.overrelaxation = false;
        let a0v = ArrayView1::from(a0);
        let g0 = vec![0.0; n];
        let out = sinkhorn(
            kernel,
            a0v,
            nu,
            &sp,
            Some((ArrayView1::from(&f[..]), ArrayView1::from(&g0[..]))),
        )?;
        f = out.f.to_vec();
    }
    // log u = log a + f/ε_init (the foundation's P = a b e^{(f+g−C)/ε}).
    Ok(a0.iter().zip(&f).map(|(a, fi)| a.ln() + fi / e0).collect())
}

fn log_sum_exp(v: &[f64]) -> f64 {
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    hi + v.iter().map(|x| (x - hi).exp()).sum::<f64>().ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn unfolds_a_shift_and_keeps_sigma_on_the_simplex() {
        // Gen points 0..L, detector = gen + 0.5, measured = detector of the first half only.
        let l = 12;
        let y = Array2::from_shape_fn((l, 1), |(k, _)| k as f64 + 0.5);
        let yp = Array2::from_shape_fn((l / 2, 1), |(j, _)| j as f64 + 0.5);
        let nu = Array1::from_elem(l / 2, 1.0);
        let out = ot_unfold(
            y.view(),
            Response::new_blocks(l, 1).unwrap(),
            yp.view(),
            nu.view(),
            None,
            &OtUnfoldParams::new(),
            None,
        )
        .unwrap();
        assert_eq!(out.n_iter, 25);
        assert!((out.sigma.sum() - 1.0).abs() < 1e-12);
        let first_half: f64 = out.sigma.iter().take(l / 2).sum();
        assert!(first_half > 0.9, "mass on the measured half: {first_half}");
    }
}
