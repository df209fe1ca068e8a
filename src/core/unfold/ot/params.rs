//! What OT unfolding is asked and answers: the parameters (ε schedule, cost exponent and
//! normalisation, projection, kernel), the input problem and the output.

use super::*;

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
    /// Whether the reco space is quantized (see [`crate::core::unfold::cells`]).
    pub reco_grid: RecoGrid,
}

/// The quantization of the reco space: response rows, fakes and measured points snapped to
/// the centres of a regular grid, the log-sum-exps of eq. (25) taken between occupied cells.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RecoGrid {
    /// Quantize large problems with the squared cost in 1-D and 2-D (see `auto_grid_spacing`):
    /// spacing `(ε·max C)^{1/p}` / [`GRID_CELLS_PER_BLUR`].
    Auto,
    /// The points as given.
    Off,
    /// This spacing, in the reco's units (the same on every axis, as the cost is isotropic).
    Spacing(f64),
}

/// Cells per entropic blur width `(ε·max C)^{1/p}` of the automatic grid. Measured on the
/// physics MC of 10⁵ events (1-D and 2-D): spacings from a quarter to the whole width change
/// the unfolded histograms far below a bootstrap replica's spread, and in 2-D each halving of
/// the spacing costs ~3× the time (the convolution's windows and the occupied cells grow).
pub const GRID_CELLS_PER_BLUR: f64 = 2.0;

/// The evaluation of the log-sum-exps of eq. (25). On a quantized reco space ([`RecoGrid`]) it
/// runs between the occupied cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnfoldKernel {
    /// The truncated kernel where ε is small enough for it to pay (see [`wants_truncation`]),
    /// else the online one; on a quantized reco space with the squared cost in 1-D and 2-D, the
    /// separable convolution on the dense grid ([`crate::core::unfold::cells`]).
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
            reco_grid: RecoGrid::Auto,
        }
    }

    pub(super) fn validate(&self) -> Result<()> {
        check_positive("reg", self.eps)?;
        check_positive("reg_init", self.eps_init)?;
        check_positive("dr_step", self.dr_step)?;
        check_at_least_one("n_init_iter", self.n_init_iter)?;
        check_at_least_one("max_iter", self.max_iter)?;
        if let Some(k) = self.warm_start_clusters {
            check_at_least_one("warm_start_clusters", k)?;
        }
        if let RecoGrid::Spacing(h) = self.reco_grid {
            check_positive("grid_spacing", h)?;
        }
        if let Some(t) = self.tol {
            check_non_negative("tol", t)?;
        }
        check_exponent("p", self.p)
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
    /// The grid spacing (reco units) the reco space was quantized with, and the occupied row
    /// and measured cells; `None` on the points.
    pub grid: Option<GridStats>,
}

/// What the quantization of the reco space did.
#[derive(Clone, Debug, PartialEq)]
pub struct GridStats {
    pub spacing: f64,
    pub row_cells: usize,
    pub col_cells: usize,
    /// Whether the separable convolution on the dense grid ran (else a kernel between cells).
    pub separable: bool,
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
    /// Prior on the gen points (normalised inside; default: the reference): the weight the fit
    /// gives each point, through the start `σ⁰` of the iteration.
    pub prior: Option<ArrayView1<'a, f64>>,
    /// Reference measure `σ̂` of the KL term in eq. (21) (positive, normalised inside); default
    /// uniform.
    pub reference: Option<ArrayView1<'a, f64>>,
    /// Fakes: detector points (f, d) and positive weights in the units of `measured_weights`;
    /// their total must stay below the measured total.
    pub fakes: Option<(ArrayView2<'a, f64>, ArrayView1<'a, f64>)>,
}
