//! The remote backup protocol's messages, shared by the server's handlers
//! and the client. JSON bodies are these types; chunk and index bodies are
//! raw bytes (`application/octet-stream`).
//!
//! A backup:
//!
//! ```text
//! POST   /api/v1/backup                           BackupStart -> BackupSession
//! GET    /api/v1/reader/{previous}/indexes/{file}  the previous snapshot's indexes
//! GET    /api/v1/reader/{previous}/chunks/{id}     its chunks (for change detection)
//! PUT    /api/v1/backup/{session}/chunks/{id}      a chunk blob the server lacks
//! PUT    /api/v1/backup/{session}/indexes/{file}   an index -> IndexRef
//! POST   /api/v1/backup/{session}/finish           Manifest -> Finished
//! DELETE /api/v1/backup/{session}                  abort
//! ```
//!
//! A restore opens a reader session (`POST /api/v1/reader`, ReaderStart ->
//! ReaderSession) and reads indexes and chunks of that one snapshot.
//!
//! A backup or restore through a source handler that runs on the client
//! first fetches the handler the server stores:
//!
//! ```text
//! GET    /api/v1/sources                          -> [SourceHandlerInfo]
//! GET    /api/v1/sources/{name}/component         the component (application/wasm)
//! ```
//!
//! and checks the component against the listed digest before compiling it.
//!
//! Invariants: a client learns only the chunks of its group's newest
//! snapshot (no probing for others); an index may name only those chunks
//! and the ones uploaded in the same session; nothing is visible until
//! `finish` commits, and an abandoned session leaves only collectable
//! chunks.

use chunker::CdcParams;
use filevol::{DatastoreConfig, Manifest};
use serde::{Deserialize, Serialize};

/// Largest chunk blob accepted (a 16 MiB chunk stored uncompressed, plus
/// its header).
pub const MAX_CHUNK_BODY: usize = (16 << 20) + 4096;
/// Largest index file accepted (a 2 TiB image in 4 MiB chunks).
pub const MAX_INDEX_BODY: usize = 64 << 20;
/// Largest manifest accepted.
pub const MAX_MANIFEST_BODY: usize = 16 << 20;

/// `POST /api/v1/backup`.
#[derive(Debug, Serialize, Deserialize)]
pub struct BackupStart {
    /// The group, `[ns/NAME/]TYPE/ID`.
    pub group: String,
    /// Snapshot time, Unix seconds; absent: the server dates the snapshot
    /// (now, or a second after the group's newest). A given time is checked
    /// against the server's clock (see `docs/security.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<i64>,
}

/// The datastore's chunking and compression settings, which the client uses.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct StoreSettings {
    pub cdc_min: usize,
    pub cdc_avg: usize,
    pub cdc_max: usize,
    pub zstd_level: i32,
}

impl From<DatastoreConfig> for StoreSettings {
    fn from(c: DatastoreConfig) -> Self {
        Self { cdc_min: c.cdc.min, cdc_avg: c.cdc.avg, cdc_max: c.cdc.max, zstd_level: c.zstd_level }
    }
}

impl StoreSettings {
    /// Checked: a server cannot make the client chunk absurdly.
    pub fn config(self) -> anyhow::Result<DatastoreConfig> {
        let cdc = CdcParams { min: self.cdc_min, avg: self.cdc_avg, max: self.cdc_max }
            .validate()
            .map_err(|e| anyhow::anyhow!("the server sent unusable chunking settings: {e}"))?;
        if !(1..=19).contains(&self.zstd_level) {
            anyhow::bail!("the server sent an unusable zstd level {}", self.zstd_level);
        }
        Ok(DatastoreConfig { cdc, zstd_level: self.zstd_level })
    }
}

/// The answer to `BackupStart`.
#[derive(Debug, Serialize, Deserialize)]
pub struct BackupSession {
    pub session: String,
    /// The snapshot being made, `[ns/NAME/]TYPE/ID/TIME`.
    pub snapshot: String,
    pub settings: StoreSettings,
    /// The group's newest snapshot, readable through a reader session.
    pub previous: Option<ReaderSession>,
    /// Chunk uploads the caller may have in flight at once (the server's
    /// `uploads_per_caller`); more are answered 429. Absent from servers
    /// that predate it: then [`DEFAULT_UPLOADS`].
    #[serde(default = "default_uploads")]
    pub uploads: usize,
}

/// Uploads in flight per caller: the server's default `uploads_per_caller`,
/// and what a client assumes when a server does not say.
pub const DEFAULT_UPLOADS: usize = 8;

fn default_uploads() -> usize {
    DEFAULT_UPLOADS
}

/// `POST /api/v1/reader`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReaderStart {
    /// `[ns/NAME/]TYPE/ID/TIME`.
    pub snapshot: String,
}

/// A snapshot opened for reading.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReaderSession {
    pub session: String,
    pub snapshot: String,
    pub manifest: Manifest,
}

/// The answer to `finish`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Finished {
    pub snapshot: String,
    /// The manifest as committed (the server's own chunk counts).
    pub manifest: Manifest,
}

/// A stored source handler as `GET /api/v1/sources` lists it: what a
/// client needs to fetch its component, check it and run it under the
/// budget the server's operator gave it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceHandlerInfo {
    /// The name it is stored under (`--source NAME`).
    pub name: String,
    /// The handler's own name and version, from its `describe`.
    pub policy_name: String,
    pub policy_version: String,
    /// blake3 of the component, hex.
    pub digest: String,
    pub size: u64,
    /// CPU budget per call, milliseconds.
    pub cpu_ms: u64,
    /// Memory cap, MiB.
    pub memory_mib: u64,
}

impl From<&model::PolicyRecord> for SourceHandlerInfo {
    fn from(r: &model::PolicyRecord) -> Self {
        Self {
            name: r.name.clone(),
            policy_name: r.policy_name.clone(),
            policy_version: r.policy_version.clone(),
            digest: r.digest.clone(),
            size: r.size,
            cpu_ms: r.cpu_ms,
            memory_mib: r.memory_mib,
        }
    }
}

impl SourceHandlerInfo {
    /// The policy record a client loads the fetched component under.
    pub fn record(&self) -> model::PolicyRecord {
        model::PolicyRecord {
            name: self.name.clone(),
            world: "source".into(),
            wit_version: String::new(),
            policy_name: self.policy_name.clone(),
            policy_version: self.policy_version.clone(),
            description: String::new(),
            params: Vec::new(),
            digest: self.digest.clone(),
            size: self.size,
            added: 0,
            cpu_ms: self.cpu_ms,
            memory_mib: self.memory_mib,
        }
    }
}

/// Whether `file` is a plain index file name (`www.meta.didx`, `disk.img.fidx`).
pub fn index_name_ok(file: &str) -> bool {
    file.len() <= 200
        && (file.ends_with(".didx") || file.ends_with(".fidx"))
        && file.starts_with(|c: char| c.is_ascii_alphanumeric())
        && file.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// SHA-256 of a DER certificate as colon-separated lowercase hex pairs
/// (`aa:bb:…`): how the server prints its certificate and the form a
/// client pins (`--fingerprint`).
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(der);
    digest.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}
