//! The Sinkhorn family in the log domain, one implementation for every variant.
//!
//! Objective: `⟨C,P⟩ + ε KL(P | a⊗b) + ρ_a KL(P1 | a) + ρ_b KL(Pᵀ1 | b)`, ρ = ∞ meaning the
//! marginal is exact. With `softmin_ε(h)_i = −ε log Σ_j b_j exp((h_j − C_ij)/ε)` the updates are
//! `f ← λ_a softmin_ε(g)`, `g ← λ_b softmin_ε(f)ᵀ` with damping `λ = 1/(1 + ε/ρ)` (λ = 1 for
//! ρ = ∞), and the plan is `P_ij = a_i b_j exp((f_i + g_j − C_ij)/ε)` (Mignon et al., Thm. 1 with the
//! corrected damping ρ/(ρ+ε)).
//!
//! The marginal error costs nothing extra: after a `g` update the column condition holds exactly,
//! and the next `f` softmin `f̃` gives the row sums of the current plan,
//! `Σ_j P_ij = a_i exp((f_i − f̃_i)/ε)`, whose target is `a_i exp(−f_i/ρ_a)`.
//!
//! The module is split by concept: `params` (what is asked and answered), `side` (one
//! marginal and its update), `schedule` (the entry point, ε-scaling, warm starts, Newton),
//! `iterate` (the iteration at one ε); the kernel representations live in `stabilized`,
//! `blocks`, `sparse`; `multiscale` the coarse-to-fine start, `one_to_many` the batched solver
//! on one support.

pub(crate) mod relaxation;

use ndarray::{Array1, Array2, ArrayView1};

use crate::core::cost::{CostKernel, NextColumns};
use crate::core::error::{
    check_at_least_one, check_non_negative, check_positive, check_weights, OtError, Result,
};
use crate::core::interrupt;
use crate::core::simd;

mod blocks;
mod iterate;
mod multiscale;
mod newton;
mod one_to_many;
mod params;
mod schedule;
mod side;
mod sparse;
mod stabilized;

use iterate::*;
pub(crate) use multiscale::clusters;
pub use multiscale::{sinkhorn_points, PointClouds};
pub use one_to_many::{sinkhorn_one_to_many, sinkhorn_pairwise, BatchOutput, BatchParams};
pub use params::*;
use relaxation::{safe_factor, HalfStep, Relaxation};
pub use schedule::sinkhorn;
use schedule::*;
use side::*;
pub use sparse::{SparseBuilder, SparseStore};
pub use stabilized::{KernelBuilder, KernelStore, Stabilized, Stored, StoredKernel};

#[cfg(test)]
mod tests;
