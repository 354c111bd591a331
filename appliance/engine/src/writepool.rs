//! Writing restored files on several threads.
//!
//! The restore's own thread keeps everything that resolves a path in the
//! target — opening parents one component at a time, creating
//! directories, links and special files, removing failed files — in
//! archive order (see `fsrestore`). It hands each file, with its data as
//! slices of decoded chunks, to this pool: either the open descriptor, or
//! the parent's descriptor and the name to create (`O_EXCL | O_NOFOLLOW`)
//! there ([`crate::fsrestore::Creation`]). The pool's threads write the
//! bytes at their offsets and complete the file (size, owner, xattrs,
//! mode, time) through its descriptor alone. A file bigger than a segment
//! is split into several writes, which may run on different threads: the
//! first creates the file, whichever finishes last completes it.
//!
//! Memory and descriptors are bounded: the decoded chunks that queued
//! writes hold count against [`BUDGET`] (each write counts every chunk it
//! touches in full, so the bound holds however the chunks are shared), and
//! at most [`MAX_OPEN`] files are open at once.

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::Scope;

use crossbeam_channel::{Receiver, Sender, unbounded};

use crate::fsrestore::{Completed, Completer, Creation, FileSink, RestoreError};
use crate::pipeline::thread_cpu;

/// Bytes of decoded chunks that queued writes may hold.
pub const BUDGET: u64 = 48 << 20;
/// Files open at once (created, not yet completed).
pub const MAX_OPEN: usize = 256;
/// A file's data goes out in writes of at most this many bytes.
const SEGMENT: u64 = 4 << 20;
/// Writes go to the threads in batches of this many (or [`BATCH_BYTES`]):
/// one hand-over per small file cost a thread wake-up each, more CPU than
/// the writes themselves on a tree of small files.
const BATCH: usize = 32;
const BATCH_BYTES: u64 = 1 << 20;

/// Bytes of one decoded chunk for one place in a file.
struct Piece {
    chunk: Arc<Vec<u8>>,
    at: usize,
    len: usize,
    offset: u64,
}

/// One file in the pool.
struct Target {
    /// Made by the first write that needs it.
    creation: Creation,
    /// Writes not yet done, plus one until the sealing write is done.
    pending: AtomicUsize,
    /// The first write error.
    failed: Mutex<Option<String>>,
    /// The sink and why its data failed, left by the sealing write.
    sealed: Mutex<Option<(FileSink, Option<String>)>>,
}

struct Write {
    target: Arc<Target>,
    pieces: Vec<Piece>,
    cost: u64,
    seal: Option<(FileSink, Option<String>)>,
}

#[derive(Default)]
struct Load {
    bytes: u64,
    open: usize,
    /// The most of each there ever were.
    peak: (u64, usize),
    /// The restore's thread waits until the pool has drained to half.
    waiting: bool,
}

#[derive(Default)]
struct Gate {
    load: Mutex<Load>,
    freed: Condvar,
    cpu_ns: AtomicUsize,
}

impl Gate {
    fn now(&self, ready: impl Fn(&Load) -> bool) -> Option<std::sync::MutexGuard<'_, Load>> {
        let load = self.load.lock().expect("lock");
        ready(&load).then_some(load)
    }

    /// Wait until `ready`: woken only once the pool is down to half its
    /// budget and open files, not at every write (a wake-up per small
    /// file costs more CPU than writing it).
    fn wait(&self, ready: impl Fn(&Load) -> bool) -> std::sync::MutexGuard<'_, Load> {
        let mut load = self.load.lock().expect("lock");
        while !ready(&load) {
            load.waiting = true;
            load = self.freed.wait(load).expect("lock");
            load.waiting = false;
        }
        load
    }

    fn release(&self, bytes: u64, open: usize) {
        let mut load = self.load.lock().expect("lock");
        load.bytes -= bytes;
        load.open -= open;
        if load.waiting && load.open <= MAX_OPEN / 2 && load.bytes <= BUDGET / 2 {
            self.freed.notify_one();
        }
    }
}

/// A file being handed to the pool, piece by piece.
pub struct FileWrite {
    sink: FileSink,
    target: Arc<Target>,
    pieces: Vec<Piece>,
    bytes: u64,
    cost: u64,
    last_chunk: *const Vec<u8>,
}

/// The pool's threads and queues.
pub struct WritePool {
    /// `None` when the pool has no threads (see [`WritePool::start`]).
    writes: Option<Sender<Vec<Write>>>,
    /// Without threads: what completes the files here, and those completed.
    inline: Option<(Completer, std::collections::VecDeque<Completed>)>,
    /// Writes not yet handed over, and their bytes.
    batch: Vec<Write>,
    batch_bytes: u64,
    done: Receiver<Completed>,
    gate: Arc<Gate>,
    /// Files handed over and not yet taken back with [`WritePool::next`].
    outstanding: usize,
    threads: usize,
}

impl WritePool {
    /// Start `threads` writers in `scope`; with none, every write is done
    /// on the caller's thread when it is handed over.
    pub fn start<'scope>(scope: &'scope Scope<'scope, '_>, completer: Completer, threads: usize) -> Self {
        let gate = Arc::new(Gate::default());
        let (finished, done) = unbounded::<Completed>();
        let mut pool = Self {
            writes: None,
            inline: None,
            batch: Vec::new(),
            batch_bytes: 0,
            done,
            gate: gate.clone(),
            outstanding: 0,
            threads,
        };
        if threads == 0 {
            pool.inline = Some((completer, std::collections::VecDeque::new()));
            return pool;
        }
        let (writes, queue) = unbounded::<Vec<Write>>();
        for i in 0..threads {
            let (queue, finished, gate, completer) =
                (queue.clone(), finished.clone(), gate.clone(), completer.clone());
            std::thread::Builder::new()
                .name(format!("restore-write-{i}"))
                .spawn_scoped(scope, move || writer(queue, finished, &gate, &completer))
                .expect("spawning a restore writer");
        }
        pool.writes = Some(writes);
        pool
    }

    /// Take over a new file; waits while [`MAX_OPEN`] files are open.
    pub fn open(&mut self, mut sink: FileSink) -> FileWrite {
        self.admit(
            |l| l.open < MAX_OPEN,
            |l| {
                l.open += 1;
                l.peak.1 = l.peak.1.max(l.open);
            },
        );
        self.outstanding += 1;
        let target = Arc::new(Target {
            creation: sink.creation(),
            pending: AtomicUsize::new(1),
            failed: Mutex::new(None),
            sealed: Mutex::new(None),
        });
        FileWrite { sink, target, pieces: Vec::new(), bytes: 0, cost: 0, last_chunk: std::ptr::null() }
    }

    /// The file's next `len` payload bytes: `chunk[at..at + len]`.
    pub fn add(
        &mut self,
        f: &mut FileWrite,
        chunk: &Arc<Vec<u8>>,
        at: usize,
        len: usize,
    ) -> Result<(), RestoreError> {
        let mut pos = at;
        for (offset, n) in f.sink.place(len as u64)? {
            f.pieces.push(Piece { chunk: chunk.clone(), at: pos, len: n as usize, offset });
            pos += n as usize;
        }
        if !std::ptr::eq(f.last_chunk, Arc::as_ptr(chunk)) {
            f.cost += chunk.len() as u64;
            f.last_chunk = Arc::as_ptr(chunk);
        }
        f.bytes += len as u64;
        if f.bytes >= SEGMENT {
            f.target.pending.fetch_add(1, Ordering::AcqRel);
            let write = Write {
                target: f.target.clone(),
                pieces: std::mem::take(&mut f.pieces),
                cost: std::mem::take(&mut f.cost),
                seal: None,
            };
            self.send(write);
            f.bytes = 0;
            f.last_chunk = std::ptr::null();
        }
        Ok(())
    }

    /// No more data for the file: write what is left, then complete it.
    /// `failed` says why its data did not arrive whole (it is removed).
    pub fn close(&mut self, f: FileWrite, failed: Option<String>) {
        let FileWrite { sink, target, pieces, cost, .. } = f;
        self.send(Write { target, pieces, cost, seal: Some((sink, failed)) });
    }

    fn send(&mut self, write: Write) {
        // A write bigger than the budget alone goes once nothing else is queued.
        let cost = write.cost;
        self.admit(
            |l| l.bytes == 0 || l.bytes + cost <= BUDGET,
            |l| {
                l.bytes += cost;
                l.peak.0 = l.peak.0.max(l.bytes);
            },
        );
        self.batch_bytes += write.pieces.iter().map(|p| p.len as u64).sum::<u64>();
        self.batch.push(write);
        if self.batch.len() >= BATCH || self.batch_bytes >= BATCH_BYTES {
            self.flush();
        }
    }

    /// Wait until `ready` (handing the batch over first if it is not yet:
    /// what frees room may be in it), then `take` a share.
    fn admit(&mut self, ready: impl Fn(&Load) -> bool, take: impl FnOnce(&mut Load)) {
        let gate = self.gate.clone();
        let mut load = match gate.now(&ready) {
            Some(load) => load,
            None => {
                self.flush();
                gate.wait(&ready)
            }
        };
        take(&mut load);
    }

    /// Hand the batch to the threads.
    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        self.batch_bytes = 0;
        let batch = std::mem::take(&mut self.batch);
        if let Some((completer, done)) = &mut self.inline {
            let start = thread_cpu();
            done.extend(batch.into_iter().filter_map(|w| run(w, &self.gate, completer)));
            let cpu = ((thread_cpu() - start) * 1e9) as usize;
            self.gate.cpu_ns.fetch_add(cpu, Ordering::Relaxed);
            return;
        }
        self.writes.as_ref().expect("open").send(batch).expect("the writers outlive the pool");
    }

    /// A completed file, if one is ready.
    pub fn try_next(&mut self) -> Option<Completed> {
        let done = match &mut self.inline {
            Some((_, done)) => done.pop_front()?,
            None => self.done.try_recv().ok()?,
        };
        self.outstanding -= 1;
        Some(done)
    }

    /// The next completed file, waiting for it; `None` once every file
    /// handed over was taken back.
    pub fn next(&mut self) -> Option<Completed> {
        if self.outstanding == 0 {
            return None;
        }
        self.flush();
        let done = match &mut self.inline {
            Some((_, done)) => done.pop_front().expect("a write handed over inline is done"),
            None => self.done.recv().expect("the writers outlive the pool"),
        };
        self.outstanding -= 1;
        Some(done)
    }

    /// Let the writers end once the queue is empty (the scope joins them).
    pub fn close_all(&mut self) {
        self.flush();
        self.writes = None;
    }

    /// The writers' number and a clock of their CPU time, which is
    /// complete once the scope has joined them.
    pub fn clock(&self) -> (usize, PoolClock) {
        (self.threads, PoolClock(self.gate.clone()))
    }
}

/// The CPU time of a pool's writers.
pub struct PoolClock(Arc<Gate>);

impl PoolClock {
    pub fn secs(&self) -> f64 {
        self.0.cpu_ns.load(Ordering::Relaxed) as f64 / 1e9
    }
}

fn writer(queue: Receiver<Vec<Write>>, finished: Sender<Completed>, gate: &Gate, completer: &Completer) {
    let start = thread_cpu();
    for write in queue.into_iter().flatten() {
        if let Some(done) = run(write, gate, completer)
            && finished.send(done).is_err()
        {
            break;
        }
    }
    let cpu = ((thread_cpu() - start) * 1e9) as usize;
    gate.cpu_ns.fetch_add(cpu, Ordering::Relaxed);
}

/// Do one write; the file, completed, if this was its last.
fn run(write: Write, gate: &Gate, completer: &Completer) -> Option<Completed> {
    let Write { target, pieces, cost, seal } = write;
    let file = target.creation.file();
    if let Some(file) = file.filter(|_| target.failed.lock().expect("lock").is_none()) {
        for p in &pieces {
            if let Err(e) = file.write_all_at(&p.chunk[p.at..p.at + p.len], p.offset) {
                *target.failed.lock().expect("lock") =
                    Some(format!("cannot write {}: {e}", target.creation.shown()));
                break;
            }
        }
    }
    drop(pieces);
    if let Some(seal) = seal {
        *target.sealed.lock().expect("lock") = Some(seal);
    }
    if target.pending.fetch_sub(1, Ordering::AcqRel) != 1 {
        gate.release(cost, 0);
        return None;
    }
    let (sink, failed) = target.sealed.lock().expect("lock").take().expect("sealed before the last write");
    let failed = failed.or_else(|| target.failed.lock().expect("lock").take());
    let done = completer.complete_with(sink, target.creation.result(), failed);
    drop(target);
    gate.release(cost, 1);
    Some(done)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use filevol::archive::{Entry, EntryKind};

    use super::*;
    use crate::fsrestore::tests::entry;
    use crate::fsrestore::{Begin, RestoreOptions, Restorer, Settled};

    fn file(path: &str, size: u64, extents: Option<Vec<(u64, u64)>>) -> Entry {
        Entry { size, extents, mtime_nsec: 5, ..entry(path.as_bytes(), EntryKind::File, 0o640) }
    }

    /// The bytes of file `i`: its own pattern.
    fn bytes(i: usize, len: u64) -> Vec<u8> {
        (0..len).map(|k| (k as usize * 31 + i * 7) as u8).collect()
    }

    /// Files of every size (more than [`MAX_OPEN`] of them, some bigger
    /// than a segment, one sparse, one whose data fails, one whose name is
    /// taken) go through the pool in "chunks" of 1 MiB, created by the
    /// pool's threads: each lands whole with its metadata, the failed one
    /// is removed, the taken name is an error that leaves the file there
    /// alone, and the queued chunks never pass the budget.
    #[test]
    fn files_of_every_size_land_whole_within_the_budget() {
        every_size(3);
    }

    /// The same with no threads: every write done when handed over.
    #[test]
    fn without_threads_the_pool_writes_on_the_callers_thread() {
        every_size(0);
    }

    fn every_size(threads: usize) {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("f9"), b"already here").unwrap();
        let mut r = Restorer::new(tmp.path(), RestoreOptions::default()).unwrap();
        r.defer_file_creation();
        let sizes: Vec<u64> = (0..400u64)
            .map(|i| match i % 100 {
                7 => 9 << 20,
                8 => 40 << 20,
                _ => (i * 997) % 70_000,
            })
            .collect();
        let sparse = file("sparse", 12 << 20, Some(vec![(1 << 20, 3 << 20), (10 << 20, 5)]));
        let (mut restored, mut failed, mut refused) = (0, Vec::new(), Vec::new());
        std::thread::scope(|scope| {
            let mut pool = WritePool::start(scope, r.completer(), threads);
            let mut settle = |r: &mut Restorer, done| match r.settle(done) {
                Ok(Settled::Restored(_)) => restored += 1,
                Ok(Settled::Failed(path, why)) => failed.push((path, why)),
                Err(e) => refused.push(e.to_string()),
            };
            let mut entries: Vec<(Entry, Vec<u8>)> = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| (file(&format!("f{i}"), n, None), bytes(i, n)))
                .collect();
            entries.push((sparse.clone(), bytes(999, (3 << 20) + 5)));
            for (i, (e, data)) in entries.iter().enumerate() {
                let Begin::Data(sink) = r.begin(&e.path, e).unwrap() else { panic!("a file") };
                let mut f = pool.open(sink);
                // Feed the data as slices of 1 MiB "chunks", as a payload
                // stream hands them out.
                for piece in data.chunks(1 << 20) {
                    let chunk = Arc::new(piece.to_vec());
                    pool.add(&mut f, &chunk, 0, chunk.len()).unwrap();
                }
                let why = (i == 5).then(|| "chunk missing".to_owned());
                pool.close(f, why);
                while let Some(done) = pool.try_next() {
                    settle(&mut r, done);
                }
            }
            while let Some(done) = pool.next() {
                settle(&mut r, done);
            }
            let load = pool.gate.load.lock().unwrap();
            assert!(load.peak.0 <= BUDGET, "queued {} bytes of chunks", load.peak.0);
            assert!(load.peak.1 <= MAX_OPEN && load.peak.1 > 1, "{} files open at once", load.peak.1);
            if threads > 0 {
                assert!(load.peak.1 > BATCH, "the open-file limit was never approached: {}", load.peak.1);
            }
            assert_eq!((load.bytes, load.open), (0, 0));
            drop(load);
            pool.close_all();
        });
        let stats = r.finish().unwrap();
        assert_eq!(restored, sizes.len() - 1);
        assert!(
            refused.len() == 1 && refused[0].ends_with("f9 already exists; use --overwrite to replace it"),
            "{refused:?}"
        );
        assert_eq!(std::fs::read(tmp.path().join("f9")).unwrap(), b"already here");
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert!(failed[0].0.ends_with("/f5") && failed[0].1 == "chunk missing", "{failed:?}");
        assert!(!tmp.path().join("f5").exists(), "a failed file was left behind");
        for (i, &n) in sizes.iter().enumerate().filter(|(i, _)| *i != 5 && *i != 9) {
            let path = tmp.path().join(format!("f{i}"));
            assert!(std::fs::read(&path).unwrap() == bytes(i, n), "f{i} differs");
            let meta = std::fs::metadata(&path).unwrap();
            assert_eq!((meta.mode() & 0o7777, meta.mtime(), meta.mtime_nsec()), (0o640, 1_700_000_000, 5));
        }
        let got = std::fs::read(tmp.path().join("sparse")).unwrap();
        let data = bytes(999, (3 << 20) + 5);
        assert_eq!(got.len(), 12 << 20);
        assert!(got[..1 << 20].iter().all(|b| *b == 0));
        assert!(got[1 << 20..4 << 20] == data[..3 << 20]);
        assert!(got[4 << 20..10 << 20].iter().all(|b| *b == 0));
        assert!(got[10 << 20..(10 << 20) + 5] == data[3 << 20..]);
        assert_eq!(stats.files as usize, sizes.len() - 1);
    }
}
