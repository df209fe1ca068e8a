//! The warm start of eq. (26)–(27): classical Sinkhorn between `Rσ⁰` and `ν` at `ε_init`, in
//! the scaling domain when `exp(−C/ε_init)` fits in a double, in the log domain otherwise, and
//! from the clusters of a coarse problem when the truncated kernel runs.

use super::*;

/// Largest `max C / ε_init` for which the warm start runs in the scaling domain: then every
/// kernel entry `e^{−C/ε}` is at least e^{−300} ≈ 5e−131, and the scalings, whose ratios are
/// bounded by the kernel's dynamic range, stay far inside the double range.
pub(super) const SCALING_MAX_EXPONENT: f64 = 300.0;
/// Largest m·n for which the warm start stores the kernel (128 MiB).
pub(super) const SCALING_MAX_ENTRIES: usize = 1 << 24;

/// The warm start (eq. 26–27) as the reference code runs it, in the scaling domain:
/// `u = a/(K1)`, then `n_init_iter − 1` times `v = ν/(Kᵀu)`, `u = a/(Kv)`, with
/// `K = e^{−C/ε_init}` computed once. Same iterates as the log domain up to rounding, but
/// 2·n_init_iter matrix–vector products instead of as many passes of exponentials (the warm
/// start is 4/5 of the passes of a default fit). `None` when the kernel's dynamic range or size
/// does not allow it, or if an iterate is not finite and positive; the caller then runs
/// [`warm_start_log`].
pub(super) fn warm_start_scaling(
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
pub(super) fn mat_vec(k: &[f64], v: &[f64], out: &mut [f64]) {
    out.par_iter_mut()
        .zip(k.par_chunks_exact(v.len()))
        .for_each(|(o, row)| *o = dot(row, v));
}

/// `Kᵀ u` for a row-major K with n columns: rows accumulated along the contiguous axis.
pub(super) fn mat_t_vec(k: &[f64], u: &[f64], n: usize) -> Vec<f64> {
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
pub(super) fn warm_start_log(
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
pub(super) fn warm_start(
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
pub(super) fn coarse_warm_start(
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
