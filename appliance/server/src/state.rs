//! What every request handler shares: the engine over the datastore and a
//! few facts about this server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::Engine;
use engine::job_paths::PathRules;

use super::caller::Caller;
use super::error::{AppError, AppResult};
use super::limits::Limits;
use super::logins::Logins;
use super::scheduler::Runner;
use super::sessions::Sessions;

/// Cloned into every handler (an `Arc` inside).
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    runner: Arc<Runner>,
    sessions: Sessions,
    /// Password checks in flight and failed logins per address and name.
    logins: Logins,
    /// Where jobs may read (`[jobs] source_roots`) and what they never may.
    job_paths: PathRules,
    /// The tape library (`[tape] library`), if any.
    tape_library: Option<std::path::PathBuf>,
    /// The appliance this server manages (`[appliance] enabled`), if any.
    appliance: Option<crate::config::Appliance>,
    /// `[appliance] initial_password_file`: removed once the admin logs in.
    initial_password_file: Option<std::path::PathBuf>,
    /// Recently authenticated bearer tokens (blake3 of the token text →
    /// caller, when checked), so a backup's thousands of chunk uploads do
    /// not each open the catalog.
    token_cache: Mutex<HashMap<blake3::Hash, (Caller, Instant)>>,
    /// SHA-256 of the server certificate, `None` when serving plain HTTP.
    fingerprint: Option<String>,
    /// Answers to callers who failed to authenticate wait until this long
    /// after the request arrived.
    auth_delay: Duration,
    /// The policy host, started at the first policy call (its engine and
    /// epoch thread cost nothing until then); jobs use the same.
    policies: Arc<jobhost::JobHost>,
    /// Every snapshot's summary as of a catalog generation: the overview,
    /// status and groups read these on every request, and re-reading
    /// 10,000 rows each time is most of their cost.
    summaries: Cached<Vec<model::SnapshotSummary>>,
    /// Every snapshot's full row as of a catalog generation, for the
    /// snapshot list.
    snapshots: Cached<Vec<model::SnapshotInfo>>,
}

/// A value read from the catalog, with the snapshot generation it is
/// current for.
type Cached<T> = Mutex<Option<(u64, Arc<T>)>>;

/// Reads a value from the catalog unless its snapshot generation is still
/// the one given; answers the generation read at.
type ReadSince<T> = fn(&Engine, Option<u64>) -> anyhow::Result<(u64, Option<T>)>;

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("fingerprint", &self.inner.fingerprint).finish_non_exhaustive()
    }
}

/// How long a checked bearer token is trusted without looking it up again:
/// a token revoked from another process (the CLI) stops working within
/// this time; one revoked through this server stops at once.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(10);

/// The wait before answering an unauthenticated failure.
pub const AUTH_DELAY: Duration = Duration::from_secs(3);

impl AppState {
    /// A server state with the default limits and no job roots (tests).
    #[cfg(test)]
    pub fn new(engine: Engine, fingerprint: Option<String>, auth_delay: Duration, workers: usize) -> Self {
        Self::configured(
            engine,
            fingerprint,
            auth_delay,
            workers,
            Limits::default(),
            PathRules::default(),
            None,
        )
    }

    /// A server state with the given `[limits]` and rules for job paths.
    pub fn configured(
        engine: Engine,
        fingerprint: Option<String>,
        auth_delay: Duration,
        workers: usize,
        limits: Limits,
        mut job_paths: PathRules,
        tape_library: Option<std::path::PathBuf>,
    ) -> Self {
        job_paths.protected.push(engine.datastore().root().to_path_buf());
        let policies = Arc::new(jobhost::JobHost::default());
        let runner = Runner::new(engine.clone(), workers, policies.clone());
        Self {
            inner: Arc::new(Inner {
                engine,
                runner,
                sessions: Sessions::new(limits),
                logins: Logins::new(&limits),
                job_paths,
                tape_library,
                appliance: None,
                initial_password_file: None,
                token_cache: Mutex::default(),
                fingerprint,
                auth_delay,
                policies,
                summaries: Mutex::default(),
                snapshots: Mutex::default(),
            }),
        }
    }

    /// Starts job runs under the worker limit.
    pub fn runner(&self) -> &Arc<Runner> {
        &self.inner.runner
    }

    /// The caller a bearer token was found to be within the last
    /// `TOKEN_CACHE_TTL`.
    pub fn cached_token(&self, token: &str) -> Option<Caller> {
        let cache = self.inner.token_cache.lock().expect("lock");
        let (caller, at) = cache.get(&blake3::hash(token.as_bytes()))?;
        (at.elapsed() < TOKEN_CACHE_TTL).then(|| caller.clone())
    }

    pub fn remember_token(&self, token: &str, caller: &Caller) {
        let mut cache = self.inner.token_cache.lock().expect("lock");
        if cache.len() >= 1024 {
            cache.retain(|_, (_, at)| at.elapsed() < TOKEN_CACHE_TTL);
            if cache.len() >= 1024 {
                cache.clear();
            }
        }
        cache.insert(blake3::hash(token.as_bytes()), (caller.clone(), Instant::now()));
    }

    /// Forget every cached token (after a revocation or a user removal here).
    pub fn forget_tokens(&self) {
        self.inner.token_cache.lock().expect("lock").clear();
    }

    /// Where jobs may read.
    pub fn job_paths(&self) -> &PathRules {
        &self.inner.job_paths
    }

    /// Manage the appliance (`[appliance]`); only on a state nobody shares yet.
    pub fn with_appliance(
        mut self,
        appliance: Option<crate::config::Appliance>,
        initial_password_file: Option<std::path::PathBuf>,
    ) -> Self {
        let inner = Arc::get_mut(&mut self.inner).expect("a state is configured before it is shared");
        inner.appliance = appliance;
        inner.initial_password_file = initial_password_file;
        self
    }

    /// The appliance, when the server runs on the appliance image.
    pub fn appliance(&self) -> Option<&crate::config::Appliance> {
        self.inner.appliance.as_ref()
    }

    /// The file holding the first admin password, while it is still there.
    pub fn initial_password_file(&self) -> Option<&std::path::Path> {
        self.inner.initial_password_file.as_deref().filter(|p| p.exists())
    }

    /// The tape library, if the server has one.
    pub fn tape_library(&self) -> Option<&std::path::Path> {
        self.inner.tape_library.as_deref()
    }

    /// Password checks and login back-off.
    pub fn logins(&self) -> &Logins {
        &self.inner.logins
    }

    /// Remote backup and reader sessions.
    pub fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }

    pub fn fingerprint(&self) -> Option<&str> {
        self.inner.fingerprint.as_deref()
    }

    pub fn auth_delay(&self) -> Duration {
        self.inner.auth_delay
    }

    /// Whether cookies get the `Secure` attribute (always, except over
    /// plain HTTP on loopback, where a browser would drop them).
    pub fn secure_cookies(&self) -> bool {
        self.inner.fingerprint.is_some()
    }

    /// The engine itself, for work already on a blocking thread.
    pub fn engine_handle(&self) -> &Engine {
        &self.inner.engine
    }

    /// Run one (blocking) engine call off the async workers.
    pub async fn engine<T, F>(&self, call: F) -> AppResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> anyhow::Result<T> + Send + 'static,
    {
        let state = self.clone();
        match tokio::task::spawn_blocking(move || call(&state.inner.engine)).await {
            Ok(result) => result.map_err(AppError::from),
            Err(e) => Err(AppError::from(anyhow::anyhow!("engine call failed: {e}"))),
        }
    }
}

impl AppState {
    /// Every snapshot's summary, read again only when the catalog changed
    /// (its generation counts every write of a snapshot row, from this
    /// process or another).
    pub async fn summaries(&self) -> AppResult<Arc<Vec<model::SnapshotSummary>>> {
        self.cached(&self.inner.summaries, Engine::snapshot_summaries_since).await
    }

    /// Every snapshot's full row, read again only when the catalog changed.
    pub async fn snapshots(&self) -> AppResult<Arc<Vec<model::SnapshotInfo>>> {
        self.cached(&self.inner.snapshots, Engine::snapshots_since).await
    }

    /// The value in `slot` if the catalog's snapshot generation is still
    /// the one it was read at, else `read` afresh (and kept).
    async fn cached<T: Default + Send + Sync + 'static>(
        &self,
        slot: &Cached<T>,
        read: ReadSince<T>,
    ) -> AppResult<Arc<T>> {
        let cached = slot.lock().expect("lock").clone();
        let known = cached.as_ref().map(|(g, _)| *g);
        let (generation, fresh) = self.engine(move |e| read(e, known)).await?;
        match (fresh, cached) {
            (None, Some((_, all))) => Ok(all),
            (fresh, _) => {
                let all = Arc::new(fresh.unwrap_or_default());
                *slot.lock().expect("lock") = Some((generation, all.clone()));
                Ok(all)
            }
        }
    }

    /// How many times the scheduler asked a scheduler policy about a job.
    pub fn scheduler_calls(&self) -> u64 {
        self.inner.policies.scheduler_calls()
    }

    /// Run one (blocking) call with the policy host off the async workers;
    /// components compile in a child process (`cairn __compile-policy`).
    pub async fn policies<T, F>(&self, call: F) -> AppResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Engine, &policy::Host) -> anyhow::Result<T> + Send + 'static,
    {
        let state = self.clone();
        self.engine(move |e| {
            let host = state.inner.policies.host()?;
            call(e, &host)
        })
        .await
    }
}

/// The current time in Unix seconds: the one clock (`engine::clock`).
pub use engine::clock::now;
