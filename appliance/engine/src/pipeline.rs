//! The backup pipeline: the reading thread cuts chunks and hands them to
//! worker threads that hash, deduplicate, compress and store them; a
//! collector puts the results back in stream order into the indexes.
//!
//! ```text
//! reader (walk, read, cut) ─► workers ×N (blake3, dedup, zstd, write) ─► collector (reorder, index)
//!                                        └─► syncers ×S (sync, journal, rename) ─┘
//! ```
//!
//! The reader's cutting of a tree's file data is split too: the gear
//! hashing that finds the boundaries runs on `cdcpool`'s scanner threads,
//! and the reader only says where they are: a chunk of file data reaches
//! a worker as the pieces of the buffers the files were read into
//! (`Work::Pieces`), and the worker gathers its bytes.
//!
//! A local datastore's new chunk is written by a worker and made durable by
//! a syncer (`ChunkSink::store_unsettled`, `settle`), so the workers keep
//! the cores busy while the disk syncs (until `2S + 2` chunks wait for the
//! syncers); a chunk a worker stored reaches the collector once it is
//! durable, and `finish` joins the syncers, so when it returns every chunk
//! is.
//!
//! Memory is bounded: at most `2N + 2` chunks, and at most
//! [`DATA_BUDGET`] bytes of chunk buffers whatever N (by capacity; for a
//! chunk in pieces, the capacity of every buffer it is cut from and the
//! bytes a worker gathers it into), wait
//! between the stages or are being stored
//! (chunks waiting for a syncer are files in the page cache, each holding
//! an open descriptor: at most `N + 3S + 2`). Each worker storing a chunk
//! holds its blob too; [`SPARE_BUFFERS`] emptied chunk buffers wait to
//! be filled again (by the reader, or by a worker gathering pieces), as
//! many blob buffers for the workers, and as many read blocks for the
//! reader ([`Pipeline::blocks`]).
//! Invariant: the collector sees every chunk exactly once, in sequence order.
//!
//! Each stage keeps the time it spent working and the time it spent
//! waiting on its neighbours (`StageTimes`); `finish` logs them (`cairn
//! backup -v`), so a benchmark shows which stage bounds a backup.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use crate::pieces::{self, Piece, Pieces, READ_BLOCK, gather, resident};
use crate::target::ChunkSink;
use anyhow::{Context, Result, anyhow};
use chunker::{ChunkId, StreamChunker, blob::encode_blob_into};
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use filevol::Unsettled;

/// What the reader hands over.
pub enum Work {
    /// New bytes to hash and store.
    Data(Vec<u8>),
    /// New bytes to hash and store, as the pieces of the buffers they
    /// were read into (`cdcpool`): the worker gathers them.
    Pieces(Pieces),
    /// A chunk of a previous snapshot, reused as is (`id`, length).
    Reuse(ChunkId, u64),
}

struct Job {
    seq: u64,
    stream: usize,
    work: Work,
    /// The data's share of the budget, given back when the job is dropped.
    _held: Held,
}

/// Bytes of chunk buffers (counted by capacity) the reader may have handed
/// over and the workers not yet stored, whatever the number of workers:
/// with the blobs the workers make of them, what bounds a backup's memory.
pub const DATA_BUDGET: u64 = 48 << 20;

/// The bytes of chunk data between the reader and the workers.
#[derive(Default)]
struct Budget {
    held: Mutex<u64>,
    freed: Condvar,
    /// Workers still running; when none is, nothing will free the budget.
    workers: AtomicUsize,
}

/// A share of the budget, given back when dropped (also when a worker
/// unwinds with it).
struct Held(Arc<Budget>, u64);

impl Drop for Held {
    fn drop(&mut self) {
        *self.0.held.lock().expect("lock") -= self.1;
        self.0.freed.notify_all();
    }
}

impl Budget {
    /// Take `n` bytes, waiting while they would go over the budget (a
    /// chunk bigger than what is free goes when nothing else is held).
    /// `None` once no worker runs, or the pipeline failed.
    fn take(self: &Arc<Self>, n: u64, failed: &AtomicBool) -> Option<Held> {
        let mut held = self.held.lock().expect("lock");
        while *held > 0 && *held + n > DATA_BUDGET {
            if failed.load(Ordering::Relaxed) || self.workers.load(Ordering::Relaxed) == 0 {
                return None;
            }
            held = self.freed.wait_timeout(held, Duration::from_millis(100)).expect("lock").0;
        }
        *held += n;
        Some(Held(self.clone(), n))
    }
}

/// Counts a worker as running until it returns or unwinds.
struct Running(Arc<Budget>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.workers.fetch_sub(1, Ordering::Relaxed);
        self.0.freed.notify_all();
    }
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
    /// Threads settling chunks (0 when the target leaves none), and their
    /// seconds settling and idle, summed.
    pub syncers: usize,
    pub syncer: (f64, f64),
    pub collector: (f64, f64),
    /// CPU seconds the reader's thread and the workers' threads (summed)
    /// used: unlike busy time, not inflated by waiting for a free core,
    /// so `bytes / reader_cpu` is what the reader alone could sustain.
    pub reader_cpu: f64,
    pub worker_cpu: f64,
}

/// CPU seconds this thread has used so far.
/// Add the CPU time this thread used since `start` (a [`thread_cpu`]
/// reading) to `total`, in nanoseconds.
pub fn add_thread_cpu(total: &AtomicU64, start: f64) {
    total.fetch_add(((thread_cpu() - start) * 1e9) as u64, Ordering::Relaxed);
}

pub fn thread_cpu() -> f64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map_or(0.0, |t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
}

#[derive(Default)]
struct Clocks {
    reader_wait_ns: AtomicU64,
    worker: Clock,
    worker_cpu_ns: AtomicU64,
    syncer: Clock,
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

/// Emptied chunk buffers kept for the reader to fill again, and emptied
/// blob buffers kept for the workers, each whatever the number of
/// workers: every one is up to a chunk of resident memory. Beyond them an
/// emptied buffer is freed.
const SPARE_BUFFERS: usize = 4;

/// Emptied buffers that wait to be filled again. Buffers are reused
/// rather than freed and allocated for each chunk: a fresh one costs a
/// page fault for every page it fills.
#[derive(Clone)]
struct Spares {
    tx: Sender<Vec<u8>>,
    rx: Receiver<Vec<u8>>,
}

impl Spares {
    fn new() -> Self {
        let (tx, rx) = bounded(SPARE_BUFFERS);
        Self { tx, rx }
    }

    /// An emptied buffer, if one waits.
    fn waiting(&self) -> Option<Vec<u8>> {
        self.rx.try_recv().ok()
    }

    /// An emptied buffer if one waits, else a new empty one.
    fn take(&self) -> Vec<u8> {
        self.waiting().unwrap_or_default()
    }

    /// Keep `buf` for reuse, unless enough are kept already.
    fn give(&self, mut buf: Vec<u8>) {
        buf.clear();
        self.keep(buf);
    }

    /// A read block (`READ_BLOCK` bytes) to fill: one the workers are
    /// done with if one waits (its bytes not zeroed again), else a new one.
    fn read_block(&self) -> Vec<u8> {
        let mut buf = self.waiting().unwrap_or_default();
        buf.resize(READ_BLOCK, 0);
        buf
    }

    /// `give`, leaving the buffer's bytes as they are (so that a buffer
    /// resized to what it was does not zero them again).
    fn keep(&self, buf: Vec<u8>) {
        if buf.capacity() > 0 {
            let _ = self.tx.try_send(buf);
        }
    }
}

/// The pipeline's read blocks the workers are done with.
pub struct ReadBlocks(Spares);

impl ReadBlocks {
    /// A read block (`READ_BLOCK` bytes) to fill: one the workers are
    /// done with if one waits, else a new one.
    pub fn block(&self) -> Vec<u8> {
        self.0.read_block()
    }

    /// A block that was not filled after all, for the next `block`.
    pub fn give_back(&self, block: Vec<u8>) {
        self.0.keep(block);
    }
}

/// The pipeline's emptied buffers: chunk buffers for the reader to fill,
/// blob buffers for the workers.
#[derive(Clone)]
struct Buffers {
    chunks: Spares,
    blobs: Spares,
    /// Read blocks the workers are done with.
    blocks: Spares,
}

/// A running pipeline inside a thread scope.
pub struct Pipeline<'scope> {
    tx: Option<Sender<Job>>,
    /// Buffers the workers are done with, for the reader to refill.
    buffers: Buffers,
    seq: u64,
    failed: &'scope AtomicBool,
    collector: ScopedJoinHandle<'scope, Result<Vec<StreamIndex>>>,
    workers: Vec<ScopedJoinHandle<'scope, ()>>,
    syncers: Vec<ScopedJoinHandle<'scope, ()>>,
    clocks: Arc<Clocks>,
    budget: Arc<Budget>,
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
        let buffers = Buffers { chunks: Spares::new(), blobs: Spares::new(), blocks: Spares::new() };
        let inflight = Arc::new(InFlight::default());
        let clocks = Arc::new(Clocks::default());
        let s = writer.syncers().min(32);
        let (sync_tx, sync_rx) = bounded::<(Done, Unsettled)>(2 * s + 2);
        let syncers = (0..s)
            .map(|_| {
                let (rx, done_tx, clocks) = (sync_rx.clone(), done_tx.clone(), clocks.clone());
                scope.spawn(move || syncer(writer, rx, done_tx, &clocks.syncer))
            })
            .collect();
        let sync_tx = (s > 0).then_some(sync_tx);
        let budget = Arc::new(Budget::default());
        budget.workers.store(n, Ordering::Relaxed);
        let workers = (0..n)
            .map(|_| {
                let (rx, done_tx, inflight) = (rx.clone(), done_tx.clone(), inflight.clone());
                let (buffers, clocks, sync_tx) = (buffers.clone(), clocks.clone(), sync_tx.clone());
                let out = Out { done: done_tx, sync: sync_tx };
                let running = Running(budget.clone());
                scope.spawn(move || {
                    let _running = running;
                    worker(writer, level, rx, out, &buffers, &inflight, &clocks)
                })
            })
            .collect();
        drop((done_tx, sync_tx));
        let collector_clocks = clocks.clone();
        let collector = scope.spawn(move || collect(done_rx, streams, failed, &collector_clocks.collector));
        Self {
            tx: Some(tx),
            buffers,
            seq: 0,
            failed,
            collector,
            workers,
            syncers,
            clocks,
            budget,
            started: Instant::now(),
            started_cpu: thread_cpu(),
        }
    }

    /// Queue a chunk of `stream`. Fails fast once any worker failed.
    pub fn send(&mut self, stream: usize, work: Work) -> Result<()> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(Stopped.into());
        }
        let t = Instant::now();
        let bytes = match &work {
            // What the buffer may hold resident: a buffer filled again
            // keeps the pages of the longest chunk it held.
            Work::Data(d) => d.capacity() as u64,
            // The buffers it is cut from, and the one a worker gathers
            // it into (unless it is one piece).
            Work::Pieces(p) if p.len() > 1 => resident(p) + pieces::len(p) as u64,
            Work::Pieces(p) => resident(p),
            Work::Reuse(..) => 0,
        };
        let Some(held) = self.budget.take(bytes, self.failed) else {
            return Err(Stopped.into());
        };
        let job = Job { seq: self.seq, stream, work, _held: held };
        self.seq += 1;
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
        let mut buf = self.buffers.chunks.take();
        buf.reserve(capacity);
        buf
    }

    /// Buffers of [`READ_BLOCK`] bytes to read a file's data into and push
    /// whole (`ParallelChunker::push`), recycled from chunks already
    /// stored when there are some; a handle of its own, for a caller that
    /// also holds the pipeline mutably.
    pub fn blocks(&self) -> ReadBlocks {
        ReadBlocks(self.buffers.blocks.clone())
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
        let syncers = self.syncers.len();
        for s in self.syncers {
            s.join().map_err(|_| anyhow!("a pipeline syncer panicked"))?;
        }
        let indexes = self.collector.join().map_err(|_| anyhow!("the pipeline collector panicked"))??;
        let reader_wait = self.clocks.reader_wait_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let times = StageTimes {
            wall: self.started.elapsed().as_secs_f64(),
            workers,
            reader: ((reader_total - reader_wait).max(0.0), reader_wait),
            worker: self.clocks.worker.secs(),
            syncers,
            syncer: self.clocks.syncer.secs(),
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
            syncers,
            syncers_busy_s = format!("{:.3}", times.syncer.0),
            syncers_wait_s = format!("{:.3}", times.syncer.1),
            collector_busy_s = format!("{:.3}", times.collector.0),
            collector_wait_s = format!("{:.3}", times.collector.1),
            reader_cpu_s = format!("{:.3}", times.reader_cpu),
            workers_cpu_s = format!("{:.3}", times.worker_cpu),
            "pipeline stages"
        );
        Ok((indexes, times))
    }
}

/// Where a worker sends what it did: to the collector, or to a syncer
/// first when a chunk is left unsettled (`sync` is `None` when the target
/// leaves none).
struct Out {
    done: Sender<Done>,
    sync: Option<Sender<(Done, Unsettled)>>,
}

fn worker(
    writer: &dyn ChunkSink,
    level: i32,
    rx: Receiver<Job>,
    out: Out,
    buffers: &Buffers,
    inflight: &InFlight,
    clocks: &Clocks,
) {
    let (mut busy, mut wait) = (Duration::ZERO, Duration::ZERO);
    lower_priority(WORKER_NICE);
    let cpu = thread_cpu();
    loop {
        let t = Instant::now();
        let Ok(job) = rx.recv() else { break };
        let got = Instant::now();
        wait += got - t;
        let Job { seq, stream, work, _held: held } = job;
        let mut unsettled = None;
        let result = match work {
            Work::Data(data) => {
                let r = store_new(writer, level, &data, buffers, inflight, &mut unsettled);
                buffers.chunks.give(data);
                r
            }
            Work::Pieces(pieces) => {
                let mut gathered = Vec::new();
                let data = match &pieces[..] {
                    [one] => one.bytes(),
                    more => {
                        gathered = buffers.chunks.take();
                        gather(more, &mut gathered);
                        &gathered
                    }
                };
                let r = store_new(writer, level, data, buffers, inflight, &mut unsettled);
                buffers.chunks.give(gathered);
                for buf in pieces.into_iter().filter_map(Piece::into_buffer) {
                    if buf.capacity() == READ_BLOCK {
                        buffers.blocks.keep(buf);
                    }
                }
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
        // Stored (or failed): its bytes are off the budget.
        drop(held);
        let done = Done { seq, stream, result };
        // Waiting for a syncer to take a chunk is waiting, not work.
        let mut blocked = Duration::ZERO;
        let sent = match (unsettled, &out.sync) {
            (None, _) => out.done.send(done).is_ok(),
            (Some(u), Some(sync)) => {
                let t = Instant::now();
                let sent = sync.send((done, u)).is_ok();
                blocked = t.elapsed();
                sent
            }
            (Some(u), None) => out.done.send(settled(writer, done, u)).is_ok(),
        };
        let spent = got.elapsed();
        busy += spent.saturating_sub(blocked);
        wait += blocked.min(spent);
        if !sent {
            break;
        }
    }
    clocks.worker.add(busy, wait);
    add_thread_cpu(&clocks.worker_cpu_ns, cpu);
}

/// How much lower than the rest of the backup the workers run (added to
/// their nice value). The workers always have a backlog of chunks to
/// compress; the threads that feed them (the walk, the read-ahead, the
/// reader, the boundary scan) run in short bursts between waits. At equal
/// priority a feeder woken on a core where a worker runs was seen to wait
/// out the worker's time slice (3.8 ms) while the other core sat idle;
/// with the workers lower the cores idle less (docs/benchmarks.md,
/// "Compression workers below the threads that feed them"). The price:
/// beside other work at the same nice value, a backup's compression gets
/// a smaller share of the machine than it would at equal priority.
const WORKER_NICE: u8 = 5;

/// Lower the calling thread's priority by `by` nice steps (to at most 19).
/// Only this thread changes (on Linux a nice value is a thread's own);
/// lowering one's own priority needs no privilege, and if it fails
/// anyway the thread runs on as it was.
fn lower_priority(by: u8) {
    let tid = nix::unistd::gettid().as_raw() as libc::id_t;
    nix::errno::Errno::clear();
    // SAFETY: system calls that take the thread's id and no pointers.
    #[allow(unsafe_code)]
    let now = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) };
    if now == -1 && nix::errno::Errno::last_raw() != 0 {
        tracing::debug!(error = %nix::errno::Errno::last(), "cannot read the thread's nice value");
        return;
    }
    let to = now.saturating_add(i32::from(by)).min(19);
    // SAFETY: as above.
    #[allow(unsafe_code)]
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, to) } != 0 {
        tracing::debug!(error = %nix::errno::Errno::last(), to, "cannot lower the thread's priority");
    }
}

/// Settle a chunk a worker left, for the collector.
fn settled(writer: &dyn ChunkSink, mut done: Done, chunk: Unsettled) -> Done {
    let id = *chunk.id();
    if let Err(e) = writer.settle(chunk) {
        done.result = Err(e.context(format!("storing chunk {id}")));
    }
    done
}

fn syncer(writer: &dyn ChunkSink, rx: Receiver<(Done, Unsettled)>, done: Sender<Done>, clock: &Clock) {
    let (mut busy, mut wait) = (Duration::ZERO, Duration::ZERO);
    loop {
        let t = Instant::now();
        let Ok((d, chunk)) = rx.recv() else { break };
        let got = Instant::now();
        wait += got - t;
        let sent = done.send(settled(writer, d, chunk));
        busy += got.elapsed();
        if sent.is_err() {
            break;
        }
    }
    clock.add(busy, wait);
}

/// `store_data` with a blob buffer from the spares (given back after);
/// what is left to settle goes to `unsettled`. Returns the id and length.
fn store_new(
    writer: &dyn ChunkSink,
    level: i32,
    data: &[u8],
    buffers: &Buffers,
    inflight: &InFlight,
    unsettled: &mut Option<Unsettled>,
) -> Result<(ChunkId, u64)> {
    let mut blob = buffers.blobs.take();
    let r = store_data(writer, level, data, &mut blob, inflight).map(|(id, u)| {
        *unsettled = u;
        (id, data.len() as u64)
    });
    buffers.blobs.give(blob);
    r
}

/// Hash, deduplicate, compress and store one chunk; returns its id and
/// what is left to settle of it.
fn store_data(
    writer: &dyn ChunkSink,
    level: i32,
    data: &[u8],
    blob: &mut Vec<u8>,
    inflight: &InFlight,
) -> Result<(ChunkId, Option<Unsettled>)> {
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
            return Ok((id, None));
        }
        encode_blob_into(data, id, level, blob);
        let left = writer.store_unsettled(&id, blob).with_context(|| format!("storing chunk {id}"))?;
        Ok((id, left))
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
    use rand::{RngCore, SeedableRng, rngs::StdRng};

    /// A sink that stores slowly, so the workers are the bound, with
    /// `workers` workers; it counts the blobs and blob bytes inside
    /// `store` at once (now, and at most), and notes the nice value of
    /// each thread that stores.
    struct SlowSink {
        stored: Mutex<HashSet<ChunkId>>,
        inside: Mutex<Inside>,
        nice: Mutex<Vec<i32>>,
        counters: WriteCounters,
        workers: usize,
    }

    #[derive(Default)]
    struct Inside {
        bytes: u64,
        most_bytes: u64,
        blobs: usize,
        most_blobs: usize,
    }

    impl SlowSink {
        fn with_workers(workers: usize) -> Self {
            let (stored, inside, nice, counters) = Default::default();
            Self { stored, inside, nice, counters, workers }
        }
    }

    impl ChunkSink for SlowSink {
        fn reference(&self, id: &ChunkId) -> Result<bool> {
            Ok(self.stored.lock().unwrap().contains(id))
        }
        fn store(&self, id: &ChunkId, blob: &mut Vec<u8>) -> Result<()> {
            self.nice.lock().unwrap().push(own_nice());
            let n = blob.len() as u64;
            {
                let mut inside = self.inside.lock().unwrap();
                inside.bytes += n;
                inside.blobs += 1;
                inside.most_bytes = inside.most_bytes.max(inside.bytes);
                inside.most_blobs = inside.most_blobs.max(inside.blobs);
            }
            std::thread::sleep(Duration::from_millis(20));
            let mut inside = self.inside.lock().unwrap();
            inside.bytes -= n;
            inside.blobs -= 1;
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
            self.workers
        }
    }

    /// Thirty-two workers and 4 MiB chunks that do not compress: without
    /// the budget 66 chunks could wait or be stored at once (264 MiB);
    /// with it the data handed over and not yet stored stays within
    /// `DATA_BUDGET`, and every chunk still arrives in order.
    #[test]
    fn chunk_data_in_flight_stays_within_the_budget_whatever_the_workers() {
        let sink = SlowSink::with_workers(32);
        let failed = AtomicBool::new(false);
        let mut rng = StdRng::seed_from_u64(7);
        let chunks: Vec<Vec<u8>> = (0..40)
            .map(|_| {
                let mut c = vec![0u8; 4 << 20];
                rng.fill_bytes(&mut c);
                c
            })
            .collect();
        let indexes = std::thread::scope(|scope| {
            let mut p = Pipeline::start(scope, &sink, 1, 1, &failed);
            for c in &chunks {
                p.send(0, Work::Data(c.clone())).unwrap();
            }
            p.finish().unwrap()
        });
        let ids: Vec<ChunkId> = indexes[0].chunks.iter().map(|c| c.0).collect();
        assert_eq!(ids, chunks.iter().map(|c| ChunkId::of(c)).collect::<Vec<_>>());
        let most = sink.inside.lock().unwrap().most_bytes;
        // Blobs of random data are the data plus a header.
        assert!(most <= DATA_BUDGET + (64 << 10), "{most} bytes stored at once");
        assert!(most >= 8 << 20, "workers stored {most} bytes at once at most: the budget serialised them");
    }

    /// Short chunks in buffers that could hold 4 MiB (as a buffer filled
    /// again keeps the pages of its longest chunk): the budget counts what
    /// the buffers may hold, so 32 workers get no more than fit in it.
    #[test]
    fn the_budget_counts_what_a_buffer_may_hold() {
        let sink = SlowSink::with_workers(32);
        let failed = AtomicBool::new(false);
        let mut rng = StdRng::seed_from_u64(8);
        let indexes = std::thread::scope(|scope| {
            let mut p = Pipeline::start(scope, &sink, 1, 1, &failed);
            for _ in 0..60 {
                let mut c = Vec::with_capacity(4 << 20);
                c.resize(64 << 10, 0);
                rng.fill_bytes(&mut c);
                p.send(0, Work::Data(c)).unwrap();
            }
            p.finish().unwrap()
        });
        assert_eq!(indexes[0].chunks.len(), 60);
        let most = sink.inside.lock().unwrap().most_blobs;
        let fit = (DATA_BUDGET / (4 << 20)) as usize;
        assert!(most <= fit, "{most} chunks stored at once; {fit} buffers fit in the budget");
        assert!(most >= 2, "the workers stored one chunk at a time");
    }

    /// Chunks in two pieces of 64 KiB, each cut from a buffer of 2 MiB:
    /// the budget counts both buffers and the bytes a worker gathers, so
    /// 32 workers get no more than fit; each chunk is stored as the bytes
    /// of its pieces in order.
    #[test]
    fn the_budget_counts_the_buffers_a_chunk_is_cut_from() {
        let sink = SlowSink::with_workers(32);
        let failed = AtomicBool::new(false);
        let mut rng = StdRng::seed_from_u64(9);
        let mut want = Vec::new();
        let indexes = std::thread::scope(|scope| {
            let mut p = Pipeline::start(scope, &sink, 1, 1, &failed);
            for _ in 0..60 {
                let pieces: Pieces = (0..2)
                    .map(|_| {
                        let mut buf = Vec::with_capacity(2 << 20);
                        buf.resize(96 << 10, 0);
                        rng.fill_bytes(&mut buf);
                        Piece::new(Arc::new(buf), 32 << 10, 96 << 10)
                    })
                    .collect();
                want.push(ChunkId::of(&[pieces[0].bytes(), pieces[1].bytes()].concat()));
                p.send(0, Work::Pieces(pieces)).unwrap();
            }
            p.finish().unwrap()
        });
        let got: Vec<ChunkId> = indexes[0].chunks.iter().map(|c| c.0).collect();
        assert_eq!(got, want);
        assert!(indexes[0].chunks.iter().all(|c| c.1 == 128 << 10));
        let most = sink.inside.lock().unwrap().most_blobs;
        let fit = (DATA_BUDGET / ((4 << 20) + (128 << 10))) as usize;
        assert!(most <= fit, "{most} chunks stored at once; {fit} fit in the budget");
        assert!(most >= 2, "the workers stored one chunk at a time");
    }

    /// The calling thread's nice value (`/proc/thread-self/stat`, field 19).
    fn own_nice() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 1..];
        after_name.split_whitespace().nth(16).unwrap().parse().unwrap()
    }

    /// The workers compress below the priority of the thread that feeds
    /// them, which keeps its own.
    #[test]
    fn workers_run_below_the_reader() {
        let sink = SlowSink::with_workers(2);
        let failed = AtomicBool::new(false);
        let (reader_before, reader_after) = std::thread::scope(|scope| {
            let before = own_nice();
            let mut p = Pipeline::start(scope, &sink, 1, 1, &failed);
            for i in 0..20u32 {
                p.send(0, Work::Data(chunk(i))).unwrap();
            }
            p.finish().unwrap();
            (before, own_nice())
        });
        assert_eq!(reader_before, reader_after);
        let seen = sink.nice.lock().unwrap().clone();
        assert_eq!(seen.len(), 20);
        let want = (reader_before + i32::from(WORKER_NICE)).min(19);
        assert!(want > reader_before || reader_before == 19);
        assert!(seen.iter().all(|&n| n == want), "workers at {seen:?}, the reader at {reader_before}");
    }

    /// Only the calling thread is lowered, by the steps asked, to 19 at most.
    #[test]
    fn lowering_a_thread_lowers_that_thread_only() {
        let before = own_nice();
        let (lowered, twice) = std::thread::spawn(|| {
            lower_priority(3);
            let once = own_nice();
            lower_priority(30);
            (once, own_nice())
        })
        .join()
        .unwrap();
        assert_eq!(lowered, (before + 3).min(19));
        assert_eq!(twice, 19);
        assert_eq!(own_nice(), before);
    }

    fn datastore() -> (tempfile::TempDir, filevol::Datastore) {
        let dir = tempfile::tempdir().unwrap();
        let (ds, _) = filevol::Datastore::init(&dir.path().join("ds"), Default::default()).unwrap();
        (dir, ds)
    }

    fn manifest(g: &model::BackupGroup, archives: Vec<filevol::ManifestArchive>) -> filevol::Manifest {
        let source = filevol::SourceHandler { name: "test".into(), version: "1".into(), digest: None };
        crate::new_snapshot::new_manifest(g, 1_000, &[], archives, Default::default(), Vec::new(), source)
    }

    fn chunk(i: u32) -> Vec<u8> {
        i.to_le_bytes().repeat(2000)
    }

    /// A local writer's chunks are settled by the syncers: when `finish`
    /// returns, every chunk the indexes name is in the store, the same
    /// chunk sent twice is stored once, and the snapshot commits.
    #[test]
    fn syncers_settle_every_chunk_before_finish_returns() {
        let (_d, ds) = datastore();
        let g = model::BackupGroup::new(model::Namespace::root(), "host", "a").unwrap();
        let w = ds.begin_backup(&g).unwrap();
        let failed = AtomicBool::new(false);
        let (indexes, times) = std::thread::scope(|scope| {
            let mut p = Pipeline::start(scope, &w, 1, 1, &failed);
            for i in (0..40u32).chain(0..10) {
                p.send(0, Work::Data(chunk(i))).unwrap();
            }
            p.finish_timed().unwrap()
        });
        assert_eq!(times.syncers, ChunkSink::syncers(&w), "{times:?}");
        assert!(times.syncers >= 2, "{times:?}");
        let ids: Vec<ChunkId> = indexes[0].chunks.iter().map(|c| c.0).collect();
        assert_eq!(ids.len(), 50);
        for (i, id) in (0..40u32).chain(0..10).zip(&ids) {
            assert_eq!(*id, ChunkId::of(&chunk(i)), "chunks in the order sent");
            assert!(ds.chunks().has(id).unwrap(), "chunk {i} is in the store");
        }
        assert_eq!(w.counters.new_chunks.load(Ordering::Relaxed), 40);
        let (payload, _) = crate::new_snapshot::index_ref(&w, "data.payload.didx", &indexes[0]).unwrap();
        let archive = filevol::ManifestArchive {
            name: "data".into(),
            kind: "image".into(),
            size: 50 * 8000,
            indexes: vec![payload],
            source_stat: None,
            entries: 0,
        };
        let time = 1_000;
        let manifest = manifest(&g, vec![archive]);
        w.commit(&manifest, time).unwrap();
    }

    /// A sink whose settling fails once: the backup fails with that error,
    /// and the chunk it dropped keeps the writer from committing.
    struct FailingSettle<'a> {
        writer: &'a filevol::Writer,
        settled: AtomicU64,
        syncers: usize,
    }

    impl ChunkSink for FailingSettle<'_> {
        fn reference(&self, id: &ChunkId) -> Result<bool> {
            self.writer.reference(id).map_err(Into::into)
        }
        fn store(&self, _: &ChunkId, _: &mut Vec<u8>) -> Result<()> {
            unreachable!("the pipeline leaves every chunk unsettled")
        }
        fn store_unsettled(&self, id: &ChunkId, blob: &mut Vec<u8>) -> Result<Option<Unsettled>> {
            Ok(self.writer.store_unsettled(id, blob)?)
        }
        fn settle(&self, chunk: Unsettled) -> Result<()> {
            if self.settled.fetch_add(1, Ordering::Relaxed) == 5 {
                return Err(anyhow!("the disk failed to sync"));
            }
            Ok(self.writer.settle(chunk).map(drop)?)
        }
        fn write_index(&self, _: &str, _: &[u8], _: u64, _: u64) -> Result<IndexRef> {
            unreachable!("the pipeline writes no index")
        }
        fn counters(&self) -> &WriteCounters {
            &self.writer.counters
        }
        fn syncers(&self) -> usize {
            self.syncers
        }
    }

    /// With syncers, and with none (the workers settle what they stored).
    #[test]
    fn a_chunk_that_fails_to_settle_fails_the_backup() {
        for syncers in [2, 0] {
            fails_to_settle(syncers);
        }
    }

    fn fails_to_settle(syncers: usize) {
        let (_d, ds) = datastore();
        let g = model::BackupGroup::new(model::Namespace::root(), "host", "a").unwrap();
        let w = ds.begin_backup(&g).unwrap();
        let sink = FailingSettle { writer: &w, settled: AtomicU64::new(0), syncers };
        let failed = AtomicBool::new(false);
        let e = std::thread::scope(|scope| {
            let mut p = Pipeline::start(scope, &sink, 1, 1, &failed);
            let mut sent = Ok(());
            for i in 0..200u32 {
                sent = p.send(0, Work::Data(chunk(i)));
                if sent.is_err() {
                    break;
                }
            }
            first_error(sent, p.finish()).unwrap_err()
        });
        assert!(format!("{e:#}").contains("the disk failed to sync"), "{e:#}");
        assert!(format!("{e:#}").contains("storing chunk"), "{e:#}");
        let manifest = manifest(&g, Vec::new());
        let e = w.commit(&manifest, 1_000).unwrap_err();
        assert!(matches!(e, filevol::StoreError::Unsettled(1)), "{e}");
        assert!(ds.list_snapshots().unwrap().is_empty());
    }

    #[test]
    fn stage_times_say_which_stage_waited_on_which() {
        let sink = SlowSink::with_workers(2);
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
