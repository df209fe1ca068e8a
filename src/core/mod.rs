//! Pure-Rust kernels. No PyO3 type may appear below this module.

pub mod cost;
pub mod error;
pub mod interrupt;
mod layout;
pub mod logsumexp;
pub mod neighbours;
pub mod patches;
pub mod simd;
pub mod sinkhorn;
pub mod sparsify;
pub mod unfold;
pub mod wasserstein;

#[cfg(test)]
mod testing;

pub use error::{OtError, Result};
