//! Jobs (what to back up, when, and what to keep) and tasks (one run of
//! anything, with its log), and the SLA rule that says whether a job is
//! overdue.

use crate::BackupGroup;
use crate::backy::TagInterval;
use crate::prune::KeepRules;

/// A backup job the server runs on its schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Unique name (`web01-etc`).
    pub name: String,
    pub group: BackupGroup,
    /// Directories, files or block devices on the server.
    pub sources: Vec<String>,
    /// Cron expression, five fields (`0 3 * * *`).
    pub schedule: String,
    /// Tags every snapshot of this job gets.
    pub tags: Vec<String>,
    /// Prune the group with these rules after each backup (none: keep all).
    pub keep: KeepRules,
    /// Verify the new snapshot after each backup.
    pub verify: bool,
    /// Unix seconds; runs are scheduled from here on.
    pub created: i64,
    /// backy's named intervals (`daily=1d:9`) instead of a cron schedule:
    /// a run carries the tags of the intervals due, and unless `keep` or
    /// `retention` say otherwise, each tag keeps its count of snapshots.
    pub intervals: Vec<TagInterval>,
    /// A scheduler policy that decides when the job runs and with which
    /// tags, instead of a cron schedule or intervals.
    pub scheduler: Option<PolicyUse>,
    /// A retention policy that prunes the group after each run, instead of
    /// `keep`.
    pub retention: Option<PolicyUse>,
    /// A source handler that reads the source, instead of `sources`.
    pub source: Option<JobSource>,
}

/// A stored policy and the parameters a job gives it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyUse {
    pub name: String,
    pub params: Vec<(String, String)>,
}

/// A job's source handler and what it is granted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobSource {
    pub handler: String,
    pub params: Vec<(String, String)>,
    /// `host:port` it may send HTTP(S) requests to.
    pub allow_hosts: Vec<String>,
    /// A directory it may read (as `/source`).
    pub grant_dir: Option<String>,
    /// The most data it may yield in one backup; more fails the backup.
    pub max_bytes: Option<u64>,
}

/// How a job decides to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleKind {
    Cron,
    Intervals,
    Policy,
}

impl Job {
    /// A job of `group` named `name`, created at `created`, with every
    /// other setting empty (no source, no schedule, keep everything):
    /// callers set what they have with `Job { sources, .., ..Job::new(..) }`,
    /// so a new field needs a default here and nowhere else.
    pub fn new(name: impl Into<String>, group: BackupGroup, created: i64) -> Job {
        Job {
            name: name.into(),
            group,
            sources: Vec::new(),
            schedule: String::new(),
            tags: Vec::new(),
            keep: KeepRules::default(),
            verify: false,
            created,
            intervals: Vec::new(),
            scheduler: None,
            retention: None,
            source: None,
        }
    }

    /// Which of the three ways to schedule the job uses; an error unless
    /// exactly one is set.
    pub fn schedule_kind(&self) -> Result<ScheduleKind, String> {
        let set = [!self.schedule.trim().is_empty(), !self.intervals.is_empty(), self.scheduler.is_some()];
        match set {
            [true, false, false] => Ok(ScheduleKind::Cron),
            [false, true, false] => Ok(ScheduleKind::Intervals),
            [false, false, true] => Ok(ScheduleKind::Policy),
            _ => Err(format!(
                "job {} needs exactly one of a cron schedule, named intervals or a scheduler policy",
                self.name
            )),
        }
    }

    /// How the job is scheduled, in a few words: the cron schedule, the
    /// named intervals, or `policy NAME`.
    pub fn describe_schedule(&self) -> String {
        match (&self.scheduler, self.intervals.is_empty()) {
            (Some(p), _) => format!("policy {}", p.name),
            (None, false) => crate::backy::format_intervals(&self.intervals),
            (None, true) => self.schedule.clone(),
        }
    }

    /// What can be checked of a job without a datastore: exactly one way
    /// to schedule it, paths or a source handler (not both), keep rules or
    /// a retention policy (not both), and a source handler's grants. The
    /// engine's `put_job` adds the checks that need the datastore (the
    /// cron schedule fires, the policies are stored); the CLI and the API
    /// both go through it.
    pub fn check(&self) -> Result<(), String> {
        self.schedule_kind()?;
        match (&self.source, self.sources.is_empty()) {
            (None, true) => return Err(format!("job {} has no source to back up", self.name)),
            (Some(_), false) => {
                return Err(format!("job {} has both paths and a source handler; give one", self.name));
            }
            (None, false) => {}
            (Some(s), true) => s.check()?,
        }
        if self.retention.is_some() && !self.keep.is_empty() {
            return Err(format!("job {} has both keep rules and a retention policy; give one", self.name));
        }
        Ok(())
    }
}

impl JobSource {
    /// A source handler's grants as a job keeps them: hosts as
    /// `HOST:PORT`, an absolute directory, a size limit of at least a byte.
    pub fn check(&self) -> Result<(), String> {
        if self.grant_dir.as_ref().is_some_and(|d| !d.starts_with('/')) {
            return Err("source.grant_dir must be an absolute path".into());
        }
        if self.max_bytes == Some(0) {
            return Err("source.max_bytes must be at least 1 (or absent: no limit)".into());
        }
        for h in &self.allow_hosts {
            check_allow_host(h)?;
        }
        Ok(())
    }
}

/// A host a source handler may reach: `HOST:PORT` (a name, an IPv4
/// address or a bracketed IPv6 address, and a port from 1). Returns it in
/// lower case.
pub fn check_allow_host(h: &str) -> Result<String, String> {
    let ok = h.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && port.parse::<u16>().is_ok_and(|p| p > 0)
            && host.chars().all(|c| c.is_ascii_alphanumeric() || "-.[]:".contains(c))
    });
    if !ok {
        return Err(format!(
            "allowed host {h:?}: expected HOST:PORT, e.g. db.example.com:443 or 127.0.0.1:8080"
        ));
    }
    Ok(h.to_ascii_lowercase())
}

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Running,
    /// Finished; everything worked.
    Ok,
    /// Finished with a result, but something was skipped (unreadable files).
    Warning,
    Failed,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Ok => "ok",
            Self::Warning => "warning",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Running, Self::Ok, Self::Warning, Self::Failed].into_iter().find(|s| s.as_str() == text)
    }
}

/// One run of a job (or of a one-off operation), with its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: u64,
    /// `backup`, `verify`, `prune`, `gc`.
    pub kind: String,
    pub job: Option<String>,
    /// What started it: `schedule`, `manual`, or a user name.
    pub trigger: String,
    pub state: TaskState,
    pub started: i64,
    pub finished: Option<i64>,
    /// The snapshot a backup task made.
    pub snapshot: Option<String>,
    /// Log lines, oldest first, each prefixed with its time.
    pub log: Vec<String>,
}

/// A job's service level, as `cairn check` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sla {
    /// The newest good snapshot is recent enough.
    Ok,
    /// The newest good snapshot is older than 1.5 × the job's shortest interval.
    Overdue,
    /// Never backed up yet, and not yet overdue.
    Pending,
}

impl Sla {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Overdue => "overdue",
            Self::Pending => "pending",
        }
    }
}

/// The newest of `times` that counts for a job's SLA at `now`: snapshots
/// dated beyond `FUTURE_SKEW` in the future are suspicious (a client with a
/// wrong clock, or a hostile one) and never make a job look fresh.
pub fn newest_fresh(times: impl IntoIterator<Item = i64>, now: i64) -> Option<i64> {
    times.into_iter().filter(|t| !crate::time::from_the_future(*t, now)).max()
}

/// backy's rule: overdue when the newest good snapshot (or, before the
/// first one, the job's creation) is older than 1.5 × the shortest interval.
pub fn sla(now: i64, newest_good: Option<i64>, created: i64, interval: i64) -> Sla {
    let limit = interval.saturating_mul(3) / 2;
    match newest_good {
        Some(t) if now - t <= limit => Sla::Ok,
        Some(_) => Sla::Overdue,
        None if now - created > limit => Sla::Overdue,
        None => Sla::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_overdue_after_one_and_a_half_intervals() {
        let h = 3600;
        assert_eq!(sla(10 * h, Some(9 * h), 0, h), Sla::Ok);
        assert_eq!(sla(10 * h + h / 2, Some(9 * h), 0, h), Sla::Ok);
        assert_eq!(sla(10 * h + h / 2 + 1, Some(9 * h), 0, h), Sla::Overdue);
        assert_eq!(sla(h, None, 0, h), Sla::Pending);
        assert_eq!(sla(2 * h, None, 0, h), Sla::Overdue);
        // A snapshot dated in 2100 does not keep a job fresh.
        let year_2100 = crate::time::parse_rfc3339("2100-01-01T00:00:00Z").unwrap();
        let newest = newest_fresh([9 * h, year_2100], 10 * h);
        assert_eq!(newest, Some(9 * h));
        assert_eq!(sla(100 * h, newest, 0, h), Sla::Overdue);
        assert_eq!(newest_fresh([year_2100], 10 * h), None);
        for s in [TaskState::Running, TaskState::Ok, TaskState::Warning, TaskState::Failed] {
            assert_eq!(TaskState::parse(s.as_str()), Some(s));
        }
    }
}
