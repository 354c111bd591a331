//! The serialized form of catalog rows: serde types kept apart from the
//! `model` types they are converted from and to.
//!
//! Rows are JSON (small, and readable when debugging a catalog by hand).
//! A row names its snapshot explicitly (namespace text, type, id, time) so
//! it can be read without its key.
//!
//! Invariant: a released row type (`…V1`) never changes shape; a new shape
//! is a new type, a new table name in `schema.rs` and a migration.

use model::prune::KeepRules;
use model::{
    ApiToken, ArchiveKind, ArchiveSummary, BackupGroup, Job, JobSource, Namespace, PolicyRecord, PolicyUse,
    Role, Session, SnapshotId, SnapshotInfo, Task, TaskState, User, VerifyState,
};
use serde::{Deserialize, Serialize};

/// One snapshot in `snapshots_v1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SnapshotRowV1 {
    pub ns: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub time: i64,
    pub tags: Vec<String>,
    pub size: u64,
    pub stored: u64,
    pub duration_ms: u64,
    pub files: u64,
    pub errors: u64,
    pub protected: bool,
    pub notes: String,
    /// `none`, `ok` or `failed`.
    pub verify: String,
    pub verify_time: Option<i64>,
    pub archives: Vec<ArchiveRowV1>,
}

/// One archive of a snapshot row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ArchiveRowV1 {
    pub name: String,
    /// `file` or `image`.
    pub kind: String,
    pub size: u64,
}

/// The summed-up fields of a `SnapshotRowV1` (the rest is skipped).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct SnapshotSummaryRowV1 {
    pub ns: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub time: i64,
    pub size: u64,
    pub stored: u64,
    pub verify: String,
}

impl TryFrom<SnapshotSummaryRowV1> for model::SnapshotSummary {
    type Error = RowError;

    fn try_from(r: SnapshotSummaryRowV1) -> Result<Self, RowError> {
        Ok(model::SnapshotSummary {
            id: snapshot_id(&r.ns, &r.kind, &r.id, r.time)?,
            size: r.size,
            stored: r.stored,
            verify: VerifyState::parse(&r.verify).ok_or(RowError::VerifyState(r.verify))?,
        })
    }
}

/// Only the id of a `SnapshotRowV1`, for listings that need nothing else.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct SnapshotIdRowV1 {
    pub ns: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub time: i64,
}

impl From<&SnapshotInfo> for SnapshotRowV1 {
    fn from(info: &SnapshotInfo) -> Self {
        let group = &info.id.group;
        Self {
            ns: group.ns.to_string(),
            kind: group.kind.clone(),
            id: group.id.clone(),
            time: info.id.time,
            tags: info.tags.clone(),
            size: info.size,
            stored: info.stored,
            duration_ms: info.duration_ms,
            files: info.files,
            errors: info.errors,
            protected: info.protected,
            notes: info.notes.clone(),
            verify: info.verify.as_str().to_owned(),
            verify_time: info.verify_time,
            archives: info
                .archives
                .iter()
                .map(|a| ArchiveRowV1 {
                    name: a.name.clone(),
                    kind: a.kind.as_str().to_owned(),
                    size: a.size,
                })
                .collect(),
        }
    }
}

/// Why a stored row does not make a valid model value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RowError {
    #[error("{0}")]
    Id(#[from] model::IdError),
    #[error("unknown verify state {0:?}")]
    VerifyState(String),
    #[error("unknown archive kind {0:?}")]
    ArchiveKind(String),
}

fn snapshot_id(ns: &str, kind: &str, id: &str, time: i64) -> Result<SnapshotId, RowError> {
    Ok(BackupGroup::new(Namespace::parse(ns)?, kind, id)?.at(time))
}

impl TryFrom<SnapshotIdRowV1> for SnapshotId {
    type Error = RowError;

    fn try_from(row: SnapshotIdRowV1) -> Result<Self, RowError> {
        snapshot_id(&row.ns, &row.kind, &row.id, row.time)
    }
}

impl TryFrom<SnapshotRowV1> for SnapshotInfo {
    type Error = RowError;

    fn try_from(row: SnapshotRowV1) -> Result<Self, RowError> {
        let id = snapshot_id(&row.ns, &row.kind, &row.id, row.time)?;
        let verify =
            VerifyState::parse(&row.verify).ok_or_else(|| RowError::VerifyState(row.verify.clone()))?;
        let archives = row
            .archives
            .into_iter()
            .map(|a| {
                let kind =
                    ArchiveKind::parse(&a.kind).ok_or_else(|| RowError::ArchiveKind(a.kind.clone()))?;
                Ok(ArchiveSummary { name: a.name, kind, size: a.size })
            })
            .collect::<Result<Vec<_>, RowError>>()?;
        Ok(SnapshotInfo {
            id,
            tags: row.tags,
            size: row.size,
            stored: row.stored,
            duration_ms: row.duration_ms,
            files: row.files,
            errors: row.errors,
            protected: row.protected,
            notes: row.notes,
            verify,
            verify_time: row.verify_time,
            archives,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_rows_are_refused() {
        let good = SnapshotRowV1 {
            ns: "prod/eu".into(),
            kind: "host".into(),
            id: "web01".into(),
            time: 1_700_000_000,
            tags: vec![],
            size: 1,
            stored: 1,
            duration_ms: 1,
            files: 1,
            errors: 0,
            protected: false,
            notes: String::new(),
            verify: "ok".into(),
            verify_time: Some(1),
            archives: vec![ArchiveRowV1 { name: "root.pxar".into(), kind: "image".into(), size: 1 }],
        };
        let info = SnapshotInfo::try_from(good.clone()).unwrap();
        assert_eq!(SnapshotRowV1::from(&info), good);

        let bad_verify = SnapshotRowV1 { verify: "maybe".into(), ..good.clone() };
        assert_eq!(SnapshotInfo::try_from(bad_verify), Err(RowError::VerifyState("maybe".into())));
        let bad_kind = SnapshotRowV1 { kind: "ns".into(), ..good.clone() };
        assert!(matches!(SnapshotInfo::try_from(bad_kind), Err(RowError::Id(_))));
        let mut bad_archive = good;
        bad_archive.archives[0].kind = "tape".into();
        assert_eq!(SnapshotInfo::try_from(bad_archive), Err(RowError::ArchiveKind("tape".into())));
    }
}

/// One user in `users_v1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct UserRowV1 {
    pub name: String,
    pub role: String,
    pub password_hash: String,
    pub created: i64,
}

impl From<&User> for UserRowV1 {
    fn from(u: &User) -> Self {
        Self {
            name: u.name.clone(),
            role: u.role.as_str().into(),
            password_hash: u.password_hash.clone(),
            created: u.created,
        }
    }
}

impl TryFrom<UserRowV1> for User {
    type Error = String;
    fn try_from(r: UserRowV1) -> Result<Self, String> {
        Ok(User {
            role: parse_role(&r.role)?,
            name: r.name,
            password_hash: r.password_hash,
            created: r.created,
        })
    }
}

/// One API token in `tokens_v1`. Groups are written `[ns/NAME/]TYPE/ID`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TokenRowV1 {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub role: String,
    pub groups: Vec<String>,
    pub secret_hash: String,
    pub created: i64,
    pub expires: Option<i64>,
}

impl From<&ApiToken> for TokenRowV1 {
    fn from(t: &ApiToken) -> Self {
        Self {
            id: t.id.clone(),
            name: t.name.clone(),
            owner: t.owner.clone(),
            role: t.role.as_str().into(),
            groups: t.groups.iter().map(ToString::to_string).collect(),
            secret_hash: t.secret_hash.clone(),
            created: t.created,
            expires: t.expires,
        }
    }
}

impl TryFrom<TokenRowV1> for ApiToken {
    type Error = String;
    fn try_from(r: TokenRowV1) -> Result<Self, String> {
        let groups = r.groups.iter().map(|g| parse_group(g)).collect::<Result<_, _>>()?;
        Ok(ApiToken {
            role: parse_role(&r.role)?,
            id: r.id,
            name: r.name,
            owner: r.owner,
            groups,
            secret_hash: r.secret_hash,
            created: r.created,
            expires: r.expires,
        })
    }
}

/// One login session in `sessions_v1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SessionRowV1 {
    pub user: String,
    pub csrf: String,
    pub created: i64,
    pub expires: i64,
}

impl From<&Session> for SessionRowV1 {
    fn from(s: &Session) -> Self {
        Self { user: s.user.clone(), csrf: s.csrf.clone(), created: s.created, expires: s.expires }
    }
}

impl TryFrom<SessionRowV1> for Session {
    type Error = String;
    fn try_from(r: SessionRowV1) -> Result<Self, String> {
        Ok(Session { user: r.user, csrf: r.csrf, created: r.created, expires: r.expires })
    }
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| format!("unknown role {text:?}"))
}

/// Groups are stored in their text form, `[ns/NAME/]TYPE/ID`.
fn parse_group(text: &str) -> Result<BackupGroup, String> {
    BackupGroup::parse(text, &Namespace::root()).map_err(|e| e.to_string())
}

/// One job in `jobs_v1`. Fields are only ever added, optional, with the
/// reader version that knows them (`reader_version`); a test holds the
/// field names of each version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct JobRowV1 {
    pub name: String,
    pub group: String,
    pub sources: Vec<String>,
    pub schedule: String,
    pub tags: Vec<String>,
    /// keep-last, hourly, daily, weekly, monthly, yearly.
    pub keep: [u32; 6],
    pub verify: bool,
    pub created: i64,
    /// backy's named intervals, `daily=1d:9 weekly=1w:5` (added later in
    /// v1: absent in older rows).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub intervals: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<PolicyUseRow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<PolicyUseRow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<JobSourceRow>,
}

impl JobRowV1 {
    /// The oldest reader version that keeps every field this row sets
    /// (see `schema::READER_VERSION`).
    pub fn reader_version(&self) -> u64 {
        let v2 = !self.intervals.is_empty()
            || self.scheduler.is_some()
            || self.retention.is_some()
            || self.source.is_some();
        if v2 { 2 } else { 1 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PolicyUseRow {
    pub name: String,
    #[serde(default)]
    pub params: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct JobSourceRow {
    pub handler: String,
    #[serde(default)]
    pub params: Vec<(String, String)>,
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    #[serde(default)]
    pub grant_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
}

impl From<&PolicyUse> for PolicyUseRow {
    fn from(p: &PolicyUse) -> Self {
        Self { name: p.name.clone(), params: p.params.clone() }
    }
}

impl From<PolicyUseRow> for PolicyUse {
    fn from(p: PolicyUseRow) -> Self {
        Self { name: p.name, params: p.params }
    }
}

impl From<&Job> for JobRowV1 {
    fn from(j: &Job) -> Self {
        let k = &j.keep;
        Self {
            name: j.name.clone(),
            group: j.group.to_string(),
            sources: j.sources.clone(),
            schedule: j.schedule.clone(),
            tags: j.tags.clone(),
            keep: [k.last, k.hourly, k.daily, k.weekly, k.monthly, k.yearly],
            verify: j.verify,
            created: j.created,
            intervals: model::backy::format_intervals(&j.intervals),
            scheduler: j.scheduler.as_ref().map(PolicyUseRow::from),
            retention: j.retention.as_ref().map(PolicyUseRow::from),
            source: j.source.as_ref().map(|s| JobSourceRow {
                handler: s.handler.clone(),
                params: s.params.clone(),
                allow_hosts: s.allow_hosts.clone(),
                grant_dir: s.grant_dir.clone(),
                max_bytes: s.max_bytes,
            }),
        }
    }
}

impl TryFrom<JobRowV1> for Job {
    type Error = String;
    fn try_from(r: JobRowV1) -> Result<Self, String> {
        let [last, hourly, daily, weekly, monthly, yearly] = r.keep;
        Ok(Job {
            group: parse_group(&r.group)?,
            name: r.name,
            sources: r.sources,
            schedule: r.schedule,
            tags: r.tags,
            keep: KeepRules { last, hourly, daily, weekly, monthly, yearly },
            verify: r.verify,
            created: r.created,
            intervals: model::backy::parse_intervals(&r.intervals)?,
            scheduler: r.scheduler.map(PolicyUse::from),
            retention: r.retention.map(PolicyUse::from),
            source: r.source.map(|s| JobSource {
                handler: s.handler,
                params: s.params,
                allow_hosts: s.allow_hosts,
                grant_dir: s.grant_dir,
                max_bytes: s.max_bytes,
            }),
        })
    }
}

/// One task in `tasks_v1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TaskRowV1 {
    pub id: u64,
    pub kind: String,
    pub job: Option<String>,
    pub trigger: String,
    pub state: String,
    pub started: i64,
    pub finished: Option<i64>,
    pub snapshot: Option<String>,
    pub log: Vec<String>,
}

impl From<&Task> for TaskRowV1 {
    fn from(t: &Task) -> Self {
        Self {
            id: t.id,
            kind: t.kind.clone(),
            job: t.job.clone(),
            trigger: t.trigger.clone(),
            state: t.state.as_str().into(),
            started: t.started,
            finished: t.finished,
            snapshot: t.snapshot.clone(),
            log: t.log.clone(),
        }
    }
}

impl TryFrom<TaskRowV1> for Task {
    type Error = String;
    fn try_from(r: TaskRowV1) -> Result<Self, String> {
        Ok(Task {
            state: TaskState::parse(&r.state).ok_or_else(|| format!("unknown task state {:?}", r.state))?,
            id: r.id,
            kind: r.kind,
            job: r.job,
            trigger: r.trigger,
            started: r.started,
            finished: r.finished,
            snapshot: r.snapshot,
            log: r.log,
        })
    }
}

/// One stored policy in `policies_v1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PolicyRowV1 {
    pub name: String,
    pub world: String,
    pub wit_version: String,
    pub policy_name: String,
    pub policy_version: String,
    pub description: String,
    pub params: Vec<(String, String)>,
    pub digest: String,
    pub size: u64,
    pub added: i64,
    pub cpu_ms: u64,
    pub memory_mib: u64,
}

impl From<&PolicyRecord> for PolicyRowV1 {
    fn from(r: &PolicyRecord) -> Self {
        Self {
            name: r.name.clone(),
            world: r.world.clone(),
            wit_version: r.wit_version.clone(),
            policy_name: r.policy_name.clone(),
            policy_version: r.policy_version.clone(),
            description: r.description.clone(),
            params: r.params.clone(),
            digest: r.digest.clone(),
            size: r.size,
            added: r.added,
            cpu_ms: r.cpu_ms,
            memory_mib: r.memory_mib,
        }
    }
}

impl TryFrom<PolicyRowV1> for PolicyRecord {
    type Error = String;
    fn try_from(r: PolicyRowV1) -> Result<Self, String> {
        if !model::policy::valid_digest(&r.digest) {
            return Err(format!("policy {:?} names no valid component digest", r.name));
        }
        Ok(PolicyRecord {
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
        })
    }
}
