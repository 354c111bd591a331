//! Who is calling, and may they call this route.
//!
//! Every route declares an `Access`; `authorize` (a per-route middleware)
//! finds the caller from a session cookie or a bearer token, checks the
//! role, checks the CSRF token of a state-changing request made with a
//! cookie, and hands the handler a `Caller`.
//!
//! Invariant: a handler never sees a request its route's `Access` refuses.
//! Invariant: group-level limits of backup clients are checked with
//! `Caller::may`, in the handler, for every group it names or lists.

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use model::Role;

use super::error::AppError;
use super::input::urlencoding;
use super::state::{AppState, now};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "cairn_session";

/// Header carrying the CSRF token of API calls made with a session cookie.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Form field carrying the CSRF token of dashboard forms.
pub const CSRF_FIELD: &str = "csrf";

/// Largest form body read while looking for the CSRF field.
const FORM_LIMIT: usize = 64 << 10;

/// What the per-route guard knows of its route.
#[derive(Debug, Clone, Copy)]
pub struct Guard {
    pub access: Access,
    /// The largest multipart form the route takes (`None`: it takes none,
    /// and a multipart body is never read for its CSRF field).
    pub multipart: Option<usize>,
    /// The multipart body is an upload passed on as a stream: only its head
    /// (`STREAMED_FORM_HEAD`) is read for the CSRF field, which comes first.
    pub streamed: bool,
}

/// How much of a streamed upload form is read for its CSRF field.
pub const STREAMED_FORM_HEAD: usize = 64 << 10;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, logged in or not.
    Public,
    /// Any authenticated caller; backup clients see only their groups.
    Client,
    /// Admins, operators and auditors.
    Read,
    /// Admins and operators.
    Operate,
    /// Admins.
    Admin,
}

impl Access {
    pub fn allows(self, role: Role) -> bool {
        match self {
            Access::Public | Access::Client => true,
            Access::Read => role != Role::BackupClient,
            Access::Operate => matches!(role, Role::Admin | Role::Operator),
            Access::Admin => role == Role::Admin,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::Client => "client",
            Access::Read => "read",
            Access::Operate => "operate",
            Access::Admin => "admin",
        }
    }
}

pub use crate::caller::Caller;

/// A cookie's value from the `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(|t| t.trim().to_owned())
}

/// Find the caller from the request's credentials. `Ok(None)`: none were
/// presented; `Err`: some were, and they are not valid.
async fn identify(state: &AppState, headers: &HeaderMap) -> Result<Option<Caller>, AppError> {
    if let Some(text) = bearer(headers) {
        if let Some(caller) = state.cached_token(&text) {
            return Ok(Some(caller));
        }
        let presented = text.clone();
        let found = state.engine(move |e| e.authenticate_token(&presented, now())).await?;
        let token = found.ok_or_else(AppError::unauthenticated)?;
        let caller = Caller {
            principal: format!("token:{}", token.id),
            name: token.owner,
            role: token.role,
            groups: token.groups,
            csrf: None,
        };
        state.remember_token(&text, &caller);
        return Ok(Some(caller));
    }
    if let Some(secret) = cookie(headers, SESSION_COOKIE) {
        let found = state.engine(move |e| e.session(&secret, now())).await?;
        let (session, user) = found.ok_or_else(AppError::unauthenticated)?;
        return Ok(Some(Caller {
            principal: format!("user:{}", user.name),
            name: user.name,
            role: user.role,
            groups: Vec::new(),
            csrf: Some(session.csrf),
        }));
    }
    Ok(None)
}

/// Whether a request wants a page (so is sent to the login form) rather
/// than an API answer.
fn is_page(req: &Request) -> bool {
    let path = req.uri().path();
    !(path.starts_with("/api/") || path == "/metrics" || path == "/healthz")
}

/// The middleware enforcing a route's `Access`.
pub async fn authorize(
    State((state, guard)): State<(AppState, Guard)>,
    req: Request,
    next: Next,
) -> Response {
    let access = guard.access;
    if access == Access::Public {
        return next.run(req).await;
    }
    let caller = match identify(&state, req.headers()).await {
        Ok(Some(caller)) => caller,
        Ok(None) if is_page(&req) && req.method() == Method::GET => {
            let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
            let to = format!("/login?next={}", urlencoding(target));
            return Redirect::to(&to).into_response();
        }
        Ok(None) => return AppError::unauthenticated().into_response(),
        Err(e) => return e.into_response(),
    };
    if !access.allows(caller.role) {
        let msg = format!("{} ({}) may not do this", caller.name, caller.role.as_str());
        return AppError::forbidden(msg).into_response();
    }
    let req = match &caller.csrf {
        Some(expected) if !matches!(*req.method(), Method::GET | Method::HEAD) => {
            match check_csrf(req, expected, &guard).await {
                Ok(req) => req,
                Err(e) => return e.into_response(),
            }
        }
        _ => req,
    };
    let mut req = req;
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Check the CSRF token of a cookie-authenticated, state-changing request:
/// in the `x-csrf-token` header, or the `csrf` field of a form body (read
/// and put back), URL-encoded or multipart (an upload form).
async fn check_csrf(req: Request, expected: &str, guard: &Guard) -> Result<Request, AppError> {
    if let Some(v) = req.headers().get(CSRF_HEADER) {
        return if v.as_bytes() == expected.as_bytes() { Ok(req) } else { Err(csrf_refused()) };
    }
    if guard.streamed {
        return check_streamed_form(req, expected).await;
    }
    let refused = csrf_refused;
    let content_type =
        req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let boundary = multer::parse_boundary(&content_type).ok();
    let limit = match (&boundary, guard.multipart) {
        (Some(_), Some(limit)) => limit,
        // A route that takes no multipart form: never buffer one.
        (Some(_), None) => return Err(refused()),
        (None, _) if content_type.starts_with("application/x-www-form-urlencoded") => FORM_LIMIT,
        (None, _) => return Err(refused()),
    };
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, limit).await.map_err(|_| {
        AppError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("a form is at most {} KiB", limit >> 10))
    })?;
    let token = match boundary {
        Some(boundary) => multipart_field(bytes.clone(), boundary, CSRF_FIELD, false).await,
        None => serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
            .unwrap_or_default()
            .into_iter()
            .find_map(|(k, v)| (k == CSRF_FIELD).then_some(v)),
    };
    if token.as_deref() != Some(expected) {
        return Err(refused());
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

fn csrf_refused() -> AppError {
    AppError::forbidden("missing or wrong CSRF token; reload the page and try again")
}

/// `check_csrf` for a multipart upload that is passed on as a stream: the
/// form's head is read until its first field is complete (at most
/// `STREAMED_FORM_HEAD`); that field must be `csrf`. The head is put back
/// in front of the rest of the body.
async fn check_streamed_form(req: Request, expected: &str) -> Result<Request, AppError> {
    use futures_util::StreamExt;
    let refused = csrf_refused;
    let content_type =
        req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let boundary = multer::parse_boundary(content_type).map_err(|_| refused())?;
    let (parts, body) = req.into_parts();
    let mut stream = body.into_data_stream();
    let mut head = Vec::new();
    let token = loop {
        let more = match stream.next().await {
            Some(Ok(chunk)) => {
                head.extend_from_slice(&chunk);
                true
            }
            Some(Err(_)) => return Err(AppError::bad_request("the upload was cut off")),
            None => false,
        };
        // The first field is complete once the next boundary is in the head.
        let marker = format!("\r\n--{boundary}");
        let complete = head.windows(marker.len()).any(|w| w == marker.as_bytes());
        if complete || !more {
            break multipart_field(Bytes::from(head.clone()), boundary.clone(), CSRF_FIELD, true).await;
        }
        if head.len() >= STREAMED_FORM_HEAD {
            break None;
        }
    };
    if token.as_deref() != Some(expected) {
        return Err(refused());
    }
    let rest =
        futures_util::stream::once(async move { Ok::<Bytes, axum::Error>(Bytes::from(head)) }).chain(stream);
    Ok(Request::from_parts(parts, Body::from_stream(rest)))
}

/// The first field `name` of a multipart form, as text; with `first_only`,
/// only when it is the form's first field.
async fn multipart_field(body: Bytes, boundary: String, name: &str, first_only: bool) -> Option<String> {
    let stream = futures_util::stream::once(async { Ok::<_, std::convert::Infallible>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    while let Ok(Some(field)) = form.next_field().await {
        if field.name() == Some(name) {
            return field.text().await.ok();
        }
        if first_only {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_levels_admit_the_right_roles() {
        use Role::*;
        let table = [
            (Access::Client, [true, true, true, true]),
            (Access::Read, [true, true, true, false]),
            (Access::Operate, [true, true, false, false]),
            (Access::Admin, [true, false, false, false]),
        ];
        for (access, want) in table {
            let got = [Admin, Operator, Auditor, BackupClient].map(|r| access.allows(r));
            assert_eq!(got, want, "{access:?}");
        }
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; cairn_session=abc; b=2".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(urlencoding("/x y?a=b"), "/x%20y%3Fa%3Db");
    }
}
