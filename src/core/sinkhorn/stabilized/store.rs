//! The stored kernel: its element types ([`Stored`], f64 or f32, with their vectorised
//! products), the [`KernelStore`] and [`KernelBuilder`] interfaces the sparse and block stores
//! also implement, the dense store, and the matrix–vector products over it.

use super::*;

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
pub(in crate::core::sinkhorn) fn dot_f64_generic<const FMA: bool>(k: &[f64], v: &[f64]) -> f64 {
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
pub(in crate::core::sinkhorn) fn axpy_f64_generic<const FMA: bool>(
    u: f64,
    k: &[f64],
    acc: &mut [f64],
) {
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
pub(in crate::core::sinkhorn) fn fill_generic<const FMA: bool, T: Copy>(
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
pub(in crate::core::sinkhorn) fn fill_f32_generic<const FMA: bool>(
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
pub(in crate::core::sinkhorn) fn two_pass_products<S: KernelStore + ?Sized>(
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
    pub(super) inner: &'k K,
    pub(super) element: std::marker::PhantomData<T>,
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

/// Rows per rayon task for a stored n×m kernel.
pub(in crate::core::sinkhorn) fn rows_per_task(m: usize) -> usize {
    (8192 / m.max(1)).max(1)
}

/// `s_i = Σ_j K_ij v_j`.
pub(in crate::core::sinkhorn) fn row_products<T: Stored>(kernel: &[T], v: &[f64]) -> Vec<f64> {
    let m = v.len();
    kernel
        .par_chunks(m)
        .with_min_len(rows_per_task(m))
        .map(|row| T::dot(row, v))
        .collect()
}

/// `r_i = Σ_j K_ij v_j` and `s_j = Σ_i K_ij u_of(i, r_i)` in one pass: each row is read from
/// memory once and from cache the second time.
pub(in crate::core::sinkhorn) fn fused_products<T: Stored>(
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
pub(in crate::core::sinkhorn) fn col_products<T: Stored>(
    kernel: &[T],
    u: &[f64],
    m: usize,
) -> Vec<f64> {
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
