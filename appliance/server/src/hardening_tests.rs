//! Tests of the server's defences against hostile callers: tenants that
//! date snapshots in the future, probe other groups' chunks, hoard
//! sessions or uploads, send indexes that lie about their chunks, or read
//! what the server keeps for itself; and floods of wrong passwords. Each
//! drives `app()` in-process with real tokens over the real routes.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use engine::target::SnapshotRead;
use engine::{ChunkId, FixedIndex, Manifest};
use model::{Namespace, SnapshotId};
use serde_json::{Value, json};

use super::limits::Limits;
use super::state::{AppState, now};
use super::tests::{Fixture, T0, body_text, call, fixture, get_as, login, send};
use engine::job_paths::PathRules;

/// The fixture's server with other limits and job roots.
fn configured(f: &mut Fixture, limits: Limits, roots: Vec<std::path::PathBuf>) {
    let rules = PathRules { roots, protected: vec![] };
    f.state =
        AppState::configured(f.engine.clone(), Some("aa:bb".into()), Duration::ZERO, 2, limits, rules, None);
}

/// `POST /api/v1/backup` as `token`; the answer.
async fn start(f: &Fixture, token: &str, group: &str, time: i64) -> (StatusCode, Value) {
    call(f, Method::POST, "/api/v1/backup", token, json!({"group": group, "time": time})).await
}

/// `POST /api/v1/backup` without a time: the server dates the snapshot.
async fn start_undated(f: &Fixture, token: &str, group: &str) -> (StatusCode, Value) {
    call(f, Method::POST, "/api/v1/backup", token, json!({"group": group})).await
}

/// PUT raw bytes as `token`; status and body text.
async fn put(f: &Fixture, token: &str, uri: &str, bytes: Vec<u8>) -> (StatusCode, String) {
    let req = Request::builder()
        .method(Method::PUT)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {}", f.tokens[token]))
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(Body::from(bytes))
        .unwrap();
    let res = send(&f.state, req).await;
    (res.status(), body_text(res).await)
}

/// A chunk blob the fixture's snapshot of host/a holds, with its plain length.
fn held_chunk(f: &Fixture) -> (ChunkId, Vec<u8>, u64) {
    let ds = f.engine.datastore();
    let id = SnapshotId::parse(&f.snapshot, &Namespace::root()).unwrap();
    let m = ds.read_manifest(&id).unwrap();
    let (chunk, len) = ds.chunk_lengths(&id, &m).unwrap().into_iter().max_by_key(|(_, n)| *n).unwrap();
    (chunk, ds.chunks().read_blob(&chunk).unwrap(), len)
}

/// A manifest for one image archive `disk.img` of `snapshot`, from the
/// fixture's own manifest (so every other field is as a client sends it).
fn image_manifest(f: &Fixture, snapshot: &str, index: Value) -> Value {
    let own = SnapshotId::parse(&f.snapshot, &Namespace::root()).unwrap();
    let mut m = serde_json::to_value(f.engine.datastore().read_manifest(&own).unwrap()).unwrap();
    let id = SnapshotId::parse(snapshot, &Namespace::root()).unwrap();
    m["ns"] = json!(id.group.ns.to_string());
    m["backup_type"] = json!(id.group.kind);
    m["backup_id"] = json!(id.group.id);
    m["time"] = json!(id.time_text());
    m["archives"] =
        json!([{"name": "disk.img", "kind": "image", "size": index["length"], "indexes": [index]}]);
    m
}

/// A whole remote backup of one image made of `blob` (plain length
/// `plain`, the index saying `claimed`): the index upload's status and text,
/// and the finished manifest if it got that far.
async fn back_up_image(
    f: &Fixture,
    token: &str,
    group: &str,
    (chunk, blob, plain): (ChunkId, Vec<u8>, u64),
    claimed: u64,
    time: i64,
) -> (StatusCode, String, Option<Manifest>) {
    let (status, session) = start(f, token, group, time).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    let s = session["session"].as_str().unwrap().to_owned();
    let (status, text) = put(f, token, &format!("/api/v1/backup/{s}/chunks/{}", chunk.to_hex()), blob).await;
    assert_eq!((status, text.as_str()), (StatusCode::NO_CONTENT, ""));
    let index = FixedIndex { size: claimed, chunk_size: 4 << 20, ids: vec![chunk] };
    assert!(plain <= 4 << 20);
    let (status, text) =
        put(f, token, &format!("/api/v1/backup/{s}/indexes/disk.img.fidx"), index.encode()).await;
    if status != StatusCode::OK {
        call(f, Method::DELETE, &format!("/api/v1/backup/{s}"), token, json!({})).await;
        return (status, text, None);
    }
    let index: Value = serde_json::from_str(&text).unwrap();
    let manifest = image_manifest(f, session["snapshot"].as_str().unwrap(), index);
    let (status, done) = call(f, Method::POST, &format!("/api/v1/backup/{s}/finish"), token, manifest).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    (status, text, Some(serde_json::from_value(done["manifest"].clone()).unwrap()))
}

#[tokio::test]
async fn remote_snapshot_times_are_checked_against_the_servers_clock() {
    let f = fixture();
    let year_2100 = model::time::parse_rfc3339("2100-01-01T00:00:00Z").unwrap();
    let refusals = [
        ("client", year_2100, "ahead of the server's clock"),
        ("client", now() - 3600, "behind the server's clock"),
        ("client", T0 - 60, "behind the server's clock"),
        ("client", i64::MAX, "not a valid snapshot time"),
        ("client", -1 << 40, "not a valid snapshot time"),
        ("operator", year_2100, "ahead of the server's clock"),
        ("admin", now() + 3600, "ahead of the server's clock"),
    ];
    for (token, time, why) in refusals {
        let (status, body) = start(&f, token, "host/a", time).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{token} at {time}: {body}");
        assert!(body["error"].as_str().unwrap().contains(why), "{token} at {time}: {body}");
    }
    // A refusal holds nothing: the group is free, and an operator may still
    // import a snapshot older than the group's newest.
    let (status, body) = start(&f, "operator", "host/a", T0 - 60).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let s = body["session"].as_str().unwrap();
    call(&f, Method::DELETE, &format!("/api/v1/backup/{s}"), "operator", json!({})).await;
    let (status, body) = start(&f, "client", "host/a", now()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Undated, the server picks its own time: a second after the newest
    // snapshot if that is later than now.
    let s = body["session"].as_str().unwrap();
    call(&f, Method::DELETE, &format!("/api/v1/backup/{s}"), "client", json!({})).await;
    let newest = model::time::parse_rfc3339("2026-12-04T10:00:00Z").unwrap().max(now() + 100);
    let src = tempfile::tempdir().unwrap();
    let opts = engine::BackupOptions {
        group: model::BackupGroup::new(Namespace::root(), "host", "a").unwrap(),
        sources: vec![src.path().to_owned()],
        tags: vec![],
        excludes: vec![],
        one_file_system: false,
        time: newest,
    };
    f.engine.backup(&opts, &engine::Progress::default()).unwrap();
    let (status, body) = start_undated(&f, "client", "host/a").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let expect = format!("host/a/{}", model::time::format_rfc3339(newest + 1));
    assert_eq!(body["snapshot"], json!(expect));
}

#[tokio::test]
async fn a_snapshot_from_the_future_never_makes_a_job_look_fresh() {
    let f = fixture();
    let group = model::BackupGroup::new(Namespace::root(), "host", "a").unwrap();
    let job = model::Job {
        sources: vec!["/nonexistent".into()],
        schedule: "0 3 * * *".into(),
        ..model::Job::new("nightly", group.clone(), T0)
    };
    f.engine.put_job(&job).unwrap();
    let statuses = |at| f.engine.job_statuses(at).unwrap().remove(0);
    let later = T0 + 10 * 86_400;
    assert_eq!(statuses(later).sla, model::Sla::Overdue);
    // A snapshot dated 2100, as a hostile client could once push it.
    let src = tempfile::tempdir().unwrap();
    let year_2100 = model::time::parse_rfc3339("2100-01-01T00:00:00Z").unwrap();
    let opts = engine::BackupOptions {
        group,
        sources: vec![src.path().to_owned()],
        tags: vec![],
        excludes: vec![],
        one_file_system: false,
        time: year_2100,
    };
    f.engine.backup(&opts, &engine::Progress::default()).unwrap();
    let st = statuses(later);
    assert_eq!((st.sla, st.newest_good), (model::Sla::Overdue, Some(T0)));
}

#[tokio::test]
async fn a_backup_client_learns_nothing_of_other_groups_chunks() {
    let f = fixture();
    let held = held_chunk(&f);
    let (blob_len, plain) = (held.1.len() as u64, held.2);
    // host/b's client uploads a chunk that only host/a holds: it is told it
    // stored it, at its uploaded size, and the manifest says the same.
    let (_, _, m) = back_up_image(&f, "client-other", "host/b", held.clone(), plain, now()).await;
    let m = m.unwrap();
    assert_eq!((m.stats.new_chunks, m.stats.stored), (1, blob_len));
    let id = SnapshotId::parse(&format!("host/b/{}", m.time), &Namespace::root()).unwrap();
    let stored = f.engine.datastore().read_manifest(&id).unwrap();
    assert_eq!((stored.stats.new_chunks, stored.stats.stored), (1, blob_len));
    // An operator gets the true figures: nothing new was stored.
    let (_, _, m) = back_up_image(&f, "operator", "host/c", held.clone(), plain, now()).await;
    assert_eq!(m.map(|m| (m.stats.new_chunks, m.stats.stored)), Some((0, 0)));
    // The answer to an upload is the same, byte for byte, for a chunk the
    // server holds and one it lacks (back_up_image checks 204 and "").
    let data: Vec<u8> = (0..70_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let (chunk, blob) = chunker::encode_blob(&data, 3);
    let (_, _, m) =
        back_up_image(&f, "client-other", "host/b", (chunk, blob.clone(), 70_000), 70_000, now() + 1).await;
    assert_eq!(m.map(|m| (m.stats.new_chunks, m.stats.stored)), Some((1, blob.len() as u64)));
}

#[tokio::test]
async fn an_index_must_give_each_chunk_its_real_length() {
    let f = fixture();
    let data = b"six b\n".to_vec();
    let (chunk, blob) = chunker::encode_blob(&data, 3);
    let (status, text, m) = back_up_image(&f, "client", "host/a", (chunk, blob.clone(), 6), 100, now()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("gives chunk") && text.contains("holds 6"), "{text}");
    assert!(m.is_none());
    let (status, text, m) = back_up_image(&f, "client", "host/a", (chunk, blob, 6), 6, now()).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    // A later backup naming the same chunk from the previous snapshot is
    // held to the length that snapshot gave it.
    let m = m.unwrap();
    let (status, session) = start(&f, "client", "host/a", now() + 1).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    assert_eq!(session["previous"]["snapshot"], json!(format!("host/a/{}", m.time)));
    let s = session["session"].as_str().unwrap();
    let lying = FixedIndex { size: 7, chunk_size: 4 << 20, ids: vec![chunk] };
    let (status, text) =
        put(&f, "client", &format!("/api/v1/backup/{s}/indexes/disk.img.fidx"), lying.encode()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("holds 6"), "{text}");
}

#[tokio::test]
async fn sessions_are_limited_per_caller_and_in_total() {
    let mut f = fixture();
    let limits = Limits {
        reader_sessions: 3,
        reader_sessions_per_caller: 2,
        backup_sessions_per_caller: 1,
        ..Limits::default()
    };
    configured(&mut f, limits, vec![]);
    let read = |token: &'static str| {
        let snapshot = f.snapshot.clone();
        let f = &f;
        async move { call(f, Method::POST, "/api/v1/reader", token, json!({"snapshot": snapshot})).await }
    };
    assert_eq!(read("client").await.0, StatusCode::OK);
    assert_eq!(read("client").await.0, StatusCode::OK);
    let (status, body) = read("client").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(body["error"].as_str().unwrap().contains("limit per token"), "{body}");
    // Another caller is not held up by the first one's sessions ...
    assert_eq!(read("admin").await.0, StatusCode::OK);
    // ... until the server's total is reached.
    let (status, body) = read("operator").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    // Backup sessions have their own budget (the one per caller is 1 here):
    // a backup opens its reader too, which the total no longer allows.
    let (status, body) = start(&f, "client-other", "host/b", now()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = start(&f, "client-other", "host/b", now()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let (status, body) = start(&f, "admin", "host/a", now()).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a backup with a previous snapshot needs a reader: {body}"
    );
    let (status, body) = start(&f, "admin", "host/new", now()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = start(&f, "admin", "host/new2", now()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_uploads_in_flight_are_limited_per_caller() {
    let mut f = fixture();
    configured(&mut f, Limits { uploads_per_caller: 1, ..Limits::default() }, vec![]);
    let (status, session) = start(&f, "client-other", "host/b", now()).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    let s = session["session"].as_str().unwrap().to_owned();
    let (chunk, blob) = chunker::encode_blob(b"some data", 3);
    let uri = format!("/api/v1/backup/{s}/chunks/{}", chunk.to_hex());
    // An upload whose body never ends holds its permit ...
    let stall = || {
        let state = f.state.clone();
        let req = Request::builder()
            .method(Method::PUT)
            .uri(&uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", f.tokens["client-other"]))
            .body(Body::from_stream(futures_util::stream::pending::<Result<Vec<u8>, std::io::Error>>()))
            .unwrap();
        tokio::spawn(async move { send(&state, req).await })
    };
    let mut hung = stall();
    // ... so the next one from the same token is refused once it holds it
    // (until then, each upload gets through; a stalled one that lost the
    // race for the permit is refused once the server has read its body
    // for 5 s, and is started again).
    let mut refused = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if hung.is_finished() {
            hung = stall();
        }
        let (status, text) = put(&f, "client-other", &uri, blob.clone()).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(text);
            break;
        }
        assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let text = refused.expect("a second upload in flight was never refused");
    assert!(text.contains("in flight"), "{text}");
    // Another token's uploads are not held up.
    let (status, other) = start(&f, "client", "host/a", now()).await;
    assert_eq!(status, StatusCode::OK, "{other}");
    let uri = format!("/api/v1/backup/{}/chunks/{}", other["session"].as_str().unwrap(), chunk.to_hex());
    assert_eq!(put(&f, "client", &uri, blob).await.0, StatusCode::NO_CONTENT);
    hung.abort();
}

#[tokio::test]
async fn a_multipart_body_is_read_for_its_csrf_field_only_where_a_route_takes_one() {
    let f = fixture();
    let (cookie, csrf) = login(&f, "admin", "admin-password").await;
    let boundary = "XyZ";
    let padding = "x".repeat(2 << 20);
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"pad\"\r\n\r\n{padding}\r\n--{boundary}--\r\n"
    );
    let req = |uri: &str| {
        Request::post(uri)
            .header(header::COOKIE, &cookie)
            .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
            .body(Body::from(body.clone()))
            .unwrap()
    };
    // A form route that takes URL-encoded forms: refused before any reading.
    let res = send(&f.state, req("/users")).await;
    let status = res.status();
    assert_eq!(status, StatusCode::FORBIDDEN, "{}", body_text(res).await);
    // The policy upload form takes multipart: its CSRF field is found (the
    // form then lacks its file, which is the handler's to say).
    let res = send(&f.state, req("/policies")).await;
    let status = res.status();
    let text = body_text(res).await;
    assert_ne!(status, StatusCode::FORBIDDEN, "{text}");
}

#[tokio::test]
async fn a_backup_client_sees_only_its_groups_in_the_status() {
    let f = fixture();
    let (status, text) = get_as(&f, "token:client", "/api/v1/status").await;
    assert_eq!(status, StatusCode::OK);
    let st: Value = serde_json::from_str(&text).unwrap();
    let root = f.engine.datastore().root().display().to_string();
    assert!(!text.contains(&root), "{text}");
    for hidden in ["datastore", "disk_total_bytes", "disk_free_bytes"] {
        assert!(st.get(hidden).is_none(), "{hidden}: {text}");
    }
    assert_eq!((st["snapshots"].as_u64(), st["groups"].as_u64()), (Some(1), Some(1)), "{text}");
    let (_, text) = get_as(&f, "token:admin", "/api/v1/status").await;
    let st: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(st["datastore"], json!(root));
    assert!(st["disk_total_bytes"].as_u64().unwrap() > 0);
    // The overview page does not show a client the disk either.
    let (_, page) = get_as(&f, "token:client", "/").await;
    assert!(page.contains("snapshot-count") && !page.contains("free of"), "{page}");
    let (_, page) = get_as(&f, "token:admin", "/").await;
    assert!(page.contains("free of"), "{page}");
}

#[tokio::test]
async fn failed_logins_back_off_even_for_the_right_password() {
    let f = fixture();
    let form = |password: &str| {
        Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("user=admin&password={password}&next=/")))
            .unwrap()
    };
    for _ in 0..super::logins::FREE_FAILURES {
        assert_eq!(send(&f.state, form("wrong")).await.status(), StatusCode::UNAUTHORIZED);
    }
    let res = send(&f.state, form("admin-password")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = res.headers()[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let text = body_text(res).await;
    assert!(text.contains("too many failed logins"), "{text}");
}

#[tokio::test]
async fn jobs_read_only_where_the_admin_allows_and_never_the_servers_own_data() {
    let mut f = fixture();
    let allowed = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let datastore = f.engine.datastore().root().to_owned();
    let job = |name: &str, path: &std::path::Path| json!({"name": name, "group": "host/a", "sources": [path.display().to_string()], "schedule": "0 3 * * *"});
    // No roots: an operator may name no path, an admin any but the server's.
    let (status, body) = call(&f, Method::POST, "/api/v1/jobs", "operator", job("j1", outside.path())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["error"].as_str().unwrap().contains("source_roots"), "{body}");
    let (status, body) = call(&f, Method::POST, "/api/v1/jobs", "admin", job("j1", outside.path())).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for bad in [datastore.join("server"), datastore.clone(), datastore.parent().unwrap().to_owned()] {
        let (status, body) = call(&f, Method::POST, "/api/v1/jobs", "admin", job("j2", &bad)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{bad:?}: {body}");
    }
    let grant = json!({"name": "j3", "group": "host/a", "schedule": "0 3 * * *",
        "source": {"handler": "source-http", "grant_dir": datastore.join("server").display().to_string()}});
    let (status, body) = call(&f, Method::POST, "/api/v1/jobs", "admin", grant).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // With a root, operators may name paths under it, and only there.
    configured(&mut f, Limits::default(), vec![allowed.path().to_owned()]);
    let (status, body) = call(&f, Method::POST, "/api/v1/jobs", "operator", job("j4", allowed.path())).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = call(&f, Method::POST, "/api/v1/jobs", "operator", job("j5", outside.path())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // A link under the root that leads to the datastore does not get around it.
    std::os::unix::fs::symlink(&datastore, allowed.path().join("ds")).unwrap();
    let (status, body) =
        call(&f, Method::POST, "/api/v1/jobs", "operator", job("j6", &allowed.path().join("ds/server")))
            .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let names: Vec<String> = f.engine.jobs().unwrap().into_iter().map(|j| j.name).collect();
    assert_eq!(names, ["j1", "j4"]);
}

#[tokio::test]
async fn verify_finds_an_index_that_lies_about_a_chunks_length() {
    let f = fixture();
    // A snapshot written past the server's checks (as an older server
    // accepted it): its index says 100 bytes for a chunk of 6.
    let group = model::BackupGroup::new(Namespace::root(), "host", "old").unwrap();
    let (chunk, blob) = chunker::encode_blob(b"six b\n", 3);
    let (writer, _) = f.engine.begin_remote_backup(&group, T0).unwrap();
    writer.store(&chunk, &blob).unwrap();
    let index = FixedIndex { size: 100, chunk_size: 4 << 20, ids: vec![chunk] }.encode();
    let r = writer.write_index("disk.img.fidx", &index, 100, 1).unwrap();
    let id = group.at(T0);
    let m = image_manifest(&f, &id.to_string(), serde_json::to_value(&r).unwrap());
    let m: Manifest = serde_json::from_value(m).unwrap();
    f.engine.commit_backup(writer, &m, T0).unwrap();
    let report = f.engine.verify(std::slice::from_ref(&id), T0, &engine::Progress::default()).unwrap();
    let verdict = &report.snapshots[0];
    assert!(!verdict.ok, "{verdict:?}");
    assert!(verdict.bad_chunks.is_empty(), "the chunk itself is sound: {verdict:?}");
    assert!(verdict.problems.iter().any(|p| p.contains("100 bytes, but it holds 6")), "{verdict:?}");
}

#[tokio::test]
async fn a_refused_upload_closes_its_connection() {
    let f = fixture();
    let upload = |token: &str| {
        Request::post("/api/v1/policies?name=x")
            .header(header::AUTHORIZATION, format!("Bearer {}", f.tokens[token]))
            .header(header::CONTENT_LENGTH, "3")
            .body(Body::from("abc"))
            .unwrap()
    };
    // Its body may be unread: the client must not send another request on
    // that connection (it would be cut off).
    let res = send(&f.state, upload("auditor")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(res.headers().get(header::CONNECTION).map(|v| v.to_str().unwrap()), Some("close"));
    // Answers to requests without a body keep the connection.
    let (status, _) = get_as(&f, "token:auditor", "/api/v1/users").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let res = send(&f.state, super::tests::get("/api/v1/users").body(Body::empty()).unwrap()).await;
    assert!(res.headers().get(header::CONNECTION).is_none());
}
