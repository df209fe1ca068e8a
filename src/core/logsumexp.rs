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

/// `a·b + c`, fused into one instruction on the FMA variants of a kernel (FMA = true) and two
/// roundings otherwise (a software `fma` call would be far slower than the two instructions).
#[inline(always)]
pub(crate) fn mul_add<const FMA: bool>(a: f64, b: f64, c: f64) -> f64 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Lanes of one chunk in the kernels: two AVX2 vectors or one AVX-512 vector of f64.
pub const LANES: usize = 8;

/// Branch-free `e^x`, within a few ulp of `f64::exp` on [−708, 709] (clamped outside; NaN
/// propagates). `FMA` selects fused multiply-adds (see [`mul_add`]); kernels get it from
/// [`multiversion!`] and call this inside loops over [`LANES`]-wide chunks, which LLVM
/// vectorises.
#[inline(always)]
pub fn exp<const FMA: bool>(x: f64) -> f64 {
    // Written `LO > x ? LO : x` (and likewise for HI) so that each clamp is one max/min
    // instruction through which NaN passes; an if/else-if chain compiles to branches.
    let x = if EXP_LO > x { EXP_LO } else { x };
    let x = if EXP_HI < x { EXP_HI } else { x };
    let t = mul_add::<FMA>(x, LOG2E, ROUND);
    let n = t - ROUND;
    let r = mul_add::<FMA>(-n, LN2_LO, mul_add::<FMA>(-n, LN2_HI, x));
    // 2^n built from the bits: the low mantissa bits of t hold n + 2^51.
    let scale = f64::from_bits(t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(1023) << 52);
    exp_reduced::<FMA>(r) * scale
}

/// `e^r` for |r| ≤ ln2/2: the Taylor series to r^13/13! (truncation below 2e-16), evaluated by
/// Estrin's scheme, depth 4 instead of Horner's 13 dependent steps, so that the loop runs at the
/// multiply-add throughput instead of its latency.
#[inline(always)]
fn exp_reduced<const FMA: bool>(r: f64) -> f64 {
    const C: [f64; 14] = [
        1.0,
        1.0,
        1.0 / 2.0,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5_040.0,
        1.0 / 40_320.0,
        1.0 / 362_880.0,
        1.0 / 3_628_800.0,
        1.0 / 39_916_800.0,
        1.0 / 479_001_600.0,
        1.0 / 6_227_020_800.0,
    ];
    let f = mul_add::<FMA>;
    let r2 = r * r;
    let r4 = r2 * r2;
    let r8 = r4 * r4;
    let q0 = f(f(C[3], r, C[2]), r2, f(C[1], r, C[0]));
    let q1 = f(f(C[7], r, C[6]), r2, f(C[5], r, C[4]));
    let q2 = f(f(C[11], r, C[10]), r2, f(C[9], r, C[8]));
    let q3 = f(C[13], r, C[12]);
    f(f(q3, r4, q2), r8, f(q1, r4, q0))
}

/// Compiles `$generic` for baseline, AVX2+FMA and AVX-512F and dispatches on the running CPU;
/// `$generic` takes `<const FMA: bool>`, true on the variants whose CPU has fused multiply-add.
macro_rules! multiversion {
    ($(#[$meta:meta])* pub fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $generic:ident) => {
        $(#[$meta])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn avx512($($arg: $ty),*) $(-> $ret)? { $generic::<true>($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? { $generic::<true>($($arg),*) }
                match $crate::core::logsumexp::simd_level() {
                    // SAFETY: the CPU reported these features at run time.
                    $crate::core::logsumexp::SimdLevel::Avx512 => return unsafe { avx512($($arg),*) },
                    $crate::core::logsumexp::SimdLevel::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::core::logsumexp::SimdLevel::Baseline => {}
                }
            }
            $generic::<false>($($arg),*)
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
pub(crate) fn sum_exp_generic<const FMA: bool>(
    cost: &[f64],
    col: &[f64],
    row: f64,
    inv_eps: f64,
) -> f64 {
    debug_assert_eq!(cost.len(), col.len());
    let mut acc = [0.0f64; LANES];
    let (cost_chunks, col_chunks) = (cost.chunks_exact(LANES), col.chunks_exact(LANES));
    let (cost_tail, col_tail) = (cost_chunks.remainder(), col_chunks.remainder());
    for (c, w) in cost_chunks.zip(col_chunks) {
        for l in 0..LANES {
            acc[l] += exp::<FMA>((w[l] + row - c[l]) * inv_eps);
        }
    }
    let mut tail = 0.0;
    for (c, w) in cost_tail.iter().zip(col_tail) {
        tail += exp::<FMA>((w + row - c) * inv_eps);
    }
    (acc[0] + acc[4]) + (acc[1] + acc[5]) + (acc[2] + acc[6]) + (acc[3] + acc[7]) + tail
}

multiversion! {
    /// `Σ_j exp((row + col_j − cost_j)/ε)` with `inv_eps = 1/ε`.
    pub fn sum_exp(cost: &[f64], col: &[f64], row: f64, inv_eps: f64) -> f64 => sum_exp_generic
}

#[inline(always)]
fn accumulate_exp_generic<const FMA: bool>(
    cost: &[f64],
    col: &[f64],
    row: f64,
    inv_eps: f64,
    acc: &mut [f64],
) {
    debug_assert!(cost.len() == col.len() && col.len() == acc.len());
    let mut acc_chunks = acc.chunks_exact_mut(LANES);
    let (cost_chunks, col_chunks) = (cost.chunks_exact(LANES), col.chunks_exact(LANES));
    let (cost_tail, col_tail) = (cost_chunks.remainder(), col_chunks.remainder());
    for ((s, c), w) in (&mut acc_chunks).zip(cost_chunks).zip(col_chunks) {
        for l in 0..LANES {
            s[l] += exp::<FMA>((w[l] + row - c[l]) * inv_eps);
        }
    }
    for ((s, c), w) in acc_chunks
        .into_remainder()
        .iter_mut()
        .zip(cost_tail)
        .zip(col_tail)
    {
        *s += exp::<FMA>((w + row - c) * inv_eps);
    }
}

multiversion! {
    /// `acc_j += exp((row + col_j − cost_j)/ε)`: one row's contribution to the column sums.
    pub fn accumulate_exp(cost: &[f64], col: &[f64], row: f64, inv_eps: f64, acc: &mut [f64]) => accumulate_exp_generic
}

#[inline(always)]
fn plan_row_generic<const FMA: bool>(
    cost: &[f64],
    col: &[f64],
    row: f64,
    inv_eps: f64,
    col_sums: &mut [f64],
) -> (f64, f64) {
    let (mut mass, mut transport) = ([0.0f64; LANES], [0.0f64; LANES]);
    let mut sum_chunks = col_sums.chunks_exact_mut(LANES);
    let (cost_chunks, col_chunks) = (cost.chunks_exact(LANES), col.chunks_exact(LANES));
    let (cost_tail, col_tail) = (cost_chunks.remainder(), col_chunks.remainder());
    for ((s, c), w) in (&mut sum_chunks).zip(cost_chunks).zip(col_chunks) {
        for l in 0..LANES {
            let p = exp::<FMA>((w[l] + row - c[l]) * inv_eps);
            s[l] += p;
            mass[l] += p;
            transport[l] += p * c[l];
        }
    }
    let (mut mass, mut transport) = (mass.iter().sum::<f64>(), transport.iter().sum::<f64>());
    for ((s, &c), w) in sum_chunks
        .into_remainder()
        .iter_mut()
        .zip(cost_tail)
        .zip(col_tail)
    {
        let p = exp::<FMA>((w + row - c) * inv_eps);
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

/// Chunks of 8 whose exponent arguments all lie below this are skipped by [`sum_exp_sparse`].
pub const SKIP_BELOW: f64 = -80.0;
#[inline(always)]
pub(crate) fn sum_exp_sparse_generic<const FMA: bool>(
    cost: &[f64],
    col: &[f64],
    row: f64,
    inv_eps: f64,
) -> f64 {
    let mut acc = [0.0f64; LANES];
    let (cc, wc) = (cost.chunks_exact(LANES), col.chunks_exact(LANES));
    let mut tail = 0.0;
    for (c, w) in cc.remainder().iter().zip(wc.remainder()) {
        tail += exp::<FMA>((w + row - c) * inv_eps);
    }
    for (c, w) in cc.zip(wc) {
        let c: &[f64; LANES] = c.try_into().unwrap();
        let w: &[f64; LANES] = w.try_into().unwrap();
        let mut z = [0.0; LANES];
        for l in 0..LANES {
            z[l] = (w[l] + row - c[l]) * inv_eps;
        }
        let hi = z.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        // At small ε most pairs are far from the best match: their exponentials vanish against
        // the row's sum and are not evaluated.
        if hi > SKIP_BELOW {
            for l in 0..LANES {
                acc[l] += exp::<FMA>(z[l]);
            }
        }
    }
    acc.iter().sum::<f64>() + tail
}

multiversion! {
    /// `Σ_j exp((row + col_j − cost_j)/ε)` skipping chunks of 8 whose terms are all below
    /// `e^{SKIP_BELOW}`: exact to rounding when the sum is at least ~e^{−20}, e.g. always when
    /// `row` is the exact max shift (the largest term is then 1).
    pub fn sum_exp_sparse(cost: &[f64], col: &[f64], row: f64, inv_eps: f64) -> f64 => sum_exp_sparse_generic
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
    // With the exact max shift the largest term is 1, so skipping terms below e^{SKIP_BELOW}
    // changes the sum by less than len·e^{−80} relative.
    let s = sum_exp_sparse(cost, col, -m, 1.0 / eps);
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
            for e in [exp::<false>(x), exp::<true>(x)] {
                worst = worst.max((e - x.exp()).abs() / x.exp());
            }
            x += 0.0137;
        }
        assert!(worst < 1e-15, "worst relative error {worst}");
        assert!(exp::<false>(f64::NAN).is_nan());
        assert!(exp::<false>(-1e300) < 1e-300);
        assert!(exp::<false>(1e300).is_finite());
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
