//! The payload stream of a file archive under construction: new file data
//! is cut content-defined; an unchanged file's data is not read again but
//! taken as whole chunks of the previous snapshot's payload stream.
//!
//! Reused chunks may carry bytes of neighbouring files (changed or deleted
//! since); entries point at their own bytes by offset, so those bytes are
//! simply never read. Consecutive unchanged files reuse one run of chunks
//! with no waste. A file read while a run goes on (changed or new) does
//! not end the run: its bytes wait (up to [`PENDING_MAX`]) and go into the
//! stream when the run ends, so the unchanged file after it, which may
//! start in the chunk that holds the end of the file before it, goes on
//! in the same run. Its entry waits with them, for the offset
//! ([`Placement::Pending`]).
//!
//! Where a run does end before an unchanged file that starts in its last
//! chunk (the waiting bytes reached their limit, or a file that cannot
//! wait was read), the file points back at the chunks written if it lies
//! wholly in them, and one that ends beyond them is read again (up to
//! [`REREAD_MAX`] bytes), instead of a new run written from a chunk
//! already written: the stream does not grow by a chunk per changed file.

use std::collections::BTreeMap;

use anyhow::Result;
use chunker::CdcParams;
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
    /// Where `prev_first` starts in the new stream.
    new_base: u64,
}

/// Where a file's new bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// At this offset of the stream.
    At(u64),
    /// At this offset of the bytes waiting for the current run to end;
    /// [`PayloadBuilder::take_flushed`] tells where they landed.
    Pending(u64),
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
    /// New bytes waiting for the current run to end.
    pending: Vec<u8>,
    /// The file being read goes to `pending`.
    deferring: bool,
    /// Where the waiting bytes went, when they went and nobody asked yet.
    flushed: Option<u64>,
}

/// The most new bytes that wait for a run to end; beyond, they go into the
/// stream and the run ends.
pub const PENDING_MAX: u64 = 8 << 20;

/// The largest unchanged file read again rather than written as a second
/// copy of the chunk it starts in (see [`PayloadBuilder::reuse`]).
const REREAD_MAX: u64 = 1 << 20;

impl PayloadBuilder {
    pub fn new(params: CdcParams) -> Self {
        let chunker = ParallelChunker::new(params, scanners_for(crate::target::cores()));
        Self {
            chunker,
            pos: 0,
            run: None,
            written: BTreeMap::new(),
            pending: Vec::new(),
            deferring: false,
            flushed: None,
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

    /// Where the data of a file of `len` bytes about to be read goes: to
    /// the bytes waiting for the current run if `may_wait` and there is
    /// room, else into the stream (the waiting bytes first).
    pub fn place_new(&mut self, len: u64, may_wait: bool, pipe: &mut Pipeline<'_>) -> Result<Placement> {
        if may_wait && self.run.is_some() && self.pending.len() as u64 + len <= PENDING_MAX {
            self.deferring = true;
            return Ok(Placement::Pending(self.pending.len() as u64));
        }
        self.flush_pending(pipe)?;
        Ok(Placement::At(self.pos))
    }

    /// Whether new bytes, or a file placed to join them, wait for the run.
    pub fn has_pending(&self) -> bool {
        self.deferring || !self.pending.is_empty()
    }

    /// The offset where the waiting bytes went, once: the caller's waiting
    /// entries point there (plus their [`Placement::Pending`] offset).
    pub fn take_flushed(&mut self) -> Option<u64> {
        self.flushed.take()
    }

    /// Put the waiting bytes into the stream now (ending the run).
    pub fn flush_pending(&mut self, pipe: &mut Pipeline<'_>) -> Result<()> {
        if !self.has_pending() {
            return Ok(());
        }
        self.deferring = false;
        let base = self.pos;
        let data = std::mem::take(&mut self.pending);
        if data.is_empty() {
            // Only empty files waited: the run goes on.
            self.flushed = Some(base);
            return Ok(());
        }
        self.push_now(data, pipe)?;
        debug_assert!(self.flushed.is_none(), "flushed offset not taken");
        self.flushed = Some(base);
        Ok(())
    }

    /// Append new bytes of the file being read: they become part of the
    /// stream (or wait for the run, see [`Self::place_new`]), and the
    /// chunks cut from them are gathered by the pipeline's workers.
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
            self.flush_pending(pipe)?;
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

    /// Cut what is pending (a forced chunk boundary), the bytes waiting
    /// for the run first.
    pub fn flush(&mut self, pipe: &mut Pipeline<'_>) -> Result<()> {
        self.flush_pending(pipe)?;
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

    /// Take the bytes `[off, off + len)` of the previous payload stream
    /// `prev` without reading them. Returns their offset in the new stream,
    /// or `None` when a chunk they need is gone (the caller reads the file).
    pub fn reuse(
        &mut self,
        prev: &DynamicIndex,
        off: u64,
        len: u64,
        writer: &dyn ChunkSink,
        pipe: &mut Pipeline<'_>,
    ) -> Result<Option<u64>> {
        if len == 0 {
            return Ok(Some(self.pos));
        }
        let (Some(first), Some(last)) = (prev.chunk_at(off), prev.chunk_at(off + len - 1)) else {
            return Ok(None);
        };
        let continues = self.run.as_ref().is_some_and(|r| first >= r.prev_first && first <= r.prev_next);
        // A file that starts in a chunk an earlier run wrote (after a
        // changed file, or pointing back as above in the previous
        // snapshot): starting a run there would write that chunk a second
        // time, and the stream would grow by a chunk for every changed
        // file, backup after backup.
        if !continues
            && let Some((_, w)) = self.written.range(..=first).next_back()
            && first < w.prev_next
        {
            if last < w.prev_next {
                // Wholly in chunks written: it points back at them.
                return Ok(Some(w.new_base + (off - prev.start(w.prev_first))));
            }
            if len <= REREAD_MAX {
                // It ends beyond them: read it again, as new bytes.
                return Ok(None);
            }
        }
        let from = match &self.run {
            Some(r) if continues => r.prev_next.max(first),
            _ => first,
        };
        for i in from..=last {
            if !writer.reference(&prev.entries[i].1)? {
                return Ok(None);
            }
        }
        if !continues {
            self.flush(pipe)?;
            if let Some(run) =
                self.run.replace(Run { prev_first: first, prev_next: first, new_base: self.pos })
            {
                self.keep(run);
            }
        }
        for i in from..=last {
            let len = prev.entries[i].0 - prev.start(i);
            pipe.send(PAYLOAD, Work::Reuse(prev.entries[i].1, len))?;
            self.pos += len;
        }
        let run = self.run.as_mut().expect("run started");
        run.prev_next = run.prev_next.max(last + 1);
        Ok(Some(run.new_base + (off - prev.start(run.prev_first))))
    }
}
