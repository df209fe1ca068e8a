//! Pure-Rust kernels. No PyO3 type may appear below this module.

pub mod cost;
pub mod error;
pub mod logsumexp;
pub mod sinkhorn;
pub mod wasserstein;

pub use error::{OtError, Result};
pub mod grid;
pub mod sparsify;
