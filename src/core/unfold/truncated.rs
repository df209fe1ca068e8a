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
//! In 1-D the kept entries of a row are (within) a contiguous range of the sorted measured
//! points and are not stored but summed again each pass ([`super::band`]): at 10⁵ × 3·10⁵
//! points a row keeps ≈ 3·10⁴ of them, ≈ 3·10⁹ entries that would not fit in memory.
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
//! rests on an unbounded truncation error. The check needs the kept part itself computed
//! accurately: the stored kernel holds no entry above `e^{64}` ([`ENTRY_CAP`]), so an entry
//! cannot overflow while the scaling it multiplies underflows. The coarse references can be far
//! from consistent in 2-D (clusters wider than the entropic blur put `p_i + q_j − C_ij` at
//! hundreds of ε); a row whose entry would exceed the cap is stored against a lowered reference.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

use super::band::Band;
use crate::core::cost::{CostKernel, PointCost};
use crate::core::error::Result;
use crate::core::sinkhorn::{clusters, KernelStore, SparseBuilder, SparseStore};

/// Largest drift `τ` of a column scaling from its weight (units of ε) before the kernel is
/// rebuilt from the current potentials.
const DRIFT: f64 = 5.0;
/// A kept sum must exceed its dropped-part bound `e^{−T}·Σ(scalings)` by `e^{MARGIN}` (relative
/// truncation error ≤ e^{−20} ≈ 2e-9); otherwise the row or column is computed exactly.
const MARGIN: f64 = 20.0;
/// Largest stored entry `e^{ENTRY_CAP}` (units of ε above the references). The kept sums
/// multiply entries by scalings normalised to at most 1; with entries below `e^{64}` a scaling
/// that underflows (below `e^{−708}`) loses at most `e^{64−708}` per entry, far below the
/// `e^{MARGIN−T}` a sum that passes the check holds, so the check stays sound whatever the
/// references. Consistent references (exact softmins) keep entries below `1/ν_j`.
const ENTRY_CAP: f64 = 64.0;
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

/// Where the kept entries live: stored (any dimension) or, in 1-D, recomputed over sorted
/// ranges (see [`super::band`]).
enum Backend {
    /// The builder and its kernel (none before the first build).
    Stored(SparseBuilder, Option<SparseStore>),
    Band(Band),
}

impl Backend {
    fn new(rows: ArrayView2<'_, f64>, cols: ArrayView2<'_, f64>, p_exp: f64) -> Self {
        let flat = |v: ArrayView2<'_, f64>| v.as_standard_layout().iter().copied().collect();
        let (xs, ys): (Vec<f64>, Vec<f64>) = (flat(rows), flat(cols));
        if rows.ncols() == 1 {
            Backend::Band(Band::new(&xs, &ys, p_exp))
        } else {
            Backend::Stored(SparseBuilder::new(&xs, &ys, rows.ncols(), p_exp, 1.0), None)
        }
    }

    /// Keeps the entries `(p_i + q_j − C_ij)/ε ≥ −T`; returns how many. The stored kernel
    /// lowers the row references `p` whose largest entry would exceed `e^{ENTRY_CAP}`
    /// ([`SparseBuilder::build_capped`]); the band sums in the log domain and needs no cap.
    fn build(&mut self, p: &mut Vec<f64>, q: &[f64], eps: f64) -> usize {
        match self {
            Backend::Stored(builder, store) => {
                let (built, reference) = builder.build_capped(p, q, eps, ENTRY_CAP);
                *p = reference;
                store.insert(built).entries()
            }
            Backend::Band(band) => {
                band.set_ranges(p, q, eps, SparseBuilder::THRESHOLD);
                band.entries()
            }
        }
    }

    /// `L_k = log Σ_{l kept} exp((ref_k + t_l − C_kl)/ε)` along rows (`rows`) or columns, for
    /// the terms `t` of the other side with their reference `other_ref`.
    fn log_sums(
        &self,
        rows: bool,
        t: &[f64],
        (other_ref, reference): (&[f64], &[f64]),
        eps: f64,
    ) -> Vec<f64> {
        match self {
            Backend::Stored(_, store) => {
                // Built at construction; without a kernel every kept sum is empty.
                let Some(store) = store.as_ref() else {
                    return vec![f64::NEG_INFINITY; reference.len()];
                };
                let (scal, top) = scalings(t, other_ref, eps);
                let sums = if rows {
                    store.row_products(&scal)
                } else {
                    store.col_products(&scal)
                };
                sums.iter().map(|s| top + s.ln()).collect()
            }
            Backend::Band(band) => {
                // The reference is the stabiliser: the sums are near 1 while it fits.
                if rows {
                    band.row_log_sums(t, reference, eps)
                } else {
                    band.col_log_sums(t, reference, eps)
                }
            }
        }
    }
}

/// The reductions of eq. (25) on a truncated kernel between the (normalised) response rows and
/// the measured points.
pub struct TruncatedKernel<'k> {
    rows: ArrayView2<'k, f64>,
    cols: ArrayView2<'k, f64>,
    p_exp: f64,
    backend: Backend,
    eps: f64,
    p: Vec<f64>,
    q: Vec<f64>,
    /// The last outputs of the two reductions: the references of the next build.
    last_rows: Vec<f64>,
    last_cols: Vec<f64>,
    /// The last row terms (`ε log u`), which bound the row references from below.
    last_row_terms: Vec<f64>,
    /// Rebuild at the next reduction (a column scaling drifted, or many reductions failed the
    /// truncation check).
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
        let q = coarse_softmin(cols, rows, row_terms, p_exp, eps)?;
        let col_terms: Vec<f64> = q.iter().zip(log_nu).map(|(q, l)| q + eps * l).collect();
        let p = coarse_softmin(rows, cols, &col_terms, p_exp, eps)?;
        let mut kernel = TruncatedKernel {
            rows,
            cols,
            p_exp,
            backend: Backend::new(rows, cols, p_exp),
            eps,
            p: Vec::new(),
            q: Vec::new(),
            last_rows: p,
            last_cols: q,
            last_row_terms: row_terms.to_vec(),
            pending: true,
            stats: TruncationStats {
                rows: rows.nrows(),
                ..Default::default()
            },
        };
        kernel.rebuild();
        Ok(kernel)
    }

    /// Builds the kernel for the last outputs of the reductions.
    fn rebuild(&mut self) {
        self.p = row_reference(&self.last_rows, &self.last_row_terms);
        self.q = self.last_cols.clone();
        self.stats.entries += self.backend.build(&mut self.p, &self.q, self.eps);
        self.stats.builds += 1;
        self.pending = false;
    }

    /// `out_i = −ε log Σ_j exp((col_j − C_ij)/ε)`.
    pub fn softmin_rows(&mut self, col: &[f64], shift: &[f64], out: &mut [f64]) -> Result<()> {
        if self.pending {
            self.rebuild();
        }
        let eps = self.eps;
        let refs = (&self.q[..], &self.p[..]);
        let logs = self.backend.log_sums(true, col, refs, eps);
        let bad = finish(&logs, col, refs, eps, out);
        if !bad.is_empty() {
            self.stats.exact_rows += bad.len();
            self.pending |= bad.len() as f64 > STALE_SHARE * out.len() as f64;
            let rows = self.rows.select(Axis(0), &bad);
            exact_softmin(
                &PointCost::new(rows.view(), self.cols, self.p_exp)?,
                true,
                col,
                shift,
                &bad,
                eps,
                out,
            );
        }
        self.last_rows.copy_from_slice(out);
        Ok(())
    }

    /// `out_j = −ε log Σ_i exp((row_i − C_ij)/ε)`; flags a rebuild when the column scalings
    /// `ν_j e^{(out_j − q_j)/ε}` the next row reduction uses drifted from their weights.
    pub fn softmin_cols(&mut self, row: &[f64], shift: &[f64], out: &mut [f64]) -> Result<()> {
        self.last_row_terms.copy_from_slice(row);
        // The bound on the dropped part sums every row's scaling: a single row term that rose
        // far above its reference (a row whose scaling the projection changed a lot, such as a
        // fake row far from the data) would fail the check of every column at once and send
        // the whole reduction to the online cost. New references are far cheaper.
        let eps = self.eps;
        let drifted = row.iter().zip(&self.p).any(|(t, p)| (t - p) / eps > DRIFT);
        if self.pending || drifted {
            self.rebuild();
        }
        let refs = (&self.p[..], &self.q[..]);
        let logs = self.backend.log_sums(false, row, refs, eps);
        let bad = finish(&logs, row, refs, eps, out);
        if !bad.is_empty() {
            self.stats.exact_cols += bad.len();
            self.pending |= bad.len() as f64 > STALE_SHARE * out.len() as f64;
            let cols = self.cols.select(Axis(0), &bad);
            exact_softmin(
                &PointCost::new(self.rows, cols.view(), self.p_exp)?,
                false,
                row,
                shift,
                &bad,
                eps,
                out,
            );
        }
        self.pending |= out
            .iter()
            .zip(&self.q)
            .any(|(o, q)| ((o - q) / eps).abs() > DRIFT);
        self.last_cols.copy_from_slice(out);
        Ok(())
    }
}

/// The reductions `bad` of `out` recomputed on the online cost `sub` (those rows, or columns,
/// against the whole other side).
fn exact_softmin(
    sub: &PointCost,
    rows: bool,
    t: &[f64],
    shift: &[f64],
    bad: &[usize],
    eps: f64,
    out: &mut [f64],
) {
    let shifts: Vec<f64> = bad.iter().map(|&k| shift[k]).collect();
    let mut exact = vec![0.0; bad.len()];
    if rows {
        sub.softmin_rows(t, &shifts, eps, &mut exact);
    } else {
        sub.softmin_cols(t, &shifts, eps, &mut exact);
    }
    bad.iter().zip(&exact).for_each(|(&k, v)| out[k] = *v);
}

/// The row reference: the last row softmin `p`, never below the row's term: `ũ_i =
/// exp((t_i − p_i)/ε)` is then the row's mass, at most 1 for a consistent pair of references,
/// which an estimated reference may miss (raising it only keeps more entries).
fn row_reference(p: &[f64], row_terms: &[f64]) -> Vec<f64> {
    p.iter()
        .zip(row_terms)
        .map(|(p, t)| if t.is_finite() { p.max(*t) } else { *p })
        .collect()
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

/// `out_k = ref_k − ε L_k` from the kept log-sums `L`, where `L` bounds the dropped part: a
/// dropped entry has `(ref_k + other_ref_l − C_kl)/ε < −T`, so the dropped sum is below
/// `e^{−T} Σ_l exp((t_l − other_ref_l)/ε)`, and `L_k` must exceed that by `e^{MARGIN}`.
/// Returns the indices that fail.
fn finish(
    logs: &[f64],
    t: &[f64],
    (other_ref, reference): (&[f64], &[f64]),
    eps: f64,
    out: &mut [f64],
) -> Vec<usize> {
    let (scal, top) = scalings(t, other_ref, eps);
    let floor = MARGIN - SparseBuilder::THRESHOLD + top + scal.iter().sum::<f64>().ln();
    let mut bad = Vec::new();
    for (k, ((o, l), r)) in out.iter_mut().zip(logs).zip(reference).enumerate() {
        if l.is_finite() && *l >= floor {
            *o = r - eps * l;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testing::cloud;

    #[test]
    fn reductions_stay_exact_on_inconsistent_references() {
        // Row references a thousand ε too high on every other row (as the coarse level gives in
        // 2-D when its clusters are wider than the blur) would store entries near e^{1000}
        // (overflow) against row scalings near e^{−1000} (underflow, next to the consistent
        // rows' scalings near 1): the kept products must not be lost.
        let (x, y) = (cloud(300, 2, 3), cloud(200, 2, 4));
        let eps = 1e-3;
        let log_nu = vec![-(200f64.ln()); 200];
        let row_terms: Vec<f64> = (0..300).map(|i| -eps * (i % 5) as f64).collect();
        let mut kernel =
            TruncatedKernel::new(x.view(), y.view(), 2.0, &log_nu, eps, &row_terms).unwrap();
        let inflate = |p: &mut [f64]| p.iter_mut().step_by(2).for_each(|p| *p += 1000.0 * eps);
        inflate(&mut kernel.last_rows);
        kernel.rebuild();
        let exact = PointCost::new(x.view(), y.view(), 2.0).unwrap();
        let (mut out, mut want) = (vec![0.0; 200], vec![0.0; 200]);
        kernel
            .softmin_cols(&row_terms, &vec![0.0; 200], &mut out)
            .unwrap();
        exact.softmin_cols(&row_terms, &vec![0.0; 200], eps, &mut want);
        let worst = |a: &[f64], b: &[f64]| {
            a.iter()
                .zip(b)
                .map(|(a, b)| ((a - b) / eps).abs())
                .fold(0.0, f64::max)
        };
        assert!(
            worst(&out, &want) < 1e-8,
            "columns off by {}",
            worst(&out, &want)
        );
        let col_terms: Vec<f64> = want.iter().zip(&log_nu).map(|(q, l)| q + eps * l).collect();
        inflate(&mut kernel.last_rows);
        kernel.pending = true;
        let (mut out, mut want) = (vec![0.0; 300], vec![0.0; 300]);
        kernel
            .softmin_rows(&col_terms, &vec![0.0; 300], &mut out)
            .unwrap();
        exact.softmin_rows(&col_terms, &vec![0.0; 300], eps, &mut want);
        assert!(
            worst(&out, &want) < 1e-8,
            "rows off by {}",
            worst(&out, &want)
        );
    }
}
