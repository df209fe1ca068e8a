//! Adaptive over-relaxation of the alternating Sinkhorn updates, with two safeguards that make
//! it never worse than plain Sinkhorn by more than a few iterations.
//!
//! A relaxed half-step is `φ ← φ + ω (λ φ̃ − φ)`, with `φ̃` the softmin of the other side and
//! `ω ∈ [1, 2)`; ω = 1 is the plain (exact block-maximising) update. The factor comes from the
//! plain contraction rate θ through the SOR optimum `ω = 2/(1 + √(1 − θ))` (Thibault, Chizat,
//! Dossal, Papadakis 2017, "Overrelaxed Sinkhorn–Knopp", §3; Lehmann, von Renesse, Sambale,
//! Uschmajew 2022, "A note on overrelaxation in the Sinkhorn algorithm").
//!
//! * **Monotone dual** (Thibault et al., Thm. 1): each relaxed half-step must not decrease the
//!   dual objective; [`safe_factor`] shrinks ω (never below 1) until it does, so the iteration
//!   cannot diverge or run to a non-finite state.
//! * **Rate monitor**: [`Relaxation::observe`] measures the rate actually reached under ω over
//!   a window and goes back to plain updates for good when it is no better than the plain rate,
//!   so a stalling relaxation costs one window, not thousands of iterations.
//! * **Plain probes**: a steady rate may be a plateau of the plain iteration before a fast
//!   descent, and beyond the optimal factor the relaxed rate is ω − 1 whatever the plain rate
//!   (SOR theory), so the relaxed rate alone cannot tell a factor that is too large. At doubling
//!   intervals a short run of plain updates is compared with it, and the faster one is kept.

use crate::core::simd::{exp, expm1, multiversion, sum_lanes};

/// Plain iterations before θ is first estimated, and the window of each rate estimate.
const WARMUP: usize = 20;
const WINDOW: usize = 10;
/// Relaxed iterations between re-estimates of θ (the early plain rate underestimates the slow
/// asymptotic one, so ω may grow as the run goes on).
const PERIOD: usize = 50;
/// Below this plain rate the iteration is already fast and relaxation gains little.
const MIN_RATE: f64 = 0.5;
/// Above this the error is on a plateau (a phase of the iteration, not its asymptotic rate):
/// factors built on it held back the break-out that plain updates make after it.
const MAX_RATE: f64 = 0.9995;
/// How far apart (relative, in log) two consecutive window rates may be to count as steady.
const STEADY: f64 = 0.25;
/// Switches that did not pay before relaxation is given up on for this ε.
const MAX_FAILURES: usize = 3;
/// The SOR rate of the optimal factor is ω − 1, so ω near 2 matters at tiny ε (θ = 0.9999
/// wants ω = 1.98); beyond 1.99 the relaxed error oscillates too slowly to be judged.
const MAX_FACTOR: f64 = 1.99;
/// Bisection steps of [`safe_factor`].
const SAFE_STEPS: usize = 8;
/// Plain updates of a probe; only the second window's rate counts (the first one also damps
/// the oscillation the relaxed updates left).
const PROBE: usize = 2 * WINDOW;

/// ω for a plain contraction rate θ (the SOR optimum), capped below 2.
fn factor_for_rate(theta: f64) -> f64 {
    (2.0 / (1.0 + (1.0 - theta.clamp(0.0, 1.0)).sqrt())).clamp(1.0, MAX_FACTOR)
}

/// The plain rate θ implied by the rate observed under ω, from the SOR relation
/// `(rate + ω − 1)² = rate · ω² · θ`.
fn plain_rate(rate: f64, omega: f64) -> f64 {
    (rate + omega - 1.0).powi(2) / (rate * omega * omega)
}

/// Whether `rate` is faster than `than`; a NaN rate (a broken-down estimate) is not.
fn beats(rate: f64, than: f64) -> bool {
    rate.partial_cmp(&than) == Some(std::cmp::Ordering::Less)
}

/// The last error observed, where a new measurement starts (every caller runs after one).
fn last_only(errors: &[f64]) -> Vec<f64> {
    errors.last().into_iter().copied().collect()
}

/// Geometric mean rate over the last `window` entries of `errors`.
fn rate(errors: &[f64], window: usize) -> f64 {
    let n = errors.len();
    (errors[n - 1] / errors[n - 1 - window]).powf(1.0 / window as f64)
}

/// The state of the adaptive factor over the iterations of one ε.
///
/// Under ω > 1 the marginal error of the relaxed iterate overstates how far the state is from
/// the solution (the overshoot that a plain step removes), so ω is judged only on *projected*
/// errors, measured after a plain update of the last side every [`WINDOW`] iterations (the
/// iteration asks [`Relaxation::wants_projected_error`]).
pub(crate) struct Relaxation {
    omega: f64,
    /// The factor to return to when ω turns out not to pay: 1 after a first switch, the
    /// previous factor after a raise.
    fallback: f64,
    /// Under plain updates, the errors of the last iterations; under ω > 1, the projected
    /// errors since ω last changed (the first one is the error at the switch).
    errors: Vec<f64>,
    /// Iterations since ω last changed.
    since_switch: usize,
    /// When the rate reached since the switch is first judged.
    judged_after: usize,
    /// The rate ω has to beat: θ measured under plain updates, or the rate of the factor ω
    /// was raised from.
    rate_to_beat: f64,
    /// Switches from plain updates that did not pay.
    failures: usize,
    /// Whether ω may still be raised.
    raising: bool,
    /// Relaxed iterations since the last probe of plain updates, and how many the next waits for.
    unprobed: usize,
    probe_after: usize,
    probe: Option<Probe>,
    enabled: bool,
}

/// A run of plain updates that interrupts the relaxed ones.
struct Probe {
    omega: f64,
    fallback: f64,
    /// The rate reached under ω just before.
    relaxed_rate: f64,
    /// The projected error at its start, then the plain errors.
    errors: Vec<f64>,
}

impl Relaxation {
    pub(crate) fn new(enabled: bool) -> Self {
        Relaxation {
            omega: 1.0,
            fallback: 1.0,
            errors: Vec::new(),
            since_switch: 0,
            judged_after: WINDOW,
            rate_to_beat: 1.0,
            failures: 0,
            raising: true,
            unprobed: 0,
            probe_after: PERIOD,
            probe: None,
            enabled,
        }
    }

    /// The factor for the next iteration.
    pub(crate) fn omega(&self) -> f64 {
        self.omega
    }

    /// Whether the next observed error must be a projected one.
    pub(crate) fn wants_projected_error(&self) -> bool {
        self.omega > 1.0 && (self.since_switch + 1).is_multiple_of(WINDOW)
    }

    /// Records the marginal error after a full iteration and adapts ω.
    pub(crate) fn observe(&mut self, err: f64) {
        if !self.enabled {
            return;
        }
        if let Some(probe) = self.probe.as_mut() {
            probe.errors.push(err);
            if probe.errors.len() > PROBE {
                self.end_probe();
            }
            return;
        }
        if self.omega == 1.0 {
            self.errors.push(err);
            self.try_first_switch();
            return;
        }
        self.since_switch += 1;
        self.unprobed += 1;
        if !self.since_switch.is_multiple_of(WINDOW) {
            return;
        }
        self.errors.push(err);
        let since = self.since_switch;
        if since == self.judged_after {
            if !beats(
                rate(&self.errors, since / WINDOW).powf(1.0 / since as f64),
                self.rate_to_beat,
            ) {
                self.fail();
            }
        } else if since > self.judged_after && since.is_multiple_of(PERIOD) {
            // Plain Sinkhorn slows down as it converges, so later stretches are not compared
            // with the rate measured at the switch; they only have to make progress.
            let observed = rate(&self.errors, PERIOD / WINDOW).powf(1.0 / PERIOD as f64);
            if !beats(observed, 1.0) {
                self.fail();
            } else if self.unprobed >= self.probe_after {
                self.start_probe(observed);
            } else if self.raising {
                self.raise(observed);
            }
        }
    }

    /// Interrupts ω for [`PROBE`] plain updates.
    fn start_probe(&mut self, relaxed_rate: f64) {
        self.probe = Some(Probe {
            omega: self.omega,
            fallback: self.fallback,
            relaxed_rate,
            errors: last_only(&self.errors),
        });
        self.omega = 1.0;
    }

    /// Keeps plain updates when their rate beat the relaxed one, else resumes ω and probes again
    /// after twice as many relaxed iterations.
    fn end_probe(&mut self) {
        let Some(probe) = self.probe.take() else {
            return;
        };
        let plain = rate(&probe.errors, WINDOW);
        self.errors = last_only(&probe.errors);
        if beats(plain, probe.relaxed_rate) {
            self.fallback = 1.0;
            self.give_up_for_now();
            return;
        }
        self.unprobed = 0;
        self.probe_after *= 2;
        self.fallback = probe.fallback;
        self.switch_to(probe.omega, 1.0, PERIOD);
    }

    /// Raises ω to the SOR optimum of the plain rate implied by the rate observed under ω.
    fn raise(&mut self, observed: f64) {
        let omega = factor_for_rate(plain_rate(observed, self.omega));
        if omega > self.omega + 1e-3 {
            // Judged on progress only: right after a raise the relaxed error oscillates, and a
            // stretch slower than the one before says little about the asymptotic rate.
            self.fallback = self.omega;
            self.switch_to(omega, 1.0, PERIOD);
        }
    }

    /// Under plain updates: switch once two consecutive windows show the same steady rate (a
    /// plateau followed by a descent is not a rate to build ω on).
    fn try_first_switch(&mut self) {
        let n = self.errors.len();
        if n < WARMUP.max(2 * WINDOW + 1) {
            return;
        }
        let late = rate(&self.errors, WINDOW);
        let early = rate(&self.errors[..n - WINDOW], WINDOW);
        let steady = (early.ln() / late.ln() - 1.0).abs() <= STEADY;
        let useful = |r: f64| r.is_finite() && r > MIN_RATE && r < MAX_RATE;
        if useful(late) && useful(early) && steady {
            self.unprobed = 0;
            self.probe_after = PERIOD;
            self.switch_to(factor_for_rate(late.max(early)), late.max(early), WINDOW);
        } else {
            self.errors.remove(0);
        }
    }

    /// ω did not beat the rate it replaced: back to the fallback factor.
    fn fail(&mut self) {
        if self.fallback > 1.0 {
            let omega = self.fallback;
            self.fallback = 1.0;
            self.raising = false;
            self.switch_to(omega, 1.0, PERIOD);
            return;
        }
        self.errors = last_only(&self.errors);
        self.give_up_for_now();
    }

    /// Back to plain updates, until a new steady rate is measured (or for good after
    /// [`MAX_FAILURES`]); `errors` holds the last error.
    fn give_up_for_now(&mut self) {
        self.omega = 1.0;
        self.failures += 1;
        self.enabled = self.failures < MAX_FAILURES;
    }

    /// Starts measuring under `omega`, which has to beat `rate_to_beat` over the first
    /// `judged_after` iterations (a raise is judged over a longer stretch: near ω = 2 the relaxed
    /// error oscillates, and one window says little) and over every [`PERIOD`] after that.
    fn switch_to(&mut self, omega: f64, rate_to_beat: f64, judged_after: usize) {
        self.omega = omega;
        self.rate_to_beat = rate_to_beat;
        self.judged_after = judged_after;
        self.since_switch = 0;
        self.errors = last_only(&self.errors);
    }
}

/// One side's half-step as the dual objective sees it.
pub(super) struct HalfStep<'a> {
    pub weights: &'a [f64],
    pub potential: &'a [f64],
    /// The softmin of the other side, `φ̃`.
    pub softmin: &'a [f64],
    /// The damping λ of this side.
    pub damping: f64,
    pub reach: Option<f64>,
    pub eps: f64,
}

impl HalfStep<'_> {
    /// Change of the dual objective `Σ_i A(φ_i) − ε Σ_ij P_ij` when this side moves by
    /// `ω (λ φ̃ − φ)`, with `A(φ) = w φ` for an exact marginal and `−ρ w (e^{−φ/ρ} − 1)` for a
    /// relaxed one. The plan's row sums are `w e^{(φ − φ̃)/ε}`; written with `expm1` so the
    /// second-order gain near the fixed point is not lost to cancellation.
    fn dual_gain(&self, omega: f64) -> f64 {
        let Some(rho) = self.reach else {
            let args = [omega * self.damping, omega, self.eps];
            return exact_dual_gain(self.weights, self.potential, self.softmin, args);
        };
        let args = [omega * self.damping, omega, self.eps, rho];
        relaxed_dual_gain(self.weights, self.potential, self.softmin, args)
    }
}

/// [`HalfStep::dual_gain`] of a relaxed side, vectorised like the exact one: `args` =
/// (ωλ, ω, ε, ρ); `A(φ + step) − A(φ) = −ρ w e^{−φ/ρ} expm1(−step/ρ)`.
#[inline(always)]
fn relaxed_dual_gain_generic<const FMA: bool>(
    weights: &[f64],
    potential: &[f64],
    softmin: &[f64],
    args: [f64; 4],
) -> f64 {
    let [omega_lam, omega, eps, rho] = args;
    let (inv_eps, inv_rho) = (1.0 / eps, 1.0 / rho);
    sum_lanes(
        weights,
        potential,
        softmin,
        // Forced inline: out of line (its five exponentials make it large) the closure was
        // compiled without the variant's target features, scalar and with a libm `fma` call
        // per multiply-add, and cost as much as the kernel products it safeguards.
        #[inline(always)]
        |w: f64, p: f64, s: f64| {
            let step = omega_lam * s - omega * p;
            let marginal = w * exp::<FMA>((p - s) * inv_eps);
            let linear = -rho * w * exp::<FMA>(-p * inv_rho) * expm1::<FMA>(-step * inv_rho);
            let gain = linear - eps * marginal * expm1::<FMA>(step * inv_eps);
            if w == 0.0 {
                0.0
            } else {
                gain
            }
        },
    )
}

multiversion! { pub fn relaxed_dual_gain(weights: &[f64], potential: &[f64], softmin: &[f64], args: [f64; 4]) -> f64 => relaxed_dual_gain_generic }

/// [`HalfStep::dual_gain`] of an exact side, vectorised: `args` = (ωλ, ω, ε).
#[inline(always)]
fn exact_dual_gain_generic<const FMA: bool>(
    weights: &[f64],
    potential: &[f64],
    softmin: &[f64],
    args: [f64; 3],
) -> f64 {
    let [omega_lam, omega, eps] = args;
    let inv_eps = 1.0 / eps;
    sum_lanes(
        weights,
        potential,
        softmin,
        #[inline(always)]
        |w: f64, p: f64, s: f64| {
            let step = omega_lam * s - omega * p;
            let marginal = w * exp::<FMA>((p - s) * inv_eps);
            let gain = w * step - eps * marginal * expm1::<FMA>(step * inv_eps);
            if w == 0.0 {
                0.0
            } else {
                gain
            }
        },
    )
}

multiversion! { pub fn exact_dual_gain(weights: &[f64], potential: &[f64], softmin: &[f64], args: [f64; 3]) -> f64 => exact_dual_gain_generic }

/// The largest factor in `[1, omega]` (to bisection accuracy) whose half-step does not decrease
/// the dual objective. ω = 1 maximises the dual over this side exactly, so it is always safe.
pub(super) fn safe_factor(step: &HalfStep<'_>, omega: f64) -> f64 {
    if omega == 1.0 {
        return 1.0;
    }
    let safe = |w: f64| {
        let g = step.dual_gain(w);
        g.is_finite() && g >= 0.0
    };
    if safe(omega) {
        return omega;
    }
    let (mut lo, mut hi) = (1.0, omega);
    for _ in 0..SAFE_STEPS {
        let mid = 0.5 * (lo + hi);
        if safe(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_update_never_decreases_the_dual() {
        let (w, p, s) = ([0.3, 0.7], [0.1, -0.4], [0.5, 0.2]);
        for reach in [None, Some(0.5)] {
            let damping = reach.map_or(1.0, |r| 1.0 / (1.0 + 0.1 / r));
            let step = HalfStep {
                weights: &w,
                potential: &p,
                softmin: &s,
                damping,
                reach,
                eps: 0.1,
            };
            assert!(step.dual_gain(1.0) > 0.0);
            // The plain update is the exact block maximiser: a small change of ω loses.
            assert!(step.dual_gain(1.0) > step.dual_gain(1.01));
            assert!(step.dual_gain(1.0) > step.dual_gain(0.99));
        }
    }

    #[test]
    fn safe_factor_shrinks_a_factor_that_loses_dual_value() {
        let (w, p, s) = ([0.5, 0.5], [0.0, 0.0], [0.3, 0.3]);
        let step = HalfStep {
            weights: &w,
            potential: &p,
            softmin: &s,
            damping: 1.0,
            reach: None,
            eps: 0.1,
        };
        assert!(step.dual_gain(1.9) < 0.0);
        let omega = safe_factor(&step, 1.9);
        assert!((1.0..1.9).contains(&omega));
        assert!(step.dual_gain(omega) >= 0.0);
    }

    /// A relaxation switched on by plain errors falling at `rate`, and the last error.
    fn switched_on(rate: f64) -> (Relaxation, f64) {
        let mut r = Relaxation::new(true);
        let mut err = 1.0;
        for _ in 0..2 * WINDOW + 1 {
            err *= rate;
            r.observe(err);
        }
        assert!(r.omega() > 1.0);
        (r, err)
    }

    #[test]
    fn a_probe_keeps_plain_updates_when_they_became_faster() {
        // A steady plain rate (a plateau, as it turns out) switches ω on.
        let (mut r, mut err) = switched_on(0.99);
        let omega = r.omega();
        // Under ω: progress, but only at ω − 1 per iteration, until the first probe.
        let mut k = 0;
        while r.omega() > 1.0 {
            err *= omega - 1.0 + 0.01;
            r.observe(err);
            k += 1;
            assert!(k <= WINDOW + PERIOD, "a probe starts by the first period");
        }
        // The probe's plain updates converge at 0.5 per iteration: they are kept.
        for _ in 0..PROBE {
            err *= 0.5;
            r.observe(err);
        }
        assert_eq!(r.omega(), 1.0);
        assert!(r.probe.is_none());
    }

    #[test]
    fn a_probe_resumes_omega_when_plain_updates_are_slower() {
        let (mut r, mut err) = switched_on(0.99);
        let omega = r.omega();
        while r.omega() > 1.0 {
            err *= 0.9;
            r.observe(err);
        }
        for _ in 0..PROBE {
            err *= 0.99;
            r.observe(err);
        }
        assert!(r.omega() > 1.0, "resumed");
        assert!(r.omega() >= omega);
        assert_eq!(r.probe_after, 2 * PERIOD);
    }

    #[test]
    fn a_stalling_relaxation_is_switched_off() {
        let (mut r, mut err) = switched_on(0.9);
        for _ in 0..WINDOW {
            r.observe(err); // no progress under ω
        }
        assert_eq!(r.omega(), 1.0);
        for _ in 0..MAX_FAILURES - 1 {
            for _ in 0..2 * WINDOW {
                err *= 0.9;
                r.observe(err);
            }
            assert!(r.omega() > 1.0, "tries again after a fresh estimate");
            for _ in 0..WINDOW {
                r.observe(err);
            }
        }
        for _ in 0..200 {
            err *= 0.9;
            r.observe(err);
        }
        assert_eq!(r.omega(), 1.0, "stays off after {MAX_FAILURES} failures");
    }
}
