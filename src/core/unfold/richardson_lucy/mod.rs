//! Richardson–Lucy / iterative Bayesian unfolding on a binned response, shaped like pyunfold's
//! `iterative_unfold` (D'Agostini, NIM A 362 (1995) 487; error propagation with Adye's
//! corrections, arXiv:1105.1160): with efficiencies `η`, response `R` (effects × causes),
//! measured counts `n` and the current unfolded counts `U` (starting from `Σn · prior`),
//!
//! `U_k ← (U_k/η_k) Σ_b R_bk n_b / ((RU)_b + β_b)`,
//!
//! the EM update for Poisson data with a known background `β` (fakes) per effect bin; with
//! β = 0 it is D'Agostini's `U_k ← (U_k/η_k) Σ_b R_bk n_b / (RU)_b`, and with column-stochastic
//! R and normalised n the paper's `σ_k ← σ_k Σ_b R_bk ν_b/(Rσ)_b`. Causes with η_k = 0 get
//! nothing (pyunfold's safe inverse).

use ndarray::{s, Array1, Array2, ArrayView1, ArrayView2, Axis};

use crate::core::error::{check_finite, check_weights, OtError, Result};
use crate::core::interrupt;

mod variances;
pub use variances::{IbuErrorPropagator, ResponseErrors};

/// Test statistic between successive iterations for the stopping rule (pyunfold's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestStatistic {
    /// Kolmogorov–Smirnov: max |F₁ − F₂| of the normalised cumulative sums.
    Ks,
    /// Reduced χ²: `Σ (N₂d₁ − N₁d₂)²/(d₁ + d₂) / (N₁N₂ L)` (sums below 1 count as 1).
    Chi2,
}

/// Form of the covariance of the response entries for the MC (systematic) error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CovType {
    /// Multinomial per cause with `N_k = (η_k/δη_k)²` MC events.
    Multinomial,
    /// Independent Poisson entries with the given errors `δR_bk`.
    Poisson,
}

/// Inputs of the propagated errors (pyunfold's `data_err`, `response_err`, `efficiencies_err`).
#[derive(Clone, Debug)]
pub struct ErrorInputs<'a> {
    pub data_err: ArrayView1<'a, f64>,
    pub response_err: Option<ArrayView2<'a, f64>>,
    pub efficiencies_err: Option<ArrayView1<'a, f64>>,
    pub cov_type: CovType,
}

#[derive(Clone, Debug)]
pub struct RichardsonLucyParams {
    /// Iterations (exactly when `ts` is `None`, at most otherwise).
    pub max_iter: usize,
    /// Stop once the statistic between an iteration and the previous one is below the value.
    pub ts: Option<(TestStatistic, f64)>,
}

#[derive(Clone, Debug)]
pub struct RichardsonLucyInput<'a> {
    pub response: ArrayView2<'a, f64>,
    pub measured: ArrayView1<'a, f64>,
    /// Default: the column sums of `response`.
    pub efficiencies: Option<ArrayView1<'a, f64>>,
    /// Default: uniform (normalised inside).
    pub prior: Option<ArrayView1<'a, f64>>,
    /// Known background (fakes) per effect bin, in counts.
    pub background: Option<ArrayView1<'a, f64>>,
    pub errors: Option<ErrorInputs<'a>>,
}

#[derive(Clone, Debug)]
pub struct RichardsonLucyOutput {
    /// Unfolded counts after the last iteration.
    pub unfolded: Array1<f64>,
    /// Normalised unfolded distribution after each iteration, (n_iter, L).
    pub history: Array2<f64>,
    /// The test statistic after each iteration (empty without `ts`).
    pub ts_values: Vec<f64>,
    /// Propagated covariance from the data errors (pyunfold's `stat_err`² on the diagonal).
    pub stat_cov: Option<Array2<f64>>,
    /// Propagated covariance from the response's MC statistics (pyunfold's `sys_err`²).
    pub sys_cov: Option<Array2<f64>>,
}

fn safe_inverse(x: f64) -> f64 {
    if x == 0.0 {
        0.0
    } else {
        1.0 / x
    }
}

fn check_len(name: &'static str, v: ArrayView1<'_, f64>, len: usize, of: &str) -> Result<()> {
    if v.len() != len {
        return Err(OtError::shape(
            name,
            format!("has {} entries for {len} {of}", v.len()),
        ));
    }
    check_finite(name, v.iter())?;
    if v.iter().any(|x| *x < 0.0) {
        return Err(OtError::invalid(name, "entries must be non-negative"));
    }
    Ok(())
}

/// Validates the input; returns (efficiencies, normalised prior).
fn validate(input: &RichardsonLucyInput<'_>) -> Result<(Vec<f64>, Vec<f64>)> {
    let (nb, l) = input.response.dim();
    if nb == 0 || l == 0 {
        return Err(OtError::shape(
            "response",
            format!("must not be empty, got shape ({nb}, {l})"),
        ));
    }
    check_finite("response", input.response.iter())?;
    if input.response.iter().any(|v| *v < 0.0) {
        return Err(OtError::invalid("response", "entries must be non-negative"));
    }
    if input.measured.len() != nb {
        return Err(OtError::shape(
            "measured",
            format!(
                "has {} bins but the response has {nb} rows",
                input.measured.len()
            ),
        ));
    }
    check_weights("measured", input.measured.iter())?;
    let eff: Vec<f64> = match input.efficiencies {
        Some(e) => {
            check_len("efficiencies", e, l, "causes")?;
            if e.iter().any(|v| !(*v > 0.0 && *v <= 1.0 + 1e-12)) {
                return Err(OtError::invalid(
                    "efficiencies",
                    "entries must lie in (0, 1]",
                ));
            }
            e.to_vec()
        }
        None => input.response.sum_axis(Axis(0)).to_vec(),
    };
    let p = match input.prior {
        Some(pr) => {
            if pr.len() != l {
                return Err(OtError::shape(
                    "prior",
                    format!("has {} entries for {l} causes", pr.len()),
                ));
            }
            let mass = check_weights("prior", pr.iter())?;
            pr.iter().map(|v| v / mass).collect()
        }
        None => vec![1.0 / l as f64; l],
    };
    if let Some(b) = input.background {
        check_len("background", b, nb, "effect bins")?;
        if b.sum() >= input.measured.sum() {
            return Err(OtError::invalid(
                "background",
                "the background's total must be below the measured total",
            ));
        }
    }
    Ok((eff, p))
}

/// One D'Agostini step from the counts `n_c`: (the unfolding matrix `M_bk`, folded `(RU)_b +
/// β_b`, the new counts).
fn smear(
    r: ArrayView2<'_, f64>,
    n: ArrayView1<'_, f64>,
    eff_inv: &[f64],
    background: Option<ArrayView1<'_, f64>>,
    n_c: &Array1<f64>,
) -> (Array2<f64>, Array1<f64>, Array1<f64>) {
    let mut folded = r.dot(n_c);
    if let Some(b) = background {
        folded += &b;
    }
    let mut m = r.to_owned();
    for (mut row, f) in m.rows_mut().into_iter().zip(&folded) {
        let fi = safe_inverse(*f);
        row.iter_mut()
            .zip(n_c.iter().zip(eff_inv))
            .for_each(|(v, (c, e))| *v *= c * e * fi);
    }
    let update = n.dot(&m);
    (m, folded, update)
}

fn test_statistic(kind: TestStatistic, d1: &Array1<f64>, d2: &Array1<f64>) -> f64 {
    let (n1, n2) = (d1.sum(), d2.sum());
    match kind {
        TestStatistic::Ks => {
            let (mut c1, mut c2, mut best) = (0.0, 0.0, 0.0f64);
            for (a, b) in d1.iter().zip(d2) {
                c1 += a;
                c2 += b;
                best = best.max((c1 / n1 - c2 / n2).abs());
            }
            best
        }
        TestStatistic::Chi2 => {
            let q: f64 = d1
                .iter()
                .zip(d2)
                .map(|(a, b)| {
                    let h = if a + b < 1.0 { 1.0 } else { a + b };
                    let diff = n2 * a - n1 * b;
                    diff * diff / h
                })
                .sum();
            q / (n1 * n2) / d1.len() as f64
        }
    }
}

pub fn richardson_lucy(
    input: &RichardsonLucyInput<'_>,
    params: &RichardsonLucyParams,
) -> Result<RichardsonLucyOutput> {
    let (eff, p) = validate(input)?;
    let (r, n) = (input.response, input.measured);
    let l = r.ncols();
    let eff_inv: Vec<f64> = eff.iter().map(|e| safe_inverse(*e)).collect();
    let mut propagation = input
        .errors
        .as_ref()
        .map(|e| Propagation::new(e, r, n, &eff))
        .transpose()?;
    // Starting counts: Σn·prior (pyunfold); with a background, scaled so that the folded
    // signal holds the measured minus the background.
    let total = match input.background {
        None => n.sum(),
        Some(b) => {
            let pe: f64 = p.iter().zip(&eff).map(|(a, e)| a * e).sum();
            (n.sum() - b.sum()) / pe
        }
    };
    let mut n_c = Array1::from_iter(p.iter().map(|v| v * total));
    let mut history = Vec::with_capacity(params.max_iter * l);
    let mut ts_values = Vec::new();
    let mut n_iter = 0;
    while n_iter < params.max_iter {
        interrupt::check()?;
        let (m, folded, update) = smear(r, n, &eff_inv, input.background, &n_c);
        let sum: f64 = update.sum();
        if !(sum > 0.0 && sum.is_finite()) {
            return Err(OtError::Numerical(
                "the unfolded distribution vanished".into(),
            ));
        }
        if let Some(pr) = propagation.as_mut() {
            pr.step(&m, &folded, &update, &n_c);
        }
        history.extend(update.iter().map(|v| v / sum));
        n_iter += 1;
        let stop = params.ts.is_some_and(|(kind, tol)| {
            let t = test_statistic(kind, &update, &n_c);
            ts_values.push(t);
            t < tol
        });
        n_c = update;
        if stop {
            break;
        }
    }
    let (stat_cov, sys_cov) = match propagation {
        Some(pr) if n_iter > 0 => {
            let (a, b) = pr.covariances();
            (Some(a), b)
        }
        _ => (None, None),
    };
    Ok(RichardsonLucyOutput {
        unfolded: n_c,
        history: Array2::from_shape_vec((n_iter, l), history)?,
        ts_values,
        stat_cov,
        sys_cov,
    })
}

/// D'Agostini's error propagation with Adye's corrections, as pyunfold computes it: the
/// derivatives of the unfolded counts with respect to the data (`dcdn`, effects × causes) and
/// to the response entries (`dcdP`, causes × (effects·causes), column `b·L + k` for `R_bk`).
struct Propagation<'a> {
    inputs: ErrorInputs<'a>,
    n: ArrayView1<'a, f64>,
    response: ArrayView2<'a, f64>,
    eff: Vec<f64>,
    eff_inv: Vec<f64>,
    dcdn: Array2<f64>,
    dcdp: Array2<f64>,
    steps: usize,
}

impl<'a> Propagation<'a> {
    fn new(
        inputs: &ErrorInputs<'a>,
        response: ArrayView2<'a, f64>,
        n: ArrayView1<'a, f64>,
        eff: &[f64],
    ) -> Result<Self> {
        let (nb, l) = response.dim();
        check_len("data_err", inputs.data_err, nb, "effect bins")?;
        match inputs.cov_type {
            CovType::Poisson => {
                let re = inputs.response_err.ok_or_else(|| {
                    OtError::invalid("response_err", "is needed for cov_type='poisson'")
                })?;
                if re.dim() != (nb, l) {
                    return Err(OtError::shape(
                        "response_err",
                        format!("has shape {:?}, expected ({nb}, {l})", re.dim()),
                    ));
                }
                check_finite("response_err", re.iter())?;
            }
            CovType::Multinomial => {
                let ee = inputs.efficiencies_err.ok_or_else(|| {
                    OtError::invalid("efficiencies_err", "is needed for cov_type='multinomial'")
                })?;
                check_len("efficiencies_err", ee, l, "causes")?;
            }
        }
        Ok(Propagation {
            inputs: inputs.clone(),
            n,
            response,
            eff: eff.to_vec(),
            eff_inv: eff.iter().map(|e| safe_inverse(*e)).collect(),
            dcdn: Array2::zeros((nb, l)),
            dcdp: Array2::zeros((l, nb * l)),
            steps: 0,
        })
    }

    /// Updates the derivatives after a step from `prev` to `new` with unfolding matrix `m`.
    fn step(
        &mut self,
        m: &Array2<f64>,
        folded: &Array1<f64>,
        new: &Array1<f64>,
        prev: &Array1<f64>,
    ) {
        let (nb, l) = m.dim();
        let ne_f: Vec<f64> = self
            .n
            .iter()
            .zip(folded)
            .map(|(a, f)| a * safe_inverse(*f))
            .collect();
        let mut dcdp = Array2::zeros((l, nb * l));
        for b in 0..nb {
            for t in 0..l {
                let a = -ne_f[b] * m[(b, t)];
                for k in 0..l {
                    dcdp[(t, b * l + k)] = a * prev[k];
                }
                dcdp[(t, b * l + t)] += (prev[t] * ne_f[b] - new[t]) * self.eff_inv[t];
            }
        }
        let mut dcdn = m.clone();
        if self.steps > 0 {
            let nc_r: Array1<f64> = new
                .iter()
                .zip(prev)
                .map(|(a, p)| a * safe_inverse(*p))
                .collect();
            let e_r: Array1<f64> = self
                .eff
                .iter()
                .zip(prev)
                .map(|(e, p)| e * safe_inverse(*p))
                .collect();
            // dcdn += −M (M·e_r)ᵀ diag(n) dcdn_prev + dcdn_prev·nc_r
            let me = m * &e_r;
            let m3 = (me.t().to_owned() * self.n).dot(&self.dcdn);
            dcdn = dcdn - m.dot(&m3) + &self.dcdn * &nc_r;
            let c = (m.t().to_owned() * self.n).dot(&me);
            // dcdP += diag(nc_r) dcdP_prev − C dcdP_prev
            let upd = c.dot(&self.dcdp);
            let scaled = &self.dcdp * &nc_r.view().insert_axis(Axis(1));
            dcdp = dcdp + scaled - upd;
        }
        self.dcdn = dcdn;
        self.dcdp = dcdp;
        self.steps += 1;
    }

    /// (data covariance, MC covariance).
    fn covariances(&self) -> (Array2<f64>, Option<Array2<f64>>) {
        let var = self.inputs.data_err.mapv(|e| e * e);
        let weighted = &self.dcdn * &var.view().insert_axis(Axis(1));
        let stat = self.dcdn.t().dot(&weighted);
        (stat, Some(self.mc_covariance()))
    }

    /// `dcdP Cov(R) dcdPᵀ` without the (effects·causes)² covariance: it is block diagonal per
    /// cause k (multinomial: `(diag(R_·k) − R_·k R_·kᵀ)/N_k`; Poisson: `diag(δR_·k²)`).
    fn mc_covariance(&self) -> Array2<f64> {
        let (nb, l) = self.response.dim();
        let mut cov = Array2::zeros((l, l));
        for k in 0..l {
            // D_k: the columns b·L + k of dcdP, (L × nb).
            let d = self.dcdp.slice(s![.., k..; l]);
            debug_assert_eq!(d.ncols(), nb);
            // The constructor checked that the errors of `cov_type` are given; a cause without
            // them would add no Monte Carlo covariance.
            match self.inputs.cov_type {
                CovType::Poisson => {
                    let Some(err) = self.inputs.response_err else {
                        continue;
                    };
                    let err = err.column(k).to_owned();
                    let dw = &d * &(&err * &err);
                    cov += &dw.dot(&d.t());
                }
                CovType::Multinomial => {
                    let Some(ee) = self.inputs.efficiencies_err else {
                        continue;
                    };
                    let ee = ee[k];
                    let n_mc = (self.eff[k] * safe_inverse(ee)).powi(2);
                    let inv = safe_inverse(n_mc);
                    if inv == 0.0 {
                        continue;
                    }
                    let pk = self.response.column(k);
                    let dp = d.dot(&pk);
                    let dw = &d * &pk;
                    let mut blk = dw.dot(&d.t());
                    blk -= &(dp
                        .view()
                        .insert_axis(Axis(1))
                        .dot(&dp.view().insert_axis(Axis(0))));
                    cov.scaled_add(inv, &blk);
                }
            }
        }
        cov
    }
}
