//! Opening and reading a tree's files ahead of the backup's reader, on a
//! pool of threads: for a tree of many small files, open, read and close
//! cost more than cutting the bytes into chunks, and one thread doing all
//! of them bounds the backup (issue 19's per-stage timings).
//!
//! ```text
//! walk ─► reader ─► read-ahead ×N (open, read, close) ─► reader, in walk order (FastCDC, entries) ─► pipeline
//! ```
//!
//! The walk (directory listings, `lstat`, extended attributes) runs on a
//! thread of its own too (`walk_on_thread`), a bounded queue ahead.
//!
//! The reader submits a file as the walk reaches it and takes its data back
//! in walk order, so the streams, and the snapshot, are byte for byte what
//! one thread reading would make. Memory is bounded: at most `LOOKAHEAD`
//! files are out, each read whole only when its data is at most
//! `WHOLE_MAX` (a bigger one comes back opened, and the reader reads it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::Scope;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, bounded};
use filevol::archive::Entry;

use crate::fswalk::{FileData, Source, open_data};
use crate::pipeline::thread_cpu;

/// Files handed out ahead of the reader, at most.
pub const LOOKAHEAD: usize = 32;
/// Files with at most this much data are read whole by the pool.
pub const WHOLE_MAX: u64 = 1 << 20;

/// A file the pool opened: its entry refreshed from the open file (size,
/// times, inode, holes), and its data.
pub enum Fetched {
    /// All its data, and whether the file changed while it was read.
    Whole(Vec<u8>, bool),
    /// A bigger file, open: the reader reads it.
    Open(FileData),
}

/// A file the pool could not open or read: the message for the manifest.
pub type FetchResult = Result<(Entry, Fetched), String>;

struct Job {
    source: Source,
    entry: Entry,
    reply: Sender<FetchResult>,
}

/// Walk items queued between the walking thread and the reader.
pub const WALK_AHEAD: usize = 256;

/// The pool's clock: time spent opening and reading (summed over its
/// threads), and the reader's time waiting for a file it needed; the
/// walking thread's CPU time.
#[derive(Debug, Default)]
pub struct ReadAheadTimes {
    busy_ns: AtomicU64,
    cpu_ns: AtomicU64,
    waited_ns: AtomicU64,
    files: AtomicU64,
    walk_cpu_ns: AtomicU64,
}

/// Run a walk on a thread of its own; its items come out of the receiver
/// in walk order. Dropping the receiver stops the walk.
pub fn walk_on_thread<'scope, 'env, I>(
    scope: &'scope Scope<'scope, 'env>,
    walk: I,
    times: &'scope ReadAheadTimes,
) -> Receiver<I::Item>
where
    I: Iterator + Send + 'scope,
    I::Item: Send + 'scope,
{
    let (tx, rx) = bounded(WALK_AHEAD);
    scope.spawn(move || {
        let cpu = thread_cpu();
        for item in walk {
            if tx.send(item).is_err() {
                break;
            }
        }
        times.walk_cpu_ns.fetch_add(((thread_cpu() - cpu) * 1e9) as u64, Ordering::Relaxed);
    });
    rx
}

impl ReadAheadTimes {
    /// (seconds busy and CPU seconds, summed over the threads; seconds
    /// the reader waited; files handed out).
    pub fn values(&self) -> (f64, f64, f64, u64) {
        let s = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 / 1e9;
        (s(&self.busy_ns), s(&self.cpu_ns), s(&self.waited_ns), self.files.load(Ordering::Relaxed))
    }

    /// CPU seconds of the walking thread.
    pub fn walk_cpu(&self) -> f64 {
        self.walk_cpu_ns.load(Ordering::Relaxed) as f64 / 1e9
    }
}

/// The pool, alive inside a thread scope.
pub struct ReadAhead<'t> {
    jobs: Option<Sender<Job>>,
    times: &'t ReadAheadTimes,
    pub threads: usize,
}

impl<'t> ReadAhead<'t> {
    pub fn start<'scope, 'env>(
        scope: &'scope Scope<'scope, 'env>,
        threads: usize,
        times: &'t ReadAheadTimes,
    ) -> Self
    where
        't: 'scope,
    {
        let threads = threads.clamp(1, 32);
        let (tx, rx) = bounded::<Job>(LOOKAHEAD);
        for _ in 0..threads {
            let rx = rx.clone();
            scope.spawn(move || {
                let cpu = thread_cpu();
                for job in rx {
                    let t = Instant::now();
                    let result = fetch(&job.source, job.entry);
                    times.busy_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    let _ = job.reply.send(result);
                }
                times.cpu_ns.fetch_add(((thread_cpu() - cpu) * 1e9) as u64, Ordering::Relaxed);
            });
        }
        Self { jobs: Some(tx), times, threads }
    }

    /// Hand a file to the pool; its result comes back on the receiver.
    pub fn submit(&self, source: Source, entry: Entry) -> Receiver<FetchResult> {
        let (reply, rx) = bounded(1);
        self.times.files.fetch_add(1, Ordering::Relaxed);
        let job = Job { source, entry, reply };
        // The threads stop only once the pool is dropped.
        self.jobs.as_ref().expect("open").send(job).expect("read-ahead threads run");
        rx
    }

    /// Wait for a file handed out earlier.
    pub fn take(&self, rx: Receiver<FetchResult>) -> FetchResult {
        let t = Instant::now();
        let r = rx.recv().unwrap_or_else(|_| Err("the file reading threads stopped".into()));
        self.times.waited_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        r
    }
}

impl Drop for ReadAhead<'_> {
    fn drop(&mut self) {
        drop(self.jobs.take());
    }
}

fn fetch(source: &Source, mut entry: Entry) -> FetchResult {
    let mut data = open_data(source, &mut entry).map_err(|e| e.to_string())?;
    if entry.data_len() > WHOLE_MAX {
        return Ok((entry, Fetched::Open(data)));
    }
    let len = entry.data_len() as usize;
    let mut out = vec![0u8; len];
    let mut filled = 0;
    let mut end = [0u8; 1];
    loop {
        let dst = if filled < len { &mut out[filled..] } else { &mut end[..] };
        let n = data.read_next(dst).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    let changed = data.changed_while_reading();
    Ok((entry, Fetched::Whole(out, changed)))
}
