//! Namespaces, backup groups and snapshot ids, with their one text form.
//!
//! A group is written `TYPE/ID` (`host/web01`), a snapshot `TYPE/ID/TIME`
//! (`host/web01/2026-11-22T03:00:00Z`). Outside the root namespace both get a
//! `ns/NAME/` prefix, where NAME may itself have `/`-separated levels:
//! `ns/prod/eu/host/web01/2026-11-22T03:00:00Z`. `ns` is therefore not a valid
//! group type. Every component is a restricted ASCII name, so the text form is
//! also a safe relative path.

use std::fmt;

use crate::time::{format_rfc3339, parse_rfc3339};

/// Why a name or reference was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error(
        "invalid namespace {0:?}: use up to 8 levels of letters, digits, '-', '_' or '.', separated by '/'"
    )]
    Namespace(String),
    #[error(
        "invalid group type {0:?}: use lowercase letters, digits and '-' (e.g. host, vm, ct), not \"ns\""
    )]
    GroupType(String),
    #[error("invalid group id {0:?}: use letters, digits, '-', '_' or '.', starting with a letter or digit")]
    GroupId(String),
    #[error("invalid group {0:?}: expected TYPE/ID, e.g. host/web01")]
    Group(String),
    #[error("invalid snapshot {0:?}: expected TYPE/ID/TIME, e.g. host/web01/2026-11-22T03:00:00Z")]
    Snapshot(String),
}

fn is_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn is_type(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s != "ns"
        && s.as_bytes()[0].is_ascii_lowercase()
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A namespace: a path of names; the root namespace is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Namespace(Vec<String>);

impl Namespace {
    pub const MAX_DEPTH: usize = 8;

    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// Parse `a/b/c`; an empty string is the root namespace.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let text = text.trim_matches('/');
        if text.is_empty() {
            return Ok(Self::root());
        }
        let parts: Vec<String> = text.split('/').map(str::to_owned).collect();
        if parts.len() > Self::MAX_DEPTH || !parts.iter().all(|p| is_name(p, 64)) {
            return Err(IdError::Namespace(text.to_owned()));
        }
        Ok(Self(parts))
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub fn components(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("/"))
    }
}

/// A backup group: everything backed up from one source, over time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackupGroup {
    pub ns: Namespace,
    pub kind: String,
    pub id: String,
}

impl BackupGroup {
    pub fn new(ns: Namespace, kind: &str, id: &str) -> Result<Self, IdError> {
        if !is_type(kind) {
            return Err(IdError::GroupType(kind.to_owned()));
        }
        if !is_name(id, 128) {
            return Err(IdError::GroupId(id.to_owned()));
        }
        Ok(Self { ns, kind: kind.to_owned(), id: id.to_owned() })
    }

    /// Parse `[ns/NAME/]TYPE/ID`; `ns` (from `--ns`) applies when the text
    /// carries no `ns/` prefix of its own.
    pub fn parse(text: &str, ns: &Namespace) -> Result<Self, IdError> {
        let parts: Vec<&str> = text.trim_matches('/').split('/').collect();
        let (ns, rest) = split_ns(&parts, ns, 2).ok_or_else(|| IdError::Group(text.to_owned()))?;
        match rest {
            [kind, id] => Self::new(ns, kind, id),
            _ => Err(IdError::Group(text.to_owned())),
        }
    }

    /// The snapshot of this group taken at `time` (epoch seconds).
    pub fn at(&self, time: i64) -> SnapshotId {
        SnapshotId { group: self.clone(), time }
    }
}

fn split_ns<'a>(
    parts: &'a [&'a str],
    default: &Namespace,
    tail: usize,
) -> Option<(Namespace, &'a [&'a str])> {
    if parts.first() == Some(&"ns") {
        if parts.len() < tail + 2 {
            return None;
        }
        let (ns, rest) = parts[1..].split_at(parts.len() - 1 - tail);
        Some((Namespace::parse(&ns.join("/")).ok()?, rest))
    } else {
        Some((default.clone(), parts))
    }
}

impl fmt::Display for BackupGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.ns.is_root() {
            write!(f, "ns/{}/", self.ns)?;
        }
        write!(f, "{}/{}", self.kind, self.id)
    }
}

/// One snapshot: a group at a point in time (whole seconds, UTC).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotId {
    pub group: BackupGroup,
    pub time: i64,
}

impl SnapshotId {
    /// Parse `[ns/NAME/]TYPE/ID/TIME`.
    pub fn parse(text: &str, ns: &Namespace) -> Result<Self, IdError> {
        let parts: Vec<&str> = text.trim_matches('/').split('/').collect();
        let err = || IdError::Snapshot(text.to_owned());
        let (ns, rest) = split_ns(&parts, ns, 3).ok_or_else(err)?;
        match rest {
            [kind, id, time] => {
                let time = parse_rfc3339(time).ok_or_else(err)?;
                Ok(BackupGroup::new(ns, kind, id)?.at(time))
            }
            _ => Err(err()),
        }
    }

    pub fn time_text(&self) -> String {
        format_rfc3339(self.time)
    }

    /// The text of the id of `group`'s snapshot at `time`, from the
    /// group's text: for callers that hold the group written out already
    /// (a retention policy's call) and not a `SnapshotId`.
    pub fn text_of(group: &str, time: i64) -> String {
        IdText(group, time).to_string()
    }
}

/// `GROUP/TIME`, the time in RFC 3339: the one place a snapshot id's text
/// is put together.
struct IdText<G>(G, i64);

impl<G: fmt::Display> fmt::Display for IdText<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.0, format_rfc3339(self.1))
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        IdText(&self.group, self.time).fmt(f)
    }
}

/// Either a group or one of its snapshots, as the CLI accepts both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupOrSnapshot {
    Group(BackupGroup),
    Snapshot(SnapshotId),
}

impl GroupOrSnapshot {
    pub fn parse(text: &str, ns: &Namespace) -> Result<Self, IdError> {
        match SnapshotId::parse(text, ns) {
            Ok(s) => Ok(Self::Snapshot(s)),
            Err(_) => BackupGroup::parse(text, ns).map(Self::Group),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_snapshot(text: &str, expect: Option<&str>) {
        let got = SnapshotId::parse(text, &Namespace::root()).ok().map(|s| s.to_string());
        assert_eq!(got.as_deref(), expect, "{text}");
    }

    #[test]
    fn snapshot_refs() {
        check_snapshot("host/web01/2026-11-22T03:00:00Z", Some("host/web01/2026-11-22T03:00:00Z"));
        check_snapshot(
            "ns/prod/eu/vm/100/2026-11-22T03:00:00Z",
            Some("ns/prod/eu/vm/100/2026-11-22T03:00:00Z"),
        );
        check_snapshot("host/web01", None);
        check_snapshot("ns/host/web01/2026-11-22T03:00:00Z", None);
        check_snapshot("host/../2026-11-22T03:00:00Z", None);
        check_snapshot("Host/web01/2026-11-22T03:00:00Z", None);
    }

    #[test]
    fn group_refs() {
        let ns = Namespace::parse("lab").unwrap();
        assert_eq!(BackupGroup::parse("host/a", &ns).unwrap().to_string(), "ns/lab/host/a");
        assert_eq!(BackupGroup::parse("ns/x/host/a", &ns).unwrap().to_string(), "ns/x/host/a");
        assert!(BackupGroup::parse("ns/host/a", &ns).is_err());
        assert!(BackupGroup::parse("host/.hidden", &ns).is_err());
        assert!(BackupGroup::parse("host", &ns).is_err());
        assert!(matches!(
            GroupOrSnapshot::parse("host/a/2026-11-22T03:00:00Z", &ns),
            Ok(GroupOrSnapshot::Snapshot(_))
        ));
    }
}
