//! [`JobHost`]: the policies a job names, run for the engine's job
//! runner (its scheduler, its retention, its source handler), with one
//! policy host for the process and each policy compiled once while its
//! record is unchanged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Result, anyhow};
use engine::Engine;
use model::{PolicyRecord, SnapshotInfo};
use policy::{Host, Limits, Policy, RetentionSnapshot, World};

use crate::policies::{check_name, host, load, to_retention};
use crate::sources::{self, HandlerRun};

/// A policy made ready, with the record it was made from.
type ReadyPolicy = (PolicyRecord, Arc<Policy>, Limits);

/// The policies jobs use, for the engine's job runner: one policy host
/// for the process, started at the first call.
#[derive(Debug, Default)]
pub struct JobHost {
    host: std::sync::OnceLock<Result<Arc<Host>, String>>,
    /// Policies made ready, by name, with the record they were made from:
    /// the scheduler asks a policy-scheduled job every few seconds, and
    /// reading, hashing and deserializing its component each time would
    /// be most of the work.
    ready: Mutex<HashMap<String, ReadyPolicy>>,
    /// The last "not now" of each policy-scheduled job's scheduler, by job
    /// name: it is not asked again before the time it gave while nothing
    /// it was told has changed.
    waiting: Mutex<HashMap<String, Waiting>>,
    /// How many times a scheduler policy was asked.
    asked: std::sync::atomic::AtomicU64,
}

/// A scheduler's "not now", with what it was told.
#[derive(Debug)]
struct Waiting {
    job: model::Job,
    policy: Option<PolicyRecord>,
    runs: Vec<engine::jobs::JobRunInfo>,
    next_check: i64,
}

impl JobHost {
    /// The host (started now if it was not yet).
    /// A job host over `host` instead of this binary's own (tests: a host
    /// that compiles in this process).
    #[cfg(test)]
    pub fn with_host(host: Host) -> Self {
        let jobs = Self::default();
        let _ = jobs.host.set(Ok(Arc::new(host)));
        jobs
    }

    pub fn host(&self) -> Result<Arc<Host>> {
        self.host
            .get_or_init(|| host().map(Arc::new).map_err(|e| format!("{e:#}")))
            .clone()
            .map_err(|e| anyhow!("the policy host cannot start: {e}"))
    }

    /// How many times a scheduler policy was asked about a job.
    pub fn scheduler_calls(&self) -> u64 {
        self.asked.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stored policy `name` of world `world`, ready to call: the one made
    /// ready before while its record is unchanged, else loaded (see
    /// [`load`]).
    fn policy(
        &self,
        engine: &Engine,
        host: &Host,
        name: &str,
        world: World,
    ) -> Result<(Arc<Policy>, Limits)> {
        check_name(name)?;
        let record = engine.policy(name)?;
        if let Some(record) = &record
            && let Some((seen, policy, limits)) = self.ready.lock().expect("lock").get(name)
            && seen == record
            && record.world == world.name()
        {
            return Ok((policy.clone(), *limits));
        }
        let (record, policy, limits) = load(engine, host, name, world)?;
        let policy = Arc::new(policy);
        self.ready.lock().expect("lock").insert(name.to_owned(), (record, policy.clone(), limits));
        Ok((policy, limits))
    }
}

impl engine::jobs::JobPolicies for JobHost {
    fn schedule(
        &self,
        engine: &Engine,
        job: &model::Job,
        p: &model::PolicyUse,
        runs: &[engine::jobs::JobRunInfo],
        now: i64,
    ) -> Result<engine::jobs::ScheduleAnswer> {
        let host = self.host()?;
        let (policy, limits) = self.policy(engine, &host, &p.name, World::Scheduler)?;
        let sjob = policy::ScheduleJob {
            name: job.name.clone(),
            group: format!("{}/{}", job.group.kind, job.group.id),
            params: p.params.clone(),
        };
        let runs: Vec<policy::JobRun> = runs
            .iter()
            .map(|r| policy::JobRun {
                time: r.time,
                outcome: r.outcome.clone(),
                tags: r.tags.clone(),
                duration_seconds: r.duration_seconds,
            })
            .collect();
        self.asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = host.schedule(&policy, &sjob, &runs, now, &limits)?;
        Ok(engine::jobs::ScheduleAnswer {
            run: d.run_now,
            tags: d.tags,
            reason: d.reason,
            next_check: d.next_check,
        })
    }

    fn due(
        &self,
        engine: &Engine,
        job: &model::Job,
        p: &model::PolicyUse,
        runs: &[engine::jobs::JobRunInfo],
        now: i64,
    ) -> Result<Option<Vec<String>>> {
        let policy = engine.policy(&p.name)?;
        if let Some(w) = self.waiting.lock().expect("lock").get(&job.name)
            && now < w.next_check
            && w.job == *job
            && w.policy == policy
            && w.runs == runs
        {
            return Ok(None);
        }
        let a = self.schedule(engine, job, p, runs, now)?;
        let mut waiting = self.waiting.lock().expect("lock");
        if a.run {
            waiting.remove(&job.name);
            return Ok(Some(a.tags));
        }
        tracing::debug!(job = %job.name, next_check = a.next_check, "not due: {}", a.reason);
        let w = Waiting { job: job.clone(), policy, runs: runs.to_vec(), next_check: a.next_check };
        waiting.insert(job.name.clone(), w);
        Ok(None)
    }

    fn retention(
        &self,
        engine: &Engine,
        p: &model::PolicyUse,
        group: &model::BackupGroup,
        snapshots: &[SnapshotInfo],
        now: i64,
    ) -> Result<Vec<(bool, String)>> {
        let host = self.host()?;
        let (policy, limits) = self.policy(engine, &host, &p.name, World::Retention)?;
        let snaps: Vec<RetentionSnapshot> = snapshots.iter().map(to_retention).collect();
        let decisions = host.retention(&policy, &group.to_string(), &snaps, now, &p.params, &limits)?;
        Ok(decisions.into_iter().map(|d| (d.keep, d.reason)).collect())
    }

    fn source_backup(
        &self,
        engine: &Engine,
        job: &model::Job,
        source: &model::JobSource,
        tags: Vec<String>,
        time: i64,
    ) -> Result<engine::BackupReport> {
        let host = self.host()?;
        let grants =
            sources::grants(&source.allow_hosts, source.grant_dir.as_deref().map(std::path::Path::new))?;
        let run = HandlerRun {
            params: &source.params,
            grants: &grants,
            group: job.group.clone(),
            tags: &tags,
            time,
            max_bytes: source.max_bytes,
        };
        sources::backup(engine, &host, &source.handler, &run, &engine::Progress::default())
    }
}

#[cfg(test)]
mod tests {
    use engine::jobs::JobPolicies;
    use model::time::parse_rfc3339;
    use model::{BackupGroup, Job, Namespace, PolicyUse};

    use super::*;
    use crate::policies::add;

    fn at(text: &str) -> i64 {
        parse_rfc3339(text).expect("time")
    }

    #[test]
    fn a_scheduler_is_not_asked_again_before_its_time_unless_the_job_changed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (engine, _) = Engine::init(&dir.path().join("ds"), Default::default()).expect("init");
        let wasm = std::fs::read(policy_guests::example("schedule-window")).expect("component");
        add(&engine, &Host::new().expect("host"), &wasm, Some("window"), None, None, 0).expect("add");
        let window = |w: &str| PolicyUse { name: "window".into(), params: vec![("window".into(), w.into())] };
        let group = BackupGroup::parse("host/web01", &Namespace::root()).expect("group");
        let mut job = Job {
            sources: vec!["/srv".into()],
            scheduler: Some(window("22:00-04:00")),
            ..Job::new("web", group, 0)
        };
        // Compiling in this process: the test binary is no `cairn` to run
        // as the compiler child.
        let jobs = JobHost::with_host(Host::new().expect("host"));
        let due = |job: &Job, now: &str| {
            jobs.due(&engine, job, job.scheduler.as_ref().expect("scheduler"), &[], at(now)).expect("due")
        };
        // Outside the window: not now, ask again at 22:00.
        assert_eq!(due(&job, "2026-11-22T12:00:00Z"), None);
        assert_eq!(jobs.scheduler_calls(), 1);
        for now in ["2026-11-22T12:00:05Z", "2026-11-22T18:00:00Z", "2026-11-22T21:59:59Z"] {
            assert_eq!(due(&job, now), None);
        }
        assert_eq!(jobs.scheduler_calls(), 1, "not asked again before 22:00");
        // The time it gave has come: asked, and due.
        assert_eq!(due(&job, "2026-11-22T22:00:00Z"), Some(vec!["daily".to_owned()]));
        assert_eq!(jobs.scheduler_calls(), 2);

        // An edited job is asked at once.
        assert_eq!(due(&job, "2026-11-23T12:00:00Z"), None);
        assert_eq!(jobs.scheduler_calls(), 3);
        job.scheduler = Some(window("11:00-13:00"));
        assert_eq!(due(&job, "2026-11-23T12:00:01Z"), Some(vec!["daily".to_owned()]));
        assert_eq!(jobs.scheduler_calls(), 4);
        // A manual run's tags always come from a fresh answer.
        let answer = jobs
            .schedule(
                &engine,
                &job,
                job.scheduler.as_ref().expect("scheduler"),
                &[],
                at("2026-11-23T12:00:02Z"),
            )
            .expect("schedule");
        assert!(answer.run && answer.next_check > at("2026-11-23T12:00:02Z"), "{answer:?}");
        assert_eq!(jobs.scheduler_calls(), 5);
    }
}
