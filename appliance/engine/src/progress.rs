//! Live counters a long operation updates and a front end polls (the CLI
//! draws a progress bar from them; later the daemon's task view).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Counters shared between an operation and whoever displays it.
#[derive(Debug, Default)]
pub struct Progress {
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    /// Estimated total bytes, 0 while unknown.
    pub total_bytes: AtomicU64,
    pub total_files: AtomicU64,
    pub stored: AtomicU64,
    pub done: AtomicBool,
}

impl Progress {
    pub fn add_file(&self) {
        self.files.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self, c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}
