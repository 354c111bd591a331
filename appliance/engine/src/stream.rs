//! Reading chunked streams back: a fetcher that decodes chunks on worker
//! threads a window ahead of the reader, and a byte reader over a dynamic
//! index with cheap forward skips and random access.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use chunker::ChunkId;
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use filevol::{DynamicIndex, StoreError};

use crate::target::ChunkRead;

/// How many chunks are decoded ahead of the reader, at least (a reader
/// with more parallel reads gets a window as wide as those).
const WINDOW: usize = 8;

type Fetched = (usize, Result<Arc<Vec<u8>>, Arc<StoreError>>);

/// Decodes the chunks of one index in order, a window ahead.
pub struct Fetcher {
    store: Arc<dyn ChunkRead>,
    ids: Vec<ChunkId>,
    jobs: Option<Sender<(usize, ChunkId)>>,
    results: Receiver<Fetched>,
    ready: HashMap<usize, Result<Arc<Vec<u8>>, Arc<StoreError>>>,
    next_submit: usize,
    low: usize,
    workers: Vec<std::thread::JoinHandle<()>>,
    window: usize,
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
            low: 0,
            workers,
            window,
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// The plain bytes of chunk `i`. Sequential calls are served from the
    /// read-ahead window; a jump restarts the window there.
    pub fn get(&mut self, i: usize) -> Result<Arc<Vec<u8>>, StoreError> {
        if i < self.low {
            return self.store.read_chunk(&self.ids[i]).map(Arc::new);
        }
        if i > self.next_submit + self.window {
            self.ready.clear();
            self.next_submit = i;
        }
        self.low = i + 1;
        self.ready.retain(|k, _| *k >= i);
        while self.next_submit < self.ids.len() && self.next_submit <= i + self.window {
            let j = self.next_submit;
            self.jobs.as_ref().expect("open").send((j, self.ids[j])).expect("workers alive");
            self.next_submit += 1;
        }
        loop {
            if let Some(r) = self.ready.remove(&i) {
                return r.map_err(unwrap_err);
            }
            let (k, r) = self.results.recv().expect("workers alive");
            if k >= i {
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
