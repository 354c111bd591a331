//! The appliance: its A/B slots and signed updates (`osimage`), for a
//! server that runs on Cairn's appliance image (`[appliance] enabled`).
//! `GET /api/v1/appliance` says which slot runs and what became of the
//! last update; `POST /api/v1/appliance/update` (admins) takes a bundle,
//! writes it into the other slot and reboots into it. The Appliance page
//! does the same with a form, and the welcome page is where the admin
//! lands after logging in with the first-boot password.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use askama::Template;
use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::{Multipart, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::auth::Caller;
use super::error::{AppError, AppResult};
use super::page::{Chrome, Flash, render, render_flash};
use super::state::AppState;
use crate::config::Appliance;

/// Largest bundle accepted: two 1 GiB root slots' worth.
pub const MAX_BUNDLE: u64 = 2 << 30;

fn appliance(state: &AppState) -> AppResult<Appliance> {
    state.appliance().cloned().ok_or_else(|| {
        AppError::not_found(
            "this server does not run on the Cairn appliance image ([appliance] enabled is off)",
        )
    })
}

#[derive(Debug, Serialize)]
pub struct StatusJson {
    pub summary: String,
    #[serde(flatten)]
    pub status: osimage::Status,
}

async fn read_status(a: &Appliance) -> AppResult<osimage::Status> {
    let layout = a.layout.clone();
    tokio::task::spawn_blocking(move || layout.status())
        .await
        .map_err(|e| AppError::from(anyhow::anyhow!("{e}")))?
        .map_err(|e| AppError::from(anyhow::anyhow!("{e}")))
}

/// `GET /api/v1/appliance`.
pub async fn status(State(state): State<AppState>) -> AppResult<Json<StatusJson>> {
    let status = read_status(&appliance(&state)?).await?;
    Ok(Json(StatusJson { summary: status.summary(), status }))
}

#[derive(Debug, Deserialize)]
pub struct UpdateQuery {
    /// Reboot into the new slot once it is written (default true).
    pub reboot: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct UpdateJson {
    pub version: String,
    pub slot: osimage::Slot,
    pub entry: String,
    pub rebooting: bool,
}

/// An update being received or applied; one at a time.
static UPDATING: AtomicBool = AtomicBool::new(false);

/// A bundle being received: a file in the upload directory, removed
/// whatever happens, and the one update in progress.
struct Upload {
    path: PathBuf,
    file: tokio::fs::File,
    len: u64,
}

impl Upload {
    async fn new(a: &Appliance) -> AppResult<Upload> {
        if UPDATING.swap(true, Ordering::SeqCst) {
            return Err(AppError::new(StatusCode::CONFLICT, "another update is being received or applied"));
        }
        let started = Upload::start(a).await;
        if started.is_err() {
            UPDATING.store(false, Ordering::SeqCst);
        }
        started
    }

    async fn start(a: &Appliance) -> AppResult<Upload> {
        tokio::fs::create_dir_all(&a.upload_dir).await.map_err(anyhow::Error::from)?;
        let path = a.upload_dir.join("update.bundle.part");
        let file = tokio::fs::File::create(&path).await.map_err(anyhow::Error::from)?;
        Ok(Upload { path, file, len: 0 })
    }

    async fn write(&mut self, bytes: &[u8]) -> AppResult<()> {
        self.len += bytes.len() as u64;
        if self.len > MAX_BUNDLE {
            return Err(AppError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("an update bundle is at most {} GiB", MAX_BUNDLE >> 30),
            ));
        }
        self.file
            .write_all(bytes)
            .await
            .map_err(|e| AppError::from(anyhow::anyhow!("storing the upload: {e}")))
    }

    /// Check the signature, write the other slot, install its entry.
    async fn apply(mut self, a: &Appliance) -> AppResult<osimage::slots::Applied> {
        self.file.flush().await.map_err(anyhow::Error::from)?;
        let layout = a.layout.clone();
        let path = self.path.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut bundle = osimage::slots::open_trusted(&layout, &path)?;
            tracing::info!(version = %bundle.manifest.version, "applying an update bundle");
            layout.apply(&mut bundle, &mut |step| tracing::info!("update: {step}"))
        })
        .await
        .map_err(|e| AppError::from(anyhow::anyhow!("{e}")))?;
        done.map_err(|e| {
            use osimage::slots::UpdateError as U;
            let status = match &e {
                U::Io { .. } | U::ReadBack(_) => StatusCode::INTERNAL_SERVER_ERROR,
                U::Bundle(osimage::BundleError::Io(_)) => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            AppError::new(status, e.to_string())
        })
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        UPDATING.store(false, Ordering::SeqCst);
    }
}

fn reboot_soon(a: &Appliance) {
    if !a.reboot {
        tracing::warn!("not rebooting: [appliance] reboots are off");
        return;
    }
    tokio::spawn(async {
        // Let the answer reach the client first.
        tokio::time::sleep(Duration::from_secs(2)).await;
        tracing::warn!("rebooting into the updated slot");
        if let Err(e) = tokio::task::spawn_blocking(osimage::slots::reboot).await {
            tracing::error!("reboot: {e}");
        }
    });
}

/// `POST /api/v1/appliance/update?reboot=BOOL`: the body is the bundle.
pub async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<UpdateQuery>,
    body: Body,
) -> AppResult<Json<UpdateJson>> {
    let a = appliance(&state)?;
    let mut upload = Upload::new(&a).await?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| AppError::bad_request(format!("reading the upload: {e}")))?;
        upload.write(&chunk).await?;
    }
    tracing::info!(user = %caller.name, bytes = upload.len, "update bundle received");
    let applied = upload.apply(&a).await?;
    let rebooting = q.reboot.unwrap_or(true) && a.reboot;
    if rebooting {
        reboot_soon(&a);
    }
    Ok(Json(UpdateJson { version: applied.version, slot: applied.slot, entry: applied.entry, rebooting }))
}

#[derive(Template)]
#[template(path = "appliance.html")]
struct AppliancePage {
    chrome: Chrome,
    status: Option<osimage::Status>,
    summary: String,
    rolled_back: bool,
    problem: Option<String>,
    flash: Flash,
}

async fn page_with(state: &AppState, caller: &Caller, flash: Flash) -> AppResult<Response> {
    let chrome = Chrome::new(state, caller);
    let (status, problem) = match state.appliance() {
        None => (None, Some("This server does not run on the Cairn appliance image.".to_owned())),
        Some(a) => match read_status(a).await {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e.message)),
        },
    };
    let summary = status.as_ref().map(osimage::Status::summary).unwrap_or_default();
    let rolled_back =
        matches!(status.as_ref().map(|s| &s.update), Some(osimage::slots::UpdateState::RolledBack { .. }));
    let page = AppliancePage { chrome, status, summary, rolled_back, problem, flash };
    render_flash(&page, &page.flash)
}

/// `GET /appliance`.
pub async fn page(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> AppResult<Response> {
    page_with(&state, &caller, Flash::default()).await
}

/// `POST /appliance/update`: the page's upload form (field `bundle`).
pub async fn update_form(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    mut form: Multipart,
) -> AppResult<Response> {
    let result: AppResult<(osimage::slots::Applied, Appliance)> = async {
        let a = appliance(&state)?;
        let mut upload = None;
        while let Some(mut field) = form.next_field().await? {
            if field.name() != Some("bundle") {
                continue;
            }
            let mut u = Upload::new(&a).await?;
            while let Some(chunk) = field.chunk().await? {
                u.write(&chunk).await?;
            }
            upload = Some(u);
        }
        let upload = upload.ok_or_else(|| AppError::bad_request("choose an update bundle file"))?;
        Ok((upload.apply(&a).await?, a))
    }
    .await;
    match result {
        Ok((applied, a)) => {
            reboot_soon(&a);
            let flash = Flash::done(format!(
                "Cairn {} is in slot {}; the appliance reboots into it now. If it does not become healthy in {} boots, it comes back on this slot by itself.",
                applied.version,
                applied.slot,
                osimage::slots::TRIES
            ));
            page_with(&state, &caller, flash).await
        }
        Err(e) => page_with(&state, &caller, Flash::refused(e)?).await,
    }
}

#[derive(Template)]
#[template(path = "welcome.html")]
struct WelcomePage {
    chrome: Chrome,
    urls: Vec<String>,
}

/// `GET /welcome`: where the admin lands after the first login with the
/// password the console showed. Opening it retires that password from the
/// console.
pub async fn welcome(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> AppResult<Response> {
    if let Some(path) = state.initial_password_file() {
        let _ = std::fs::remove_file(path);
        tracing::info!("the admin has logged in: the console no longer shows the first password");
    }
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("this-appliance:8007");
    let urls = vec![format!("https://{host}/")];
    render(&WelcomePage { chrome: Chrome::new(&state, &caller), urls })
}
