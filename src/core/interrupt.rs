//! Cancellation of long computations without any dependency on Python.
//!
//! A caller that wants to be able to stop a computation runs it inside [`with_flag`]; every long
//! loop of the core calls [`check`] once per iteration (an atomic load), which fails with
//! [`OtError::Interrupted`] once the flag is set, and the error unwinds through `?` like any
//! other. Loops that run on rayon's workers read the flag through [`current`], captured before
//! the parallel section. The Python bindings set the flag when a signal handler raises
//! (Ctrl-C); pure-Rust callers may set it from any thread.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::core::error::{OtError, Result};

/// A shared flag that asks the computations running under it to stop.
#[derive(Clone, Debug, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

thread_local! {
    static CURRENT: RefCell<Option<CancelFlag>> = const { RefCell::new(None) };
}

/// Restores the previous flag of this thread when dropped, also on unwinding.
struct Restore(Option<CancelFlag>);

impl Drop for Restore {
    fn drop(&mut self) {
        CURRENT.with(|c| *c.borrow_mut() = self.0.take());
    }
}

/// Runs `work` on this thread with `flag` as its cancellation flag.
pub fn with_flag<R>(flag: &CancelFlag, work: impl FnOnce() -> R) -> R {
    let previous = CURRENT.with(|c| c.borrow_mut().replace(flag.clone()));
    let _restore = Restore(previous);
    work()
}

/// This thread's flag, to carry into parallel tasks.
pub fn current() -> Option<CancelFlag> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Fails with [`OtError::Interrupted`] once this thread's flag is set.
pub fn check() -> Result<()> {
    let cancelled = CURRENT.with(|c| c.borrow().as_ref().is_some_and(CancelFlag::is_cancelled));
    if cancelled {
        Err(OtError::Interrupted)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_fails_only_under_a_set_flag() {
        assert!(check().is_ok());
        let flag = CancelFlag::new();
        with_flag(&flag, || {
            assert!(check().is_ok());
            flag.cancel();
            assert_eq!(check(), Err(OtError::Interrupted));
        });
        assert!(check().is_ok(), "the flag is scoped to with_flag");
    }

    #[test]
    fn a_flag_set_from_another_thread_is_seen() {
        let flag = CancelFlag::new();
        let remote = flag.clone();
        std::thread::spawn(move || remote.cancel()).join().unwrap();
        with_flag(&flag, || assert!(check().is_err()));
    }
}
