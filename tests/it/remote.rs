//! Remote backups: `cairn backup --server` and `cairn restore --server`
//! against the real `cairn serve` over HTTPS with a pinned fingerprint, and
//! the protocol's guarantees checked on the wire: chunks checked on
//! arrival, no probing for chunks outside the group's previous snapshot,
//! nothing visible before `finish`, abandoned sessions aborted and their
//! chunks collectable.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use testkit::{build_tricky_tree, write_random_tree};

use crate::serve::{Server, client, pinned_client, token};
use crate::support::{
    Store, assert_same_tree, cairn, parse_json, run, run_code, run_json, u64_of, until_logged,
};

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// `cmd ... --json` with the given exit code, as JSON.
fn json_of(cmd: &mut Command) -> Value {
    parse_json(&run_code(cmd.arg("--json"), 0))
}

#[test]
fn remote_backup_and_restore_over_https_with_a_pinned_fingerprint() {
    if !testkit::needs(testkit::Need::Root) {
        return;
    }
    let store = Store::new();
    let src = store.path("src");
    write_random_tree(&src.join("data"), 60, 12 << 20, 41);
    build_tricky_tree(&src.join("tricky"));
    let server = Server::start(&store);
    let web = token(&store, "web01", "backup-client", Some("host/web01"));

    // First backup: everything is uploaded and the snapshot is on the server.
    // No --time: the server dates the snapshot by its own clock.
    let before = model::time::format_rfc3339(now_secs() - 1);
    let first = json_of(client(&store, &server, &web, "backup").arg(&src).args(["--group", "host/web01"]));
    let id1 = first["id"].as_str().unwrap().to_owned();
    let time1 = id1.strip_prefix("host/web01/").unwrap();
    assert!(time1 >= before.as_str(), "{id1} is dated by the server's clock (after {before})");
    assert!(u64_of(&first, "new_chunks") >= 12, "{first}");
    assert!(!store.path("client-ds").exists(), "a remote backup makes no local datastore");
    let on_server = store.snapshot(&id1);
    assert_eq!(on_server["files"], first["files"], "{on_server}");

    // Second backup after changing one small file: the chunks of the
    // previous snapshot are named, not sent; the server counts what it got.
    std::fs::write(src.join("data/changed.txt"), b"one new file\n").unwrap();
    let second = json_of(client(&store, &server, &web, "backup").arg(&src).args(["--group", "host/web01"]));
    let id2 = second["id"].as_str().unwrap().to_owned();
    assert!(id2 > id1, "a second backup, even within the same second, comes after the first: {id2}");
    // A backup client may not date a snapshot in the past (or the future).
    let r = run(client(&store, &server, &web, "backup").arg(&src).args([
        "--group",
        "host/web01",
        "--time",
        "2026-12-01T02:00:00Z",
    ]));
    assert!(r.code != 0 && r.stderr.contains("behind the server's clock"), "{r:?}");
    assert!(u64_of(&second, "new_chunks") <= 3, "only the changed stream's chunks travel: {second}");
    assert!(u64_of(&second, "stored") < 1 << 20, "{second}");
    assert!(u64_of(&second, "reused_chunks") >= 10, "{second}");
    run_code(store.cmd().args(["verify", &id2]), 0);

    // Restore over the network: what a client wrote is not trusted with
    // device nodes or setuid bits by default, and the summary says so.
    let plain = store.path("restored-plain");
    let r = run(client(&store, &server, &web, "restore").args([&id2]).arg(&plain));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("2 device nodes skipped (--keep-devices to restore them)")
            && r.stdout.contains("1 setuid/setgid bit cleared (--keep-setuid to keep them)"),
        "{}",
        r.stdout
    );
    let tricky = plain.join("tricky");
    for dev in ["special/null-like", "special/loop200"] {
        assert!(std::fs::symlink_metadata(tricky.join(dev)).is_err(), "{dev} was created");
    }
    assert!(tricky.join("special/fifo").exists(), "a FIFO is no device: still restored");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(tricky.join("modes/setuid")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o7777, 0o755, "setuid bit cleared, the rest kept");
    // Asked for: byte for byte, with owners, modes, devices, links.
    let out = store.path("restored");
    let r = run(client(&store, &server, &web, "restore")
        .args([&id2])
        .arg(&out)
        .args(["--keep-devices", "--keep-setuid"]));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stdout.contains("skipped") && !r.stdout.contains("cleared"), "{}", r.stdout);
    assert_same_tree(&src, &out);
    let listed = run_json(client(&store, &server, &web, "ls").args([&id2, "src/data", "--json"]));
    assert!(listed.as_array().unwrap().iter().any(|e| e["path"] == "src/data/changed.txt"), "{listed}");

    // A wrong pin fails before anything is sent; nothing new on the server.
    let before = store.snapshots().len();
    let mut wrong = cairn(&store.path("client-ds"));
    let fake = format!("{}ab", "ab:".repeat(31));
    wrong.arg("backup").args(["--server", &server.url(""), "--token", &web, "--fingerprint", &fake]);
    let r = run(wrong.arg(&src).args(["--group", "host/web01"]));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("fingerprint"), "{r:?}");
    // A token of another group is refused; so is a read of that group.
    let r = run(client(&store, &server, &web, "backup").arg(&src).args(["--group", "host/db01"]));
    assert!(r.code != 0 && r.stderr.contains("403") && r.stderr.contains("host/db01"), "{r:?}");
    let other = token(&store, "db01", "backup-client", Some("host/db01"));
    let r = run(client(&store, &server, &other, "restore").args([&id2]).arg(store.path("nope")));
    assert!(r.code != 0 && r.stderr.contains("403"), "{r:?}");
    assert!(!store.path("nope").exists());
    assert_eq!(store.snapshots().len(), before);
    let (status, _) = server.stop();
    assert!(status.success());
}

#[test]
fn unfinished_remote_backups_leave_nothing_and_their_chunks_are_collected() {
    let store = Store::new();
    let server = Server::start(&store);
    let http = pinned_client(&server.fingerprint);
    let web = token(&store, "web01", "backup-client", Some("host/web01"));
    let db = token(&store, "db01", "backup-client", Some("host/db01"));
    let api = |p: &str| server.url(&format!("/api/v1{p}"));
    let start = json!({"group": "host/web01"});

    // Another tenant's data is on the server first: its chunks are what
    // web01 must not be able to probe for.
    let db_src = store.path("db-src");
    testkit::write_random_tree(&db_src, 4, 1 << 20, 77);
    json_of(client(&store, &server, &db, "backup").arg(&db_src).args(["--group", "host/db01"]));
    let db_chunk = testkit::chunk_files(&store.ds).into_iter().next().expect("db01 stored chunks");
    let db_id = db_chunk.file_name().unwrap().to_str().unwrap().to_owned();
    let db_blob = std::fs::read(&db_chunk).unwrap();
    let web_snapshots = || {
        store.snapshots().into_iter().filter(|s| s["id"].as_str().unwrap().starts_with("host/web01/")).count()
    };

    let res = http.post(api("/backup")).bearer_auth(&web).json(&start).send().unwrap();
    assert_eq!(res.status(), 200);
    let session: Value = res.json().unwrap();
    let sid = session["session"].as_str().unwrap().to_owned();
    assert!(session["previous"].is_null(), "a new group has no previous snapshot: {session}");

    // A chunk is checked against its id on arrival.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    let (id, blob) = chunker::blob::encode_blob(&data, 3);
    let put = |chunk: &str, body: Vec<u8>, token: &str| {
        http.put(api(&format!("/backup/{sid}/chunks/{chunk}"))).bearer_auth(token).body(body).send().unwrap()
    };
    assert_eq!(put(&id.to_string(), blob.clone(), &web).status(), 204);
    let (other_id, _) = chunker::blob::encode_blob(b"something else", 3);
    let res = put(&other_id.to_string(), blob.clone(), &web);
    assert_eq!(res.status(), 400);
    assert!(res.text().unwrap().contains("rejected"));
    // Another caller cannot use the session.
    assert_eq!(put(&id.to_string(), blob, &db).status(), 404);

    // An index may only name chunks uploaded here or in the group's
    // previous snapshot: no way to probe for chunks of other groups, even
    // one the server really holds.
    for chunk in [other_id, engine::ChunkId::from_hex(&db_id).unwrap()] {
        let didx = engine::DynamicIndex { entries: vec![(14, chunk)] }.encode();
        let res = http
            .put(api(&format!("/backup/{sid}/indexes/x.didx")))
            .bearer_auth(&web)
            .body(didx)
            .send()
            .unwrap();
        assert_eq!(res.status(), 400);
        let text = res.text().unwrap();
        assert!(text.contains("neither uploaded"), "{chunk}: {text}");
    }
    // Uploading a chunk the server holds (db01's) is answered exactly as
    // one it lacks.
    let answer = |res: reqwest::blocking::Response| {
        let content_type = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
        (res.status(), content_type, res.bytes().unwrap())
    };
    let (fresh_id, fresh_blob) = chunker::blob::encode_blob(b"a chunk nobody has stored yet", 3);
    let held = answer(put(&db_id, db_blob, &web));
    let lacked = answer(put(&fresh_id.to_string(), fresh_blob, &web));
    assert_eq!(held, lacked);
    assert_eq!(held.0, 204);

    // While the session is open the group is busy and nothing is visible.
    let res = http.post(api("/backup")).bearer_auth(&web).json(&start).send().unwrap();
    assert_eq!(res.status(), 409, "{:?}", res.text());
    let listed: Value = http.get(api("/snapshots")).bearer_auth(&web).send().unwrap().json().unwrap();
    assert_eq!(listed, json!([]));
    assert_eq!(web_snapshots(), 0);

    // Stopping the server aborts the session: still nothing visible.
    let (status, _) = server.stop();
    assert!(status.success());
    assert_eq!(web_snapshots(), 0);
    assert!(no_writers_left(&store.ds), "aborted sessions leave no journal or work area");

    // The client goes away: on a server that aborts a session after 2 s of
    // silence, the session is aborted and the group free again. (Only
    // here: under load one upload's fsync could take that long.)
    let config = store.path("cairn.toml");
    std::fs::write(&config, "session_idle = 2\n").unwrap();
    let server = Server::start_with(&store, &["--config", config.to_str().unwrap()]);
    let http = pinned_client(&server.fingerprint);
    let api = |p: &str| server.url(&format!("/api/v1{p}"));
    let res = http.post(api("/backup")).bearer_auth(&web).json(&start).send().unwrap();
    assert_eq!(res.status(), 200);
    let session: Value = res.json().unwrap();
    let sid = session["session"].as_str().unwrap().to_owned();
    until_logged(&store.path("serve.stderr"), "backup session idle too long: aborted");
    let res = http
        .put(api(&format!("/backup/{sid}/chunks/{id}")))
        .bearer_auth(&web)
        .body(vec![1, 2, 3])
        .send()
        .unwrap();
    assert_eq!(res.status(), 404, "the expired session is gone");
    let res = http.post(api("/backup")).bearer_auth(&web).json(&start).send().unwrap();
    assert_eq!(res.status(), 200, "the group is free again");
    let s: Value = res.json().unwrap();
    let gone = http
        .delete(api(&format!("/backup/{}", s["session"].as_str().unwrap())))
        .bearer_auth(&web)
        .send()
        .unwrap();
    assert_eq!(gone.status(), 204);
    assert_eq!(web_snapshots(), 0);
    assert!(no_writers_left(&store.ds), "aborted sessions leave no journal or work area");
    // The uploaded chunk belongs to no snapshot: gc removes it.
    let gc = run_json(store.cmd().args(["gc", "--json"]));
    assert!(u64_of(&gc, "removed_chunks") >= 1, "{gc}");
    let (status, _) = server.stop();
    assert!(status.success());
}

fn no_writers_left(ds: &Path) -> bool {
    std::fs::read_dir(ds.join("writers")).map(|d| d.count() == 0).unwrap_or(true)
}

/// `cairn serve --insecure-http` on loopback (for development) and a
/// client with an `http://` URL: a backup and a restore work, no pin asked.
#[test]
fn a_loopback_server_over_plain_http_takes_backups_and_restores() {
    use std::io::{BufRead, BufReader};
    let store = Store::new();
    let src = store.path("src");
    write_random_tree(&src, 12, 2 << 20, 7);
    let web = token(&store, "web01", "backup-client", Some("host/web01"));
    let mut child = store
        .cmd()
        .args(["serve", "--insecure-http", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(store.log("serve-http.stderr"))
        .spawn()
        .expect("start cairn serve");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.split(" on http://").nth(1).map(|a| format!("http://{}", a.trim())))
        .expect("cairn serve printed its address");
    std::thread::spawn(move || lines.for_each(drop));
    let remote = |command: &str| {
        let mut cmd = cairn(&store.path("client-ds"));
        cmd.arg(command).args(["--server", &base, "--token", &web]);
        cmd
    };
    let done = json_of(remote("backup").arg(&src).args(["--group", "host/web01"]));
    let id = done["id"].as_str().unwrap().to_owned();
    let out = store.path("restored");
    let r = run(remote("restore").arg(&id).arg(&out));
    assert_eq!(r.code, 0, "{r:?}");
    assert_same_tree(&src, &out);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::SIGTERM).unwrap();
    assert!(child.wait().unwrap().success());
}

/// A server that lets a caller have one chunk upload in flight: the
/// client learns the limit when it opens its session and keeps to it, and
/// when two of the caller's backups run at once and share the permit, the
/// one answered 429 waits and tries again. Both snapshots are whole.
#[test]
fn clients_keep_to_the_servers_upload_limit_and_retry_when_busy() {
    let store = Store::new();
    let config = store.path("cairn.toml");
    std::fs::write(&config, "[limits]\nuploads_per_caller = 1\n").unwrap();
    let server = Server::start_with(&store, &["--config", config.to_str().unwrap()]);
    let op = token(&store, "ops", "operator", None);
    let (a, b) = (store.path("a"), store.path("b"));
    write_random_tree(&a, 24, 48 << 20, 31);
    write_random_tree(&b, 24, 48 << 20, 32);

    let one = json_of(client(&store, &server, &op, "backup").arg(&a).args(["--group", "host/a"]));
    assert!(u64_of(&one, "new_chunks") > 8, "too few chunks to overlap: {one}");

    let start = |src: &Path, group: &str| {
        client(&store, &server, &op, "backup")
            .arg("-v")
            .arg(src)
            .args(["--group", group, "--json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start a backup")
    };
    let (first, second) = (start(&a, "host/a2"), start(&b, "host/b"));
    let mut retried = 0;
    let mut ids = Vec::new();
    for child in [first, second] {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            let log = std::fs::read_to_string(store.path("serve.stderr")).unwrap_or_default();
            panic!("{stderr}\nthe server's log:\n{log}");
        }
        retried += stderr.matches("(429); trying again").count();
        let done: Value = serde_json::from_slice(&out.stdout).unwrap();
        ids.push(done["id"].as_str().unwrap().to_owned());
    }
    assert!(retried > 0, "the two backups never met the shared limit");
    for (id, src) in [(&ids[0], &a), (&ids[1], &b), (&one["id"].as_str().unwrap().to_owned(), &a)] {
        let out = store.path(&format!("out-{}", id.replace('/', "_")));
        assert_eq!(run(client(&store, &server, &op, "restore").arg(id).arg(&out)).code, 0);
        assert_same_tree(src, &out);
    }
}
