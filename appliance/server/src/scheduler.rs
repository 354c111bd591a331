//! Running jobs: the schedule loop that starts due jobs, and the runner
//! that bounds how many run at once (the configured worker limit). "Run
//! now" from the API or dashboard goes through the same runner.
//!
//! Invariant: one job never runs twice at the same time.
//! Invariant: every run is a task in the catalog before it waits for a worker.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::Engine;
use engine::jobs::{JobPolicies, Maintenance};
use tokio::sync::Semaphore;

use engine::clock::now;

/// How often the schedule is looked at.
pub const TICK: Duration = Duration::from_secs(5);

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").field("workers", &self.workers).finish_non_exhaustive()
    }
}

/// Starts job runs under the worker limit.
pub struct Runner {
    engine: Engine,
    /// Runs the policies jobs name (scheduler, retention, source).
    policies: Arc<dyn JobPolicies>,
    workers: u32,
    permits: Arc<Semaphore>,
    running: Mutex<HashSet<String>>,
    /// Looks at the schedule completed, for `/metrics` (and tests that wait
    /// for the scheduler instead of sleeping).
    ticks: std::sync::atomic::AtomicU64,
}

impl Runner {
    pub fn new(engine: Engine, workers: usize, policies: Arc<dyn JobPolicies>) -> Arc<Self> {
        let workers = workers.clamp(1, 64) as u32;
        Arc::new(Self {
            engine,
            policies,
            workers,
            permits: Arc::new(Semaphore::new(workers as usize)),
            running: Mutex::new(HashSet::new()),
            ticks: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// How many times the schedule loop has looked at the schedule.
    pub fn ticks(&self) -> u64 {
        self.ticks.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Queue a run of `job`; returns its task id, or `None` when the job is
    /// already running or queued.
    pub async fn start(self: &Arc<Self>, job: &str, trigger: &str) -> anyhow::Result<Option<u64>> {
        if !self.running.lock().expect("runner lock").insert(job.to_owned()) {
            return Ok(None);
        }
        let (engine, name, trig) = (self.engine.clone(), job.to_owned(), trigger.to_owned());
        let queued = tokio::task::spawn_blocking(move || engine.start_job(&name, &trig, now())).await?;
        let id = match queued {
            Ok(id) => id,
            Err(e) => {
                self.running.lock().expect("runner lock").remove(job);
                return Err(e);
            }
        };
        let me = self.clone();
        let name = job.to_owned();
        tokio::spawn(async move {
            let permit = me.permits.clone().acquire_owned().await;
            let (engine, policies) = (me.engine.clone(), me.policies.clone());
            let result = tokio::task::spawn_blocking(move || engine.run_task(id, policies.as_ref())).await;
            drop(permit);
            match result {
                Ok(Ok(task)) => {
                    tracing::info!(task = id, job = %name, state = task.state.as_str(), "job finished")
                }
                Ok(Err(e)) => tracing::error!(task = id, job = %name, "job could not run: {e:#}"),
                Err(e) => tracing::error!(task = id, job = %name, "job panicked: {e}"),
            }
            me.running.lock().expect("runner lock").remove(&name);
        });
        Ok(Some(id))
    }

    /// Queue a maintenance task (verify, prune, gc) under the same worker
    /// limit; returns its task id, or `None` when the same work is already
    /// queued or running.
    pub async fn start_maintenance(
        self: &Arc<Self>,
        what: Maintenance,
        trigger: &str,
    ) -> anyhow::Result<Option<u64>> {
        let key = what.to_string();
        if !self.running.lock().expect("runner lock").insert(key.clone()) {
            return Ok(None);
        }
        let (engine, w, trig) = (self.engine.clone(), what.clone(), trigger.to_owned());
        let queued = tokio::task::spawn_blocking(move || engine.start_maintenance(&w, &trig, now())).await?;
        let id = match queued {
            Ok(id) => id,
            Err(e) => {
                self.running.lock().expect("runner lock").remove(&key);
                return Err(e);
            }
        };
        let me = self.clone();
        tokio::spawn(async move {
            let permit = me.permits.clone().acquire_owned().await;
            let engine = me.engine.clone();
            let result = tokio::task::spawn_blocking(move || engine.run_maintenance(id, &what)).await;
            drop(permit);
            match result {
                Ok(Ok(task)) => tracing::info!(task = id, %key, state = task.state.as_str(), "task finished"),
                Ok(Err(e)) => tracing::error!(task = id, %key, "task could not run: {e:#}"),
                Err(e) => tracing::error!(task = id, %key, "task panicked: {e}"),
            }
            me.running.lock().expect("runner lock").remove(&key);
        });
        Ok(Some(id))
    }

    /// Wait until no job runs, for at most `limit`; true if none does.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let all = self.permits.acquire_many(self.workers);
        matches!(tokio::time::timeout(limit, all).await, Ok(Ok(_)))
            && self.running.lock().expect("runner lock").is_empty()
    }

    /// Start every due job, forever, every `TICK`.
    pub async fn schedule_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let (engine, policies) = (self.engine.clone(), self.policies.clone());
            let due =
                match tokio::task::spawn_blocking(move || engine.due_jobs(now(), policies.as_ref())).await {
                    Ok(Ok(due)) => due,
                    Ok(Err(e)) => {
                        tracing::error!("cannot read the schedule: {e:#}");
                        continue;
                    }
                    Err(_) => continue,
                };
            for job in due {
                match self.start(&job.name, "schedule").await {
                    Ok(Some(id)) => tracing::info!(task = id, job = %job.name, "scheduled run started"),
                    Ok(None) => {}
                    Err(e) => tracing::error!(job = %job.name, "cannot start: {e:#}"),
                }
            }
            self.ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}
