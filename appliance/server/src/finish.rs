//! The outermost layers: a request id for every request, error bodies
//! rendered in one place (JSON for the API, a page for browsers), logging,
//! the delay before any unauthenticated failure is answered, and security
//! headers.

use tokio::time::Instant;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use serde_json::json;

use super::error::ErrorBody;
use super::page;
use super::state::AppState;

/// The request's id, for handlers whose work outlives their answer's
/// head (a download's log lines).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub async fn finish(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let mut raw = [0u8; 6];
    rand::rng().fill_bytes(&mut raw);
    let id = hex::encode(raw);
    req.extensions_mut().insert(RequestId(id.clone()));
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let api = path.starts_with("/api/") || path == "/metrics" || path == "/healthz";
    // An HTTP/1 request with a body that an error answer may leave unread.
    let sends_body = req.version() <= axum::http::Version::HTTP_11
        && (req.headers().contains_key(header::TRANSFER_ENCODING)
            || req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .is_some_and(|n| n > 0));

    let mut res = next.run(req).await;
    let status = res.status();
    if let Some(err) = res.extensions_mut().remove::<ErrorBody>() {
        match (&err.detail, status.is_server_error()) {
            (Some(detail), _) => {
                tracing::error!(request = %id, %method, %path, %status, "{}: {detail}", err.message)
            }
            (None, true) => tracing::error!(request = %id, %method, %path, %status, "{}", err.message),
            (None, false) => tracing::info!(request = %id, %method, %path, %status, "{}", err.message),
        }
        let mut rendered = if api {
            (status, Json(json!({"error": err.message, "request_id": id}))).into_response()
        } else {
            page::error_page(status, &err.message, &id)
        };
        rendered.headers_mut().extend(
            res.headers()
                .iter()
                .filter(|(k, _)| *k != header::CONTENT_TYPE)
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        rendered.headers_mut().remove(header::CONTENT_LENGTH);
        res = rendered;
        if !api {
            res.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        }
    } else {
        tracing::debug!(request = %id, %method, %path, %status, elapsed_ms = started.elapsed().as_millis() as u64);
    }
    if status == StatusCode::UNAUTHORIZED {
        // Make guessing passwords and tokens slow, whatever failed.
        tokio::time::sleep_until(started + state.auth_delay()).await;
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert("x-request-id", v);
    }
    if sends_body && (status.is_client_error() || status.is_server_error()) {
        // A refused upload's body may be unread: the connection cannot
        // carry another request, and the client must not try (it would
        // get a cut-off answer instead of one).
        res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

/// Headers every answer carries.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'",
        ),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}
