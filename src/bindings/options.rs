//! [`py_options!`]: a frozen `#[pyclass]` of keyword-only options, each declared once.

/// Declares an options class: every field once, with its doc, type and default (none for a
/// required option). Generates the struct (every field readable from Python), its keyword-only
/// `#[new]` and a `__repr__` that reads like the call that made it, so that a parameter list
/// exists in one place.
macro_rules! py_options {
    (
        $(#[doc = $class_doc:expr])*
        pub struct $name:ident {
            $( $(#[doc = $doc:expr])* $field:ident : $ty:ty $(= $default:expr)? ),* $(,)?
        }
    ) => {
        $(#[doc = $class_doc])*
        #[pyclass(frozen, get_all, module = "otinverse._core")]
        #[derive(Clone)]
        pub struct $name {
            $( $(#[doc = $doc])* $field: $ty, )*
        }

        #[pymethods]
        impl $name {
            #[new]
            #[pyo3(signature = (*, $($field $(= $default)?),*))]
            #[allow(clippy::too_many_arguments)]
            fn new($($field: $ty),*) -> Self {
                $name { $($field),* }
            }

            fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
                let fields = [$(
                    format!("{}={}", stringify!($field), slf.getattr(stringify!($field))?.repr()?)
                ),*];
                Ok(format!("{}({})", stringify!($name), fields.join(", ")))
            }
        }
    };
}

pub(super) use py_options;
