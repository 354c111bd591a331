//! The one mapping from errors to responses.
//!
//! A handler returns `AppError`; its response carries the status and the
//! message as an extension, and `finish` (the outermost middleware, which
//! knows the request id and whether the caller is the API or a browser)
//! renders it as JSON or as an HTML page, logs it with the request id, and
//! holds back answers to unauthenticated callers.
//!
//! Invariant: the status is chosen by the error's type, never by its text;
//! an error of no known type is a 500 whose text only the log sees.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use engine::{CatalogError, StoreError};
use model::IdError;

/// A failed request: what to tell the caller, and how.
#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    pub message: String,
    /// Details for the log only (never shown to the caller).
    pub detail: Option<String>,
    /// Seconds for a `Retry-After` header (429, 503).
    pub retry_after: Option<u64>,
}

/// Attached to an error response for `finish` to render.
#[derive(Debug, Clone)]
pub struct ErrorBody {
    pub message: String,
    pub detail: Option<String>,
}

impl AppError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), detail: None, retry_after: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn unauthenticated() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "log in, or send a valid API token as `Authorization: Bearer …`")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
}

/// Engine errors: a missing snapshot or a bad name is the caller's
/// mistake; anything else is ours, shown with the request id only.
impl From<anyhow::Error> for AppError {
    fn from(e: anyhow::Error) -> Self {
        if let Some(CatalogError::NotFound(id)) = e.downcast_ref::<CatalogError>() {
            return Self::not_found(format!("snapshot {id} does not exist"));
        }
        if let Some(StoreError::SnapshotNotFound(id)) = e.downcast_ref::<StoreError>() {
            return Self::not_found(format!("snapshot {id} does not exist"));
        }
        if let Some(err @ (StoreError::GroupBusy(_) | StoreError::SnapshotExists(_))) =
            e.downcast_ref::<StoreError>()
        {
            return Self::new(StatusCode::CONFLICT, err.to_string());
        }
        if let Some(err @ StoreError::NotOwner { .. }) = e.downcast_ref::<StoreError>() {
            return Self::new(StatusCode::CONFLICT, err.to_string());
        }
        if let Some(err @ StoreError::Bucket(_)) = e.downcast_ref::<StoreError>() {
            return Self::new(StatusCode::BAD_GATEWAY, err.to_string());
        }
        if let Some(bad) = e.downcast_ref::<engine::ops::BadRequest>() {
            return Self::bad_request(bad.0.clone());
        }
        if let Some(missing) = e.downcast_ref::<engine::ops::NotFound>() {
            return Self::not_found(missing.0.clone());
        }
        if let Some(refused) = e.downcast_ref::<engine::ops::Refused>() {
            return Self::new(StatusCode::CONFLICT, refused.0.clone());
        }
        if let Some(missing) = e.downcast_ref::<jobhost::policies::NoSuchPolicy>() {
            return Self::not_found(missing.to_string());
        }
        // A component refused, or a policy that failed its call: the
        // caller's policy, not the server, is at fault.
        if let Some(
            err @ (policy::PolicyError::Invalid(_)
            | policy::PolicyError::CompileLimit(_)
            | policy::PolicyError::Call { .. }),
        ) = e.downcast_ref::<policy::PolicyError>()
        {
            return Self::bad_request(err.to_string());
        }
        if let Some(bad) = e.downcast_ref::<BadInput>() {
            return Self::bad_request(bad.0.clone());
        }
        if let Some(id) = e.downcast_ref::<IdError>() {
            return Self::bad_request(id.to_string());
        }
        let text = format!("{e:#}");
        // Stored data that cannot be read as it should: ours to fix, told
        // to the caller without its internals.
        if let Some(
            StoreError::ChunkMissing(_)
            | StoreError::ChunkCorrupt { .. }
            | StoreError::BadIndex { .. }
            | StoreError::Format { .. },
        ) = e.downcast_ref::<StoreError>()
        {
            return Self {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message:
                    "the snapshot's stored data is damaged; an operator can find what with `cairn verify`"
                        .into(),
                detail: Some(text),
                retry_after: None,
            };
        }
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "internal error".into(),
            detail: Some(text),
            retry_after: None,
        }
    }
}

impl From<IdError> for AppError {
    fn from(e: IdError) -> Self {
        Self::bad_request(e.to_string())
    }
}

/// A multipart form that could not be read: too large, or malformed.
impl From<axum::extract::multipart::MultipartError> for AppError {
    fn from(e: axum::extract::multipart::MultipartError) -> Self {
        Self::new(e.status(), e.body_text())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut res = self.status.into_response();
        if let Some(s) = self.retry_after {
            res.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(s));
        }
        res.extensions_mut().insert(ErrorBody { message: self.message, detail: self.detail });
        res
    }
}

pub type AppResult<T> = Result<T, AppError>;

/// Mark an engine refusal (a bad name, a short password) as the caller's mistake.
pub fn bad_input(e: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(BadInput(format!("{e:#}")))
}

/// An engine refusal caused by what the caller sent.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_follows_the_errors_type_never_its_text() {
        // Text that once picked 400 or 404, from an error of no known type
        // (a damaged archive's message, say): a 500 that shows none of it.
        for text in ["entry 3: size on an entry that is not a regular file", "x: no such path in y"] {
            let e = AppError::from(anyhow::anyhow!("{text}"));
            assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR, "{text}");
            assert_eq!(e.message, "internal error");
            assert_eq!(e.detail.as_deref(), Some(text));
        }
        let typed = [
            (anyhow::anyhow!(engine::ops::NotFound("a: no such path".into())), StatusCode::NOT_FOUND),
            (anyhow::anyhow!(engine::ops::BadRequest("is an image archive".into())), StatusCode::BAD_REQUEST),
            (anyhow::anyhow!(engine::ops::Refused("protected".into())), StatusCode::CONFLICT),
        ];
        for (e, status) in typed {
            let text = e.to_string();
            let e = AppError::from(e.context("reading the snapshot"));
            assert_eq!((e.status, e.message.as_str()), (status, text.as_str()));
        }
        // Damaged stored data: a 500 that says what to do, details logged.
        let damaged = StoreError::BadIndex { path: "x/y.didx".into(), detail: "bad magic".into() };
        let e = AppError::from(anyhow::Error::from(damaged).context("listing files"));
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(e.message.contains("cairn verify") && !e.message.contains("magic"), "{}", e.message);
        assert!(e.detail.unwrap().contains("bad magic"));
    }
}
