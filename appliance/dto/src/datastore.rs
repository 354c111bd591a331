//! Where the datastore keeps its data: `cairn datastore status --json` and
//! `GET /api/v1/datastore` print this.

use engine::{Engine, Owner, SyncStats};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct DatastoreJson {
    /// `directory` or `s3`.
    pub kind: &'static str,
    pub directory: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<BucketJson>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BucketJson {
    pub endpoint: String,
    pub bucket: String,
    pub prefix: String,
    pub region: String,
    /// This datastore directory's identity in the owner object.
    pub instance: String,
    pub owner: Option<Owner>,
    /// Whether this machine holds the claim (else it reads only).
    pub writable: bool,
    pub cache_bytes: u64,
    pub cache_limit: u64,
    /// Requests this process made to the object store, and the bytes.
    pub requests: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

impl DatastoreJson {
    /// Asks the bucket for its owner object (one request).
    pub fn of(engine: &Engine) -> anyhow::Result<Self> {
        let ds = engine.datastore();
        let bucket = match ds.remote() {
            None => None,
            Some(r) => {
                let s = r.settings();
                let owner = r.owner()?;
                let c = engine::bucket_counters();
                Some(BucketJson {
                    endpoint: s.endpoint.clone(),
                    bucket: s.bucket.clone(),
                    prefix: s.prefix.clone(),
                    region: s.region.clone(),
                    instance: s.instance.clone(),
                    writable: owner.as_ref().is_some_and(|o| o.instance == s.instance),
                    owner,
                    cache_bytes: r.cache_bytes(),
                    cache_limit: s.cache_bytes,
                    requests: c.requests,
                    bytes_sent: c.bytes_sent,
                    bytes_received: c.bytes_received,
                })
            }
        };
        Ok(Self {
            kind: if bucket.is_some() { "s3" } else { "directory" },
            directory: ds.root().display().to_string(),
            bucket,
        })
    }

    /// `s3://bucket/prefix at endpoint (region r)`.
    pub fn place(&self) -> Option<String> {
        self.bucket.as_ref().map(|b| {
            let prefix = if b.prefix.is_empty() { String::new() } else { format!("/{}", b.prefix) };
            format!("s3://{}{prefix} at {} (region {})", b.bucket, b.endpoint, b.region)
        })
    }
}

/// What a takeover or refresh changed.
#[derive(Debug, Clone, Serialize)]
pub struct SyncJson {
    pub pulled: u64,
    pub dropped: u64,
}

impl From<SyncStats> for SyncJson {
    fn from(s: SyncStats) -> Self {
        Self { pulled: s.pulled, dropped: s.dropped }
    }
}
