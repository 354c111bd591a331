//! Jobs: define them, decide which are due, run them as tasks with a log,
//! and judge their SLA. The daemon's scheduler, the API and the CLI call
//! the same functions.
//!
//! Schedules are five-field cron expressions (minute hour day month
//! weekday, UTC) meaning what crontab(5) says, read with the `cron` crate
//! after translating the weekday field. A job is due when a fire time
//! has passed since its last run (or its creation); however many fire
//! times were missed during downtime, it runs once.
//!
//! Invariant: time is an argument; nothing here reads the clock except
//! the run itself, which stamps log lines and the snapshot time.

use std::str::FromStr;

use anyhow::{Context, Result, bail};
use model::backy;
use model::job::sla;
use model::prune::KeepRules;
use model::words::count;
use model::{
    BackupGroup, Job, JobSource, PolicyUse, ScheduleKind, Sla, SnapshotId, SnapshotInfo, Task, TaskState,
    VerifyState,
};

use crate::Engine;
use crate::backup::{BackupOptions, BackupReport};
use crate::progress::Progress;

/// A parsed five-field cron schedule, with the meaning of standard
/// (Vixie) cron: day-of-week 0 or 7 is Sunday, 1 Monday; when both
/// day-of-month and day-of-week are restricted, a day matching either
/// fires. (The `cron` crate counts 1 as Sunday and wants both to match,
/// so the text is translated before it is handed over.)
#[derive(Debug, Clone)]
pub struct CronSchedule(Vec<cron::Schedule>);

/// A schedule added to a job must fire within this many years.
pub const FIRES_WITHIN_YEARS: i64 = 9;

const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// The names the `cron` crate took before this translation, which stored
/// schedules may use: three letters, the whole name, `tues`, `thurs`.
const DAY_ALIASES: [&[&str]; 7] = [
    &["sun", "sunday"],
    &["mon", "monday"],
    &["tue", "tues", "tuesday"],
    &["wed", "wednesday"],
    &["thu", "thurs", "thursday"],
    &["fri", "friday"],
    &["sat", "saturday"],
];

/// One day-of-week value: 0–7 (0 and 7 are Sunday; 7 stays 7, so that a
/// range may end or start there) or a name (0–6).
fn weekday(text: &str) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = DAY_ALIASES.iter().position(|names| names.contains(&lower.as_str())) {
        return Ok(i as u32);
    }
    match text.parse::<u32>() {
        Ok(n @ 0..=7) => Ok(n),
        _ => Err(format!("day of week {text:?}: use 0-7 (0 and 7 are Sunday) or SUN-SAT")),
    }
}

/// A standard day-of-week field (lists, ranges, steps, names) as the list
/// of day names the `cron` crate reads the same way; `None` for `*`.
fn weekdays(field: &str) -> Result<Option<String>, String> {
    if field == "*" || field == "?" {
        return Ok(None);
    }
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => match s.parse::<u32>() {
                Ok(s) if s > 0 => (r, s),
                _ => return Err(format!("day of week {item:?}: the step must be a whole number from 1")),
            },
            None => (item, 1),
        };
        // As crontab(5): `5-7` is Friday to Sunday; `N/step` runs from N
        // to 7.
        let (from, to) = match range {
            "*" => (0, 6),
            _ => match range.split_once('-') {
                Some((a, b)) => (weekday(a)?, weekday(b)?),
                None if step > 1 => (weekday(range)?, 7),
                None => (weekday(range)?, weekday(range)?),
            },
        };
        if from > to {
            return Err(format!("day of week {item:?}: a range runs from the lower day to the higher"));
        }
        for d in (from..=to).step_by(step as usize) {
            days[d as usize % 7] = true;
        }
    }
    let names: Vec<&str> = (0..7).filter(|&d| days[d]).map(|d| DAY_NAMES[d]).collect();
    Ok(Some(names.join(",")))
}

impl CronSchedule {
    /// Parse `m h dom mon dow`.
    pub fn parse(text: &str) -> Result<Self> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = fields[..] else {
            bail!(
                "schedule {text:?} has {} fields; write five: minute hour day-of-month month day-of-week",
                fields.len()
            );
        };
        let invalid = |e: String| anyhow::anyhow!("schedule {text:?} is not a valid cron expression: {e}");
        let dow = weekdays(dow).map_err(invalid)?;
        let one = |dom: &str, dow: &str| {
            cron::Schedule::from_str(&format!("0 {minute} {hour} {dom} {month} {dow}"))
                .map_err(|e| invalid(e.to_string()))
        };
        // As Vixie cron: a field starting with `*` does not restrict, and
        // then both must match; when both restrict, either is enough.
        let unrestricted = |f: &str| f.starts_with('*') || f == "?";
        let dow_text = dow.as_deref().unwrap_or("*");
        let schedules = if unrestricted(dom) || unrestricted(fields[4]) {
            vec![one(dom, dow_text)?]
        } else {
            vec![one(dom, "*")?, one("*", dow_text)?]
        };
        Ok(Self(schedules))
    }

    /// Fire times strictly after `t`, in order.
    fn after(&self, t: i64) -> impl Iterator<Item = i64> + '_ {
        let at = chrono::DateTime::from_timestamp(t, 0).unwrap_or_default();
        let mut each: Vec<_> =
            self.0.iter().map(|s| s.after(&at).map(|d| d.timestamp()).peekable()).collect();
        std::iter::from_fn(move || {
            let next = each.iter_mut().filter_map(|i| i.peek().copied()).min()?;
            for i in &mut each {
                if i.peek() == Some(&next) {
                    i.next();
                }
            }
            Some(next)
        })
    }

    /// Refuse a schedule that never fires (`0 0 31 2 *`): one with no fire
    /// time in the `FIRES_WITHIN_YEARS` years after `from`. (Leap days
    /// fire at least every eight years.)
    pub fn check_fires(&self, from: i64) -> Result<()> {
        let limit = from.saturating_add(FIRES_WITHIN_YEARS * 366 * 86_400);
        match self.next_after(from) {
            Some(t) if t <= limit => Ok(()),
            _ => bail!(
                "it never fires (no such date in the next {FIRES_WITHIN_YEARS} years); \
                 check the day of month against the month"
            ),
        }
    }

    /// The first fire time strictly after `t` (Unix seconds).
    pub fn next_after(&self, t: i64) -> Option<i64> {
        self.after(t).next()
    }

    /// The shortest gap between fire times, looked for over the next eight
    /// days (enough for any daily or weekly pattern).
    pub fn shortest_interval(&self, from: i64) -> i64 {
        let times: Vec<i64> = self.after(from).take_while(|&t| t <= from + 8 * 86_400).take(20_000).collect();
        times.windows(2).map(|w| w[1] - w[0]).min().unwrap_or(7 * 86_400)
    }
}

/// What jobs need that the engine cannot do itself: run WebAssembly
/// policies (the daemon supplies this; the engine does not know wasmtime).
pub trait JobPolicies: Send + Sync {
    /// Ask scheduler policy `policy` about `job`: run now or not, with which
    /// tags, why, and when to ask again.
    fn schedule(
        &self,
        engine: &Engine,
        job: &Job,
        policy: &PolicyUse,
        runs: &[JobRunInfo],
        now: i64,
    ) -> Result<ScheduleAnswer>;
    /// Whether `job` is due at `now` by its scheduler policy, and the tags
    /// of its run. An implementation may keep the policy's answer and not
    /// ask again before the time the policy gave, while the job and its
    /// runs stay the same; this one always asks.
    fn due(
        &self,
        engine: &Engine,
        job: &Job,
        policy: &PolicyUse,
        runs: &[JobRunInfo],
        now: i64,
    ) -> Result<Option<Vec<String>>> {
        let a = self.schedule(engine, job, policy, runs, now)?;
        Ok(a.run.then_some(a.tags))
    }
    /// Ask retention policy `policy` about a group's snapshots: keep or
    /// not, and why, for each.
    fn retention(
        &self,
        engine: &Engine,
        policy: &PolicyUse,
        group: &BackupGroup,
        snapshots: &[SnapshotInfo],
        now: i64,
    ) -> Result<Vec<(bool, String)>>;
    /// Back up `job` through its source handler into a new snapshot.
    fn source_backup(
        &self,
        engine: &Engine,
        job: &Job,
        source: &JobSource,
        tags: Vec<String>,
        time: i64,
    ) -> Result<BackupReport>;
}

/// No policies: jobs that need one fail with a clear error.
#[derive(Debug, Default)]
pub struct NoPolicies;

impl JobPolicies for NoPolicies {
    fn schedule(
        &self,
        _: &Engine,
        job: &Job,
        p: &PolicyUse,
        _: &[JobRunInfo],
        _: i64,
    ) -> Result<ScheduleAnswer> {
        bail!("job {} needs the scheduler policy {}, which this command cannot run", job.name, p.name)
    }
    fn retention(
        &self,
        _: &Engine,
        p: &PolicyUse,
        _: &BackupGroup,
        _: &[SnapshotInfo],
        _: i64,
    ) -> Result<Vec<(bool, String)>> {
        bail!("the retention policy {} cannot run here", p.name)
    }
    fn source_backup(
        &self,
        _: &Engine,
        job: &Job,
        s: &JobSource,
        _: Vec<String>,
        _: i64,
    ) -> Result<BackupReport> {
        bail!("job {} needs the source handler {}, which this command cannot run", job.name, s.handler)
    }
}

/// What a scheduler policy answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleAnswer {
    pub run: bool,
    /// The tags a run now carries (besides the job's own).
    pub tags: Vec<String>,
    pub reason: String,
    /// When to ask again, Unix seconds (after the time asked about).
    pub next_check: i64,
}

/// A past run of a job, for a scheduler policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRunInfo {
    pub time: i64,
    /// `ok`, `failed` or `partial`.
    pub outcome: String,
    pub tags: Vec<String>,
    pub duration_seconds: u64,
}

/// Longest wait before an interval job whose last run failed is tried
/// again (a quarter of its shortest interval, at least a minute).
pub const RETRY_AFTER_FAILURE: i64 = 15 * 60;

/// The SLA interval of a job decided by a scheduler policy (it has no
/// interval of its own to measure).
pub const POLICY_SLA_INTERVAL: i64 = 86_400;

/// A job with its SLA state, for status pages and `cairn check`.
#[derive(Debug, Clone)]
pub struct JobStatus {
    pub job: Job,
    pub sla: Sla,
    pub newest_good: Option<i64>,
    pub next_run: Option<i64>,
    pub interval: i64,
    pub last_task: Option<Task>,
}

impl Engine {
    /// Create or replace a job after checking it.
    /// Store a job after every check: the job's own (`Job::check`) and
    /// that its cron schedule fires. The CLI, the API and the dashboard's
    /// form all save jobs here, so they refuse the same jobs. (A job may
    /// name a policy that is not stored yet, or no longer: its runs fail
    /// until it is; the dashboard's form offers only stored ones.)
    pub fn put_job(&self, job: &Job) -> Result<()> {
        let bad = |e: String| anyhow::anyhow!(crate::ops::BadRequest(e));
        check_job_name(&job.name)?;
        job.check().map_err(bad)?;
        if job.schedule_kind().map_err(bad)? == ScheduleKind::Cron {
            CronSchedule::parse(&job.schedule)?
                .check_fires(job.created)
                .map_err(|e| anyhow::anyhow!("schedule {:?}: {e}", job.schedule))?;
        }
        Ok(self.catalog()?.put_job(job)?)
    }

    pub fn jobs(&self) -> Result<Vec<Job>> {
        Ok(self.catalog()?.list_jobs()?)
    }

    pub fn job(&self, name: &str) -> Result<Job> {
        self.catalog()?.get_job(name)?.with_context(|| format!("no job named {name}"))
    }

    pub fn remove_job(&self, name: &str) -> Result<bool> {
        Ok(self.catalog()?.remove_job(name)?)
    }

    pub fn tasks(&self, limit: usize, job: Option<&str>) -> Result<Vec<Task>> {
        Ok(self.catalog()?.recent_tasks(limit, job)?)
    }

    pub fn task(&self, id: u64) -> Result<Task> {
        self.catalog()?.get_task(id)?.with_context(|| format!("no task {id}"))
    }

    /// After a restart no task can still be running: mark those that say so.
    pub fn fail_interrupted_tasks(&self, now: i64) -> Result<usize> {
        Ok(self.catalog()?.fail_running_tasks(now, "interrupted: the server stopped while this task ran")?)
    }

    /// Jobs that are due at `now`: a cron job whose next fire time after
    /// its last run has come, an interval job with a tag due, a policy job
    /// its scheduler says to run. A job whose schedule cannot be read (a
    /// failing scheduler policy, say) is logged and skipped.
    pub fn due_jobs(&self, now: i64, policies: &dyn JobPolicies) -> Result<Vec<Job>> {
        let mut due = Vec::new();
        for job in self.jobs()? {
            match self.run_tags(&job, now, policies) {
                Ok(Some(_)) => due.push(job),
                Ok(None) => {}
                Err(e) => tracing::warn!(job = %job.name, "cannot decide whether the job is due: {e:#}"),
            }
        }
        Ok(due)
    }

    /// Whether `job` is due at `now`, and if so the tags its run carries
    /// (besides the job's own).
    pub fn run_tags(&self, job: &Job, now: i64, policies: &dyn JobPolicies) -> Result<Option<Vec<String>>> {
        match job.schedule_kind().map_err(anyhow::Error::msg)? {
            ScheduleKind::Cron => {
                let last = self.tasks(1, Some(&job.name))?.first().map_or(job.created, |t| t.started);
                let schedule = CronSchedule::parse(&job.schedule)?;
                Ok(schedule.next_after(last).is_some_and(|next| next <= now).then(Vec::new))
            }
            ScheduleKind::Intervals => {
                // A failed run leaves no snapshot, so its tags stay due:
                // retry, but not before the back-off has passed.
                let shortest = job.intervals.iter().map(|i| i.seconds).min().unwrap_or(86_400);
                let backoff = (shortest / 4).clamp(60, RETRY_AFTER_FAILURE);
                if let Some(last) = self.tasks(1, Some(&job.name))?.first()
                    && last.state == TaskState::Failed
                    && now - last.started < backoff
                {
                    return Ok(None);
                }
                let d = self.interval_due(job, now)?;
                Ok((!d.tags.is_empty()).then_some(d.tags))
            }
            ScheduleKind::Policy => {
                let policy = job.scheduler.as_ref().expect("a policy job has a scheduler");
                policies.due(self, job, policy, &self.job_runs(job)?, now)
            }
        }
    }

    /// The interval tags due for `job` at `now`: the group's snapshots are
    /// its good runs (backy's rule).
    fn interval_due(&self, job: &Job, now: i64) -> Result<backy::Due> {
        let runs: Vec<backy::PastRun> = self
            .snapshots(Some(&job.group))?
            .into_iter()
            // A snapshot dated in the future would hold its tags' runs off
            // until then.
            .filter(|s| !model::time::from_the_future(s.id.time, now))
            .map(|s| backy::PastRun { time: s.id.time, ok: true, tags: s.tags })
            .collect();
        Ok(backy::due(&job.intervals, backy::spread_of(&job.name), &runs, now))
    }

    /// The job's recent finished runs, newest first, with the tags of the
    /// snapshots they made.
    fn job_runs(&self, job: &Job) -> Result<Vec<JobRunInfo>> {
        let tags: std::collections::HashMap<String, Vec<String>> =
            self.snapshots(Some(&job.group))?.into_iter().map(|s| (s.id.to_string(), s.tags)).collect();
        Ok(self
            .tasks(100, Some(&job.name))?
            .into_iter()
            .filter(|t| t.state != TaskState::Running)
            .map(|t| JobRunInfo {
                time: t.started,
                outcome: match t.state {
                    TaskState::Ok => "ok",
                    TaskState::Warning => "partial",
                    _ => "failed",
                }
                .into(),
                tags: t.snapshot.as_ref().and_then(|s| tags.get(s).cloned()).unwrap_or_default(),
                duration_seconds: t.finished.map_or(0, |f| (f - t.started).max(0) as u64),
            })
            .collect())
    }

    /// Every job with its SLA state at `now`.
    pub fn job_statuses(&self, now: i64) -> Result<Vec<JobStatus>> {
        let mut out = Vec::new();
        for job in self.jobs()? {
            let (interval, next_run) = match job.schedule_kind().map_err(anyhow::Error::msg)? {
                ScheduleKind::Cron => {
                    let schedule = CronSchedule::parse(&job.schedule)?;
                    (schedule.shortest_interval(now), schedule.next_after(now))
                }
                ScheduleKind::Intervals => {
                    let shortest = job.intervals.iter().map(|i| i.seconds).min().unwrap_or(86_400);
                    (shortest, Some(self.interval_due(&job, now)?.next))
                }
                ScheduleKind::Policy => (POLICY_SLA_INTERVAL, None),
            };
            let newest_good = model::job::newest_fresh(
                self.snapshots(Some(&job.group))?
                    .iter()
                    .filter(|s| s.verify != VerifyState::Failed)
                    .map(|s| s.id.time),
                now,
            );
            out.push(JobStatus {
                sla: sla(now, newest_good, job.created, interval),
                newest_good,
                next_run,
                interval,
                last_task: self.tasks(1, Some(&job.name))?.into_iter().next(),
                job,
            });
        }
        Ok(out)
    }

    /// Queue a run of a job: record its task (state `running`, waiting for
    /// a worker) and return the task id for `run_task`.
    pub fn start_job(&self, name: &str, trigger: &str, now: i64) -> Result<u64> {
        let job = self.job(name)?;
        let task = Task {
            id: 0,
            kind: "backup".into(),
            job: Some(job.name),
            trigger: trigger.to_owned(),
            state: TaskState::Running,
            started: now,
            finished: None,
            snapshot: None,
            log: vec![format!("{} queued ({trigger})", model::time::format_rfc3339(now))],
        };
        Ok(self.catalog()?.start_task(&task)?)
    }

    /// Do the work of a queued job task: back up, then prune and verify as
    /// the job says. Returns the finished task; its state tells how it went.
    pub fn run_task(&self, id: u64, policies: &dyn JobPolicies) -> Result<Task> {
        let task = self.task(id)?;
        let job = self.job(task.job.as_deref().unwrap_or_default())?;
        let log = self.task_log(id);
        let what = match &job.source {
            Some(s) => format!("source handler {}", s.handler),
            None => job.sources.join(", "),
        };
        log(format!("backing up {what} into {}", api_group(&job)));
        let outcome = self
            .job_steps(&job, crate::clock::now(), &log, policies)
            .map(|(state, snap)| (state, Some(snap)));
        self.end_task(id, outcome, &log)
    }

    /// The tags a run of `job` starting now carries besides the job's own:
    /// the due interval tags (a manual run when none is due counts for the
    /// shortest interval), or what its scheduler policy says.
    fn tags_for_run(&self, job: &Job, now: i64, policies: &dyn JobPolicies) -> Result<Vec<String>> {
        Ok(match job.schedule_kind().map_err(anyhow::Error::msg)? {
            ScheduleKind::Cron => Vec::new(),
            ScheduleKind::Intervals => {
                let due = self.interval_due(job, now)?.tags;
                if due.is_empty() {
                    job.intervals
                        .iter()
                        .min_by_key(|i| i.seconds)
                        .map(|i| vec![i.tag.clone()])
                        .unwrap_or_default()
                } else {
                    due
                }
            }
            ScheduleKind::Policy => {
                let policy = job.scheduler.as_ref().expect("a policy job has a scheduler");
                policies.schedule(self, job, policy, &self.job_runs(job)?, now)?.tags
            }
        })
    }

    /// A function that appends a time-stamped line to task `id`'s log.
    fn task_log(&self, id: u64) -> impl Fn(String) + '_ {
        move |line: String| {
            tracing::info!(task = id, "{line}");
            let stamped = format!("{} {line}", model::time::format_rfc3339(crate::clock::now()));
            if let Err(e) = self.catalog().and_then(|c| Ok(c.update_task(id, |t| t.log.push(stamped))?)) {
                tracing::warn!(task = id, "cannot write the task log: {e:#}");
            }
        }
    }

    /// Record how task `id` ended; returns it.
    fn end_task(
        &self,
        id: u64,
        outcome: Result<(TaskState, Option<String>)>,
        log: &dyn Fn(String),
    ) -> Result<Task> {
        let (state, snapshot) = outcome.unwrap_or_else(|e| {
            log(format!("failed: {e:#}"));
            (TaskState::Failed, None)
        });
        log(format!("finished: {}", state.as_str()));
        self.catalog()?.update_task(id, |t| {
            t.state = state;
            t.finished = Some(crate::clock::now());
            t.snapshot = snapshot;
        })?;
        self.task(id)
    }

    /// Record a maintenance task (state `running`, waiting for a worker);
    /// `run_maintenance` does the work.
    pub fn start_maintenance(&self, what: &Maintenance, trigger: &str, now: i64) -> Result<u64> {
        let task = Task {
            id: 0,
            kind: what.kind().into(),
            job: None,
            trigger: trigger.to_owned(),
            state: TaskState::Running,
            started: now,
            finished: None,
            snapshot: None,
            log: vec![format!("{} queued: {what}", model::time::format_rfc3339(now))],
        };
        Ok(self.catalog()?.start_task(&task)?)
    }

    /// Do a queued maintenance task; its state tells how it went.
    pub fn run_maintenance(&self, id: u64, what: &Maintenance) -> Result<Task> {
        let log = self.task_log(id);
        let outcome = self.maintenance_steps(what, &log);
        self.end_task(id, outcome, &log)
    }

    fn maintenance_steps(
        &self,
        what: &Maintenance,
        log: &dyn Fn(String),
    ) -> Result<(TaskState, Option<String>)> {
        match what {
            Maintenance::Verify(ids) => {
                let v = self.verify(ids, crate::clock::now(), &Progress::default())?;
                let mut state = TaskState::Ok;
                for s in &v.snapshots {
                    log(format!("{} {}", if s.ok { "ok" } else { "DAMAGED" }, s.id));
                    if !s.ok {
                        state = TaskState::Failed;
                    }
                }
                log(format!("verify: {} re-read, {} bad", count(v.chunks, "chunk"), v.bad.len()));
                let one = (ids.len() == 1).then(|| ids[0].to_string());
                Ok((state, one))
            }
            Maintenance::Prune { group, keep } => {
                let decisions = self.prune(group, keep, false)?;
                for d in &decisions {
                    log(format!("{} {} ({})", if d.keep { "keep" } else { "removed" }, d.id, d.reason));
                }
                let removed = decisions.iter().filter(|d| !d.keep).count();
                log(format!("prune: kept {}, removed {removed}", decisions.len() - removed));
                Ok((TaskState::Ok, None))
            }
            Maintenance::TapeBackup { library, pool, ids, drives } => {
                let lib = tape::Library::open(library)?;
                let opts = crate::tape::TapeBackupOptions::new(pool, *drives);
                let r = self.tape_backup(&lib, ids, &opts, &Progress::default())?;
                for (b, why) in &r.rejected {
                    log(format!("passed over {b}: {why}"));
                }
                for s in &r.skipped {
                    log(format!("{s}: already in pool {pool}"));
                }
                for s in &r.sessions {
                    let parts: Vec<String> = s.parts.iter().map(|(b, f)| format!("{b} file {f}")).collect();
                    log(format!(
                        "{}: session {} ({}, {}) on {}",
                        s.snapshot,
                        s.session,
                        count(s.files, "file"),
                        count(s.bytes, "byte"),
                        parts.join(", ")
                    ));
                }
                if r.sessions.is_empty() {
                    log("nothing to write: no drive was used".into());
                } else {
                    log(format!(
                        "tape backup: {} written to {}; drive {} held {:.1} s, busy {:.1} s",
                        count(r.bytes, "byte"),
                        r.media.join(", "),
                        r.drives.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
                        r.drive_held_secs,
                        r.drive_busy_secs
                    ));
                }
                let one = (r.sessions.len() == 1).then(|| r.sessions[0].snapshot.clone());
                Ok((TaskState::Ok, one))
            }
            Maintenance::TapeRestore { library, id, pool } => {
                let lib = tape::Library::open(library)?;
                let opts = crate::volume_extract::ExtractOptions::default();
                let r = self.tape_restore(&lib, id, pool.as_deref(), None, &opts, &Progress::default())?;
                log(format!(
                    "tape restore: {} {} from {} ({})",
                    r.snapshot,
                    if r.state == Some("present") {
                        "is in the datastore already"
                    } else {
                        "is back in the datastore"
                    },
                    r.media.join(", "),
                    count(r.files, "file")
                ));
                Ok((TaskState::Ok, Some(r.snapshot)))
            }
            Maintenance::Gc => {
                let g = self.gc(&mut |_| {})?;
                log(format!(
                    "gc: removed {} ({}); kept {}",
                    count(g.removed_chunks, "chunk"),
                    count(g.removed_bytes, "byte"),
                    count(g.kept_chunks, "chunk")
                ));
                Ok((TaskState::Ok, None))
            }
        }
    }

    /// `start_job` and `run_task` in one go (the CLI's `job run`).
    pub fn run_job(&self, name: &str, trigger: &str, now: i64, policies: &dyn JobPolicies) -> Result<Task> {
        let id = self.start_job(name, trigger, now)?;
        self.run_task(id, policies)
    }

    fn job_steps(
        &self,
        job: &Job,
        now: i64,
        log: &dyn Fn(String),
        policies: &dyn JobPolicies,
    ) -> Result<(TaskState, String)> {
        // Snapshot ids have whole seconds: two runs within one second (a
        // scheduled run and a "run now") take consecutive seconds.
        let newest = self.snapshots(Some(&job.group))?.iter().map(|s| s.id.time).max();
        let now = newest.map_or(now, |t| now.max(t + 1));
        let mut tags = job.tags.clone();
        for t in self.tags_for_run(job, now, policies)? {
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        if tags.len() > job.tags.len() {
            log(format!("tags: {}", tags.join(", ")));
        }
        // Saved jobs were checked against the server's rules; the datastore
        // is checked again here, as a path may have become a link since.
        let own =
            crate::job_paths::PathRules { roots: Vec::new(), protected: vec![self.ds.root().to_path_buf()] };
        own.check_job(job, true).map_err(|e| anyhow::anyhow!(crate::ops::Refused(e.0)))?;
        let report = match &job.source {
            Some(source) => policies.source_backup(self, job, source, tags, now)?,
            None => {
                let opts = BackupOptions {
                    group: job.group.clone(),
                    sources: job.sources.iter().map(Into::into).collect(),
                    tags,
                    excludes: vec![],
                    one_file_system: false,
                    time: now,
                };
                self.backup(&opts, &Progress::default())?
            }
        };
        let s = &report.stats;
        log(format!(
            "snapshot {} made: {}, {}, {} new",
            report.id,
            count(s.files, "file"),
            count(s.size, "byte"),
            count(s.stored, "byte")
        ));
        let mut state = TaskState::Ok;
        for e in &report.errors {
            log(format!("skipped {}: {}", e.path, e.error));
            state = TaskState::Warning;
        }
        let decisions = if let Some(policy) = &job.retention {
            log(format!("prune with the retention policy {}", policy.name));
            Some(self.prune_with(&job.group, false, &mut |group, infos| {
                policies.retention(self, policy, group, infos, now)
            })?)
        } else if !job.keep.is_empty() {
            Some(self.prune(&job.group, &job.keep, false)?)
        } else if job.intervals.iter().any(|i| i.keep > 0) {
            log("prune by the intervals' keep counts".into());
            let intervals = job.intervals.clone();
            Some(self.prune_with(&job.group, false, &mut |_, infos| {
                let tagged: Vec<backy::TaggedSnapshot> = infos
                    .iter()
                    .map(|i| backy::TaggedSnapshot {
                        time: i.id.time,
                        tags: i.tags.clone(),
                        protected: i.protected,
                    })
                    .collect();
                Ok(backy::keep_by_tags(&tagged, &intervals, now))
            })?)
        } else {
            None
        };
        if let Some(decisions) = decisions {
            let removed: Vec<String> =
                decisions.iter().filter(|d| !d.keep).map(|d| d.id.to_string()).collect();
            log(format!("prune: kept {}, removed {}", decisions.len() - removed.len(), removed.len()));
            for r in removed {
                log(format!("removed {r}"));
            }
        }
        if job.verify {
            let v =
                self.verify(std::slice::from_ref(&report.id), crate::clock::now(), &Progress::default())?;
            if v.snapshots.iter().all(|s| s.ok) {
                log(format!("verify: {} re-read and matched", count(v.chunks, "chunk")));
            } else {
                log(format!(
                    "verify: snapshot {} is damaged ({})",
                    report.id,
                    count(v.bad.len() as u64, "bad chunk")
                ));
                state = TaskState::Failed;
            }
        }
        Ok((state, report.id.to_string()))
    }
}

/// Work the server runs as a task besides backups.
#[derive(Debug, Clone)]
pub enum Maintenance {
    Verify(Vec<SnapshotId>),
    Prune {
        group: BackupGroup,
        keep: KeepRules,
    },
    Gc,
    /// Write snapshots to a tape pool (those it holds already are skipped).
    TapeBackup {
        library: std::path::PathBuf,
        pool: String,
        ids: Vec<SnapshotId>,
        drives: usize,
    },
    /// Put a snapshot back into the datastore from tape.
    TapeRestore {
        library: std::path::PathBuf,
        id: SnapshotId,
        pool: Option<String>,
    },
}

impl Maintenance {
    pub fn kind(&self) -> &'static str {
        match self {
            Maintenance::Verify(_) => "verify",
            Maintenance::Prune { .. } => "prune",
            Maintenance::Gc => "gc",
            Maintenance::TapeBackup { .. } => "tape-backup",
            Maintenance::TapeRestore { .. } => "tape-restore",
        }
    }
}

impl std::fmt::Display for Maintenance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Maintenance::Verify(ids) if ids.len() == 1 => write!(f, "verify {}", ids[0]),
            Maintenance::Verify(ids) => write!(f, "verify {} snapshots", ids.len()),
            Maintenance::Prune { group, .. } => write!(f, "prune {group}"),
            Maintenance::Gc => write!(f, "garbage collection"),
            Maintenance::TapeBackup { pool, ids, .. } if ids.len() == 1 => {
                write!(f, "tape backup of {} to pool {pool}", ids[0])
            }
            Maintenance::TapeBackup { pool, ids, .. } => {
                write!(f, "tape backup of {} snapshots to pool {pool}", ids.len())
            }
            Maintenance::TapeRestore { id, .. } => write!(f, "tape restore of {id}"),
        }
    }
}

/// A job name is one URL path segment and one word on a command line:
/// 1 to 64 letters, digits, `-`, `_` or `.`, and not `.` or `..` (which
/// browsers and HTTP clients remove from a path).
fn check_job_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name != "."
        && name != "..";
    if !ok {
        bail!("job name {name:?} is not allowed: use 1 to 64 letters, digits, '-', '_' or '.', not . or ..");
    }
    Ok(())
}

fn api_group(job: &Job) -> String {
    if job.group.ns.is_root() { job.group.to_string() } else { format!("{}/{}", job.group.ns, job.group) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_schedules_fire_and_measure_their_interval() {
        let every_minute = CronSchedule::parse("* * * * *").unwrap();
        assert_eq!(every_minute.next_after(1_800_000_000), Some(1_800_000_060));
        assert_eq!(every_minute.shortest_interval(1_800_000_000), 60);
        let nightly = CronSchedule::parse("0 3 * * *").unwrap();
        assert_eq!(nightly.shortest_interval(1_800_000_000), 86_400);
        let weekdays = CronSchedule::parse("30 1 * * Mon-Fri").unwrap();
        assert_eq!(weekdays.shortest_interval(1_800_000_000), 86_400);
        assert!(CronSchedule::parse("0 3 * *").unwrap_err().to_string().contains("five"));
        assert!(CronSchedule::parse("61 * * * *").is_err());
    }

    /// Day-of-week numbers mean what they mean in crontab(5): 0 and 7 are
    /// Sunday, 1 Monday; a restricted day of month and day of week fire on
    /// a day that matches either.
    #[test]
    fn cron_weekdays_and_days_of_month_mean_what_crontab_says() {
        let t = |s: &str| model::time::parse_rfc3339(s).unwrap();
        let next = |expr: &str, from: &str| {
            let s = CronSchedule::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
            s.next_after(t(from)).map(model::time::format_rfc3339)
        };
        // 2026-12-03 is a Thursday.
        let thu = "2026-12-03T00:00:00Z";
        assert_eq!(next("0 3 * * 1", thu).as_deref(), Some("2026-12-07T03:00:00Z"), "Monday");
        assert_eq!(next("0 3 * * 0", thu).as_deref(), Some("2026-12-06T03:00:00Z"), "Sunday");
        assert_eq!(next("0 3 * * 7", thu).as_deref(), Some("2026-12-06T03:00:00Z"), "Sunday too");
        assert_eq!(next("0 3 * * mon", thu).as_deref(), Some("2026-12-07T03:00:00Z"));
        assert_eq!(next("0 3 * * 1-5", thu).as_deref(), Some("2026-12-03T03:00:00Z"));
        assert_eq!(next("0 3 * * 1-5", "2026-12-04T04:00:00Z").as_deref(), Some("2026-12-07T03:00:00Z"));
        assert_eq!(next("0 3 * * 5-7", "2026-12-05T04:00:00Z").as_deref(), Some("2026-12-06T03:00:00Z"));
        assert_eq!(next("0 3 * * */2", "2026-12-03T04:00:00Z").as_deref(), Some("2026-12-05T03:00:00Z"));
        assert_eq!(next("0 3 * * 2,4", thu).as_deref(), Some("2026-12-03T03:00:00Z"));
        // The 13th or a Friday.
        let either = CronSchedule::parse("0 3 13 * 5").unwrap();
        let fires: Vec<String> = either.after(t(thu)).take(4).map(model::time::format_rfc3339).collect();
        assert_eq!(
            fires,
            ["2026-12-04T03:00:00Z", "2026-12-11T03:00:00Z", "2026-12-13T03:00:00Z", "2026-12-18T03:00:00Z"]
        );
        assert_eq!(either.shortest_interval(t("2026-12-10T00:00:00Z")), 2 * 86_400);
        // Names the cron crate took before, as stored jobs may have them.
        assert_eq!(next("0 3 * * Monday", thu).as_deref(), Some("2026-12-07T03:00:00Z"));
        assert_eq!(next("0 3 * * tues-thurs", thu).as_deref(), Some("2026-12-03T03:00:00Z"));
        assert_eq!(next("0 3 * * 7-7", thu).as_deref(), Some("2026-12-06T03:00:00Z"), "only Sunday");
        assert_eq!(next("0 3 * * 7/2", thu).as_deref(), Some("2026-12-06T03:00:00Z"));
        assert_eq!(next("0 3 * * 5/2", thu).as_deref(), Some("2026-12-04T03:00:00Z"), "Fri, Sun");
        assert_eq!(next("0 3 * * 5/2", "2026-12-04T04:00:00Z").as_deref(), Some("2026-12-06T03:00:00Z"));
        // A day of month starting with `*` does not restrict: both match
        // (Mondays on odd days: the 7th and the 21st, not the 14th).
        assert_eq!(next("0 3 */2 * 1", thu).as_deref(), Some("2026-12-07T03:00:00Z"));
        assert_eq!(next("0 3 */2 * 1", "2026-12-08T00:00:00Z").as_deref(), Some("2026-12-21T03:00:00Z"));
        for bad in ["0 3 * * 8", "0 3 * * 5-1", "0 3 * * funday", "0 3 * * */0"] {
            let err = CronSchedule::parse(bad).unwrap_err().to_string();
            assert!(err.contains("day of week"), "{bad}: {err}");
        }
    }

    /// A date that no month has is refused when a job is added; a leap
    /// day, which comes every four (at most eight) years, is not.
    #[test]
    fn schedules_that_never_fire_are_refused() {
        let from = model::time::parse_rfc3339("2026-03-01T00:00:00Z").unwrap();
        for never in ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4 *", "0 0 31 6,9,11 *"] {
            let err = CronSchedule::parse(never).unwrap().check_fires(from).unwrap_err().to_string();
            assert!(err.contains("never fires"), "{never}: {err}");
        }
        for fires in ["0 0 29 2 *", "0 0 31 * *", "0 0 31 2 1", "0 0 28 2 *"] {
            CronSchedule::parse(fires).unwrap().check_fires(from).unwrap_or_else(|e| panic!("{fires}: {e}"));
        }
        // 2096 is the last leap year before 2104 (2100 is not one).
        let late = model::time::parse_rfc3339("2096-03-01T00:00:00Z").unwrap();
        assert!(CronSchedule::parse("0 0 29 2 *").unwrap().check_fires(late).is_err(), "none before 2104");
    }

    fn job(name: &str, schedule: &str) -> Job {
        let group = BackupGroup::new(model::Namespace::root(), "host", "a").unwrap();
        Job {
            sources: vec!["/srv".into()],
            schedule: schedule.into(),
            ..Job::new(name, group, 1_800_000_000)
        }
    }

    #[test]
    fn jobs_with_unusable_names_or_schedules_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = Engine::init(&dir.path().join("ds"), crate::DatastoreConfig::default()).unwrap();
        engine.put_job(&job("web01.etc", "0 3 * * *")).unwrap();
        engine.put_job(&job("...", "0 3 * * *")).unwrap();
        for name in [".", "..", "", "a/b", "a\nb", "a b", "ü", &"x".repeat(65)] {
            let err = engine.put_job(&job(name, "0 3 * * *")).unwrap_err().to_string();
            assert!(err.contains("is not allowed"), "{name:?}: {err}");
        }
        let err = engine.put_job(&job("feb", "0 0 31 2 *")).unwrap_err().to_string();
        assert!(err.contains("never fires"), "{err}");
        let names: Vec<String> = engine.jobs().unwrap().into_iter().map(|j| j.name).collect();
        assert_eq!(names, ["...", "web01.etc"]);
    }

    /// `put_job` is the one place a job is checked: what the API refused
    /// before it reached the engine (a relative grant directory, a zero
    /// size limit, a malformed allowed host) is refused here too, so a job
    /// made by the CLI or a future caller cannot skip it.
    #[test]
    fn put_job_refuses_bad_source_grants_whoever_calls_it() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = Engine::init(&dir.path().join("ds"), crate::DatastoreConfig::default()).unwrap();
        let handled =
            |source: model::JobSource| Job { sources: vec![], source: Some(source), ..job("h", "0 3 * * *") };
        let good = model::JobSource {
            handler: "http".into(),
            params: vec![],
            allow_hosts: vec!["db.example.com:443".into()],
            grant_dir: Some("/srv/dump".into()),
            max_bytes: Some(1 << 30),
        };
        engine.put_job(&handled(good.clone())).unwrap();
        let cases = [
            (model::JobSource { grant_dir: Some("srv".into()), ..good.clone() }, "absolute path"),
            (model::JobSource { max_bytes: Some(0), ..good.clone() }, "at least 1"),
            (model::JobSource { allow_hosts: vec!["db.example.com".into()], ..good.clone() }, "HOST:PORT"),
            (model::JobSource { allow_hosts: vec!["db:0".into()], ..good.clone() }, "HOST:PORT"),
        ];
        for (source, says) in cases {
            let err = engine.put_job(&Job { name: "bad".into(), ..handled(source) }).unwrap_err();
            assert!(err.downcast_ref::<crate::ops::BadRequest>().is_some(), "{err:#}");
            assert!(err.to_string().contains(says), "{says}: {err:#}");
        }
        let both = Job { sources: vec!["/srv".into()], ..handled(good) };
        assert!(
            engine
                .put_job(&Job { name: "both".into(), ..both })
                .unwrap_err()
                .to_string()
                .contains("give one")
        );
        let names: Vec<String> = engine.jobs().unwrap().into_iter().map(|j| j.name).collect();
        assert_eq!(names, ["h"]);
    }
}
