//! One marginal of the iteration ([`Side`]: weights, potential, reach) and the two operations
//! on it: the damped, possibly over-relaxed softmin update and the marginal error it gives
//! for free.

use super::*;

/// One marginal: weights, their logs, its potential and its relaxation.
pub(super) struct Side {
    pub(super) weights: Vec<f64>,
    pub(super) log_weights: Vec<f64>,
    pub(super) mass: f64,
    pub(super) reach: Option<f64>,
    pub(super) potential: Vec<f64>,
    pub(super) axis: Axis,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Axis {
    Rows,
    Cols,
}

impl Side {
    pub(super) fn damping(&self, eps: f64) -> f64 {
        self.reach.map_or(1.0, |rho| 1.0 / (1.0 + eps / rho))
    }

    /// `potential + ε log w`: the term this side contributes to the other side's softmin.
    pub(super) fn term(&self, eps: f64, out: &mut [f64]) {
        for ((o, p), lw) in out.iter_mut().zip(&self.potential).zip(&self.log_weights) {
            *o = p + eps * lw;
        }
    }

    /// `φ ← φ + ω (λ φ̃ − φ)` with ω shrunk (never below 1) until the dual objective does not
    /// decrease; returns the factor used.
    pub(super) fn relax(&mut self, softmin: &[f64], eps: f64, omega: f64) -> f64 {
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
    pub(super) fn average(&mut self, softmin: &[f64], eps: f64) {
        let half_lam = 0.5 * self.damping(eps);
        self.potential
            .iter_mut()
            .zip(softmin)
            .for_each(|(p, s)| *p = 0.5 * *p + half_lam * s);
    }

    /// [`marginal_distance`] of this side's plan marginal `w e^{(φ − φ̃)/ε}` to its target
    /// `w e^{−φ/ρ}`, given `φ̃ = softmin` of the other side.
    pub(super) fn error(&self, softmin: &[f64], eps: f64) -> f64 {
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
    pub(super) fn plan_error(&self, marginal: &[f64]) -> f64 {
        let entries = marginal
            .iter()
            .zip(&self.weights)
            .zip(&self.potential)
            .filter(|((_, w), _)| **w > 0.0)
            .map(|((r, w), p)| (*w, (r / w).ln(), self.log_target(*p)));
        marginal_distance(entries, self.mass, self.reach.is_some())
    }

    /// `log(target/w)` of one entry: `−φ/ρ`, or 0 for an exact side.
    pub(super) fn log_target(&self, potential: f64) -> f64 {
        self.reach.map_or(0.0, |rho| -potential / rho)
    }
}

/// `φ + ω (λ φ̃ − φ)` of one entry (`λ φ̃` exactly for ω = 1).
#[inline]
pub(super) fn relaxed(potential: f64, softmin: f64, damping: f64, omega: f64) -> f64 {
    if omega == 1.0 {
        damping * softmin
    } else {
        (1.0 - omega) * potential + (omega * damping) * softmin
    }
}

/// `Σ_i w_i |e^{(φ_i − φ̃_i)/ε} − 1|` over the positive weights: the unnormalised
/// [`marginal_distance`] of an exact side from its potential and softmin, vectorised.
#[inline(always)]
pub(super) fn exact_distance_generic<const FMA: bool>(
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
pub(super) fn marginal_distance(
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
pub(super) fn abs_diff_exp(u: f64, v: f64) -> f64 {
    let (hi, lo) = if u >= v { (u, v) } else { (v, u) };
    if hi == lo {
        return 0.0;
    }
    -hi.exp() * (lo - hi).exp_m1()
}

/// Computes `softmin` of `to`'s axis against the `from` side's term.
pub(super) fn softmin<K: CostKernel + ?Sized>(
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
