//! Batched entropic OT between histograms on a shared support: one source against K targets
//! (Cuturi 2013, §4 "many targets at once", as Barton & Tai's image-retrieval scheme uses it),
//! or every pair of N sources and K targets, each pair solved independently and in parallel.
//!
//! Each pair is solved on the supports of its two histograms only: zero-weight pixels carry no
//! mass, so dropping them is exact (a zero weight would put `log 0` into a log-domain update and
//! a `0/0` into a scaling update).
//!
//! The iteration is Sinkhorn in the scaling domain on an absorbed kernel (Schmitzer 2019,
//! "Stabilized sparse scaling algorithms", §3.1): potentials φ, ψ carry the log-domain state,
//! `K_ij = exp((φ_i + ψ_j − C_ij)/ε)` is built from them, and the scalings u, v are updated by
//! matrix–vector products. The potentials start at zero, so K starts as the Gibbs kernel
//! `exp(−C/ε)`, computed once per batch and shared by all pairs. When a scaling leaves
//! [1e-50, 1e50] it is absorbed into the potentials and K rebuilt; when a product underflows
//! (very small ε) that half-step is done exactly in the log domain. So the result stays finite
//! at any ε > 0 while a pair costs multiply-adds, not exponentials.

use ndarray::{Array2, Array3, ArrayView1, ArrayView2};
use rayon::prelude::*;

use super::relaxation::Relaxation;
use crate::core::error::{
    check_at_least_one, check_finite, check_non_negative, check_positive, check_weights, OtError,
    Result,
};
use crate::core::interrupt;
use crate::core::logsumexp::log_sum_exp_gap;
use crate::core::simd::{dot, mul_add, multiversion};

#[derive(Clone, Debug)]
pub struct BatchParams {
    /// Entropic regularisation ε > 0 (Barton & Tai's 1/λ), in cost units.
    pub eps: f64,
    pub max_iter: usize,
    /// Stop when the L1 row-marginal error (columns exact), relative to the mass, is ≤ `tol`.
    pub tol: f64,
}

impl BatchParams {
    fn validate(&self) -> Result<()> {
        check_positive("reg", self.eps)?;
        check_at_least_one("max_iter", self.max_iter)?;
        check_non_negative("tol", self.tol)?;
        Ok(())
    }
}

/// Per-pair results, arrays of shape (N sources, K targets).
#[derive(Clone, Debug)]
pub struct BatchOutput {
    /// `⟨C, P⟩`.
    pub transport_cost: Array2<f64>,
    /// `⟨C, P⟩ + ε KL(P | a⊗b)`, the objective of `sinkhorn`.
    pub objective: Array2<f64>,
    /// `Σ_ij P_ij log P_ij`: Barton & Tai's (ROT) value is `⟨C, P⟩ + ε·neg_entropy`.
    pub neg_entropy: Array2<f64>,
    /// `‖P1 − a‖₁/|a| + ‖Pᵀ1 − b‖₁/|b|` of the returned plan.
    pub marginal_error: Array2<f64>,
    pub n_iter: Array2<usize>,
    /// `marginal_error ≤ tol`.
    pub converged: Array2<bool>,
    /// `Σ_ij P_ij (y_j − x_i)` (N, K, d) when support coordinates were given (Barton & Tai, §3.3).
    pub displacement: Option<Array3<f64>>,
}

/// The positive-weight part of a histogram.
struct Support {
    index: Vec<usize>,
    weight: Vec<f64>,
    log_weight: Vec<f64>,
    mass: f64,
}

impl Support {
    fn new(name: &'static str, h: ArrayView1<'_, f64>, which: usize) -> Result<Self> {
        let mass = check_weights(name, h.iter()).map_err(|e| match e {
            OtError::InvalidArgument { name, message } => {
                OtError::invalid(name, format!("row {which}: {message}"))
            }
            other => other,
        })?;
        let index: Vec<usize> = (0..h.len()).filter(|&i| h[i] > 0.0).collect();
        let weight: Vec<f64> = index.iter().map(|&i| h[i]).collect();
        let log_weight = weight.iter().map(|w| w.ln()).collect();
        Ok(Support {
            index,
            weight,
            log_weight,
            mass,
        })
    }
}

struct PairResult {
    transport_cost: f64,
    objective: f64,
    neg_entropy: f64,
    marginal_error: f64,
    n_iter: usize,
    displacement: Vec<f64>,
}

/// One source histogram against K targets (rows of `targets`) under the cost `cost` (n×m).
/// `points`: optional support coordinates (x: n×d, y: m×d) for the plans' mean displacement.
pub fn sinkhorn_one_to_many(
    cost: ArrayView2<'_, f64>,
    source: ArrayView1<'_, f64>,
    targets: ArrayView2<'_, f64>,
    params: &BatchParams,
    points: Option<(ArrayView2<'_, f64>, ArrayView2<'_, f64>)>,
) -> Result<BatchOutput> {
    let sources = source.insert_axis(ndarray::Axis(0));
    sinkhorn_pairwise(cost, sources, targets, params, points)
}

fn check_shapes(
    cost: &ArrayView2<'_, f64>,
    sources: &ArrayView2<'_, f64>,
    targets: &ArrayView2<'_, f64>,
    points: &Option<(ArrayView2<'_, f64>, ArrayView2<'_, f64>)>,
) -> Result<()> {
    let (n, m) = cost.dim();
    if n == 0 || m == 0 {
        return Err(OtError::shape("M", "cost matrix must not be empty"));
    }
    if sources.nrows() == 0 || sources.ncols() != n {
        return Err(OtError::shape(
            "sources",
            format!(
                "must be (N ≥ 1, {n}) for a cost with {n} rows, got {:?}",
                sources.shape()
            ),
        ));
    }
    if targets.nrows() == 0 || targets.ncols() != m {
        return Err(OtError::shape(
            "targets",
            format!(
                "must be (K ≥ 1, {m}) for a cost with {m} columns, got {:?}",
                targets.shape()
            ),
        ));
    }
    if let Some((x, y)) = points {
        if x.nrows() != n || y.nrows() != m || x.ncols() != y.ncols() || x.ncols() == 0 {
            return Err(OtError::shape(
                "points",
                format!(
                    "must be ({n}, d) and ({m}, d), got {:?} and {:?}",
                    x.shape(),
                    y.shape()
                ),
            ));
        }
        check_finite("points", x.iter().chain(y.iter()))?;
    }
    check_finite("M", cost.iter())
}

/// Every (source, target) pair: `sources` is N×n, `targets` K×m, `cost` n×m. All histograms
/// must have the same mass (balanced OT).
pub fn sinkhorn_pairwise(
    cost: ArrayView2<'_, f64>,
    sources: ArrayView2<'_, f64>,
    targets: ArrayView2<'_, f64>,
    params: &BatchParams,
    points: Option<(ArrayView2<'_, f64>, ArrayView2<'_, f64>)>,
) -> Result<BatchOutput> {
    params.validate()?;
    check_shapes(&cost, &sources, &targets, &points)?;
    let src: Vec<Support> = (0..sources.nrows())
        .map(|s| Support::new("sources", sources.row(s), s))
        .collect::<Result<_>>()?;
    let tgt: Vec<Support> = (0..targets.nrows())
        .map(|k| Support::new("targets", targets.row(k), k))
        .collect::<Result<_>>()?;
    let reference = src[0].mass;
    for (name, sides) in [("sources", &src), ("targets", &tgt)] {
        if let Some((i, s)) = sides
            .iter()
            .enumerate()
            .find(|(_, s)| (s.mass - reference).abs() > 1e-8 * reference.max(s.mass))
        {
            return Err(OtError::invalid(
                name,
                format!(
                    "row {i} has mass {} but sources[0] has {reference}: balanced OT needs equal masses (normalise the histograms)",
                    s.mass
                ),
            ));
        }
    }
    let (n_src, n_tgt) = (src.len(), tgt.len());
    let gibbs = cost.mapv(|c| (-c / params.eps).exp());
    // Rayon's workers do not inherit the caller's cancellation flag: each task carries it.
    let flag = interrupt::current().unwrap_or_default();
    let results: Vec<PairResult> = (0..n_src * n_tgt)
        .into_par_iter()
        .map(|q| {
            let (s, k) = (q / n_tgt, q % n_tgt);
            interrupt::with_flag(&flag, || {
                solve_pair(&cost, &gibbs, &src[s], &tgt[k], params, points.as_ref())
            })
        })
        .collect::<Result<_>>()?;
    Ok(collect(
        results,
        n_src,
        n_tgt,
        params.tol,
        points.map(|p| p.0.ncols()),
    ))
}

fn collect(
    results: Vec<PairResult>,
    n_src: usize,
    n_tgt: usize,
    tol: f64,
    dim: Option<usize>,
) -> BatchOutput {
    let field = |f: &dyn Fn(&PairResult) -> f64| {
        Array2::from_shape_fn((n_src, n_tgt), |(s, k)| f(&results[s * n_tgt + k]))
    };
    let marginal_error = field(&|r| r.marginal_error);
    BatchOutput {
        transport_cost: field(&|r| r.transport_cost),
        objective: field(&|r| r.objective),
        neg_entropy: field(&|r| r.neg_entropy),
        n_iter: Array2::from_shape_fn((n_src, n_tgt), |(s, k)| results[s * n_tgt + k].n_iter),
        converged: marginal_error.mapv(|e| e <= tol),
        marginal_error,
        displacement: dim.map(|d| {
            Array3::from_shape_fn((n_src, n_tgt, d), |(s, k, l)| {
                results[s * n_tgt + k].displacement[l]
            })
        }),
    }
}

/// The scaling iteration of one pair on its supports (module doc). `c` is row-major nr×nc.
struct PairSolver<'a> {
    c: Vec<f64>,
    nc: usize,
    eps: f64,
    src: &'a Support,
    tgt: &'a Support,
    /// Potentials with the log-weights folded in: `P_ij = u_i exp((φ_i + ψ_j − C_ij)/ε) v_j`.
    phi: Vec<f64>,
    psi: Vec<f64>,
    kernel: Vec<f64>,
    u: Vec<f64>,
    v: Vec<f64>,
}

/// Scalings outside this range are absorbed into the potentials (module doc).
const SCALING_MAX: f64 = 1e50;
/// Kernel products below this are treated as underflowed.
const PRODUCT_MIN: f64 = 1e-290;

impl<'a> PairSolver<'a> {
    /// `gibbs = exp(−C/ε)`, the kernel of zero potentials.
    fn new(
        cost: &ArrayView2<'_, f64>,
        gibbs: &Array2<f64>,
        src: &'a Support,
        tgt: &'a Support,
        eps: f64,
    ) -> Self {
        let gather = |m: ArrayView2<'_, f64>| {
            let mut out = Vec::with_capacity(src.index.len() * tgt.index.len());
            for &i in &src.index {
                let row = m.row(i);
                out.extend(tgt.index.iter().map(|&j| row[j]));
            }
            out
        };
        PairSolver {
            c: gather(cost.view()),
            nc: tgt.index.len(),
            eps,
            src,
            tgt,
            phi: vec![0.0; src.index.len()],
            psi: vec![0.0; tgt.index.len()],
            kernel: gather(gibbs.view()),
            u: vec![1.0; src.index.len()],
            v: vec![1.0; tgt.index.len()],
        }
    }

    /// `φ_i = ε log a_i − ε log Σ_j exp((ψ_j − C_ij)/ε)` with the exact max shift, so the rows
    /// of the plan sum to `a` exactly; then K is rebuilt and the scalings reset.
    fn exact_rows(&mut self) {
        let (eps, nc) = (self.eps, self.nc);
        for (i, phi) in self.phi.iter_mut().enumerate() {
            let row = &self.c[i * nc..(i + 1) * nc];
            *phi = eps * self.src.log_weight[i] - log_sum_exp_gap(row, &self.psi, eps);
        }
        self.rebuild_kernel();
    }

    /// `ψ_j = ε log b_j − ε log Σ_i exp((φ_i − C_ij)/ε)`, the column twin of [`Self::exact_rows`].
    fn exact_cols(&mut self) {
        let (eps, nc) = (self.eps, self.nc);
        let mut column = vec![0.0; self.phi.len()];
        for (j, psi) in self.psi.iter_mut().enumerate() {
            column
                .iter_mut()
                .enumerate()
                .for_each(|(i, c)| *c = self.c[i * nc + j]);
            *psi = eps * self.tgt.log_weight[j] - log_sum_exp_gap(&column, &self.phi, eps);
        }
        self.rebuild_kernel();
    }

    /// Moves the scalings into the potentials and rebuilds K from them.
    fn absorb(&mut self) {
        let eps = self.eps;
        self.phi
            .iter_mut()
            .zip(&self.u)
            .for_each(|(p, u)| *p += eps * u.ln());
        self.psi
            .iter_mut()
            .zip(&self.v)
            .for_each(|(p, v)| *p += eps * v.ln());
        self.rebuild_kernel();
    }

    fn rebuild_kernel(&mut self) {
        let (eps, nc) = (self.eps, self.nc);
        self.kernel.resize(self.c.len(), 0.0);
        for (i, phi) in self.phi.iter().enumerate() {
            let (krow, crow) = (
                &mut self.kernel[i * nc..(i + 1) * nc],
                &self.c[i * nc..(i + 1) * nc],
            );
            for ((k, c), psi) in krow.iter_mut().zip(crow).zip(&self.psi) {
                *k = ((phi + psi - c) / eps).exp();
            }
        }
        self.u.fill(1.0);
        self.v.fill(1.0);
    }

    /// `out_j = Σ_i K_ij u_i`.
    fn kt_u(&self, out: &mut [f64]) {
        out.fill(0.0);
        for (krow, &u) in self.kernel.chunks_exact(self.nc).zip(&self.u) {
            axpy(u, krow, out);
        }
    }

    /// `out_i = Σ_j K_ij v_j`.
    fn k_v(&self, out: &mut [f64]) {
        for (o, krow) in out.iter_mut().zip(self.kernel.chunks_exact(self.nc)) {
            *o = dot(krow, &self.v);
        }
    }

    /// `v_j ← v_j^{1−ω} (b_j / s_j)^ω` (plain update for ω = 1), or the exact log-domain
    /// column update when the sums `s = Kᵀu` underflowed.
    fn update_cols(&mut self, col_sums: &mut [f64], omega: f64) {
        self.kt_u(col_sums);
        if !usable(col_sums) {
            self.absorb();
            self.exact_cols();
            return;
        }
        let b = &self.tgt.weight;
        let it = self.v.iter_mut().zip(b).zip(col_sums.iter());
        if omega == 1.0 {
            it.for_each(|((v, b), s)| *v = b / s);
        } else {
            it.for_each(|((v, b), s)| *v = v.powf(1.0 - omega) * (b / s).powf(omega));
        }
    }

    /// Row sums `r = K v` of the current state and the row-marginal error `Σ|u r − a|/|a|`
    /// (`None` when the sums underflowed: the rows are then updated exactly in the log domain).
    fn row_error(&mut self, row_sums: &mut [f64]) -> Option<f64> {
        self.k_v(row_sums);
        if !usable(row_sums) {
            self.absorb();
            self.exact_rows();
            return None;
        }
        let a = &self.src.weight;
        let err: f64 = (self.u.iter().zip(row_sums.iter()).zip(a))
            .map(|((u, r), a)| (u * r - a).abs())
            .sum();
        Some(err / self.src.mass)
    }

    /// Runs at most `max_iter` column-then-row updates; returns the iterations done. The
    /// updates are over-relaxed (Thibault, Chizat, Dossal & Papadakis 2017) by the general
    /// solver's adaptive [`Relaxation`]; the stopping test, and every error the factor is judged
    /// on, follows a plain column update, so the columns are exact when it passes.
    fn iterate(&mut self, max_iter: usize, tol: f64) -> Result<usize> {
        let mut col_sums = vec![0.0; self.nc];
        let mut row_sums = vec![0.0; self.phi.len()];
        let mut relax = Relaxation::new(true);
        // The final plan's error is re-evaluated in another summation order: a margin keeps a
        // pair that stopped here from reporting an error a rounding above `tol`.
        let tol = 0.9 * tol;
        for it in 1..=max_iter {
            interrupt::check()?;
            let projected = relax.omega() == 1.0 || relax.wants_projected_error();
            self.update_cols(&mut col_sums, if projected { 1.0 } else { relax.omega() });
            let Some(mut err) = self.row_error(&mut row_sums) else {
                continue;
            };
            if err <= tol && !projected {
                self.update_cols(&mut col_sums, 1.0);
                match self.row_error(&mut row_sums) {
                    Some(e) => err = e,
                    None => continue,
                }
            }
            if err <= tol {
                return Ok(it);
            }
            relax.observe(err);
            let (a, omega) = (&self.src.weight, relax.omega());
            let upd = self.u.iter_mut().zip(a).zip(&row_sums);
            if omega == 1.0 {
                upd.for_each(|((u, a), r)| *u = a / r);
            } else {
                upd.for_each(|((u, a), r)| *u = u.powf(1.0 - omega) * (a / r).powf(omega));
            }
            if out_of_range(&self.u) || out_of_range(&self.v) {
                self.absorb();
            }
        }
        Ok(max_iter)
    }
}

fn usable(sums: &[f64]) -> bool {
    sums.iter().all(|&x| x.is_finite() && x > PRODUCT_MIN)
}

fn out_of_range(scalings: &[f64]) -> bool {
    scalings
        .iter()
        .any(|&x| !(1.0 / SCALING_MAX..=SCALING_MAX).contains(&x))
}

#[inline(always)]
fn axpy_generic<const FMA: bool>(alpha: f64, x: &[f64], out: &mut [f64]) {
    out.iter_mut()
        .zip(x)
        .for_each(|(o, x)| *o = mul_add::<FMA>(alpha, *x, *o));
}

multiversion! {
    /// `out += alpha·x`.
    pub fn axpy(alpha: f64, x: &[f64], out: &mut [f64]) => axpy_generic
}

fn solve_pair(
    cost: &ArrayView2<'_, f64>,
    gibbs: &Array2<f64>,
    src: &Support,
    tgt: &Support,
    params: &BatchParams,
    points: Option<&(ArrayView2<'_, f64>, ArrayView2<'_, f64>)>,
) -> Result<PairResult> {
    let mut solver = PairSolver::new(cost, gibbs, src, tgt, params.eps);
    let n_iter = solver.iterate(params.max_iter, params.tol)?;
    plan_statistics(&solver, n_iter, points)
}

/// Statistics of the final plan `P_ij = u_i K_ij v_j` from its row and column sums and one
/// pass for `⟨C, P⟩`: with `log P_ij = log u_i + φ_i/ε + log v_j + ψ_j/ε − C_ij/ε`,
/// `Σ P log P = Σ_i r_i (log u_i + φ_i/ε) + Σ_j s_j (log v_j + ψ_j/ε) − ⟨C, P⟩/ε`, exact also
/// where K underflowed to zero (those entries are zero on both sides).
fn plan_statistics(
    s: &PairSolver<'_>,
    n_iter: usize,
    points: Option<&(ArrayView2<'_, f64>, ArrayView2<'_, f64>)>,
) -> Result<PairResult> {
    let (eps, nc) = (s.eps, s.nc);
    let mut col_sums = vec![0.0; nc];
    s.kt_u(&mut col_sums);
    col_sums.iter_mut().zip(&s.v).for_each(|(c, v)| *c *= v);
    let mut row_sums = vec![0.0; s.phi.len()];
    s.k_v(&mut row_sums);
    row_sums.iter_mut().zip(&s.u).for_each(|(r, u)| *r *= u);
    let mut weighted_v = vec![0.0; nc];
    let transport: f64 = (s.kernel.chunks_exact(nc).zip(s.c.chunks_exact(nc)))
        .zip(&s.u)
        .map(|((krow, crow), u)| {
            weighted_v
                .iter_mut()
                .zip(krow)
                .zip(&s.v)
                .for_each(|((w, k), v)| *w = k * v);
            u * dot(&weighted_v, crow)
        })
        .sum();
    let side = |sums: &[f64], scale: &[f64], pot: &[f64], log_w: &[f64]| {
        let (mut entropy, mut cross) = (0.0, 0.0);
        for (((m, x), p), lw) in sums.iter().zip(scale).zip(pot).zip(log_w) {
            entropy += m * (x.ln() + p / eps);
            cross += m * lw;
        }
        (entropy, cross)
    };
    let (ent_rows, cross_rows) = side(&row_sums, &s.u, &s.phi, &s.src.log_weight);
    let (ent_cols, cross_cols) = side(&col_sums, &s.v, &s.psi, &s.tgt.log_weight);
    let neg_entropy = ent_rows + ent_cols - transport / eps;
    let cross = cross_rows + cross_cols;
    let total: f64 = row_sums.iter().sum();
    let kl = neg_entropy - cross - total + s.src.mass * s.tgt.mass;
    let l1 = |sums: &[f64], w: &[f64], mass: f64| {
        sums.iter().zip(w).map(|(x, w)| (x - w).abs()).sum::<f64>() / mass
    };
    let marginal_error =
        l1(&row_sums, &s.src.weight, s.src.mass) + l1(&col_sums, &s.tgt.weight, s.tgt.mass);
    if !(marginal_error.is_finite() && transport.is_finite() && kl.is_finite()) {
        return Err(OtError::Numerical(format!(
            "non-finite plan statistics (ε = {eps:e})"
        )));
    }
    let displacement = points.map_or_else(Vec::new, |(x, y)| {
        let mut d = vec![0.0; x.ncols()];
        for (&j, m) in s.tgt.index.iter().zip(&col_sums) {
            d.iter_mut().zip(y.row(j)).for_each(|(d, y)| *d += m * y);
        }
        for (&i, m) in s.src.index.iter().zip(&row_sums) {
            d.iter_mut().zip(x.row(i)).for_each(|(d, x)| *d -= m * x);
        }
        d
    });
    Ok(PairResult {
        transport_cost: transport,
        objective: transport + eps * kl,
        neg_entropy,
        marginal_error,
        n_iter,
        displacement,
    })
}

#[cfg(test)]
mod tests;
