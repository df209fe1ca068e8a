//! The hot loop of every Sinkhorn variant: sums of exponentials `Σ_j exp((row_i + col_j − C_ij)/ε)`
//! taken over a row (reduction) or accumulated across rows (column pass).
//!
//! The exponential decides the speed (DESIGN §3.1): `f64::exp` is a scalar libm call, so this
//! module carries a branch-free exp that LLVM vectorises, evaluated over fixed 8-wide chunks.
//! Each public kernel is compiled three times (baseline x86-64, AVX2+FMA, AVX-512F) and the best
//! variant for the running CPU is picked at run time, so one wheel is both portable and fast.

/// Lower clamp of the exponent argument: keeps `2^n` a normal number (no subnormal bit tricks).
/// exp(−708) ≈ 3.3e−308, which the callers treat as zero (sums outside
/// [`SUM_MIN`, `SUM_MAX`] are recomputed with an exact max shift).
const EXP_LO: f64 = -708.0;
const EXP_HI: f64 = 709.0;
const LOG2E: f64 = std::f64::consts::LOG2_E;
// Cody–Waite split of ln 2 (fdlibm): LN2_HI has 32 trailing zero bits, so n·LN2_HI is exact.
const LN2_HI: f64 = 6.931_471_803_691_238_164_90e-01;
const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10;
/// 1.5·2^52: adding it rounds to the nearest integer and leaves that integer in the low mantissa bits.
const ROUND: f64 = 6_755_399_441_055_744.0;

/// Sums of exponentials outside this window lost precision or overflowed and are recomputed
/// with the exact max shift.
pub const SUM_MIN: f64 = 1e-280;
pub const SUM_MAX: f64 = 1e280;

/// Branch-free `e^x`, within a few ulp of `f64::exp` on [−708, 709] (clamped outside; NaN propagates).
#[inline(always)]
pub fn exp(x: f64) -> f64 {
    let x = if x < EXP_LO {
        EXP_LO
    } else if x > EXP_HI {
        EXP_HI
    } else {
        x
    };
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Taylor series of e^r, |r| ≤ ln2/2: the r^13/13! truncation is below 2e-16.
    let mut p = 1.0 / 479_001_600.0;
    p = p * r + 1.0 / 39_916_800.0;
    p = p * r + 1.0 / 3_628_800.0;
    p = p * r + 1.0 / 362_880.0;
    p = p * r + 1.0 / 40_320.0;
    p = p * r + 1.0 / 5_040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // 2^n built from the bits: the low mantissa bits of t hold n + 2^51.
    let scale = f64::from_bits(t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(1023) << 52);
    p * scale
}

/// Compiles `$generic` for baseline, AVX2+FMA and AVX-512F and dispatches on the running CPU.
macro_rules! multiversion {
    ($(#[$meta:meta])* pub fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $generic:ident) => {
        $(#[$meta])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn avx512($($arg: $ty),*) $(-> $ret)? { $generic($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? { $generic($($arg),*) }
                match simd_level() {
                    // SAFETY: the CPU reported these features at run time.
                    SimdLevel::Avx512 => return unsafe { avx512($($arg),*) },
                    SimdLevel::Avx2 => return unsafe { avx2($($arg),*) },
                    SimdLevel::Baseline => {}
                }
            }
            $generic($($arg),*)
        }
    };
}
/// Lets other core modules (patches) compile their hot loops per instruction set the same way.
pub(crate) use multiversion;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimdLevel {
    Baseline,
    Avx2,
    Avx512,
}

/// The widest instruction set the kernels use on this CPU (detected once; `is_x86_feature_detected!` caches).
#[inline]
pub fn simd_level() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return SimdLevel::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return SimdLevel::Avx2;
        }
    }
    SimdLevel::Baseline
}

#[inline(always)]
pub(crate) fn sum_exp_generic(cost: &[f64], col: &[f64], row: f64, inv_eps: f64) -> f64 {
    debug_assert_eq!(cost.len(), col.len());
    let mut acc = [0.0f64; 8];
    let cost_chunks = cost.chunks_exact(8);
    let col_chunks = col.chunks_exact(8);
    let (cost_tail, col_tail) = (cost_chunks.remainder(), col_chunks.remainder());
    for (c, w) in cost_chunks.zip(col_chunks) {
        let c: &[f64; 8] = c.try_into().unwrap();
        let w: &[f64; 8] = w.try_into().unwrap();
        for k in 0..8 {
            acc[k] += exp((w[k] + row - c[k]) * inv_eps);
        }
    }
    let mut tail = 0.0;
    for (c, w) in cost_tail.iter().zip(col_tail) {
        tail += exp((w + row - c) * inv_eps);
    }
    (acc[0] + acc[4]) + (acc[1] + acc[5]) + (acc[2] + acc[6]) + (acc[3] + acc[7]) + tail
}

multiversion! {
    /// `Σ_j exp((row + col_j − cost_j)/ε)` with `inv_eps = 1/ε`.
    pub fn sum_exp(cost: &[f64], col: &[f64], row: f64, inv_eps: f64) -> f64 => sum_exp_generic
}

#[inline(always)]
fn accumulate_exp_generic(cost: &[f64], col: &[f64], row: f64, inv_eps: f64, acc: &mut [f64]) {
    debug_assert!(cost.len() == col.len() && col.len() == acc.len());
    for ((s, c), w) in acc.iter_mut().zip(cost).zip(col) {
        *s += exp((w + row - c) * inv_eps);
    }
}

multiversion! {
    /// `acc_j += exp((row + col_j − cost_j)/ε)`: one row's contribution to the column sums.
    pub fn accumulate_exp(cost: &[f64], col: &[f64], row: f64, inv_eps: f64, acc: &mut [f64]) => accumulate_exp_generic
}

#[inline(always)]
fn plan_row_generic(
    cost: &[f64],
    col: &[f64],
    row: f64,
    inv_eps: f64,
    col_sums: &mut [f64],
) -> (f64, f64) {
    let mut mass = 0.0;
    let mut transport = 0.0;
    for ((s, &c), w) in col_sums.iter_mut().zip(cost).zip(col) {
        let p = exp((w + row - c) * inv_eps);
        *s += p;
        mass += p;
        transport += p * c;
    }
    (mass, transport)
}

multiversion! {
    /// One row of `P_ij = exp((row + col_j − C_ij)/ε)`: adds it to `col_sums`, returns (Σ_j P_ij, Σ_j C_ij P_ij).
    pub fn plan_row_sums(cost: &[f64], col: &[f64], row: f64, inv_eps: f64, col_sums: &mut [f64]) -> (f64, f64) => plan_row_generic
}

/// `max_j (col_j − cost_j)` (−∞ for an empty or all −∞ row).
#[inline]
pub fn max_gap(cost: &[f64], col: &[f64]) -> f64 {
    cost.iter()
        .zip(col)
        .fold(f64::NEG_INFINITY, |m, (c, w)| m.max(w - c))
}

/// `−ε log Σ_j exp((col_j − cost_j)/ε)` with the exact max shift: the fallback when the cheap
/// shifted sum left [`SUM_MIN`, `SUM_MAX`]. Returns +∞ when every column has zero weight.
pub fn softmin_exact(cost: &[f64], col: &[f64], eps: f64) -> f64 {
    let m = max_gap(cost, col);
    if m == f64::NEG_INFINITY {
        return f64::INFINITY;
    }
    let s = sum_exp(cost, col, -m, 1.0 / eps);
    -m - eps * s.ln()
}

/// Completes a shifted softmin: `shift − ε log(sum)`, or `None` when the sum is unusable.
#[inline]
pub fn finish_shifted(sum: f64, shift: f64, eps: f64) -> Option<f64> {
    if (SUM_MIN..=SUM_MAX).contains(&sum) {
        Some(shift - eps * sum.ln())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std_to_a_few_ulp() {
        let mut worst: f64 = 0.0;
        let mut x = -708.0;
        while x < 709.0 {
            let rel = (exp(x) - x.exp()).abs() / x.exp();
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 1e-15, "worst relative error {worst}");
        assert!(exp(f64::NAN).is_nan());
        assert!(exp(-1e300) < 1e-300);
        assert!(exp(1e300).is_finite());
    }

    #[test]
    fn dispatched_sum_matches_scalar_sum() {
        let n = 1037;
        let cost: Vec<f64> = (0..n)
            .map(|j| ((j * 7919) % 1000) as f64 / 1000.0)
            .collect();
        let col: Vec<f64> = (0..n).map(|j| -(j as f64) / n as f64).collect();
        let (row, eps) = (0.3, 0.05);
        let expected: f64 = cost
            .iter()
            .zip(&col)
            .map(|(c, w)| ((w + row - c) / eps).exp())
            .sum();
        let got = sum_exp(&cost, &col, row, 1.0 / eps);
        assert!((got - expected).abs() <= 1e-13 * expected);
        let mut acc = vec![0.0; n];
        accumulate_exp(&cost, &col, row, 1.0 / eps, &mut acc);
        assert!((acc.iter().sum::<f64>() - expected).abs() <= 1e-13 * expected);
    }

    #[test]
    fn exact_softmin_survives_huge_arguments() {
        let cost = [0.0, 1.0, 2.0];
        let col = [0.0, 0.0, 0.0];
        let v = softmin_exact(&cost, &col, 1e-5);
        assert!((v - 0.0).abs() < 1e-12);
        assert_eq!(
            softmin_exact(&cost, &[f64::NEG_INFINITY; 3], 1.0),
            f64::INFINITY
        );
    }
}
