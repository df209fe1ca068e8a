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
//!
//! `store` holds the stored kernel (element types, the dense store, its products), `scaling`
//! the scalings and the completion of a softmin; here are the absorption and the
//! [`CostKernel`] interface.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use ndarray::Array2;
use rayon::prelude::*;

use crate::core::cost::{CostKernel, NextColumns, PlanSums};
use crate::core::logsumexp::{plan_row, SUM_MAX, SUM_MIN};
use crate::core::simd::{axpy_widening, dot_widening, exp, ln, mul_add, multiversion, LANES};

mod scaling;
mod store;

use scaling::*;
pub use scaling::{finish_softmin, scalings_into};
pub use store::*;

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
mod tests;
