//! Bindings of OT unfolding, the ker B projection, Wright omega and Richardson–Lucy.

use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

use super::interrupt::run_interruptible;
use super::options::py_options;
use crate::core::error::check_choice;
use crate::core::unfold::{
    douglas_rachford, exact_kl_projection, richardson_lucy, wright_omega, CostNormalization,
    CovType, ErrorInputs, EventUnfoldInput, IbuErrorPropagator, KerBProjector, McResponse,
    Measured, OtUnfoldParams, Projection, RecoGrid, Response, ResponseErrors, RichardsonLucyInput,
    RichardsonLucyParams, TestStatistic, UnfoldKernel,
};
use crate::core::OtError;

fn make_response(
    response: Option<PyReadonlyArray2<'_, f64>>,
    n_gen: usize,
    per_point: usize,
) -> Result<Response, OtError> {
    Ok(match response {
        Some(r) => Response::new_dense(r.as_array().to_owned())?,
        None => Response::new_blocks(n_gen, per_point)?,
    })
}

py_options! {
    /// Hyper-parameters of OT unfolding (eq. 25–28); every value rule lives in the core.
    pub struct OtUnfoldOptions {
        /// ε of eq. (21), relative to the cost scale.
        reg: f64 = 3e-5,
        /// ε_init of the warm start (eq. 26–27).
        reg_init: f64 = 1e-2,
        /// Cost exponent, `C = |y − y'|^p`.
        p: f64 = 2.0,
        /// `"max"` (divide the cost by its maximum, the reference code) or `"none"`.
        cost_normalization: String = "max".to_owned(),
        n_init_iter: usize = 100,
        max_iter: usize = 25,
        tol: Option<f64> = None,
        dr_iter: usize = 25,
        dr_step: f64 = 1e-3,
        /// `"douglas-rachford"` (eq. 28) or `"exact"`.
        projection: String = "douglas-rachford".to_owned(),
        /// `"auto"`, `"online"` (m·n exponentials per pass) or `"truncated"` (stabilized
        /// truncated kernel, one pass over the kept entries).
        kernel: String = "auto".to_owned(),
        /// Run the warm start on about this many clusters per side; `None` decides.
        warm_start_clusters: Option<usize> = None,
        /// `"auto"` (quantize the reco space of large problems) or `"off"`.
        reco_grid: String = "auto".to_owned(),
        /// Quantize the reco space at this spacing (reco units); needs `reco_grid="auto"`.
        grid_spacing: Option<f64> = None,
    }
}

impl OtUnfoldOptions {
    fn params(&self) -> Result<OtUnfoldParams, OtError> {
        let cost_normalization = check_choice(
            "cost_normalization",
            &self.cost_normalization,
            &[
                ("max", CostNormalization::Max),
                ("none", CostNormalization::None),
            ],
        )?;
        let projection = check_choice(
            "projection",
            &self.projection,
            &[
                ("douglas-rachford", Projection::DouglasRachford),
                ("exact", Projection::Exact),
            ],
        )?;
        let kernel = check_choice(
            "kernel",
            &self.kernel,
            &[
                ("auto", UnfoldKernel::Auto),
                ("online", UnfoldKernel::Online),
                ("truncated", UnfoldKernel::Truncated),
            ],
        )?;
        let reco_grid = match (
            check_choice(
                "reco_grid",
                &self.reco_grid,
                &[("auto", true), ("off", false)],
            )?,
            self.grid_spacing,
        ) {
            (true, Some(h)) => RecoGrid::Spacing(h),
            (true, None) => RecoGrid::Auto,
            (false, None) => RecoGrid::Off,
            (false, Some(_)) => {
                return Err(OtError::invalid(
                    "grid_spacing",
                    "a spacing quantizes the reco space: it needs reco_grid='auto'",
                ))
            }
        };
        Ok(OtUnfoldParams {
            eps: self.reg,
            eps_init: self.reg_init,
            n_init_iter: self.n_init_iter,
            max_iter: self.max_iter,
            tol: self.tol,
            dr_iter: self.dr_iter,
            dr_step: self.dr_step,
            projection,
            p: self.p,
            cost_normalization,
            kernel,
            warm_start_clusters: self.warm_start_clusters,
            reco_grid,
        })
    }
}

/// The result of OT unfolding of MC events.
#[pyclass(frozen, get_all, module = "otinverse._core")]
pub struct OtUnfoldResult {
    /// Unfolded weights of the gen points in events (L).
    weights: Py<PyArray1<f64>>,
    /// Normalised gen-level shape after each iteration, (n_iter, L).
    shape_history: Py<PyArray2<f64>>,
    /// Reconstruction probability of every gen point (L).
    efficiency: Py<PyArray1<f64>>,
    /// MC weight of every gen point (L).
    mc_weight: Py<PyArray1<f64>>,
    /// εKL(P|K̃) of the iterate (eq. 23) per iteration, in raw cost units.
    objective: Py<PyArray1<f64>>,
    /// ‖τ_l − τ_{l−1}‖₁ per iteration.
    sigma_change: Py<PyArray1<f64>>,
    /// ‖Bz‖/‖z‖ of the projection's output per iteration.
    kerb_residual: Py<PyArray1<f64>>,
    n_iter: usize,
    /// `tol` reached (false without `tol`).
    converged: bool,
    /// The factor the cost was divided by.
    cost_scale: f64,
    /// `"online"`, `"truncated"` or `"separable"` (the convolution on the dense grid of the
    /// quantized reco space): the kernel the iterations ran on.
    kernel: String,
    /// The grid spacing (reco units) of the quantized reco space; `None` on the points.
    grid_spacing: Option<f64>,
    /// Occupied cells of the response (and fake) rows and of the measured points (0 unquantized).
    row_cells: usize,
    col_cells: usize,
    /// Mean stored entries per row of the truncated kernel's builds (`None` online).
    kept_per_row: Option<f64>,
    /// Builds of the truncated kernel (0 online).
    kernel_builds: usize,
    /// Rows and columns of the truncated reductions recomputed exactly (0 online).
    exact_fallbacks: usize,
    /// Whether the warm start ran on clusters.
    coarse_warm_start: bool,
}

/// Runs the core with `progress(i)` called (with the GIL) after every outer iteration; an
/// exception the callback raises stops the fit and is raised from here.
fn with_progress<T: Send>(
    py: Python<'_>,
    progress: Option<Py<PyAny>>,
    run: impl FnOnce(Option<&mut dyn FnMut(usize) -> crate::core::Result<()>>) -> crate::core::Result<T>
        + Send,
) -> PyResult<T> {
    let mut raised: Option<PyErr> = None;
    let out = run_interruptible(py, || match &progress {
        None => run(None),
        Some(f) => {
            let mut cb = |i: usize| {
                Python::attach(|py| f.call1(py, (i,)).map(|_| ())).map_err(|e| {
                    raised = Some(e);
                    OtError::invalid("progress", "the callback raised")
                })
            };
            run(Some(&mut cb))
        }
    });
    match (out, raised) {
        (_, Some(e)) => Err(e),
        (out, None) => out,
    }
}

/// OT unfolding of MC events with weights, inefficiency and fakes (Craig et al., eq. 21–28):
/// `reco` holds the detector points, `per_point` consecutive samples per gen point (a row of
/// NaN = not reconstructed) with optional `sample_weight` (L, M), or with `response` (m×L,
/// column sums = efficiencies) the m points of a dense response. `efficiency` (L) replaces the
/// sampled fractions of reconstructed samples (a smoothed estimate).
#[pyfunction]
#[pyo3(signature = (reco, measured, measured_weight, options, *, n_gen, per_point=0, sample_weight=None,
    response=None, gen_weight=None, fakes=None, fake_weight=None, prior=None, efficiency=None,
    progress=None))]
#[allow(clippy::too_many_arguments)]
fn ot_unfold_events<'py>(
    py: Python<'py>,
    reco: PyReadonlyArray2<'py, f64>,
    measured: PyReadonlyArray2<'py, f64>,
    measured_weight: PyReadonlyArray1<'py, f64>,
    options: &OtUnfoldOptions,
    n_gen: usize,
    per_point: usize,
    sample_weight: Option<PyReadonlyArray2<'py, f64>>,
    response: Option<PyReadonlyArray2<'py, f64>>,
    gen_weight: Option<PyReadonlyArray1<'py, f64>>,
    fakes: Option<PyReadonlyArray2<'py, f64>>,
    fake_weight: Option<PyReadonlyArray1<'py, f64>>,
    prior: Option<PyReadonlyArray1<'py, f64>>,
    efficiency: Option<PyReadonlyArray1<'py, f64>>,
    progress: Option<Py<PyAny>>,
) -> PyResult<OtUnfoldResult> {
    let params = options.params()?;
    let mc = match &response {
        Some(_) if efficiency.is_some() => {
            return Err(OtError::invalid(
                "efficiency",
                "not used with an explicit response (its column sums are the efficiencies)",
            )
            .into())
        }
        Some(r) => McResponse::Dense(r.as_array()),
        None => McResponse::Samples {
            per_point,
            sample_weight: sample_weight.as_ref().map(|s| s.as_array()),
            efficiency: efficiency.as_ref().map(|e| e.as_array()),
        },
    };
    let fakes = match (&fakes, &fake_weight) {
        (Some(p), Some(w)) => Some((p.as_array(), w.as_array())),
        (None, None) => None,
        _ => {
            return Err(OtError::invalid("fake_weight", "fakes and fake_weight go together").into())
        }
    };
    let measured = Measured {
        points: measured.as_array(),
        weights: measured_weight.as_array(),
        fakes,
    };
    let input = EventUnfoldInput {
        points: reco.as_array(),
        mc: &mc,
        n_gen,
        gen_weight: gen_weight.as_ref().map(|g| g.as_array()),
        measured,
        prior: prior.as_ref().map(|p| p.as_array()),
    };
    let out = with_progress(py, progress, |cb| {
        crate::core::unfold::ot_unfold_events(input, &params, cb)
    })?;
    let it = out.iteration;
    Ok(OtUnfoldResult {
        weights: out.weights.into_pyarray(py).unbind(),
        shape_history: out.shape_history.into_pyarray(py).unbind(),
        efficiency: out.efficiency.into_pyarray(py).unbind(),
        mc_weight: out.mc_weight.into_pyarray(py).unbind(),
        objective: it.objective.into_pyarray(py).unbind(),
        sigma_change: it.sigma_change.into_pyarray(py).unbind(),
        kerb_residual: it.kerb_residual.into_pyarray(py).unbind(),
        n_iter: it.n_iter,
        converged: it.converged,
        cost_scale: it.cost_scale,
        kernel: match (&it.truncation, &it.grid) {
            (Some(_), _) => "truncated",
            (None, Some(g)) if g.separable => "separable",
            _ => "online",
        }
        .to_owned(),
        grid_spacing: it.grid.as_ref().map(|g| g.spacing),
        row_cells: it.grid.as_ref().map_or(0, |g| g.row_cells),
        col_cells: it.grid.as_ref().map_or(0, |g| g.col_cells),
        kept_per_row: it.truncation.as_ref().map(|t| t.mean_kept_per_row()),
        kernel_builds: it.truncation.as_ref().map_or(0, |t| t.builds),
        exact_fallbacks: it
            .truncation
            .as_ref()
            .map_or(0, |t| t.exact_rows + t.exact_cols),
        coarse_warm_start: it.coarse_warm_start,
    })
}

/// The projections onto ker B of one response (for tests): orthogonal, Douglas–Rachford's KL
/// approximation (Craig et al., eq. 28) and the exact KL projection.
#[pyclass(frozen, name = "KerBProjector", module = "otinverse._core.testing")]
struct PyKerBProjector {
    inner: KerBProjector,
}

#[pymethods]
impl PyKerBProjector {
    /// `response` (m, L) dense, or `None` for blocks of `per_point` samples per gen point.
    #[new]
    #[pyo3(signature = (response, *, n_gen, per_point))]
    fn new(
        response: Option<PyReadonlyArray2<'_, f64>>,
        n_gen: usize,
        per_point: usize,
    ) -> PyResult<Self> {
        let response = make_response(response, n_gen, per_point)?;
        let inner = KerBProjector::new(response)?;
        Ok(PyKerBProjector { inner })
    }

    /// The sampled response: detector row i belongs to gen point `owner[i]` (grouped in order)
    /// with the share `shares[i]` of its MC weight.
    #[staticmethod]
    fn sampled(
        owner: PyReadonlyArray1<'_, usize>,
        shares: PyReadonlyArray1<'_, f64>,
        n_gen: usize,
    ) -> PyResult<Self> {
        let owner = owner.as_array().to_vec();
        let response = Response::new_samples(&owner, shares.as_array().to_vec(), n_gen)?;
        let inner = KerBProjector::new(response)?;
        Ok(PyKerBProjector { inner })
    }

    /// The orthogonal projection of `x` (m + L).
    fn orthogonal<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray1<'py, f64>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let x = self.vector("x", x)?;
        let mut out = vec![0.0; x.len()];
        self.inner.project(&x, &mut out);
        Ok(out.into_pyarray(py))
    }

    /// Douglas–Rachford's KL projection of `exp(log_w)` (Craig et al., eq. 28).
    fn douglas_rachford<'py>(
        &self,
        py: Python<'py>,
        log_w: PyReadonlyArray1<'py, f64>,
        dr_step: f64,
        dr_iter: usize,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let lw = self.vector("log_w", log_w)?;
        let z = py.detach(|| douglas_rachford(&self.inner, &lw, dr_step, dr_iter));
        Ok(z.into_pyarray(py))
    }

    /// The exact KL projection of `exp(log_w)` (closed form for blocks, Newton otherwise).
    fn exact<'py>(
        &self,
        py: Python<'py>,
        log_w: PyReadonlyArray1<'py, f64>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let lw = self.vector("log_w", log_w)?;
        let z = py.detach(|| exact_kl_projection(&self.inner, &lw))?;
        Ok(z.into_pyarray(py))
    }
}

impl PyKerBProjector {
    /// A vector `name` of the projector's length (m + L).
    fn vector(&self, name: &'static str, v: PyReadonlyArray1<'_, f64>) -> PyResult<Vec<f64>> {
        let v = v.as_array();
        if v.len() != self.inner.len() {
            let msg = format!(
                "has {} entries, expected m + L = {}",
                v.len(),
                self.inner.len()
            );
            return Err(OtError::shape(name, msg).into());
        }
        Ok(v.to_vec())
    }
}

/// Elementwise Wright omega.
#[pyfunction]
fn wright_omega_array<'py>(
    py: Python<'py>,
    t: PyReadonlyArray1<'py, f64>,
) -> Bound<'py, PyArray1<f64>> {
    let t = t.as_array();
    let out: Vec<f64> = py.detach(|| t.iter().map(|v| wright_omega(*v)).collect());
    out.into_pyarray(py)
}

py_options! {
    /// Options of binned Richardson–Lucy (pyunfold's `iterative_unfold`).
    pub struct RichardsonLucyOptions {
        /// Iterations (exactly without `ts`, at most with it).
        max_iter: usize,
        /// `None`, `"ks"` or `"chi2"`: stop when the statistic between successive iterations is
        /// below `ts_stopping`.
        ts: Option<String> = None,
        ts_stopping: f64 = 0.01,
        /// `None` (no propagated errors), `"multinomial"` or `"poisson"` (form of the response's
        /// covariance, as pyunfold).
        cov_type: Option<String> = None,
    }
}

impl RichardsonLucyOptions {
    fn params(&self) -> Result<(RichardsonLucyParams, Option<CovType>), OtError> {
        let ts = match self.ts.as_deref() {
            None => None,
            Some(name) => {
                let kind = check_choice(
                    "ts",
                    name,
                    &[("ks", TestStatistic::Ks), ("chi2", TestStatistic::Chi2)],
                )?;
                if !(self.ts_stopping.is_finite() && self.ts_stopping > 0.0) {
                    return Err(OtError::invalid(
                        "ts_stopping",
                        format!("must be positive and finite, got {}", self.ts_stopping),
                    ));
                }
                Some((kind, self.ts_stopping))
            }
        };
        let cov = self
            .cov_type
            .as_deref()
            .map(|name| {
                check_choice(
                    "cov_type",
                    name,
                    &[
                        ("multinomial", CovType::Multinomial),
                        ("poisson", CovType::Poisson),
                    ],
                )
            })
            .transpose()?;
        let params = RichardsonLucyParams {
            max_iter: self.max_iter,
            ts,
        };
        Ok((params, cov))
    }
}

/// The result of binned Richardson–Lucy.
#[pyclass(frozen, get_all, module = "otinverse._core")]
pub struct RichardsonLucyResult {
    /// Unfolded counts per cause.
    unfolded: Py<PyArray1<f64>>,
    /// Normalised unfolded distribution after each iteration, (n_iter, L).
    history: Py<PyArray2<f64>>,
    /// The test statistic after each iteration (empty without `ts`).
    ts_values: Py<PyArray1<f64>>,
    /// Covariance propagated from the data errors (pyunfold's `stat_err`²), or None.
    stat_cov: Option<Py<PyArray2<f64>>>,
    /// Covariance propagated from the response's MC statistics (pyunfold's `sys_err`²), or None.
    sys_cov: Option<Py<PyArray2<f64>>>,
    n_iter: usize,
}

/// Richardson–Lucy / D'Agostini IBU with an optional known background per effect bin and
/// pyunfold's propagated errors (`data_err` defaults to √n).
#[pyfunction]
#[pyo3(signature = (response, measured, options, *, efficiencies=None, prior=None, background=None,
    data_err=None, response_err=None, efficiencies_err=None))]
#[allow(clippy::too_many_arguments)]
fn richardson_lucy_binned<'py>(
    py: Python<'py>,
    response: PyReadonlyArray2<'py, f64>,
    measured: PyReadonlyArray1<'py, f64>,
    options: &RichardsonLucyOptions,
    efficiencies: Option<PyReadonlyArray1<'py, f64>>,
    prior: Option<PyReadonlyArray1<'py, f64>>,
    background: Option<PyReadonlyArray1<'py, f64>>,
    data_err: Option<PyReadonlyArray1<'py, f64>>,
    response_err: Option<PyReadonlyArray2<'py, f64>>,
    efficiencies_err: Option<PyReadonlyArray1<'py, f64>>,
) -> PyResult<RichardsonLucyResult> {
    let (params, cov) = options.params()?;
    let nu = measured.as_array();
    let poisson_err = nu.mapv(|v| v.max(0.0).sqrt());
    let errors = cov.map(|cov_type| ErrorInputs {
        data_err: data_err
            .as_ref()
            .map_or(poisson_err.view(), |d| d.as_array()),
        response_err: response_err.as_ref().map(|r| r.as_array()),
        efficiencies_err: efficiencies_err.as_ref().map(|e| e.as_array()),
        cov_type,
    });
    if errors.is_some() && background.is_some() {
        return Err(OtError::invalid(
            "cov_type",
            "propagated errors are not available with a background; use the bootstrap",
        )
        .into());
    }
    let input = RichardsonLucyInput {
        response: response.as_array(),
        measured: nu,
        efficiencies: efficiencies.as_ref().map(|e| e.as_array()),
        prior: prior.as_ref().map(|e| e.as_array()),
        background: background.as_ref().map(|e| e.as_array()),
        errors,
    };
    let out = run_interruptible(py, || richardson_lucy(&input, &params))?;
    Ok(RichardsonLucyResult {
        n_iter: out.history.nrows(),
        unfolded: out.unfolded.into_pyarray(py).unbind(),
        history: out.history.into_pyarray(py).unbind(),
        ts_values: out.ts_values.into_pyarray(py).unbind(),
        stat_cov: out.stat_cov.map(|c| c.into_pyarray(py).unbind()),
        sys_cov: out.sys_cov.map(|c| c.into_pyarray(py).unbind()),
    })
}

/// pyunfold's propagated errors of iterative Bayesian unfolding, recorded step by step, without
/// its dense derivative with respect to the response (per-cause errors only).
#[pyclass(name = "IbuErrorPropagator", module = "otinverse._core")]
pub struct PyIbuErrorPropagator(IbuErrorPropagator);

#[pymethods]
impl PyIbuErrorPropagator {
    /// `cov_type` is `"multinomial"` (needs `efficiencies_err`) or `"poisson"` (needs
    /// `response_err`), lower case.
    #[new]
    #[pyo3(signature = (response, data, data_err, efficiencies, cov_type, *,
        efficiencies_err=None, response_err=None))]
    fn new(
        response: PyReadonlyArray2<'_, f64>,
        data: PyReadonlyArray1<'_, f64>,
        data_err: PyReadonlyArray1<'_, f64>,
        efficiencies: PyReadonlyArray1<'_, f64>,
        cov_type: &str,
        efficiencies_err: Option<PyReadonlyArray1<'_, f64>>,
        response_err: Option<PyReadonlyArray2<'_, f64>>,
    ) -> PyResult<Self> {
        let cov = check_choice(
            "cov_type",
            cov_type,
            &[
                ("multinomial", CovType::Multinomial),
                ("poisson", CovType::Poisson),
            ],
        )?;
        let errors = match (cov, efficiencies_err, response_err) {
            (CovType::Multinomial, Some(e), _) => {
                ResponseErrors::Multinomial(e.as_array().to_owned())
            }
            (CovType::Poisson, _, Some(r)) => ResponseErrors::Poisson(r.as_array().to_owned()),
            (CovType::Multinomial, None, _) => {
                return Err(OtError::invalid(
                    "efficiencies_err",
                    "is needed for cov_type='multinomial'",
                )
                .into())
            }
            (CovType::Poisson, _, None) => {
                return Err(
                    OtError::invalid("response_err", "is needed for cov_type='poisson'").into(),
                )
            }
        };
        let inner = IbuErrorPropagator::new(
            response.as_array().to_owned(),
            data.as_array().to_owned(),
            data_err.as_array().to_owned(),
            efficiencies.as_array().to_owned(),
            errors,
        )?;
        Ok(Self(inner))
    }

    /// Records the step that took the counts `prev` to `new` (before any regularisation).
    fn step(
        &mut self,
        py: Python<'_>,
        prev: PyReadonlyArray1<'_, f64>,
        new: PyReadonlyArray1<'_, f64>,
    ) -> PyResult<()> {
        let (prev, new) = (prev.as_array(), new.as_array());
        let inner = &mut self.0;
        py.detach(|| inner.step(prev, new))?;
        Ok(())
    }

    /// Number of recorded steps.
    #[getter]
    fn n_steps(&self) -> usize {
        self.0.n_steps()
    }

    /// Errors from the data errors after the recorded steps (pyunfold's `stat_err`).
    fn stat_err<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.0.stat_variance().mapv(f64::sqrt).into_pyarray(py)
    }

    /// Errors from the response's errors after the recorded steps (pyunfold's `sys_err`).
    fn sys_err<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let inner = &self.0;
        let var = run_interruptible(py, || inner.sys_variance())?;
        Ok(var.mapv(f64::sqrt).into_pyarray(py))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyIbuErrorPropagator>()?;
    m.add_function(wrap_pyfunction!(ot_unfold_events, m)?)?;
    m.add_class::<OtUnfoldOptions>()?;
    m.add_class::<OtUnfoldResult>()?;
    m.add_class::<RichardsonLucyOptions>()?;
    m.add_class::<RichardsonLucyResult>()?;
    m.add_function(wrap_pyfunction!(wright_omega_array, m)?)?;
    m.add_function(wrap_pyfunction!(richardson_lucy_binned, m)?)?;
    Ok(())
}

/// The test-only bindings of this module (in `otinverse._core.testing`).
pub fn register_testing(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyKerBProjector>()
}
