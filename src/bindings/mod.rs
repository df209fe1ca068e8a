//! The Python extension module `otinverse._core`: the only place PyO3 appears.
//!
//! Every function borrows NumPy arrays (`PyReadonlyArray*::as_array`, no copy for any strides),
//! releases the GIL with `py.detach` for the computation, and maps core errors through
//! [`errors`].

use pyo3::prelude::*;

mod errors;
mod interrupt;
mod patches;
mod sinkhorn;
mod sparsify;
mod unfold;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    sinkhorn::register(m)?;
    unfold::register(m)?;
    patches::register(m)?;
    sparsify::register(m)?;
    Ok(())
}
