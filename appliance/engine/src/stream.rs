//! Reading chunked streams back: a fetcher that decodes chunks on worker
//! threads a window ahead of the reader, and a byte reader over a dynamic
//! index with cheap forward skips and random access.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Read;
use std::sync::Arc;

use chunker::ChunkId;
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use filevol::{DynamicIndex, StoreError};

use crate::target::ChunkRead;

/// How many chunks are decoded ahead of the reader, at least (a reader
/// with more parallel reads gets a window as wide as those).
const WINDOW: usize = 8;

/// Chunks the reader took last, kept by id: a chunk that comes again
/// within this many distinct chunks is not read and decoded again. A
/// payload stream repeats a chunk right after a changed file: the run of
/// reused chunks before the file ends with the chunk that also starts the
/// run after it, with the file's new bytes in between.
const RECENT: usize = 4;

/// Takes in a row outside the read-ahead window, each at or right after
/// the one before, that move the window there: fewer are read on their own
/// (a changed file's data, written after the run of chunks around it, may
/// span two chunks).
const MOVED_AFTER: usize = 3;

/// How far on from the last chunk the reader took counts as going on (a
/// chunk of bytes nobody restores in between, say), not as a jump.
const STEP: usize = 4;

type Fetched = (usize, Result<Arc<Vec<u8>>, Arc<StoreError>>);

/// Decodes the chunks of one index in order, a window ahead.
pub struct Fetcher {
    store: Arc<dyn ChunkRead>,
    ids: Vec<ChunkId>,
    jobs: Option<Sender<(usize, ChunkId)>>,
    results: Receiver<Fetched>,
    ready: HashMap<usize, Result<Arc<Vec<u8>>, Arc<StoreError>>>,
    next_submit: usize,
    /// The position after the last one the reader went on to (not jumped
    /// to).
    next: usize,
    /// Positions sent to the workers and not yet back.
    in_flight: HashSet<usize>,
    workers: Vec<std::thread::JoinHandle<()>>,
    window: usize,
    /// The last [`RECENT`] distinct chunks taken, newest last.
    recent: VecDeque<(ChunkId, Arc<Vec<u8>>)>,
    /// Positions not sent to the workers: their chunk was sent (or
    /// taken) a few positions before, so it will be in `recent`.
    repeats: HashSet<usize>,
    /// The last [`RECENT`] distinct chunks taken on a jump, newest last:
    /// the chunks after a run that hold changed files' data are jumped to
    /// once per file, with the run's chunks taken in between.
    jumped: VecDeque<(ChunkId, Arc<Vec<u8>>)>,
    /// The last position taken outside the window, if the last take was,
    /// and how many takes in a row went on there.
    last_out: Option<(usize, usize)>,
}

impl Fetcher {
    pub fn new(store: Arc<dyn ChunkRead>, ids: Vec<ChunkId>) -> Self {
        let n = store.parallel_reads().clamp(1, 32);
        let window = WINDOW.max(n);
        let (jobs, job_rx) = bounded::<(usize, ChunkId)>(window * 2);
        let (res_tx, results) = unbounded::<Fetched>();
        let workers = (0..n)
            .map(|_| {
                let (rx, tx, store) = (job_rx.clone(), res_tx.clone(), store.clone());
                std::thread::spawn(move || {
                    for (i, id) in rx {
                        let r = store.read_chunk(&id).map(Arc::new).map_err(Arc::new);
                        if tx.send((i, r)).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        Self {
            store,
            ids,
            jobs: Some(jobs),
            results,
            ready: HashMap::new(),
            next_submit: 0,
            next: 0,
            jumped: VecDeque::with_capacity(RECENT + 1),
            in_flight: HashSet::new(),
            workers,
            window,
            recent: VecDeque::with_capacity(RECENT + 1),
            repeats: HashSet::new(),
            last_out: None,
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// The plain bytes of chunk `i`. Sequential calls are served from the
    /// read-ahead window. A jump (back, or more than [`STEP`] chunks on) is
    /// taken from the window if it is there, else read on its own, and
    /// leaves the window where it is (a file whose data the backup wrote after
    /// the run of chunks it sits in, a hard link's data further back);
    /// [`MOVED_AFTER`] jumps in a row, each going on from the one before,
    /// move the window there. A chunk that was taken a few chunks before comes from
    /// memory ([`RECENT`]).
    pub fn get(&mut self, i: usize) -> Result<Arc<Vec<u8>>, StoreError> {
        let r = self.fetch(i)?;
        let id = self.ids[i];
        if let Some(at) = self.recent.iter().position(|(k, _)| *k == id) {
            self.recent.remove(at);
        }
        self.recent.push_back((id, r.clone()));
        if self.recent.len() > RECENT {
            self.recent.pop_front();
        }
        Ok(r)
    }

    fn fetch(&mut self, i: usize) -> Result<Arc<Vec<u8>>, StoreError> {
        if let Some((_, data)) = self.recent.iter().find(|(k, _)| *k == self.ids[i]) {
            self.repeats.remove(&i);
            return Ok(data.clone());
        }
        if self.repeats.remove(&i) {
            // A repeat whose first time the reader skipped.
            return self.store.read_chunk(&self.ids[i]).map(Arc::new);
        }
        if i >= self.next && i < self.next + STEP {
            self.last_out = None;
        } else {
            // A jump: taken where it is, the window stays.
            let id = self.ids[i];
            if let Some((_, data)) = self.jumped.iter().find(|(k, _)| *k == id) {
                return Ok(data.clone());
            }
            let data = if self.ready.contains_key(&i) || self.in_flight.contains(&i) {
                self.last_out = None;
                Some(self.wait_for(i)?)
            } else {
                let row = match self.last_out {
                    Some((o, n)) if i == o || i == o + 1 => n + 1,
                    _ => 1,
                };
                self.last_out = Some((i, row));
                if row < MOVED_AFTER { Some(self.store.read_chunk(&id).map(Arc::new)?) } else { None }
            };
            if let Some(data) = data {
                self.jumped.push_back((id, data.clone()));
                if self.jumped.len() > RECENT {
                    self.jumped.pop_front();
                }
                return Ok(data);
            }
            self.repeats.clear();
            self.next_submit = i;
        }
        self.next = i + 1;
        self.ready.retain(|k, _| *k >= i);
        self.repeats.retain(|k| *k > i);
        while self.next_submit < self.ids.len() && self.next_submit <= i + self.window {
            let j = self.next_submit;
            // The same chunk a few positions before (and after `i`, or
            // `i` itself): taken by then, it is in `recent`.
            let back = j.saturating_sub(RECENT).max(i);
            if j > i && self.ids[back..j].contains(&self.ids[j]) {
                self.repeats.insert(j);
            } else {
                self.jobs.as_ref().expect("open").send((j, self.ids[j])).expect("workers alive");
                self.in_flight.insert(j);
            }
            self.next_submit += 1;
        }
        self.wait_for(i)
    }

    /// Chunk `i` from the workers (sent to them now if it is not on its
    /// way: one taken before on a jump, say).
    fn wait_for(&mut self, i: usize) -> Result<Arc<Vec<u8>>, StoreError> {
        if !self.ready.contains_key(&i) && !self.in_flight.contains(&i) {
            self.jobs.as_ref().expect("open").send((i, self.ids[i])).expect("workers alive");
            self.in_flight.insert(i);
        }
        loop {
            if let Some(r) = self.ready.remove(&i) {
                return r.map_err(unwrap_err);
            }
            let (k, r) = self.results.recv().expect("workers alive");
            self.in_flight.remove(&k);
            // Behind the reader, and not the one wanted: nobody will take it.
            if k == i || k + 1 >= self.next {
                self.ready.insert(k, r);
            }
        }
    }
}

fn unwrap_err(e: Arc<StoreError>) -> StoreError {
    Arc::try_unwrap(e).unwrap_or_else(|e| match &*e {
        StoreError::ChunkMissing(id) => StoreError::ChunkMissing(*id),
        StoreError::ChunkCorrupt { id, source } => {
            StoreError::ChunkCorrupt { id: *id, source: clone_blob_err(source) }
        }
        StoreError::Remote(s) => StoreError::Remote(s.clone()),
        other => StoreError::Format { path: Default::default(), detail: other.to_string() },
    })
}

fn clone_blob_err(e: &chunker::BlobError) -> chunker::BlobError {
    use chunker::BlobError as B;
    match e {
        B::Magic => B::Magic,
        B::Version(v) => B::Version(*v),
        B::Header(h) => B::Header(h),
        B::Truncated { have, want } => B::Truncated { have: *have, want: *want },
        B::Decompress(s) => B::Decompress(s.clone()),
        B::Digest { expected, actual } => B::Digest { expected: *expected, actual: *actual },
    }
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        drop(self.jobs.take());
        while self.results.try_recv().is_ok() {}
        for w in self.workers.drain(..) {
            // Workers end when the job channel closes; results they still
            // send are dropped with the receiver.
            drop(w);
        }
    }
}

/// Bytes inside a decoded chunk: (the chunk, offset, length).
pub type Slice = (Arc<Vec<u8>>, usize, usize);

/// A byte stream over a dynamic index.
pub struct StreamReader {
    index: DynamicIndex,
    fetch: Fetcher,
    pos: u64,
    chunk: Option<(usize, Arc<Vec<u8>>)>,
}

impl StreamReader {
    pub fn new(store: Arc<dyn ChunkRead>, index: DynamicIndex) -> Self {
        let ids = index.entries.iter().map(|e| e.1).collect();
        Self { fetch: Fetcher::new(store, ids), index, pos: 0, chunk: None }
    }

    /// Move to `offset` (forward skips read nothing in between).
    pub fn seek_to(&mut self, offset: u64) {
        self.pos = offset;
    }

    /// Copy up to `buf.len()` bytes at the current position.
    pub fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, StoreError> {
        let Some((data, at, n)) = self.borrow(buf.len() as u64)? else { return Ok(0) };
        buf[..n].copy_from_slice(&data[at..at + n]);
        Ok(n)
    }

    /// Up to `max` bytes at the current position without copying them:
    /// the decoded chunk holding them, and where in it they lie (offset,
    /// length); `None` at the end of the stream.
    pub fn borrow(&mut self, max: u64) -> Result<Option<Slice>, StoreError> {
        let Some(i) = self.index.chunk_at(self.pos) else { return Ok(None) };
        if self.chunk.as_ref().is_none_or(|(k, _)| *k != i) {
            let data = self.fetch.get(i)?;
            let want = self.index.entries[i].0 - self.index.start(i);
            if data.len() as u64 != want {
                return Err(StoreError::ChunkCorrupt {
                    id: self.index.entries[i].1,
                    source: chunker::BlobError::Header("chunk length differs from the index"),
                });
            }
            self.chunk = Some((i, data));
        }
        let (_, data) = self.chunk.as_ref().expect("loaded");
        let at = (self.pos - self.index.start(i)) as usize;
        let n = max.min((data.len() - at) as u64) as usize;
        self.pos += n as u64;
        Ok(Some((data.clone(), at, n)))
    }
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.read_some(buf).map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Chunks by id, counting the reads of each.
    struct Counted {
        chunks: HashMap<ChunkId, Vec<u8>>,
        reads: Mutex<HashMap<ChunkId, usize>>,
        parallel: usize,
    }

    impl ChunkRead for Counted {
        fn read_chunk(&self, id: &ChunkId) -> Result<Vec<u8>, StoreError> {
            *self.reads.lock().unwrap().entry(*id).or_default() += 1;
            self.chunks.get(id).cloned().ok_or(StoreError::ChunkMissing(*id))
        }

        fn parallel_reads(&self) -> usize {
            self.parallel
        }
    }

    fn store(names: &str, parallel: usize) -> (Arc<Counted>, Vec<ChunkId>) {
        let mut chunks = HashMap::new();
        let ids = names
            .bytes()
            .map(|c| {
                let data = vec![c; 100 + c as usize];
                let id = ChunkId::of(&data);
                chunks.insert(id, data);
                id
            })
            .collect();
        (Arc::new(Counted { chunks, reads: Mutex::default(), parallel }), ids)
    }

    /// A chunk that comes again a few positions later (as in a payload
    /// stream after a changed file) is read once; one that comes again
    /// far later, or whose first time the reader skipped, is read again;
    /// every position gives its own chunk's bytes, with one or many
    /// parallel reads.
    #[test]
    fn a_chunk_repeated_nearby_is_read_once() {
        let names = "ABCBDEDFGHIJKLMNOPQRA";
        for parallel in [1, 8] {
            let (counted, ids) = store(names, parallel);
            let mut f = Fetcher::new(counted.clone(), ids.clone());
            for (i, c) in names.bytes().enumerate() {
                assert_eq!(*f.get(i).unwrap(), vec![c; 100 + c as usize], "position {i}");
            }
            let reads = counted.reads.lock().unwrap().clone();
            let of = |c: u8| reads.get(&ids[names.bytes().position(|x| x == c).unwrap()]).copied();
            assert_eq!((of(b'B'), of(b'D')), (Some(1), Some(1)), "parallel {parallel}");
            assert_eq!(of(b'A'), Some(2), "far apart: read again");

            // The reader skips the first D (read ahead all the same): its
            // repeat is read again, on its own.
            let skipping = "ABCDEDF";
            let (counted, ids) = store(skipping, parallel);
            let mut f = Fetcher::new(counted.clone(), ids.clone());
            for i in [0, 1, 2, 4, 5, 6] {
                let c = skipping.as_bytes()[i];
                assert_eq!(*f.get(i).unwrap(), vec![c; 100 + c as usize], "position {i}");
            }
            let reads = counted.reads.lock().unwrap().clone();
            assert_eq!((reads[&ids[3]], reads.values().sum::<usize>()), (2, 7), "{reads:?}");
        }
    }

    /// A payload stream after changed files: the reader goes through a
    /// run of chunks and out to the chunks after it for each changed
    /// file's data, and back. The run stays read ahead by the workers;
    /// only the excursions are read on the reader's thread. A reader that
    /// jumps and goes on from there gets the window moved after it.
    #[test]
    fn a_jump_out_and_back_keeps_the_window() {
        let names: String = (0..60u8).map(|i| (b'0' + i) as char).collect();
        let mut order: Vec<usize> = Vec::new();
        for i in 0..40 {
            order.push(i);
            if i % 10 == 5 {
                order.extend([40 + i / 10 * 2, 41 + i / 10 * 2]);
            }
        }
        order.extend(40..60);
        // A restore of one subtree: far on, then onwards from there.
        let skip = [0, 1, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39];
        for parallel in [1, 8] {
            let (counted, ids) = store(&names, parallel);
            let reader = std::thread::current().id();
            let on_reader = Arc::new(Mutex::new(Vec::new()));
            let log = on_reader.clone();
            let by_thread = Arc::new(ByThread { inner: counted.clone(), reader, log });
            let mut f = Fetcher::new(by_thread, ids.clone());
            for &i in &order {
                let c = names.as_bytes()[i];
                assert_eq!(*f.get(i).unwrap(), vec![c; 100 + c as usize], "position {i}");
            }
            drop(f);
            let sync = on_reader.lock().unwrap().clone();
            assert!(sync.iter().all(|&i| i >= 40), "the run read on the reader's thread: {sync:?}");
            let reads = counted.reads.lock().unwrap().values().sum::<usize>();
            assert!(reads <= 60 + 8, "{reads} reads for 60 chunks");

            let (counted, ids) = store(&names, parallel);
            let on_reader = Arc::new(Mutex::new(Vec::new()));
            let by_thread = Arc::new(ByThread { inner: counted, reader, log: on_reader.clone() });
            let mut f = Fetcher::new(by_thread, ids);
            for &i in &skip {
                assert_eq!(f.get(i).unwrap()[0], names.as_bytes()[i]);
            }
            drop(f);
            let sync = on_reader.lock().unwrap().clone();
            assert!(sync.len() <= 2, "after a jump, onwards is read ahead: {sync:?}");

            // Many files' data in one chunk after the run, with run chunks
            // between them: that chunk is read once.
            let (counted, ids) = store(&names, parallel);
            let mut f = Fetcher::new(counted.clone(), ids.clone());
            for i in 0..40 {
                assert_eq!(f.get(i).unwrap()[0], names.as_bytes()[i]);
                if i % 5 == 4 {
                    // More run chunks between than `recent` keeps.
                    assert_eq!(f.get(50 + i / 20).unwrap()[0], names.as_bytes()[50 + i / 20]);
                }
            }
            drop(f);
            let reads = counted.reads.lock().unwrap().clone();
            assert_eq!((reads[&ids[50]], reads[&ids[51]]), (1, 1), "jumped to and read again");

            // A chunk taken on a jump from the window, then reached again
            // in order (past `RECENT` others), is read again, not waited
            // for forever.
            let (counted, ids) = store(&names, parallel);
            let (done, finished) = std::sync::mpsc::channel();
            let taker = names.clone();
            std::thread::spawn(move || {
                let mut f = Fetcher::new(counted, ids);
                for i in [0, 1, 2, 3, 9, 4, 5, 6, 7, 8, 9, 10] {
                    assert_eq!(f.get(i).unwrap()[0], taker.as_bytes()[i], "position {i}");
                }
                done.send(()).unwrap();
            });
            finished.recv_timeout(std::time::Duration::from_secs(20)).expect("the reader got every chunk");

            // Back to a chunk still on its way from a worker after the
            // window moved on: it is taken when it comes.
            let (counted, ids) = store(&names, parallel);
            let slow = Arc::new(Slow { inner: counted, slow: b'5' });
            let (done, finished) = std::sync::mpsc::channel();
            let taker = names.clone();
            std::thread::spawn(move || {
                let mut f = Fetcher::new(slow, ids);
                for i in [0, 30, 31, 32, 5, 33] {
                    assert_eq!(f.get(i).unwrap()[0], taker.as_bytes()[i], "position {i}");
                }
                done.send(()).unwrap();
            });
            finished.recv_timeout(std::time::Duration::from_secs(20)).expect("the reader got every chunk");
        }
    }

    /// Reads through `inner`, the chunk starting with byte `slow` slowly.
    struct Slow {
        inner: Arc<Counted>,
        slow: u8,
    }

    impl ChunkRead for Slow {
        fn read_chunk(&self, id: &ChunkId) -> Result<Vec<u8>, StoreError> {
            let data = self.inner.read_chunk(id)?;
            if data[0] == self.slow {
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
            Ok(data)
        }

        fn parallel_reads(&self) -> usize {
            self.inner.parallel
        }
    }

    /// Reads through `inner`, noting the chunks read on the reader's own
    /// thread (not read ahead) by their first byte's position.
    struct ByThread {
        inner: Arc<Counted>,
        reader: std::thread::ThreadId,
        log: Arc<Mutex<Vec<usize>>>,
    }

    impl ChunkRead for ByThread {
        fn read_chunk(&self, id: &ChunkId) -> Result<Vec<u8>, StoreError> {
            let data = self.inner.read_chunk(id)?;
            if std::thread::current().id() == self.reader {
                self.log.lock().unwrap().push((data[0] - b'0') as usize);
            }
            Ok(data)
        }

        fn parallel_reads(&self) -> usize {
            self.inner.parallel
        }
    }
}
