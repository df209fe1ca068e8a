//! A stored, stabilized Gibbs kernel behind the [`CostKernel`] interface (Schmitzer 2019,
//! "Stabilized sparse scaling algorithms for entropy regularized transport problems", §3.1–3.2
//! and Alg. 2).
//!
//! The log-domain kernels evaluate 2·n·m exponentials per iteration. Here the kernel
//! `K̃_ij = exp((p_i + q_j − C_ij)/ε)` is stored once for reference potentials (p, q) that
//! absorb the current duals, and each softmin becomes a matrix–vector product, bound by memory
//! bandwidth instead of exp throughput, with the scalings `v_j = exp((col_j − q_j)/ε)`:
//!
//! `softmin_i = −ε log Σ_j exp((col_j − C_ij)/ε) = p_i − ε log Σ_j K̃_ij v_j`.
//!
//! Absorption (Schmitzer, §3.2): when a scaling leaves `[e^{−τ}, e^{τ}]` relative to its weight,
//! the duals are absorbed into (p, q) and K̃ is rebuilt. This bounds what the stored zeros can
//! hide: an entry that underflowed at build time is below `e^{−708}` (f64) or `e^{−87}` (f32)
//! relative to the reference, and stays below `e^{2τ}` times that. A shifted sum that leaves the
//! safe range falls back to one exact log-domain pass of the wrapped kernel and forces a
//! rebuild. The plan's statistics (`plan_sums`, `plan`) always come from the wrapped exact
//! kernel, so the reported marginal error is that of the returned plan, never of the stored one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use ndarray::Array2;
use rayon::prelude::*;

use crate::core::cost::{CostKernel, NextColumns, PlanSums};
use crate::core::logsumexp::{plan_row, SUM_MAX, SUM_MIN};
use crate::core::simd::{axpy_widening, dot_widening, exp, ln, mul_add, multiversion, LANES};

/// Element type of a stored kernel: f64, or f32 for half the memory traffic (sums are always
/// accumulated in f64).
pub trait Stored: Copy + Default + Send + Sync + 'static {
    /// Largest drift `τ` of a scaling (in units of ε) before the duals are absorbed.
    const DRIFT: f64;
    /// `Σ_j k_j v_j`.
    fn dot(k: &[Self], v: &[f64]) -> f64;
    /// `acc_j += u k_j`.
    fn axpy(u: f64, k: &[Self], acc: &mut [f64]);
    /// `out_j = exp((row + col_j − cost_j)/ε)`.
    fn fill(cost: &[f64], col: &[f64], row: f64, inv_eps: f64, out: &mut [Self]);
}

#[inline(always)]
fn dot_f64_generic<const FMA: bool>(k: &[f64], v: &[f64]) -> f64 {
    // Four independent accumulators per lane: a row that sits in cache is then summed at the
    // multiply-add throughput instead of one dependent chain's latency.
    const WIDE: usize = 4 * LANES;
    let mut acc = [0.0f64; WIDE];
    let (kc, vc) = (k.chunks_exact(WIDE), v.chunks_exact(WIDE));
    let tail: f64 = kc
        .remainder()
        .iter()
        .zip(vc.remainder())
        .map(|(&k, v)| k * v)
        .sum();
    for (k, v) in kc.zip(vc) {
        for l in 0..WIDE {
            acc[l] = mul_add::<FMA>(k[l], v[l], acc[l]);
        }
    }
    let mut lanes = [0.0f64; LANES];
    for (l, lane) in lanes.iter_mut().enumerate() {
        *lane = (acc[l] + acc[l + 2 * LANES]) + (acc[l + LANES] + acc[l + 3 * LANES]);
    }
    (lanes[0] + lanes[4])
        + (lanes[1] + lanes[5])
        + (lanes[2] + lanes[6])
        + (lanes[3] + lanes[7])
        + tail
}

#[inline(always)]
fn axpy_f64_generic<const FMA: bool>(u: f64, k: &[f64], acc: &mut [f64]) {
    let mut ac = acc.chunks_exact_mut(LANES);
    let kc = k.chunks_exact(LANES);
    let kt = kc.remainder();
    for (a, k) in (&mut ac).zip(kc) {
        for l in 0..LANES {
            a[l] = mul_add::<FMA>(u, k[l], a[l]);
        }
    }
    for (a, &k) in ac.into_remainder().iter_mut().zip(kt) {
        *a = mul_add::<FMA>(u, k, *a);
    }
}

#[inline(always)]
fn fill_generic<const FMA: bool, T: Copy>(
    cost: &[f64],
    col: &[f64],
    row: f64,
    inv_eps: f64,
    out: &mut [T],
    convert: impl Fn(f64) -> T,
) {
    let mut oc = out.chunks_exact_mut(LANES);
    let (cc, wc) = (cost.chunks_exact(LANES), col.chunks_exact(LANES));
    let (ct, wt) = (cc.remainder(), wc.remainder());
    for ((o, c), w) in (&mut oc).zip(cc).zip(wc) {
        for l in 0..LANES {
            o[l] = convert(exp::<FMA>((w[l] + row - c[l]) * inv_eps));
        }
    }
    for ((o, c), w) in oc.into_remainder().iter_mut().zip(ct).zip(wt) {
        *o = convert(exp::<FMA>((w + row - c) * inv_eps));
    }
}

#[inline(always)]
fn fill_f32_generic<const FMA: bool>(
    cost: &[f64],
    col: &[f64],
    row: f64,
    inv_eps: f64,
    out: &mut [f32],
) {
    // Entries beyond f32's range become infinite, never clamped: a clamped entry would give a
    // finite but wrong softmin, while an infinite one makes its sum leave the safe range (or NaN
    // against a zero-weight scaling), which sends that softmin to the exact kernel.
    fill_generic::<FMA, f32>(cost, col, row, inv_eps, out, |v| v as f32)
}

multiversion! { pub fn dot_f64(k: &[f64], v: &[f64]) -> f64 => dot_f64_generic }
multiversion! { pub fn axpy_f64(u: f64, k: &[f64], acc: &mut [f64]) => axpy_f64_generic }
multiversion! { pub fn fill_f32(cost: &[f64], col: &[f64], row: f64, inv_eps: f64, out: &mut [f32]) => fill_f32_generic }

impl Stored for f64 {
    // Stored zeros are below e^{−708}; after a drift of 200 on both sides still below e^{−308}.
    const DRIFT: f64 = 200.0;
    fn dot(k: &[f64], v: &[f64]) -> f64 {
        dot_f64(k, v)
    }
    fn axpy(u: f64, k: &[f64], acc: &mut [f64]) {
        axpy_f64(u, k, acc)
    }
    fn fill(cost: &[f64], col: &[f64], row: f64, inv_eps: f64, out: &mut [f64]) {
        // The plan's own row: entries beyond f64's range are 0 or infinite (never clamped), so
        // a sum they spoil leaves the safe range and that softmin goes to the exact kernel.
        plan_row(cost, col, row, inv_eps, out)
    }
}

impl Stored for f32 {
    // Stored zeros are below e^{−87} (f32's normal range); after a drift of 25 on both sides
    // still below e^{−37} ≈ 1e-16 of the reference.
    const DRIFT: f64 = 25.0;
    fn dot(k: &[f32], v: &[f64]) -> f64 {
        dot_widening(k, v)
    }
    fn axpy(u: f64, k: &[f32], acc: &mut [f64]) {
        axpy_widening(u, k, acc)
    }
    fn fill(cost: &[f64], col: &[f64], row: f64, inv_eps: f64, out: &mut [f32]) {
        fill_f32(cost, col, row, inv_eps, out)
    }
}

/// A stored kernel `K̃_ij = exp((p_i + q_j − C_ij)/ε)` (dense or truncated).
pub trait KernelStore: Send + Sync {
    /// `s_i = Σ_j K̃_ij v_j`.
    fn row_products(&self, v: &[f64]) -> Vec<f64>;
    /// `s_j = Σ_i K̃_ij u_i`.
    fn col_products(&self, u: &[f64]) -> Vec<f64>;
    /// `r_i = Σ_j K̃_ij v_j`, then `s_j = Σ_i K̃_ij u_i` with the row scalings
    /// `u_i = u_of(i, r_i)` computed from the fresh row products (NaN poisons `s`). Two passes
    /// here; a store whose rows stay in cache between the two overrides it with one.
    fn fused_products(&self, v: &[f64], u_of: &ScalingOf<'_>) -> (Vec<f64>, Vec<f64>) {
        two_pass_products(self, v, u_of)
    }
    /// Stored entries.
    fn entries(&self) -> usize;
}

/// [`KernelStore::fused_products`] as two passes: the row products, the scalings, the column
/// products.
pub(super) fn two_pass_products<S: KernelStore + ?Sized>(
    store: &S,
    v: &[f64],
    u_of: &ScalingOf<'_>,
) -> (Vec<f64>, Vec<f64>) {
    let sums = store.row_products(v);
    let u: Vec<f64> = sums
        .par_iter()
        .enumerate()
        .with_min_len(4096)
        .map(|(i, &s)| u_of(i, s))
        .collect();
    let cols = store.col_products(&u);
    (sums, cols)
}

/// A row's scaling from its index and its row product, for [`KernelStore::fused_products`].
pub type ScalingOf<'a> = dyn Fn(usize, f64) -> f64 + Sync + 'a;

/// Builds a [`KernelStore`] for reference potentials, and knows what its zeros may hide.
pub trait KernelBuilder: Sync {
    type Store: KernelStore;
    /// Largest drift `τ` of a scaling (in units of ε, net of its weight) before absorption.
    fn drift(&self) -> f64;
    fn build(&self, p: &[f64], q: &[f64], eps: f64) -> Self::Store;
    /// The exact plan statistics when the builder computes them itself (a truncated kernel
    /// over the plan's own support); `None` defers to the wrapped exact kernel.
    fn plan_sums(&self, _row: &[f64], _col: &[f64], _eps: f64) -> Option<PlanSums> {
        None
    }
}

/// The stored kernel and the reference potentials it absorbed.
struct Absorbed<S> {
    eps: f64,
    store: S,
    p: Vec<f64>,
    q: Vec<f64>,
    /// Set when a shifted sum left the safe range: rebuild at the next call.
    stale: bool,
}

/// The wrapped exact kernel with a stored stabilized copy of its Gibbs kernel (see the module
/// documentation). `log_a`, `log_b` are the log-weights folded into the softmin terms, so the
/// drift of a scaling is measured net of its weight.
pub struct Stabilized<'k, K: CostKernel + ?Sized, B: KernelBuilder> {
    inner: &'k K,
    builder: B,
    log_a: Vec<f64>,
    log_b: Vec<f64>,
    state: Mutex<Option<Absorbed<B::Store>>>,
    rebuilds: Mutex<usize>,
    /// Whether `plan_sums` is exact (the default) or read from the stored kernel; see
    /// [`Stabilized::set_exact_statistics`].
    exact_statistics: AtomicBool,
}

/// Dense row-major n×m storage in f64 or f32.
pub struct DenseStore<T> {
    kernel: Vec<T>,
    m: usize,
}

impl<T: Stored> KernelStore for DenseStore<T> {
    fn row_products(&self, v: &[f64]) -> Vec<f64> {
        row_products(&self.kernel, v)
    }
    fn col_products(&self, u: &[f64]) -> Vec<f64> {
        col_products(&self.kernel, u, self.m)
    }
    fn fused_products(&self, v: &[f64], u_of: &ScalingOf<'_>) -> (Vec<f64>, Vec<f64>) {
        fused_products(&self.kernel, v, u_of)
    }
    fn entries(&self) -> usize {
        self.kernel.len()
    }
}

/// Fills a [`DenseStore`] from the cost rows of an exact kernel.
pub struct DenseBuilder<'k, K: CostKernel + ?Sized, T> {
    inner: &'k K,
    element: std::marker::PhantomData<T>,
}

impl<K: CostKernel + ?Sized, T: Stored> KernelBuilder for DenseBuilder<'_, K, T> {
    type Store = DenseStore<T>;

    fn drift(&self) -> f64 {
        T::DRIFT
    }

    /// Fills `K̃_ij = exp((p_i + q_j − C_ij)/ε)` row by row.
    fn build(&self, p: &[f64], q: &[f64], eps: f64) -> DenseStore<T> {
        let (n, m) = self.inner.shape();
        let mut kernel = vec![T::default(); n * m];
        let inv_eps = 1.0 / eps;
        kernel.par_chunks_mut(m).enumerate().for_each_init(
            || vec![0.0; m],
            |cost, (i, out)| {
                self.inner.cost_row(i, cost);
                T::fill(cost, q, p[i], inv_eps, out);
            },
        );
        DenseStore { kernel, m }
    }
}

/// The stabilized kernel on dense storage of element type `T`.
pub type StoredKernel<'k, K, T> = Stabilized<'k, K, DenseBuilder<'k, K, T>>;

impl<'k, K: CostKernel + ?Sized, T: Stored> StoredKernel<'k, K, T> {
    /// `None` when the wrapped kernel cannot give its cost rows. Nothing is built yet: the
    /// kernel is filled on the first softmin, from the potentials of that moment.
    pub fn new(inner: &'k K, a: &[f64], b: &[f64]) -> Option<Self> {
        let (n, m) = inner.shape();
        if n == 0 || m == 0 || !inner.cost_row(0, &mut vec![0.0; m]) {
            return None;
        }
        let builder = DenseBuilder {
            inner,
            element: std::marker::PhantomData,
        };
        Some(Stabilized::with_builder(inner, builder, a, b))
    }
}

impl<'k, K: CostKernel + ?Sized, B: KernelBuilder> Stabilized<'k, K, B> {
    pub fn with_builder(inner: &'k K, builder: B, a: &[f64], b: &[f64]) -> Self {
        Stabilized {
            inner,
            builder,
            log_a: a.iter().map(|w| w.ln()).collect(),
            log_b: b.iter().map(|w| w.ln()).collect(),
            state: Mutex::new(None),
            rebuilds: Mutex::new(0),
            exact_statistics: AtomicBool::new(true),
        }
    }

    /// With `false`, `plan_sums` returns the marginals of the stored (possibly truncated)
    /// kernel and a zero transport cost, for one pass over the stored entries: only for
    /// intermediate ε stages whose statistics are never reported.
    pub fn set_exact_statistics(&self, exact: bool) {
        self.exact_statistics.store(exact, Ordering::Relaxed);
    }

    /// Marginals of `exp((row_i + col_j − C_ij)/ε)` on the stored kernel.
    fn stored_plan_sums(&self, row: &[f64], col: &[f64], eps: f64) -> Option<PlanSums> {
        let guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let st = guard.as_ref().filter(|s| s.eps == eps && !s.stale)?;
        let scale = |t: &[f64], r: &[f64]| -> Vec<f64> {
            t.iter()
                .zip(r)
                .map(|(t, r)| ((t - r) / eps).exp())
                .collect()
        };
        let (u, v) = (scale(row, &st.p), scale(col, &st.q));
        let finite = |x: &[f64]| x.iter().all(|v| v.is_finite());
        if !(finite(&u) && finite(&v)) {
            return None;
        }
        let rows = st.store.row_products(&v);
        let cols = st.store.col_products(&u);
        Some(PlanSums {
            row_sums: rows.iter().zip(&u).map(|(s, u)| s * u).collect(),
            col_sums: cols.iter().zip(&v).map(|(s, v)| s * v).collect(),
            transport_cost: 0.0,
        })
    }

    /// Entries of the kernel stored now (0 before the first build).
    pub fn entries(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or(0, |s| s.store.entries())
    }

    /// How many times the kernel was (re)built: once per ε and once per absorption.
    pub fn rebuilds(&self) -> usize {
        *self.rebuilds.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn build(&self, p: Vec<f64>, q: Vec<f64>, eps: f64) -> Absorbed<B::Store> {
        let store = self.builder.build(&p, &q, eps);
        *self.rebuilds.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        Absorbed {
            eps,
            store,
            p,
            q,
            stale: false,
        }
    }

    /// The scalings `exp((term − reference)/ε)` of one side, or `None` when one drifted beyond
    /// the builder's bound from its weight (or is not a number).
    fn scalings(
        &self,
        term: &[f64],
        reference: &[f64],
        log_w: &[f64],
        eps: f64,
    ) -> Option<Vec<f64>> {
        let mut out = vec![0.0; term.len()];
        scalings_into(term, reference, log_w, eps, self.builder.drift(), &mut out).then_some(out)
    }

    /// The reference potentials from a side's term (net of its log-weight; zero-weight entries
    /// keep the previous reference, or the cheapest guess 0).
    fn reference(term: &[f64], log_w: &[f64], eps: f64, previous: Option<&[f64]>) -> Vec<f64> {
        term.iter()
            .zip(log_w)
            .enumerate()
            .map(|(k, (t, lw))| {
                if lw.is_finite() && t.is_finite() {
                    t - eps * lw
                } else {
                    previous.map_or(0.0, |p| p[k])
                }
            })
            .collect()
    }

    /// Absorbs the current duals: this side's reference is its current potential `shift`, the
    /// other side's is recovered from its term; then the kernel is rebuilt at `eps`. The
    /// previous store is dropped first, so two stores never coexist.
    fn absorb(
        &self,
        rows: bool,
        other: &[f64],
        shift: &[f64],
        eps: f64,
        state: &mut Option<Absorbed<B::Store>>,
    ) {
        let previous = state.take().map(|s| if rows { s.q } else { s.p });
        let log_other = if rows { &self.log_b } else { &self.log_a };
        let theirs = Self::reference(other, log_other, eps, previous.as_deref());
        let mine = shift.to_vec();
        *state = Some(if rows {
            self.build(mine, theirs, eps)
        } else {
            self.build(theirs, mine, eps)
        });
    }

    /// The softmin of the rows (`rows = true`, `other` = the columns' terms) or of the columns;
    /// with `next` (rows only), also the columns' next softmins in the same pass when it can.
    /// Returns whether `next.out` was filled.
    fn softmin(
        &self,
        rows: bool,
        other: &[f64],
        shift: &[f64],
        eps: f64,
        out: &mut [f64],
        next: Option<&mut NextColumns<'_>>,
    ) -> bool {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !shift.iter().all(|v| v.is_finite()) {
            // No usable reference for this side: one exact pass gives one.
            self.exact(rows, other, shift, eps, out);
            return false;
        }
        if guard.as_ref().is_none_or(|s| s.eps != eps || s.stale) {
            self.absorb(rows, other, shift, eps, &mut guard);
        }
        let log_other = if rows { &self.log_b } else { &self.log_a };
        fn their_ref<S>(st: &Absorbed<S>, rows: bool) -> &[f64] {
            if rows {
                &st.q
            } else {
                &st.p
            }
        }
        let mut scal = guard
            .as_ref()
            .and_then(|st| self.scalings(other, their_ref(st, rows), log_other, eps));
        if scal.is_none() {
            self.absorb(rows, other, shift, eps, &mut guard);
            scal = guard
                .as_ref()
                .and_then(|st| self.scalings(other, their_ref(st, rows), log_other, eps));
        }
        let Some(st) = guard.as_mut() else {
            // `absorb` always leaves a kernel; were there none, the exact pass is the answer.
            self.exact(rows, other, shift, eps, out);
            return false;
        };
        let Some(scal) = scal else {
            // A fresh reference has no drift; only non-finite terms get here.
            self.exact(rows, other, shift, eps, out);
            st.stale = true;
            return false;
        };
        let next = next.filter(|n| rows && n.shift.iter().all(|v| v.is_finite()));
        let (sums, col_sums) = match &next {
            Some(n) => {
                let (sums, cols) = st
                    .store
                    .fused_products(&scal, &self.row_scaling(st, n, eps));
                (sums, Some(cols))
            }
            None if rows => (st.store.row_products(&scal), None),
            None => (st.store.col_products(&scal), None),
        };
        let my_ref = if rows { &st.p } else { &st.q };
        if !finish_softmin(&sums, my_ref, eps, out) {
            // A sum under- or overflowed: the stored kernel no longer represents this state.
            // One exact pass, and a rebuild from the potentials it gives at the next call.
            self.exact(rows, other, shift, eps, out);
            st.stale = true;
            return false;
        }
        match (next, col_sums) {
            (Some(n), Some(cols)) => finish_softmin(&cols, &st.q, eps, n.out),
            _ => false,
        }
    }

    /// The scaling of row `i` for its next term, from its row product `s` on the stored kernel:
    /// NaN when the sum left the safe range or the scaling drifted beyond the bound (the fused
    /// column pass is then void, and the next column softmin runs on its own).
    fn row_scaling<'a>(
        &'a self,
        st: &'a Absorbed<B::Store>,
        next: &'a NextColumns<'_>,
        eps: f64,
    ) -> impl Fn(usize, f64) -> f64 + Sync + 'a {
        let drift = self.builder.drift();
        move |i, s| {
            if !(SUM_MIN..=SUM_MAX).contains(&s) {
                return f64::NAN;
            }
            let term = (next.row_term)(i, st.p[i] - eps * s.ln());
            scaling(term, st.p[i], self.log_a[i], eps, drift).unwrap_or(f64::NAN)
        }
    }

    fn exact(&self, rows: bool, other: &[f64], shift: &[f64], eps: f64, out: &mut [f64]) {
        if rows {
            self.inner.softmin_rows(other, shift, eps, out)
        } else {
            self.inner.softmin_cols(other, shift, eps, out)
        }
    }
}

/// The scaling `exp((term − reference)/ε)` of one entry (0 for a zero weight), or `None` when it
/// drifted `drift` or more from its log-weight `lw` (NaN counts as beyond).
#[inline]
fn scaling(term: f64, reference: f64, lw: f64, eps: f64, drift: f64) -> Option<f64> {
    if !lw.is_finite() {
        return Some(0.0);
    }
    let z = (term - reference) / eps;
    ((z - lw).abs() < drift).then(|| z.exp())
}

/// `out = reference − ε log(sums)` when every sum lies in the safe range; false (and `out`
/// unspecified) otherwise.
#[inline(always)]
fn finish_softmin_generic<const FMA: bool>(
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
fn scalings_generic<const FMA: bool>(
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

/// Rows per rayon task for a stored n×m kernel.
fn rows_per_task(m: usize) -> usize {
    (8192 / m.max(1)).max(1)
}

/// `s_i = Σ_j K_ij v_j`.
fn row_products<T: Stored>(kernel: &[T], v: &[f64]) -> Vec<f64> {
    let m = v.len();
    kernel
        .par_chunks(m)
        .with_min_len(rows_per_task(m))
        .map(|row| T::dot(row, v))
        .collect()
}

/// `r_i = Σ_j K_ij v_j` and `s_j = Σ_i K_ij u_of(i, r_i)` in one pass: each row is read from
/// memory once and from cache the second time.
fn fused_products<T: Stored>(
    kernel: &[T],
    v: &[f64],
    u_of: &ScalingOf<'_>,
) -> (Vec<f64>, Vec<f64>) {
    let m = v.len();
    let mut sums = vec![0.0; kernel.len() / m.max(1)];
    let cols = kernel
        .par_chunks(m)
        .zip(sums.par_iter_mut())
        .enumerate()
        .with_min_len(rows_per_task(m))
        .fold(
            || vec![0.0; m],
            |mut acc, (i, (row, s))| {
                *s = T::dot(row, v);
                let u = u_of(i, *s);
                if u != 0.0 {
                    T::axpy(u, row, &mut acc);
                }
                acc
            },
        )
        .reduce(
            || vec![0.0; m],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            },
        );
    (sums, cols)
}

/// `s_j = Σ_i K_ij u_i`, accumulated along the stored rows (per-task column sums, then reduced).
fn col_products<T: Stored>(kernel: &[T], u: &[f64], m: usize) -> Vec<f64> {
    kernel
        .par_chunks(m)
        .zip(u.par_iter())
        .with_min_len(rows_per_task(m))
        .fold(
            || vec![0.0; m],
            |mut acc, (row, &ui)| {
                if ui != 0.0 {
                    T::axpy(ui, row, &mut acc);
                }
                acc
            },
        )
        .reduce(
            || vec![0.0; m],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            },
        )
}

impl<K: CostKernel + ?Sized, B: KernelBuilder> CostKernel for Stabilized<'_, K, B> {
    fn shape(&self) -> (usize, usize) {
        self.inner.shape()
    }

    fn diameter(&self) -> f64 {
        self.inner.diameter()
    }

    fn softmin_rows(&self, col: &[f64], shift: &[f64], eps: f64, out: &mut [f64]) {
        self.softmin(true, col, shift, eps, out, None);
    }

    fn softmin_cols(&self, row: &[f64], shift: &[f64], eps: f64, out: &mut [f64]) {
        self.softmin(false, row, shift, eps, out, None);
    }

    fn softmin_rows_fused(
        &self,
        col: &[f64],
        shift: &[f64],
        eps: f64,
        out: &mut [f64],
        next: &mut NextColumns<'_>,
    ) -> bool {
        self.softmin(true, col, shift, eps, out, Some(next))
    }

    fn plan_sums(&self, row: &[f64], col: &[f64], eps: f64) -> PlanSums {
        if !self.exact_statistics.load(Ordering::Relaxed) {
            if let Some(sums) = self.stored_plan_sums(row, col, eps) {
                return sums;
            }
        }
        self.builder
            .plan_sums(row, col, eps)
            .unwrap_or_else(|| self.inner.plan_sums(row, col, eps))
    }

    fn plan(&self, row: &[f64], col: &[f64], eps: f64) -> Array2<f64> {
        self.inner.plan(row, col, eps)
    }

    fn plan_with_sums(&self, row: &[f64], col: &[f64], eps: f64) -> (Array2<f64>, PlanSums) {
        self.inner.plan_with_sums(row, col, eps)
    }

    fn cost_row(&self, i: usize, out: &mut [f64]) -> bool {
        self.inner.cost_row(i, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cost::DenseCost;
    use crate::core::sinkhorn::{sinkhorn, KernelChoice, SinkhornOutput, SinkhornParams, Update};
    use crate::core::testing::{plan_of, uniform};
    use ndarray::{Array1, Array2};

    /// Uniform points in the unit square, squared distances, positive random weights.
    fn problem(n: usize, m: usize, seed: u64) -> (Array2<f64>, Array1<f64>, Array1<f64>) {
        let mut next = uniform(seed);
        let x: Vec<[f64; 2]> = (0..n).map(|_| [next(), next()]).collect();
        let y: Vec<[f64; 2]> = (0..m).map(|_| [next(), next()]).collect();
        let c = Array2::from_shape_fn((n, m), |(i, j)| {
            (x[i][0] - y[j][0]).powi(2) + (x[i][1] - y[j][1]).powi(2)
        });
        let mut a = Array1::from_shape_fn(n, |_| 0.1 + next());
        let mut b = Array1::from_shape_fn(m, |_| 0.1 + next());
        a /= a.sum();
        b /= b.sum();
        (c, a, b)
    }

    fn solve(
        c: &Array2<f64>,
        a: &Array1<f64>,
        b: &Array1<f64>,
        p: &SinkhornParams,
        kernel: KernelChoice,
    ) -> (SinkhornOutput, Array2<f64>) {
        let k = DenseCost::new(c.view()).unwrap();
        let mut params = p.clone();
        params.kernel = kernel;
        let out = sinkhorn(&k, a.view(), b.view(), &params, None).unwrap();
        let plan = plan_of(&k, &out, a, b, p.eps);
        (out, plan)
    }

    fn max_abs(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
        (a - b).iter().fold(0.0f64, |s, v| s.max(v.abs()))
    }

    #[test]
    fn stored_kernels_give_the_log_domain_plans() {
        let (c, a, b) = problem(70, 50, 7);
        let cases = [
            (0.05, None, None, Update::Alternating, None),
            (1e-3, None, None, Update::Alternating, Some(0.5)),
            (0.01, Some(0.3), None, Update::Alternating, None),
            (0.02, Some(0.5), Some(0.1), Update::Symmetric, None),
        ];
        for (eps, ra, rb, update, scaling) in cases {
            let mut p = SinkhornParams::new(eps);
            (p.reach_a, p.reach_b, p.update, p.eps_scaling) = (ra, rb, update, scaling);
            p.tol = 1e-11;
            p.max_iter = 50_000;
            let (log, reference) = solve(&c, &a, &b, &p, KernelChoice::Log);
            let (s64, plan64) = solve(&c, &a, &b, &p, KernelChoice::Stored64);
            assert!(log.converged && s64.converged, "{log:?} {s64:?}");
            assert!(s64.marginal_error <= p.tol);
            assert!(
                max_abs(&plan64, &reference) < 1e-12,
                "eps {eps}: {}",
                max_abs(&plan64, &reference)
            );
            // f32 storage: the fixed point moves by its rounding, the reported error stays honest.
            p.tol = 1e-6;
            let (s32, plan32) = solve(&c, &a, &b, &p, KernelChoice::Stored32);
            assert!(s32.marginal_error.is_finite());
            assert_eq!(s32.converged, s32.marginal_error <= p.tol, "{s32:?}");
            assert!(s32.converged, "{s32:?}");
            // Within tol (relative to the unit mass) of the tightly converged plan.
            assert!(
                max_abs(&plan32, &reference) < p.tol,
                "eps {eps}: {}",
                max_abs(&plan32, &reference)
            );
        }
    }

    #[test]
    fn fused_products_equal_the_two_separate_passes() {
        let (c, a, b) = problem(37, 29, 5);
        let k = DenseCost::new(c.view()).unwrap();
        let builder = DenseBuilder::<_, f64> {
            inner: &k,
            element: std::marker::PhantomData,
        };
        let store = builder.build(&vec![0.1; 37], &vec![-0.05; 29], 0.07);
        let v: Vec<f64> = b.iter().map(|w| 2.0 * w).collect();
        // The row scalings depend on the fresh row products, as in an alternating update.
        let u_of = |i: usize, r: f64| a[i] / r;
        let (rows, cols) = store.fused_products(&v, &u_of);
        let rows_apart = store.row_products(&v);
        let u: Vec<f64> = rows_apart
            .iter()
            .enumerate()
            .map(|(i, &r)| u_of(i, r))
            .collect();
        let cols_apart = store.col_products(&u);
        let close = |x: &[f64], y: &[f64]| {
            x.iter()
                .zip(y)
                .all(|(p, q)| (p - q).abs() <= 1e-14 * q.abs())
        };
        assert!(close(&rows, &rows_apart) && close(&cols, &cols_apart));
        // A NaN scaling poisons the column products, so the caller falls back.
        let (_, poisoned) =
            store.fused_products(&v, &|i, r| if i == 3 { f64::NAN } else { a[i] / r });
        assert!(poisoned.iter().any(|s| s.is_nan()));
    }

    #[test]
    fn tiny_eps_stays_finite_and_absorbs() {
        let (c, a, b) = problem(80, 80, 3);
        let k = DenseCost::new(c.view()).unwrap();
        let mut p = SinkhornParams::new(1e-5);
        p.eps_scaling = Some(0.5);
        p.tol = 1e-6;
        p.max_iter = 200_000;
        // The wrapper is passed as the kernel itself, so the driver must not wrap it again.
        p.kernel = KernelChoice::Log;
        let stored =
            StoredKernel::<_, f64>::new(&k, a.as_slice().unwrap(), b.as_slice().unwrap()).unwrap();
        let out = sinkhorn(&stored, a.view(), b.view(), &p, None).unwrap();
        assert!(out.f.iter().chain(&out.g).all(|v| v.is_finite()));
        assert!(out.converged && out.marginal_error <= 1e-6, "{out:?}");
        // One build per ε stage at least; absorption may add more.
        assert!(stored.rebuilds() >= 17, "{}", stored.rebuilds());
        let (log, reference) = solve(&c, &a, &b, &p, KernelChoice::Log);
        assert!(log.converged, "{log:?}");
        eprintln!(
            "stored {} it, log {} it, {} builds",
            out.n_iter,
            log.n_iter,
            stored.rebuilds()
        );
        let ours = plan_of(&k, &out, &a, &b, p.eps);
        // Both within tol of the same fixed point: plans agree to the marginal error's order.
        assert!(
            max_abs(&ours, &reference) < 1e-5,
            "{}",
            max_abs(&ours, &reference)
        );
    }

    #[test]
    fn zero_weights_and_bad_starts_do_not_poison_the_kernel() {
        let (c, mut a, mut b) = problem(30, 40, 11);
        a[3] = 0.0;
        b[0] = 0.0;
        b[17] = 0.0;
        a /= a.sum();
        b /= b.sum();
        let mut p = SinkhornParams::new(2e-3);
        p.tol = 1e-10;
        p.max_iter = 100_000;
        let (log, reference) = solve(&c, &a, &b, &p, KernelChoice::Log);
        let (s64, plan64) = solve(&c, &a, &b, &p, KernelChoice::Stored64);
        assert!(log.converged && s64.converged);
        assert!(plan64.iter().all(|v| v.is_finite()));
        assert!(
            max_abs(&plan64, &reference) < 1e-12,
            "{log:?} {s64:?} {}",
            max_abs(&plan64, &reference)
        );
    }
}
