//! The dashboard: server-rendered askama pages over the same engine calls
//! as the API. Every core flow works without JavaScript.

use askama::Template;
use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use model::{Role, SnapshotInfo};
use serde::Deserialize;

use super::api;
use super::auth::{Caller, SESSION_COOKIE, cookie};
use super::error::{AppError, AppResult};
use super::input::{NsQuery, PathQuery, parse_role, snapshot_id, urlencoding};
use super::page::{Chrome, DashboardPages, group_page_path, group_path, ns_query, render, snapshot_path};
use super::state::{AppState, now};
use model::human;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    error: Option<String>,
    next: String,
    fingerprint: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Where a login may send the browser: a dashboard page of this server,
/// else `/`. Never another site, and never a header that cannot be sent.
pub(super) fn local_target(next: Option<&str>, pages: DashboardPages) -> String {
    next.filter(|n| is_dashboard_target(n, pages)).map_or_else(|| "/".to_owned(), str::to_owned)
}

/// `next` is a path that starts with exactly one `/`, holds only visible
/// ASCII (no whitespace or control character a browser would strip, no
/// backslash), whose path part has no percent-escape of `/`, `\`, `.`, a
/// space or a control character, and names a GET page of the route table.
/// The query may hold escapes: a browser never decodes them into the path.
fn is_dashboard_target(next: &str, DashboardPages(is_page): DashboardPages) -> bool {
    let visible = next.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    if !visible || !next.starts_with('/') || next.starts_with("//") {
        return false;
    }
    let path = next.split(['?', '#']).next().unwrap_or_default();
    let escapes_ok = path.split('%').skip(1).all(|rest| {
        let escaped = rest.get(..2).and_then(|hex| u8::from_str_radix(hex, 16).ok());
        escaped.is_none_or(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'\\' | b'.'))
    });
    escapes_ok && is_page(path)
}

pub async fn login_form(
    State(state): State<AppState>,
    Extension(pages): Extension<DashboardPages>,
    Query(q): Query<NextQuery>,
) -> AppResult<Response> {
    let page = LoginPage {
        error: None,
        next: local_target(q.next.as_deref(), pages),
        fingerprint: state.fingerprint().map(str::to_owned),
    };
    render(&page)
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    user: String,
    password: String,
    next: Option<String>,
}

/// Check a password under the server's login limits: refused (429) while
/// the address or user name is backing off after failures, or when too
/// many checks are already waiting; at most `password_checks` at once.
async fn checked_login(
    state: &AppState,
    addr: Option<std::net::IpAddr>,
    user: &str,
    password: String,
) -> AppResult<Option<(String, model::Session)>> {
    use super::logins::Refusal;
    let refused = |r: Refusal| match r {
        Refusal::Wait(s) => {
            let mut e = AppError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many failed logins from this address or for this user; try again in {s} s"),
            );
            e.retry_after = Some(s as u64);
            e
        }
        Refusal::Busy => {
            let mut e = AppError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "the server is busy checking other logins; try again in a few seconds",
            );
            e.retry_after = Some(5);
            e
        }
    };
    if let Some(r) = state.logins().backoff(addr, user, now()) {
        tracing::warn!(user = %user, addr = ?addr, "login refused: backing off after failures");
        return Err(refused(r));
    }
    let _permit = state.logins().permit().await.map_err(refused)?;
    let name = user.to_owned();
    let outcome = state.engine(move |e| e.login(&name, &password, now())).await?;
    match &outcome {
        Some(_) => state.logins().succeeded(addr, user),
        None => state.logins().failed(addr, user, now()),
    }
    Ok(outcome)
}

pub async fn login(
    State(state): State<AppState>,
    Extension(pages): Extension<DashboardPages>,
    peer: Option<Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    Form(f): Form<LoginForm>,
) -> AppResult<Response> {
    let next = local_target(f.next.as_deref(), pages);
    let addr = peer.map(|Extension(c)| c.0.ip());
    let outcome = checked_login(&state, addr, &f.user, f.password).await?;
    let Some((secret, session)) = outcome else {
        tracing::warn!(user = %f.user, "failed login");
        let page = LoginPage {
            error: Some("Wrong user name or password.".into()),
            next,
            fingerprint: state.fingerprint().map(str::to_owned),
        };
        let mut res = render(&page)?;
        *res.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(res);
    };
    tracing::info!(user = %session.user, "logged in");
    // The first login with the password the appliance's console showed
    // lands on the welcome page, which retires it.
    let next = if session.user == "admin" && state.initial_password_file().is_some() {
        "/welcome".to_owned()
    } else {
        next
    };
    let secure = if state.secure_cookies() { "; Secure" } else { "" };
    let max_age = session.expires - session.created;
    let cookie =
        format!("{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    let mut res = Redirect::to(&next).into_response();
    res.headers_mut()
        .insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).map_err(|e| anyhow::anyhow!("{e}"))?);
    Ok(res)
}

pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> AppResult<Response> {
    if let Some(secret) = cookie(&headers, SESSION_COOKIE) {
        state.engine(move |e| e.logout(&secret)).await?;
    }
    let mut res = Redirect::to("/login").into_response();
    let clear = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    res.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&clear).expect("ascii"));
    Ok(res)
}

pub struct GroupRow {
    group: String,
    ns: String,
    link: String,
    snapshots: usize,
    last: String,
    verify: &'static str,
    size: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    chrome: Chrome,
    snapshots: usize,
    logical: String,
    stored: String,
    dedup: String,
    /// Free and total space of the datastore's disk (not for backup clients).
    disk: Option<(String, String)>,
    chart: String,
    groups: Vec<GroupRow>,
    hostname: String,
    jobs: Vec<super::job_views::JobRow>,
    tasks: Vec<TaskRow>,
}

pub struct TaskRow {
    id: u64,
    job: String,
    started: String,
    state: &'static str,
}

pub async fn overview(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> AppResult<Response> {
    let snaps = api::visible_summaries(&state, &caller).await?;
    let st = api::status_from(&state, &caller, &snaps).await?;
    let groups = api::groups_of(&snaps)
        .into_iter()
        .map(|g| GroupRow {
            link: format!("/groups/{}{}", g.path, ns_query(&g.ns)),
            group: g.group,
            ns: if g.ns.is_empty() { "—".into() } else { g.ns },
            snapshots: g.snapshots,
            last: g.last,
            verify: g.last_verify,
            size: human::size(g.size),
        })
        .collect();
    let tasks = if caller.role == Role::BackupClient {
        Vec::new()
    } else {
        state.engine(|e| e.tasks(10, None)).await?
    };
    let tasks = tasks
        .into_iter()
        .map(|t| TaskRow {
            id: t.id,
            job: t.job.unwrap_or_default(),
            started: model::time::format_rfc3339(t.started),
            state: t.state.as_str(),
        })
        .collect();
    let page = OverviewPage {
        chrome: Chrome::new(&state, &caller),
        snapshots: st.snapshots,
        logical: human::size(st.logical_bytes),
        stored: human::size(st.stored_bytes),
        dedup: format!("{:.2}×", st.dedup_factor),
        disk: st.disk_free_bytes.zip(st.disk_total_bytes).map(|(f, t)| (human::size(f), human::size(t))),
        chart: super::chart::usage_svg(&snaps),
        groups,
        hostname: super::tls::hostname(),
        jobs: super::job_views::job_rows(&state, &caller).await?,
        tasks,
    };
    render(&page)
}

pub struct SnapRow {
    time: String,
    link: String,
    size: String,
    stored: String,
    duration: String,
    tags: String,
    verify: &'static str,
    protected: bool,
}

#[derive(Template)]
#[template(path = "group.html")]
struct GroupPage {
    chrome: Chrome,
    group: String,
    prune_link: String,
    rows: Vec<SnapRow>,
    count: usize,
    first: usize,
    last: usize,
    newer: Option<String>,
    older: Option<String>,
}

fn snapshot_link(s: &SnapshotInfo) -> String {
    snapshot_path(&s.id)
}

/// Snapshots per page of the group page.
const PAGE: usize = 100;

/// `?ns=&page=` (0 is the newest page).
#[derive(Debug, Default, Deserialize)]
pub struct GroupQuery {
    #[serde(default)]
    ns: String,
    #[serde(default)]
    page: usize,
}

pub async fn group(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((kind, id)): Path<(String, String)>,
    Query(q): Query<GroupQuery>,
) -> AppResult<Response> {
    let group = model::BackupGroup::new(model::Namespace::parse(&q.ns)?, &kind, &id)?;
    caller.check(&group)?;
    let title = group.to_string();
    let (g, offset) = (group.clone(), q.page * PAGE);
    let (snaps, count) = state.engine(move |e| e.snapshot_page(&g, true, offset, PAGE)).await?;
    let rows = snaps
        .iter()
        .map(|s| SnapRow {
            time: s.id.time_text(),
            link: snapshot_link(s),
            size: human::size(s.size),
            stored: human::size(s.stored),
            duration: human::duration_ms(s.duration_ms),
            tags: s.tags.join(", "),
            verify: s.verify.as_str(),
            protected: s.protected,
        })
        .collect();
    let base = format!(
        "/groups/{kind}/{id}?{}page=",
        if q.ns.is_empty() { String::new() } else { format!("ns={}&", urlencoding(&q.ns)) }
    );
    let page = GroupPage {
        chrome: Chrome::new(&state, &caller),
        group: title,
        prune_link: format!("/groups/{kind}/{id}/prune{}", ns_query(&q.ns)),
        rows,
        count,
        first: (offset + 1).min(count),
        last: (offset + PAGE).min(count),
        newer: (q.page > 0).then(|| format!("{base}{}", q.page - 1)),
        older: (offset + PAGE < count).then(|| format!("{base}{}", q.page + 1)),
    };
    render(&page)
}

pub struct EntryRow {
    name: String,
    kind: &'static str,
    size: String,
    mtime: String,
    browse: Option<String>,
    download: Option<String>,
    tar: Option<String>,
}

#[derive(Template)]
#[template(path = "snapshot.html")]
struct SnapshotPage {
    chrome: Chrome,
    title: String,
    group: String,
    group_link: String,
    time: String,
    size: String,
    stored: String,
    files: u64,
    tags: String,
    verify: &'static str,
    protected: bool,
    protect_action: String,
    verify_action: String,
    delete_action: String,
    notes_action: String,
    notes: String,
    shown_path: String,
    up_link: Option<String>,
    entries: Vec<EntryRow>,
}

pub async fn snapshot(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((kind, id, time)): Path<(String, String, String)>,
    Query(q): Query<PathQuery>,
) -> AppResult<Response> {
    let sid = snapshot_id(&kind, &id, &time, &q.ns)?;
    caller.check(&sid.group)?;
    let (lookup, list_id, path) = (sid.clone(), sid.clone(), q.path.clone());
    let info = state.engine(move |e| e.snapshot(&lookup)).await?;
    let items = state.engine(move |e| e.list(&list_id, Some(path.as_bytes()), false)).await?;
    let base = format!("/snapshots/{}/{}", group_path(&sid.group), sid.time_text());
    let api_base = format!("/api/v1/snapshots/{}/{}", group_path(&sid.group), sid.time_text());
    let ns = sid.group.ns.to_string();
    let with = |path: &[u8]| {
        let mut q = format!("?path={}", urlencoding(&String::from_utf8_lossy(path)));
        if !ns.is_empty() {
            q.push_str(&format!("&ns={}", urlencoding(&ns)));
        }
        q
    };
    let entries = items
        .iter()
        .map(|l| {
            let kind = dto::kind_name(l);
            let browsable = matches!(kind, "dir" | "archive");
            let name = l.path.rsplit(|c| *c == b'/').next().unwrap_or(&l.path);
            EntryRow {
                name: human::escaped(name),
                kind,
                size: if kind == "dir" { String::new() } else { human::size(l.size) },
                mtime: l.entry.as_ref().map(|e| model::time::format_rfc3339(e.mtime)).unwrap_or_default(),
                browse: browsable.then(|| format!("{base}{}", with(&l.path))),
                download: (kind == "file").then(|| format!("{api_base}/download{}", with(&l.path))),
                tar: browsable.then(|| format!("{api_base}/tar{}", with(&l.path))),
            }
        })
        .collect();
    let trimmed = q.path.trim_matches('/');
    let up_link = (!trimmed.is_empty()).then(|| {
        let parent = trimmed.rsplit_once('/').map_or("", |(p, _)| p);
        format!("{base}{}", with(parent.as_bytes()))
    });
    let page = SnapshotPage {
        chrome: Chrome::new(&state, &caller),
        title: sid.to_string(),
        group: sid.group.to_string(),
        group_link: group_page_path(&sid.group),
        time: sid.time_text(),
        size: human::size(info.size),
        stored: human::size(info.stored),
        files: info.files,
        tags: if info.tags.is_empty() { "—".into() } else { info.tags.join(", ") },
        verify: info.verify.as_str(),
        protected: info.protected,
        protect_action: format!("{base}/protect{}", ns_query(&ns)),
        verify_action: format!("{base}/verify{}", ns_query(&ns)),
        delete_action: format!("{base}/delete{}", ns_query(&ns)),
        notes_action: format!("{base}/notes{}", ns_query(&ns)),
        notes: info.notes.clone(),
        shown_path: if trimmed.is_empty() { "/".into() } else { format!("/{trimmed}") },
        up_link,
        entries,
    };
    render(&page)
}

#[derive(Debug, Deserialize)]
pub struct ProtectForm {
    protected: bool,
}

pub async fn protect(
    State(state): State<AppState>,
    Path((kind, id, time)): Path<(String, String, String)>,
    Query(q): Query<NsQuery>,
    Form(f): Form<ProtectForm>,
) -> AppResult<Response> {
    let sid = snapshot_id(&kind, &id, &time, &q.ns)?;
    let back = snapshot_path(&sid);
    state.engine(move |e| e.set_protected(&sid, f.protected)).await?;
    Ok(Redirect::to(&back).into_response())
}

pub struct RoleOption {
    name: &'static str,
    client: bool,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    chrome: Chrome,
    users: Vec<dto::UserJson>,
    tokens: Vec<dto::TokenJson>,
    roles: Vec<RoleOption>,
    new_token: Option<String>,
    message: Option<String>,
}

async fn users_page(
    state: &AppState,
    caller: &Caller,
    new_token: Option<String>,
    message: Option<String>,
) -> AppResult<Response> {
    let users = state.engine(|e| e.users()).await?;
    let tokens = state.engine(|e| e.tokens()).await?;
    let page = UsersPage {
        chrome: Chrome::new(state, caller),
        users: users.iter().map(dto::UserJson::from).collect(),
        tokens: tokens.iter().map(dto::TokenJson::from).collect(),
        roles: Role::ALL
            .iter()
            .map(|r| RoleOption { name: r.as_str(), client: *r == Role::BackupClient })
            .collect(),
        new_token,
        message,
    };
    render(&page)
}

pub async fn users(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> AppResult<Response> {
    users_page(&state, &caller, None, None).await
}

#[derive(Debug, Deserialize)]
pub struct UserForm {
    name: String,
    password: String,
    role: String,
}

pub async fn set_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Form(f): Form<UserForm>,
) -> AppResult<Response> {
    let role = parse_role(&f.role)?;
    let name = f.name.clone();
    state
        .engine(move |e| e.set_password(&f.name, &f.password, role, now()).map_err(super::error::bad_input))
        .await?;
    users_page(&state, &caller, None, Some(format!("Saved user {name}."))).await
}

#[derive(Debug, Deserialize)]
pub struct TokenForm {
    name: String,
    role: String,
    #[serde(default)]
    groups: String,
}

pub async fn create_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Form(f): Form<TokenForm>,
) -> AppResult<Response> {
    let groups = f.groups.split([',', ' ']).filter(|g| !g.is_empty()).map(str::to_owned).collect();
    let made = api::make_token(&state, &caller, api::NewToken { name: f.name, role: f.role, groups }).await?;
    users_page(&state, &caller, made.token, None).await
}

pub async fn revoke_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let id2 = id.clone();
    let gone = state.engine(move |e| e.revoke_token(&id2)).await?;
    state.forget_tokens();
    let message = if gone { format!("Token {id} revoked.") } else { format!("Token {id} did not exist.") };
    users_page(&state, &caller, None, Some(message)).await
}

pub struct RuleField {
    name: &'static str,
    value: u32,
}

pub struct DecisionRow {
    time: String,
    keep: bool,
    reason: String,
}

#[derive(Template)]
#[template(path = "prune.html")]
struct PrunePage {
    chrome: Chrome,
    group: String,
    group_link: String,
    ns: String,
    rules: Vec<RuleField>,
    no_rules: bool,
    decisions: Vec<DecisionRow>,
    kept: usize,
    removed: usize,
}

/// `?last=&hourly=&daily=&weekly=&monthly=&yearly=&ns=`
#[derive(Debug, Default, Deserialize)]
pub struct PruneQuery {
    #[serde(default)]
    ns: String,
    #[serde(default)]
    last: u32,
    #[serde(default)]
    hourly: u32,
    #[serde(default)]
    daily: u32,
    #[serde(default)]
    weekly: u32,
    #[serde(default)]
    monthly: u32,
    #[serde(default)]
    yearly: u32,
}

/// What `prune --dry-run` would do, with the reason for every snapshot.
pub async fn prune_preview(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((kind, id)): Path<(String, String)>,
    Query(q): Query<PruneQuery>,
) -> AppResult<Response> {
    let group = model::BackupGroup::new(model::Namespace::parse(&q.ns)?, &kind, &id)?;
    caller.check(&group)?;
    let rules = model::prune::KeepRules {
        last: q.last,
        hourly: q.hourly,
        daily: q.daily,
        weekly: q.weekly,
        monthly: q.monthly,
        yearly: q.yearly,
    };
    let g = group.clone();
    let decisions = state.engine(move |e| e.prune(&g, &rules, true)).await?;
    let kept = decisions.iter().filter(|d| d.keep).count();
    let fields = [
        ("last", q.last),
        ("hourly", q.hourly),
        ("daily", q.daily),
        ("weekly", q.weekly),
        ("monthly", q.monthly),
        ("yearly", q.yearly),
    ];
    let page = PrunePage {
        chrome: Chrome::new(&state, &caller),
        group: group.to_string(),
        group_link: format!("/groups/{kind}/{id}{}", ns_query(&q.ns)),
        ns: q.ns.clone(),
        rules: fields.iter().map(|(name, value)| RuleField { name, value: *value }).collect(),
        no_rules: rules.is_empty(),
        removed: decisions.len() - kept,
        kept,
        decisions: decisions
            .iter()
            .rev()
            .map(|d| DecisionRow { time: d.id.time_text(), keep: d.keep, reason: d.reason.clone() })
            .collect(),
    };
    render(&page)
}
