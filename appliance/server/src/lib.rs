//! `cairn serve`: the daemon. tokio + axum over HTTPS (a self-signed
//! certificate made on first start unless files are configured), the JSON
//! API under `/api/v1` and the dashboard on the same port.
//!
//! Code map (ARCHITECTURE.md says more): `config` (TOML file, resolved
//! settings), `tls` (certificate), `routes` (the route table and `app()`),
//! `auth` (access levels, the per-route guard, CSRF), `caller`, `input`
//! (what requests carry, parsed), `error`, `finish` (request ids, the one
//! error rendering, the unauthenticated delay), `state`, `limits`,
//! `logins`, `sessions` and `remote` (the remote protocol), JSON handlers
//! in `api`, `jobs_api`, `maint_api`, `policy_api`; pages in `page` (the
//! frame), `views`, `job_views`; `metrics`; `chart` (SVG), `stream` (blocking readers
//! as bodies), `scheduler`.
//!
//! Invariant: handlers extract, make engine calls through
//! `AppState::engine` (off the async workers) and render; no backup logic
//! lives here.

mod api;
mod appliance_api;
#[cfg(test)]
mod appliance_tests;
pub mod auth;
mod caller;
mod chart;
pub mod config;
mod datastore_api;
mod error;
mod finish;
#[cfg(test)]
mod hardening_tests;
mod input;
mod job_views;
mod jobs_api;
pub mod limits;
mod logins;
mod maint_api;
mod metrics;
mod page;
mod policy_api;
mod remote;
pub mod routes;
mod scheduler;
mod sessions;
pub mod state;
mod stream;
mod tape_api;
#[cfg(test)]
mod tests;
pub mod tls;
mod views;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use engine::{DatastoreConfig, Engine};

use config::Settings;
pub use routes::app;
pub use state::AppState;

/// How long running requests get to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Run the server until SIGTERM or SIGINT.
///
/// The port is bound, and configured certificate files read, before
/// anything is created: a server that cannot start leaves no datastore,
/// admin user or certificate behind.
/// Open the datastore, or make it: in the `[s3]` bucket when one is
/// configured (attaching with `existing`), else in the directory.
fn open_datastore(settings: &Settings) -> Result<(Engine, bool)> {
    let dir = &settings.datastore;
    let Some((s3, existing)) = &settings.s3 else {
        return Engine::init(dir, DatastoreConfig::default());
    };
    if !dir.join(engine::CONFIG_FILE).exists() {
        let engine = Engine::init_s3(dir, DatastoreConfig::default(), s3.clone(), *existing)?;
        if *existing {
            let n = engine.snapshots(None)?.len();
            println!("attached to {} ({n} snapshots)", s3.describe());
            if let Err(e) = engine.datastore().check_owner() {
                println!("read-only: {e}");
            }
        } else {
            println!("datastore in {}", s3.describe());
        }
        return Ok((engine, true));
    }
    let engine = Engine::open(dir)?;
    match engine.datastore().remote() {
        Some(r) if r.settings().endpoint == s3.endpoint && r.settings().bucket == s3.bucket => {
            Ok((engine, false))
        }
        Some(r) => bail!(
            "{} keeps its data in {}, not in the bucket [s3] names ({}); fix the configuration",
            dir.display(),
            r.settings().describe(),
            s3.describe()
        ),
        None => bail!(
            "{} is a datastore in a directory, but [s3] names a bucket; [s3] only makes new datastores: remove it, or point the server at a new directory",
            dir.display()
        ),
    }
}

pub fn serve(settings: Settings) -> Result<()> {
    let listener = std::net::TcpListener::bind(settings.listen).with_context(|| {
        format!("cannot listen on {}; is another server using the port?", settings.listen)
    })?;
    let configured = match settings.insecure_http || settings.make_cert {
        true => None,
        false => Some(tls::load_or_create(&settings.cert, &settings.key, false)?.0),
    };
    let (engine, created) = open_datastore(&settings)?;
    if created {
        println!("created datastore {}", settings.datastore.display());
    }
    if let Some(password) = engine.ensure_admin(state::now())? {
        println!("created user admin with password {password}");
        println!("  (shown only now; change it with `cairn user passwd admin`)");
        if let Some(path) = &settings.initial_password_file {
            write_initial_password(path, &password)?;
        }
    }
    let tls = if settings.insecure_http {
        None
    } else if configured.is_some() {
        configured
    } else {
        let (identity, made) = tls::load_or_create(&settings.cert, &settings.key, true)?;
        if made {
            println!("made a self-signed certificate {}", settings.cert.display());
        }
        Some(identity)
    };
    let fingerprint = tls.as_ref().map(|id| tls::fingerprint(&id.cert_der));
    let interrupted = engine.fail_interrupted_tasks(state::now())?;
    if interrupted > 0 {
        println!("{interrupted} task(s) were cut short by the last stop; marked failed");
    }
    let state = AppState::configured(
        engine,
        fingerprint.clone(),
        state::AUTH_DELAY,
        settings.workers,
        settings.limits,
        settings.job_paths.clone(),
        settings.tape_library.clone(),
    )
    .with_appliance(settings.appliance.clone(), settings.initial_password_file.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cairn-http")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(settings, listener, state, tls, fingerprint))
}

/// The appliance's console shows the first password until the admin has
/// logged in: a file only root may read, written whole or not at all.
fn write_initial_password(path: &std::path::Path, password: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("part");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    writeln!(f, "{password}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

async fn run(
    settings: Settings,
    listener: std::net::TcpListener,
    state: AppState,
    tls: Option<tls::Identity>,
    fp: Option<String>,
) -> Result<()> {
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("serving {} on {scheme}://{addr}", settings.datastore.display());
    if let Some(fp) = &fp {
        println!("certificate fingerprint (SHA-256): {fp}");
    }
    std::io::stdout().flush()?;
    tracing::info!(%addr, datastore = %settings.datastore.display(), workers = settings.workers, "serving");

    let handle = axum_server::Handle::<SocketAddr>::new();
    let schedule = tokio::spawn(state.runner().clone().schedule_loop());
    tokio::spawn(shutdown_on_signal(handle.clone()));
    let runner = state.runner().clone();
    let (sessions_state, idle) = (state.clone(), settings.session_idle);
    let expiry = tokio::spawn(async move {
        let mut tick =
            tokio::time::interval((idle / 4).clamp(Duration::from_millis(250), Duration::from_secs(60)));
        loop {
            tick.tick().await;
            sessions_state.sessions().expire(idle);
        }
    });
    let app = app(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    // TCP_NODELAY: without it, the last segment of every response larger
    // than one packet waits for the client's delayed ACK (~40 ms).
    let nodelay = axum_server::accept::NoDelayAcceptor::new();
    match tls {
        Some(identity) => {
            let config =
                axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(server_config(&identity)?));
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(config).acceptor(nodelay);
            axum_server::from_tcp(listener)?.acceptor(acceptor).handle(handle).serve(app).await?
        }
        None => axum_server::from_tcp(listener)?.acceptor(nodelay).handle(handle).serve(app).await?,
    }
    // No new runs; running ones finish (a backup cut short by the deadline
    // leaves no visible snapshot and is marked failed on the next start).
    schedule.abort();
    expiry.abort();
    // Remote backups still open leave nothing visible.
    state.sessions().clear();
    if !runner.wait_idle(SHUTDOWN_GRACE).await {
        println!("jobs still running after {} s; stopping anyway", SHUTDOWN_GRACE.as_secs());
    }
    println!("stopped");
    Ok(())
}

/// rustls server settings for the identity: ring, TLS 1.2 and 1.3, h2 and
/// http/1.1.
fn server_config(identity: &tls::Identity) -> Result<rustls::ServerConfig> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let certs = CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("reading the certificate")?;
    let key =
        PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).context("reading the private key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and key do not fit together")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

async fn shutdown_on_signal(handle: axum_server::Handle<SocketAddr>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot listen for SIGTERM; stop the server with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    println!("shutting down: letting running requests finish (at most {} s)", SHUTDOWN_GRACE.as_secs());
    let _ = std::io::stdout().flush();
    handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
}
