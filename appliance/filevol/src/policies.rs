//! Uploaded policy components, kept in the datastore so that they travel
//! with it: `policies/<blake3>.wasm` (the component, named by its digest)
//! and `policies/<name>.json` (a record naming it). Validating a component
//! is the policy host's job; this module only stores what it accepted.

use std::fs;
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

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !name.starts_with('.')
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

    /// Remove policy `name`; its component goes too unless another name
    /// uses it. Returns whether it existed.
    pub fn remove_policy(&self, name: &str) -> Result<bool> {
        let Some((record, _)) = self.load_policy(name)? else { return Ok(false) };
        let dir = self.policy_dir();
        let json = dir.join(format!("{name}.json"));
        fs::remove_file(&json).at(&json)?;
        if !self.list_policies()?.iter().any(|r| r.digest == record.digest) {
            let blob = dir.join(format!("{}.wasm", record.digest));
            fs::remove_file(&blob).at(&blob)?;
        }
        crate::fsutil::fsync_dir(&dir)?;
        Ok(true)
    }
}
