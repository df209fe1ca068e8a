//! The two log-sum-exps of the generalised Sinkhorn (Craig et al., eq. 25) on a truncated
//! stabilized kernel (Schmitzer 2019, §3.2–3.3), and the coarse level that starts it (Feydy's
//! multiscale c-transforms).
//!
//! At the unfolding's ε the plan lives on a thin band around the transport map. For reference
//! potentials (p, q) the stored kernel `K̃_ij = exp((p_i + q_j − C_ij)/ε)` keeps the entries
//! `≥ e^{−T}` ([`SparseBuilder`], found with a k-d tree), and with the scalings
//! `ṽ_j = exp((t_j − q_j)/ε)` of the column terms `t`
//!
//! `softmin_i = −ε log Σ_j exp((t_j − C_ij)/ε) = p_i − ε log Σ_j K̃_ij ṽ_j`
//!
//! (and likewise for the columns), one pass over the kept entries instead of m·n exponentials.
//!
//! The references are the last outputs of the two reductions: `p_i` the row softmin, `q_j` the
//! column softmin (`ε log v_j − ε log ν_j` in eq. 25). Then `Σ_j ν_j K̃_ij = 1` for every row
//! whatever its scaling `u_i` (a row whose σ dies keeps its support), and the kernel only needs
//! rebuilding when the column scalings drift from ν by more than `e^{±τ}`.
//!
//! Every reduction is checked a posteriori: a dropped entry is below `e^{−T}`, so the dropped
//! part of a row's sum is at most `e^{−T} Σ_j ṽ_j` (of a column's, `e^{−T} Σ_i ũ_i`). A row or
//! column whose kept sum is not `e^{MARGIN}` times above that bound — a reference that no longer
//! fits, after a large change of σ — is recomputed exactly on the online cost, so no result
//! rests on an unbounded truncation error.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

use crate::core::cost::{CostKernel, PointCost};
use crate::core::error::Result;
use crate::core::logsumexp::SUM_MAX;
use crate::core::sinkhorn::{clusters, KernelBuilder, KernelStore, SparseBuilder, SparseStore};

/// Largest drift `τ` of a column scaling from its weight (units of ε) before the kernel is
/// rebuilt from the current potentials.
const DRIFT: f64 = 5.0;
/// A kept sum must exceed its dropped-part bound `e^{−T}·Σ(scalings)` by `e^{MARGIN}` (relative
/// truncation error ≤ e^{−20} ≈ 2e-9); otherwise the row or column is computed exactly.
const MARGIN: f64 = 20.0;
/// Share of columns computed exactly beyond which the kernel is rebuilt at the next reduction.
const STALE_SHARE: f64 = 0.01;
/// Clusters per side of the coarse level (reference potentials and warm start).
pub const COARSE_CLUSTERS: usize = 2048;

/// What the truncated kernel did during a fit.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TruncationStats {
    /// Kernel builds (the first one and one per rebuild).
    pub builds: usize,
    /// Stored entries summed over the builds (mean per row: `/ (builds · rows)`).
    pub entries: usize,
    /// Rows and columns whose reduction failed the truncation check and ran exactly.
    pub exact_rows: usize,
    pub exact_cols: usize,
    /// Rows of the kernel.
    pub rows: usize,
}

impl TruncationStats {
    /// Mean stored entries per row over the builds.
    pub fn mean_kept_per_row(&self) -> f64 {
        self.entries as f64 / (self.builds * self.rows).max(1) as f64
    }
}

/// The reductions of eq. (25) on a truncated kernel between the (normalised) response rows and
/// the measured points.
pub struct TruncatedKernel<'k> {
    rows: ArrayView2<'k, f64>,
    cols: ArrayView2<'k, f64>,
    p_exp: f64,
    builder: SparseBuilder,
    eps: f64,
    store: SparseStore,
    p: Vec<f64>,
    q: Vec<f64>,
    /// The last outputs of the two reductions: the references of the next build.
    last_rows: Vec<f64>,
    last_cols: Vec<f64>,
    /// Rebuild at the next column reduction (a column scaling drifted, or many reductions
    /// failed the truncation check).
    pending: bool,
    pub stats: TruncationStats,
}

impl<'k> TruncatedKernel<'k> {
    /// Builds the first kernel for the row terms `row_terms` (`ε log u` of the warm start):
    /// the references are the two softmins estimated on the coarse level.
    pub fn new(
        rows: ArrayView2<'k, f64>,
        cols: ArrayView2<'k, f64>,
        p_exp: f64,
        log_nu: &[f64],
        eps: f64,
        row_terms: &[f64],
    ) -> Result<Self> {
        let flat = |v: ArrayView2<'_, f64>| v.as_standard_layout().iter().copied().collect();
        let (xs, ys): (Vec<f64>, Vec<f64>) = (flat(rows), flat(cols));
        let builder = SparseBuilder::new(&xs, &ys, rows.ncols(), p_exp, 1.0);
        let q = coarse_softmin(cols, rows, row_terms, p_exp, eps)?;
        let col_terms: Vec<f64> = q.iter().zip(log_nu).map(|(q, l)| q + eps * l).collect();
        let p = coarse_softmin(rows, cols, &col_terms, p_exp, eps)?;
        let p = row_reference(&p, Some(row_terms));
        let store = builder.build(&p, &q, eps);
        let stats = TruncationStats {
            builds: 1,
            entries: store.entries(),
            rows: rows.nrows(),
            ..Default::default()
        };
        Ok(TruncatedKernel {
            rows,
            cols,
            p_exp,
            builder,
            eps,
            store,
            last_rows: p.clone(),
            last_cols: q.clone(),
            p,
            q,
            pending: false,
            stats,
        })
    }

    /// Builds the kernel for the last outputs of the reductions.
    fn rebuild(&mut self, row_terms: Option<&[f64]>) {
        self.p = row_reference(&self.last_rows, row_terms);
        self.q = self.last_cols.clone();
        self.store = self.builder.build(&self.p, &self.q, self.eps);
        self.stats.builds += 1;
        self.stats.entries += self.store.entries();
        self.pending = false;
    }

    /// `out_i = −ε log Σ_j exp((col_j − C_ij)/ε)`; flags a rebuild when a column scaling
    /// drifted from its weight.
    pub fn softmin_rows(&mut self, col: &[f64], shift: &[f64], out: &mut [f64]) -> Result<()> {
        let eps = self.eps;
        if self.pending {
            self.rebuild(None);
        }
        let (scal, top) = scalings(col, &self.q, eps);
        let sums = self.store.row_products(&scal);
        let bad = finish(self.builder.threshold(), &sums, &scal, &self.p, top, eps, out);
        if std::env::var("OTI_DEBUG").is_ok() {
            eprintln!("rows: bad {} of {} top {top} entries {}", bad.len(), out.len(), self.store.entries());
        }
        if !bad.is_empty() {
            self.stats.exact_rows += bad.len();
            self.pending |= bad.len() as f64 > STALE_SHARE * out.len() as f64;
            let sub = PointCost::new(self.rows.select(Axis(0), &bad).view(), self.cols, self.p_exp)?;
            let shifts: Vec<f64> = bad.iter().map(|&i| shift[i]).collect();
            let mut exact = vec![0.0; bad.len()];
            sub.softmin_rows(col, &shifts, eps, &mut exact);
            bad.iter().zip(&exact).for_each(|(&i, v)| out[i] = *v);
        }
        self.last_rows.copy_from_slice(out);
        Ok(())
    }

    /// `out_j = −ε log Σ_i exp((row_i − C_ij)/ε)`; rebuilds first when flagged.
    pub fn softmin_cols(&mut self, row: &[f64], shift: &[f64], out: &mut [f64]) -> Result<()> {
        let eps = self.eps;
        if self.pending {
            self.rebuild(Some(row));
        }
        let (scal, top) = scalings(row, &self.p, eps);
        let sums = self.store.col_products(&scal);
        let bad = finish(self.builder.threshold(), &sums, &scal, &self.q, top, eps, out);
        if std::env::var("OTI_DEBUG").is_ok() {
            let su: f64 = scal.iter().sum();
            eprintln!("cols: bad {} of {}; sum scal {su:e} top {top}", bad.len(), out.len());
        }
        if !bad.is_empty() {
            self.stats.exact_cols += bad.len();
            self.pending |= bad.len() as f64 > STALE_SHARE * out.len() as f64;
            let sub = PointCost::new(self.rows, self.cols.select(Axis(0), &bad).view(), self.p_exp)?;
            let shifts: Vec<f64> = bad.iter().map(|&j| shift[j]).collect();
            let mut exact = vec![0.0; bad.len()];
            sub.softmin_cols(row, &shifts, eps, &mut exact);
            bad.iter().zip(&exact).for_each(|(&j, v)| out[j] = *v);
        }
        // The drift of the column scalings `ν_j e^{(out_j − q_j)/ε}` the next row reduction uses.
        self.pending |= out.iter().zip(&self.q).any(|(o, q)| ((o - q) / eps).abs() > DRIFT);
        self.last_cols.copy_from_slice(out);
        Ok(())
    }
}

/// The row reference from the last row softmin `p`, never below the row's term when it is given:
/// `ũ_i = exp((t_i − p_i)/ε)` is then the row's mass, at most 1 for a consistent pair of
/// references, and an estimated reference may miss that (raising it only keeps more entries).
fn row_reference(p: &[f64], row_terms: Option<&[f64]>) -> Vec<f64> {
    match row_terms {
        None => p.to_vec(),
        Some(t) => p
            .iter()
            .zip(t)
            .map(|(p, t)| if t.is_finite() { p.max(*t) } else { *p })
            .collect(),
    }
}

/// The scalings `exp((t − r)/ε − top)` of one side, normalised so the largest is 1, and `top`.
fn scalings(term: &[f64], reference: &[f64], eps: f64) -> (Vec<f64>, f64) {
    let top = term
        .iter()
        .zip(reference)
        .map(|(t, r)| (t - r) / eps)
        .fold(f64::NEG_INFINITY, f64::max);
    let scal = term
        .iter()
        .zip(reference)
        .map(|(t, r)| ((t - r) / eps - top).exp())
        .collect();
    (scal, top)
}

/// `out = reference − ε (top + log sums)` where the kept sum bounds the dropped part
/// (`e^{−T} Σ scal`) with room `e^{MARGIN}`; returns the indices that fail.
fn finish(
    threshold: f64,
    sums: &[f64],
    scal: &[f64],
    reference: &[f64],
    top: f64,
    eps: f64,
    out: &mut [f64],
) -> Vec<usize> {
    let floor = scal.iter().sum::<f64>() * (MARGIN - threshold).exp();
    let mut bad = Vec::new();
    for (k, ((o, s), r)) in out.iter_mut().zip(sums).zip(reference).enumerate() {
        if top.is_finite() && *s >= floor && *s <= SUM_MAX {
            *o = r - eps * (top + s.ln());
        } else {
            bad.push(k);
        }
    }
    bad
}

/// `out_i = −ε log Σ_j exp((t_j − C(x_i, y_j))/ε)` with the y side replaced by about
/// [`COARSE_CLUSTERS`] clusters at their `e^{t/ε}`-weighted barycentres, each carrying the
/// log-sum of its members' terms.
pub fn coarse_softmin(
    x: ArrayView2<'_, f64>,
    y: ArrayView2<'_, f64>,
    t: &[f64],
    p_exp: f64,
    eps: f64,
) -> Result<Vec<f64>> {
    let top = t.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let w = Array1::from_iter(t.iter().map(|v| ((v - top) / eps).exp()));
    let (centres, mass) = coarse_points(y, w.view(), COARSE_CLUSTERS);
    let keep: Vec<usize> = (0..mass.len()).filter(|&c| mass[c] > 0.0).collect();
    let terms: Vec<f64> = keep.iter().map(|&c| top + eps * mass[c].ln()).collect();
    let centres = centres.select(Axis(0), &keep);
    let mut out = vec![0.0; x.nrows()];
    PointCost::new(x, centres.view(), p_exp)?.softmin_rows(
        &terms,
        &vec![0.0; x.nrows()],
        eps,
        &mut out,
    );
    Ok(out)
}

/// Barycentres (weighted by `w`) and summed weights of about `count` clusters of `points`.
pub fn coarse_points(
    points: ArrayView2<'_, f64>,
    w: ArrayView1<'_, f64>,
    count: usize,
) -> (Array2<f64>, Array1<f64>) {
    let flat: Vec<f64> = points.as_standard_layout().iter().copied().collect();
    let (centres, mass, _) = clusters(&flat, w, points.ncols(), count);
    (centres, mass)
}
