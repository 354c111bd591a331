//! Content-defined chunking of a stream of owned buffers, with the gear
//! hashing on threads of its own ("scanners") and the bytes left where
//! they are: the thread that produces the stream only finds where chunks
//! end, and hands each chunk over as the [`Piece`]s of the buffers it
//! spans, for the pipeline's workers to gather.
//!
//! ```text
//! reader: push(buffer) ─► segments of buffers ─► scanners ×S (find_hits) ─► reader: SegmentCutter ─► chunks as pieces ─► workers gather
//! ```
//!
//! The chunks are `StreamChunker`'s, byte for byte (`chunker::segments`
//! says why); only when they come out differs: a chunk is emitted once
//! the segments it ends in are hashed. The reader touches no more of a
//! chunk's bytes than the cutter walks (63 from its `min` on, and all of a
//! dense segment), except buffers under [`SMALL`], which it copies
//! together so that a piece is never tiny. Memory: at most [`window`] segments in flight, each
//! about [`SEGMENT`] bytes of buffers, plus the buffers of the chunk being
//! found. A scanner that is gone (its thread could not start or ended)
//! costs only speed: the reader hashes that segment itself.

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use chunker::CdcParams;
use chunker::segments::{Hits, SegmentCutter, context_after, context_after_all, find_hits};
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use crate::pieces::{Piece, Pieces};
use crate::pipeline::thread_cpu;
use crate::prefetch::PoolTimes;

/// Bytes of buffers gathered into one segment for a scanner.
const SEGMENT: usize = 1 << 20;

/// Buffers shorter than this are copied into a shared one rather than
/// handed on as pieces: each piece costs a shared pointer and its
/// bookkeeping, which a stream of tiny buffers (a source handler sending a
/// byte at a time) would multiply without bound.
const SMALL: usize = 1 << 10;

/// The shared buffer tiny ones are copied into.
const SMALL_BUFFER: usize = 64 << 10;

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

type Segment = Arc<Vec<Arc<Vec<u8>>>>;

struct Job {
    before: Vec<u8>,
    segment: Segment,
    reply: Sender<Vec<Hits>>,
}

struct Pending {
    before: Vec<u8>,
    segment: Segment,
    hits: Receiver<Vec<Hits>>,
}

/// FastCDC with the hashing on `scanners` threads (0: on the caller's),
/// over buffers the caller gives up.
pub struct ParallelChunker {
    params: CdcParams,
    cutter: SegmentCutter,
    /// Buffers gathered for the next segment, and their capacity.
    filling: Vec<Arc<Vec<u8>>>,
    filled: usize,
    /// Tiny buffers copied together, to be added to `filling` as one.
    small: Vec<u8>,
    /// The last `CONTEXT` bytes pushed before `filling`.
    before: Vec<u8>,
    queue: VecDeque<Pending>,
    /// The pieces of the chunk being found.
    chunk: Pieces,
    jobs: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
    /// The scanners' clock: segments hashed (its jobs), their busy and
    /// CPU time, and the reader's time waiting for a segment's hits.
    times: Arc<PoolTimes>,
}

impl ParallelChunker {
    pub fn new(params: CdcParams, scanners: usize) -> Self {
        let times = Arc::new(PoolTimes::default());
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
            filled: 0,
            small: Vec::new(),
            before: Vec::new(),
            queue: VecDeque::new(),
            chunk: Vec::new(),
            jobs: (!threads.is_empty()).then_some(tx),
            threads,
            times,
        }
    }

    /// Log where the hashing of chunk boundaries spent its time so far
    /// (`backup -v`).
    pub fn log_times(&self) {
        let f = self.times.figures();
        tracing::info!(
            threads = self.threads.len(),
            segments = f.jobs,
            busy_s = format!("{:.3}", f.busy_s),
            cpu_s = format!("{:.3}", f.cpu_s),
            reader_waited_s = format!("{:.3}", f.waited_s),
            "chunk boundaries"
        );
    }

    /// Append `data` to the stream; `emit` receives every chunk completed.
    /// A buffer shorter than [`SMALL`] is copied into a shared one
    /// instead of becoming a piece of its own.
    pub fn push(&mut self, data: Vec<u8>, emit: &mut dyn FnMut(Pieces)) {
        if data.is_empty() {
            return;
        }
        if data.len() < SMALL {
            if self.small.len() + data.len() > SMALL_BUFFER {
                let full = std::mem::take(&mut self.small);
                self.add(full, emit);
            }
            if self.small.capacity() == 0 {
                self.small.reserve_exact(SMALL_BUFFER);
            }
            self.small.extend_from_slice(&data);
            return;
        }
        self.add_small(emit);
        self.add(data, emit);
    }

    /// Cut everything pending (end of stream, or a forced boundary).
    pub fn finish(&mut self, emit: &mut dyn FnMut(Pieces)) {
        self.add_small(emit);
        if !self.filling.is_empty() {
            self.submit();
        }
        self.cut_ready(true, emit);
        if self.cutter.finish() {
            emit(std::mem::take(&mut self.chunk));
        }
    }

    /// Add the tiny buffers copied so far, before a bigger buffer or the
    /// end: shrunk to their bytes (in place, by the allocator), as the
    /// segment and the budget count capacity.
    fn add_small(&mut self, emit: &mut dyn FnMut(Pieces)) {
        if !self.small.is_empty() {
            let mut small = std::mem::take(&mut self.small);
            small.shrink_to_fit();
            self.add(small, emit);
        }
    }

    /// Add a buffer to the segment being gathered.
    fn add(&mut self, data: Vec<u8>, emit: &mut dyn FnMut(Pieces)) {
        // By capacity: what the segment keeps resident.
        self.filled += data.capacity();
        self.filling.push(Arc::new(data));
        if self.filled >= SEGMENT {
            self.submit();
        }
        self.cut_ready(false, emit);
    }

    /// Hand the gathered buffers to a scanner as the next segment.
    fn submit(&mut self) {
        let segment: Segment = Arc::new(std::mem::take(&mut self.filling));
        self.filled = 0;
        let next = context_after_all(&self.before, segment.iter().map(|b| b.as_slice()));
        let before = std::mem::replace(&mut self.before, next);
        let (reply, hits) = bounded(1);
        let job = Job { before: before.clone(), segment: segment.clone(), reply };
        if let Some(jobs) = &self.jobs
            && jobs.send(job).is_err()
        {
            self.jobs = None;
        }
        self.queue.push_back(Pending { before, segment, hits });
    }

    /// Cut the segments whose hits are in, in order; with `all`, every
    /// segment (the stream ends after the last). Without `all` a segment
    /// is cut only once a byte after it is known, and the reader waits
    /// for hits only while the window is full.
    fn cut_ready(&mut self, all: bool, emit: &mut dyn FnMut(Pieces)) {
        while let Some(front) = self.queue.front() {
            let followed = self.queue.len() > 1 || !self.filling.is_empty() || !self.small.is_empty();
            if !all && !followed {
                return;
            }
            let hits = if self.jobs.is_none() {
                None
            } else if all || self.queue.len() >= window(self.threads.len()) {
                let t = Instant::now();
                let got = front.hits.recv().ok();
                self.times.add_waited(t);
                got
            } else {
                match front.hits.try_recv() {
                    Ok(h) => Some(h),
                    Err(crossbeam_channel::TryRecvError::Empty) => return,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => None,
                }
            };
            let Pending { before, segment, .. } = self.queue.pop_front().expect("front");
            let hits = hits.unwrap_or_else(|| segment_hits(self.params, &before, &segment));
            let ends = all && self.queue.is_empty();
            let last = segment.len() - 1;
            for (k, (buf, hits)) in segment.iter().zip(&hits).enumerate() {
                let chunk = &mut self.chunk;
                let mut from = 0;
                self.cutter.cut(buf, hits, ends && k == last, &mut |i| {
                    if i > from {
                        chunk.push(Piece::new(buf.clone(), from, i));
                    }
                    from = i;
                    emit(std::mem::take(chunk));
                });
                if from < buf.len() {
                    chunk.push(Piece::new(buf.clone(), from, buf.len()));
                }
            }
        }
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

/// The hits of each buffer of a segment that follows `before`.
fn segment_hits(params: CdcParams, before: &[u8], segment: &[Arc<Vec<u8>>]) -> Vec<Hits> {
    let mut context = before.to_vec();
    segment
        .iter()
        .map(|buf| {
            let hits = find_hits(params, &context, buf);
            context = context_after(&context, buf);
            hits
        })
        .collect()
}

/// A scanner: hash segments until the chunker is dropped.
fn scan(params: CdcParams, jobs: Receiver<Job>, times: &PoolTimes) {
    for job in jobs {
        let (t, cpu) = (Instant::now(), thread_cpu());
        let hits = segment_hits(params, &job.before, &job.segment);
        drop(job.segment);
        times.count_job();
        times.add_busy(t);
        times.add_cpu(cpu);
        let _ = job.reply.send(hits);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pieces::gather;
    use chunker::StreamChunker;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// Chunks of `parts` (a forced boundary after each), pushed in buffers
    /// of random size up to `step`, gathered from their pieces.
    fn chunks(c: &mut ParallelChunker, parts: &[&[u8]], step: usize, seed: u64) -> Vec<Vec<u8>> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut out = Vec::new();
        let mut keep = |pieces: Pieces| {
            assert!(pieces.iter().all(|p| !p.bytes().is_empty()), "an empty piece");
            let mut bytes = Vec::new();
            gather(&pieces, &mut bytes);
            // Tiny buffers are copied together: at most every other piece
            // (one flushed early by a big buffer) is shorter than `SMALL`.
            assert!(pieces.len() <= 2 * bytes.len() / SMALL + 2, "{} pieces", pieces.len());
            out.push(bytes);
        };
        for part in parts {
            let mut rest = *part;
            while !rest.is_empty() {
                let n = rng.random_range(1..=step).min(rest.len());
                c.push(rest[..n].to_vec(), &mut keep);
                rest = &rest[n..];
            }
            c.finish(&mut keep);
        }
        out
    }

    fn stream_chunks(parts: &[&[u8]], p: CdcParams) -> Vec<Vec<u8>> {
        let mut c = StreamChunker::new(p);
        let mut out = Vec::new();
        for part in parts {
            c.push(part, &mut |ch| out.push(ch));
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
        let want = stream_chunks(&parts, p);
        assert!(want.len() > 30);
        for step in [100usize, 70_000, 3 << 20] {
            for scanners in [0, 1, 3] {
                let mut chunker = ParallelChunker::new(p, scanners);
                let got = chunks(&mut chunker, &parts, step, 2);
                assert_eq!(got, want, "{scanners} scanners, buffers up to {step} bytes");
                let segments = chunker.times.figures().jobs;
                if scanners > 0 {
                    // A segment closes once it holds `SEGMENT` bytes: the
                    // buffer that fills it adds at most `step`.
                    let least = data.len() / (SEGMENT + step);
                    assert!(segments as usize >= least, "{segments} segments hashed by the scanners");
                } else {
                    assert_eq!(segments, 0);
                }
            }
        }
    }
}
