//! One mapping from the core's error enum to Python exceptions. The exception classes are
//! defined here and re-exported by `otinverse`, whose Python-side validation raises the same ones.

use pyo3::create_exception;
use pyo3::exceptions::{PyArithmeticError, PyKeyboardInterrupt, PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::core::OtError;

create_exception!(
    otinverse,
    InvalidArgumentError,
    PyValueError,
    "An argument has an invalid value or shape; the message names it."
);
create_exception!(
    otinverse,
    InvalidDtypeError,
    PyTypeError,
    "An array argument has a dtype that is not numeric; the message names it."
);
create_exception!(
    otinverse,
    NumericalError,
    PyArithmeticError,
    "The iteration broke down numerically despite valid input."
);

/// The core's error as the Python exception it stands for. One crate holds both types, so the
/// orphan rule allows this impl directly and `?` converts an [`OtError`] in a binding.
impl From<OtError> for PyErr {
    fn from(e: OtError) -> PyErr {
        match e {
            OtError::InvalidArgument { .. } | OtError::Shape { .. } => {
                InvalidArgumentError::new_err(e.to_string())
            }
            OtError::Numerical(_) => NumericalError::new_err(e.to_string()),
            OtError::Interrupted => PyKeyboardInterrupt::new_err(e.to_string()),
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add(
        "InvalidArgumentError",
        py.get_type::<InvalidArgumentError>(),
    )?;
    m.add("InvalidDtypeError", py.get_type::<InvalidDtypeError>())?;
    m.add("NumericalError", py.get_type::<NumericalError>())?;
    Ok(())
}
