//! What requests carry, parsed: query strings, snapshot and group names
//! in paths, roles; and the percent-encoding of a path put back in a
//! link. Errors are the caller's mistakes (400).

use model::{BackupGroup, Namespace, Role, SnapshotId};
use serde::Deserialize;

use crate::error::{AppError, AppResult};

/// `?ns=a/b` on routes that name a group or snapshot.
#[derive(Debug, Default, Deserialize)]
pub struct NsQuery {
    #[serde(default)]
    pub ns: String,
}

/// A snapshot named by the path `{type}/{id}/{time}` and `?ns=`.
pub fn snapshot_id(kind: &str, id: &str, time: &str, ns: &str) -> AppResult<SnapshotId> {
    let ns = Namespace::parse(ns)?;
    Ok(SnapshotId::parse(&format!("{kind}/{id}/{time}"), &ns)?)
}

#[derive(Debug, Deserialize)]
pub struct PathQuery {
    #[serde(default)]
    pub ns: String,
    #[serde(default)]
    pub path: String,
}

pub fn parse_role(text: &str) -> AppResult<Role> {
    Role::parse(text).ok_or_else(|| {
        AppError::bad_request(format!("unknown role {text:?}: use admin, operator, auditor or backup-client"))
    })
}

/// Parse a group as the API takes it: `[ns/NAME/]TYPE/ID`.
pub fn parse_group(text: &str) -> AppResult<BackupGroup> {
    Ok(BackupGroup::parse(text, &Namespace::root())?)
}

/// Percent-encode a path for a query parameter.
pub fn urlencoding(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
