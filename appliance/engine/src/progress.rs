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

/// Count the bytes under `sources` on a background thread and publish the
/// total, so a progress bar can show an ETA. Symlinks are not followed.
pub fn estimate_in_background(sources: &[std::path::PathBuf], progress: std::sync::Arc<Progress>) {
    let sources = sources.to_vec();
    std::thread::spawn(move || {
        let mut files = 0u64;
        let mut bytes = 0u64;
        let mut stack = sources;
        while let Some(p) = stack.pop() {
            if progress.done.load(Ordering::Relaxed) {
                return;
            }
            let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
            if meta.is_dir() {
                if let Ok(rd) = std::fs::read_dir(&p) {
                    stack.extend(rd.flatten().map(|e| e.path()));
                }
            } else {
                files += 1;
                bytes += if meta.is_file() { meta.len() } else { 0 };
            }
        }
        progress.total_files.store(files, Ordering::Relaxed);
        progress.total_bytes.store(bytes, Ordering::Relaxed);
    });
}
