//! The Python extension module `otinverse._core`: the only place PyO3 appears.
//!
//! Every function borrows NumPy arrays (`PyReadonlyArray*::as_array`, no copy for any strides),
//! releases the GIL with `py.detach` for the computation, and maps core errors through
//! [`errors`]. Functions that only tests and benchmarks call live in the private submodule
//! `otinverse._core.testing`.

use pyo3::prelude::*;

mod classify;
mod errors;
mod interrupt;
mod options;
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
    classify::register(m)?;
    register_testing(m)
}

/// `otinverse._core.testing`, also entered in `sys.modules` so that `import` finds it.
fn register_testing(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let testing = PyModule::new(py, "testing")?;
    sinkhorn::register_testing(&testing)?;
    patches::register_testing(&testing)?;
    unfold::register_testing(&testing)?;
    m.add_submodule(&testing)?;
    py.import("sys")?
        .getattr("modules")?
        .set_item("otinverse._core.testing", &testing)?;
    Ok(())
}
