//! The scalings `v_j = exp((col_j − q_j)/ε)` of the stored kernel, with the drift test that
//! triggers an absorption, and the completion of a softmin from the kernel's products.

use super::*;

/// The scaling `exp((term − reference)/ε)` of one entry (0 for a zero weight), or `None` when it
/// drifted `drift` or more from its log-weight `lw` (NaN counts as beyond).
#[inline]
pub(in crate::core::sinkhorn) fn scaling(
    term: f64,
    reference: f64,
    lw: f64,
    eps: f64,
    drift: f64,
) -> Option<f64> {
    if !lw.is_finite() {
        return Some(0.0);
    }
    let z = (term - reference) / eps;
    ((z - lw).abs() < drift).then(|| z.exp())
}

/// `out = reference − ε log(sums)` when every sum lies in the safe range; false (and `out`
/// unspecified) otherwise.
#[inline(always)]
pub(in crate::core::sinkhorn) fn finish_softmin_generic<const FMA: bool>(
    sums: &[f64],
    reference: &[f64],
    eps: f64,
    out: &mut [f64],
) -> bool {
    let mut safe = true;
    let entry = |s: f64, r: f64, safe: &mut bool| {
        *safe &= (SUM_MIN..=SUM_MAX).contains(&s);
        r - eps * ln::<FMA>(s)
    };
    let mut oc = out.chunks_exact_mut(LANES);
    let (sc, rc) = (sums.chunks_exact(LANES), reference.chunks_exact(LANES));
    let (st, rt) = (sc.remainder(), rc.remainder());
    for ((o, s), r) in (&mut oc).zip(sc).zip(rc) {
        for l in 0..LANES {
            o[l] = entry(s[l], r[l], &mut safe);
        }
    }
    for ((o, &s), &r) in oc.into_remainder().iter_mut().zip(st).zip(rt) {
        *o = entry(s, r, &mut safe);
    }
    safe
}

multiversion! { pub fn finish_softmin(sums: &[f64], reference: &[f64], eps: f64, out: &mut [f64]) -> bool => finish_softmin_generic }

/// `out_k` = [`scaling`] of each entry; false when one drifted beyond `drift` (then `out` is
/// unspecified).
#[inline(always)]
pub(in crate::core::sinkhorn) fn scalings_generic<const FMA: bool>(
    term: &[f64],
    reference: &[f64],
    log_w: &[f64],
    eps: f64,
    drift: f64,
    out: &mut [f64],
) -> bool {
    let inv_eps = 1.0 / eps;
    let mut ok = true;
    let entry = |t: f64, r: f64, lw: f64, ok: &mut bool| {
        let z = (t - r) * inv_eps;
        let weighted = lw.is_finite();
        // NaN fails the comparison, as in `scaling`.
        *ok &= !weighted || (z - lw).abs() < drift;
        if weighted {
            exp::<FMA>(z)
        } else {
            0.0
        }
    };
    let mut oc = out.chunks_exact_mut(LANES);
    let (tc, rc, wc) = (
        term.chunks_exact(LANES),
        reference.chunks_exact(LANES),
        log_w.chunks_exact(LANES),
    );
    let (tt, rt, wt) = (tc.remainder(), rc.remainder(), wc.remainder());
    for (((o, t), r), w) in (&mut oc).zip(tc).zip(rc).zip(wc) {
        for l in 0..LANES {
            o[l] = entry(t[l], r[l], w[l], &mut ok);
        }
    }
    for (((o, &t), &r), &w) in oc.into_remainder().iter_mut().zip(tt).zip(rt).zip(wt) {
        *o = entry(t, r, w, &mut ok);
    }
    ok
}

multiversion! { pub fn scalings_into(term: &[f64], reference: &[f64], log_w: &[f64], eps: f64, drift: f64, out: &mut [f64]) -> bool => scalings_generic }
