//! The KL projection onto `ker B = {(w, s) : w = R s}` by Douglas–Rachford splitting (Craig,
//! Faktor, Nachman, eq. 28), with the pieces it needs:
//!
//! * [`Response`]: the column-stochastic response `R` (m×L), either the sampled form — each
//!   detector sample belongs to exactly one gen point, which owns a run of consecutive rows with
//!   any number of samples (0 excluded) and any positive weights — or a dense matrix.
//! * [`KerBProjector`]: the orthogonal projector `Π = I − Bᵀ(BBᵀ)⁻¹B` onto `ker B`,
//!   `B = [I_m, −R]`, applied without forming any (m+L)×(m+L) matrix: `Πx = (x_w − t, x_s + Rᵀt)`
//!   with `t = (I + RRᵀ)⁻¹(x_w − R x_s)`. For the sampled form `I + RRᵀ` is block diagonal with
//!   rank-one blocks `I + r_k r_kᵀ` whatever the samples' number and weights (O(m+L) per
//!   application); for a dense R, Woodbury turns the m×m solve into one with the L×L matrix
//!   `I + RᵀR`, factored once by Cholesky.
//! * [`wright_omega`]: ω(t) = W₀(eᵗ), the overflow-free form of the Lambert W in eq. (28).

use ndarray::Array2;
use rayon::prelude::*;

use crate::core::error::{OtError, Result};
use crate::core::simd::{self, LANES};

/// The response matrix `R` (m×L, columns sum to one, eq. 18).
#[derive(Clone, Debug)]
pub enum Response {
    /// The sampled response: gen point k owns the rows `offsets[k]..offsets[k + 1]` (at least
    /// one), with entries `R_ik = weights[i]` summing to one over the run (the samples' shares of
    /// their gen point's MC weight; `1/M` for M equally weighted samples, eq. 18).
    Samples {
        offsets: Vec<usize>,
        weights: Vec<f64>,
    },
    /// A dense m×L matrix.
    Dense(Array2<f64>),
}

impl Response {
    /// Checks eq. (18): non-negative, finite, columns summing to one, no empty row.
    pub fn new_dense(r: Array2<f64>) -> Result<Self> {
        let (m, l) = r.dim();
        if m == 0 || l == 0 {
            return Err(OtError::shape(
                "response",
                format!("must not be empty, got shape ({m}, {l})"),
            ));
        }
        if r.iter().any(|v| !v.is_finite() || *v < 0.0) {
            return Err(OtError::invalid(
                "response",
                "entries must be finite and non-negative",
            ));
        }
        for (k, col) in r.columns().into_iter().enumerate() {
            let s: f64 = col.sum();
            if (s - 1.0).abs() > 1e-8 {
                return Err(OtError::invalid(
                    "response",
                    format!("column {k} sums to {s}, expected 1"),
                ));
            }
        }
        for (i, row) in r.rows().into_iter().enumerate() {
            if row.sum() <= 0.0 {
                return Err(OtError::invalid(
                    "response",
                    format!("row {i} is zero: detector point {i} is unreachable"),
                ));
            }
        }
        Ok(Response::Dense(r))
    }

    /// M equally weighted samples for each of `n_gen` gen points, in consecutive rows.
    pub fn new_blocks(n_gen: usize, per_point: usize) -> Result<Self> {
        if n_gen == 0 || per_point == 0 {
            return Err(OtError::shape("reco", format!("needs at least one gen point and one sample each, got L={n_gen}, M={per_point}")));
        }
        let offsets = (0..=n_gen).map(|k| k * per_point).collect();
        let weights = vec![1.0 / per_point as f64; n_gen * per_point];
        Ok(Response::Samples { offsets, weights })
    }

    /// The sampled response from each detector row's gen point (`owner`, non-decreasing: the
    /// samples of a gen point are consecutive rows) and its share `weights` of that gen point's
    /// MC weight (positive, summing to one per gen point).
    pub fn new_samples(owner: &[usize], weights: Vec<f64>, n_gen: usize) -> Result<Self> {
        if owner.len() != weights.len() || owner.is_empty() {
            return Err(OtError::shape(
                "reco",
                format!("{} sample rows for {} weights", owner.len(), weights.len()),
            ));
        }
        let mut offsets = vec![0; n_gen + 1];
        for (i, &k) in owner.iter().enumerate() {
            if k >= n_gen || (i > 0 && k < owner[i - 1]) {
                return Err(OtError::invalid(
                    "reco",
                    format!("sample row {i} belongs to gen point {k}: rows must be grouped by gen point in order"),
                ));
            }
            offsets[k + 1] += 1;
        }
        for k in 0..n_gen {
            offsets[k + 1] += offsets[k];
        }
        for k in 0..n_gen {
            let run = &weights[offsets[k]..offsets[k + 1]];
            let total: f64 = run.iter().sum();
            if run.is_empty()
                || run.iter().any(|w| !w.is_finite() || *w <= 0.0)
                || (total - 1.0).abs() > 1e-8
            {
                return Err(OtError::invalid(
                    "sample_weight",
                    format!("gen point {k}: its samples' shares must be positive and sum to one, got {total} over {} samples", run.len()),
                ));
            }
        }
        Ok(Response::Samples { offsets, weights })
    }

    /// m, the number of detector-level response points.
    pub fn n_response(&self) -> usize {
        match self {
            Response::Samples { weights, .. } => weights.len(),
            Response::Dense(r) => r.nrows(),
        }
    }

    /// L, the number of gen points.
    pub fn n_gen(&self) -> usize {
        match self {
            Response::Samples { offsets, .. } => offsets.len() - 1,
            Response::Dense(r) => r.ncols(),
        }
    }

    /// The runs of rows of the sampled form, one per gen point, with their weights.
    fn runs<'a>(
        offsets: &'a [usize],
        weights: &'a [f64],
    ) -> impl Iterator<Item = (std::ops::Range<usize>, &'a [f64])> + 'a {
        offsets
            .windows(2)
            .map(move |w| (w[0]..w[1], &weights[w[0]..w[1]]))
    }

    /// `out = R s`.
    pub fn apply(&self, s: &[f64], out: &mut [f64]) {
        match self {
            Response::Samples { offsets, weights } => {
                for ((rows, r), sk) in Self::runs(offsets, weights).zip(s) {
                    out[rows].iter_mut().zip(r).for_each(|(o, ri)| *o = ri * sk);
                }
            }
            Response::Dense(r) => {
                for (o, row) in out.iter_mut().zip(r.rows()) {
                    *o = row.iter().zip(s).map(|(a, b)| a * b).sum();
                }
            }
        }
    }

    /// `out = Rᵀ w`.
    pub fn apply_t(&self, w: &[f64], out: &mut [f64]) {
        match self {
            Response::Samples { offsets, weights } => {
                for (o, (rows, r)) in out.iter_mut().zip(Self::runs(offsets, weights)) {
                    *o = w[rows].iter().zip(r).map(|(a, b)| a * b).sum();
                }
            }
            Response::Dense(r) => {
                out.fill(0.0);
                for (row, wi) in r.rows().into_iter().zip(w) {
                    for (o, rik) in out.iter_mut().zip(row) {
                        *o += rik * wi;
                    }
                }
            }
        }
    }
}

/// The orthogonal projector onto `ker B`, `B = [I_m, −R]` (the first step of eq. 28).
pub struct KerBProjector {
    response: Response,
    factor: Factor,
}

/// What applying `(I + RRᵀ)⁻¹` needs, computed once per response.
enum Factor {
    /// Sampled form: `(I + r rᵀ)⁻¹ = I − r rᵀ/(1 + |r|²)` on each gen point's run of rows;
    /// `1/(1 + |r_k|²)` per gen point.
    Runs(Vec<f64>),
    /// Dense form: the lower Cholesky factor of `I_L + RᵀR` (for Woodbury).
    Woodbury(Array2<f64>),
}

impl KerBProjector {
    pub fn new(response: Response) -> Result<Self> {
        let factor = match &response {
            Response::Samples { offsets, weights } => Factor::Runs(
                Response::runs(offsets, weights)
                    .map(|(_, r)| 1.0 / (1.0 + r.iter().map(|v| v * v).sum::<f64>()))
                    .collect(),
            ),
            Response::Dense(r) => {
                let mut g = r.t().dot(r);
                g.diag_mut().iter_mut().for_each(|v| *v += 1.0);
                Factor::Woodbury(cholesky(g)?)
            }
        };
        Ok(KerBProjector { response, factor })
    }

    pub fn response(&self) -> &Response {
        &self.response
    }

    /// m + L.
    pub fn len(&self) -> usize {
        self.response.n_response() + self.response.n_gen()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `out = Π x` with `Πx = (x_w − t, x_s + Rᵀ t)`, `t = (I + RRᵀ)⁻¹ (x_w − R x_s)`.
    pub fn project(&self, x: &[f64], out: &mut [f64]) {
        match (&self.response, &self.factor) {
            (Response::Samples { offsets, weights }, Factor::Runs(inv)) => {
                project_samples(offsets, weights, inv, x, out)
            }
            (Response::Dense(r), Factor::Woodbury(chol)) => {
                let m = r.nrows();
                let (xw, xs) = x.split_at(m);
                let (ow, os) = out.split_at_mut(m);
                // ow = B x = x_w − R x_s, then Woodbury: (I + RRᵀ)⁻¹ b = b − R (I + RᵀR)⁻¹ Rᵀ b.
                self.response.apply(xs, ow);
                ow.iter_mut().zip(xw).for_each(|(o, w)| *o = w - *o);
                self.response.apply_t(ow, os);
                cholesky_solve(chol, os);
                for (o, row) in ow.iter_mut().zip(r.rows()) {
                    *o -= row.iter().zip(os.iter()).map(|(a, b)| a * b).sum::<f64>();
                }
                // ow holds t now.
                self.response.apply_t(ow, os);
                os.iter_mut().zip(xs).for_each(|(o, s)| *o += s);
                ow.iter_mut().zip(xw).for_each(|(o, w)| *o = w - *o);
            }
            _ => unreachable!("the factor is built from the same response"),
        }
    }

    /// `‖B z‖ / ‖z‖`, how far `z` is from `ker B`.
    pub fn residual(&self, z: &[f64]) -> f64 {
        let m = self.response.n_response();
        let mut rz = vec![0.0; m];
        self.response.apply(&z[m..], &mut rz);
        let num: f64 = z[..m].iter().zip(&rz).map(|(a, b)| (a - b) * (a - b)).sum();
        let den: f64 = z.iter().map(|v| v * v).sum();
        (num / den).sqrt()
    }
}

/// Gen points per parallel task of the sampled projection.
const PROJECT_GROUP: usize = 4096;

/// `Π x` for the sampled response, one fused pass per gen point, in parallel over groups of
/// gen points (their rows are contiguous). Every sample belongs to one gen point, so
/// `I + RRᵀ` is block diagonal with the rank-one blocks `I + r_k r_kᵀ`: with `b = x_w − r_k x_s`,
/// `t = b − r_k (r_k·b)/(1 + |r_k|²)` (Sherman–Morrison), `out = (x_w − t, x_s + r_k·t)`.
fn project_samples(offsets: &[usize], weights: &[f64], inv: &[f64], x: &[f64], out: &mut [f64]) {
    let (m, l) = (weights.len(), inv.len());
    let (xw, xs) = x.split_at(m);
    let (mut ow, mut os) = out.split_at_mut(m);
    let mut tasks = Vec::with_capacity(l.div_ceil(PROJECT_GROUP));
    for g0 in (0..l).step_by(PROJECT_GROUP) {
        let g1 = (g0 + PROJECT_GROUP).min(l);
        let (w_part, w_rest) = std::mem::take(&mut ow).split_at_mut(offsets[g1] - offsets[g0]);
        let (s_part, s_rest) = std::mem::take(&mut os).split_at_mut(g1 - g0);
        (ow, os) = (w_rest, s_rest);
        tasks.push((g0, w_part, s_part));
    }
    tasks.into_par_iter().for_each(|(g0, ow, os)| {
        let base = offsets[g0];
        for (j, o_s) in os.iter_mut().enumerate() {
            let k = g0 + j;
            let (lo, hi) = (offsets[k], offsets[k + 1]);
            let (r, x_w, o_w) = (&weights[lo..hi], &xw[lo..hi], &mut ow[lo - base..hi - base]);
            let x_s = xs[k];
            let mut rb = 0.0;
            for ((o, w), ri) in o_w.iter_mut().zip(x_w).zip(r) {
                *o = w - ri * x_s;
                rb += ri * *o;
            }
            let s = rb * inv[k];
            let mut rt = 0.0;
            for ((o, w), ri) in o_w.iter_mut().zip(x_w).zip(r) {
                let t = *o - ri * s;
                rt += ri * t;
                *o = w - t;
            }
            *o_s = x_s + rt;
        }
    });
}

/// In-place lower Cholesky factor of a symmetric positive definite matrix.
fn cholesky(mut a: Array2<f64>) -> Result<Array2<f64>> {
    let n = a.nrows();
    for j in 0..n {
        let mut d = a[(j, j)];
        for k in 0..j {
            d -= a[(j, k)] * a[(j, k)];
        }
        if d.is_nan() || d <= 0.0 {
            return Err(OtError::Numerical(
                "I + RᵀR is not positive definite".into(),
            ));
        }
        let d = d.sqrt();
        a[(j, j)] = d;
        for i in j + 1..n {
            let mut s = a[(i, j)];
            for k in 0..j {
                s -= a[(i, k)] * a[(j, k)];
            }
            a[(i, j)] = s / d;
        }
        for k in j + 1..n {
            a[(j, k)] = 0.0;
        }
    }
    Ok(a)
}

/// Solves `L Lᵀ x = b` in place.
fn cholesky_solve(l: &Array2<f64>, b: &mut [f64]) {
    let n = b.len();
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= l[(i, k)] * b[k];
        }
        b[i] = s / l[(i, i)];
    }
    for i in (0..n).rev() {
        let mut s = b[i];
        for k in i + 1..n {
            s -= l[(k, i)] * b[k];
        }
        b[i] = s / l[(i, i)];
    }
}

/// The Wright omega function ω(t), the solution of `ω + ln ω = t` (ω(t) = W₀(eᵗ) for real t).
///
/// Lawrence, Corless & Jeffrey, "Algorithm 917: Complex double-precision evaluation of the
/// Wright ω function" (ACM TOMS 38, 2012), real branch: an initial guess per region, then one
/// (rarely two) Fritsch–Shafer–Crowley steps, which are fourth-order accurate.
pub fn wright_omega(t: f64) -> f64 {
    if t.is_nan() {
        return t;
    }
    if t.is_infinite() {
        return if t > 0.0 { t } else { 0.0 };
    }
    if t < -50.0 {
        // ω = e^{t − ω} = eᵗ(1 − eᵗ + …): eᵗ is exact to double precision here.
        return t.exp();
    }
    if t > 1e20 {
        return t;
    }
    let mut w = if t < -2.0 {
        t.exp()
    } else if t < 1.0 {
        (2.0 * (t - 1.0) / 3.0).exp()
    } else {
        let l = t.ln();
        t - l + l / t
    };
    let fsc = |w: f64| -> (f64, f64, f64) {
        let r = t - w - w.ln();
        let wp1 = w + 1.0;
        let q = 2.0 * wp1 * (wp1 + 2.0 / 3.0 * r);
        let e = r / wp1 * (q - r) / (q - 2.0 * r);
        (w * (1.0 + e), r, wp1)
    };
    let (w1, r, wp1) = fsc(w);
    w = w1;
    // A second step only when the first one's error estimate is above the rounding level.
    if ((2.0 * w * w - 8.0 * w - 1.0) * r.abs().powi(4)).abs()
        >= f64::EPSILON * 72.0 * wp1.abs().powi(6)
    {
        w = fsc(w).0;
    }
    w
}

/// Entries per parallel task of a Douglas–Rachford update.
const DR_CHUNK: usize = 8192;

/// ω(t) without branches, for vector lanes: the regions and Fritsch–Shafer–Crowley steps of
/// [`wright_omega`] with every region's guess computed and the right one selected, and always two
/// steps (the second changes a converged value by at most an ulp).
#[inline(always)]
fn wright_omega_lane<const FMA: bool>(t: f64) -> f64 {
    let lt = simd::ln::<FMA>(if t > 1.0 { t } else { 1.0 });
    let tiny = simd::exp::<FMA>(t);
    let guess = if t < -2.0 {
        tiny
    } else if t < 1.0 {
        simd::exp::<FMA>(2.0 * (t - 1.0) / 3.0)
    } else {
        t - lt + lt / t
    };
    let step = |w: f64| {
        let r = t - w - simd::ln::<FMA>(w);
        let wp1 = w + 1.0;
        let q = 2.0 * wp1 * (wp1 + 2.0 / 3.0 * r);
        // One division per step (divisions bound the vector loop's throughput).
        w * (1.0 + r * (q - r) / (wp1 * (q - 2.0 * r)))
    };
    let w = step(step(guess));
    // e^t is ω to double precision below −50 (and 0 where it underflows); ω(t) = t above 1e20.
    let w = if t < -50.0 { tiny } else { w };
    let w = if t < -708.0 { 0.0 } else { w };
    if t > 1e20 {
        t
    } else {
        w
    }
}

#[inline(always)]
fn dr_update_generic<const FMA: bool>(
    log_w: &[f64],
    y: &[f64],
    x: &mut [f64],
    z: &mut [f64],
    tau: f64,
) {
    let (log_tau, inv_tau) = (tau.ln(), 1.0 / tau);
    let update = |x: &mut f64, z: &mut f64, y: f64, lw: f64| {
        *z = tau * wright_omega_lane::<FMA>(lw - log_tau + (2.0 * y - *x) * inv_tau);
        *x += *z - y;
    };
    // Fixed LANES-wide chunks: LLVM vectorises the branch-free ω across a chunk (a loop over the
    // whole slice stayed scalar, 37 ns per entry).
    let (mut xc, mut zc) = (x.chunks_exact_mut(LANES), z.chunks_exact_mut(LANES));
    let (yc, wc) = (y.chunks_exact(LANES), log_w.chunks_exact(LANES));
    let (y_tail, w_tail) = (yc.remainder(), wc.remainder());
    for (((x, z), y), lw) in xc.by_ref().zip(zc.by_ref()).zip(yc).zip(wc) {
        for l in 0..LANES {
            update(&mut x[l], &mut z[l], y[l], lw[l]);
        }
    }
    let tails = xc.into_remainder().iter_mut().zip(zc.into_remainder());
    for ((x, z), (y, lw)) in tails.zip(y_tail.iter().zip(w_tail)) {
        update(x, z, *y, *lw);
    }
}

simd::multiversion! {
    /// One Douglas–Rachford update of eq. (28) after `y = Πx`: `z = τ ω(log w − log τ +
    /// (2y − x)/τ)`, `x ← x + z − y`.
    pub fn dr_update(log_w: &[f64], y: &[f64], x: &mut [f64], z: &mut [f64], tau: f64) => dr_update_generic
}

/// `Proj^KL_{ker B}(w)` by Douglas–Rachford splitting, eq. (28), from `log w`:
/// `y = Πx`, `z = τ ω(log w − log τ + (2y − x)/τ)`, `x ← x + z − y`, starting at `x = w`;
/// returns `z` (the iterate of the KL prox, which is positive), with exact zeros (ω underflow)
/// replaced by the smallest positive entry so that `log z` stays finite.
pub fn douglas_rachford(proj: &KerBProjector, log_w: &[f64], tau: f64, n_iter: usize) -> Vec<f64> {
    let n = log_w.len();
    let mut x: Vec<f64> = log_w.iter().map(|v| v.exp()).collect();
    let mut z = x.clone();
    let mut y = vec![0.0; n];
    for _ in 0..n_iter {
        proj.project(&x, &mut y);
        x.par_chunks_mut(DR_CHUNK)
            .zip(z.par_chunks_mut(DR_CHUNK))
            .zip(y.par_chunks(DR_CHUNK).zip(log_w.par_chunks(DR_CHUNK)))
            .for_each(|((x, z), (y, lw))| dr_update(lw, y, x, z, tau));
    }
    let min_pos = z
        .iter()
        .copied()
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    if min_pos.is_finite() {
        z.iter_mut()
            .filter(|v| **v == 0.0)
            .for_each(|v| *v = min_pos);
    }
    z
}

/// The exact `Proj^KL_{ker B}(a)` from `log a`: `z = (R s, s)` with `s` minimising the convex
/// `KL(Rs | a_w) + KL(s | a_s)` (stationarity: `Rᵀ log(Rs/a_w) + log(s/a_s) = 0`).
/// For the sampled response it is closed form per gen point (`Σ_i r_i = 1` over its run):
/// `log s_k = ½(log a_s,k + Σ_{i∈k} r_i (log a_w,i − log r_i))` (`½(log a_s,k + mean log(M a_w,i))`
/// for M equal samples);
/// for a dense response it is Newton's method on `s` (Hessian `Rᵀdiag(1/Rs)R + diag(1/s)`, L×L
/// Cholesky) with step halving to keep `s > 0` and the objective decreasing.
pub fn exact_kl_projection(proj: &KerBProjector, log_a: &[f64]) -> Result<Vec<f64>> {
    let response = proj.response();
    let m = response.n_response();
    let l = response.n_gen();
    let (log_aw, log_as) = log_a.split_at(m);
    let s: Vec<f64> = match response {
        Response::Samples { offsets, weights } => log_as
            .iter()
            .zip(Response::runs(offsets, weights))
            .map(|(las, (rows, r))| {
                let mean: f64 = log_aw[rows]
                    .iter()
                    .zip(r)
                    .map(|(la, ri)| ri * (la - ri.ln()))
                    .sum();
                (0.5 * (las + mean)).exp()
            })
            .collect(),
        Response::Dense(r) => {
            let a_s: Vec<f64> = log_as.iter().map(|v| v.exp()).collect();
            let objective = |s: &[f64], w: &[f64]| -> f64 {
                let kl = |x: &[f64], la: &[f64]| {
                    x.iter()
                        .zip(la)
                        .map(|(x, la)| x * (x.ln() - la) - x + la.exp())
                        .sum::<f64>()
                };
                kl(w, log_aw) + kl(s, log_as)
            };
            let mut s = a_s.clone();
            let mut w = vec![0.0; m];
            response.apply(&s, &mut w);
            let mut f = objective(&s, &w);
            let mut grad = vec![0.0; l];
            let mut lw = vec![0.0; m];
            for _ in 0..100 {
                lw.iter_mut()
                    .zip(w.iter().zip(log_aw))
                    .for_each(|(o, (w, la))| *o = w.ln() - la);
                response.apply_t(&lw, &mut grad);
                grad.iter_mut()
                    .zip(s.iter().zip(log_as))
                    .for_each(|(g, (s, la))| *g += s.ln() - la);
                // H = Rᵀ diag(1/w) R + diag(1/s).
                let scaled = Array2::from_shape_fn((m, l), |(i, k)| r[(i, k)] / w[i].sqrt());
                let mut h = scaled.t().dot(&scaled);
                for k in 0..l {
                    h[(k, k)] += 1.0 / s[k];
                }
                let chol = cholesky(h)?;
                let mut step: Vec<f64> = grad.iter().map(|g| -g).collect();
                cholesky_solve(&chol, &mut step);
                let decrement: f64 = -step.iter().zip(&grad).map(|(d, g)| d * g).sum::<f64>();
                let mut t = 1.0;
                let mut accepted = false;
                for _ in 0..60 {
                    let trial: Vec<f64> = s.iter().zip(&step).map(|(s, d)| s + t * d).collect();
                    if trial.iter().all(|v| *v > 0.0) {
                        let mut tw = vec![0.0; m];
                        response.apply(&trial, &mut tw);
                        let tf = objective(&trial, &tw);
                        if tf <= f + 1e-4 * t * (-decrement) || decrement < 1e-28 {
                            s = trial;
                            w = tw;
                            f = tf;
                            accepted = true;
                            break;
                        }
                    }
                    t *= 0.5;
                }
                let rel = step
                    .iter()
                    .zip(&s)
                    .map(|(d, s)| (t * d / s).abs())
                    .fold(0.0, f64::max);
                if !accepted || rel < 1e-14 {
                    break;
                }
            }
            s
        }
    };
    let mut z = vec![0.0; m + l];
    response.apply(&s, &mut z[..m]);
    z[m..].copy_from_slice(&s);
    // At small ε an entry of `a` can be e^{−3000}, and its projection underflows to zero; the
    // scalings take its logarithm, so it is kept at the smallest normal number instead (the
    // unfolded weight stays zero to f64).
    z.iter_mut()
        .filter(|v| **v == 0.0)
        .for_each(|v| *v = f64::MIN_POSITIVE);
    if !z.iter().all(|v| v.is_finite() && *v > 0.0) {
        return Err(OtError::Numerical(
            "exact KL projection left the positive orthant".into(),
        ));
    }
    Ok(z)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn dense_blocks(l: usize, m: usize) -> Array2<f64> {
        let mut r = Array2::zeros((l * m, l));
        for k in 0..l {
            for i in 0..m {
                r[(k * m + i, k)] = 1.0 / m as f64;
            }
        }
        r
    }

    #[test]
    fn block_and_woodbury_projectors_agree_and_project() {
        let (l, m) = (5, 3);
        let blocks = KerBProjector::new(Response::new_blocks(l, m).unwrap()).unwrap();
        let dense = KerBProjector::new(Response::new_dense(dense_blocks(l, m)).unwrap()).unwrap();
        let x: Vec<f64> = (0..l * m + l)
            .map(|i| ((i * 7 % 11) as f64).sin())
            .collect();
        let (mut a, mut b, mut aa) = (vec![0.0; x.len()], vec![0.0; x.len()], vec![0.0; x.len()]);
        blocks.project(&x, &mut a);
        dense.project(&x, &mut b);
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() < 1e-14);
        }
        // In ker B and idempotent.
        assert!(blocks.residual(&a) < 1e-14);
        blocks.project(&a, &mut aa);
        for (p, q) in a.iter().zip(&aa) {
            assert!((p - q).abs() < 1e-14);
        }
    }

    /// A sampled response with 0–3 samples per gen point of unequal weights (gen points 2 and
    /// 5 are absent: only seen points enter the response), as the sampled and the dense form.
    fn ragged() -> (Response, Response) {
        let owner = [0, 0, 0, 1, 2, 2, 3, 4, 4];
        let raw = [1.0, 2.0, 0.5, 1.0, 0.3, 0.7, 4.0, 1.0, 1.0];
        let mut weights = raw.to_vec();
        for k in 0..5 {
            let total: f64 = (0..9).filter(|&i| owner[i] == k).map(|i| raw[i]).sum();
            (0..9)
                .filter(|&i| owner[i] == k)
                .for_each(|i| weights[i] = raw[i] / total);
        }
        let mut dense = Array2::zeros((9, 5));
        for (i, &k) in owner.iter().enumerate() {
            dense[(i, k)] = weights[i];
        }
        (
            Response::new_samples(&owner, weights, 5).unwrap(),
            Response::new_dense(dense).unwrap(),
        )
    }

    #[test]
    fn sampled_and_woodbury_projectors_agree_on_unequal_runs() {
        let (samples, dense) = ragged();
        let (a, b) = (
            KerBProjector::new(samples).unwrap(),
            KerBProjector::new(dense).unwrap(),
        );
        let x: Vec<f64> = (0..14).map(|i| ((i * 5 % 13) as f64).cos()).collect();
        let (mut pa, mut pb) = (vec![0.0; 14], vec![0.0; 14]);
        a.project(&x, &mut pa);
        b.project(&x, &mut pb);
        for (p, q) in pa.iter().zip(&pb) {
            assert!((p - q).abs() < 1e-14, "{p} vs {q}");
        }
        assert!(a.residual(&pa) < 1e-14);
        let log_x: Vec<f64> = x.iter().map(|v| v - 2.0).collect();
        let (za, zb) = (
            exact_kl_projection(&a, &log_x).unwrap(),
            exact_kl_projection(&b, &log_x).unwrap(),
        );
        for (p, q) in za.iter().zip(&zb) {
            assert!((p - q).abs() <= 1e-13 * p.abs(), "{p} vs {q}");
        }
    }

    #[test]
    fn sampled_response_rejects_unordered_rows_and_bad_shares() {
        assert!(Response::new_samples(&[0, 1, 0], vec![0.5, 1.0, 0.5], 2).is_err());
        assert!(Response::new_samples(&[0, 0], vec![0.5, 0.4], 1).is_err());
        assert!(Response::new_samples(&[0, 2], vec![1.0, 1.0], 3).is_err()); // point 1 empty
        assert!(Response::new_samples(&[0, 0], vec![1.0, 0.0], 1).is_err());
    }

    #[test]
    fn closed_form_and_newton_exact_projections_agree() {
        let (l, m) = (6, 4);
        let blocks = KerBProjector::new(Response::new_blocks(l, m).unwrap()).unwrap();
        let dense = KerBProjector::new(Response::new_dense(dense_blocks(l, m)).unwrap()).unwrap();
        let log_a: Vec<f64> = (0..l * m + l)
            .map(|i| -3.0 + ((i * 13 % 7) as f64).cos())
            .collect();
        let a = exact_kl_projection(&blocks, &log_a).unwrap();
        let b = exact_kl_projection(&dense, &log_a).unwrap();
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() <= 1e-13 * p.abs(), "{p} vs {q}");
        }
        assert!(blocks.residual(&a) < 1e-15);
    }

    #[test]
    fn vectorised_wright_omega_equals_the_scalar_one() {
        let t: Vec<f64> = (-4000..=4000)
            .map(|i| i as f64 * 0.37)
            .chain([
                -800.0,
                -50.5,
                -2.0,
                1.0,
                1e21,
                f64::NEG_INFINITY,
                f64::INFINITY,
            ])
            .collect();
        let (mut x, mut z) = (vec![0.0; t.len()], vec![0.0; t.len()]);
        // With y = x = 0 and τ = 1 the update's argument is log_w itself.
        dr_update(&t, &vec![0.0; t.len()], &mut x, &mut z, 1.0);
        for (t, w) in t.iter().zip(&z) {
            let expected = wright_omega(*t);
            if *t < -708.0 {
                assert!(*w == 0.0 && expected < 1e-307, "t={t}"); // subnormal e^t flushed to 0
                continue;
            }
            assert!(
                (w - expected).abs() <= 1e-14 * expected.abs() || w == &expected,
                "t={t}: {w} vs {expected}"
            );
        }
        assert!(z[z.len() - 1].is_infinite() && z[z.len() - 2] == 0.0);
    }

    #[test]
    fn wright_omega_solves_its_equation() {
        for i in -200..=200 {
            let t = i as f64 * 0.37;
            let w = wright_omega(t);
            if t > -30.0 {
                assert!(
                    ((w + w.ln()) - t).abs() <= 1e-14 * t.abs().max(1.0),
                    "t={t}"
                );
            }
        }
        assert_eq!(wright_omega(f64::NEG_INFINITY), 0.0);
    }
}
