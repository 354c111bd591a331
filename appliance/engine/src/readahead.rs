//! Opening and reading a tree's files ahead of the backup's reader, on a
//! pool of threads: for a tree of many small files, open, read and close
//! cost more than cutting the bytes into chunks, and one thread doing all
//! of them bounds the backup (issue 19's per-stage timings).
//!
//! ```text
//! walk ─► reader ─► read-ahead ×N (open, read, close) ─► reader, in walk order (cut, entries) ─► pipeline
//! ```
//!
//! The walk runs on a thread of its own too (`walk_on_thread`), a bounded
//! queue ahead; its directory listings (`lstat`, extended attributes) are
//! made on threads of their own ahead of it (`fswalk`).
//!
//! The reader submits a file as the walk reaches it and takes its data back
//! in walk order, so the streams, and the snapshot, are byte for byte what
//! one thread reading would make. Memory is bounded: at most `LOOKAHEAD`
//! files are out, each read whole only when its data is at most
//! `WHOLE_MAX` (a bigger one comes back opened, and the reader reads it).
//!
//! A file no pool thread has started when the reader needs it is read by
//! the reader itself instead of waited for: on a machine with few cores,
//! where the pool's threads wait for a free core, the reader never idles
//! behind work it could do.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::Scope;

use crossbeam_channel::{Sender, bounded};
use filevol::archive::Entry;

use crate::fswalk::{FileData, Source, open_data};
use crate::pieces::READ_BLOCK;
use crate::pipeline::{add_thread_cpu, thread_cpu};
use crate::prefetch::{self, PoolTimes};

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

/// A file handed to the pool, to be read by whichever thread claims it
/// first: a pool thread, or the reader.
type Slot = prefetch::Slot<(Source, Entry), FetchResult>;

/// The reader's claim on a file handed to the pool.
pub struct Ticket(Arc<Slot>);

/// Walk items queued between the walking thread and the reader, at most.
/// The reader takes all that wait at once, so up to twice this many are
/// walked and not yet read.
pub const WALK_AHEAD: usize = 256;

/// The pool's clock ([`PoolTimes`]: time spent opening and reading,
/// summed over its threads; files handed out, and those the reader read
/// itself because no thread had started them; the reader's time waiting
/// for a file it needed), and the walking thread's CPU time.
#[derive(Debug, Default)]
pub struct ReadAheadTimes {
    pub pool: PoolTimes,
    walk_cpu_ns: AtomicU64,
    /// Big files read in blocks beside the reader, and those threads' CPU.
    big_files: AtomicU64,
    blocks_cpu_ns: AtomicU64,
}

/// The items of a walk run on a thread of its own, in walk order.
///
/// A queue with hand-overs in bulk both ways: the reader takes every item
/// that waits in one go, and a walk that filled the queue is woken only
/// once the reader took them all, not for every item the reader takes.
/// The walk puts each item in the queue as soon as it has it, so a walk
/// that stalls (a slow directory) never holds back items it walked.
pub struct WalkQueue<T> {
    shared: Arc<WalkShared<T>>,
    /// Items taken from the queue, not yet handed out.
    taken: VecDeque<T>,
}

struct WalkShared<T> {
    state: Mutex<WalkState<T>>,
    /// The reader waits here for an item or the walk's end.
    ready: Condvar,
    /// The walk waits here for room.
    room: Condvar,
}

struct WalkState<T> {
    items: VecDeque<T>,
    /// The walk ended, or its thread unwound.
    ended: bool,
    /// The reader dropped the queue: the walk stops.
    dropped: bool,
    reader_waits: bool,
    walk_waits: bool,
}

impl<T> WalkShared<T> {
    fn lock(&self) -> MutexGuard<'_, WalkState<T>> {
        // The state is a queue and flags, each change whole under the lock.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T> Iterator for WalkQueue<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        if let Some(item) = self.taken.pop_front() {
            return Some(item);
        }
        let mut s = self.shared.lock();
        loop {
            if !s.items.is_empty() {
                // `taken` is empty: the queue keeps its buffer.
                std::mem::swap(&mut s.items, &mut self.taken);
                if std::mem::take(&mut s.walk_waits) {
                    self.shared.room.notify_one();
                }
                drop(s);
                return self.taken.pop_front();
            }
            if s.ended {
                return None;
            }
            s.reader_waits = true;
            s = self.shared.ready.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl<T> Drop for WalkQueue<T> {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        s.dropped = true;
        s.items.clear();
        if std::mem::take(&mut s.walk_waits) {
            self.shared.room.notify_one();
        }
    }
}

/// The walk's end of the queue: dropped when the walk ends or its thread
/// unwinds, which ends the reader's iteration.
struct WalkFeed<T>(Arc<WalkShared<T>>);

impl<T> WalkFeed<T> {
    /// Queue an item from the walk, waiting while the queue is full;
    /// false once the reader is gone.
    fn push(&self, item: T) -> bool {
        let shared = &self.0;
        let mut s = shared.lock();
        while s.items.len() >= WALK_AHEAD && !s.dropped {
            s.walk_waits = true;
            s = shared.room.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        if s.dropped {
            return false;
        }
        s.items.push_back(item);
        if std::mem::take(&mut s.reader_waits) {
            shared.ready.notify_one();
        }
        true
    }
}

impl<T> Drop for WalkFeed<T> {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.ended = true;
        if std::mem::take(&mut s.reader_waits) {
            self.0.ready.notify_one();
        }
    }
}

/// Run a walk on a thread of its own; its items come out of the queue in
/// walk order ([`WalkQueue`]). Dropping the queue stops the walk.
pub fn walk_on_thread<'scope, 'env, I>(
    scope: &'scope Scope<'scope, 'env>,
    walk: I,
    times: &'scope ReadAheadTimes,
) -> WalkQueue<I::Item>
where
    I: Iterator + Send + 'scope,
    I::Item: Send + 'scope,
{
    let shared = Arc::new(WalkShared {
        state: Mutex::new(WalkState {
            items: VecDeque::with_capacity(WALK_AHEAD),
            ended: false,
            dropped: false,
            reader_waits: false,
            walk_waits: false,
        }),
        ready: Condvar::new(),
        room: Condvar::new(),
    });
    let feed = WalkFeed(shared.clone());
    scope.spawn(move || {
        let cpu = thread_cpu();
        for item in walk {
            if !feed.push(item) {
                break;
            }
        }
        drop(feed);
        add_thread_cpu(&times.walk_cpu_ns, cpu);
    });
    WalkQueue { shared, taken: VecDeque::with_capacity(WALK_AHEAD) }
}

impl ReadAheadTimes {
    /// CPU seconds of the walking thread.
    pub fn walk_cpu(&self) -> f64 {
        self.walk_cpu_ns.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// Big files read in blocks beside the reader, and the CPU seconds
    /// of their reading threads.
    pub fn big_files(&self) -> (u64, f64) {
        (self.big_files.load(Ordering::Relaxed), self.blocks_cpu_ns.load(Ordering::Relaxed) as f64 / 1e9)
    }
}

/// The pool, alive inside a thread scope.
pub struct ReadAhead<'t> {
    jobs: Option<Sender<Arc<Slot>>>,
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
        let (tx, rx) = bounded::<Arc<Slot>>(LOOKAHEAD);
        for _ in 0..threads {
            let rx = rx.clone();
            scope.spawn(move || {
                let cpu = thread_cpu();
                for slot in rx {
                    let Some(job) = slot.claim() else { continue };
                    let result = prefetch::run_caught(
                        &times.pool,
                        job,
                        |(source, entry)| fetch(&source, entry),
                        || Err("the file reading thread failed".into()),
                    );
                    slot.finish(result);
                }
                times.pool.add_cpu(cpu);
            });
        }
        Self { jobs: Some(tx), times, threads }
    }

    /// The pool's clock.
    pub fn times(&self) -> &'t ReadAheadTimes {
        self.times
    }

    /// Hand a file to the pool; `take` gets its result.
    pub fn submit(&self, source: Source, entry: Entry) -> Ticket {
        self.times.pool.count_job();
        let slot = Slot::new((source, entry));
        // The threads stop only once the pool is dropped.
        self.jobs.as_ref().expect("open").send(slot.clone()).expect("read-ahead threads run");
        Ticket(slot)
    }

    /// A file handed out earlier: read here if no thread has started it,
    /// else waited for.
    pub fn take(&self, ticket: Ticket) -> FetchResult {
        ticket.0.run_or_wait(&self.times.pool, |(source, entry)| fetch(&source, entry)).into_inner()
    }
}

impl Drop for ReadAhead<'_> {
    fn drop(&mut self) {
        drop(self.jobs.take());
    }
}

/// Blocks of a big file read and not yet taken by the reader, at most.
pub const BLOCKS_AHEAD: usize = 2;

/// Read a file's data in full blocks on a thread of its own, while the
/// reader stores the blocks read before: a big file's bytes are then
/// copied out of the page cache beside the reader, not by it. `empty`
/// gives an empty block (the reader's, from the pipeline's spares);
/// `take` stores a filled block (truncated to what was read, never
/// empty); a failed read becomes `failed(message)`. Returns the blocks
/// `empty` gave that were not filled (for the next files: every block
/// comes back, through `take` or here, so none is allocated and faulted
/// in again) and whether the file changed while it was read. At most
/// [`BLOCKS_AHEAD`] blocks are in flight.
pub fn read_in_blocks<E>(
    mut data: FileData,
    mut empty: impl FnMut() -> Vec<u8>,
    mut take: impl FnMut(Vec<u8>) -> Result<(), E>,
    failed: impl Fn(String) -> E,
    times: &ReadAheadTimes,
) -> Result<(Vec<Vec<u8>>, bool), E> {
    std::thread::scope(|scope| {
        let (empty_tx, empty_rx) = bounded::<Vec<u8>>(BLOCKS_AHEAD);
        // The blocks sent ahead that the thread never took (it read the
        // end first) are drained from here once it is done.
        let unused = empty_rx.clone();
        let (full_tx, full_rx) = bounded::<Result<(Vec<u8>, usize), String>>(BLOCKS_AHEAD);
        let reading = scope.spawn(move || {
            let cpu = thread_cpu();
            for mut block in empty_rx {
                let read = fill(&mut data, &mut block);
                let last = !matches!(read, Ok(n) if n == block.len());
                if full_tx.send(read.map(|n| (block, n))).is_err() || last {
                    break;
                }
            }
            add_thread_cpu(&times.blocks_cpu_ns, cpu);
            data.changed_while_reading()
        });
        times.big_files.fetch_add(1, Ordering::Relaxed);
        for _ in 0..BLOCKS_AHEAD {
            empty_tx.send(empty()).expect("the channel has room for them");
        }
        let left = loop {
            match full_rx.recv() {
                Err(_) => return Err(failed("the file reading thread failed".into())),
                Ok(Err(message)) => return Err(failed(message)),
                Ok(Ok((block, 0))) => break Some(block),
                Ok(Ok((mut block, n))) => {
                    block.truncate(n);
                    take(block)?;
                    if n < READ_BLOCK {
                        break None;
                    }
                    // The thread may have stopped already (it read the
                    // end); then the block is not needed.
                    let _ = empty_tx.send(empty());
                }
            }
        };
        drop(empty_tx);
        let changed = reading.join().map_err(|_| failed("the file reading thread failed".into()))?;
        let mut left: Vec<Vec<u8>> = left.into_iter().collect();
        left.extend(unused.try_iter());
        Ok((left, changed))
    })
}

/// Fill `block` from `data`: fewer bytes only at the end of the data.
pub fn fill(data: &mut FileData, block: &mut [u8]) -> Result<usize, String> {
    let mut filled = 0;
    while filled < block.len() {
        let n = data.read_next(&mut block[filled..]).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

fn fetch(source: &Source, mut entry: Entry) -> FetchResult {
    let mut data = open_data(source, &mut entry).map_err(|e| e.to_string())?;
    if entry.data_len() > WHOLE_MAX {
        return Ok((entry, Fetched::Open(data)));
    }
    let mut out = Vec::with_capacity(entry.data_len() as usize);
    data.read_rest_into(&mut out).map_err(|e| e.to_string())?;
    let changed = data.changed_while_reading();
    Ok((entry, Fetched::Whole(out, changed)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fswalk::{WalkItem, WalkOptions, Walker};

    /// Files are taken in walk order with their own bytes, whether a pool
    /// thread or the reader read them; every file handed out is read once.
    #[test]
    fn every_file_comes_back_whole_read_by_the_pool_or_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..300u32 {
            std::fs::write(dir.path().join(format!("f{i:03}")), i.to_le_bytes().repeat(i as usize)).unwrap();
        }
        let walker = Walker::new(dir.path(), &WalkOptions::default()).unwrap();
        let times = ReadAheadTimes::default();
        let mut seen = Vec::new();
        std::thread::scope(|scope| {
            let ahead = ReadAhead::start(scope, 2, &times);
            let mut queue = std::collections::VecDeque::new();
            for item in walker {
                let WalkItem::Entry { entry, source } = item else { panic!("walk error") };
                if entry.kind != filevol::archive::EntryKind::File {
                    continue;
                }
                queue.push_back((entry.path.clone(), ahead.submit(source, entry)));
                // Take some at once (a thread may not have started them:
                // the reader reads those), others a few files later.
                while queue.len() > (seen.len() % 5) {
                    let (path, ticket) = queue.pop_front().unwrap();
                    seen.push((path, ahead.take(ticket)));
                }
            }
            for (path, ticket) in queue {
                seen.push((path, ahead.take(ticket)));
            }
        });
        assert_eq!(seen.len(), 300);
        for (k, (path, got)) in seen.into_iter().enumerate() {
            let i = k as u32;
            assert_eq!(String::from_utf8_lossy(&path), format!("f{i:03}"));
            match got {
                Ok((entry, Fetched::Whole(data, changed))) => {
                    assert_eq!(data, i.to_le_bytes().repeat(i as usize));
                    assert_eq!(entry.size, data.len() as u64);
                    assert!(!changed);
                }
                Ok((_, Fetched::Open(_))) => panic!("a small file came back open"),
                Err(e) => panic!("{e}"),
            }
        }
        let figures = times.pool.figures();
        let (files, by_reader) = (figures.jobs, figures.by_taker);
        assert_eq!(files, 300);
        assert!(by_reader <= files);
    }

    /// A walk on its own thread yields every item once, in order, whether
    /// the reader keeps up or falls behind; a reader that stops early
    /// stops the walk.
    #[test]
    fn a_walk_on_a_thread_yields_its_items_in_order() {
        let times = ReadAheadTimes::default();
        for n in [0usize, 1, WALK_AHEAD - 1, WALK_AHEAD, WALK_AHEAD + 1, 10 * WALK_AHEAD + 3] {
            for slow in [false, true] {
                let got: Vec<usize> = std::thread::scope(|scope| {
                    walk_on_thread(scope, 0..n, &times)
                        .inspect(|i| {
                            if slow && i % 97 == 0 {
                                std::thread::sleep(std::time::Duration::from_millis(2));
                            }
                        })
                        .collect()
                });
                assert_eq!(got, (0..n).collect::<Vec<_>>(), "{n} items, slow reader {slow}");
            }
        }
        let walked = AtomicU64::new(0);
        let first: Vec<u64> = std::thread::scope(|scope| {
            let endless = std::iter::repeat_with(|| walked.fetch_add(1, Ordering::Relaxed));
            walk_on_thread(scope, endless, &times).take(10).collect()
        });
        assert_eq!(first, (0..10).collect::<Vec<_>>());
        // The walk ran at most the queue, the items the reader had taken
        // and the one in hand ahead of what was read.
        let ahead = walked.load(Ordering::Relaxed);
        assert!(ahead <= (10 + 2 * WALK_AHEAD + 1) as u64, "{ahead} items walked");

        // A walk that stalls (a slow directory) has handed over all it
        // walked: here two items, queued while the reader was busy.
        let (seen_tx, seen_rx) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|scope| {
            let stalls = (0..3).inspect(move |&i| {
                if i == 2 {
                    seen_rx
                        .recv_timeout(std::time::Duration::from_secs(20))
                        .expect("the reader got items 0 and 1");
                }
            });
            let mut queue = walk_on_thread(scope, stalls, &times);
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert_eq!(queue.next(), Some(0));
            assert_eq!(queue.next(), Some(1));
            seen_tx.send(()).unwrap();
            assert_eq!(queue.collect::<Vec<_>>(), [2]);
        });

        // A walk whose thread panics ends the reader's items; the panic
        // comes out of the scope.
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::thread::scope(|scope| {
                let breaks = (0..5).inspect(|&i| assert!(i < 3, "the walk broke"));
                walk_on_thread(scope, breaks, &times).count()
            })
        }));
        assert!(caught.is_err());
    }

    /// A big file read in blocks on a thread of its own comes back whole,
    /// in order, every block full but the last; a block left over when
    /// the data ends on a block's end goes back to the caller; and a
    /// block the caller cannot store stops the reading.
    #[test]
    fn big_files_come_back_in_full_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let sizes = [READ_BLOCK + 1, 3 * READ_BLOCK, 5 * READ_BLOCK / 2];
        for (i, size) in sizes.iter().enumerate() {
            let data: Vec<u8> = (0..*size).map(|k| (k * 7 + i) as u8).collect();
            std::fs::write(dir.path().join(format!("f{i}")), data).unwrap();
        }
        let times = ReadAheadTimes::default();
        let walker = Walker::new(dir.path(), &WalkOptions::default()).unwrap();
        let mut files = 0;
        for item in walker {
            let WalkItem::Entry { mut entry, source } = item else { panic!("walk error") };
            if entry.kind != filevol::archive::EntryKind::File {
                continue;
            }
            let i = files;
            files += 1;
            let want = std::fs::read(dir.path().join(format!("f{i}"))).unwrap();
            let mut got: Vec<Vec<u8>> = Vec::new();
            let data = open_data(&source, &mut entry).unwrap();
            let mut given = 0;
            let (left, changed) = read_in_blocks(
                data,
                || {
                    given += 1;
                    vec![0; READ_BLOCK]
                },
                |b: Vec<u8>| -> Result<(), String> {
                    got.push(b);
                    Ok(())
                },
                |m| m,
                &times,
            )
            .unwrap();
            assert!(!changed);
            assert_eq!(got.concat(), want, "f{i}");
            assert!(got[..got.len() - 1].iter().all(|b| b.len() == READ_BLOCK));
            // Every block given comes back, filled or not, whole.
            assert_eq!(got.len() + left.len(), given, "f{i}");
            assert!(left.iter().all(|b| b.len() == READ_BLOCK));

            let mut entry = entry.clone();
            let data = open_data(&source, &mut entry).unwrap();
            let mut stored = 0;
            let refused = read_in_blocks(
                data,
                || vec![0; READ_BLOCK],
                |_| {
                    stored += 1;
                    Err("the store is full".to_owned())
                },
                |m| m,
                &times,
            );
            assert_eq!(refused.unwrap_err(), "the store is full");
            assert_eq!(stored, 1);
        }
        assert_eq!(files, 3);
        assert_eq!(times.big_files().0, 6);
    }
}
