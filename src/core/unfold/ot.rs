//! OT unfolding with a Wasserstein loss (Craig, Faktor, Nachman, §3.2).
//!
//! Discrete problem (eq. 21/23): response points `y_i` (m) with response `R` (m×L), measured
//! points `y'_j` with weights `ν_j` (n), cost `C_ij = |y_i − y'_j|^p` divided by its maximum
//! (the reference code's convention, so ε means what the paper means). In the log domain, with
//! `u = [u_w; u_s]`, `v = [v_w; v_s]`, `b = [ν; 1]`, eq. (25) reads
//!
//! 1. `log v_w = log ν − LSE_i(log u_w,i − C_ij/ε)`, `log v_s = −LSE_k(log u_s,k)`;
//! 2. `log a = log u + log K̃v`, `log K̃v_w = LSE_j(log v_w,j − C_ij/ε)`, `log K̃v_s = log v_s`;
//! 3. `z = Proj^KL_{ker B}(a)` (Douglas–Rachford, eq. 28);
//! 4. `log u = log z − log K̃v`, and `σ = z_s / Σ z_s`.
//!
//! Both log-sum-exps are the softmin reductions of a [`CostKernel`] (here a [`PointCost`] on
//! rescaled points, so the m×n cost is never stored): `LSE_i(log u_i − C_ij/ε) =
//! −softmin_cols(ε log u)_j / ε`. The warm start (eq. 26–27) is the classical classical
//! Sinkhorn between `Rσ⁰` and `ν` at `ε_init`.
//!
//! Two extensions keep eq. (25) a Bregman scheme. A reference measure `σ̂` other than the
//! uniform one of eq. (21) enters `K̃` as the entries `K̃_{m+k,n+1} = L σ̂_k` (the KL term
//! `εKL(σ|σ̂)`). Fakes (detector-level events without a true counterpart) are extra rows of `P`
//! with fixed row sums `φ β̄` (φ their share of the measured mass, `β̄` their normalised weights):
//! the folded measure is `(1 − φ) Rσ + φ β̄`, the last column of `b` becomes `1 − φ`, and the
//! KL projection onto the fixed rows just sets them. With φ = 0 and uniform `σ̂` this is eq. (25).

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use rayon::prelude::*;

use super::projection::{douglas_rachford, exact_kl_projection, KerBProjector, Response};
use super::truncated::{coarse_points, TruncatedKernel, TruncationStats, COARSE_CLUSTERS};
use crate::core::cost::{CostKernel, PointCost};
use crate::core::error::{check_finite, check_positive, OtError, Result};
use crate::core::interrupt;
use crate::core::layout::row_major;
use crate::core::logsumexp::log_sum_exp;
use crate::core::simd::dot;
use crate::core::sinkhorn::{sinkhorn, SinkhornParams};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CostNormalization {
    /// Divide the cost by its maximum over all (response, measured) pairs (reference code).
    Max,
    /// Raw cost.
    None,
}

/// How `Proj^KL_{ker B}` (step 3 of eq. 25) is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Projection {
    /// The paper's Douglas–Rachford splitting, eq. (28), `dr_iter` steps of size `dr_step`.
    DouglasRachford,
    /// The exact projection (closed form for block responses, Newton otherwise).
    Exact,
}

#[derive(Clone, Debug)]
pub struct OtUnfoldParams {
    /// ε of eq. (21), in units of the (normalised) cost.
    pub eps: f64,
    /// ε_init of the warm start, eq. (26).
    pub eps_init: f64,
    /// Classical Sinkhorn iterations of the warm start (the paper uses 100).
    pub n_init_iter: usize,
    /// Outer iterations of eq. (25) (at most, when `tol` is set).
    pub max_iter: usize,
    /// Stop when `‖σ_l − σ_{l−1}‖₁ ≤ tol`; `None` runs exactly `max_iter` iterations.
    pub tol: Option<f64>,
    /// Douglas–Rachford iterations per projection and step τ (eq. 28).
    pub dr_iter: usize,
    pub dr_step: f64,
    pub projection: Projection,
    pub p: f64,
    pub cost_normalization: CostNormalization,
    /// How the two log-sum-exps of eq. (25) are evaluated.
    pub kernel: UnfoldKernel,
    /// Run the warm start on about this many clusters per side and carry it to the points by a
    /// c-transform; `None` decides (clusters when the truncated kernel runs on a problem whose
    /// warm start could not store its kernel).
    pub warm_start_clusters: Option<usize>,
}

/// The evaluation of the log-sum-exps of eq. (25).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnfoldKernel {
    /// The truncated kernel where ε is small enough for it to pay (see [`wants_truncation`]),
    /// else the online one.
    Auto,
    /// Online log-domain reductions: m·n exponentials per pass, exact.
    Online,
    /// The stabilized truncated kernel of [`super::truncated`]: one pass over the kept entries.
    Truncated,
}

impl OtUnfoldParams {
    pub fn new() -> Self {
        OtUnfoldParams {
            eps: 3e-5,
            eps_init: 1e-2,
            n_init_iter: 100,
            max_iter: 25,
            tol: None,
            dr_iter: 25,
            dr_step: 1e-3,
            projection: Projection::DouglasRachford,
            p: 2.0,
            cost_normalization: CostNormalization::Max,
            kernel: UnfoldKernel::Auto,
            warm_start_clusters: None,
        }
    }

    fn validate(&self) -> Result<()> {
        check_positive("reg", self.eps)?;
        check_positive("reg_init", self.eps_init)?;
        check_positive("dr_step", self.dr_step)?;
        if self.n_init_iter < 1 {
            return Err(OtError::invalid("n_init_iter", "must be at least 1"));
        }
        if self.max_iter < 1 {
            return Err(OtError::invalid("max_iter", "must be at least 1"));
        }
        if self.warm_start_clusters == Some(0) {
            return Err(OtError::invalid(
                "warm_start_clusters",
                "must be at least 1",
            ));
        }
        if let Some(t) = self.tol {
            if !(t.is_finite() && t >= 0.0) {
                return Err(OtError::invalid(
                    "tol",
                    format!("must be finite and non-negative, got {t}"),
                ));
            }
        }
        if !(self.p.is_finite() && self.p >= 1.0) {
            return Err(OtError::invalid(
                "p",
                format!("must be a finite exponent ≥ 1, got {}", self.p),
            ));
        }
        Ok(())
    }
}

impl Default for OtUnfoldParams {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Clone, Debug)]
pub struct OtUnfoldOutput {
    /// σ after the last iteration (sums to one).
    pub sigma: Array1<f64>,
    /// σ after each iteration, (n_iter, L).
    pub sigma_history: Array2<f64>,
    /// `εKL(P|K̃)` of the iterate `P^{2l} = diag(u) K̃ diag(v)` (eq. 23) per iteration, in raw
    /// cost units; it needs only the marginals (`Σ_ij P_ij log(P_ij/K̃_ij) = Σ a log u + Σ b log v`).
    pub objective: Vec<f64>,
    /// `‖σ_l − σ_{l−1}‖₁` per iteration.
    pub sigma_change: Vec<f64>,
    /// `‖Bz‖/‖z‖` of the projection's output per iteration.
    pub kerb_residual: Vec<f64>,
    pub n_iter: usize,
    /// `tol` reached (always false when `tol` is `None`).
    pub converged: bool,
    /// The factor the cost was divided by.
    pub cost_scale: f64,
    /// What the truncated kernel did (`None` on the online kernel).
    pub truncation: Option<TruncationStats>,
    /// Whether the warm start ran on clusters.
    pub coarse_warm_start: bool,
}

/// The discrete problem of eq. (21) with the optional fakes and reference measure.
#[derive(Clone, Debug)]
pub struct OtUnfoldInput<'a> {
    /// Detector points `y_i` of the response, (m, d).
    pub response_points: ArrayView2<'a, f64>,
    /// Column-stochastic response `R` (m×L).
    pub response: Response,
    /// Measured points `y'_j`, (n, d), and their positive weights (any normalisation).
    pub measured_points: ArrayView2<'a, f64>,
    pub measured_weights: ArrayView1<'a, f64>,
    /// Start `σ⁰` of the iteration (normalised inside); default: the reference.
    pub prior: Option<ArrayView1<'a, f64>>,
    /// Reference measure `σ̂` of the KL term in eq. (21) (positive, normalised inside); default
    /// uniform.
    pub reference: Option<ArrayView1<'a, f64>>,
    /// Fakes: detector points (f, d) and positive weights in the units of `measured_weights`;
    /// their total must stay below the measured total.
    pub fakes: Option<(ArrayView2<'a, f64>, ArrayView1<'a, f64>)>,
}

/// Positive, finite entries of a length-`l` vector named `name`, normalised to sum to one.
fn normalised_positive(name: &'static str, v: ArrayView1<'_, f64>, l: usize) -> Result<Vec<f64>> {
    if v.len() != l {
        return Err(OtError::shape(
            name,
            format!("has {} entries for {l} gen points", v.len()),
        ));
    }
    check_finite(name, v.iter())?;
    if v.iter().any(|x| *x <= 0.0) {
        return Err(OtError::invalid(name, "entries must be positive"));
    }
    let t: f64 = v.sum();
    Ok(v.iter().map(|x| x / t).collect())
}

/// Validated fakes: (points, `φ β̄` — the fixed row sums in units of the normalised measured
/// mass, φ).
fn fixed_rows(
    fakes: Option<(ArrayView2<'_, f64>, ArrayView1<'_, f64>)>,
    d: usize,
    nu_mass: f64,
) -> Result<(Array2<f64>, Vec<f64>, f64)> {
    let Some((pts, w)) = fakes else {
        return Ok((Array2::zeros((0, d)), Vec::new(), 0.0));
    };
    if pts.ncols() != d {
        return Err(OtError::shape(
            "fakes",
            format!("points have dimension {} but reco has {d}", pts.ncols()),
        ));
    }
    if w.len() != pts.nrows() {
        return Err(OtError::shape(
            "fake_weight",
            format!(
                "has {} weights but fakes has {} points",
                w.len(),
                pts.nrows()
            ),
        ));
    }
    check_finite("fakes", pts.iter())?;
    check_finite("fake_weight", w.iter())?;
    if w.iter().any(|v| *v <= 0.0) {
        return Err(OtError::invalid(
            "fake_weight",
            "weights must be positive (drop zero-weight fakes first)",
        ));
    }
    let phi = w.sum() / nu_mass;
    if phi >= 1.0 {
        return Err(OtError::invalid(
            "fake_weight",
            format!("the fakes' total is {phi} times the measured total; it must be smaller"),
        ));
    }
    Ok((pts.to_owned(), w.iter().map(|v| v / nu_mass).collect(), phi))
}

/// `max_ij |y_i − y'_j|^p`, exact. By the triangle inequality no `y'` is farther from `y_i`
/// than `|y_i − c| + R` (`c` the centroid of the `y'`, `R` their largest distance to it), so the
/// rows are scanned from the largest bound down, only while it beats the best pair so far —
/// usually a handful of rows instead of all m·n pairs.
fn max_cost(y: ArrayView2<'_, f64>, yp: ArrayView2<'_, f64>, p: f64) -> f64 {
    let sq = |a: ArrayView1<'_, f64>, b: ArrayView1<'_, f64>| -> f64 {
        a.iter().zip(b.iter()).map(|(u, v)| (u - v) * (u - v)).sum()
    };
    let Some(c) = yp.mean_axis(Axis(0)) else {
        return 0.0;
    };
    let radius = yp
        .rows()
        .into_iter()
        .map(|r| sq(r, c.view()))
        .fold(0.0, f64::max)
        .sqrt();
    let mut rows: Vec<(f64, usize)> = y
        .rows()
        .into_iter()
        .enumerate()
        .map(|(i, r)| (sq(r, c.view()).sqrt(), i))
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut best: f64 = 0.0;
    for (dist, i) in rows {
        if (dist + radius).powi(2) <= best {
            break;
        }
        let yi = y.row(i);
        let far = (0..yp.nrows())
            .into_par_iter()
            .map(|j| sq(yi, yp.row(j)))
            .reduce(|| 0.0, f64::max);
        best = best.max(far);
    }
    best.powf(0.5 * p)
}

/// The state of eq. (25) in log coordinates: `log u = [log u_w (m); log u_f (f); log u_s (L)]`
/// over the response rows, the fixed fake rows and the gen points.
struct Scalings {
    m: usize,
    f: usize,
    log_u: Vec<f64>,
}

/// Validated inputs in the form the iteration uses.
struct Prepared {
    kernel: PointCost,
    /// The normalised response (and fake) rows and measured points of `kernel`.
    rows: Array2<f64>,
    cols: Array2<f64>,
    projector: KerBProjector,
    /// log ν (normalised), n.
    log_nu: Vec<f64>,
    /// Fixed row sums `φ β̄` of the fakes, f.
    fake_mass: Vec<f64>,
    phi: f64,
    /// `log(L σ̂_k)`, or `None` for the uniform reference (the paper's).
    log_ref: Option<Vec<f64>>,
    sigma0: Vec<f64>,
    cost_scale: f64,
    raw_max_cost: f64,
}

fn prepare(input: OtUnfoldInput<'_>, params: &OtUnfoldParams) -> Result<Prepared> {
    params.validate()?;
    let response = input.response;
    let (m, l) = (response.n_response(), response.n_gen());
    let (y, yp, nu_w) = (
        input.response_points,
        input.measured_points,
        input.measured_weights,
    );
    let n = yp.nrows();
    if y.nrows() != m {
        return Err(OtError::shape(
            "reco",
            format!(
                "has {} detector points but the response has {m} rows",
                y.nrows()
            ),
        ));
    }
    if nu_w.len() != n {
        return Err(OtError::shape(
            "measured_weight",
            format!("has {} weights but measured has {n} points", nu_w.len()),
        ));
    }
    check_finite("measured_weight", nu_w.iter())?;
    if nu_w.iter().any(|w| w.is_nan() || *w <= 0.0) {
        return Err(OtError::invalid(
            "measured_weight",
            "weights must be positive (drop zero-weight events first)",
        ));
    }
    if yp.ncols() != y.ncols() {
        return Err(OtError::shape(
            "measured",
            format!(
                "points have dimension {} but reco has {}",
                yp.ncols(),
                y.ncols()
            ),
        ));
    }
    let nu_mass: f64 = nu_w.sum();
    let log_nu: Vec<f64> = nu_w.iter().map(|w| (w / nu_mass).ln()).collect();
    let (fake_pts, fake_mass, phi) = fixed_rows(input.fakes, y.ncols(), nu_mass)?;
    let reference = input
        .reference
        .map(|r| normalised_positive("gen_weight", r, l))
        .transpose()?;
    let sigma0 = match (input.prior, &reference) {
        (Some(s), _) => normalised_positive("prior", s, l)?,
        (None, Some(r)) => r.clone(),
        (None, None) => vec![1.0 / l as f64; l],
    };
    let log_ref = reference.map(|r| r.iter().map(|v| (l as f64 * v).ln()).collect());
    // Normalised cost |y/s − y'/s|^p = C/max C with s = (max C)^{1/p}, computed online; the
    // fakes are response rows like the others. max C also decides the warm start's domain.
    let rows = if fake_pts.nrows() > 0 {
        ndarray::concatenate(ndarray::Axis(0), &[y, fake_pts.view()])?
    } else {
        y.to_owned()
    };
    let raw_max_cost = max_cost(rows.view(), yp, params.p);
    let cost_scale = match params.cost_normalization {
        CostNormalization::Max => raw_max_cost,
        CostNormalization::None => 1.0,
    };
    if !(cost_scale > 0.0 && cost_scale.is_finite()) {
        return Err(OtError::invalid(
            "measured",
            "all response and measured points coincide: the cost is zero",
        ));
    }
    let s = cost_scale.powf(1.0 / params.p);
    let (rows, cols) = (rows.mapv(|v| v / s), yp.mapv(|v| v / s));
    let kernel = PointCost::new(rows.view(), cols.view(), params.p)?;
    Ok(Prepared {
        kernel,
        rows,
        cols,
        projector: KerBProjector::new(response)?,
        log_nu,
        fake_mass,
        phi,
        log_ref,
        sigma0,
        cost_scale,
        raw_max_cost,
    })
}

/// Runs OT unfolding. `progress` is called after every outer iteration with its index; an
/// error it returns stops the iteration and is returned.
pub fn ot_unfold(
    input: OtUnfoldInput<'_>,
    params: &OtUnfoldParams,
    mut progress: Option<&mut dyn FnMut(usize) -> Result<()>>,
) -> Result<OtUnfoldOutput> {
    let pr = prepare(input, params)?;
    let m = pr.projector.response().n_response();
    let l = pr.projector.response().n_gen();
    let f = pr.fake_mass.len();
    let (log_u_w, mut reductions, coarse) = start(&pr, params)?;
    // log u = [log u_w; log σ⁰] (eq. 27).
    let log_u = log_u_w
        .into_iter()
        .chain(pr.sigma0.iter().map(|v| v.ln()))
        .collect();
    let mut state = Scalings { m, f, log_u };
    let mut out = OtUnfoldOutput {
        sigma: Array1::from(pr.sigma0.clone()),
        sigma_history: Array2::zeros((0, l)),
        objective: Vec::new(),
        sigma_change: Vec::new(),
        kerb_residual: Vec::new(),
        n_iter: 0,
        converged: false,
        cost_scale: pr.cost_scale,
        truncation: None,
        coarse_warm_start: coarse,
    };
    let mut history = Vec::new();
    let mut work = Workspace::new(pr.kernel.shape());
    for it in 0..params.max_iter {
        interrupt::check()?;
        let new_sigma = outer_iteration(
            &pr,
            params,
            &mut reductions,
            &mut state,
            &mut work,
            &mut out,
        )?;
        if !new_sigma.iter().all(|v| v.is_finite()) || !state.log_u.iter().all(|v| v.is_finite()) {
            return Err(OtError::Numerical(format!(
                "non-finite iterate at outer iteration {it} (ε = {:e})",
                params.eps
            )));
        }
        let change: f64 = new_sigma
            .iter()
            .zip(out.sigma.iter())
            .map(|(a, b)| (a - b).abs())
            .sum();
        out.sigma = Array1::from(new_sigma);
        out.sigma_change.push(change);
        history.extend(out.sigma.iter().copied());
        out.n_iter = it + 1;
        if let Some(p) = progress.as_deref_mut() {
            p(it)?;
        }
        if params.tol.is_some_and(|t| change <= t) {
            out.converged = true;
            break;
        }
    }
    out.sigma_history = Array2::from_shape_vec((out.n_iter, l), history)?;
    if let Reductions::Truncated(k) = reductions {
        out.truncation = Some(k.stats);
    }
    Ok(out)
}

/// The warm start, eq. (26)–(27) (`log u` of the response and fake rows), the reductions the
/// iterations run on, and whether the warm start ran on clusters.
fn start<'p>(
    pr: &'p Prepared,
    params: &OtUnfoldParams,
) -> Result<(Vec<f64>, Reductions<'p>, bool)> {
    let m = pr.projector.response().n_response();
    let f = pr.fake_mass.len();
    // Warm start, eq. (26)–(27): classical Sinkhorn between [(1 − φ)Rσ⁰; φβ̄] and ν at ε_init,
    // started like the reference code from v = 1 with a u-update.
    let mut a0 = vec![0.0; m + f];
    pr.projector.response().apply(&pr.sigma0, &mut a0[..m]);
    a0[..m].iter_mut().for_each(|a| *a *= 1.0 - pr.phi);
    a0[m..].copy_from_slice(&pr.fake_mass);
    let nu = Array1::from_iter(pr.log_nu.iter().map(|v| v.exp()));
    let truncated = wants_truncation(pr, params);
    let n = pr.cols.nrows();
    let clusters = params.warm_start_clusters.or_else(|| {
        (truncated && (m + f).saturating_mul(n) > SCALING_MAX_ENTRIES).then_some(COARSE_CLUSTERS)
    });
    let log_u_w = match clusters {
        Some(count) => coarse_warm_start(pr, &a0, nu.view(), count, params)?,
        None => {
            warm_start(
                &pr.kernel,
                &a0,
                nu.view(),
                pr.raw_max_cost / pr.cost_scale,
                params,
            )?
            .0
        }
    };
    let reductions = if truncated {
        let terms: Vec<f64> = log_u_w.iter().map(|v| params.eps * v).collect();
        Reductions::Truncated(Box::new(TruncatedKernel::new(
            pr.rows.view(),
            pr.cols.view(),
            params.p,
            &pr.log_nu,
            params.eps,
            &terms,
        )?))
    } else {
        Reductions::Online(&pr.kernel, params.eps)
    };
    Ok((log_u_w, reductions, clusters.is_some()))
}

/// The two log-sum-exps of eq. (25), on the online cost or the truncated kernel.
enum Reductions<'k> {
    Online(&'k PointCost, f64),
    Truncated(Box<TruncatedKernel<'k>>),
}

impl Reductions<'_> {
    fn softmin_rows(&mut self, col: &[f64], shift: &[f64], out: &mut [f64]) -> Result<()> {
        match self {
            Reductions::Online(k, eps) => {
                k.softmin_rows(col, shift, *eps, out);
                Ok(())
            }
            Reductions::Truncated(k) => k.softmin_rows(col, shift, out),
        }
    }

    fn softmin_cols(&mut self, row: &[f64], shift: &[f64], out: &mut [f64]) -> Result<()> {
        match self {
            Reductions::Online(k, eps) => {
                k.softmin_cols(row, shift, *eps, out);
                Ok(())
            }
            Reductions::Truncated(k) => k.softmin_cols(row, shift, out),
        }
    }
}

/// Largest dimension `Auto` truncates in: the k-d tree prunes well only in low d.
const TRUNCATED_MAX_DIM: usize = 3;
/// Largest share of the cost's range the kept band `C ≤ Tε` may cover per dimension for `Auto`
/// to truncate: above it the kernel keeps too much to pay for its builds.
const TRUNCATED_MAX_BAND: f64 = 0.125;

/// Smallest m·n from which `Auto` truncates 1-D problems: their band kernel stores nothing and
/// sums each block of rows by a short series, so it pays off early (3.9·10³ × 2.2·10³ points:
/// 1.9 s against 4.1 s online).
const TRUNCATED_MIN_ENTRIES_1D: usize = 1 << 20;

/// Whether the truncated kernel runs: on request, or under `Auto` for low-dimensional problems
/// too large for the stored warm start (m·n > [`SCALING_MAX_ENTRIES`]; in 1-D from
/// [`TRUNCATED_MIN_ENTRIES_1D`]) at an ε whose band `|y − y'| ≤ (Tε)^{1/p}` (T = 32) is narrow
/// against the points' diameter.
fn wants_truncation(pr: &Prepared, params: &OtUnfoldParams) -> bool {
    match params.kernel {
        UnfoldKernel::Online => false,
        UnfoldKernel::Truncated => true,
        UnfoldKernel::Auto => {
            let (m, n) = (pr.rows.nrows(), pr.cols.nrows());
            let max_c = pr.raw_max_cost / pr.cost_scale;
            let band = 2.0 * (32.0 * params.eps / max_c).powf(1.0 / params.p);
            let min_entries = if pr.rows.ncols() == 1 {
                TRUNCATED_MIN_ENTRIES_1D
            } else {
                SCALING_MAX_ENTRIES
            };
            pr.rows.ncols() <= TRUNCATED_MAX_DIM
                && m.saturating_mul(n) > min_entries
                && band <= TRUNCATED_MAX_BAND
        }
    }
}

/// Buffers of the softmin reductions, reused across iterations.
struct Workspace {
    shift_rows: Vec<f64>,
    shift_cols: Vec<f64>,
    out_rows: Vec<f64>,
    out_cols: Vec<f64>,
    term_rows: Vec<f64>,
    term_cols: Vec<f64>,
}

impl Workspace {
    fn new((rows, cols): (usize, usize)) -> Self {
        Workspace {
            shift_rows: vec![0.0; rows],
            shift_cols: vec![0.0; cols],
            out_rows: vec![0.0; rows],
            out_cols: vec![0.0; cols],
            term_rows: vec![0.0; rows],
            term_cols: vec![0.0; cols],
        }
    }
}

/// One iteration of eq. (25): updates `log u`, records the objective and the projection's
/// residual, and returns the new (normalised) σ.
fn outer_iteration(
    pr: &Prepared,
    params: &OtUnfoldParams,
    reductions: &mut Reductions<'_>,
    state: &mut Scalings,
    w: &mut Workspace,
    out: &mut OtUnfoldOutput,
) -> Result<Vec<f64>> {
    let eps = params.eps;
    let rows = state.m + state.f;
    let log_ref = |k: usize| pr.log_ref.as_ref().map_or(0.0, |r| r[k]);
    // 1. log v_w = log ν − LSE_i(log u_i − C_ij/ε) over all rows, as a column softmin of ε log u;
    //    log v_s = log(1 − φ) − LSE_k(log u_s,k + log L σ̂_k).
    w.term_rows
        .iter_mut()
        .zip(&state.log_u[..rows])
        .for_each(|(t, lu)| *t = eps * lu);
    reductions.softmin_cols(&w.term_rows, &w.shift_cols, &mut w.out_cols)?;
    w.shift_cols.copy_from_slice(&w.out_cols);
    let log_v_w: Vec<f64> = pr
        .log_nu
        .iter()
        .zip(&w.out_cols)
        .map(|(ln, o)| ln + o / eps)
        .collect();
    let log_us: Vec<f64> = match &pr.log_ref {
        None => state.log_u[rows..].to_vec(),
        Some(r) => state.log_u[rows..]
            .iter()
            .zip(r)
            .map(|(u, q)| u + q)
            .collect(),
    };
    let log_v_s = (1.0 - pr.phi).ln() - log_sum_exp(log_us.iter().copied());
    // 2. log K̃v = [LSE_j(log v_w,j − C_ij/ε) (a row softmin of ε log v_w); log v_s + log L σ̂].
    w.term_cols
        .iter_mut()
        .zip(&log_v_w)
        .for_each(|(t, lv)| *t = eps * lv);
    reductions.softmin_rows(&w.term_cols, &w.shift_rows, &mut w.out_rows)?;
    w.shift_rows.copy_from_slice(&w.out_rows);
    let log_kv: Vec<f64> = w
        .out_rows
        .iter()
        .map(|o| -o / eps)
        .chain((0..state.log_u.len() - rows).map(|k| log_v_s + log_ref(k)))
        .collect();
    let log_a: Vec<f64> = state
        .log_u
        .iter()
        .zip(&log_kv)
        .map(|(u, k)| u + k)
        .collect();
    // εKL(P|K̃) of P = diag(u)K̃diag(v): ε(Σ a log u + Σ b log v − Σ a), b = [ν; 1 − φ].
    let (mut kl, mut mass) = (0.0, 0.0);
    for (la, lu) in log_a.iter().zip(&state.log_u) {
        let a = la.exp();
        kl += a * lu;
        mass += a;
    }
    kl += pr
        .log_nu
        .iter()
        .zip(&log_v_w)
        .map(|(ln, lv)| ln.exp() * lv)
        .sum::<f64>()
        + (1.0 - pr.phi) * log_v_s
        - mass;
    out.objective.push(eps * kl * pr.cost_scale);
    // 3. z = Proj^KL_{ker B}(a) on [response rows; gen points] (eq. 28 or exactly); the fake
    //    rows are projected onto their fixed sums.
    let z = project(pr, params, state, &log_a)?;
    out.kerb_residual.push(pr.projector.residual(&z));
    // 4. log u = log z − log K̃v; σ = z_s normalised.
    let (m, f) = (state.m, state.f);
    for i in 0..m {
        state.log_u[i] = z[i].ln() - log_kv[i];
    }
    for (j, fm) in pr.fake_mass.iter().enumerate() {
        state.log_u[m + j] = fm.ln() - log_kv[m + j];
    }
    for (k, zk) in z[m..].iter().enumerate() {
        state.log_u[m + f + k] = zk.ln() - log_kv[m + f + k];
    }
    let zs_sum: f64 = z[m..].iter().sum();
    Ok(z[m..].iter().map(|v| v / zs_sum).collect())
}

/// The KL projection onto `ker B` of the response rows and gen points of `a` (the fake rows are
/// left out: their projection is the fixed mass).
fn project(
    pr: &Prepared,
    params: &OtUnfoldParams,
    state: &Scalings,
    log_a: &[f64],
) -> Result<Vec<f64>> {
    let joined;
    let log_a_sig: &[f64] = if state.f == 0 {
        log_a
    } else {
        joined = [&log_a[..state.m], &log_a[state.m + state.f..]].concat();
        &joined
    };
    match params.projection {
        Projection::DouglasRachford => Ok(douglas_rachford(
            &pr.projector,
            log_a_sig,
            params.dr_step,
            params.dr_iter,
        )),
        Projection::Exact => exact_kl_projection(&pr.projector, log_a_sig),
    }
}

/// Largest `max C / ε_init` for which the warm start runs in the scaling domain: then every
/// kernel entry `e^{−C/ε}` is at least e^{−300} ≈ 5e−131, and the scalings, whose ratios are
/// bounded by the kernel's dynamic range, stay far inside the double range.
const SCALING_MAX_EXPONENT: f64 = 300.0;
/// Largest m·n for which the warm start stores the kernel (128 MiB).
const SCALING_MAX_ENTRIES: usize = 1 << 24;

/// The warm start (eq. 26–27) as the reference code runs it, in the scaling domain:
/// `u = a/(K1)`, then `n_init_iter − 1` times `v = ν/(Kᵀu)`, `u = a/(Kv)`, with
/// `K = e^{−C/ε_init}` computed once. Same iterates as the log domain up to rounding, but
/// 2·n_init_iter matrix–vector products instead of as many passes of exponentials (the warm
/// start is 4/5 of the passes of a default fit). `None` when the kernel's dynamic range or size
/// does not allow it, or if an iterate is not finite and positive; the caller then runs
/// [`warm_start_log`].
fn warm_start_scaling(
    kernel: &PointCost,
    a0: &[f64],
    nu: ArrayView1<'_, f64>,
    max_c: f64,
    params: &OtUnfoldParams,
) -> Option<(Vec<f64>, Vec<f64>)> {
    let (m, n) = kernel.shape();
    let e0 = params.eps_init;
    if max_c / e0 > SCALING_MAX_EXPONENT || m.saturating_mul(n) > SCALING_MAX_ENTRIES {
        return None;
    }
    let k = kernel.plan(&vec![0.0; m], &vec![0.0; n], e0);
    let k = row_major(&k);
    let k = &*k;
    let (mut u, mut v) = (vec![0.0; m], vec![1.0; n]);
    let mut kv = vec![0.0; m];
    mat_vec(k, &v, &mut kv);
    u.iter_mut()
        .zip(a0.iter().zip(&kv))
        .for_each(|(ui, (a, s))| *ui = a / s);
    for _ in 1..params.n_init_iter {
        let ktu = mat_t_vec(k, &u, n);
        v.iter_mut()
            .zip(nu.iter().zip(&ktu))
            .for_each(|(vj, (b, s))| *vj = b / s);
        mat_vec(k, &v, &mut kv);
        u.iter_mut()
            .zip(a0.iter().zip(&kv))
            .for_each(|(ui, (a, s))| *ui = a / s);
    }
    let positive = |x: &Vec<f64>| x.iter().all(|x| x.is_finite() && *x > 0.0);
    let ln = |x: &Vec<f64>| x.iter().map(|x| x.ln()).collect();
    (positive(&u) && positive(&v)).then(|| (ln(&u), ln(&v)))
}

/// `out = K v` for a row-major K with `v.len()` columns.
fn mat_vec(k: &[f64], v: &[f64], out: &mut [f64]) {
    out.par_iter_mut()
        .zip(k.par_chunks_exact(v.len()))
        .for_each(|(o, row)| *o = dot(row, v));
}

/// `Kᵀ u` for a row-major K with n columns: rows accumulated along the contiguous axis.
fn mat_t_vec(k: &[f64], u: &[f64], n: usize) -> Vec<f64> {
    k.par_chunks_exact(n)
        .zip(u.par_iter())
        .with_min_len((4096 / n.max(1)).max(1))
        .fold(
            || vec![0.0; n],
            |mut acc, (row, &ui)| {
                acc.iter_mut().zip(row).for_each(|(s, kij)| *s += ui * kij);
                acc
            },
        )
        .reduce(
            || vec![0.0; n],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            },
        )
}

/// The warm start in the log domain with the classical Sinkhorn (any ε_init): `(log u, log v)`.
fn warm_start_log(
    kernel: &PointCost,
    a0: &[f64],
    nu: ArrayView1<'_, f64>,
    params: &OtUnfoldParams,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let (m, n) = kernel.shape();
    let e0 = params.eps_init;
    // The classical solver updates g first, so the first u-update (from v = 1) is done here and the
    // remaining n_init_iter − 1 by `sinkhorn`.
    let mut f = vec![0.0; m];
    let mut g = vec![0.0; n];
    kernel.softmin_rows(&g, &vec![0.0; m], e0, &mut f);
    if params.n_init_iter > 1 {
        let mut sp = SinkhornParams::new(e0);
        sp.max_iter = params.n_init_iter - 1;
        sp.tol = 0.0;
        // The paper's warm start is plain classical Sinkhorn (eq. 26–27): keep its iterates.
        sp.overrelaxation = false;
        let a0v = ArrayView1::from(a0);
        let g0 = vec![0.0; n];
        let out = sinkhorn(
            kernel,
            a0v,
            nu,
            &sp,
            Some((ArrayView1::from(&f[..]), ArrayView1::from(&g0[..]))),
        )?;
        f = out.f.to_vec();
        g = out.g.to_vec();
    }
    // log u = log a + f/ε_init, log v = log ν + g/ε_init (the classical P = a ν e^{(f+g−C)/ε}).
    let log_u = a0.iter().zip(&f).map(|(a, fi)| a.ln() + fi / e0).collect();
    let log_v = nu.iter().zip(&g).map(|(b, gj)| b.ln() + gj / e0).collect();
    Ok((log_u, log_v))
}

/// The warm start (eq. 26–27): `(log u, log v)`, in the scaling domain where it can, else in
/// the log domain.
fn warm_start(
    kernel: &PointCost,
    a0: &[f64],
    nu: ArrayView1<'_, f64>,
    max_c: f64,
    params: &OtUnfoldParams,
) -> Result<(Vec<f64>, Vec<f64>)> {
    warm_start_scaling(kernel, a0, nu, max_c, params)
        .map_or_else(|| warm_start_log(kernel, a0, nu, params), Ok)
}

/// The warm start on about `count` clusters per side (barycentres, summed weights), carried to
/// the points by its last u-update against the coarse columns, `u_i = a_i / Σ_d K(y_i, c_d) v_d`
/// — a c-transform, as in Feydy's multiscale Sinkhorn. At ε_init the kernel is too wide to
/// truncate, and the clusters' error in the cost (their radius times the distance) is far below
/// ε_init. Returns `log u` of the rows.
fn coarse_warm_start(
    pr: &Prepared,
    a0: &[f64],
    nu: ArrayView1<'_, f64>,
    count: usize,
    params: &OtUnfoldParams,
) -> Result<Vec<f64>> {
    let (cx, ca) = coarse_points(pr.rows.view(), ArrayView1::from(a0), count);
    // Rows without mass (a zero response row) keep log u = −∞, as at the points.
    let keep: Vec<usize> = (0..ca.len()).filter(|&c| ca[c] > 0.0).collect();
    let (cx, ca) = (cx.select(Axis(0), &keep), ca.select(Axis(0), &keep));
    let (cy, cb) = coarse_points(pr.cols.view(), nu, count);
    let coarse = PointCost::new(cx.view(), cy.view(), params.p)?;
    let max_c = pr.raw_max_cost / pr.cost_scale;
    let (_, log_v) = warm_start(&coarse, &row_major(&ca), cb.view(), max_c, params)?;
    let e0 = params.eps_init;
    let terms: Vec<f64> = log_v.iter().map(|lv| e0 * lv).collect();
    let mut out = vec![0.0; a0.len()];
    PointCost::new(pr.rows.view(), cy.view(), params.p)?.softmin_rows(
        &terms,
        &vec![0.0; a0.len()],
        e0,
        &mut out,
    );
    Ok(a0.iter().zip(&out).map(|(a, o)| a.ln() + o / e0).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn unfolds_a_shift_and_keeps_sigma_on_the_simplex() {
        // Gen points 0..L, detector = gen + 0.5, measured = detector of the first half only.
        let l = 12;
        let y = Array2::from_shape_fn((l, 1), |(k, _)| k as f64 + 0.5);
        let yp = Array2::from_shape_fn((l / 2, 1), |(j, _)| j as f64 + 0.5);
        let nu = Array1::from_elem(l / 2, 1.0);
        let input = OtUnfoldInput {
            response_points: y.view(),
            response: Response::new_blocks(l, 1).unwrap(),
            measured_points: yp.view(),
            measured_weights: nu.view(),
            prior: None,
            reference: None,
            fakes: None,
        };
        let out = ot_unfold(input, &OtUnfoldParams::new(), None).unwrap();
        assert_eq!(out.n_iter, 25);
        assert!((out.sigma.sum() - 1.0).abs() < 1e-12);
        let first_half: f64 = out.sigma.iter().take(l / 2).sum();
        assert!(first_half > 0.9, "mass on the measured half: {first_half}");
    }
}
