//! Shared fixtures of the core's unit tests.

use ndarray::Array2;

/// An n×d array of uniform [0, 1) values from a fixed-seed linear congruential generator.
pub fn cloud(n: usize, d: usize, seed: u64) -> Array2<f64> {
    let mut s = seed;
    Array2::from_shape_fn((n, d), |_| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 11) as f64 / (1u64 << 53) as f64
    })
}
