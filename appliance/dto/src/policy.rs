//! Stored policies: `cairn policy list --json` and `GET /api/v1/policies`.

use model::PolicyRecord;
use serde::Serialize;

/// A stored policy as the CLI's `--json` and the API show it.
#[derive(Debug, Serialize)]
pub struct PolicyJson {
    pub name: String,
    pub world: String,
    pub wit_version: String,
    pub policy_name: String,
    pub policy_version: String,
    pub description: String,
    pub params: Vec<ParamJson>,
    pub digest: String,
    pub size: u64,
    pub added: String,
    pub cpu_ms: u64,
    pub memory_mib: u64,
}

#[derive(Debug, Serialize)]
pub struct ParamJson {
    pub name: String,
    pub help: String,
}

impl PolicyJson {
    /// The first 12 characters of the digest, for pages.
    pub fn short_digest(&self) -> String {
        self.digest.chars().take(12).collect()
    }
}

impl From<&PolicyRecord> for PolicyJson {
    fn from(r: &PolicyRecord) -> Self {
        PolicyJson {
            name: r.name.clone(),
            world: r.world.clone(),
            wit_version: r.wit_version.clone(),
            policy_name: r.policy_name.clone(),
            policy_version: r.policy_version.clone(),
            description: r.description.clone(),
            params: r.params.iter().map(|(k, v)| ParamJson { name: k.clone(), help: v.clone() }).collect(),
            digest: r.digest.clone(),
            size: r.size,
            added: model::time::format_rfc3339(r.added),
            cpu_ms: r.cpu_ms,
            memory_mib: r.memory_mib,
        }
    }
}
