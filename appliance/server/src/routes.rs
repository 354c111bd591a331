//! Every route of the server in one table: method, path, who may call it,
//! a summary, and its handler. `app` builds the router from it, the
//! OpenAPI document is generated from it, and the access test walks it.
//!
//! Invariant: no route is added to the router except through `routes()`.

use std::sync::OnceLock;

use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{MethodRouter, delete, get, post, put};
use axum::{Extension, Router};
use serde_json::{Value, json};

use super::auth::{self, Access};
use super::page::{self, DashboardPages};
use super::state::AppState;
use super::{
    api, appliance_api, datastore_api, finish, job_views, jobs_api, maint_api, metrics, policy_api, remote,
    tape_api, views,
};

/// Largest request body accepted by default.
pub const BODY_LIMIT: usize = 1 << 20;

/// One route.
pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub summary: &'static str,
    /// The largest multipart form the route takes, if it takes one: the
    /// CSRF check reads a multipart body for its token only up to this, and
    /// refuses multipart bodies on every other route.
    pub multipart: Option<usize>,
    /// A multipart upload too large to hold in memory: its CSRF field must
    /// come first, and only the form's head is read for it.
    pub streamed: bool,
    handler: MethodRouter<AppState>,
}

impl RouteSpec {
    fn multipart(mut self, limit: usize) -> Self {
        self.multipart = Some(limit);
        self
    }

    fn streamed_multipart(mut self) -> Self {
        self.multipart = Some(auth::STREAMED_FORM_HEAD);
        self.streamed = true;
        self
    }
}

fn r(
    method: Method,
    path: &'static str,
    access: Access,
    summary: &'static str,
    handler: MethodRouter<AppState>,
) -> RouteSpec {
    RouteSpec { method, path, access, summary, multipart: None, streamed: false, handler }
}

/// The route table.
pub fn routes() -> Vec<RouteSpec> {
    use Access::*;
    vec![
        r(Method::GET, "/healthz", Public, "Liveness: answers `ok`.", get(api::healthz)),
        r(Method::GET, "/metrics", Read, "Prometheus metrics.", get(metrics::metrics)),
        r(Method::GET, "/api/v1/openapi.json", Public, "This document.", get(openapi)),
        r(Method::GET, "/api/v1/status", Client, "Datastore status and usage.", get(api::status)),
        r(Method::GET, "/api/v1/groups", Client, "Backup groups with snapshot counts.", get(api::groups)),
        r(
            Method::GET,
            "/api/v1/snapshots",
            Client,
            "Snapshots, oldest first (`?group=TYPE/ID&ns=`).",
            get(api::snapshots),
        ),
        r(Method::GET, "/api/v1/snapshots/{type}/{id}/{time}", Client, "One snapshot.", get(api::snapshot)),
        r(
            Method::POST,
            "/api/v1/snapshots/{type}/{id}/{time}/protect",
            Operate,
            "Protect a snapshot from prune.",
            post(api::protect),
        ),
        r(
            Method::POST,
            "/api/v1/snapshots/{type}/{id}/{time}/unprotect",
            Operate,
            "Remove the protection.",
            post(api::unprotect),
        ),
        r(
            Method::DELETE,
            "/api/v1/snapshots/{type}/{id}/{time}",
            Operate,
            "Delete a snapshot (not a protected one); its chunks go at the next gc.",
            delete(maint_api::delete_snapshot),
        ),
        r(
            Method::PUT,
            "/api/v1/snapshots/{type}/{id}/{time}/notes",
            Operate,
            "Replace a snapshot's notes (`{\"notes\": \"…\"}`).",
            put(maint_api::set_notes),
        ),
        r(
            Method::POST,
            "/api/v1/snapshots/{type}/{id}/{time}/verify",
            Operate,
            "Verify a snapshot as a task; answers its task id.",
            post(maint_api::verify_snapshot),
        ),
        r(
            Method::POST,
            "/api/v1/groups/{type}/{id}/prune",
            Operate,
            "Prune by keep rules (`{\"keep\": {…}, \"dry_run\": true}` answers the decisions).",
            post(maint_api::prune_group),
        ),
        r(Method::POST, "/api/v1/gc", Operate, "Garbage collection as a task.", post(maint_api::gc)),
        r(
            Method::GET,
            "/api/v1/datastore",
            Read,
            "Where the datastore keeps its data: a directory, or an S3 bucket with its owner and cache.",
            get(datastore_api::status),
        ),
        r(
            Method::POST,
            "/api/v1/datastore/takeover",
            Admin,
            "Claim an S3 datastore's bucket for this machine (disaster recovery).",
            post(datastore_api::takeover),
        ),
        r(
            Method::POST,
            "/api/v1/datastore/refresh",
            Operate,
            "Fetch what the bucket's owner wrote since; drop what it deleted.",
            post(datastore_api::refresh),
        ),
        r(
            Method::GET,
            "/api/v1/snapshots/{type}/{id}/{time}/files",
            Client,
            "Entries under `?path=ARCHIVE/dir`.",
            get(api::files),
        ),
        r(
            Method::GET,
            "/api/v1/snapshots/{type}/{id}/{time}/download",
            Client,
            "One file's contents (`?path=`).",
            get(api::download),
        ),
        r(
            Method::GET,
            "/api/v1/snapshots/{type}/{id}/{time}/tar",
            Client,
            "A directory or whole archive as a tar stream (`?path=ARCHIVE/dir`).",
            get(api::download_tar),
        ),
        r(Method::GET, "/api/v1/users", Admin, "Users.", get(api::users)),
        r(Method::POST, "/api/v1/users", Admin, "Create a user or set a password.", post(api::set_user)),
        r(
            Method::DELETE,
            "/api/v1/users/{name}",
            Admin,
            "Remove a user with its tokens.",
            delete(api::remove_user),
        ),
        r(Method::GET, "/api/v1/tokens", Admin, "API tokens (never their secrets).", get(api::tokens)),
        r(
            Method::POST,
            "/api/v1/tokens",
            Admin,
            "Create a token; the answer holds its secret, once.",
            post(api::create_token),
        ),
        r(Method::DELETE, "/api/v1/tokens/{id}", Admin, "Revoke a token.", delete(api::revoke_token)),
        r(Method::GET, "/api/v1/jobs", Client, "Jobs with their SLA state.", get(jobs_api::list)),
        r(Method::POST, "/api/v1/jobs", Operate, "Create or replace a job.", post(jobs_api::put)),
        r(
            Method::DELETE,
            "/api/v1/jobs/{name}",
            Operate,
            "Remove a job (its snapshots stay).",
            delete(jobs_api::remove),
        ),
        r(
            Method::POST,
            "/api/v1/jobs/{name}/run",
            Operate,
            "Run a job now; answers its task id.",
            post(jobs_api::run),
        ),
        r(
            Method::GET,
            "/api/v1/tasks",
            Read,
            "Recent tasks, newest first (`?job=&limit=`).",
            get(jobs_api::tasks),
        ),
        r(Method::GET, "/api/v1/tasks/{id}", Read, "One task with its log.", get(jobs_api::task)),
        r(
            Method::GET,
            "/api/v1/tape",
            Read,
            "The tape library: drives, slots and import/export slots with their cartridges, pools, media sets, \
             and which snapshot is on which cartridges.",
            get(tape_api::show),
        ),
        r(Method::GET, "/api/v1/tape/pools", Read, "Media pools.", get(tape_api::pools)),
        r(
            Method::POST,
            "/api/v1/tape/pools",
            Admin,
            "Add or change a media pool (`{\"name\", \"allocation\", \"retention_secs\", \"worm\"}`).",
            post(tape_api::put_pool),
        ),
        r(
            Method::POST,
            "/api/v1/tape/backup",
            Operate,
            "Write snapshots to a pool as a task (`{\"pool\", \"groups\", \"snapshots\", \"latest\"}`); answers its task id.",
            post(tape_api::backup),
        ),
        r(
            Method::POST,
            "/api/v1/tape/restore",
            Operate,
            "Put a snapshot back into the datastore from tape, as a task (`{\"snapshot\", \"pool\"}`).",
            post(tape_api::restore),
        ),
        r(
            Method::GET,
            "/api/v1/appliance",
            Read,
            "The appliance's boot slots and the state of the last update.",
            get(appliance_api::status),
        ),
        r(
            Method::POST,
            "/api/v1/appliance/update",
            Admin,
            "Write a signed update bundle (the body) into the other slot and reboot into it.",
            post(appliance_api::update).layer(DefaultBodyLimit::disable()),
        ),
        r(Method::GET, "/api/v1/policies", Read, "Stored policies.", get(policy_api::list)),
        r(
            Method::POST,
            "/api/v1/policies",
            Admin,
            "Add a policy: the body is the component (`?name=&cpu_ms=&memory_mib=`); it is validated \
             and compiled under bounded resources first.",
            post(policy_api::upload).layer(DefaultBodyLimit::max(policy_api::MAX_POLICY_BODY)),
        ),
        r(Method::GET, "/api/v1/policies/{name}", Read, "One stored policy.", get(policy_api::show)),
        r(
            Method::DELETE,
            "/api/v1/policies/{name}",
            Admin,
            "Remove a stored policy.",
            delete(policy_api::remove),
        ),
        r(
            Method::POST,
            "/api/v1/policies/{name}/simulate",
            Operate,
            "Replay a retention policy over a group's snapshots (`{\"group\", \"every\", \"params\"}`); removes nothing.",
            post(policy_api::simulate),
        ),
        r(
            Method::GET,
            "/api/v1/sources",
            Client,
            "Stored source handlers, for clients that run one and upload what it reads.",
            get(policy_api::sources),
        ),
        r(
            Method::GET,
            "/api/v1/sources/{name}/component",
            Client,
            "A source handler's component (`application/wasm`).",
            get(policy_api::source_component),
        ),
        r(
            Method::POST,
            "/api/v1/backup",
            Client,
            "Open a remote backup session for a group (see the remote protocol).",
            post(remote::start_backup),
        ),
        r(
            Method::PUT,
            "/api/v1/backup/{session}/chunks/{chunk}",
            Client,
            "Upload a chunk blob, checked against its id.",
            put(remote::upload_chunk).layer(DefaultBodyLimit::max(protocol::MAX_CHUNK_BODY)),
        ),
        r(
            Method::PUT,
            "/api/v1/backup/{session}/indexes/{file}",
            Client,
            "Upload an index of the new snapshot.",
            put(remote::upload_index).layer(DefaultBodyLimit::max(protocol::MAX_INDEX_BODY)),
        ),
        r(
            Method::POST,
            "/api/v1/backup/{session}/finish",
            Client,
            "Commit the snapshot from its manifest.",
            post(remote::finish_backup).layer(DefaultBodyLimit::max(protocol::MAX_MANIFEST_BODY)),
        ),
        r(
            Method::DELETE,
            "/api/v1/backup/{session}",
            Client,
            "Abort a backup session; nothing becomes visible.",
            delete(remote::abort_backup),
        ),
        r(Method::POST, "/api/v1/reader", Client, "Open a snapshot for reading.", post(remote::start_reader)),
        r(
            Method::GET,
            "/api/v1/reader/{session}/indexes/{file}",
            Client,
            "An index file of the open snapshot.",
            get(remote::read_index),
        ),
        r(
            Method::GET,
            "/api/v1/reader/{session}/chunks/{chunk}",
            Client,
            "A chunk blob of the open snapshot.",
            get(remote::read_chunk),
        ),
        r(
            Method::DELETE,
            "/api/v1/reader/{session}",
            Client,
            "Close a reader session.",
            delete(remote::close_reader),
        ),
        r(Method::GET, "/login", Public, "Login form.", get(views::login_form)),
        r(Method::POST, "/login", Public, "Log in (form).", post(views::login)),
        r(Method::POST, "/logout", Client, "Log out (form).", post(views::logout)),
        r(Method::GET, "/", Client, "Overview page.", get(views::overview)),
        r(Method::GET, "/groups/{type}/{id}", Client, "Snapshots of a group (page).", get(views::group)),
        r(
            Method::GET,
            "/groups/{type}/{id}/prune",
            Read,
            "Prune preview with reasons (page).",
            get(views::prune_preview),
        ),
        r(
            Method::GET,
            "/snapshots/{type}/{id}/{time}",
            Client,
            "A snapshot and its files (page).",
            get(views::snapshot),
        ),
        r(
            Method::POST,
            "/snapshots/{type}/{id}/{time}/protect",
            Operate,
            "Protect or unprotect (form).",
            post(views::protect),
        ),
        r(
            Method::POST,
            "/snapshots/{type}/{id}/{time}/verify",
            Operate,
            "Verify now (form); shows the task.",
            post(maint_api::verify_form),
        ),
        r(
            Method::POST,
            "/snapshots/{type}/{id}/{time}/delete",
            Operate,
            "Delete (form, with confirmation).",
            post(maint_api::delete_form),
        ),
        r(
            Method::POST,
            "/snapshots/{type}/{id}/{time}/notes",
            Operate,
            "Save notes (form).",
            post(maint_api::notes_form),
        ),
        r(
            Method::GET,
            "/tape",
            Read,
            "The tape library, pools, media sets and snapshots on tape (page).",
            get(tape_api::page),
        ),
        r(
            Method::POST,
            "/tape/backup",
            Operate,
            "Write a group to a pool (form); shows the task.",
            post(tape_api::backup_form),
        ),
        r(
            Method::POST,
            "/tape/restore",
            Operate,
            "Put a snapshot back from tape (form); shows the task.",
            post(tape_api::restore_form),
        ),
        r(Method::POST, "/tape/pools", Admin, "Add or change a pool (form).", post(tape_api::pool_form)),
        r(Method::GET, "/jobs", Read, "Jobs (page).", get(job_views::jobs)),
        r(Method::POST, "/jobs", Operate, "Create a job (form).", post(job_views::create)),
        r(
            Method::GET,
            "/jobs/{name}",
            Read,
            "A job: its settings, a form to change them for operators (page).",
            get(job_views::job),
        ),
        r(Method::POST, "/jobs/{name}", Operate, "Save a job's settings (form).", post(job_views::edit)),
        r(
            Method::POST,
            "/jobs/{name}/delete",
            Operate,
            "Delete a job; its snapshots stay (form).",
            post(job_views::delete),
        ),
        r(Method::POST, "/jobs/{name}/run", Operate, "Run a job now (form).", post(job_views::run)),
        r(
            Method::GET,
            "/tasks/{id}",
            Read,
            "A task and its log, refreshed while it runs (page).",
            get(job_views::task),
        ),
        r(Method::GET, "/policies", Read, "Policies and the prune simulator (page).", get(policy_api::page)),
        r(
            Method::POST,
            "/policies",
            Admin,
            "Add a policy (multipart form: the component file, name, cpu_ms, memory_mib).",
            post(policy_api::upload_form).layer(DefaultBodyLimit::max(policy_api::MAX_POLICY_FORM)),
        )
        .multipart(policy_api::MAX_POLICY_FORM),
        r(
            Method::POST,
            "/policies/{name}/remove",
            Admin,
            "Remove a stored policy (form).",
            post(policy_api::remove_form),
        ),
        r(
            Method::POST,
            "/policies/simulate",
            Operate,
            "Simulate a retention policy (form).",
            post(policy_api::simulate_form),
        ),
        r(
            Method::GET,
            "/datastore",
            Read,
            "Where the data lives; bucket claim and refresh (page).",
            get(datastore_api::page),
        ),
        r(
            Method::POST,
            "/datastore/refresh",
            Operate,
            "Refresh from the bucket (form).",
            post(datastore_api::refresh_form),
        ),
        r(
            Method::POST,
            "/datastore/takeover",
            Admin,
            "Take the bucket over (form).",
            post(datastore_api::takeover_form),
        ),
        r(Method::GET, "/appliance", Admin, "Boot slots and updates (page).", get(appliance_api::page)),
        r(
            Method::POST,
            "/appliance/update",
            Admin,
            "Update from a bundle (form).",
            post(appliance_api::update_form).layer(DefaultBodyLimit::disable()),
        )
        .streamed_multipart(),
        r(
            Method::GET,
            "/welcome",
            Admin,
            "Where the admin lands after the first login (page).",
            get(appliance_api::welcome),
        ),
        r(Method::GET, "/users", Admin, "Users and tokens (page).", get(views::users)),
        r(Method::POST, "/users", Admin, "Create a user or set a password (form).", post(views::set_user)),
        r(Method::POST, "/tokens", Admin, "Create a token (form).", post(views::create_token)),
        r(Method::POST, "/tokens/{id}/revoke", Admin, "Revoke a token (form).", post(views::revoke_token)),
        r(Method::GET, "/static/cairn.css", Public, "Style sheet.", get(page::stylesheet)),
    ]
}

/// Whether `path` (without a query) names a dashboard page: a GET route
/// behind a login that is not under `/api/` nor `/metrics`. A `{param}` of
/// the table matches one non-empty segment other than `.` and `..`.
pub fn is_dashboard_page(path: &str) -> bool {
    static PAGES: OnceLock<Vec<&'static str>> = OnceLock::new();
    let pages = PAGES.get_or_init(|| {
        routes()
            .into_iter()
            .filter(|s| s.method == Method::GET && s.access != Access::Public)
            .filter(|s| !s.path.starts_with("/api/") && s.path != "/metrics")
            .map(|s| s.path)
            .collect()
    });
    let matches = |pattern: &str| {
        let (mut want, mut got) = (pattern.split('/'), path.split('/'));
        loop {
            match (want.next(), got.next()) {
                (None, None) => return true,
                (Some(w), Some(g)) if w.starts_with('{') => {
                    if g.is_empty() || g == "." || g == ".." {
                        return false;
                    }
                }
                (Some(w), Some(g)) if w == g => {}
                _ => return false,
            }
        }
    };
    pages.iter().any(|p| matches(p))
}

/// The whole application: every route behind its access check, the
/// request-id, error-rendering and delay layer outermost.
pub fn app(state: AppState) -> Router {
    let mut router = Router::new();
    for spec in routes() {
        let guard = auth::Guard { access: spec.access, multipart: spec.multipart, streamed: spec.streamed };
        let guard = from_fn_with_state((state.clone(), guard), auth::authorize);
        router = router.route(spec.path, spec.handler.route_layer(guard));
    }
    router
        .fallback(page::not_found)
        .layer(Extension(DashboardPages(is_dashboard_page)))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(from_fn_with_state(state.clone(), finish::finish))
        .layer(from_fn(finish::security_headers))
        .with_state(state)
}

async fn openapi() -> axum::Json<Value> {
    axum::Json(openapi_document())
}

/// An OpenAPI 3.1 document generated from the route table.
pub fn openapi_document() -> Value {
    let mut paths = serde_json::Map::new();
    for spec in routes()
        .into_iter()
        .filter(|s| s.path.starts_with("/api/") || s.path == "/metrics" || s.path == "/healthz")
    {
        let params: Vec<Value> = spec
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let security =
            if spec.access == Access::Public { json!([]) } else { json!([{"bearer": []}, {"session": []}]) };
        let op = json!({
            "summary": spec.summary,
            "parameters": params,
            "security": security,
            "x-cairn-access": spec.access.as_str(),
            "responses": {
                "200": {"description": "Success (JSON, except /metrics, /healthz and downloads)."},
                "400": {"description": "The request is malformed; `error` says why."},
                "401": {"description": "Not authenticated (answered no sooner than 3 s after the request)."},
                "403": {"description": "Authenticated, but the role or token may not do this."},
                "404": {"description": "No such object."}
            }
        });
        let entry = paths.entry(spec.path.to_owned()).or_insert_with(|| json!({}));
        entry[spec.method.as_str().to_ascii_lowercase()] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Cairn backup server", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "An API token: cairn_<id>_<secret>."},
            "session": {"type": "apiKey", "in": "cookie", "name": auth::SESSION_COOKIE,
                        "description": "Dashboard session; state-changing calls also need the x-csrf-token header."}
        }}
    })
}
