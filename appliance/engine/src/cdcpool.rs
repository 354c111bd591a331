//! Content-defined chunking of a stream with the gear hashing on threads
//! of its own ("scanners"), so the thread that produces the stream only
//! gathers bytes and cuts them where the scanners found the boundaries.
//!
//! ```text
//! reader: push ─► 1 MiB segments ─► scanners ×S (find_hits) ─► reader: SegmentCutter ─► chunks
//! ```
//!
//! The chunks are `StreamChunker`'s, byte for byte (`chunker::segments`
//! says why); only when they come out differs: a chunk is emitted once
//! the segments it ends in are hashed. Memory: at most [`window`]
//! segments in flight, plus the chunk being filled. A scanner that is
//! gone (its thread could not start or ended) costs only speed: the
//! reader hashes that segment itself.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use chunker::segments::{Hits, SegmentCutter, context_after, find_hits};
use chunker::{CdcParams, Chunking};
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use crate::pipeline::thread_cpu;

/// Bytes per segment handed to a scanner.
const SEGMENT: usize = 1 << 20;

/// Segments in flight with `scanners` threads: enough that every scanner
/// has one to hash while the reader fills the next.
fn window(scanners: usize) -> usize {
    2 * scanners + 2
}

/// Scanner threads for a machine with `cores` cores: a quarter of them,
/// 1 to 4 (each hashes about 2 GB/s).
pub fn scanners_for(cores: usize) -> usize {
    (cores / 4).clamp(1, 4)
}

struct Job {
    before: Vec<u8>,
    data: Arc<Vec<u8>>,
    reply: Sender<Hits>,
}

struct Pending {
    before: Vec<u8>,
    data: Arc<Vec<u8>>,
    hits: Receiver<Hits>,
}

/// Time the scanners spent hashing, and the reader spent waiting for them.
#[derive(Debug, Default)]
struct ScanTimes {
    segments: AtomicU64,
    busy_ns: AtomicU64,
    cpu_ns: AtomicU64,
    waited_ns: AtomicU64,
}

impl ScanTimes {
    /// Segments hashed, scanners' busy and CPU seconds (summed), and the
    /// seconds the reader waited for a segment's hits.
    fn values(&self) -> (u64, f64, f64, f64) {
        let s = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 / 1e9;
        (self.segments.load(Ordering::Relaxed), s(&self.busy_ns), s(&self.cpu_ns), s(&self.waited_ns))
    }
}

/// FastCDC with the hashing on `scanners` threads (0: on the caller's).
pub struct ParallelChunker {
    params: CdcParams,
    cutter: SegmentCutter,
    /// Bytes gathered for the next segment.
    filling: Vec<u8>,
    /// The last `CONTEXT` bytes pushed before `filling`.
    before: Vec<u8>,
    queue: VecDeque<Pending>,
    jobs: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
    spare: Vec<Vec<u8>>,
    times: Arc<ScanTimes>,
}

impl ParallelChunker {
    pub fn new(params: CdcParams, scanners: usize) -> Self {
        let times = Arc::new(ScanTimes::default());
        let (tx, rx) = unbounded::<Job>();
        let threads: Vec<_> = (0..scanners)
            .filter_map(|i| {
                let (rx, times) = (rx.clone(), times.clone());
                std::thread::Builder::new()
                    .name(format!("cairn-cdc-{i}"))
                    .spawn(move || scan(params, rx, &times))
                    .map_err(|e| tracing::warn!("no chunk-boundary thread: {e}"))
                    .ok()
            })
            .collect();
        Self {
            params,
            cutter: SegmentCutter::new(params),
            filling: Vec::new(),
            before: Vec::new(),
            queue: VecDeque::new(),
            jobs: (!threads.is_empty()).then_some(tx),
            threads,
            spare: Vec::new(),
            times,
        }
    }

    /// Log where the hashing of chunk boundaries spent its time so far
    /// (`backup -v`).
    pub fn log_times(&self) {
        let (segments, busy, cpu, waited) = self.times.values();
        tracing::info!(
            threads = self.threads.len(),
            segments,
            busy_s = format!("{busy:.3}"),
            cpu_s = format!("{cpu:.3}"),
            reader_waited_s = format!("{waited:.3}"),
            "chunk boundaries"
        );
    }

    /// Hand the gathered bytes to a scanner as the next segment.
    fn submit(&mut self) {
        let mut next = self.spare.pop().unwrap_or_default();
        next.clear();
        let data = Arc::new(std::mem::replace(&mut self.filling, next));
        let next = context_after(&self.before, &data);
        let before = std::mem::replace(&mut self.before, next);
        let (reply, hits) = bounded(1);
        let job = Job { before: before.clone(), data: data.clone(), reply };
        if let Some(jobs) = &self.jobs
            && jobs.send(job).is_err()
        {
            self.jobs = None;
        }
        self.queue.push_back(Pending { before, data, hits });
    }

    /// Cut the segments whose hits are in, in order; with `all`, every
    /// segment (the stream ends after the last). Without `all` a segment
    /// is cut only once a byte after it is known, and the reader waits
    /// for hits only while the window is full.
    fn cut_ready(&mut self, all: bool, emit: &mut dyn FnMut(Vec<u8>)) {
        while let Some(front) = self.queue.front() {
            let followed = self.queue.len() > 1 || !self.filling.is_empty();
            if !all && !followed {
                return;
            }
            let hits = if self.jobs.is_none() {
                None
            } else if all || self.queue.len() >= window(self.threads.len()) {
                let t = Instant::now();
                let got = front.hits.recv().ok();
                self.times.waited_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                got
            } else {
                match front.hits.try_recv() {
                    Ok(h) => Some(h),
                    Err(crossbeam_channel::TryRecvError::Empty) => return,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => None,
                }
            };
            let Pending { before, data, .. } = self.queue.pop_front().expect("front");
            let hits = hits.unwrap_or_else(|| find_hits(self.params, &before, &data));
            let ends = all && self.queue.is_empty();
            self.cutter.cut(&data, &hits, ends, emit);
            if let Ok(buf) = Arc::try_unwrap(data)
                && self.spare.len() < window(self.threads.len())
            {
                self.spare.push(buf);
            }
        }
    }
}

impl Chunking for ParallelChunker {
    fn push(&mut self, mut data: &[u8], emit: &mut dyn FnMut(Vec<u8>)) {
        while !data.is_empty() {
            if self.filling.capacity() == 0 {
                self.filling.reserve_exact(SEGMENT);
            }
            let take = (SEGMENT - self.filling.len()).min(data.len());
            self.filling.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.filling.len() == SEGMENT {
                self.submit();
            }
            self.cut_ready(false, emit);
        }
    }

    fn finish(&mut self, emit: &mut dyn FnMut(Vec<u8>)) {
        if !self.filling.is_empty() {
            self.submit();
        }
        self.cut_ready(true, emit);
        self.cutter.finish(emit);
    }

    fn wants_buffer(&self) -> bool {
        self.cutter.wants_buffer()
    }

    fn recycle(&mut self, buf: Vec<u8>) {
        self.cutter.recycle(buf);
    }
}

impl Drop for ParallelChunker {
    fn drop(&mut self) {
        drop(self.jobs.take());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A scanner: hash segments until the chunker is dropped.
fn scan(params: CdcParams, jobs: Receiver<Job>, times: &ScanTimes) {
    for job in jobs {
        let (t, cpu) = (Instant::now(), thread_cpu());
        let hits = find_hits(params, &job.before, &job.data);
        // The data goes back to the reader alone, for reuse.
        drop(job.data);
        times.segments.fetch_add(1, Ordering::Relaxed);
        times.busy_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        times.cpu_ns.fetch_add(((thread_cpu() - cpu) * 1e9) as u64, Ordering::Relaxed);
        let _ = job.reply.send(hits);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chunker::StreamChunker;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// Chunks of `parts` (a forced boundary after each), pushed in pieces
    /// of random size up to `step`.
    fn chunks(c: &mut dyn Chunking, parts: &[&[u8]], step: usize, seed: u64) -> Vec<Vec<u8>> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut out = Vec::new();
        for part in parts {
            let mut rest = *part;
            while !rest.is_empty() {
                let n = rng.random_range(1..=step).min(rest.len());
                c.push(&rest[..n], &mut |ch| out.push(ch));
                rest = &rest[n..];
            }
            c.finish(&mut |ch| out.push(ch));
        }
        out
    }

    #[test]
    fn the_chunks_are_the_stream_chunkers_with_any_number_of_scanners() {
        let mut rng = StdRng::seed_from_u64(9);
        let mut data: Vec<u8> = (0..9 << 20).map(|_| rng.random()).collect();
        data[5 << 20..6 << 20].fill(0);
        let p = CdcParams { min: 64 << 10, avg: 128 << 10, max: 512 << 10 };
        let parts: Vec<&[u8]> =
            vec![&data[..1], &data[1..3_000_001], &data[3_000_001..3_000_002], &data[3_000_002..]];
        for step in [100usize, 70_000, 3 << 20] {
            let want = chunks(&mut StreamChunker::new(p), &parts, step, 1);
            assert!(want.len() > 30);
            for scanners in [0, 1, 3] {
                let mut chunker = ParallelChunker::new(p, scanners);
                let got = chunks(&mut chunker, &parts, step, 2);
                assert_eq!(got, want, "{scanners} scanners, pushes up to {step} bytes");
                let (segments, ..) = chunker.times.values();
                if scanners > 0 {
                    assert!(segments >= 9, "{segments} segments hashed by the scanners");
                } else {
                    assert_eq!(segments, 0);
                }
            }
        }
    }
}
