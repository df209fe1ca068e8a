//! The KL projection onto `ker B = {(w, s) : w = R s}` by Douglas–Rachford splitting (Craig, Faktor, Nachman,
//! eq. 28), with the pieces it needs:
//!
//! * [`Response`]: the column-stochastic response `R` (m×L), either the sampled block form
//!   `R_ik = 1/M` (M consecutive detector samples per gen point) or a dense matrix.
//! * [`KerBProjector`]: the orthogonal projector `Π = I − Bᵀ(BBᵀ)⁻¹B` onto `ker B`,
//!   `B = [I_m, −R]`, applied without forming any (m+L)×(m+L) matrix: `Πx = (x_w − t, x_s + Rᵀt)`
//!   with `t = (I + RRᵀ)⁻¹(x_w − R x_s)`. For blocks `I + RRᵀ` is block diagonal with rank-one
//!   blocks (O(m+L) per application); for a dense R, Woodbury turns the m×m solve into one with
//!   the L×L matrix `I + RᵀR`, factored once by Cholesky.
//! * [`wright_omega`]: ω(t) = W₀(eᵗ), the overflow-free form of the Lambert W in eq. (28).

use ndarray::Array2;

use crate::core::error::{OtError, Result};

/// The response matrix `R` (m×L, columns sum to one, eq. 18).
#[derive(Clone, Debug)]
pub enum Response {
    /// `R_ik = 1/M` for `i ∈ [kM, (k+1)M)`: M detector samples of each of the L gen points.
    Blocks { n_gen: usize, per_point: usize },
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

    pub fn new_blocks(n_gen: usize, per_point: usize) -> Result<Self> {
        if n_gen == 0 || per_point == 0 {
            return Err(OtError::shape("reco", format!("needs at least one gen point and one sample each, got L={n_gen}, M={per_point}")));
        }
        Ok(Response::Blocks { n_gen, per_point })
    }

    /// m, the number of detector-level response points.
    pub fn n_response(&self) -> usize {
        match self {
            Response::Blocks { n_gen, per_point } => n_gen * per_point,
            Response::Dense(r) => r.nrows(),
        }
    }

    /// L, the number of gen points.
    pub fn n_gen(&self) -> usize {
        match self {
            Response::Blocks { n_gen, .. } => *n_gen,
            Response::Dense(r) => r.ncols(),
        }
    }

    /// `out = R s`.
    pub fn apply(&self, s: &[f64], out: &mut [f64]) {
        match self {
            Response::Blocks { per_point, .. } => {
                let w = 1.0 / *per_point as f64;
                for (block, sk) in out.chunks_exact_mut(*per_point).zip(s) {
                    block.fill(sk * w);
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
            Response::Blocks { per_point, .. } => {
                let inv = 1.0 / *per_point as f64;
                for (o, block) in out.iter_mut().zip(w.chunks_exact(*per_point)) {
                    *o = block.iter().sum::<f64>() * inv;
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
    /// Lower Cholesky factor of `I_L + RᵀR` (dense responses only, for Woodbury).
    chol: Option<Array2<f64>>,
}

impl KerBProjector {
    pub fn new(response: Response) -> Result<Self> {
        let chol = match &response {
            Response::Blocks { .. } => None,
            Response::Dense(r) => {
                let mut g = r.t().dot(r);
                g.diag_mut().iter_mut().for_each(|v| *v += 1.0);
                Some(cholesky(g)?)
            }
        };
        Ok(KerBProjector { response, chol })
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
        let m = self.response.n_response();
        let (xw, xs) = x.split_at(m);
        let (ow, os) = out.split_at_mut(m);
        // r = B x = x_w − R x_s, kept in ow.
        self.response.apply(xs, ow);
        ow.iter_mut().zip(xw).for_each(|(o, w)| *o = w - *o);
        match (&self.response, &self.chol) {
            (Response::Blocks { per_point, .. }, _) => {
                // (I + c 11ᵀ)⁻¹ = I − c/(1 + cM) 11ᵀ per block, c = 1/M²: c/(1+cM) = 1/(M(M+1)).
                let mm = *per_point as f64;
                let c = 1.0 / (mm * (mm + 1.0));
                for block in ow.chunks_exact_mut(*per_point) {
                    let s: f64 = block.iter().sum::<f64>() * c;
                    block.iter_mut().for_each(|v| *v -= s);
                }
            }
            (Response::Dense(r), Some(chol)) => {
                // Woodbury: (I + RRᵀ)⁻¹ r = r − R (I + RᵀR)⁻¹ Rᵀ r.
                self.response.apply_t(ow, os);
                cholesky_solve(chol, os);
                for (o, row) in ow.iter_mut().zip(r.rows()) {
                    *o -= row.iter().zip(os.iter()).map(|(a, b)| a * b).sum::<f64>();
                }
            }
            (Response::Dense(_), None) => unreachable!("dense responses always carry their factor"),
        }
        // ow holds t now.
        self.response.apply_t(ow, os);
        os.iter_mut().zip(xs).for_each(|(o, s)| *o += s);
        ow.iter_mut().zip(xw).for_each(|(o, w)| *o = w - *o);
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

/// `Proj^KL_{ker B}(w)` by Douglas–Rachford splitting, eq. (28), from `log w`:
/// `y = Πx`, `z = τ ω(log w − log τ + (2y − x)/τ)`, `x ← x + z − y`, starting at `x = w`;
/// returns `z` (the iterate of the KL prox, which is positive), with exact zeros (ω underflow)
/// replaced by the smallest positive entry so that `log z` stays finite.
pub fn douglas_rachford(proj: &KerBProjector, log_w: &[f64], tau: f64, n_iter: usize) -> Vec<f64> {
    let n = log_w.len();
    let mut x: Vec<f64> = log_w.iter().map(|v| v.exp()).collect();
    let mut z = x.clone();
    let mut y = vec![0.0; n];
    let log_tau = tau.ln();
    let inv_tau = 1.0 / tau;
    for _ in 0..n_iter {
        proj.project(&x, &mut y);
        for i in 0..n {
            z[i] = tau * wright_omega(log_w[i] - log_tau + (2.0 * y[i] - x[i]) * inv_tau);
            x[i] += z[i] - y[i];
        }
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
/// For the block response this is closed-form, `log s_k = ½(log a_s,k + mean_{i∈k} log(M a_w,i))`;
/// for a dense response it is Newton's method on `s` (Hessian `Rᵀdiag(1/Rs)R + diag(1/s)`, L×L
/// Cholesky) with step halving to keep `s > 0` and the objective decreasing.
pub fn exact_kl_projection(proj: &KerBProjector, log_a: &[f64]) -> Result<Vec<f64>> {
    let response = proj.response();
    let m = response.n_response();
    let l = response.n_gen();
    let (log_aw, log_as) = log_a.split_at(m);
    let s: Vec<f64> = match response {
        Response::Blocks { per_point, .. } => {
            let mm = *per_point as f64;
            log_as
                .iter()
                .zip(log_aw.chunks_exact(*per_point))
                .map(|(las, block)| {
                    let mean = block.iter().sum::<f64>() / mm + mm.ln();
                    (0.5 * (las + mean)).exp()
                })
                .collect()
        }
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
