//! Handler tests in-process: `app()` driven with `oneshot`, no socket.
//! The access test walks every route of the route table against its own
//! table of who may call what; a route missing from it fails the test.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, StatusCode, header};
use axum::response::Response;
use engine::access::TokenSpec;
use engine::{BackupOptions, DatastoreConfig, Engine, Progress};
use model::{BackupGroup, Namespace, Role};
use tower::ServiceExt;

use super::routes::{app, openapi_document, routes};
use super::state::AppState;

pub(super) struct Fixture {
    pub(super) _dir: tempfile::TempDir,
    pub(super) engine: Engine,
    pub(super) state: AppState,
    pub(super) snapshot: String,
    pub(super) tokens: BTreeMap<&'static str, String>,
}

pub(super) const T0: i64 = 1_790_000_000;

pub(super) fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha\n").unwrap();
    std::fs::write(src.join("sub/b.bin"), (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect::<Vec<_>>())
        .unwrap();
    let (engine, _) = Engine::init(&dir.path().join("ds"), DatastoreConfig::default()).unwrap();
    let group = BackupGroup::new(Namespace::root(), "host", "a").unwrap();
    let opts = BackupOptions {
        group: group.clone(),
        sources: vec![src],
        tags: vec!["daily".into()],
        excludes: vec![],
        one_file_system: false,
        time: T0,
    };
    let report = engine.backup(&opts, &Progress::default()).unwrap();
    let lab = BackupGroup::new(Namespace::parse("lab").unwrap(), "vm", "101").unwrap();
    engine.backup(&BackupOptions { group: lab, ..opts.clone() }, &Progress::default()).unwrap();
    engine.set_password("admin", "admin-password", Role::Admin, T0).unwrap();
    let mut tokens = BTreeMap::new();
    let other = BackupGroup::new(Namespace::root(), "host", "b").unwrap();
    for (key, role, groups) in [
        ("admin", Role::Admin, vec![]),
        ("operator", Role::Operator, vec![]),
        ("auditor", Role::Auditor, vec![]),
        ("client", Role::BackupClient, vec![group.clone()]),
        ("client-other", Role::BackupClient, vec![other]),
    ] {
        let spec = TokenSpec { name: key.into(), owner: "admin".into(), role, groups, expires: None };
        tokens.insert(key, engine.create_token(&spec, T0).unwrap().0);
    }
    let state = AppState::new(engine.clone(), Some("aa:bb".into()), Duration::ZERO, 2);
    Fixture { _dir: dir, engine, state, snapshot: report.id.to_string(), tokens }
}

pub(super) async fn send(state: &AppState, req: Request<Body>) -> Response {
    app(state.clone()).oneshot(req).await.unwrap()
}

pub(super) async fn body_text(res: Response) -> String {
    String::from_utf8_lossy(&to_bytes(res.into_body(), 64 << 20).await.unwrap()).into_owned()
}

pub(super) fn get(uri: &str) -> axum::http::request::Builder {
    Request::builder().method(Method::GET).uri(uri)
}

/// Log in through the form; returns (cookie header value, csrf token).
pub(super) async fn login(f: &Fixture, user: &str, password: &str) -> (String, String) {
    let body = format!("user={user}&password={password}&next=/");
    let req = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    let res = send(&f.state, req).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let set = res.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(set.contains(attr), "cookie lacks {attr}: {set}");
    }
    let cookie = set.split(';').next().unwrap().to_owned();
    let page = body_text(
        send(&f.state, get("/").header(header::COOKIE, &cookie).body(Body::empty()).unwrap()).await,
    )
    .await;
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    (cookie, csrf)
}

/// Who may call each route. Kept apart from the route table on purpose:
/// a new route must be added here, with a decision.
const EXPECTED: &[(&str, &str, &str)] = &[
    ("GET", "/healthz", "public"),
    ("GET", "/metrics", "read"),
    ("GET", "/api/v1/openapi.json", "public"),
    ("GET", "/api/v1/status", "client"),
    ("GET", "/api/v1/groups", "client"),
    ("GET", "/api/v1/snapshots", "client"),
    ("GET", "/api/v1/snapshots/{type}/{id}/{time}", "client"),
    ("POST", "/api/v1/snapshots/{type}/{id}/{time}/protect", "operate"),
    ("POST", "/api/v1/snapshots/{type}/{id}/{time}/unprotect", "operate"),
    ("DELETE", "/api/v1/snapshots/{type}/{id}/{time}", "operate"),
    ("PUT", "/api/v1/snapshots/{type}/{id}/{time}/notes", "operate"),
    ("POST", "/api/v1/snapshots/{type}/{id}/{time}/verify", "operate"),
    ("POST", "/api/v1/groups/{type}/{id}/prune", "operate"),
    ("POST", "/api/v1/gc", "operate"),
    ("GET", "/api/v1/datastore", "read"),
    ("POST", "/api/v1/datastore/takeover", "admin"),
    ("POST", "/api/v1/datastore/refresh", "operate"),
    ("GET", "/api/v1/snapshots/{type}/{id}/{time}/files", "client"),
    ("GET", "/api/v1/snapshots/{type}/{id}/{time}/download", "client"),
    ("GET", "/api/v1/snapshots/{type}/{id}/{time}/tar", "client"),
    ("GET", "/api/v1/users", "admin"),
    ("POST", "/api/v1/users", "admin"),
    ("DELETE", "/api/v1/users/{name}", "admin"),
    ("GET", "/api/v1/tokens", "admin"),
    ("POST", "/api/v1/tokens", "admin"),
    ("DELETE", "/api/v1/tokens/{id}", "admin"),
    ("GET", "/api/v1/tape", "read"),
    ("GET", "/api/v1/tape/pools", "read"),
    ("POST", "/api/v1/tape/pools", "admin"),
    ("POST", "/api/v1/tape/backup", "operate"),
    ("POST", "/api/v1/tape/restore", "operate"),
    ("GET", "/api/v1/appliance", "read"),
    ("POST", "/api/v1/appliance/update", "admin"),
    ("GET", "/api/v1/policies", "read"),
    ("POST", "/api/v1/policies", "admin"),
    ("GET", "/api/v1/policies/{name}", "read"),
    ("DELETE", "/api/v1/policies/{name}", "admin"),
    ("POST", "/api/v1/policies/{name}/simulate", "operate"),
    ("GET", "/api/v1/jobs", "client"),
    ("POST", "/api/v1/jobs", "operate"),
    ("DELETE", "/api/v1/jobs/{name}", "operate"),
    ("POST", "/api/v1/jobs/{name}/run", "operate"),
    ("GET", "/api/v1/tasks", "read"),
    ("GET", "/api/v1/tasks/{id}", "read"),
    ("GET", "/api/v1/sources", "client"),
    ("GET", "/api/v1/sources/{name}/component", "client"),
    ("POST", "/api/v1/backup", "client"),
    ("PUT", "/api/v1/backup/{session}/chunks/{chunk}", "client"),
    ("PUT", "/api/v1/backup/{session}/indexes/{file}", "client"),
    ("POST", "/api/v1/backup/{session}/finish", "client"),
    ("DELETE", "/api/v1/backup/{session}", "client"),
    ("POST", "/api/v1/reader", "client"),
    ("GET", "/api/v1/reader/{session}/indexes/{file}", "client"),
    ("GET", "/api/v1/reader/{session}/chunks/{chunk}", "client"),
    ("DELETE", "/api/v1/reader/{session}", "client"),
    ("GET", "/login", "public"),
    ("POST", "/login", "public"),
    ("POST", "/logout", "client"),
    ("GET", "/", "client"),
    ("GET", "/groups/{type}/{id}", "client"),
    ("GET", "/groups/{type}/{id}/prune", "read"),
    ("GET", "/snapshots/{type}/{id}/{time}", "client"),
    ("POST", "/snapshots/{type}/{id}/{time}/protect", "operate"),
    ("POST", "/snapshots/{type}/{id}/{time}/verify", "operate"),
    ("POST", "/snapshots/{type}/{id}/{time}/delete", "operate"),
    ("POST", "/snapshots/{type}/{id}/{time}/notes", "operate"),
    ("GET", "/jobs", "read"),
    ("POST", "/jobs", "operate"),
    ("GET", "/jobs/{name}", "read"),
    ("POST", "/jobs/{name}", "operate"),
    ("POST", "/jobs/{name}/delete", "operate"),
    ("POST", "/jobs/{name}/run", "operate"),
    ("GET", "/tasks/{id}", "read"),
    ("GET", "/tape", "read"),
    ("POST", "/tape/backup", "operate"),
    ("POST", "/tape/restore", "operate"),
    ("POST", "/tape/pools", "admin"),
    ("GET", "/policies", "read"),
    ("POST", "/policies", "admin"),
    ("POST", "/policies/{name}/remove", "admin"),
    ("POST", "/policies/simulate", "operate"),
    ("GET", "/datastore", "read"),
    ("POST", "/datastore/refresh", "operate"),
    ("POST", "/datastore/takeover", "admin"),
    ("GET", "/appliance", "admin"),
    ("POST", "/appliance/update", "admin"),
    ("GET", "/welcome", "admin"),
    ("GET", "/users", "admin"),
    ("POST", "/users", "admin"),
    ("POST", "/tokens", "admin"),
    ("POST", "/tokens/{id}/revoke", "admin"),
    ("GET", "/static/cairn.css", "public"),
];

/// Whether a caller kind passes an access level (for a route naming the
/// fixture's group).
fn admitted(access: &str, caller: &str, path: &str) -> bool {
    match (access, caller) {
        ("public", _) => true,
        (_, "anonymous") => false,
        // A backup client of another group sees only its own (empty) lists,
        // and may not touch this group.
        ("client", "client-other") => !path.contains("{type}"),
        ("client", _) => true,
        ("read", c) => matches!(c, "admin" | "operator" | "auditor"),
        ("operate", c) => matches!(c, "admin" | "operator"),
        ("admin", c) => c == "admin",
        other => panic!("unknown access {other:?}"),
    }
}

fn concrete(path: &str, snapshot: &str) -> String {
    let group = snapshot.rsplit_once('/').unwrap().0;
    let uri = path
        .replace("{type}/{id}/{time}", snapshot)
        .replace("{type}/{id}", group)
        .replace("{id}", "nosuchtoken")
        .replace("{name}", "nosuchuser")
        .replace("{session}", "nosuchsession")
        .replace("{chunk}", &"0".repeat(64))
        .replace("{file}", "x.didx");
    if path.contains("/files") || path.contains("/download") {
        uri + "?path=src/a.txt"
    } else if path.ends_with("/tar") {
        uri + "?path=src/sub"
    } else {
        uri
    }
}

#[tokio::test]
async fn every_route_is_guarded_as_the_access_table_says() {
    let f = fixture();
    let table: BTreeMap<(String, String), &str> =
        EXPECTED.iter().map(|(m, p, a)| ((m.to_string(), p.to_string()), *a)).collect();
    let specs = routes();
    for spec in &specs {
        let key = (spec.method.to_string(), spec.path.to_owned());
        let want =
            table.get(&key).unwrap_or_else(|| panic!("route {} {} is missing from EXPECTED", key.0, key.1));
        assert_eq!(spec.access.as_str(), *want, "{} {}", key.0, key.1);
    }
    assert_eq!(specs.len(), EXPECTED.len(), "EXPECTED lists a route the router does not have");

    let (cookie, _csrf) = login(&f, "admin", "admin-password").await;
    let callers =
        ["anonymous", "admin", "operator", "auditor", "client", "client-other", "session-without-csrf"];
    for (method, path, access) in EXPECTED {
        let uri = concrete(path, &f.snapshot);
        for caller in callers {
            if *path == "/logout" && caller == "session-without-csrf" {
                continue; // checked below without losing the session
            }
            let mut req = Request::builder().method(*method).uri(&uri);
            match caller {
                "anonymous" => {}
                "session-without-csrf" => req = req.header(header::COOKIE, &cookie),
                token => req = req.header(header::AUTHORIZATION, format!("Bearer {}", f.tokens[token])),
            }
            let body = if *method == "GET" { Body::empty() } else { Body::from("{}") };
            let req = req.header(header::CONTENT_TYPE, "application/json").body(body).unwrap();
            let status = send(&f.state, req).await.status();
            let page_redirect = caller == "anonymous" && *method == "GET" && !path.starts_with("/api/");
            let allowed = if caller == "session-without-csrf" {
                *access == "public" || *method == "GET"
            } else {
                admitted(access, caller, path)
            };
            let denied = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
                || (page_redirect && status == StatusCode::SEE_OTHER);
            assert_eq!(!denied, allowed, "{method} {uri} as {caller}: {status}");
        }
    }
    // A logout form without its CSRF token is refused, and the session survives.
    let req = Request::post("/logout").header(header::COOKIE, &cookie).body(Body::empty()).unwrap();
    assert_eq!(send(&f.state, req).await.status(), StatusCode::FORBIDDEN);
    let req = get("/api/v1/status").header(header::COOKIE, &cookie).body(Body::empty()).unwrap();
    assert_eq!(send(&f.state, req).await.status(), StatusCode::OK);
}

/// Time on the test's (paused) clock that a request took.
async fn timed(state: &AppState, req: Request<Body>) -> (Response, Duration) {
    let started = tokio::time::Instant::now();
    let res = send(state, req).await;
    (res, started.elapsed())
}

// The clock is paused: the 3 s delay passes at once, and a request that
// sets no timer takes no time at all on it, so both sides are exact.
#[tokio::test(start_paused = true)]
async fn every_unauthenticated_failure_waits_three_seconds_and_carries_a_request_id() {
    let f = fixture();
    let state = AppState::new(f.engine.clone(), None, super::state::AUTH_DELAY, 2);
    let failures = [
        ("a bad bearer token", get("/api/v1/status").header(header::AUTHORIZATION, "Bearer cairn_00_11")),
        ("no credentials on an API route", get("/api/v1/status")),
        (
            "a stale session cookie",
            get("/api/v1/status").header(header::COOKIE, "cairn_session=0123456789abcdef"),
        ),
        (
            "a wrong password on the login form",
            Request::post("/login")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .method(Method::POST),
        ),
    ];
    for (what, req) in failures {
        let body = if what.contains("login") {
            Body::from("user=admin&password=wrong&next=/")
        } else {
            Body::empty()
        };
        let (res, took) = timed(&state, req.body(body).unwrap()).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert!(took >= super::state::AUTH_DELAY, "{what}: answered after {took:?}");
        let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        let text = body_text(res).await;
        // API answers carry the id in their JSON; the login form is shown again.
        assert!(text.contains(&id) || what.contains("login"), "{what}: {text}");
    }
    // Authenticated requests to protected routes are not held back.
    let token = format!("Bearer {}", f.tokens["auditor"]);
    let (res, took) = timed(
        &state,
        get("/api/v1/status").header(header::AUTHORIZATION, token).body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(took < super::state::AUTH_DELAY, "answered after {took:?}");
}

#[tokio::test]
async fn cookie_borne_api_calls_need_the_csrf_header() {
    let f = fixture();
    let (cookie, csrf) = login(&f, "admin", "admin-password").await;
    let notes = |token: Option<&str>| {
        let mut req = Request::put(format!("/api/v1/snapshots/{}/notes", f.snapshot))
            .header(header::COOKIE, &cookie)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(t) = token {
            req = req.header("x-csrf-token", t);
        }
        req.body(Body::from(r#"{"notes": "by cookie"}"#)).unwrap()
    };
    for (token, want) in [
        (None, StatusCode::FORBIDDEN),
        (Some("not-the-token"), StatusCode::FORBIDDEN),
        (Some(csrf.as_str()), StatusCode::OK),
    ] {
        let res = send(&f.state, notes(token)).await;
        assert_eq!(res.status(), want, "{token:?}: {}", body_text(res).await);
    }
    let id = model::SnapshotId::parse(&f.snapshot, &Namespace::root()).unwrap();
    assert_eq!(f.engine.snapshot(&id).unwrap().notes, "by cookie");
}

#[tokio::test]
async fn secrets_are_never_stored_in_the_catalog() {
    let f = fixture();
    let (cookie, _) = login(&f, "admin", "admin-password").await;
    let session = cookie.split_once('=').unwrap().1.to_owned();
    let catalog = std::fs::read(f.engine.datastore().root().join("catalog.redb")).unwrap();
    let mut secrets: Vec<String> = f.tokens.values().cloned().collect();
    // A token's secret part, alone, is not stored either.
    secrets.extend(f.tokens.values().map(|t| t.rsplit('_').next().unwrap().to_owned()));
    secrets.extend(["admin-password".to_owned(), session]);
    for secret in secrets {
        assert!(secret.len() >= 12, "{secret}");
        let found = catalog.windows(secret.len()).any(|w| w == secret.as_bytes());
        assert!(!found, "the catalog holds a secret in plain text: {secret}");
    }
}

#[tokio::test]
async fn login_pages_and_forms_work_without_javascript() {
    let f = fixture();
    let bad = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("user=admin&password=wrong&next=/"))
        .unwrap();
    let res = send(&f.state, bad).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers().get(header::SET_COOKIE).is_none());
    assert!(body_text(res).await.contains("Wrong user name or password"));

    let (cookie, csrf) = login(&f, "admin", "admin-password").await;
    let page = |uri: String| {
        let state = f.state.clone();
        let cookie = cookie.clone();
        async move {
            let res =
                send(&state, get(&uri).header(header::COOKIE, cookie).body(Body::empty()).unwrap()).await;
            assert_eq!(res.status(), StatusCode::OK, "{uri}");
            body_text(res).await
        }
    };
    let overview = page("/".into()).await;
    assert!(overview.contains("href=\"/groups/host/a\"") && overview.contains("<svg"), "{overview}");
    assert!(overview.contains("aa:bb"), "the fingerprint is shown");
    let preview = page("/groups/host/a/prune?last=0&daily=1".into()).await;
    assert!(preview.contains("keep-daily 1") && preview.contains("1 kept, 0 would be removed"), "{preview}");
    // A group in a namespace: links carry `?ns=` and lead to working pages.
    assert!(overview.contains("href=\"/groups/vm/101?ns=lab\""), "{overview}");
    let lab = page("/groups/vm/101?ns=lab".into()).await;
    let link = lab.split("href=\"/snapshots/vm/101/").nth(1).unwrap().split('"').next().unwrap();
    assert!(link.ends_with("?ns=lab"), "{link}");
    let lab_snapshot = page(format!("/snapshots/vm/101/{}", link.replace("&amp;", "&"))).await;
    assert!(lab_snapshot.contains("ns/lab/vm/101"), "{lab_snapshot}");
    let group = page("/groups/host/a".into()).await;
    assert!(group.contains("daily") && group.contains(&f.snapshot[7..]), "{group}");
    let base = format!("/snapshots/{}", f.snapshot);
    let root = page(format!("{base}?path=src")).await;
    assert!(root.contains("a.txt") && root.contains("sub/"), "{root}");
    let sub = page(format!("{base}?path=src/sub")).await;
    assert!(sub.contains("b.bin") && sub.contains("Download"), "{sub}");

    // Protect through the form (CSRF field), then see it.
    let form = Request::post(format!("{base}/protect"))
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("csrf={csrf}&protected=true")))
        .unwrap();
    assert_eq!(send(&f.state, form).await.status(), StatusCode::SEE_OTHER);
    assert!(page(base.clone()).await.contains("<dd id=\"protected\">yes</dd>"));
    let wrong = Request::post(format!("{base}/protect"))
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("csrf=forged&protected=false"))
        .unwrap();
    assert_eq!(send(&f.state, wrong).await.status(), StatusCode::FORBIDDEN);
    assert!(
        f.engine
            .snapshot(&model::SnapshotId::parse(&f.snapshot, &Namespace::root()).unwrap())
            .unwrap()
            .protected
    );

    // A token made on the users page is shown once and then works.
    let form = Request::post("/tokens")
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("csrf={csrf}&name=web&role=backup-client&groups=host%2Fa")))
        .unwrap();
    let shown = body_text(send(&f.state, form).await).await;
    let token = shown.split("<code id=\"new-token\">").nth(1).unwrap().split('<').next().unwrap().to_owned();
    let req = get("/api/v1/groups")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let groups: serde_json::Value =
        serde_json::from_str(&body_text(send(&f.state, req).await).await).unwrap();
    let names: Vec<&str> = groups.as_array().unwrap().iter().map(|g| g["group"].as_str().unwrap()).collect();
    assert_eq!(names, ["host/a"], "the new client token sees its group and nothing else: {groups}");
    let req = get("/api/v1/snapshots?group=vm/101&ns=lab")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&f.state, req).await.status(), StatusCode::FORBIDDEN, "another group is refused");
    assert!(!page("/users".into()).await.contains(&token), "a token's secret is shown only once");

    // Log out: the cookie stops working.
    let out = Request::post("/logout")
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("csrf={csrf}")))
        .unwrap();
    assert_eq!(send(&f.state, out).await.status(), StatusCode::SEE_OTHER);
    let after =
        send(&f.state, get("/api/v1/status").header(header::COOKIE, &cookie).body(Body::empty()).unwrap())
            .await;
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
}

/// A login sends the browser only to a dashboard page of this server:
/// whatever a browser could turn into another host, whatever cannot be a
/// header, and every API or unknown path go to `/`.
#[test]
fn login_targets_are_dashboard_pages_only() {
    use super::views::local_target as target;
    let local_target =
        |next: Option<&str>| target(next, super::page::DashboardPages(super::routes::is_dashboard_page));
    let snap = "/snapshots/host/a/2026-01-02T03:04:05Z";
    let with_query = format!("{snap}?path=src%2Fsub%20dir&ns=lab");
    for good in ["/", "/jobs?x=1", "/groups/host/a?ns=lab", "/groups/vm/101/prune?daily=1", "/tasks/7", snap]
    {
        assert_eq!(local_target(Some(good)), good);
    }
    assert_eq!(local_target(Some(&with_query)), with_query);
    for bad in [
        "/\t/evil.example",
        "/\n/evil.example",
        "/jobs\r\nSet-Cookie: a=b",
        "//evil.example",
        "/\\evil.example",
        "/jobs?next=\\evil",
        "/%09/evil.example",
        "/%0a/evil.example",
        "/%5Cevil.example",
        "/%5cevil.example",
        "/%2F%2Fevil.example",
        "/%2f/evil.example",
        "/jobs/%2e%2e",
        "/jobs/..",
        "/jobs/ x",
        "/jobs/\u{a0}",
        "/api/v1/tokens",
        "/api/v1/status",
        "/metrics",
        "/healthz",
        "/login",
        "/static/cairn.css",
        "/nope",
        "/jobs/",
        "https://evil.example/",
        "evil.example",
        "",
    ] {
        assert_eq!(local_target(Some(bad)), "/", "{bad:?}");
    }
    assert_eq!(local_target(None), "/");
}

/// The login form and its answer: a newline or tab in `next` never breaks
/// the answer (it used to be a 500 after the session was made).
#[tokio::test]
async fn login_with_a_hostile_next_goes_home() {
    let f = fixture();
    let post = |next: &'static str| {
        let state = f.state.clone();
        async move {
            let req = Request::post("/login")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!("user=admin&password=admin-password&next={next}")))
                .unwrap();
            let res = send(&state, req).await;
            assert_eq!(res.status(), StatusCode::SEE_OTHER, "{next}");
            assert!(res.headers().get(header::SET_COOKIE).is_some(), "{next}");
            res.headers()[header::LOCATION].to_str().unwrap().to_owned()
        }
    };
    assert_eq!(post("%2F%0A%2Fevil.example").await, "/");
    assert_eq!(post("%2F%09%2Fevil.example").await, "/");
    assert_eq!(post("%2F%2Fevil.example").await, "/");
    assert_eq!(post("%2Fapi%2Fv1%2Ftokens").await, "/");
    assert_eq!(post("%2Fjobs%3Fx%3D1").await, "/jobs?x=1");
    let form = send(&f.state, get("/login?next=%2F%0A%2Fevil").body(Body::empty()).unwrap()).await;
    assert_eq!(form.status(), StatusCode::OK);
    assert!(body_text(form).await.contains("name=\"next\" value=\"/\""), "the form carries /");
}

#[tokio::test]
async fn api_answers_json_and_downloads_exact_bytes() {
    let f = fixture();
    let auth = format!("Bearer {}", f.tokens["client"]);
    let call = |uri: String| {
        let (state, auth) = (f.state.clone(), auth.clone());
        async move {
            send(&state, get(&uri).header(header::AUTHORIZATION, auth).body(Body::empty()).unwrap()).await
        }
    };
    let snaps: serde_json::Value =
        serde_json::from_str(&body_text(call("/api/v1/snapshots".into()).await).await).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 1);
    assert_eq!(snaps[0]["id"], f.snapshot.as_str());
    assert_eq!(snaps[0]["tags"][0], "daily");

    let res = call("/api/v1/snapshots?group=host/a&offset=0&limit=1".into()).await;
    assert_eq!(res.headers()["x-total-count"], "1");
    let res = call("/api/v1/snapshots?offset=0&limit=1".into()).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "paging needs a group");

    let res = call(format!("/api/v1/snapshots/{}/download?path=src/sub/b.bin", f.snapshot)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()[header::CONTENT_DISPOSITION].to_str().unwrap().contains("b.bin"));
    let got = to_bytes(res.into_body(), 1 << 20).await.unwrap();
    let want: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    assert!(got.as_ref() == want.as_slice(), "downloaded bytes differ");

    let res = call(format!("/api/v1/snapshots/{}/download?path=src/sub", f.snapshot)).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    // A directory as a tar stream: the directory and its file, exact bytes.
    let res = call(format!("/api/v1/snapshots/{}/tar?path=src/sub", f.snapshot)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/x-tar");
    assert!(res.headers()[header::CONTENT_DISPOSITION].to_str().unwrap().contains("sub.tar"));
    let tar_bytes = to_bytes(res.into_body(), 4 << 20).await.unwrap();
    let mut archive = tar::Archive::new(tar_bytes.as_ref());
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        if name == "sub/b.bin" {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
            assert!(data == want, "tar member differs");
        }
        names.push(name);
    }
    assert_eq!(names, ["sub", "sub/b.bin"]);
    let res = call(format!("/api/v1/snapshots/{}/tar?path=src/nope", f.snapshot)).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = call(format!("/api/v1/snapshots/{}/files?path=src/nope", f.snapshot)).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let err: serde_json::Value = serde_json::from_str(&body_text(res).await).unwrap();
    assert!(err["error"].as_str().unwrap().contains("no such path"), "{err}");
    let res = call("/api/v1/snapshots/host/a/2001-01-01T00:00:00Z".into()).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = call("/api/v1/snapshots?group=not-a-group".into()).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    let metrics = body_text(
        send(
            &f.state,
            get("/metrics")
                .header(header::AUTHORIZATION, format!("Bearer {}", f.tokens["auditor"]))
                .body(Body::empty())
                .unwrap(),
        )
        .await,
    )
    .await;
    assert!(metrics.contains("\ncairn_snapshots 2\n"), "{metrics}");
    assert!(
        metrics.contains(&format!("cairn_group_last_snapshot_seconds{{ns=\"\",group=\"host/a\"}} {T0}")),
        "{metrics}"
    );

    let doc = openapi_document();
    for spec in routes().iter().filter(|s| s.path.starts_with("/api/")) {
        let op = &doc["paths"][spec.path][spec.method.as_str().to_ascii_lowercase()];
        assert!(op["summary"].is_string(), "{} {} missing from the OpenAPI document", spec.method, spec.path);
    }
}

/// An archive entry written by hand: (path, kind, data, symlink target).
type HandEntry<'a> = (&'a [u8], filevol::archive::EntryKind, &'a [u8], &'a [u8]);

/// A snapshot of group host/a at `time` written by hand, as a hostile
/// client could upload it: one file archive `archive` whose entries are
/// `(path, kind, data, symlink target)`, in the order given. Returns its id.
fn written_by_hand(f: &Fixture, time: i64, archive: &str, entries: &[HandEntry<'_>]) -> String {
    use filevol::archive::{Entry, EntryKind, encode_entry, stream_header};
    let (mut meta, mut payload) = (stream_header().to_vec(), Vec::new());
    for (path, kind, data, link) in entries {
        let e = Entry {
            path: path.to_vec(),
            kind: *kind,
            mode: if *kind == EntryKind::Dir { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
            mtime: T0,
            mtime_nsec: 0,
            ctime: T0,
            ctime_nsec: 0,
            ino: 0,
            size: data.len() as u64,
            rdev: 0,
            link_target: link.to_vec(),
            hardlink: 0,
            payload_offset: if *kind == EntryKind::File { payload.len() as u64 } else { 0 },
            extents: None,
            xattrs: Vec::new(),
        };
        payload.extend_from_slice(data);
        encode_entry(&e, &mut meta);
    }
    let group = BackupGroup::new(Namespace::root(), "host", "a").unwrap();
    let (writer, _) = f.engine.begin_remote_backup(&group, time).unwrap();
    let index = |name: String, bytes: &[u8]| {
        let (id, blob) = chunker::encode_blob(bytes, 3);
        writer.store(&id, &blob).unwrap();
        let idx = engine::DynamicIndex { entries: vec![(bytes.len() as u64, id)] };
        writer.write_index(&name, &idx.encode(), bytes.len() as u64, 1).unwrap()
    };
    let indexes = vec![
        index(format!("{archive}.meta.didx"), &meta),
        index(format!("{archive}.payload.didx"), &payload),
    ];
    let honest = model::SnapshotId::parse(&f.snapshot, &Namespace::root()).unwrap();
    let mut m = f.engine.datastore().read_manifest(&honest).unwrap();
    m.time = model::time::format_rfc3339(time);
    m.archives = vec![filevol::ManifestArchive {
        name: archive.into(),
        kind: "file".into(),
        size: payload.len() as u64,
        indexes,
        source_stat: None,
        entries: entries.len() as u64,
    }];
    f.engine.commit_backup(writer, &m, time).unwrap().to_string()
}

/// A snapshot written by hand as a hostile client could upload it: its
/// archive `evil` holds a symlink `x -> /outside` and then `x/pwned`, a
/// regular file `z` and then `z/deeper`, and `y` twice; `d/ok` is an
/// honest file. Returns its id.
fn hostile_snapshot(f: &Fixture) -> String {
    use filevol::archive::EntryKind::{Dir, File, Symlink};
    written_by_hand(
        f,
        T0 + 3600,
        "evil",
        &[
            (b"", Dir, b"", b""),
            (b"d", Dir, b"", b""),
            (b"d/ok", File, b"honest\n", b""),
            (b"x", Symlink, b"", b"/outside"),
            (b"x/pwned", File, b"pwned\n", b""),
            (b"y", File, b"first\n", b""),
            (b"y", File, b"second\n", b""),
            (b"z", File, b"plain\n", b""),
            (b"z/deeper", File, b"deeper\n", b""),
        ],
    )
}

/// Restore never writes outside its target, whatever a snapshot says: a
/// symlink to a directory outside followed by a file beneath it, names
/// with `..` or a leading `/`, and a target that is itself a symlink to a
/// directory outside. (A hard link cannot point outside: the format links
/// names of one archive by group number, never by path.)
#[test]
fn restore_never_writes_outside_its_target() {
    use filevol::archive::EntryKind::{Dir, File, Symlink};
    let f = fixture();
    let jail = tempfile::tempdir().unwrap();
    let outside = jail.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let outside_text = outside.display().to_string();
    let absolute = format!("{outside_text}/pwned");
    // On the restoring thread, and with 4 writer threads that also
    // create the files.
    let restore = |id: &str, target: &std::path::Path, threads: usize| {
        let req = engine::restore::RestoreRequest {
            snapshot: model::SnapshotId::parse(id, &Namespace::root()).unwrap(),
            target: target.to_owned(),
            path: None,
            overwrite: false,
            skip_devices: false,
            clear_setuid: false,
            threads: Some(threads),
        };
        f.engine.restore(&req, &Progress::default())
    };
    let untouched = || {
        let left: Vec<_> = std::fs::read_dir(&outside).unwrap().map(|e| e.unwrap().path()).collect();
        assert!(left.is_empty(), "the restore wrote outside its target: {left:?}");
    };
    let cases: [(&str, &[HandEntry<'_>]); 4] = [
        (
            "through-a-link",
            &[
                (b"", Dir, b"", b""),
                (b"x", Symlink, b"", outside_text.as_bytes()),
                (b"x/pwned", File, b"pwned", b""),
            ],
        ),
        ("dot-dot", &[(b"", Dir, b"", b""), (b"../../outside/pwned", File, b"pwned", b"")]),
        (
            "dot-dot-inside",
            &[(b"", Dir, b"", b""), (b"a", Dir, b"", b""), (b"a/../../outside/pwned", File, b"pwned", b"")],
        ),
        ("absolute", &[(b"", Dir, b"", b""), (absolute.as_bytes(), File, b"pwned", b"")]),
    ];
    for (n, (name, entries)) in cases.iter().enumerate() {
        let id = written_by_hand(&f, T0 + 7200 + n as i64, name, entries);
        for threads in [0, 4] {
            let target = jail.path().join(format!("target-{name}-{threads}"));
            let result = restore(&id, &target, threads);
            untouched();
            if let Ok(report) = &result {
                // Restored at all: the link is a link inside the target,
                // and the file beneath it was refused.
                assert!(!report.warnings.is_empty() || !report.failed.is_empty(), "{name}: {report:?}");
            }
        }
    }
    // The target itself a symlink to a directory outside: refused.
    let honest =
        written_by_hand(&f, T0 + 9000, "honest", &[(b"", Dir, b"", b""), (b"f", File, b"data", b"")]);
    let link = jail.path().join("target-link");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    for threads in [0, 4] {
        let err = restore(&honest, &link, threads).expect_err("a target that is a symlink is refused");
        untouched();
        assert!(format!("{err:#}").contains("symlink") || format!("{err:#}").contains("link"), "{err:#}");
        // An honest restore of the same snapshot into a real directory works.
        let real = jail.path().join(format!("real-{threads}"));
        restore(&honest, &real, threads).unwrap();
        assert_eq!(std::fs::read(real.join("f")).unwrap(), b"data");
    }
}

/// A tar download never holds an entry beneath a symlink or another
/// non-directory it holds, nor a path twice, whatever the snapshot says:
/// such entries are left out (and logged), the rest is downloaded.
#[tokio::test]
async fn a_tar_download_never_writes_through_a_symlink_or_twice() {
    let f = fixture();
    let id = hostile_snapshot(&f);
    let res = send(
        &f.state,
        get(&format!("/api/v1/snapshots/{id}/tar?path=evil"))
            .header(header::AUTHORIZATION, format!("Bearer {}", f.tokens["client"]))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let bytes = to_bytes(res.into_body(), 1 << 20).await.unwrap();
    let mut archive = tar::Archive::new(bytes.as_ref());
    let mut members = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let mut data = String::new();
        std::io::Read::read_to_string(&mut entry, &mut data).unwrap();
        let link = entry.link_name().unwrap().map(|l| l.display().to_string());
        members.push((name, entry.header().entry_type(), data, link));
    }
    let names: Vec<&str> = members.iter().map(|m| m.0.as_str()).collect();
    assert_eq!(names, ["evil", "evil/d", "evil/d/ok", "evil/x", "evil/y", "evil/z"], "{members:?}");
    let x = &members[3];
    assert!(x.1 == tar::EntryType::Symlink && x.3.as_deref() == Some("/outside"), "{x:?}");
    assert_eq!(members[2].2, "honest\n");
    assert_eq!(members[4].2, "first\n", "the first of a duplicated path is kept");
    assert_eq!(members[5].2, "plain\n");
}

/// Send a JSON request as `token`; returns (status, body as JSON or null).
pub(super) async fn call(
    f: &Fixture,
    method: Method,
    uri: &str,
    token: &str,
    body: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {}", f.tokens[token]))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let res = send(&f.state, req).await;
    let status = res.status();
    let text = body_text(res).await;
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

/// Wait for task `id` to finish; returns it.
async fn finished_task(f: &Fixture, id: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, task) =
            call(f, Method::GET, &format!("/api/v1/tasks/{id}"), "operator", serde_json::json!({})).await;
        assert_eq!(status, StatusCode::OK, "{task}");
        if task["state"] != "running" {
            return task;
        }
        assert!(Instant::now() < deadline, "task {id} never finished: {task}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_notes_delete_and_maintenance_tasks() {
    let f = fixture();
    let snap = format!("/api/v1/snapshots/{}", f.snapshot);
    use serde_json::json;

    let (status, body) =
        call(&f, Method::PUT, &format!("{snap}/notes"), "operator", json!({"notes": "before the upgrade"}))
            .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["notes"], "before the upgrade");
    let (_, info) = call(&f, Method::GET, &snap, "auditor", json!({})).await;
    assert_eq!(info["notes"], "before the upgrade", "the notes are kept: {info}");
    let big = "x".repeat(70_000);
    let (status, _) =
        call(&f, Method::PUT, &format!("{snap}/notes"), "operator", json!({"notes": big})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "notes over 64 KiB are refused");

    // Verify runs as a task and records its result on the snapshot.
    let (status, started) = call(&f, Method::POST, &format!("{snap}/verify"), "operator", json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let task = finished_task(&f, started["task"].as_u64().unwrap()).await;
    assert_eq!((task["kind"].as_str(), task["state"].as_str()), (Some("verify"), Some("ok")), "{task}");
    assert!(
        task["log"].as_array().unwrap().iter().any(|l| l.as_str().unwrap().contains("chunks re-read")),
        "{task}"
    );
    let (_, info) = call(&f, Method::GET, &snap, "auditor", json!({})).await;
    assert_eq!(info["verify_state"], "ok", "{info}");

    // Prune: a dry run answers the decisions; nothing is removed. A newer
    // snapshot makes keep-last 1 remove the older one.
    let group = BackupGroup::new(Namespace::root(), "host", "a").unwrap();
    let src = f._dir.path().join("src");
    let newer = BackupOptions {
        group: group.clone(),
        sources: vec![src.clone()],
        tags: vec![],
        excludes: vec![],
        one_file_system: false,
        time: T0 + 3600,
    };
    let newer_id = f.engine.backup(&newer, &Progress::default()).unwrap().id.to_string();
    let (status, decisions) = call(
        &f,
        Method::POST,
        "/api/v1/groups/host/a/prune",
        "operator",
        json!({"keep": {"last": 1}, "dry_run": true}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{decisions}");
    let verdicts: Vec<(&str, bool)> = decisions
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["id"].as_str().unwrap(), d["keep"].as_bool().unwrap()))
        .collect();
    assert_eq!(verdicts, [(f.snapshot.as_str(), false), (newer_id.as_str(), true)], "{decisions}");
    assert_eq!(f.engine.snapshots(Some(&group)).unwrap().len(), 2, "a dry run removes nothing");
    let (status, _) =
        call(&f, Method::DELETE, &format!("/api/v1/snapshots/{newer_id}"), "operator", json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // A protected snapshot cannot be deleted; unprotected, it can.
    call(&f, Method::POST, &format!("{snap}/protect"), "operator", json!({})).await;
    let (status, body) = call(&f, Method::DELETE, &snap, "operator", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().unwrap().contains("protected"), "{body}");
    call(&f, Method::POST, &format!("{snap}/unprotect"), "operator", json!({})).await;
    let (status, _) = call(&f, Method::DELETE, &snap, "auditor", json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "auditors may not delete");
    let (status, _) = call(&f, Method::DELETE, &snap, "operator", json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&f, Method::GET, &snap, "operator", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // gc as a task frees the chunks of a deleted snapshot that no other
    // snapshot shares: here, one of data nobody else holds.
    let unique = f._dir.path().join("unique");
    std::fs::create_dir_all(&unique).unwrap();
    std::fs::write(unique.join("only-here"), b"data no other snapshot holds\n".repeat(1000)).unwrap();
    let lone = BackupGroup::new(Namespace::root(), "host", "lone").unwrap();
    let opts = BackupOptions { group: lone, sources: vec![unique], time: T0, ..newer };
    let lone_id = f.engine.backup(&opts, &Progress::default()).unwrap().id.to_string();
    let chunks_before = testkit::chunk_files(f.engine.datastore().root()).len();
    let (status, _) =
        call(&f, Method::DELETE, &format!("/api/v1/snapshots/{lone_id}"), "operator", json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, started) = call(&f, Method::POST, "/api/v1/gc", "operator", json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let task = finished_task(&f, started["task"].as_u64().unwrap()).await;
    assert_eq!((task["kind"].as_str(), task["state"].as_str()), (Some("gc"), Some("ok")), "{task}");
    let freed = chunks_before - testkit::chunk_files(f.engine.datastore().root()).len();
    assert!(freed >= 1, "gc freed nothing: {task}");
    let said = format!("gc: removed {freed} chunk");
    assert!(
        task["log"].as_array().unwrap().iter().any(|l| l.as_str().unwrap().contains(&said)),
        "the log says how many were removed ({said}): {task}"
    );
    assert_eq!(f.engine.snapshots(None).unwrap().len(), 1, "the namespaced snapshot stays");
}

/// POST a dashboard form with a session cookie; returns (status, page).
pub(super) async fn post_form(
    f: &Fixture,
    cookie: &str,
    uri: &str,
    fields: &[(&str, &str)],
) -> (StatusCode, String) {
    let req = Request::post(uri)
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(serde_urlencoded::to_string(fields).unwrap()))
        .unwrap();
    let res = send(&f.state, req).await;
    (res.status(), body_text(res).await)
}

/// GET a page or API route with a session cookie or (`token:NAME`) a token.
pub(super) async fn get_as(f: &Fixture, who: &str, uri: &str) -> (StatusCode, String) {
    let req = match who.strip_prefix("token:") {
        Some(token) => get(uri).header(header::AUTHORIZATION, format!("Bearer {}", f.tokens[token])),
        None => get(uri).header(header::COOKIE, who),
    };
    let res = send(&f.state, req.body(Body::empty()).unwrap()).await;
    (res.status(), body_text(res).await)
}

#[tokio::test]
async fn jobs_are_created_edited_and_deleted_with_forms() {
    let f = fixture();
    let (cookie, csrf) = login(&f, "admin", "admin-password").await;
    let src = f._dir.path().join("src").display().to_string();
    let (status, page) = post_form(
        &f,
        &cookie,
        "/jobs",
        &[
            ("csrf", &csrf),
            ("name", "nightly"),
            ("group", "host/a"),
            ("sources", &src),
            ("schedule", "0 3 * * *"),
            ("keep_daily", "7"),
            ("keep_weekly", "4"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Saved job nightly.") && page.contains("href=\"/jobs/nightly\""), "{page}");

    // Its page holds the form, filled in, keyed by the name.
    let (status, page) = get_as(&f, &cookie, "/jobs/nightly").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    for want in [
        "action=\"/jobs/nightly\"",
        "name=\"name\" value=\"nightly\" readonly",
        "name=\"schedule\" value=\"0 3 * * *\"",
        "name=\"keep_daily\" type=\"number\" min=\"0\" value=\"7\"",
        "action=\"/jobs/nightly/delete\"",
        "snapshots stay",
    ] {
        assert!(page.contains(want), "{want}: {page}");
    }

    // Edit: the path names the job, whatever the form says.
    let (status, page) = post_form(
        &f,
        &cookie,
        "/jobs/nightly",
        &[
            ("csrf", &csrf),
            ("name", "renamed"),
            ("group", "host/a"),
            ("sources", &src),
            ("schedule", "30 4 * * *"),
            ("tags", "daily offsite"),
            ("keep_daily", "9"),
            ("keep_weekly", ""),
            ("verify", "on"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Saved job nightly.") && page.contains("30 4 * * *"), "{page}");
    let (_, jobs) = get_as(&f, "token:operator", "/api/v1/jobs").await;
    let jobs: serde_json::Value = serde_json::from_str(&jobs).unwrap();
    assert_eq!(jobs.as_array().map(Vec::len), Some(1), "{jobs}");
    let job = &jobs[0];
    assert_eq!((job["name"].as_str(), job["schedule"].as_str()), (Some("nightly"), Some("30 4 * * *")));
    assert_eq!((job["keep"]["daily"].as_u64(), job["keep"]["weekly"].as_u64()), (Some(9), Some(0)), "{job}");
    assert_eq!(job["tags"], serde_json::json!(["daily", "offsite"]));
    assert_eq!(job["verify"], true);

    // Those who may only look see the settings, not the form.
    let (status, page) = get_as(&f, "token:auditor", "/jobs/nightly").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("keep-daily 9") && !page.contains("job-form") && !page.contains("/delete"),
        "{page}"
    );

    // Delete: the job goes, its group's snapshots stay.
    let (status, page) = post_form(&f, &cookie, "/jobs/nightly/delete", &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Deleted job nightly; its snapshots stay."), "{page}");
    let (_, jobs) = get_as(&f, "token:operator", "/api/v1/jobs").await;
    assert_eq!(jobs, "[]");
    assert_eq!(f.engine.snapshots(None).unwrap().len(), 2);
    assert_eq!(get_as(&f, &cookie, "/jobs/nightly").await.0, StatusCode::NOT_FOUND);
    let (status, _) = post_form(&f, &cookie, "/jobs/nightly", &[("csrf", &csrf), ("group", "host/a")]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an edit does not create a job");
}

/// An edit saves what its form shows: keep rules the API set beside named
/// intervals survive a save from the dashboard. A new interval job from the
/// form keeps by its tags' counts, whatever defaults its keep fields held.
#[tokio::test]
async fn job_forms_save_what_they_show() {
    let f = fixture();
    let (cookie, csrf) = login(&f, "admin", "admin-password").await;
    let src = f._dir.path().join("src").display().to_string();
    let job = serde_json::json!({
        "name": "tagged", "group": "host/a", "sources": [src],
        "intervals": "daily=1d:7 weekly=1w:4", "keep": {"last": 3},
    });
    // An admin: operators may name paths only under `[jobs] source_roots`.
    let (status, body) = call(&f, Method::POST, "/api/v1/jobs", "admin", job).await;
    assert!(status.is_success(), "{status}: {body}");
    let (_, page) = get_as(&f, &cookie, "/jobs/tagged").await;
    assert!(page.contains("name=\"keep_last\" type=\"number\" min=\"0\" value=\"3\""), "{page}");

    // The form as the browser sends it back, with the daily count changed.
    let mut fields = vec![("csrf", csrf.as_str()), ("group", "host/a"), ("sources", src.as_str())];
    fields.extend([("schedule", ""), ("intervals", "daily=1d:9 weekly=1w:4"), ("keep_last", "3")]);
    fields.extend(
        ["keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"].map(|k| (k, "0")),
    );
    let (status, page) = post_form(&f, &cookie, "/jobs/tagged", &fields).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let saved = f.engine.job("tagged").unwrap();
    assert_eq!(saved.keep.last, 3, "{saved:?}");
    assert_eq!(saved.intervals.iter().map(|i| i.keep).collect::<Vec<_>>(), [9, 4]);

    // Zeroed on the form, they are gone: the tags decide.
    let zeroed: Vec<_> =
        fields.iter().map(|&(k, v)| if k == "keep_last" { (k, "0") } else { (k, v) }).collect();
    assert_eq!(post_form(&f, &cookie, "/jobs/tagged", &zeroed).await.0, StatusCode::OK);
    assert!(f.engine.job("tagged").unwrap().keep.is_empty());

    // A new job from the form, its keep fields still at their defaults.
    let (_, page) = get_as(&f, &cookie, "/jobs").await;
    assert!(page.contains("name=\"keep_daily\" type=\"number\" min=\"0\" value=\"7\""), "{page}");
    let new = [
        ("csrf", csrf.as_str()),
        ("name", "fresh"),
        ("group", "host/b"),
        ("sources", src.as_str()),
        ("intervals", "daily=1d:5"),
        ("keep_daily", "7"),
        ("keep_weekly", "4"),
        ("keep_monthly", "6"),
    ];
    assert_eq!(post_form(&f, &cookie, "/jobs", &new).await.0, StatusCode::OK);
    assert!(f.engine.job("fresh").unwrap().keep.is_empty(), "the tags' counts decide");
}

/// A source handler's size limit goes through the API, is listed, and is
/// what the job's page shows: in the form for operators, as a fact for
/// auditors.
#[tokio::test]
async fn a_handler_size_limit_is_kept_and_shown() {
    let f = fixture();
    let job = |max: u64| {
        serde_json::json!({
            "name": "dump", "group": "app/db", "schedule": "0 3 * * *",
            "source": {"handler": "source-http", "allow_hosts": ["db:443"], "max_bytes": max},
        })
    };
    let (status, body) = call(&f, Method::POST, "/api/v1/jobs", "operator", job(0)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("max_bytes must be at least 1"), "{body}");
    let (status, body) = call(&f, Method::POST, "/api/v1/jobs", "operator", job(100 << 10)).await;
    assert!(status.is_success(), "{status}: {body}");
    assert_eq!(f.engine.job("dump").unwrap().source.unwrap().max_bytes, Some(100 << 10));
    let (_, listed) = call(&f, Method::GET, "/api/v1/jobs", "operator", serde_json::json!({})).await;
    assert_eq!(listed[0]["source"]["max_bytes"], 100 << 10, "{listed}");
    let (cookie, _) = login(&f, "admin", "admin-password").await;
    let (_, page) = get_as(&f, &cookie, "/jobs/dump").await;
    assert!(page.contains("name=\"max_size\" value=\"100K\""), "{page}");
    f.engine.set_password("audrey", "auditor-password", Role::Auditor, T0).unwrap();
    let (cookie, _) = login(&f, "audrey", "auditor-password").await;
    let (_, page) = get_as(&f, &cookie, "/jobs/dump").await;
    assert!(page.contains("Size limit") && page.contains("100.0 KiB"), "{page}");
    assert!(!page.contains("name=\"max_size\""), "auditors get no form: {page}");
}

#[tokio::test]
async fn job_forms_say_why_they_are_refused() {
    let f = fixture();
    let (cookie, csrf) = login(&f, "admin", "admin-password").await;
    let src = f._dir.path().join("src").display().to_string();
    let base = [("csrf", csrf.as_str()), ("name", "bad"), ("group", "host/a"), ("sources", src.as_str())];
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("scheduler", "nope")], "no policy named &#34;nope&#34; is stored"),
        (&[("schedule", "0 3 * * *"), ("retention", "gone")], "no policy named &#34;gone&#34; is stored"),
        (
            &[("schedule", "0 3 * * *"), ("scheduler_params", "every=6h")],
            "scheduler parameters need a scheduler policy",
        ),
        (&[("schedule", "0 3 * * *"), ("retention_params", "no equals sign")], "retention parameter"),
        (&[("schedule", "0 3 * * *"), ("intervals", "daily=1d:7")], "exactly one of"),
        (&[("schedule", "0 3 * * *"), ("allow_hosts", "db:443")], "are for a source handler"),
        (&[("schedule", "0 3 * * *"), ("max_size", "50G")], "are for a source handler"),
        (&[("schedule", "0 3 * * *"), ("max_size", "lots")], "expected a number of bytes"),
        (&[("schedule", "0 3 * * *"), ("max_size", "0")], "allows nothing"),
        (&[("schedule", "0 3 * * *"), ("keep_daily", "many")], "keep daily must be a whole number"),
        (&[("schedule", "not cron")], "not cron"),
    ];
    for (fields, why) in cases {
        let form: Vec<(&str, &str)> = base.iter().chain(fields.iter()).copied().collect();
        let (status, page) = post_form(&f, &cookie, "/jobs", &form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{fields:?}: {page}");
        let error = page.split("id=\"form-error\">").nth(1).unwrap_or_else(|| panic!("{fields:?}: {page}"));
        assert!(error.split('<').next().unwrap().contains(why), "{fields:?}: {page}");
        // The form is filled in again with what was sent.
        assert!(page.contains("name=\"name\" value=\"bad\""), "{page}");
    }
    assert!(f.engine.jobs().unwrap().is_empty());

    // A refused edit shows the job's page again; the job is unchanged.
    let ok =
        [("csrf", csrf.as_str()), ("group", "host/a"), ("sources", src.as_str()), ("schedule", "0 3 * * *")];
    let (status, _) = post_form(&f, &cookie, "/jobs", &[&ok[..], &[("name", "kept")][..]].concat()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, page) =
        post_form(&f, &cookie, "/jobs/kept", &[&ok[..], &[("retention", "gone")][..]].concat()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("<h2>Settings</h2>") && page.contains("gone (not stored)"), "{page}");
    assert_eq!(f.engine.job("kept").unwrap().retention, None);
}

#[tokio::test]
async fn the_policy_forms_are_for_admins_and_check_csrf() {
    let f = fixture();
    let (cookie, csrf) = login(&f, "admin", "admin-password").await;
    let (_, page) = get_as(&f, &cookie, "/policies").await;
    assert!(
        page.contains("enctype=\"multipart/form-data\"") && page.contains("id=\"policy-upload\""),
        "{page}"
    );
    let (_, page) = get_as(&f, "token:operator", "/policies").await;
    assert!(!page.contains("policy-upload"), "only admins see the upload form");

    let boundary = "cairn-test-boundary";
    let upload = |token: &str| {
        let mut body = String::new();
        for (name, value) in [("csrf", token), ("name", "x"), ("component", "not wasm")] {
            let file = if name == "component" { "; filename=\"x.wasm\"" } else { "" };
            body.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"{file}\r\n\r\n{value}\r\n"
            ));
        }
        body.push_str(&format!("--{boundary}--\r\n"));
        Request::post("/policies")
            .header(header::COOKIE, &cookie)
            .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
            .body(Body::from(body))
            .unwrap()
    };
    assert_eq!(send(&f.state, upload("forged")).await.status(), StatusCode::FORBIDDEN);
    let res = send(&f.state, upload(&csrf)).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let page = body_text(res).await;
    assert!(page.contains("not a WebAssembly component") && page.contains("Add a policy"), "{page}");

    let (status, page) = post_form(&f, &cookie, "/policies/nope/remove", &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("no policy named") && page.contains("<h1>Policies</h1>"), "{page}");
}
