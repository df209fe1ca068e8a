//! The one error type of the core. The bindings map each variant to a Python exception in a
//! single `From` impl; every message names the offending argument.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum OtError {
    /// A scalar or array argument has a value outside its domain (NaN, negative weight, ε ≤ 0…).
    #[error("{name}: {message}")]
    InvalidArgument { name: &'static str, message: String },
    /// Array shapes do not fit together.
    #[error("{name}: {message}")]
    Shape { name: &'static str, message: String },
    /// The iteration broke down numerically (non-finite potentials), despite valid input.
    #[error("numerical breakdown: {0}")]
    Numerical(String),
    /// The caller's cancellation flag was set (Ctrl-C in Python); see `core::interrupt`.
    #[error("interrupted")]
    Interrupted,
}

pub type Result<T> = std::result::Result<T, OtError>;

/// A buffer that does not fill the shape asked of it: the sizes of arrays the caller passed do
/// not fit together.
impl From<ndarray::ShapeError> for OtError {
    fn from(e: ndarray::ShapeError) -> Self {
        OtError::shape("array", e.to_string())
    }
}

impl OtError {
    pub fn invalid(name: &'static str, message: impl Into<String>) -> Self {
        OtError::InvalidArgument {
            name,
            message: message.into(),
        }
    }

    pub fn shape(name: &'static str, message: impl Into<String>) -> Self {
        OtError::Shape {
            name,
            message: message.into(),
        }
    }
}

/// `Ok` when every entry is finite.
pub fn check_finite<'a>(
    name: &'static str,
    values: impl IntoIterator<Item = &'a f64>,
) -> Result<()> {
    if values.into_iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(OtError::invalid(name, "contains NaN or Inf"))
    }
}

/// Whether every entry is finite. `0·x` is 0 for a finite `x` and NaN otherwise, so a sum of
/// them tells for a whole slice without a branch per entry (vectorised; a cost matrix of 10⁷
/// entries is checked at memory speed).
pub fn all_finite(values: &[f64]) -> bool {
    let mut acc = [0.0f64; 8];
    let chunks = values.chunks_exact(8);
    let tail_finite = chunks.remainder().iter().all(|v| v.is_finite());
    for c in chunks {
        for l in 0..8 {
            acc[l] += 0.0 * c[l];
        }
    }
    tail_finite && acc.iter().all(|v| *v == 0.0)
}

/// Validates a weight vector (finite, non-negative, positive total) and returns its mass.
pub fn check_weights<'a>(
    name: &'static str,
    values: impl IntoIterator<Item = &'a f64>,
) -> Result<f64> {
    let mut mass = 0.0;
    let mut count = 0usize;
    for &v in values {
        if !v.is_finite() {
            return Err(OtError::invalid(name, "contains NaN or Inf"));
        }
        if v < 0.0 {
            return Err(OtError::invalid(
                name,
                format!("weights must be non-negative, found {v}"),
            ));
        }
        mass += v;
        count += 1;
    }
    if count == 0 {
        return Err(OtError::shape(name, "must not be empty"));
    }
    if mass <= 0.0 || !mass.is_finite() {
        return Err(OtError::invalid(
            name,
            format!("total mass must be positive and finite, found {mass}"),
        ));
    }
    Ok(mass)
}

/// Validates a finite, non-negative scalar such as a tolerance.
pub fn check_non_negative(name: &'static str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(OtError::invalid(
            name,
            format!("must be finite and non-negative, got {value}"),
        ))
    }
}

/// Validates an iteration budget or a count that must be at least 1.
pub fn check_at_least_one(name: &'static str, value: usize) -> Result<()> {
    if value >= 1 {
        Ok(())
    } else {
        Err(OtError::invalid(name, "must be at least 1"))
    }
}

/// Validates a strictly positive, finite scalar such as ε or a reach.
pub fn check_positive(name: &'static str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(OtError::invalid(
            name,
            format!("must be positive and finite, got {value}"),
        ))
    }
}

/// Validates the exponent `p` of a cost `|x − y|^p`: finite and at least 1 (a metric to the p).
pub fn check_exponent(name: &'static str, p: f64) -> Result<()> {
    if p.is_finite() && p >= 1.0 {
        Ok(())
    } else {
        Err(OtError::invalid(
            name,
            format!("must be a finite exponent ≥ 1, got {p}"),
        ))
    }
}

/// The value of the option `name` spelled `given`, among `(spelling, value)` pairs; an unknown
/// spelling is an error that lists the known ones.
pub fn check_choice<T: Copy>(name: &'static str, given: &str, choices: &[(&str, T)]) -> Result<T> {
    if let Some((_, value)) = choices.iter().find(|(spelling, _)| *spelling == given) {
        return Ok(*value);
    }
    let quoted: Vec<String> = choices.iter().map(|(s, _)| format!("'{s}'")).collect();
    let listed = match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    Err(OtError::invalid(
        name,
        format!("must be {listed}, got {given:?}"),
    ))
}
