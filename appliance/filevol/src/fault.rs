//! Fault injection for the durability tests: every step a backup relies on
//! to make its data durable (write, sync, rename, directory sync) passes a
//! fault point; a test arms a countdown on its thread and the N-th point
//! fails with an I/O error, as a full disk or a dying device would.
//!
//! Outside tests the points compile to nothing.

use std::path::Path;

use crate::error::Result;
#[cfg(test)]
use crate::error::StoreError;

#[cfg(test)]
thread_local! {
    /// Points to pass before one fails (`None`: disarmed), and how many
    /// were passed.
    static COUNTDOWN: std::cell::Cell<(Option<u64>, u64)> = const { std::cell::Cell::new((None, 0)) };
}

/// Arm the countdown of this thread: the `n`-th point from now fails.
#[cfg(test)]
pub(crate) fn arm(n: u64) {
    COUNTDOWN.with(|c| c.set((Some(n), 0)));
}

/// Disarm; how many points were passed since `arm`.
#[cfg(test)]
pub(crate) fn disarm() -> u64 {
    COUNTDOWN.with(|c| c.replace((None, 0)).1)
}

/// A durable step on `path` (`what` names it in the error).
#[cfg(test)]
pub(crate) fn point(path: &Path, what: &str) -> Result<()> {
    COUNTDOWN.with(|c| {
        let (left, passed) = c.get();
        let passed = passed + 1;
        c.set((left, passed));
        if left == Some(passed) {
            let e = std::io::Error::other(format!("injected fault at {what} (step {passed})"));
            return Err(StoreError::io(path, e));
        }
        Ok(())
    })
}

#[cfg(not(test))]
#[inline(always)]
pub(crate) fn point(_path: &Path, _what: &str) -> Result<()> {
    Ok(())
}
