//! Long calls that answer Ctrl-C.
//!
//! Python runs signal handlers only on the main thread and only between bytecodes, so a kernel
//! that holds the thread for minutes would make Ctrl-C wait for it. [`run_interruptible`] runs
//! the computation on a scoped worker thread with the GIL released, while the calling thread
//! runs the signal handlers every [`POLL`]; a handler that raises (KeyboardInterrupt) sets the
//! core's cancellation flag, the core's loops stop at their next `interrupt::check()`, and the
//! handler's exception is raised to the caller.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use pyo3::prelude::*;

use crate::core::interrupt::{with_flag, CancelFlag};
use crate::core::OtError;

/// How often the calling thread runs Python's signal handlers.
const POLL: Duration = Duration::from_millis(50);

/// Runs `work` without the GIL, stopping it when a Python signal handler raises.
pub(super) fn run_interruptible<T: Send>(
    py: Python<'_>,
    work: impl FnOnce() -> Result<T, OtError> + Send,
) -> PyResult<T> {
    let flag = CancelFlag::new();
    let done = Latch::default();
    let mut raised: Option<PyErr> = None;
    let outcome = std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            let _open_on_exit = OpenOnDrop(&done);
            with_flag(&flag, work)
        });
        // The worker may call back into Python (progress callbacks), so the GIL is released
        // whenever this thread waits.
        while !py.detach(|| done.wait(POLL)) {
            if raised.is_none() {
                if let Err(err) = py.check_signals() {
                    raised = Some(err);
                    flag.cancel();
                }
            }
        }
        worker.join()
    });
    let result = match outcome {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    match (raised, result) {
        // A handler's exception wins even over a result that finished meanwhile: Ctrl-C is
        // never lost.
        (Some(err), _) => Err(err),
        (None, result) => result.map_err(PyErr::from),
    }
}

/// A one-shot "finished" signal the waiting thread can poll with a timeout.
#[derive(Default)]
struct Latch {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Latch {
    fn open(&self) {
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.opened.notify_all();
    }

    /// Whether the latch is open, waiting at most `timeout` for it.
    fn wait(&self, timeout: Duration) -> bool {
        let guard = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = self
            .opened
            .wait_timeout_while(guard, timeout, |open| !*open)
            .unwrap_or_else(|e| e.into_inner());
        *guard
    }
}

/// Opens the latch when the worker ends, also by a panic (which `join` then re-raises).
struct OpenOnDrop<'a>(&'a Latch);

impl Drop for OpenOnDrop<'_> {
    fn drop(&mut self) {
        self.0.open();
    }
}
