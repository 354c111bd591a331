//! The S3 datastore's operations on the working copy and the bucket
//! together: a snapshot's upload and deletion, catching up with the
//! bucket (attach, takeover, gc), the chunk markers. See `remote.rs`.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use chunker::ChunkId;

use crate::datastore::Datastore;
use crate::error::{IoContext, Result};
use crate::fsutil::create_dir_all_durable;
use crate::remote::{Remote, mark};
use crate::snapshot::MANIFEST_FILE;

/// What `sync_from_bucket` changed in the working copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Snapshots fetched from the bucket.
    pub pulled: u64,
    /// Snapshots dropped from the working copy (gone from the bucket).
    pub dropped: u64,
}

/// A key's path components, if each is a plain name (a bucket is input).
fn safe_rel(key: &str) -> Option<PathBuf> {
    let mut p = PathBuf::new();
    for c in key.split('/') {
        if c.is_empty() || c == "." || c == ".." || c.contains('\0') || c.len() > 255 {
            return None;
        }
        p.push(c);
    }
    Some(p)
}

impl Datastore {
    fn need_remote(&self) -> &Remote {
        self.remote().expect("an S3 datastore")
    }

    /// The bucket key of a snapshot directory: its path under the root.
    pub(crate) fn snapshot_key(&self, id: &model::SnapshotId) -> String {
        let dir = self.snapshot_dir(id);
        let rel = dir.strip_prefix(self.root()).expect("snapshot dirs are under the root");
        rel.iter().map(|c| c.to_string_lossy()).collect::<Vec<_>>().join("/")
    }

    /// Upload a finished snapshot directory: every file, the manifest last.
    pub(crate) fn upload_snapshot(&self, dir: &Path, id: &model::SnapshotId) -> Result<()> {
        let r = self.need_remote();
        let key = self.snapshot_key(id);
        let mut names: Vec<String> = fs::read_dir(dir)
            .at(dir)?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n != MANIFEST_FILE)
            .collect();
        names.sort();
        names.push(MANIFEST_FILE.to_owned());
        for name in names {
            let p = dir.join(&name);
            r.bucket.put(&format!("{key}/{name}"), fs::read(&p).at(&p)?)?;
        }
        Ok(())
    }

    /// Delete a snapshot's objects: the manifest first, so that the
    /// snapshot stops being complete before anything else goes.
    pub(crate) fn delete_bucket_snapshot(&self, key: &str) -> Result<()> {
        let r = self.need_remote();
        r.bucket.delete(&format!("{key}/{}", MANIFEST_FILE))?;
        for (k, _) in r.bucket.list(key)? {
            r.bucket.delete(&k)?;
        }
        Ok(())
    }

    /// Bring the working copy's snapshot directories in line with the
    /// bucket: fetch every complete snapshot it lacks (files first, the
    /// manifest last, renamed into place whole) and, with `drop_missing`,
    /// drop the ones the bucket no longer has.
    pub fn sync_from_bucket(&self, drop_missing: bool) -> Result<SyncStats> {
        let r = self.need_remote();
        let mut dirs: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for (key, _) in r.bucket.list("snapshots")? {
            if let Some((dir, name)) = key.rsplit_once('/') {
                dirs.entry(dir.to_owned()).or_default().push(name.to_owned());
            }
        }
        let mut stats = SyncStats::default();
        let mut in_bucket = std::collections::HashSet::new();
        for (dir, mut names) in dirs {
            if !names.iter().any(|n| n == MANIFEST_FILE) {
                continue;
            }
            let Some(rel) = safe_rel(&dir) else { continue };
            let local = self.root().join(&rel);
            in_bucket.insert(local.clone());
            if local.join(MANIFEST_FILE).is_file() {
                continue;
            }
            let area = self.work_area()?;
            let tmp = area.path().join("snapshot");
            fs::create_dir(&tmp).at(&tmp)?;
            names.sort_by_key(|n| n == MANIFEST_FILE);
            for name in names {
                if safe_rel(&name).is_none_or(|p| p.components().count() != 1) {
                    continue;
                }
                let Some(bytes) = r.bucket.get(&format!("{dir}/{name}"))? else { continue };
                let p = tmp.join(&name);
                let mut f = OpenOptions::new().write(true).create_new(true).open(&p).at(&p)?;
                f.write_all(&bytes).at(&p)?;
                f.sync_all().at(&p)?;
            }
            crate::fsutil::fsync_dir(&tmp)?;
            let parent = local.parent().expect("a snapshot dir has a parent");
            create_dir_all_durable(parent)?;
            fs::rename(&tmp, &local).at(&local)?;
            crate::fsutil::fsync_dir(parent)?;
            stats.pulled += 1;
        }
        if drop_missing {
            for id in self.list_snapshots()? {
                let dir = self.snapshot_dir(&id);
                if !in_bucket.contains(&dir) {
                    let trash = self.dir("trash").join(uuid::Uuid::new_v4().simple().to_string());
                    fs::rename(&dir, &trash).at(&dir)?;
                    fs::remove_dir_all(&trash).at(&trash)?;
                    stats.dropped += 1;
                }
            }
        }
        Ok(stats)
    }

    /// Make the chunk markers say exactly what the bucket holds (after an
    /// attach or a takeover, when another appliance may have written).
    pub fn rebuild_markers(&self) -> Result<u64> {
        let r = self.need_remote();
        let mut want: std::collections::HashSet<ChunkId> = r
            .bucket
            .list("chunks")?
            .into_iter()
            .filter_map(|(k, _)| ChunkId::from_hex(k.rsplit('/').next()?))
            .collect();
        let n = want.len() as u64;
        for shard in 0..=255u8 {
            for (id, _) in self.chunks().list_local_shard(shard)? {
                if !want.remove(&id) {
                    let p = self.chunks().path(&id);
                    fs::remove_file(&p).at(&p)?;
                    r.uncache(&id);
                }
            }
        }
        for id in want {
            mark(&self.chunks().path(&id))?;
        }
        Ok(n)
    }

    /// Claim the bucket for this datastore directory (disaster recovery:
    /// the old appliance is gone), then catch up with what it wrote.
    pub fn take_over(&self) -> Result<SyncStats> {
        let r = self.need_remote();
        r.claim()?;
        self.rebuild_markers()?;
        self.sync_from_bucket(true)
    }

    /// Finish deletions a crash interrupted: `trash/<uuid>.prefix` names a
    /// snapshot whose objects may still be in the bucket.
    pub(crate) fn finish_bucket_deletions(&self) -> Result<()> {
        let trash = self.dir("trash");
        for entry in fs::read_dir(&trash).at(&trash)? {
            let path = entry.at(&trash)?.path();
            if path.extension().is_none_or(|e| e != "prefix") {
                continue;
            }
            let key = fs::read_to_string(&path).at(&path)?;
            if let Some(rel) = safe_rel(key.trim())
                && !self.root().join(rel).join(MANIFEST_FILE).is_file()
            {
                self.delete_bucket_snapshot(key.trim())?;
            }
            fs::remove_file(&path).at(&path)?;
        }
        Ok(())
    }
}
