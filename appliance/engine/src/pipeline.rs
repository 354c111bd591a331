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
//!
//! Each stage keeps the time it spent working and the time it spent
//! waiting on its neighbours (`StageTimes`); `finish` logs them (`cairn
//! backup -v`), so a benchmark shows which stage bounds a backup.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

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

/// Time one stage (all its threads together) spent working and waiting.
#[derive(Debug, Default)]
struct Clock {
    busy_ns: AtomicU64,
    wait_ns: AtomicU64,
}

impl Clock {
    fn add(&self, busy: Duration, wait: Duration) {
        self.busy_ns.fetch_add(busy.as_nanos() as u64, Ordering::Relaxed);
        self.wait_ns.fetch_add(wait.as_nanos() as u64, Ordering::Relaxed);
    }

    fn secs(&self) -> (f64, f64) {
        let s = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 / 1e9;
        (s(&self.busy_ns), s(&self.wait_ns))
    }
}

/// Where a pipeline's time went, per stage: seconds working and seconds
/// waiting (the reader on full queues, workers on an empty one, the
/// collector on results). Workers' seconds are summed over the workers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageTimes {
    pub wall: f64,
    pub workers: usize,
    pub reader: (f64, f64),
    pub worker: (f64, f64),
    pub collector: (f64, f64),
    /// CPU seconds the reader's thread and the workers' threads (summed)
    /// used: unlike busy time, not inflated by waiting for a free core,
    /// so `bytes / reader_cpu` is what the reader alone could sustain.
    pub reader_cpu: f64,
    pub worker_cpu: f64,
}

/// CPU seconds this thread has used so far.
pub fn thread_cpu() -> f64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map_or(0.0, |t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
}

#[derive(Default)]
struct Clocks {
    reader_wait_ns: AtomicU64,
    worker: Clock,
    worker_cpu_ns: AtomicU64,
    collector: Clock,
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
    clocks: Arc<Clocks>,
    started: Instant,
    started_cpu: f64,
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
        let clocks = Arc::new(Clocks::default());
        let workers = (0..n)
            .map(|_| {
                let (rx, done_tx, inflight) = (rx.clone(), done_tx.clone(), inflight.clone());
                let (spare_tx, clocks) = (spare_tx.clone(), clocks.clone());
                scope.spawn(move || worker(writer, level, rx, done_tx, spare_tx, &inflight, &clocks))
            })
            .collect();
        drop(done_tx);
        let collector_clocks = clocks.clone();
        let collector = scope.spawn(move || collect(done_rx, streams, failed, &collector_clocks.collector));
        Self {
            tx: Some(tx),
            spare,
            seq: 0,
            failed,
            collector,
            workers,
            clocks,
            started: Instant::now(),
            started_cpu: thread_cpu(),
        }
    }

    /// Queue a chunk of `stream`. Fails fast once any worker failed.
    pub fn send(&mut self, stream: usize, work: Work) -> Result<()> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(Stopped.into());
        }
        let job = Job { seq: self.seq, stream, work };
        self.seq += 1;
        let t = Instant::now();
        let sent = self.tx.as_ref().expect("open").send(job).map_err(|_| Stopped.into());
        self.clocks.reader_wait_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        sent
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
    pub fn finish(self) -> Result<Vec<StreamIndex>> {
        self.finish_timed().map(|(indexes, _)| indexes)
    }

    /// `finish`, with where the time went (also logged at info level).
    pub fn finish_timed(mut self) -> Result<(Vec<StreamIndex>, StageTimes)> {
        // The reader's part ends when it hands over its last chunk.
        let reader_total = self.started.elapsed().as_secs_f64();
        let reader_cpu = thread_cpu() - self.started_cpu;
        drop(self.tx.take());
        let workers = self.workers.len();
        for w in self.workers {
            w.join().map_err(|_| anyhow!("a pipeline worker panicked"))?;
        }
        let indexes = self.collector.join().map_err(|_| anyhow!("the pipeline collector panicked"))??;
        let reader_wait = self.clocks.reader_wait_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let times = StageTimes {
            wall: self.started.elapsed().as_secs_f64(),
            workers,
            reader: ((reader_total - reader_wait).max(0.0), reader_wait),
            worker: self.clocks.worker.secs(),
            collector: self.clocks.collector.secs(),
            reader_cpu,
            worker_cpu: self.clocks.worker_cpu_ns.load(Ordering::Relaxed) as f64 / 1e9,
        };
        tracing::info!(
            wall_s = format!("{:.3}", times.wall),
            reader_busy_s = format!("{:.3}", times.reader.0),
            reader_wait_s = format!("{:.3}", times.reader.1),
            workers,
            workers_busy_s = format!("{:.3}", times.worker.0),
            workers_wait_s = format!("{:.3}", times.worker.1),
            collector_busy_s = format!("{:.3}", times.collector.0),
            collector_wait_s = format!("{:.3}", times.collector.1),
            reader_cpu_s = format!("{:.3}", times.reader_cpu),
            workers_cpu_s = format!("{:.3}", times.worker_cpu),
            "pipeline stages"
        );
        Ok((indexes, times))
    }
}

fn worker(
    writer: &dyn ChunkSink,
    level: i32,
    rx: Receiver<Job>,
    done: Sender<Done>,
    spare: Sender<Vec<u8>>,
    inflight: &InFlight,
    clocks: &Clocks,
) {
    let (mut busy, mut wait) = (Duration::ZERO, Duration::ZERO);
    let cpu = thread_cpu();
    loop {
        let t = Instant::now();
        let Ok(job) = rx.recv() else { break };
        let got = Instant::now();
        wait += got - t;
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
        let sent = done.send(Done { seq: job.seq, stream: job.stream, result });
        busy += got.elapsed();
        if sent.is_err() {
            break;
        }
    }
    clocks.worker.add(busy, wait);
    clocks.worker_cpu_ns.fetch_add(((thread_cpu() - cpu) * 1e9) as u64, Ordering::Relaxed);
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

fn collect(
    rx: Receiver<Done>,
    streams: usize,
    failed: &AtomicBool,
    clock: &Clock,
) -> Result<Vec<StreamIndex>> {
    let mut out = vec![StreamIndex::default(); streams];
    let mut pending = BTreeMap::new();
    let mut next = 0u64;
    let mut first_err = None;
    let (mut busy, mut wait) = (Duration::ZERO, Duration::ZERO);
    loop {
        let t = Instant::now();
        let Ok(d) = rx.recv() else { break };
        let got = Instant::now();
        wait += got - t;
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
        busy += got.elapsed();
    }
    clock.add(busy, wait);
    match first_err {
        Some(e) => Err(e),
        None if pending.is_empty() => Ok(out),
        None => Err(anyhow!("pipeline lost chunks")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use filevol::{IndexRef, WriteCounters};

    /// A sink that keeps blobs in memory and stores slowly, so the workers
    /// are the bound.
    #[derive(Default)]
    struct SlowSink {
        stored: Mutex<HashSet<ChunkId>>,
        counters: WriteCounters,
    }

    impl ChunkSink for SlowSink {
        fn reference(&self, id: &ChunkId) -> Result<bool> {
            Ok(self.stored.lock().unwrap().contains(id))
        }
        fn store(&self, id: &ChunkId, _blob: Vec<u8>) -> Result<()> {
            std::thread::sleep(Duration::from_millis(20));
            self.stored.lock().unwrap().insert(*id);
            Ok(())
        }
        fn write_index(&self, _: &str, _: &[u8], _: u64, _: u64) -> Result<IndexRef> {
            unreachable!("the pipeline writes no index")
        }
        fn counters(&self) -> &WriteCounters {
            &self.counters
        }
        fn workers(&self) -> usize {
            2
        }
    }

    #[test]
    fn stage_times_say_which_stage_waited_on_which() {
        let sink = SlowSink::default();
        let failed = AtomicBool::new(false);
        let (indexes, times) = std::thread::scope(|scope| {
            let mut p = Pipeline::start(scope, &sink, 1, 1, &failed);
            for i in 0..20u32 {
                p.send(0, Work::Data(i.to_le_bytes().repeat(1000))).unwrap();
            }
            p.finish_timed().unwrap()
        });
        assert_eq!(indexes[0].chunks.len(), 20);
        assert_eq!(times.workers, 2);
        // The slow stores are the workers' busy time (20 × 20 ms over two
        // workers), and the reader, far faster, waited on full queues.
        assert!(times.worker.0 >= 0.4, "{times:?}");
        assert!(times.reader.1 > times.reader.0, "{times:?}");
        assert!(times.reader.0 + times.reader.1 <= times.wall + 0.01, "{times:?}");
        assert!(times.collector.1 > times.collector.0, "{times:?}");
        // Sleeping in a store is busy time but no CPU time.
        assert!(times.worker_cpu < times.worker.0 / 2.0, "{times:?}");
        assert!(times.reader_cpu >= 0.0 && times.reader_cpu <= times.wall + 0.05, "{times:?}");
    }
}
