//! Slices of arrays whose layout the crate chose itself.
//!
//! ndarray's `as_slice` answers with an `Option` because a view may be strided. The arrays
//! passed here were allocated by this crate in standard (row-major) layout, or are rows of such
//! arrays: [`row_major`] borrows them (and would copy a strided view rather than fail), and
//! [`row_major_mut`] states once, instead of an `expect` at every use, why their entries are
//! one slice.

use std::borrow::Cow;

use ndarray::{ArrayBase, ArrayViewMut, Data, Dimension};

/// The entries in row-major order: borrowed when contiguous (every array the crate allocates),
/// copied otherwise.
#[inline]
pub(crate) fn row_major<S, D>(a: &ArrayBase<S, D>) -> Cow<'_, [f64]>
where
    S: Data<Elem = f64>,
    D: Dimension,
{
    match a.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().copied().collect()),
    }
}

/// The entries of a view into an array the crate allocated with `Array::zeros` (standard
/// layout), or of a row of one: contiguous by construction.
#[inline]
pub(crate) fn row_major_mut<D: Dimension>(a: ArrayViewMut<'_, f64, D>) -> &mut [f64] {
    match a.into_slice() {
        Some(s) => s,
        None => unreachable!("a fresh standard-layout array or a row of one is contiguous"),
    }
}
