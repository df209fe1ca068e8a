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
//!
//! Split by concept: `params` (what is asked and answered), `prepare` (the validated
//! problem), `warm_start` (eq. 26–27); the outer iteration of eq. (25) is here.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use rayon::prelude::*;

use crate::core::cost::{CostKernel, PointCost};
use crate::core::error::{
    check_at_least_one, check_exponent, check_finite, check_non_negative, check_positive, OtError,
    Result,
};
use crate::core::interrupt;
use crate::core::layout::row_major;
use crate::core::logsumexp::log_sum_exp;
use crate::core::simd::dot;
use crate::core::sinkhorn::{sinkhorn, SinkhornParams};
use crate::core::unfold::cells::{
    cell_log_sums, cell_sums, dense_grid_fits, Cells, SeparableCells,
};
use crate::core::unfold::projection::{
    douglas_rachford, exact_kl_projection, KerBProjector, Response,
};
use crate::core::unfold::truncated::{
    coarse_points, TruncatedKernel, TruncationStats, COARSE_CLUSTERS,
};

mod params;
mod prepare;
mod warm_start;

pub use params::*;
use prepare::*;
use warm_start::*;

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
        grid: pr.grid.as_ref().map(|g| GridStats {
            spacing: g.cells.spacing,
            row_cells: g.cells.row_centres.nrows(),
            col_cells: g.cells.col_centres.nrows(),
            separable: g.separable.is_some(),
        }),
    };
    let mut history = Vec::new();
    let mut work = Workspace::new((m + f, pr.log_nu.len()));
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
    out.truncation = reductions.truncation_stats();
    Ok(out)
}

/// The warm start, eq. (26)–(27) (`log u` of the response and fake rows), the reductions the
/// iterations run on, and whether the warm start ran on clusters. On a quantized problem both
/// run on the occupied cells.
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
    let (level_a0, level_log_nu) = match &pr.grid {
        Some(g) => (
            cell_sums(&a0, &g.cells.row_cell, g.cells.row_centres.nrows()).to_vec(),
            &g.log_nu,
        ),
        None => (a0.clone(), &pr.log_nu),
    };
    let nu = Array1::from_iter(level_log_nu.iter().map(|v| v.exp()));
    let separable = pr.grid.as_ref().and_then(|g| g.separable.as_ref());
    let truncated = separable.is_none() && wants_truncation(pr, params);
    let (rows, n) = (pr.rows.nrows(), pr.cols.nrows());
    let clusters = params.warm_start_clusters.or_else(|| {
        ((truncated || pr.grid.is_some()) && rows.saturating_mul(n) > SCALING_MAX_ENTRIES)
            .then_some(COARSE_CLUSTERS)
    });
    let log_u_level = match clusters {
        Some(count) => coarse_warm_start(pr, &level_a0, nu.view(), count, params)?,
        None => {
            warm_start(
                &pr.kernel,
                &level_a0,
                nu.view(),
                pr.raw_max_cost / pr.cost_scale,
                params,
            )?
            .0
        }
    };
    let terms: Vec<f64> = log_u_level.iter().map(|v| params.eps * v).collect();
    let level = if truncated {
        Reductions::Truncated(Box::new(TruncatedKernel::new(
            pr.rows.view(),
            pr.cols.view(),
            params.p,
            level_log_nu,
            params.eps,
            &terms,
        )?))
    } else {
        Reductions::Online(&pr.kernel, params.eps)
    };
    let (log_u_w, reductions) = match &pr.grid {
        None => (log_u_level, level),
        Some(g) => {
            let inner = match separable {
                Some(sep) => CellKernel::Separable(sep),
                None => CellKernel::Points(level),
            };
            let log_u = spread_warm_start(&g.cells, &a0, &level_a0, &log_u_level);
            let cells = CellReductions::new(g, inner, params.eps);
            (log_u, Reductions::Cells(Box::new(cells)))
        }
    };
    Ok((log_u_w, reductions, clusters.is_some()))
}

/// `log u` of the rows from that of their cells: every row of a cell sees the same `Kv`, so
/// `u_i = a_i/(Kv)_c = u_c · a_i/a_c` (−∞ for a row without mass).
fn spread_warm_start(cells: &Cells, a0: &[f64], cell_a0: &[f64], log_u_cell: &[f64]) -> Vec<f64> {
    a0.iter()
        .zip(&cells.row_cell)
        .map(|(&a, &c)| {
            if a > 0.0 {
                log_u_cell[c] + (a / cell_a0[c]).ln()
            } else {
                f64::NEG_INFINITY
            }
        })
        .collect()
}

/// The two log-sum-exps of eq. (25), on the online cost, the truncated kernel or the occupied
/// cells of the quantized reco space.
enum Reductions<'k> {
    Online(&'k PointCost, f64),
    Truncated(Box<TruncatedKernel<'k>>),
    Cells(Box<CellReductions<'k>>),
}

impl Reductions<'_> {
    fn softmin_rows(&mut self, col: &[f64], shift: &[f64], out: &mut [f64]) -> Result<()> {
        match self {
            Reductions::Online(k, eps) => {
                k.softmin_rows(col, shift, *eps, out);
                Ok(())
            }
            Reductions::Truncated(k) => k.softmin_rows(col, shift, out),
            Reductions::Cells(k) => k.softmin(true, col, out),
        }
    }

    fn softmin_cols(&mut self, row: &[f64], shift: &[f64], out: &mut [f64]) -> Result<()> {
        match self {
            Reductions::Online(k, eps) => {
                k.softmin_cols(row, shift, *eps, out);
                Ok(())
            }
            Reductions::Truncated(k) => k.softmin_cols(row, shift, out),
            Reductions::Cells(k) => k.softmin(false, row, out),
        }
    }

    /// What the truncated kernel did, if one ran.
    fn truncation_stats(self) -> Option<TruncationStats> {
        match self {
            Reductions::Online(..) => None,
            Reductions::Truncated(k) => Some(k.stats),
            Reductions::Cells(k) => match k.inner {
                CellKernel::Points(level) => level.truncation_stats(),
                CellKernel::Separable(_) => None,
            },
        }
    }
}

/// The softmins between the occupied cells of a quantized problem.
enum CellKernel<'k> {
    /// The separable convolution on the dense grid.
    Separable(&'k SeparableCells),
    /// The online or truncated kernel between the occupied cells.
    Points(Reductions<'k>),
}

/// The reductions of eq. (25) on a quantized problem: the terms of one side reduced per cell
/// (a log-sum-exp), the softmin between occupied cells, gathered back to the points.
struct CellReductions<'k> {
    grid: &'k CellLevel,
    inner: CellKernel<'k>,
    eps: f64,
    /// The last softmins of the row cells and of the measured cells (the online kernel's shifts).
    row_out: Vec<f64>,
    col_out: Vec<f64>,
}

impl<'k> CellReductions<'k> {
    fn new(grid: &'k CellLevel, inner: CellKernel<'k>, eps: f64) -> Self {
        CellReductions {
            grid,
            inner,
            eps,
            row_out: vec![0.0; grid.cells.row_centres.nrows()],
            col_out: vec![0.0; grid.cells.col_centres.nrows()],
        }
    }

    /// The row softmin (`rows`, from the measured points' terms) or the column softmin.
    fn softmin(&mut self, rows: bool, terms: &[f64], out: &mut [f64]) -> Result<()> {
        let cells = &self.grid.cells;
        let (from_cell, to_cell, cell_out) = if rows {
            (&cells.col_cell, &cells.row_cell, &mut self.row_out)
        } else {
            (&cells.row_cell, &cells.col_cell, &mut self.col_out)
        };
        let n_from = if rows {
            cells.col_centres.nrows()
        } else {
            cells.row_centres.nrows()
        };
        let cell_terms = cell_log_sums(terms, from_cell, n_from, self.eps);
        let shift = cell_out.clone();
        match &mut self.inner {
            CellKernel::Separable(sep) => sep.softmin(rows, &cell_terms, self.eps, cell_out),
            CellKernel::Points(level) if rows => {
                level.softmin_rows(&cell_terms, &shift, cell_out)?
            }
            CellKernel::Points(level) => level.softmin_cols(&cell_terms, &shift, cell_out)?,
        }
        out.par_iter_mut()
            .zip(to_cell.par_iter())
            .for_each(|(o, &c)| *o = cell_out[c]);
        Ok(())
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
