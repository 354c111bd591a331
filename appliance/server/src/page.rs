//! What every dashboard page shares: the frame (`Chrome`), rendering, the
//! answer to a form (`Flash`), the error page, the style sheet, and the
//! paths of group and snapshot pages.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use model::Role;

use crate::caller::Caller;
use crate::error::{AppError, AppResult};
use crate::input::urlencoding;
use crate::state::AppState;

/// Which paths are dashboard pages, where a login may send the browser
/// back to. The route table knows; `routes::app` hands this to the
/// handlers as a request extension.
#[derive(Debug, Clone, Copy)]
pub struct DashboardPages(pub fn(&str) -> bool);

/// What the page frame shows: who is logged in, the CSRF token for its
/// forms, the certificate fingerprint.
pub struct Chrome {
    pub user: String,
    pub role: &'static str,
    pub csrf: String,
    pub is_admin: bool,
    pub can_operate: bool,
    pub is_client: bool,
    pub fingerprint: Option<String>,
    pub version: &'static str,
}

impl Chrome {
    pub fn new(state: &AppState, caller: &Caller) -> Self {
        Self {
            user: caller.name.clone(),
            role: caller.role.as_str(),
            csrf: caller.csrf.clone().unwrap_or_default(),
            is_admin: caller.role == Role::Admin,
            can_operate: matches!(caller.role, Role::Admin | Role::Operator),
            is_client: caller.role == Role::BackupClient,
            fingerprint: state.fingerprint().map(str::to_owned),
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

pub fn render(t: &impl Template) -> AppResult<Response> {
    let html = t.render().map_err(|e| AppError::from(anyhow::anyhow!("rendering a page: {e}")))?;
    Ok(Html(html).into_response())
}

/// What a form's answer page says (`flash.html`): what was done, or why
/// the form was refused; a refused form's page answers with the error's
/// status.
#[derive(Debug, Default)]
pub struct Flash {
    pub notice: Option<String>,
    pub error: Option<String>,
    pub status: StatusCode,
}

impl Flash {
    pub fn done(notice: impl Into<String>) -> Self {
        Self { notice: Some(notice.into()), ..Self::default() }
    }

    /// Why a form was refused. A fault of the server stays an error, for
    /// the error page and the log.
    pub fn refused(e: AppError) -> AppResult<Self> {
        if e.status.is_server_error() {
            return Err(e);
        }
        tracing::info!(status = %e.status, "form refused: {}", e.message);
        Ok(Self { notice: None, error: Some(e.message), status: e.status })
    }

    /// The notice of a form that worked, or why it was refused.
    pub fn outcome(outcome: AppResult<String>) -> AppResult<Self> {
        outcome.map_or_else(Self::refused, |notice| Ok(Self::done(notice)))
    }
}

/// `render` a page that shows `flash`, with its status.
pub fn render_flash(t: &impl Template, flash: &Flash) -> AppResult<Response> {
    let mut res = render(t)?;
    *res.status_mut() = flash.status;
    Ok(res)
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: String,
    message: &'a str,
    request_id: &'a str,
}

/// The page for an error, rendered by `finish`.
pub fn error_page(status: StatusCode, message: &str, request_id: &str) -> Response {
    let page = ErrorPage { status: status.to_string(), message, request_id };
    let html = page.render().unwrap_or_else(|_| format!("{status}: request {request_id}"));
    (status, Html(html)).into_response()
}

pub async fn not_found() -> AppError {
    AppError::not_found("no such page or API route")
}

pub async fn stylesheet() -> Response {
    let mut res = include_str!("../../../web/static/cairn.css").into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=3600"));
    res
}

/// `TYPE/ID` of a group, as page and API paths name it (the namespace
/// goes in `?ns=`).
pub fn group_path(g: &model::BackupGroup) -> String {
    format!("{}/{}", g.kind, g.id)
}

/// The page of a group.
pub fn group_page_path(g: &model::BackupGroup) -> String {
    format!("/groups/{}{}", group_path(g), ns_query(&g.ns.to_string()))
}

/// The page of a snapshot.
pub fn snapshot_path(id: &model::SnapshotId) -> String {
    format!("/snapshots/{}/{}{}", group_path(&id.group), id.time_text(), ns_query(&id.group.ns.to_string()))
}

pub fn ns_query(ns: &str) -> String {
    if ns.is_empty() { String::new() } else { format!("?ns={}", urlencoding(ns)) }
}
