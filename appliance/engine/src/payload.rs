//! The payload stream of a file archive under construction: new file data
//! is cut content-defined; an unchanged file's data is not read again but
//! taken as whole chunks of the previous snapshot's payload stream.
//!
//! Reused chunks may carry bytes of neighbouring files (changed or deleted
//! since); entries point at their own bytes by offset, so those bytes are
//! simply never read. Consecutive unchanged files reuse one run of chunks
//! with no waste.
//!
//! A run is not broken for a file whose data lies elsewhere: a file read
//! while a run goes on (changed or new), and an unchanged file whose
//! chunks lie further on in the previous stream (the data of a file that
//! changed before, written after the run it sat in), wait, and their
//! entries with them ([`Placement::Waits`]). The unchanged file after
//! them, which may start in the chunk that holds the end of the file
//! before them, goes on in the same run. What waits goes into the stream
//! when [`PayloadBuilder::settle`] is called (the caller's limits, a file
//! that cannot wait, the end): the waiting reused chunks first, each
//! going on from the run before where it can, then the new bytes. A run
//! that reaches a waiting file's chunks on its own takes it there.
//!
//! Where a run does end before an unchanged file that starts in its last
//! chunk, the file points back at the chunks written if it lies wholly in
//! them, and one that ends beyond them is read again (up to
//! [`REREAD_MAX`] bytes), instead of a new run written from a chunk
//! already written.

use std::collections::BTreeMap;

use anyhow::Result;
use chunker::{CdcParams, ChunkId};
use filevol::DynamicIndex;

use crate::cdcpool::{ParallelChunker, scanners_for};
use crate::pieces::Pieces;
use crate::pipeline::{Pipeline, Work};
use crate::target::ChunkSink;

pub const PAYLOAD: usize = 1;

/// Queue a chunk unless an earlier one failed to queue.
fn send(pipe: &mut Pipeline<'_>, chunk: Pieces, result: &mut Result<()>) {
    if result.is_ok() {
        *result = pipe.send(PAYLOAD, Work::Pieces(chunk));
    }
}

/// A run of previous-snapshot chunks appended back to back.
struct Run {
    prev_first: usize,
    /// One past the last previous chunk appended.
    prev_next: usize,
    /// Where `prev_first` starts in the previous stream.
    prev_base: u64,
    /// Where `prev_first` starts in the new stream.
    new_base: u64,
}

/// Where a file's data goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// At this offset of the stream.
    At(u64),
    /// It waits: [`PayloadBuilder::take_resolved`] gives its offset, by
    /// this ticket, once it is placed.
    Waits(u64),
}

/// An unchanged file whose chunks wait.
struct Ahead {
    ticket: u64,
    first: usize,
    /// Where chunk `first` starts in the previous stream.
    first_start: u64,
    /// The file's offset in chunk `first`.
    within: u64,
    /// Chunks `first..` (id, length).
    chunks: Vec<(ChunkId, u64)>,
}

pub struct PayloadBuilder {
    /// File data is most of a tree's bytes: its boundaries are hashed on
    /// threads of their own.
    chunker: ParallelChunker,
    pos: u64,
    run: Option<Run>,
    /// The runs written before the current one, by their first previous
    /// chunk.
    written: BTreeMap<usize, Run>,
    /// Unchanged files whose chunks wait.
    ahead: Vec<Ahead>,
    /// New bytes that wait, and the files in them (ticket, offset).
    pending: Vec<u8>,
    pending_files: Vec<(u64, u64)>,
    /// The file being read goes to `pending`.
    deferring: bool,
    next_ticket: u64,
    /// Files placed since the caller last asked: (ticket, offset).
    resolved: Vec<(u64, u64)>,
}

/// The largest unchanged file read again rather than written as a second
/// copy of the chunk it starts in (see [`PayloadBuilder::reuse`]).
const REREAD_MAX: u64 = 1 << 20;

/// The most new bytes that wait; beyond, everything waiting is placed.
const PENDING_MAX: u64 = 8 << 20;

/// Unchanged files that wait: from `AHEAD_MAX` on the caller looks for a
/// place to settle (see [`PayloadBuilder::full`]); none waits beyond
/// twice as many. The most chunks one of them may span (a bigger one
/// starts a run of its own).
const AHEAD_MAX: usize = 4096;
const AHEAD_CHUNKS: usize = 16;

impl PayloadBuilder {
    pub fn new(params: CdcParams) -> Self {
        let chunker = ParallelChunker::new(params, scanners_for(crate::target::cores()));
        Self {
            chunker,
            pos: 0,
            run: None,
            written: BTreeMap::new(),
            ahead: Vec::new(),
            pending: Vec::new(),
            pending_files: Vec::new(),
            deferring: false,
            next_ticket: 0,
            resolved: Vec::new(),
        }
    }

    /// Log where the hashing of chunk boundaries spent its time
    /// (`backup -v`).
    pub fn log_scan_times(&self) {
        self.chunker.log_times();
    }

    /// Current length of the stream (the offset of the next byte).
    pub fn pos(&self) -> u64 {
        self.pos
    }

    fn ticket(&mut self) -> u64 {
        self.next_ticket += 1;
        self.next_ticket
    }

    /// Whether any file waits to be placed.
    pub fn waiting(&self) -> bool {
        !self.ahead.is_empty() || !self.pending_files.is_empty()
    }

    /// Whether enough unchanged files wait that it is time to settle
    /// (`over_by` 1), or past time (`over_by` 2: no more may wait).
    pub fn full(&self, over_by: usize) -> bool {
        self.ahead.len() >= over_by * AHEAD_MAX
    }

    /// Whether the data of a file at `[off, ..)` of the previous stream
    /// `prev` would go on in the current run: settling before it would end
    /// the run in the chunk the file starts in.
    pub fn goes_on(&self, prev: &DynamicIndex, off: u64) -> bool {
        prev.chunk_at(off).is_some_and(|first| self.continues(first))
    }

    /// Files placed since the last call: (ticket, offset).
    pub fn take_resolved(&mut self) -> Vec<(u64, u64)> {
        std::mem::take(&mut self.resolved)
    }

    /// Where the data of a file of `len` bytes about to be read goes: it
    /// waits if `may_wait`, a run goes on, and there is room; else into
    /// the stream, after everything waiting ([`Self::settle`]).
    pub fn place_new(&mut self, len: u64, may_wait: bool, pipe: &mut Pipeline<'_>) -> Result<Placement> {
        self.deferring = false;
        if may_wait && self.run.is_some() && self.pending.len() as u64 + len <= PENDING_MAX {
            self.deferring = true;
            let t = self.ticket();
            self.pending_files.push((t, self.pending.len() as u64));
            return Ok(Placement::Waits(t));
        }
        self.settle(pipe)?;
        Ok(Placement::At(self.pos))
    }

    /// Place everything waiting: the waiting reused chunks (each going on
    /// from the run before where it can), then the new bytes.
    pub fn settle(&mut self, pipe: &mut Pipeline<'_>) -> Result<()> {
        if self.waiting() {
            tracing::debug!(
                files = self.ahead.len(),
                new_files = self.pending_files.len(),
                new_bytes = self.pending.len(),
                "placing what waits"
            );
        }
        let mut ahead = std::mem::take(&mut self.ahead);
        ahead.sort_by_key(|a| (a.first, a.first_start + a.within));
        for a in ahead {
            let last = a.first + a.chunks.len() - 1;
            let at = self.append(a.first, last, a.first_start, a.within, &|i| a.chunks[i - a.first], pipe)?;
            self.resolved.push((a.ticket, at));
        }
        self.deferring = false;
        if self.pending_files.is_empty() {
            return Ok(());
        }
        let base = self.pos;
        for (t, at) in self.pending_files.drain(..) {
            self.resolved.push((t, base + at));
        }
        let data = std::mem::take(&mut self.pending);
        self.push_now(data, pipe)
    }

    /// Append new bytes of the file being read: they become part of the
    /// stream (or wait, see [`Self::place_new`]), and the chunks cut from
    /// them are gathered by the pipeline's workers.
    pub fn push(&mut self, data: Vec<u8>, pipe: &mut Pipeline<'_>) -> Result<()> {
        if self.deferring {
            if (self.pending.len() + data.len()) as u64 <= PENDING_MAX {
                if self.pending.capacity() == 0 {
                    self.pending.reserve(data.len().max(1 << 20));
                }
                self.pending.extend_from_slice(&data);
                return Ok(());
            }
            // The file grew past the room it was placed in: what waits
            // goes first, the rest follows it in the stream.
            self.settle(pipe)?;
        }
        self.push_now(data, pipe)
    }

    fn push_now(&mut self, data: Vec<u8>, pipe: &mut Pipeline<'_>) -> Result<()> {
        if let Some(run) = self.run.take() {
            self.keep(run);
        }
        self.pos += data.len() as u64;
        let mut result = Ok(());
        self.chunker.push(data, &mut |c| send(pipe, c, &mut result));
        result
    }

    /// Place everything waiting and cut what is pending (the end of the
    /// stream).
    pub fn flush(&mut self, pipe: &mut Pipeline<'_>) -> Result<()> {
        self.settle(pipe)?;
        self.cut(pipe)
    }

    /// A forced chunk boundary.
    fn cut(&mut self, pipe: &mut Pipeline<'_>) -> Result<()> {
        let mut result = Ok(());
        self.chunker.finish(&mut |c| send(pipe, c, &mut result));
        result
    }

    /// Remember a run that ended, for files that point back into it; of
    /// two starting at the same chunk, the longer.
    fn keep(&mut self, run: Run) {
        if self.written.get(&run.prev_first).is_none_or(|w| run.prev_next > w.prev_next) {
            self.written.insert(run.prev_first, run);
        }
    }

    /// Whether a file starting in previous chunk `first` goes on in the
    /// current run.
    fn continues(&self, first: usize) -> bool {
        self.run.as_ref().is_some_and(|r| first >= r.prev_first && first <= r.prev_next)
    }

    /// The first previous chunk from `first` on that appending a file
    /// starting there adds: past what the current run holds if the file
    /// goes on in it.
    fn first_missing(&self, first: usize) -> usize {
        match &self.run {
            Some(r) if self.continues(first) => r.prev_next.max(first),
            _ => first,
        }
    }

    /// The run written before the current one that holds previous chunk
    /// `first`, for a file that does not go on in the current run.
    fn written_with(&self, first: usize) -> Option<&Run> {
        if self.continues(first) {
            return None;
        }
        self.written.range(..=first).next_back().map(|(_, w)| w).filter(|w| first < w.prev_next)
    }

    /// Append previous chunks `first..=last` (those the current run lacks,
    /// going on from it if it can, else as a new run) and return where the
    /// byte `within` of chunk `first` (which starts at `first_start` in the
    /// previous stream) lands. Waiting files the run now holds are placed.
    fn append(
        &mut self,
        first: usize,
        last: usize,
        first_start: u64,
        within: u64,
        chunk: &dyn Fn(usize) -> (ChunkId, u64),
        pipe: &mut Pipeline<'_>,
    ) -> Result<u64> {
        if let Some(w) = self.written_with(first)
            && last < w.prev_next
        {
            return Ok(w.new_base + (first_start + within - w.prev_base));
        }
        let from = self.first_missing(first);
        if !self.continues(first) {
            self.cut(pipe)?;
            let run = Run { prev_first: first, prev_next: first, prev_base: first_start, new_base: self.pos };
            if let Some(run) = self.run.replace(run) {
                self.keep(run);
            }
        }
        for i in from..=last {
            let (id, len) = chunk(i);
            pipe.send(PAYLOAD, Work::Reuse(id, len))?;
            self.pos += len;
        }
        let run = self.run.as_mut().expect("run started");
        run.prev_next = run.prev_next.max(last + 1);
        let (prev_first, prev_next, prev_base, new_base) =
            (run.prev_first, run.prev_next, run.prev_base, run.new_base);
        // Waiting files whose chunks the run now holds: only chunks just
        // appended can complete one (a file waits only while its chunks
        // lie beyond the run).
        let mut k = if from <= last { 0 } else { self.ahead.len() };
        while k < self.ahead.len() {
            let a = &self.ahead[k];
            if a.first >= prev_first && a.first + a.chunks.len() <= prev_next {
                let a = self.ahead.swap_remove(k);
                self.resolved.push((a.ticket, new_base + (a.first_start + a.within - prev_base)));
            } else {
                k += 1;
            }
        }
        Ok(new_base + (first_start + within - prev_base))
    }

    /// Take the bytes `[off, off + len)` of the previous payload stream
    /// `prev` without reading them: where they are placed (or that they
    /// wait, if `may_wait`), or `None` when the caller should read the
    /// file (a chunk they need is gone, or see the module's notes).
    pub fn reuse(
        &mut self,
        prev: &DynamicIndex,
        off: u64,
        len: u64,
        may_wait: bool,
        writer: &dyn ChunkSink,
        pipe: &mut Pipeline<'_>,
    ) -> Result<Option<Placement>> {
        if len == 0 {
            return Ok(Some(Placement::At(self.pos)));
        }
        let (Some(first), Some(last)) = (prev.chunk_at(off), prev.chunk_at(off + len - 1)) else {
            return Ok(None);
        };
        let first_start = prev.start(first);
        // A file that starts in a chunk an earlier run wrote: starting a
        // run there would write that chunk a second time.
        if let Some(w) = self.written_with(first) {
            if last < w.prev_next {
                // Wholly in chunks written: it points back at them.
                return Ok(Some(Placement::At(w.new_base + (off - w.prev_base))));
            }
            if len <= REREAD_MAX {
                // It ends beyond them: read it again, as new bytes.
                tracing::debug!(
                    len,
                    first,
                    run_end = w.prev_next,
                    "unchanged file read again: it starts in a chunk written"
                );
                return Ok(None);
            }
        }
        for i in self.first_missing(first)..=last {
            if !writer.reference(&prev.entries[i].1)? {
                return Ok(None);
            }
        }
        let chunk = |i: usize| (prev.entries[i].1, prev.entries[i].0 - prev.start(i));
        // Further on than the current run: it waits, and the run goes on.
        if may_wait
            && self.run.as_ref().is_some_and(|r| first > r.prev_next)
            && last - first < AHEAD_CHUNKS
            && !self.full(2)
        {
            let ticket = self.ticket();
            let chunks = (first..=last).map(chunk).collect();
            self.ahead.push(Ahead { ticket, first, first_start, within: off - first_start, chunks });
            return Ok(Some(Placement::Waits(ticket)));
        }
        self.append(first, last, first_start, off - first_start, &chunk, pipe)
            .map(|at| Some(Placement::At(at)))
    }
}
