//! Unfolding (Craig, Faktor, Nachman): recover the particle-level weights σ on a prior
//! support from detector-level data.
//!
//! * [`ot`]: unfolding with a Wasserstein loss, the generalised log-domain Sinkhorn iteration
//!   of eq. (25) with the classical warm start of eq. (26)–(27).
//! * [`projection`]: the KL projection onto `ker B` (eq. 28, Douglas–Rachford), the orthogonal
//!   projector onto `ker B` without a dense matrix, and the Wright omega function.
//! * [`richardson_lucy`]: the binned Richardson–Lucy / iterative Bayesian unfolding baseline.

mod band;
pub mod cells;
pub mod events;
pub mod ot;
pub mod projection;
pub mod richardson_lucy;
pub mod truncated;

pub use events::{
    ot_unfold_events, EventUnfoldInput, EventUnfoldOutput, McModel, McResponse, Measured,
};
pub use ot::{
    ot_unfold, CostNormalization, GridStats, OtUnfoldInput, OtUnfoldOutput, OtUnfoldParams,
    Projection, RecoGrid, UnfoldKernel,
};
pub use projection::{
    douglas_rachford, exact_kl_projection, wright_omega, KerBProjector, Response,
};
pub use richardson_lucy::{
    richardson_lucy, CovType, ErrorInputs, IbuErrorPropagator, ResponseErrors, RichardsonLucyInput,
    RichardsonLucyOutput, RichardsonLucyParams, TestStatistic,
};
pub use truncated::TruncationStats;
