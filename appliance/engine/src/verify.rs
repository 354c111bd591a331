//! Verification: re-read and re-hash every chunk the chosen snapshots
//! reference (each chunk once), move corrupt chunks to quarantine, and
//! record each snapshot's verify state in the datastore and the catalog.
//!
//! Invariant: verify never deletes a chunk; quarantined chunks stay in
//! `quarantine/` for inspection, and the next backup that needs one writes
//! it afresh.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use anyhow::Result;
use chunker::ChunkId;
use crossbeam_channel::bounded;
use filevol::StoreError;
use model::{SnapshotId, VerifyState};

use crate::Engine;
use crate::progress::Progress;

/// The verdict on one snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotVerdict {
    pub id: SnapshotId,
    pub ok: bool,
    /// Chunks it references that are missing or corrupt.
    pub bad_chunks: Vec<ChunkId>,
    /// Index or manifest problems.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub snapshots: Vec<SnapshotVerdict>,
    pub chunks: u64,
    pub bytes: u64,
    /// Chunk id → why it is bad (missing, or the decode error).
    pub bad: HashMap<ChunkId, String>,
}

impl Engine {
    /// The chunks snapshot `id` references, each with the plain length its
    /// index gives it.
    fn snapshot_chunks(&self, id: &SnapshotId) -> Result<Vec<(ChunkId, u64)>, StoreError> {
        let m = self.ds.read_manifest(id)?;
        let mut ids = Vec::new();
        for a in &m.archives {
            for r in &a.indexes {
                if r.file.ends_with(".fidx") {
                    ids.extend(self.ds.read_fidx(id, r)?.chunk_lengths());
                } else {
                    ids.extend(self.ds.read_didx(id, r)?.chunk_lengths());
                }
            }
        }
        Ok(ids)
    }

    /// Verify `ids`; `now` (epoch seconds) stamps the result.
    pub fn verify(&self, ids: &[SnapshotId], now: i64, progress: &Progress) -> Result<VerifyReport> {
        let mut unique = HashSet::new();
        let mut problems: HashMap<SnapshotId, String> = HashMap::new();
        for id in ids {
            match self.snapshot_chunks(id) {
                Ok(c) => unique.extend(c.into_iter().map(|(chunk, _)| chunk)),
                Err(e) => {
                    problems.insert(id.clone(), e.to_string());
                }
            }
        }
        let mut report = VerifyReport { chunks: unique.len() as u64, ..Default::default() };
        progress.total_files.store(unique.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let mut lengths = HashMap::new();
        report.bad = self.check_chunks(unique, now, progress, &mut report.bytes, &mut lengths)?;
        let cat = self.catalog()?;
        for id in ids {
            let (bad_chunks, problems) = match problems.remove(id) {
                Some(p) => (Vec::new(), vec![p]),
                None => {
                    let chunks = self.snapshot_chunks(id)?;
                    let mut bad: Vec<ChunkId> =
                        chunks.iter().map(|(c, _)| *c).filter(|c| report.bad.contains_key(c)).collect();
                    bad.sort();
                    bad.dedup();
                    // An index that gives a sound chunk another length than
                    // it holds would restore wrong data (or none).
                    let mut problems: Vec<String> = chunks
                        .iter()
                        .filter_map(|(c, want)| {
                            let holds = *lengths.get(c)?;
                            (holds != *want).then(|| {
                                format!("an index gives chunk {c} {want} bytes, but it holds {holds}")
                            })
                        })
                        .collect();
                    problems.sort();
                    problems.dedup();
                    (bad, problems)
                }
            };
            let ok = bad_chunks.is_empty() && problems.is_empty();
            let state = if ok { VerifyState::Ok } else { VerifyState::Failed };
            let mut s = self.ds.read_state(id)?;
            s.verify_state = state.as_str().into();
            s.verify_time = Some(now);
            self.ds.write_state(id, &s)?;
            cat.set_verify(id, state, now)?;
            report.snapshots.push(SnapshotVerdict { id: id.clone(), ok, bad_chunks, problems });
        }
        Ok(report)
    }

    /// Read every chunk on worker threads; quarantine corrupt ones.
    fn check_chunks(
        &self,
        ids: HashSet<ChunkId>,
        now: i64,
        progress: &Progress,
        bytes: &mut u64,
        lengths: &mut HashMap<ChunkId, u64>,
    ) -> Result<HashMap<ChunkId, String>> {
        // A bucket answers slower than a disk, but many reads at a time.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let n = if self.ds.remote().is_some() { cores.max(16) } else { cores.clamp(1, 16) };
        let bad = Mutex::new(HashMap::new());
        let plain = Mutex::new(HashMap::new());
        let total = std::sync::atomic::AtomicU64::new(0);
        let fatal = Mutex::new(None);
        let (tx, rx) = bounded::<ChunkId>(64);
        std::thread::scope(|s| {
            for _ in 0..n {
                let rx = rx.clone();
                let (bad, total, fatal, plain) = (&bad, &total, &fatal, &plain);
                s.spawn(move || {
                    for id in rx {
                        match self.ds.chunks().check(&id) {
                            Ok(len) => {
                                plain.lock().expect("lock").insert(id, len);
                                total.fetch_add(len, std::sync::atomic::Ordering::Relaxed);
                                progress.add_bytes(len);
                            }
                            Err(StoreError::ChunkMissing(_)) => {
                                bad.lock().expect("lock").insert(id, "missing".to_string());
                            }
                            Err(StoreError::ChunkCorrupt { source, .. }) => {
                                if let Err(e) = self.ds.chunks().quarantine(&id, now) {
                                    fatal.lock().expect("lock").get_or_insert(e);
                                }
                                bad.lock().expect("lock").insert(id, source.to_string());
                            }
                            Err(e) => {
                                fatal.lock().expect("lock").get_or_insert(e);
                            }
                        }
                        progress.add_file();
                    }
                });
            }
            for id in ids {
                if tx.send(id).is_err() {
                    break;
                }
            }
            drop(tx);
        });
        if let Some(e) = fatal.into_inner().expect("lock") {
            return Err(e.into());
        }
        *bytes = total.into_inner();
        *lengths = plain.into_inner().expect("lock");
        Ok(bad.into_inner().expect("lock"))
    }
}
