//! The backup pipeline: the reading thread cuts chunks and hands them to
//! worker threads that hash, deduplicate, compress and store them; a
//! collector puts the results back in stream order into the indexes.
//!
//! ```text
//! reader (walk, read, FastCDC) ─► workers ×N (blake3, dedup, zstd, write) ─► collector (reorder, index)
//! ```
//!
//! Memory is bounded: at most `2N + 2` chunks wait between the stages.
//! Invariant: the collector sees every chunk exactly once, in sequence order.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{Scope, ScopedJoinHandle};

use crate::target::ChunkSink;
use anyhow::{Context, Result, anyhow};
use chunker::{ChunkId, StreamChunker, blob::encode_blob_with_id};
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

/// What the reader hands over.
pub enum Work {
    /// New bytes to hash and store.
    Data(Vec<u8>),
    /// A chunk of a previous snapshot, reused as is (`id`, length).
    Reuse(ChunkId, u64),
}

struct Job {
    seq: u64,
    stream: usize,
    work: Work,
}

struct Done {
    seq: u64,
    stream: usize,
    result: Result<(ChunkId, u64)>,
}

/// The ordered chunk list of one stream.
#[derive(Debug, Default, Clone)]
pub struct StreamIndex {
    pub chunks: Vec<(ChunkId, u64)>,
}

/// Chunks being stored, so two workers never store the same chunk at once.
#[derive(Default)]
struct InFlight {
    ids: Mutex<HashSet<ChunkId>>,
    cond: Condvar,
}

/// What `send` returns once a worker failed; the worker's own error comes
/// from `finish` (see [`first_error`]).
#[derive(Debug, thiserror::Error)]
#[error("backup pipeline stopped after an error")]
pub struct Stopped;

/// The error to report when both the reader and the pipeline may have
/// failed: a reader that only saw [`Stopped`] yields to the pipeline's cause.
pub fn first_error<T>(produced: Result<()>, finished: Result<T>) -> Result<T> {
    match (produced, finished) {
        (Ok(()), finished) => finished,
        (Err(e), Err(cause)) if e.is::<Stopped>() => Err(cause),
        (Err(e), _) => Err(e),
    }
}

/// A running pipeline inside a thread scope.
pub struct Pipeline<'scope> {
    tx: Option<Sender<Job>>,
    /// Data buffers the workers are done with, for the reader to refill.
    spare: Receiver<Vec<u8>>,
    seq: u64,
    failed: &'scope AtomicBool,
    collector: ScopedJoinHandle<'scope, Result<Vec<StreamIndex>>>,
    workers: Vec<ScopedJoinHandle<'scope, ()>>,
}

impl<'scope> Pipeline<'scope> {
    pub fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        writer: &'env dyn ChunkSink,
        streams: usize,
        level: i32,
        failed: &'scope AtomicBool,
    ) -> Self {
        let n = writer.workers().clamp(1, 32);
        let (tx, rx) = bounded::<Job>(2 * n + 2);
        let (done_tx, done_rx) = unbounded::<Done>();
        let (spare_tx, spare) = bounded::<Vec<u8>>(2 * n + 2);
        let inflight = Arc::new(InFlight::default());
        let workers = (0..n)
            .map(|_| {
                let (rx, done_tx, inflight) = (rx.clone(), done_tx.clone(), inflight.clone());
                let spare_tx = spare_tx.clone();
                scope.spawn(move || worker(writer, level, rx, done_tx, spare_tx, &inflight))
            })
            .collect();
        drop(done_tx);
        let collector = scope.spawn(move || collect(done_rx, streams, failed));
        Self { tx: Some(tx), spare, seq: 0, failed, collector, workers }
    }

    /// Queue a chunk of `stream`. Fails fast once any worker failed.
    pub fn send(&mut self, stream: usize, work: Work) -> Result<()> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(Stopped.into());
        }
        let job = Job { seq: self.seq, stream, work };
        self.seq += 1;
        self.tx.as_ref().expect("open").send(job).map_err(|_| Stopped.into())
    }

    /// Cut `bytes` into `stream` with `chunker`, queueing each chunk it
    /// completes; `finish` also cuts what is pending.
    pub fn push(
        &mut self,
        stream: usize,
        chunker: &mut StreamChunker,
        bytes: &[u8],
        finish: bool,
    ) -> Result<()> {
        let mut result = Ok(());
        let mut send = |c| {
            if result.is_ok() {
                result = self.send(stream, Work::Data(c));
            }
        };
        chunker.push(bytes, &mut send);
        if finish {
            chunker.finish(&mut send);
        }
        result
    }

    /// An empty buffer of at least `capacity` bytes, recycled from a chunk
    /// already stored when there is one (saves allocating and faulting in
    /// fresh pages for every 4 MiB image chunk).
    pub fn buffer(&self, capacity: usize) -> Vec<u8> {
        let mut buf = self.spare.try_recv().unwrap_or_default();
        buf.clear();
        buf.reserve(capacity);
        buf
    }

    /// Wait for every queued chunk; returns each stream's index.
    pub fn finish(mut self) -> Result<Vec<StreamIndex>> {
        drop(self.tx.take());
        for w in self.workers {
            w.join().map_err(|_| anyhow!("a pipeline worker panicked"))?;
        }
        self.collector.join().map_err(|_| anyhow!("the pipeline collector panicked"))?
    }
}

fn worker(
    writer: &dyn ChunkSink,
    level: i32,
    rx: Receiver<Job>,
    done: Sender<Done>,
    spare: Sender<Vec<u8>>,
    inflight: &InFlight,
) {
    for job in rx {
        let result = match job.work {
            Work::Data(data) => {
                let r = store_data(writer, level, &data, inflight).map(|id| (id, data.len() as u64));
                let _ = spare.try_send(data);
                r
            }
            Work::Reuse(id, len) => match writer.reference(&id) {
                Ok(true) => {
                    writer.counters().reused_chunks.fetch_add(1, Ordering::Relaxed);
                    Ok((id, len))
                }
                Ok(false) => Err(anyhow!("chunk {id} of the previous snapshot vanished during the backup")),
                Err(e) => Err(e),
            },
        };
        if done.send(Done { seq: job.seq, stream: job.stream, result }).is_err() {
            return;
        }
    }
}

fn store_data(writer: &dyn ChunkSink, level: i32, data: &[u8], inflight: &InFlight) -> Result<ChunkId> {
    let id = ChunkId::of(data);
    {
        let mut ids = inflight.ids.lock().expect("lock");
        while ids.contains(&id) {
            ids = inflight.cond.wait(ids).expect("lock");
        }
        ids.insert(id);
    }
    let result = (|| {
        if writer.reference(&id)? {
            writer.counters().reused_chunks.fetch_add(1, Ordering::Relaxed);
            return Ok(id);
        }
        let blob = encode_blob_with_id(data, id, level);
        writer.store(&id, blob).with_context(|| format!("storing chunk {id}"))?;
        Ok(id)
    })();
    inflight.ids.lock().expect("lock").remove(&id);
    inflight.cond.notify_all();
    result
}

fn collect(rx: Receiver<Done>, streams: usize, failed: &AtomicBool) -> Result<Vec<StreamIndex>> {
    let mut out = vec![StreamIndex::default(); streams];
    let mut pending = BTreeMap::new();
    let mut next = 0u64;
    let mut first_err = None;
    for d in rx {
        match d.result {
            Ok(c) => {
                pending.insert(d.seq, (d.stream, c));
            }
            Err(e) => {
                failed.store(true, Ordering::Relaxed);
                first_err.get_or_insert(e);
            }
        }
        while let Some((stream, c)) = pending.remove(&next) {
            out[stream].chunks.push(c);
            next += 1;
        }
    }
    match first_err {
        Some(e) => Err(e),
        None if pending.is_empty() => Ok(out),
        None => Err(anyhow!("pipeline lost chunks")),
    }
}
