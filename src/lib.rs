//! otinverse: optimal transport for inverse problems.
//!
//! `core` is pure Rust (ndarray + rayon + thiserror) and builds without Python
//! (`cargo test --no-default-features`); `bindings` is the only place PyO3 appears.

pub mod core;

#[cfg(feature = "python")]
mod bindings;
