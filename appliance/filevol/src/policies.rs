//! The compiled-artifact cache of policy components:
//! `policies/<blake3>.<tag>.cwasm`, a component compiled by the build whose
//! engine `tag` names (16 hex digits), as the policy host sealed it. This
//! module stores and returns those bytes as they are; the policy host
//! checks them before use and compiles again when they are missing or
//! unusable, so losing or damaging one costs a compile, nothing more.
//!
//! The components themselves and their records are kept in the catalog.
//! Datastores written before that kept them here (`policies/<name>.json`
//! and `policies/<blake3>.wasm`); `legacy_policies` reads those so the
//! engine can move them into the catalog, and `remove_legacy_policy`
//! removes them once it has.

use std::fs;
use std::io::Read;
use std::path::PathBuf;

use model::PolicyRecord;
use model::policy::{DEFAULT_CPU_MS, DEFAULT_MEMORY_MIB, valid_digest, valid_name};
use serde::Deserialize;

use crate::Datastore;
use crate::error::{IoContext, Result, StoreError};
use crate::fsutil::{create_dir_all_durable, write_atomic};

/// A record as `policies/<name>.json` held it.
#[derive(Deserialize)]
struct LegacyRecord {
    name: String,
    world: String,
    wit_version: String,
    policy_name: String,
    policy_version: String,
    description: String,
    params: Vec<(String, String)>,
    digest: String,
    size: u64,
    added: i64,
    #[serde(default = "default_cpu_ms")]
    cpu_ms: u64,
    #[serde(default = "default_memory_mib")]
    memory_mib: u64,
}

fn default_cpu_ms() -> u64 {
    DEFAULT_CPU_MS
}

fn default_memory_mib() -> u64 {
    DEFAULT_MEMORY_MIB
}

/// Largest compiled artifact read back (the policy host's own limit is
/// lower; this only keeps a stray huge file from being read whole).
const MAX_ARTIFACT_BYTES: u64 = 512 << 20;

fn hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Datastore {
    fn policy_dir(&self) -> PathBuf {
        self.root().join("policies")
    }

    /// `policies/<digest>.<tag>.cwasm`, both names checked to be plain hex.
    fn artifact_path(&self, digest: &str, tag: &str) -> Result<PathBuf> {
        if !hex(digest, 64) || !hex(tag, 16) {
            return Err(StoreError::Format {
                path: PathBuf::from(format!("{digest}.{tag}.cwasm")),
                detail: "a compiled artifact is named by 64 and 16 lower-case hex digits".into(),
            });
        }
        Ok(self.policy_dir().join(format!("{digest}.{tag}.cwasm")))
    }

    /// Policies kept in `policies/` by an older build, each with its
    /// component's bytes (checked against the record's digest), by name.
    pub fn legacy_policies(&self) -> Result<Vec<(PolicyRecord, Vec<u8>)>> {
        let dir = self.policy_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io(&dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry.at(&dir)?.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let format = |detail: String| StoreError::Format { path: path.clone(), detail };
            let bytes = fs::read(&path).at(&path)?;
            let r: LegacyRecord = serde_json::from_slice(&bytes).map_err(|e| format(e.to_string()))?;
            if !valid_name(&r.name) || !valid_digest(&r.digest) {
                return Err(format("not a policy record (bad name or digest)".into()));
            }
            let blob = dir.join(format!("{}.wasm", r.digest));
            let wasm = fs::read(&blob).at(&blob)?;
            if blake3::hash(&wasm).to_hex().as_str() != r.digest {
                return Err(format(format!("{} does not match the digest it is named by", blob.display())));
            }
            let record = PolicyRecord {
                name: r.name,
                world: r.world,
                wit_version: r.wit_version,
                policy_name: r.policy_name,
                policy_version: r.policy_version,
                description: r.description,
                params: r.params,
                digest: r.digest,
                size: r.size,
                added: r.added,
                cpu_ms: r.cpu_ms,
                memory_mib: r.memory_mib,
            };
            out.push((record, wasm));
        }
        out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        Ok(out)
    }

    /// Remove the files of the policies `legacy_policies` returned once
    /// they are stored elsewhere: every record first, then the components,
    /// so an interruption leaves no record without its component. The
    /// compiled artifacts stay; they are still the cache.
    pub fn remove_legacy_policies(&self, records: &[PolicyRecord]) -> Result<()> {
        let dir = self.policy_dir();
        let jsons = records.iter().map(|r| dir.join(format!("{}.json", r.name)));
        let blobs = records.iter().map(|r| dir.join(format!("{}.wasm", r.digest)));
        for path in jsons.chain(blobs) {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(&path, e)),
            }
        }
        crate::fsutil::fsync_dir(&dir)
    }

    /// Cache the compiled artifact of component `digest` for the build
    /// whose engine `tag` names (atomically: a reader sees the old file,
    /// the new one or none).
    pub fn save_policy_artifact(&self, digest: &str, tag: &str, artifact: &[u8]) -> Result<()> {
        let path = self.artifact_path(digest, tag)?;
        create_dir_all_durable(&self.policy_dir())?;
        write_atomic(&path, artifact)
    }

    /// The cached compiled artifact of component `digest` for build `tag`,
    /// as stored (unchecked: the policy host checks it); `None` if there is
    /// none.
    pub fn load_policy_artifact(&self, digest: &str, tag: &str) -> Result<Option<Vec<u8>>> {
        let path = self.artifact_path(digest, tag)?;
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        let len = file.metadata().at(&path)?.len();
        if len > MAX_ARTIFACT_BYTES {
            return Err(StoreError::Format {
                path,
                detail: format!(
                    "a compiled artifact of {len} bytes is over the {MAX_ARTIFACT_BYTES} byte limit"
                ),
            });
        }
        let mut bytes = Vec::with_capacity(len as usize);
        file.take(MAX_ARTIFACT_BYTES + 1).read_to_end(&mut bytes).at(&path)?;
        Ok(Some(bytes))
    }

    /// Remove every compiled artifact of component `digest`, whichever
    /// build made it.
    pub fn remove_policy_artifacts(&self, digest: &str) -> Result<()> {
        let dir = self.policy_dir();
        let prefix = format!("{digest}.");
        for entry in fs::read_dir(&dir).at(&dir)? {
            let path = entry.at(&dir)?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if name.starts_with(&prefix) && name.ends_with(".cwasm") {
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StoreError::io(&path, e)),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DatastoreConfig;

    fn datastore(dir: &tempfile::TempDir) -> Datastore {
        Datastore::init(&dir.path().join("ds"), DatastoreConfig::default()).expect("init").0
    }

    #[test]
    fn artifacts_are_kept_per_build_and_removed_per_component() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ds = datastore(&dir);
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let (old, new) = ("0123456789abcdef", "fedcba9876543210");
        assert_eq!(ds.load_policy_artifact(&a, new).expect("load"), None);
        ds.save_policy_artifact(&a, old, b"old build").expect("save");
        ds.save_policy_artifact(&a, new, b"new build").expect("save");
        ds.save_policy_artifact(&b, new, b"other").expect("save");
        assert_eq!(ds.load_policy_artifact(&a, new).expect("load").as_deref(), Some(&b"new build"[..]));
        assert_eq!(ds.load_policy_artifact(&a, old).expect("load").as_deref(), Some(&b"old build"[..]));
        // Names that are not plain hex never become paths.
        assert!(ds.load_policy_artifact("../../etc/passwd", new).is_err());
        assert!(ds.save_policy_artifact(&a, "../x", b"").is_err());
        // Artifacts are no policies.
        assert!(ds.legacy_policies().expect("legacy").is_empty());

        ds.remove_policy_artifacts(&a).expect("remove");
        assert_eq!(ds.load_policy_artifact(&a, new).expect("load"), None);
        assert_eq!(ds.load_policy_artifact(&a, old).expect("load"), None);
        assert!(ds.load_policy_artifact(&b, new).expect("load").is_some());
    }

    #[test]
    fn legacy_policy_files_are_read_checked_and_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ds = datastore(&dir);
        let wasm = b"component bytes";
        let digest = blake3::hash(wasm).to_hex().to_string();
        let policies = ds.policy_dir();
        fs::create_dir_all(&policies).expect("mkdir");
        fs::write(policies.join(format!("{digest}.wasm")), wasm).expect("blob");
        for name in ["gfs", "tags"] {
            let json = format!(
                r#"{{"name":"{name}","world":"retention","wit_version":"0.1.0","policy_name":"p","policy_version":"1",
                "description":"","params":[["keep-last","n"]],"digest":"{digest}","size":15,"added":7}}"#
            );
            fs::write(policies.join(format!("{name}.json")), json).expect("record");
        }
        ds.save_policy_artifact(&digest, "0123456789abcdef", b"compiled").expect("artifact");
        let found = ds.legacy_policies().expect("legacy");
        assert_eq!(found.len(), 2);
        let (gfs, bytes) = &found[0];
        assert_eq!(
            (gfs.name.as_str(), gfs.cpu_ms, gfs.memory_mib),
            ("gfs", DEFAULT_CPU_MS, DEFAULT_MEMORY_MIB)
        );
        assert_eq!(bytes, wasm);

        // A component that does not match its digest is refused.
        fs::write(policies.join(format!("{digest}.wasm")), b"other bytes").expect("damage");
        assert!(ds.legacy_policies().is_err());

        let records: Vec<_> = found.into_iter().map(|(r, _)| r).collect();
        ds.remove_legacy_policies(&records).expect("remove");
        assert!(ds.legacy_policies().expect("legacy").is_empty());
        let left: Vec<_> = fs::read_dir(&policies)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, vec![format!("{digest}.0123456789abcdef.cwasm")]);
    }
}
