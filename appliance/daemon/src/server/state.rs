//! What every request handler shares: the engine over the datastore and a
//! few facts about this server.

use std::sync::Arc;
use std::time::Duration;

use engine::Engine;

use super::error::{AppError, AppResult};
use super::remote::Sessions;
use super::scheduler::Runner;

/// Cloned into every handler (an `Arc` inside).
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    runner: Arc<Runner>,
    sessions: Sessions,
    /// SHA-256 of the server certificate, `None` when serving plain HTTP.
    fingerprint: Option<String>,
    /// Answers to callers who failed to authenticate wait until this long
    /// after the request arrived.
    auth_delay: Duration,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("fingerprint", &self.inner.fingerprint).finish_non_exhaustive()
    }
}

/// The wait before answering an unauthenticated failure.
pub const AUTH_DELAY: Duration = Duration::from_secs(3);

impl AppState {
    pub fn new(engine: Engine, fingerprint: Option<String>, auth_delay: Duration, workers: usize) -> Self {
        let runner = Runner::new(engine.clone(), workers);
        Self {
            inner: Arc::new(Inner { engine, runner, sessions: Sessions::default(), fingerprint, auth_delay }),
        }
    }

    /// Starts job runs under the worker limit.
    pub fn runner(&self) -> &Arc<Runner> {
        &self.inner.runner
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

/// The current time in Unix seconds.
pub fn now() -> i64 {
    crate::cli::now()
}
