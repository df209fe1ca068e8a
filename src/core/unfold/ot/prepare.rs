//! The problem as the iteration sees it: validated, normalised inputs, the fixed rows of the
//! fakes, the cost's normalisation and the response rows and measured points it is taken on.

use super::*;

/// Positive, finite entries of a length-`l` vector named `name`, normalised to sum to one.
pub(super) fn normalised_positive(
    name: &'static str,
    v: ArrayView1<'_, f64>,
    l: usize,
) -> Result<Vec<f64>> {
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

/// The start `σ⁰` of eq. (27) that makes `prior` (default: the reference) the prior the fit
/// weighs the gen points by.
///
/// The iteration of eq. (25) converges to the KL projection of its start `diag(u⁰)K̃`, not of
/// `K̃`: the start is part of the problem. With a sampled response (each detector row owned by
/// one gen point, its rows' shares summing to one) the projection onto ker B is, per gen
/// point, the geometric mean of its σ entry — reference `Lσ̂_k`, started at `σ⁰_k` — and its
/// rows, started by the warm start at `u⁰ ∝ Rσ⁰` times a function of the detector values. The
/// fit then weighs point k by `σ⁰_k σ̂_k^{1/2}`: starting from `σ⁰ = p/σ̂^{1/2}` makes `p` that
/// weight, where starting from `p` would count the reference one and a half times (with one
/// detector sample per event and a weighted MC, prior-updated fits narrower than the truth by
/// 3–4·10⁻³ of the events per tail bin, whatever the sample sizes). A dense response's rows
/// are shared between gen points; its start is `p`, as with the uniform reference of the
/// paper.
fn start_measure(
    prior: Option<Vec<f64>>,
    reference: Option<&[f64]>,
    response: &Response,
    l: usize,
) -> Vec<f64> {
    let uniform = || vec![1.0 / l as f64; l];
    let (Some(r), Response::Samples { .. }) = (reference, response) else {
        return prior
            .or_else(|| reference.map(<[f64]>::to_vec))
            .unwrap_or_else(uniform);
    };
    let p = prior.unwrap_or_else(|| r.to_vec());
    let start: Vec<f64> = p.iter().zip(r).map(|(p, r)| p / r.sqrt()).collect();
    let total: f64 = start.iter().sum();
    start.into_iter().map(|s| s / total).collect()
}

/// Validated fakes: (points, `φ β̄` — the fixed row sums in units of the normalised measured
/// mass, φ).
pub(super) fn fixed_rows(
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
pub(super) fn max_cost(y: ArrayView2<'_, f64>, yp: ArrayView2<'_, f64>, p: f64) -> f64 {
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
pub(super) struct Scalings {
    pub(super) m: usize,
    pub(super) f: usize,
    pub(super) log_u: Vec<f64>,
}

/// Validated inputs in the form the iteration uses.
pub(super) struct Prepared {
    pub(super) kernel: PointCost,
    /// The normalised response (and fake) rows and measured points of `kernel` (their occupied
    /// cells on a quantized problem).
    pub(super) rows: Array2<f64>,
    pub(super) cols: Array2<f64>,
    pub(super) projector: KerBProjector,
    /// log ν (normalised), n.
    pub(super) log_nu: Vec<f64>,
    /// Fixed row sums `φ β̄` of the fakes, f.
    pub(super) fake_mass: Vec<f64>,
    pub(super) phi: f64,
    /// `log(L σ̂_k)`, or `None` for the uniform reference (the paper's).
    pub(super) log_ref: Option<Vec<f64>>,
    pub(super) sigma0: Vec<f64>,
    pub(super) cost_scale: f64,
    pub(super) raw_max_cost: f64,
    /// The occupied cells when the reco space is quantized: then `kernel`, `rows` and `cols`
    /// are the cells'.
    pub(super) grid: Option<CellLevel>,
}

pub(super) fn prepare(input: OtUnfoldInput<'_>, params: &OtUnfoldParams) -> Result<Prepared> {
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
    let prior = input
        .prior
        .map(|s| normalised_positive("prior", s, l))
        .transpose()?;
    let sigma0 = start_measure(prior, reference.as_deref(), &response, l);
    let log_ref = reference.map(|r| r.iter().map(|v| (l as f64 * v).ln()).collect());
    // Normalised cost |y/s − y'/s|^p = C/max C with s = (max C)^{1/p}, computed online; the
    // fakes are response rows like the others. max C also decides the warm start's domain.
    let rows = if fake_pts.nrows() > 0 {
        ndarray::concatenate(ndarray::Axis(0), &[y, fake_pts.view()])?
    } else {
        y.to_owned()
    };
    let point_max_cost = max_cost(rows.view(), yp, params.p);
    let cells = grid_spacing(params, rows.view(), yp, point_max_cost)
        .map(|h| Cells::new(rows.view(), yp, h))
        .transpose()?;
    // On the grid the kernel's sides are the occupied cells, and max C is the snapped points'.
    let (rows, cols, raw_max_cost) = match &cells {
        Some(c) => (
            c.row_centres.clone(),
            c.col_centres.clone(),
            max_cost(c.row_centres.view(), c.col_centres.view(), params.p),
        ),
        None => (rows, yp.to_owned(), point_max_cost),
    };
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
    let (rows, cols) = (rows.mapv(|v| v / s), cols.mapv(|v| v / s));
    let kernel = PointCost::new(rows.view(), cols.view(), params.p)?;
    let grid = cells
        .map(|c| CellLevel::new(c, &log_nu, params, s))
        .transpose()?;
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
        grid,
    })
}

/// Smallest rows × measured points from which `RecoGrid::Auto` quantizes.
pub(super) const GRID_MIN_ENTRIES: usize = 1 << 26;

/// The grid spacing (reco units) asked for, or chosen by `RecoGrid::Auto`: for large problems
/// with the squared cost in 1-D and 2-D under `kernel = Auto`, `(ε·max C)^{1/p}` over
/// [`GRID_CELLS_PER_BLUR`] when the dense grid spanning the points is small enough for the
/// separable convolution.
fn grid_spacing(
    params: &OtUnfoldParams,
    rows: ArrayView2<'_, f64>,
    cols: ArrayView2<'_, f64>,
    raw_max_cost: f64,
) -> Option<f64> {
    match params.reco_grid {
        RecoGrid::Off => None,
        RecoGrid::Spacing(h) => Some(h),
        RecoGrid::Auto => {
            let cost_scale = match params.cost_normalization {
                CostNormalization::Max => raw_max_cost,
                CostNormalization::None => 1.0,
            };
            let h = (params.eps * cost_scale).powf(1.0 / params.p) / GRID_CELLS_PER_BLUR;
            let large = rows.nrows().saturating_mul(cols.nrows()) > GRID_MIN_ENTRIES;
            (params.kernel == UnfoldKernel::Auto
                && params.p == 2.0
                && large
                && h > 0.0
                && dense_grid_fits(rows, cols, h))
            .then_some(h)
        }
    }
}

/// The occupied cells of a quantized problem, as the reductions and the warm start use them.
pub(super) struct CellLevel {
    pub(super) cells: Cells,
    /// log of the normalised measured mass of each measured cell.
    pub(super) log_nu: Vec<f64>,
    /// The separable convolution on the dense grid, when it runs.
    pub(super) separable: Option<SeparableCells>,
}

impl CellLevel {
    fn new(cells: Cells, log_nu: &[f64], params: &OtUnfoldParams, s: f64) -> Result<Self> {
        let log_nu = cell_log_sums(log_nu, &cells.col_cell, cells.col_centres.nrows(), 1.0);
        let separable = (params.kernel == UnfoldKernel::Auto && cells.fits_dense(params.p))
            .then(|| cells.separable(s))
            .transpose()?;
        Ok(CellLevel {
            cells,
            log_nu,
            separable,
        })
    }
}
