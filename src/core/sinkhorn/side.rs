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
    /// Whether the two sides carry the same weights and relaxation (a self-transport).
    pub(super) fn mirrors(&self, other: &Side) -> bool {
        self.weights == other.weights && self.reach == other.reach
    }

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

    /// [`Side::marginal_distance`] of this side's plan marginal `w e^{(φ − φ̃)/ε}` to its target
    /// `w e^{−φ/ρ}`, given `φ̃ = softmin` of the other side.
    pub(super) fn error(&self, softmin: &[f64], eps: f64) -> f64 {
        let inv_eps = 1.0 / eps;
        let Some(rho) = self.reach else {
            return exact_distance(&self.weights, &self.potential, softmin, inv_eps) / self.mass;
        };
        let log_ratio: Vec<f64> = (self.potential.iter().zip(softmin))
            .map(|(p, s)| (p - s) * inv_eps)
            .collect();
        self.marginal_distance(&log_ratio, rho)
    }

    /// [`Side::marginal_distance`] of a plan marginal (computed from the plan itself) to this side's
    /// target.
    pub(super) fn plan_error(&self, marginal: &[f64]) -> f64 {
        let Some(rho) = self.reach else {
            let positive = marginal
                .iter()
                .zip(&self.weights)
                .filter(|(_, w)| **w > 0.0);
            return positive.map(|(r, w)| (r - w).abs()).sum::<f64>() / self.mass;
        };
        let log_ratio: Vec<f64> = (marginal.iter().zip(&self.weights))
            .map(|(r, w)| (r / w).ln())
            .collect();
        self.marginal_distance(&log_ratio, rho)
    }

    /// `‖m − t‖₁` relative to the larger of the weights' mass and the target's mass `‖t‖₁`, of
    /// the plan marginal `m_i = w_i e^{u_i}` (`u` = `log_ratio`) and this relaxed side's target
    /// `t_i = w_i e^{−φ_i/ρ}`, over the positive weights. A relaxed target can be orders of
    /// magnitude above or below its weights, and the rounding of the potentials sets a floor
    /// relative to the larger of the two; the target's sums are scaled by its largest exponent,
    /// so they stay within f64's range.
    fn marginal_distance(&self, log_ratio: &[f64], rho: f64) -> f64 {
        let inv_rho = 1.0 / rho;
        let top = self.top_log_target(inv_rho);
        let [to_weights, distance, target] =
            relaxed_distance_sums(&self.weights, log_ratio, &self.potential, [inv_rho, top]);
        let to_target = if distance == 0.0 {
            0.0
        } else {
            distance / target
        };
        // `min` keeps a finite measure when the other one left f64's range; NaN only from both.
        (to_weights / self.mass).min(to_target)
    }

    /// The largest `log(t_i/w_i) = −φ_i/ρ` over the positive weights (`inv_rho` = 1/ρ).
    fn top_log_target(&self, inv_rho: f64) -> f64 {
        (self.weights.iter().zip(&self.potential))
            .filter(|(w, _)| **w > 0.0)
            .fold(f64::NEG_INFINITY, |t, (_, p)| t.max(-p * inv_rho))
    }

    /// `log ‖t‖₁` of this side's target `t_i = w_i e^{−φ_i/ρ}` (the weights for an exact side),
    /// summed relative to its largest exponent so that it stays within f64's range.
    fn log_target_mass(&self) -> f64 {
        let Some(rho) = self.reach else {
            return self.mass.ln();
        };
        let inv_rho = 1.0 / rho;
        let top = self.top_log_target(inv_rho);
        top + scaled_target_mass(&self.weights, &self.potential, [inv_rho, top]).ln()
    }

    /// `1/ρ`, 0 for an exact side: the curvature of its dual term along a translation.
    fn inv_reach(&self) -> f64 {
        self.reach.map_or(0.0, |rho| 1.0 / rho)
    }
}

/// Moves `(φ_first, φ_last)` to `(φ_first + t, φ_last − t)` with the `t` that maximises the
/// dual over such translations: the translation-invariant Sinkhorn step of Séjourné, Vialard &
/// Peyré (2023, "Faster unbalanced optimal transport: translation invariant Sinkhorn and 1-D
/// Frank–Wolfe"). The plan `∝ e^{(φ_i + ψ_j − C_ij)/ε}` is unchanged; only the relaxed terms
/// `−ρ Σ w (e^{−φ/ρ} − 1)` (`Σ w φ` for an exact side) move, and setting their derivative
/// `‖t_first‖₁ e^{−t/ρ_first} − ‖t_last‖₁ e^{t/ρ_last}` to zero gives
/// `t = log(‖t_first‖₁/‖t_last‖₁) / (1/ρ_first + 1/ρ_last)`.
///
/// Why: each relaxed update is damped by `λ = ρ/(ρ + ε)` (a contraction of that ratio, Chizat,
/// Peyré, Schmitzer & Vialard 2018, "Scaling algorithms for unbalanced optimal transport
/// problems"), and along the translation — the direction in which a balanced dual is flat —
/// nothing else contracts: a shift `δ` of φ comes back as `λ_first λ_last δ` after a full
/// iteration. For ε ≪ ρ that is the iteration's slowest mode (measured: the plain rate of the
/// n = 1000, ε = 1e-2, ρ = 0.1 bench problem is 0.82 = λ²). This step solves it exactly at
/// O(n + m) per iteration; a no-op when both sides are exact.
pub(super) fn translate(first: &mut Side, last: &mut Side) {
    let curvature = first.inv_reach() + last.inv_reach();
    if curvature == 0.0 {
        return;
    }
    let t = (first.log_target_mass() - last.log_target_mass()) / curvature;
    if !t.is_finite() || t == 0.0 {
        return;
    }
    first.potential.iter_mut().for_each(|p| *p += t);
    last.potential.iter_mut().for_each(|p| *p -= t);
}

/// `Σ w e^{−φ/ρ − top}` over the positive weights, `args` = (1/ρ, top).
#[inline(always)]
fn scaled_target_mass_generic<const FMA: bool>(
    weights: &[f64],
    potential: &[f64],
    args: [f64; 2],
) -> f64 {
    let [inv_rho, top] = args;
    simd::sum_lanes(
        weights,
        potential,
        potential,
        #[inline(always)]
        |w: f64, p: f64, _| {
            let t = w * simd::exp::<FMA>(-p * inv_rho - top);
            if w > 0.0 {
                t
            } else {
                0.0
            }
        },
    )
}

simd::multiversion! { pub fn scaled_target_mass(weights: &[f64], potential: &[f64], args: [f64; 2]) -> f64 => scaled_target_mass_generic }

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
/// [`Side::marginal_distance`] of an exact side from its potential and softmin, vectorised.
#[inline(always)]
pub(super) fn exact_distance_generic<const FMA: bool>(
    weights: &[f64],
    potential: &[f64],
    softmin: &[f64],
    inv_eps: f64,
) -> f64 {
    simd::sum_lanes(
        weights,
        potential,
        softmin,
        #[inline(always)]
        |w: f64, p: f64, s: f64| {
            let d = w * simd::expm1::<FMA>((p - s) * inv_eps).abs();
            if w > 0.0 {
                d
            } else {
                0.0
            }
        },
    )
}

simd::multiversion! { pub fn exact_distance(weights: &[f64], potential: &[f64], softmin: &[f64], inv_eps: f64) -> f64 => exact_distance_generic }

/// `|e^u − e^v|` as `e^{max} |expm1(min − max)|`, without `∞ − ∞`: far from the solution
/// both can leave f64's range (a relaxed marginal's target `e^{−φ/ρ}` on a cost shifted by
/// −300 at ρ = 0.1), and the error is then infinite, not NaN. Branch-free for the lanes of
/// [`simd::sum_lanes`]; `e^{max}` is squared from `e^{max/2}` so that it overflows to ∞ where
/// `f64::exp` does instead of stopping at [`simd::exp`]'s clamp.
#[inline(always)]
fn abs_diff_exp<const FMA: bool>(u: f64, v: f64) -> f64 {
    let ordered = u >= v;
    let (hi, lo) = (if ordered { u } else { v }, if ordered { v } else { u });
    let half = simd::exp::<FMA>(0.5 * hi);
    let diff = -(half * half) * simd::expm1::<FMA>(lo - hi);
    if hi == lo {
        0.0
    } else {
        diff
    }
}

/// The three sums behind [`Side::marginal_distance`] over the positive weights `w`, with
/// `u` = `log_ratio`, `v = −φ/ρ` and `args` = (1/ρ, the largest `v`):
/// `[Σ w |e^u − e^v|, Σ w |e^{u−top} − e^{v−top}|, Σ w e^{v−top}]`.
#[inline(always)]
fn relaxed_distance_sums_generic<const FMA: bool>(
    weights: &[f64],
    log_ratio: &[f64],
    potential: &[f64],
    args: [f64; 2],
) -> [f64; 3] {
    let [inv_rho, top] = args;
    simd::sum_lanes_n(
        weights,
        log_ratio,
        potential,
        #[inline(always)]
        |w: f64, u: f64, p: f64| {
            let v = -p * inv_rho;
            let sums = [
                w * abs_diff_exp::<FMA>(u, v),
                w * abs_diff_exp::<FMA>(u - top, v - top),
                w * simd::exp::<FMA>(v - top),
            ];
            if w > 0.0 {
                sums
            } else {
                [0.0; 3]
            }
        },
    )
}

simd::multiversion! { pub fn relaxed_distance_sums(weights: &[f64], log_ratio: &[f64], potential: &[f64], args: [f64; 2]) -> [f64; 3] => relaxed_distance_sums_generic }

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sinkhorn::relaxation::{exact_dual_gain, relaxed_dual_gain};
    use crate::core::testing::uniform;

    /// `|e^u − e^v|` with libm's scalar exponentials.
    fn scalar_abs_diff_exp(u: f64, v: f64) -> f64 {
        let (hi, lo) = if u >= v { (u, v) } else { (v, u) };
        if hi == lo {
            return 0.0;
        }
        -hi.exp() * (lo - hi).exp_m1()
    }

    /// The relaxed marginal distance as a scalar loop over libm's exponentials.
    fn scalar_distance(w: &[f64], u: &[f64], p: &[f64], rho: f64, mass: f64) -> f64 {
        let entries: Vec<(f64, f64, f64)> = (0..w.len())
            .filter(|&i| w[i] > 0.0)
            .map(|i| (w[i], u[i], -p[i] / rho))
            .collect();
        let to_weights: f64 = entries
            .iter()
            .map(|&(w, u, v)| w * scalar_abs_diff_exp(u, v))
            .sum::<f64>()
            / mass;
        let top = entries.iter().fold(f64::NEG_INFINITY, |t, e| t.max(e.2));
        let distance: f64 = entries
            .iter()
            .map(|&(w, u, v)| w * scalar_abs_diff_exp(u - top, v - top))
            .sum();
        let target: f64 = entries.iter().map(|&(w, _, v)| w * (v - top).exp()).sum();
        let to_target = if distance == 0.0 {
            0.0
        } else {
            distance / target
        };
        to_weights.min(to_target)
    }

    /// The relaxed dual gain as a scalar loop over libm's exponentials, and the sum of its
    /// terms' magnitudes (the scale its rounding is relative to).
    fn scalar_dual_gain(w: &[f64], p: &[f64], s: &[f64], args: [f64; 4]) -> (f64, f64) {
        let [omega_lam, omega, eps, rho] = args;
        let terms: Vec<f64> = (0..w.len())
            .filter(|&i| w[i] != 0.0)
            .map(|i| {
                let step = omega_lam * s[i] - omega * p[i];
                let marginal = w[i] * ((p[i] - s[i]) / eps).exp();
                let linear = -rho * w[i] * (-p[i] / rho).exp() * (-step / rho).exp_m1();
                linear - eps * marginal * (step / eps).exp_m1()
            })
            .collect();
        (terms.iter().sum(), terms.iter().map(|t| t.abs()).sum())
    }

    fn relative(a: f64, b: f64) -> f64 {
        if a == b {
            0.0
        } else {
            (a - b).abs() / b.abs()
        }
    }

    /// A relaxed side at ε = 1e-5 on potentials of order 1 (costs of order 1): `near` softmins
    /// within a few ε of the potentials (a state near the solution), or up to 1 away (the
    /// marginal `w e^{(φ − φ̃)/ε}` then leaves f64's range both ways).
    fn extreme_side(n: usize, seed: u64, near: bool, rho: f64) -> (Side, Vec<f64>) {
        let (eps, mut next) = (1e-5, uniform(seed));
        let weights: Vec<f64> = (0..n)
            .map(|i| if i % 17 == 3 { 0.0 } else { next() / n as f64 })
            .collect();
        let potential: Vec<f64> = (0..n).map(|_| 2.0 * next() - 1.0).collect();
        let softmin: Vec<f64> = potential
            .iter()
            .map(|p| p + if near { 3.0 * eps } else { 1.0 } * (2.0 * next() - 1.0))
            .collect();
        let side = Side {
            mass: weights.iter().sum(),
            log_weights: weights.iter().map(|w| w.ln()).collect(),
            weights,
            reach: Some(rho),
            potential,
            axis: Axis::Rows,
        };
        (side, softmin)
    }

    #[test]
    fn vectorised_relaxed_error_equals_the_scalar_formula() {
        let eps = 1e-5;
        for (seed, near, rho) in [
            (1, true, 0.1),
            (2, true, 1e-4),
            (3, true, 10.0),
            (4, false, 0.1),
            (5, false, 1e-4),
        ] {
            // Lengths around the lanes' chunks and their remainders.
            for n in [1, 7, 8, 61, 1000] {
                let (side, softmin) = extreme_side(n, seed + n as u64, near, rho);
                let u: Vec<f64> = (side.potential.iter().zip(&softmin))
                    .map(|(p, s)| (p - s) / eps)
                    .collect();
                let exact = scalar_distance(&side.weights, &u, &side.potential, rho, side.mass);
                let fast = side.error(&softmin, eps);
                if near {
                    assert!(exact.is_finite() && fast.is_finite(), "{fast} vs {exact}");
                }
                if exact.is_finite() {
                    assert!(relative(fast, exact) < 1e-14, "n {n}: {fast} vs {exact}");
                } else {
                    assert_eq!(fast, exact, "n {n}");
                }
                // Both instruction-set variants, against the same sums.
                let inv_rho = 1.0 / rho;
                let top = side.top_log_target(inv_rho);
                let args = [inv_rho, top];
                let plain = relaxed_distance_sums_generic::<false>(
                    &side.weights,
                    &u,
                    &side.potential,
                    args,
                );
                let fused =
                    relaxed_distance_sums_generic::<true>(&side.weights, &u, &side.potential, args);
                for (a, b) in plain.iter().zip(&fused) {
                    assert!(relative(*a, *b) < 1e-14 || (a.is_infinite() && a == b));
                }
            }
        }
    }

    #[test]
    fn vectorised_dual_gains_equal_the_scalar_formula() {
        let eps = 1e-5;
        for (seed, rho) in [(11, 0.1), (12, 1.0), (13, 10.0)] {
            for n in [1, 9, 1000] {
                let (side, softmin) = extreme_side(n, seed + n as u64, true, rho);
                let lam = 1.0 / (1.0 + eps / rho);
                for omega in [1.0, 1.3, 1.9] {
                    let args = [omega * lam, omega, eps, rho];
                    let (exact, scale) =
                        scalar_dual_gain(&side.weights, &side.potential, &softmin, args);
                    let fast = relaxed_dual_gain(&side.weights, &side.potential, &softmin, args);
                    assert!(fast.is_finite(), "n {n}, ω {omega}");
                    assert!((fast - exact).abs() <= 1e-14 * scale, "{fast} vs {exact}");
                    // The exact side's gain: the relaxed one's limit ρ → ∞ (λ = 1).
                    let exact_gain = exact_dual_gain(
                        &side.weights,
                        &side.potential,
                        &softmin,
                        [omega, omega, eps],
                    );
                    let far = [omega, omega, eps, 1e12];
                    let (limit, scale) =
                        scalar_dual_gain(&side.weights, &side.potential, &softmin, far);
                    assert!(
                        (exact_gain - limit).abs() <= 1e-9 * scale,
                        "{exact_gain} vs {limit}"
                    );
                }
            }
        }
    }
}
