//! The log-sum-exp reductions of every Sinkhorn variant: sums of exponentials
//! `Σ_j exp((row_i + col_j − C_ij)/ε)` taken over a row (reduction) or accumulated across rows
//! (column pass), the shifted softmin they complete, and its exact max-shift fallback. Each is
//! built on the vectorised exp of [`crate::core::simd`] and compiled per instruction set.

use crate::core::simd::{exp, multiversion, sum_lanes, LANES};

/// Sums of exponentials outside this window lost precision or overflowed and are recomputed
/// with the exact max shift.
pub const SUM_MIN: f64 = 1e-280;
pub const SUM_MAX: f64 = 1e280;

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

/// One row of `P_ij = exp((row + col_j − C_ij)/ε)`: adds it to `col_sums`, returns
/// (Σ_j P_ij, Σ_j C_ij P_ij), and with `WRITE` also stores it in `out` (with `f64::exp`'s range,
/// as [`plan_row`], so the sums are exactly those of the stored row).
#[inline(always)]
fn plan_row_generic<const FMA: bool, const WRITE: bool>(
    cost: &[f64],
    col: &[f64],
    row: f64,
    inv_eps: f64,
    col_sums: &mut [f64],
    out: &mut [f64],
) -> (f64, f64) {
    let entry = |z: f64| {
        if WRITE {
            exp_unclamped::<FMA>(z)
        } else {
            exp::<FMA>(z)
        }
    };
    let (mut mass, mut transport) = ([0.0f64; LANES], [0.0f64; LANES]);
    let mut sum_chunks = col_sums.chunks_exact_mut(LANES);
    let mut out_chunks = out.chunks_exact_mut(LANES);
    let (cost_chunks, col_chunks) = (cost.chunks_exact(LANES), col.chunks_exact(LANES));
    let (cost_tail, col_tail) = (cost_chunks.remainder(), col_chunks.remainder());
    for ((s, c), w) in (&mut sum_chunks).zip(cost_chunks).zip(col_chunks) {
        let mut p = [0.0f64; LANES];
        for l in 0..LANES {
            p[l] = entry((w[l] + row - c[l]) * inv_eps);
            s[l] += p[l];
            mass[l] += p[l];
            transport[l] += p[l] * c[l];
        }
        // With WRITE, `out` has the row's length, so there is a chunk for every chunk of it.
        if WRITE {
            if let Some(o) = out_chunks.next() {
                o.copy_from_slice(&p);
            }
        }
    }
    let (mut mass, mut transport) = (mass.iter().sum::<f64>(), transport.iter().sum::<f64>());
    let mut out_tail = out_chunks.into_remainder().iter_mut();
    for ((s, &c), w) in sum_chunks
        .into_remainder()
        .iter_mut()
        .zip(cost_tail)
        .zip(col_tail)
    {
        let p = entry((w + row - c) * inv_eps);
        if WRITE {
            if let Some(o) = out_tail.next() {
                *o = p;
            }
        }
        *s += p;
        mass += p;
        transport += p * c;
    }
    (mass, transport)
}

#[inline(always)]
fn plan_row_sums_generic<const FMA: bool>(
    cost: &[f64],
    col: &[f64],
    row: f64,
    inv_eps: f64,
    col_sums: &mut [f64],
) -> (f64, f64) {
    plan_row_generic::<FMA, false>(cost, col, row, inv_eps, col_sums, &mut [])
}

#[inline(always)]
fn plan_row_with_sums_generic<const FMA: bool>(
    cost: &[f64],
    col: &[f64],
    row: f64,
    inv_eps: f64,
    col_sums: &mut [f64],
    out: &mut [f64],
) -> (f64, f64) {
    plan_row_generic::<FMA, true>(cost, col, row, inv_eps, col_sums, out)
}

multiversion! {
    /// One row of `P_ij = exp((row + col_j − C_ij)/ε)`: adds it to `col_sums`, returns (Σ_j P_ij, Σ_j C_ij P_ij).
    pub fn plan_row_sums(cost: &[f64], col: &[f64], row: f64, inv_eps: f64, col_sums: &mut [f64]) -> (f64, f64) => plan_row_sums_generic
}

multiversion! {
    /// [`plan_row_sums`] that also writes the row into `out` (the plan and its statistics in one pass).
    pub fn plan_row_with_sums(cost: &[f64], col: &[f64], row: f64, inv_eps: f64, col_sums: &mut [f64], out: &mut [f64]) -> (f64, f64) => plan_row_with_sums_generic
}

/// `Σ_j exp((shift + col_j − tile_j)/ε)`, overwriting the tile with the exponentials (the
/// online point kernel's row sums, the patch kernels' plan tiles). Two plain loops: LLVM's loop
/// vectoriser widens the element-wise exp to the CPU's full vector width, where the
/// lane-accumulator form (`sum_exp`) inlined into a row kernel was SLP-vectorised two lanes at
/// a time with its intermediates spilled to the stack.
#[inline(always)]
pub(crate) fn exp_in_place_sum<const FMA: bool>(
    tile: &mut [f64],
    col: &[f64],
    shift: f64,
    inv_eps: f64,
) -> f64 {
    for (t, w) in tile.iter_mut().zip(col) {
        *t = exp::<FMA>((w + shift - *t) * inv_eps);
    }
    sum_lanes(tile, tile, tile, |t, _, _| t)
}

/// `exp(z)` with `f64::exp`'s range: 0 below e^{−708} and ∞ above e^{709}, where the
/// vectorised exp clamps (the plan of a zero weight is exactly 0).
#[inline(always)]
pub(crate) fn exp_unclamped<const FMA: bool>(z: f64) -> f64 {
    let e = exp::<FMA>(z);
    let e = if z < -708.0 { 0.0 } else { e };
    if z > 709.0 {
        f64::INFINITY
    } else {
        e
    }
}

#[inline(always)]
fn plan_row_generic_fill<const FMA: bool>(
    cost: &[f64],
    col: &[f64],
    row: f64,
    inv_eps: f64,
    out: &mut [f64],
) {
    let mut oc = out.chunks_exact_mut(LANES);
    let (cc, wc) = (cost.chunks_exact(LANES), col.chunks_exact(LANES));
    let (ct, wt) = (cc.remainder(), wc.remainder());
    for ((o, c), w) in (&mut oc).zip(cc).zip(wc) {
        for l in 0..LANES {
            o[l] = exp_unclamped::<FMA>((w[l] + row - c[l]) * inv_eps);
        }
    }
    for ((o, c), w) in oc.into_remainder().iter_mut().zip(ct).zip(wt) {
        *o = exp_unclamped::<FMA>((w + row - c) * inv_eps);
    }
}

multiversion! {
    /// One row of the plan, `out_j = exp((row + col_j − C_ij)/ε)`.
    pub fn plan_row(cost: &[f64], col: &[f64], row: f64, inv_eps: f64, out: &mut [f64]) => plan_row_generic_fill
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
    let ((cc, cost_tail), (wc, col_tail)) = (cost.as_chunks::<LANES>(), col.as_chunks::<LANES>());
    let mut tail = 0.0;
    for (c, w) in cost_tail.iter().zip(col_tail) {
        tail += exp::<FMA>((w + row - c) * inv_eps);
    }
    for (c, w) in cc.iter().zip(wc) {
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

/// `log Σ_k e^{v_k}` with the exact max shift: −∞ for no terms or when every term is −∞ (the
/// shift would otherwise give `−∞ − (−∞)` = NaN), +∞ when a term is +∞, NaN when a term is NaN.
pub fn log_sum_exp(v: impl Iterator<Item = f64> + Clone) -> f64 {
    let hi = v.clone().fold(f64::NEG_INFINITY, f64::max);
    if !hi.is_finite() {
        return hi;
    }
    hi + v.map(|x| (x - hi).exp()).sum::<f64>().ln()
}

/// `ε log Σ_j exp((col_j − cost_j)/ε)` with the exact max shift (−∞ for an empty or all −∞
/// row): the log-sum-exp of one row of the scaled kernel.
#[inline]
pub fn log_sum_exp_gap(cost: &[f64], col: &[f64], eps: f64) -> f64 {
    let hi = max_gap(cost, col);
    if hi == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    hi + eps * sum_exp(cost, col, -hi, 1.0 / eps).ln()
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

    #[test]
    fn log_sum_exp_of_an_all_minus_infinity_row_is_minus_infinity() {
        let ninf = f64::NEG_INFINITY;
        assert_eq!(log_sum_exp([ninf; 4].into_iter()), ninf);
        assert_eq!(log_sum_exp(std::iter::empty()), ninf);
        assert_eq!(log_sum_exp_gap(&[0.0, 1.0], &[ninf, ninf], 0.5), ninf);
        assert_eq!(log_sum_exp_gap(&[], &[], 0.5), ninf);
        assert_eq!(log_sum_exp_gap(&[ninf.abs(), 1.0], &[0.0, ninf], 0.5), ninf);
        assert!(log_sum_exp([1.0, f64::NAN].into_iter()).is_nan());
    }

    #[test]
    fn log_sum_exp_matches_the_direct_sum_and_survives_huge_arguments() {
        let v: [f64; 4] = [0.3, -1.2, 2.5, -40.0];
        let direct = v.iter().map(|x| x.exp()).sum::<f64>().ln();
        assert!((log_sum_exp(v.into_iter()) - direct).abs() < 1e-14);
        // e^{1000} overflows; the shift keeps the result exact.
        assert!((log_sum_exp([1000.0, 1000.0].into_iter()) - (1000.0 + 2f64.ln())).abs() < 1e-12);
        let (cost, col, eps): ([f64; 3], [f64; 3], f64) = ([0.0, 1.0, 2.0], [0.5, 0.0, -1.0], 1e-3);
        let scalar = eps
            * cost
                .iter()
                .zip(&col)
                .map(|(c, w)| ((w - c - 0.5) / eps).exp())
                .sum::<f64>()
                .ln()
            + 0.5;
        assert!((log_sum_exp_gap(&cost, &col, eps) - scalar).abs() < 1e-14);
    }
}
