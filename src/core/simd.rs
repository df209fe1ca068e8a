//! Vectorised building blocks of the hot loops and the CPU dispatch that selects them.
//!
//! The exponential decides the speed of every Sinkhorn variant: `f64::exp` is a scalar libm
//! call, so this module carries a branch-free exp that LLVM vectorises, evaluated over fixed
//! 8-wide chunks. Each public kernel built with [`multiversion!`] is compiled three times
//! (baseline x86-64, AVX2+FMA, AVX-512F) and the best variant for the running CPU is picked at
//! run time, so one wheel is both portable and fast.

/// Lower clamp of the exponent argument: keeps `2^n` a normal number (no subnormal bit tricks).
/// exp(−708) ≈ 3.3e−308, which the callers treat as zero (sums outside
/// `logsumexp::SUM_MIN..=SUM_MAX` are recomputed with an exact max shift).
const EXP_LO: f64 = -708.0;
const EXP_HI: f64 = 709.0;
const LOG2E: f64 = std::f64::consts::LOG2_E;
// Cody–Waite split of ln 2 (fdlibm's constants, to f64 precision): LN2_HI has 32 trailing zero bits, so n·LN2_HI is exact.
const LN2_HI: f64 = 6.931_471_803_691_238e-1;
const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
/// 1.5·2^52: adding it rounds to the nearest integer and leaves that integer in the low mantissa bits.
const ROUND: f64 = 6_755_399_441_055_744.0;

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

/// `s[at..at + LANES]` as an array (so the lanes' loops unroll without bounds checks); panics
/// like the slice index when the range is out of bounds.
#[inline(always)]
pub fn lanes(s: &[f64], at: usize) -> &[f64; LANES] {
    // The range has exactly LANES entries, so its first chunk of LANES always exists.
    let Some(chunk) = s[at..at + LANES].first_chunk() else {
        unreachable!()
    };
    chunk
}

/// [`lanes`] for writing.
#[inline(always)]
pub fn lanes_mut(s: &mut [f64], at: usize) -> &mut [f64; LANES] {
    let Some(chunk) = s[at..at + LANES].first_chunk_mut() else {
        unreachable!()
    };
    chunk
}

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

/// Branch-free `ln x` for positive normal `x`, within a few ulp of `f64::ln` (other inputs give
/// unspecified values: callers check their range). Like [`exp`], for loops over [`LANES`]-wide
/// chunks: `x = 2^e m` with `m` in [√½, √2), and `ln m = 2 atanh(s)`, `s = (m − 1)/(m + 1)`,
/// by its odd series to `s^19` (`s² ≤ 0.0295`, truncation below 1e-17).
#[inline(always)]
pub fn ln<const FMA: bool>(x: f64) -> f64 {
    const MANTISSA: u64 = (1 << 52) - 1;
    const ONE: u64 = 0x3ff0_0000_0000_0000;
    // 2^52 + 1023: adding the biased exponent field to it as mantissa bits gives e + 2^52 + 1023.
    const EXP_BIAS: f64 = 4_503_599_627_371_519.0;
    let bits = x.to_bits();
    let m = f64::from_bits((bits & MANTISSA) | ONE);
    let e = f64::from_bits((bits >> 52) | 0x4330_0000_0000_0000) - EXP_BIAS;
    let big = m > std::f64::consts::SQRT_2;
    let m = if big { 0.5 * m } else { m };
    let e = if big { e + 1.0 } else { e };
    let s = (m - 1.0) / (m + 1.0);
    let z = s * s;
    let f = mul_add::<FMA>;
    const C: [f64; 10] = [
        1.0,
        1.0 / 3.0,
        1.0 / 5.0,
        1.0 / 7.0,
        1.0 / 9.0,
        1.0 / 11.0,
        1.0 / 13.0,
        1.0 / 15.0,
        1.0 / 17.0,
        1.0 / 19.0,
    ];
    let z2 = z * z;
    let z4 = z2 * z2;
    let z8 = z4 * z4;
    let q0 = f(f(C[3], z, C[2]), z2, f(C[1], z, C[0]));
    let q1 = f(f(C[7], z, C[6]), z2, f(C[5], z, C[4]));
    let q2 = f(C[9], z, C[8]);
    let series = f(q2, z8, f(q1, z4, q0));
    let ln_m = 2.0 * s * series;
    f(e, LN2_HI, f(e, LN2_LO, ln_m))
}

/// Branch-free `e^x − 1`, accurate near 0 (where `exp(x) − 1` cancels): the series `x Σ x^k/(k+1)!`
/// for |x| ≤ ln2/2, `exp(x) − 1` beyond (cancellation costs at most a few ulp there).
#[inline(always)]
pub fn expm1<const FMA: bool>(x: f64) -> f64 {
    const C: [f64; 13] = [
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
    let r = x;
    let r2 = r * r;
    let r4 = r2 * r2;
    let r8 = r4 * r4;
    let q0 = f(f(C[3], r, C[2]), r2, f(C[1], r, C[0]));
    let q1 = f(f(C[7], r, C[6]), r2, f(C[5], r, C[4]));
    let q2 = f(f(C[11], r, C[10]), r2, f(C[9], r, C[8]));
    let small = r * f(f(C[12], r4, q2), r8, f(q1, r4, q0));
    let large = exp::<FMA>(x) - 1.0;
    if x.abs() <= 0.5 * std::f64::consts::LN_2 {
        small
    } else {
        large
    }
}

/// `Σ_k entry(a_k, b_k, c_k)` over three equal-length slices, in [`LANES`]-wide chunks with one
/// accumulator per lane, so that a branch-free `entry` (built from [`exp`], [`ln`], [`expm1`])
/// vectorises. For the kernels' `_generic` bodies.
#[inline(always)]
pub fn sum_lanes(a: &[f64], b: &[f64], c: &[f64], entry: impl Fn(f64, f64, f64) -> f64) -> f64 {
    let [sum] = sum_lanes_n(
        a,
        b,
        c,
        #[inline(always)]
        |x, y, z| [entry(x, y, z)],
    );
    sum
}

/// [`sum_lanes`] of `K` sums at once, for entries that share their exponentials.
#[inline(always)]
pub fn sum_lanes_n<const K: usize>(
    a: &[f64],
    b: &[f64],
    c: &[f64],
    entry: impl Fn(f64, f64, f64) -> [f64; K],
) -> [f64; K] {
    let mut acc = [[0.0f64; LANES]; K];
    let (ac, bc, cc) = (
        a.chunks_exact(LANES),
        b.chunks_exact(LANES),
        c.chunks_exact(LANES),
    );
    let mut total = [0.0f64; K];
    for ((&x, &y), &z) in ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .zip(cc.remainder())
    {
        let e = entry(x, y, z);
        for k in 0..K {
            total[k] += e[k];
        }
    }
    for ((x, y), z) in ac.zip(bc).zip(cc) {
        for l in 0..LANES {
            let e = entry(x[l], y[l], z[l]);
            for k in 0..K {
                acc[k][l] += e[k];
            }
        }
    }
    for k in 0..K {
        total[k] += acc[k].iter().sum::<f64>();
    }
    total
}

/// Compiles `$generic` for baseline, AVX2+FMA and AVX-512F and dispatches on the running CPU;
/// `$generic` takes `<const FMA: bool>`, true on the variants whose CPU has fused multiply-add.
macro_rules! multiversion {
    ($(#[$meta:meta])* pub fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $generic:ident) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[allow(clippy::too_many_arguments)]
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn avx512($($arg: $ty),*) $(-> $ret)? { $generic::<true>($($arg),*) }
                #[allow(clippy::too_many_arguments)]
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? { $generic::<true>($($arg),*) }
                match $crate::core::simd::simd_level() {
                    // SAFETY: the CPU reported these features at run time.
                    $crate::core::simd::SimdLevel::Avx512 => return unsafe { avx512($($arg),*) },
                    $crate::core::simd::SimdLevel::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::core::simd::SimdLevel::Baseline => {}
                }
            }
            $generic::<false>($($arg),*)
        }
    };
}
/// Lets the other core modules compile their hot loops per instruction set the same way.
pub(crate) use multiversion;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimdLevel {
    Baseline,
    Avx2,
    Avx512,
}

/// The widest instruction set the kernels use on this CPU, detected once.
///
/// `OTINVERSE_SIMD=baseline` (read at the first call) forces the portable x86-64 (SSE2)
/// variants on any CPU, so that the tests also cover the path a CPU without AVX2 takes.
pub fn simd_level() -> SimdLevel {
    static LEVEL: std::sync::OnceLock<SimdLevel> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        if std::env::var("OTINVERSE_SIMD").is_ok_and(|v| v.eq_ignore_ascii_case("baseline")) {
            SimdLevel::Baseline
        } else {
            detected_simd_level()
        }
    })
}

fn detected_simd_level() -> SimdLevel {
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
fn dot_generic<const FMA: bool>(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f64>() + tail
}

multiversion! {
    /// `Σ_k a_k b_k`.
    pub fn dot(a: &[f64], b: &[f64]) -> f64 => dot_generic
}

/// `Σ_k k_k v_k` with f32 `k` widened to f64 (products and sums in f64).
///
/// Written with intrinsics: LLVM vectorises the portable loop across chunks with permutes, which
/// made it 2–5× slower than the f64 kernel whose half-size operand it is meant to beat.
pub fn dot_widening(k: &[f32], v: &[f64]) -> f64 {
    assert_eq!(k.len(), v.len(), "dot_widening: lengths differ");
    #[cfg(target_arch = "x86_64")]
    match simd_level() {
        // SAFETY: the CPU reported these features at run time; lengths are equal.
        SimdLevel::Avx512 => return unsafe { widening::dot_avx512(k, v) },
        SimdLevel::Avx2 => return unsafe { widening::dot_avx2(k, v) },
        SimdLevel::Baseline => {}
    }
    k.iter().zip(v).map(|(&k, v)| f64::from(k) * v).sum()
}

/// `acc_k += u k_k` with f32 `k` widened to f64 (see [`dot_widening`]).
pub fn axpy_widening(u: f64, k: &[f32], acc: &mut [f64]) {
    assert_eq!(k.len(), acc.len(), "axpy_widening: lengths differ");
    #[cfg(target_arch = "x86_64")]
    match simd_level() {
        // SAFETY: as in `dot_widening`.
        SimdLevel::Avx512 => return unsafe { widening::axpy_avx512(u, k, acc) },
        SimdLevel::Avx2 => return unsafe { widening::axpy_avx2(u, k, acc) },
        SimdLevel::Baseline => {}
    }
    for (a, &k) in acc.iter_mut().zip(k) {
        *a += u * f64::from(k);
    }
}

#[cfg(target_arch = "x86_64")]
mod widening {
    //! The x86-64 bodies of the widening kernels; callers check the CPU features and that the
    //! slices have equal lengths.
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dot_avx512(k: &[f32], v: &[f64]) -> f64 {
        let n = k.len();
        let (kp, vp) = (k.as_ptr(), v.as_ptr());
        // Four accumulators: the loop runs at the multiply-add throughput, not its latency.
        let mut acc = [_mm512_setzero_pd(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (l, a) in acc.iter_mut().enumerate() {
                let kw = _mm512_cvtps_pd(_mm256_loadu_ps(kp.add(i + 8 * l)));
                *a = _mm512_fmadd_pd(kw, _mm512_loadu_pd(vp.add(i + 8 * l)), *a);
            }
            i += 32;
        }
        let sum = _mm512_add_pd(_mm512_add_pd(acc[0], acc[1]), _mm512_add_pd(acc[2], acc[3]));
        let mut total = _mm512_reduce_add_pd(sum);
        for j in i..n {
            total += f64::from(*kp.add(j)) * *vp.add(j);
        }
        total
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn axpy_avx512(u: f64, k: &[f32], acc: &mut [f64]) {
        let n = k.len();
        let (kp, ap) = (k.as_ptr(), acc.as_mut_ptr());
        let uw = _mm512_set1_pd(u);
        let mut i = 0;
        while i + 8 <= n {
            let kw = _mm512_cvtps_pd(_mm256_loadu_ps(kp.add(i)));
            _mm512_storeu_pd(
                ap.add(i),
                _mm512_fmadd_pd(uw, kw, _mm512_loadu_pd(ap.add(i))),
            );
            i += 8;
        }
        for j in i..n {
            *ap.add(j) += u * f64::from(*kp.add(j));
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot_avx2(k: &[f32], v: &[f64]) -> f64 {
        let n = k.len();
        let (kp, vp) = (k.as_ptr(), v.as_ptr());
        let mut acc = [_mm256_setzero_pd(); 4];
        let mut i = 0;
        while i + 16 <= n {
            for (l, a) in acc.iter_mut().enumerate() {
                let kw = _mm256_cvtps_pd(_mm_loadu_ps(kp.add(i + 4 * l)));
                *a = _mm256_fmadd_pd(kw, _mm256_loadu_pd(vp.add(i + 4 * l)), *a);
            }
            i += 16;
        }
        let sum = _mm256_add_pd(_mm256_add_pd(acc[0], acc[1]), _mm256_add_pd(acc[2], acc[3]));
        let mut lanes = [0.0; 4];
        _mm256_storeu_pd(lanes.as_mut_ptr(), sum);
        let mut total = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
        for j in i..n {
            total += f64::from(*kp.add(j)) * *vp.add(j);
        }
        total
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn axpy_avx2(u: f64, k: &[f32], acc: &mut [f64]) {
        let n = k.len();
        let (kp, ap) = (k.as_ptr(), acc.as_mut_ptr());
        let uw = _mm256_set1_pd(u);
        let mut i = 0;
        while i + 4 <= n {
            let kw = _mm256_cvtps_pd(_mm_loadu_ps(kp.add(i)));
            _mm256_storeu_pd(
                ap.add(i),
                _mm256_fmadd_pd(uw, kw, _mm256_loadu_pd(ap.add(i))),
            );
            i += 4;
        }
        for j in i..n {
            *ap.add(j) += u * f64::from(*kp.add(j));
        }
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
    fn ln_and_expm1_match_std_to_a_few_ulp() {
        let (mut worst_ln, mut worst_expm1): (f64, f64) = (0.0, 0.0);
        let mut x: f64 = 1e-300;
        while x < 1e300 {
            for y in [x, x * 1.5, x * 0.75, 1.0 + x.min(1e-3)] {
                for v in [ln::<false>(y), ln::<true>(y)] {
                    let err = (v - y.ln()).abs() / y.ln().abs().max(1e-300);
                    worst_ln = worst_ln.max(if y.ln() == 0.0 { v.abs() } else { err });
                }
            }
            x *= 1.37;
        }
        assert!(worst_ln < 4e-16, "ln: worst relative error {worst_ln}");
        let mut x = -40.0;
        while x < 40.0 {
            for y in [x, x * 1e-9, x * 1e-3] {
                for v in [expm1::<false>(y), expm1::<true>(y)] {
                    let exact = y.exp_m1();
                    let err = if exact == 0.0 {
                        v.abs()
                    } else {
                        (v - exact).abs() / exact.abs()
                    };
                    worst_expm1 = worst_expm1.max(err);
                }
            }
            x += 0.0731;
        }
        assert!(
            worst_expm1 < 1e-15,
            "expm1: worst relative error {worst_expm1}"
        );
    }

    #[test]
    fn widening_kernels_match_the_scalar_sums() {
        // Lengths around every unrolled width and tail.
        for n in [0, 1, 3, 4, 7, 8, 15, 16, 31, 32, 33, 63, 100, 1001] {
            let k: Vec<f32> = (0..n).map(|i| 1.0 / (1.0 + i as f32)).collect();
            let v: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
            let exact: f64 = k.iter().zip(&v).map(|(&k, v)| f64::from(k) * v).sum();
            assert!((dot_widening(&k, &v) - exact).abs() < 1e-13, "n = {n}");
            let mut acc = v.clone();
            axpy_widening(0.5, &k, &mut acc);
            for ((a, &k), v) in acc.iter().zip(&k).zip(&v) {
                assert!((a - (v + 0.5 * f64::from(k))).abs() < 1e-15, "n = {n}");
            }
        }
    }
}
