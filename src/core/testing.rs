//! Shared fixtures of the core's unit tests.

use ndarray::{Array1, Array2};

use crate::core::cost::CostKernel;
use crate::core::sinkhorn::SinkhornOutput;

/// Uniform [0, 1) draws from a fixed-seed linear congruential generator.
pub fn uniform(seed: u64) -> impl FnMut() -> f64 {
    let mut state = seed;
    move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// An n×d array of [`uniform`] values.
pub fn cloud(n: usize, d: usize, seed: u64) -> Array2<f64> {
    let mut next = uniform(seed);
    Array2::from_shape_fn((n, d), |_| next())
}

/// The plan of a Sinkhorn solve on `kernel` with weights `a`, `b` at `eps`.
pub fn plan_of<K: CostKernel + ?Sized>(
    kernel: &K,
    out: &SinkhornOutput,
    a: &Array1<f64>,
    b: &Array1<f64>,
    eps: f64,
) -> Array2<f64> {
    let row: Vec<f64> = out.f.iter().zip(a).map(|(f, a)| f + eps * a.ln()).collect();
    let col: Vec<f64> = out.g.iter().zip(b).map(|(g, b)| g + eps * b.ln()).collect();
    kernel.plan(&row, &col, eps)
}
