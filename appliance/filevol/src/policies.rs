//! Uploaded policy components, kept in the datastore so that they travel
//! with it: `policies/<blake3>.wasm` (the component, named by its digest)
//! and `policies/<name>.json` (a record naming it). Validating a component
//! is the policy host's job; this module only stores what it accepted.
//!
//! Next to a component, the compiled-artifact cache:
//! `policies/<blake3>.<tag>.cwasm`, the component compiled by the build
//! whose engine `tag` names (16 hex digits), as the policy host sealed it.
//! This module stores and returns those bytes as they are; the policy host
//! checks them before use and compiles again when they are missing or
//! unusable, so losing or damaging one costs a compile, nothing more.

use std::fs;
use std::io::Read;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::Datastore;
use crate::error::{IoContext, Result, StoreError};
use crate::fsutil::{create_dir_all_durable, write_atomic};

/// What `cairn policy list/show` prints, as stored in `policies/<name>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    /// The name operators use (`--policy NAME`).
    pub name: String,
    /// `retention`, `scheduler` or `source`.
    pub world: String,
    /// The `cairn:policy` WIT version it was built against.
    pub wit_version: String,
    /// The policy's own name and version, from its `describe`.
    pub policy_name: String,
    pub policy_version: String,
    pub description: String,
    /// (parameter, help) pairs from its `describe`.
    pub params: Vec<(String, String)>,
    /// blake3 of the component, hex.
    pub digest: String,
    pub size: u64,
    /// When it was added, epoch seconds.
    pub added: i64,
    /// CPU budget per call, milliseconds.
    #[serde(default = "default_cpu_ms")]
    pub cpu_ms: u64,
    /// Memory cap per call, MiB.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u64,
}

fn default_cpu_ms() -> u64 {
    1_000
}

fn default_memory_mib() -> u64 {
    64
}

/// Whether `name` may name a stored policy: 1 to 64 letters, digits, `-`,
/// `_` or `.`, not starting with `.`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !name.starts_with('.')
}

/// Largest compiled artifact read back (the policy host's own limit is
/// lower; this only keeps a stray huge file from being read whole).
const MAX_ARTIFACT_BYTES: u64 = 512 << 20;

fn hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn bad(name: &str) -> StoreError {
    StoreError::Format {
        path: PathBuf::from(name),
        detail: "a policy name is 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'".into(),
    }
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

    /// Store `wasm` under `record.name` (replacing a policy of that name).
    pub fn save_policy(&self, record: &PolicyRecord, wasm: &[u8]) -> Result<()> {
        if !valid_name(&record.name) {
            return Err(bad(&record.name));
        }
        let dir = self.policy_dir();
        create_dir_all_durable(&dir)?;
        let blob = dir.join(format!("{}.wasm", record.digest));
        if !blob.exists() {
            write_atomic(&blob, wasm)?;
        }
        let json = serde_json::to_vec_pretty(record).expect("policy record serializes");
        write_atomic(&dir.join(format!("{}.json", record.name)), &json)
    }

    /// Every stored policy, by name.
    pub fn list_policies(&self) -> Result<Vec<PolicyRecord>> {
        let dir = self.policy_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io(&dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry.at(&dir)?.path();
            if path.extension().is_some_and(|x| x == "json") {
                let bytes = fs::read(&path).at(&path)?;
                let r: PolicyRecord = serde_json::from_slice(&bytes)
                    .map_err(|e| StoreError::Format { path: path.clone(), detail: e.to_string() })?;
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The record and component bytes of policy `name`; `None` if unknown.
    pub fn load_policy(&self, name: &str) -> Result<Option<(PolicyRecord, Vec<u8>)>> {
        if !valid_name(name) {
            return Err(bad(name));
        }
        let Some(record) = self.list_policies()?.into_iter().find(|r| r.name == name) else {
            return Ok(None);
        };
        let path = self.policy_dir().join(format!("{}.wasm", record.digest));
        let wasm = fs::read(&path).at(&path)?;
        if blake3::hash(&wasm).to_hex().as_str() != record.digest {
            return Err(StoreError::Format {
                path,
                detail: "the component's bytes do not match its digest; add the policy again".into(),
            });
        }
        Ok(Some((record, wasm)))
    }

    /// Remove policy `name`; its component and the component's compiled
    /// artifacts go too unless another name uses it. Returns whether it
    /// existed.
    pub fn remove_policy(&self, name: &str) -> Result<bool> {
        let Some((record, _)) = self.load_policy(name)? else { return Ok(false) };
        let dir = self.policy_dir();
        let json = dir.join(format!("{name}.json"));
        fs::remove_file(&json).at(&json)?;
        if !self.list_policies()?.iter().any(|r| r.digest == record.digest) {
            let blob = dir.join(format!("{}.wasm", record.digest));
            fs::remove_file(&blob).at(&blob)?;
            self.remove_policy_artifacts(&record.digest)?;
        }
        crate::fsutil::fsync_dir(&dir)?;
        Ok(true)
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
    fn remove_policy_artifacts(&self, digest: &str) -> Result<()> {
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

    fn record(name: &str, wasm: &[u8]) -> PolicyRecord {
        PolicyRecord {
            name: name.into(),
            world: "retention".into(),
            wit_version: "0.1.0".into(),
            policy_name: name.into(),
            policy_version: "1".into(),
            description: String::new(),
            params: vec![],
            digest: blake3::hash(wasm).to_hex().to_string(),
            size: wasm.len() as u64,
            added: 0,
            cpu_ms: 1000,
            memory_mib: 64,
        }
    }

    #[test]
    fn artifacts_are_kept_per_build_and_go_with_their_component() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ds, _) = Datastore::init(&dir.path().join("ds"), DatastoreConfig::default()).expect("init");
        let wasm = b"component bytes";
        let (a, b) = (record("a", wasm), record("b", wasm));
        ds.save_policy(&a, wasm).expect("save a");
        ds.save_policy(&b, wasm).expect("save b");
        let (old, new) = ("0123456789abcdef", "fedcba9876543210");
        assert_eq!(ds.load_policy_artifact(&a.digest, new).expect("load"), None);
        ds.save_policy_artifact(&a.digest, old, b"old build").expect("save");
        ds.save_policy_artifact(&a.digest, new, b"new build").expect("save");
        assert_eq!(
            ds.load_policy_artifact(&a.digest, new).expect("load").as_deref(),
            Some(&b"new build"[..])
        );
        assert_eq!(
            ds.load_policy_artifact(&a.digest, old).expect("load").as_deref(),
            Some(&b"old build"[..])
        );
        // Names that are not plain hex never become paths.
        assert!(ds.load_policy_artifact("../../etc/passwd", new).is_err());
        assert!(ds.save_policy_artifact(&a.digest, "../x", b"").is_err());
        // Records and listings ignore artifacts.
        assert_eq!(ds.list_policies().expect("list").len(), 2);

        // Still used by b: the artifacts stay.
        assert!(ds.remove_policy("a").expect("rm a"));
        assert!(ds.load_policy_artifact(&b.digest, new).expect("load").is_some());
        // The last name goes: component and every build's artifact too.
        assert!(ds.remove_policy("b").expect("rm b"));
        assert_eq!(ds.load_policy_artifact(&b.digest, new).expect("load"), None);
        assert_eq!(ds.load_policy_artifact(&b.digest, old).expect("load"), None);
        let left: Vec<_> = fs::read_dir(ds.policy_dir()).expect("dir").collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
