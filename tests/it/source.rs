//! Source handlers through the CLI: `cairn backup --source` with the
//! `source-http` example against a local HTTP server, restore through the
//! handler (an upload back to the server) and `restore --raw`, and what
//! happens without the grant or without the handler; the same through a
//! Cairn server, with the server's handler fetched and run on the client.

use crate::serve::{Server, client, pinned_client, token};
use crate::support::{Store, run, run_code, run_json, run_ok, u64_of};
use testkit::http::ExportServer;

fn export(len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8).collect()
}

#[test]
fn http_export_backs_up_and_restores_through_the_handler_or_raw() {
    let data = export(3_000_000);
    let server = ExportServer::start("/exports/app.dump", data.clone());
    let store = Store::new();
    let out = run_ok(store.cmd().args(["policy", "add"]).arg(policy_guests::example("source-http")));
    assert!(out.contains("added source policy source-http"), "{out}");
    let show = run_ok(store.cmd().args(["policy", "show", "source-http"]));
    assert!(
        show.contains("10000 ms CPU, 256 MiB memory"),
        "source handlers get their own default budget: {show}"
    );

    let url = format!("url=http://{}/exports/app.dump", server.authority());
    let allow = server.authority();
    let handler = ["--source", "source-http", "--param", &url, "--allow-host", &allow];
    let backup = |time: &str| {
        run_json(
            store
                .cmd()
                .arg("backup")
                .args(handler)
                .args(["--group", "app/db", "--time", time, "--tag", "daily", "--json"]),
        )
    };
    // A size limit below the export's size fails the backup: nothing is
    // kept, no work area is left.
    let r =
        run_code(store.cmd().arg("backup").args(handler).args(["--max-size", "2M", "--group", "app/db"]), 1);
    assert!(
        r.stderr.contains("size limit of 2.0 MiB") && r.stderr.contains("nothing was kept"),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read_dir(store.ds.join("writers")).map(|d| d.count()).unwrap_or(0), 0);
    assert!(!store.ds.join("snapshots/app").exists(), "no snapshot of the group");
    let first = backup("2026-11-30T02:00:00Z");
    let id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(first["files"], 1);
    assert_eq!(first["size"], data.len() as u64);
    // The same export again: its data chunks are all stored already; only
    // the small metadata chunk (the root's time is the snapshot's) is new.
    let second = backup("2026-12-01T02:00:00Z");
    assert!(second["new_chunks"].as_u64() <= Some(1) && second["stored"].as_u64() < Some(1024), "{second}");

    // The snapshot is an ordinary file archive named after the handler,
    // and records which handler made it.
    let ls = run_ok(store.cmd().args(["ls", &id, "source-http", "-l"]));
    assert!(ls.contains("app.dump") && ls.contains(&data.len().to_string()), "{ls}");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(store.ds.join("snapshots/app/db/2026-11-30T02:00:00Z/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["source"]["name"], "source-http", "{manifest}");
    let list = run_json(store.cmd().args(["policy", "list", "--json"]));
    assert_eq!(manifest["source"]["digest"], list[0]["digest"]);
    run_ok(store.cmd().args(["verify", &id]));

    // The manifest names the handler, and whoever wrote the snapshot wrote
    // the manifest: no job made this one, so the handler runs only once
    // the restore names it. A wrong digest is refused too; nothing runs.
    let confirm = format!("source-http@{}", list[0]["digest"].as_str().unwrap());
    let r = run_code(store.cmd().args(["restore", &id, "--param", &url, "--allow-host", &allow]), 1);
    assert!(
        r.stderr.contains("no job of this datastore made it")
            && r.stderr.contains(&format!("--handler {confirm}"))
            && r.stderr.contains("--raw"),
        "{}",
        r.stderr
    );
    let wrong = format!("source-http@{}", "0".repeat(64));
    let r = run_code(store.cmd().args(["restore", &id, "--handler", &wrong, "--param", &url]), 1);
    assert!(r.stderr.contains("does not match"), "{}", r.stderr);
    assert!(server.requests().iter().all(|r| r.method != "PUT"), "no handler ran");

    // Restore through the handler: the server receives the export back.
    let restored = run_ok(store.cmd().args([
        "restore",
        &id,
        "--handler",
        &confirm,
        "--param",
        &url,
        "--allow-host",
        &allow,
    ]));
    assert!(restored.contains("through the source handler source-http"), "{restored}");
    let put = server.requests().into_iter().find(|r| r.method == "PUT").expect("the handler uploaded");
    assert_eq!(put.path, "/exports/app.dump");
    assert!(put.body == data, "the upload is the export byte for byte ({} bytes)", put.body.len());

    // --raw: the items as plain files.
    let raw = store.path("raw");
    run_ok(store.cmd().args(["restore", "--raw", &id]).arg(&raw));
    assert!(std::fs::read(raw.join("app.dump")).unwrap() == data);

    // A TARGET without --raw is refused, not silently ignored.
    let r = run_code(store.cmd().args(["restore", &id]).arg(store.path("nowhere")), 1);
    assert!(r.stderr.contains("--raw") && !store.path("nowhere").exists(), "{}", r.stderr);

    // Without the handler, a restore says what to do; --raw still works.
    run_ok(store.cmd().args(["policy", "rm", "source-http"]));
    let r = run_code(store.cmd().args(["restore", &id, "--handler", &confirm]), 1);
    assert!(r.stderr.contains("not stored here") && r.stderr.contains("--raw"), "{}", r.stderr);
    run_ok(
        store.cmd().args(["restore", "--raw", "--path", "source-http/app.dump", &id]).arg(store.path("one")),
    );
    assert!(std::fs::read(store.path("one/app.dump")).unwrap() == data);
}

#[test]
fn a_handler_without_its_grant_makes_no_snapshot() {
    let server = ExportServer::start("/app.dump", export(1000));
    let store = Store::new();
    run_ok(store.cmd().args(["policy", "add"]).arg(policy_guests::example("source-http")));
    let url = format!("url=http://{}/app.dump", server.authority());
    let r = run_code(
        store.cmd().args(["backup", "--source", "source-http", "--param", &url, "--group", "app/db"]),
        1,
    );
    assert!(r.stderr.contains("does not allow this host"), "{}", r.stderr);
    assert!(server.requests().is_empty());
    let snaps = run_json(store.cmd().args(["snapshots", "--json"]));
    assert_eq!(snaps.as_array().map(Vec::len), Some(0), "{snaps}");
    // A handler that yields a path climbing out of the archive fails the
    // backup; nothing is visible and the work area is gone.
    run_ok(store.cmd().args(["policy", "add"]).arg(policy_guests::test_guest("hostile-source")));
    let r = run_code(
        store.cmd().args([
            "backup",
            "--source",
            "hostile-source",
            "--param",
            "mode=bad-path",
            "--group",
            "app/db",
        ]),
        1,
    );
    assert!(r.stderr.contains("bad path") && r.stderr.contains("../../etc/cron.d/evil"), "{}", r.stderr);
    let snaps = run_json(store.cmd().args(["snapshots", "--json"]));
    assert_eq!(snaps.as_array().map(Vec::len), Some(0), "{snaps}");
    let writers = std::fs::read_dir(store.ds.join("writers")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(writers, 0, "no backup work area is left behind");
    // Handler flags without a handler are refused.
    let r = run_code(store.cmd().args(["backup", "/tmp", "--group", "a/b", "--allow-host", "x:1"]), 1);
    assert!(r.stderr.contains("--source NAME"), "{}", r.stderr);
    let r = run_code(
        store.cmd().args(["backup", "--source", "hostile-source", "--max-size", "0", "--group", "a/b"]),
        2,
    );
    assert!(r.stderr.contains("allows nothing"), "{}", r.stderr);
}

#[test]
fn a_client_runs_the_servers_handler_and_uploads_what_it_reads() {
    let data = export(3_000_000);
    let http = ExportServer::start("/exports/app.dump", data.clone());
    let store = Store::new();
    run_ok(store.cmd().args(["policy", "add"]).arg(policy_guests::example("source-http")));
    run_ok(store.cmd().args(["policy", "add", "--name", "gfs"]).arg(policy_guests::example("retention-gfs")));
    let token = token(&store, "app", "backup-client", Some("app/db"));
    let server = Server::start(&store);
    let api = pinned_client(&server.fingerprint);
    let url = format!("url=http://{}/exports/app.dump", http.authority());
    let allow = http.authority();

    // The client lists the server's source handlers (not its other policies).
    let listed: serde_json::Value =
        api.get(server.url("/api/v1/sources")).bearer_auth(&token).send().unwrap().json().unwrap();
    let listed = listed.as_array().unwrap().clone();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["name"], "source-http");
    let res = api.get(server.url("/api/v1/sources/gfs/component")).bearer_auth(&token).send().unwrap();
    assert_eq!(res.status(), 404, "a retention policy is not handed out as a source handler");

    let ok_json = |r: crate::support::Run| {
        assert_eq!(r.code, 0, "{}", r.stderr);
        crate::support::parse_json(&r)
    };
    let backup = |allow: &str, extra: &[&str]| {
        let args = ["--source", "source-http", "--param", &url, "--allow-host", allow, "--group", "app/db"];
        run(client(&store, &server, &token, "backup").args(args).args(extra))
    };
    // A backup client's snapshots are dated by the server.
    let json = ["--json"];
    let first = ok_json(backup(&allow, &json));
    let id = first["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("app/db/20"), "{id}");
    assert_eq!(
        (first["files"].as_u64(), first["size"].as_u64()),
        (Some(1), Some(data.len() as u64)),
        "{first}"
    );
    assert!(!store.path("client-ds").exists(), "a remote backup makes no local datastore");
    assert_eq!(
        http.requests().iter().filter(|r| r.method == "GET").count(),
        1,
        "the handler read the export once"
    );

    // The server holds the export: download it through the API.
    let path = format!("/api/v1/snapshots/{id}/download?path=source-http/app.dump");
    let got = api.get(server.url(&path)).bearer_auth(&token).send().unwrap().bytes().unwrap();
    assert!(got.as_ref() == data.as_slice(), "the server's copy is the export ({} bytes)", got.len());

    // Unchanged export, second backup: its data chunks are named, not sent.
    assert!(u64_of(&first, "stored") > 100_000 && u64_of(&first, "new_chunks") >= 1, "{first}");
    let second = ok_json(backup(&allow, &json));
    assert!(u64_of(&second, "new_chunks") <= 1 && u64_of(&second, "stored") < 1024, "{second}");

    let snapshots_on_server = || {
        let snaps: serde_json::Value = api
            .get(server.url("/api/v1/snapshots?group=app/db"))
            .bearer_auth(&token)
            .send()
            .unwrap()
            .json()
            .unwrap();
        snaps.as_array().map_or(0, Vec::len)
    };

    // The client's grants bound the handler: without --allow-host for the
    // export's host it cannot reach it, and nothing appears on the server.
    let refused = backup("127.0.0.1:9", &json);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(refused.stderr.contains("does not allow this host"), "{}", refused.stderr);
    assert_eq!(snapshots_on_server(), 2);

    // Over the size limit: the backup fails and nothing appears either.
    let r = backup(&allow, &["--max-size", "1M"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("size limit of 1.0 MiB (1048576 bytes)"), "{}", r.stderr);
    assert_eq!(snapshots_on_server(), 2);

    // A name the server has no source handler under.
    let r =
        run_code(client(&store, &server, &token, "backup").args(["--source", "gfs", "--group", "app/db"]), 1);
    assert!(r.stderr.contains("no source handler named \"gfs\""), "{}", r.stderr);

    // Restore through the server: the handler, fetched by the digest the
    // snapshot records, uploads the export back.
    // The client cannot see the server's job records: it needs --handler.
    let digest = listed[0]["digest"].as_str().unwrap();
    let r = run_code(client(&store, &server, &token, "restore").args([&id, "--param", &url]), 1);
    assert!(r.stderr.contains(&format!("--handler source-http@{digest}")), "{}", r.stderr);
    assert!(http.requests().iter().all(|r| r.method != "PUT"), "no handler ran");
    let restored = run_ok(client(&store, &server, &token, "restore").args([
        &id,
        "--handler",
        &format!("source-http@{digest}"),
        "--param",
        &url,
        "--allow-host",
        &allow,
    ]));
    assert!(restored.contains("through the source handler source-http"), "{restored}");
    let put = http.requests().into_iter().find(|r| r.method == "PUT").expect("the handler uploaded");
    assert!(put.body == data, "the upload is the export byte for byte ({} bytes)", put.body.len());

    // --raw: the items as plain files; a TARGET without --raw is refused.
    let raw = store.path("raw");
    run_ok(client(&store, &server, &token, "restore").args(["--raw", &id]).arg(&raw));
    assert!(std::fs::read(raw.join("app.dump")).unwrap() == data);
    let r = run_code(client(&store, &server, &token, "restore").arg(&id).arg(store.path("nowhere")), 1);
    assert!(r.stderr.contains("--raw") && !store.path("nowhere").exists(), "{}", r.stderr);
    assert!(!store.path("client-ds").exists());
}

/// A host granted by name that resolves to a loopback address is refused
/// with a warning that says so and what to grant instead; the same server
/// granted by its address is reached.
#[test]
fn a_host_granted_by_name_that_resolves_to_loopback_is_refused() {
    let data = export(10_000);
    let server = ExportServer::start("/exports/app.dump", data);
    let store = Store::new();
    run_ok(store.cmd().args(["policy", "add"]).arg(policy_guests::example("source-http")));
    let port = server.authority().rsplit(':').next().unwrap().to_owned();
    let backup = |authority: &str| {
        let url = format!("url=http://{authority}/exports/app.dump");
        let args =
            ["--source", "source-http", "--param", &url, "--allow-host", authority, "--group", "app/db"];
        run(store.cmd().arg("backup").args(args))
    };
    let by_name = format!("localhost:{port}");
    let r = backup(&by_name);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("refused to connect to {by_name}"))
            && r.stderr.contains("a loopback address"),
        "{}",
        r.stderr
    );
    assert!(server.requests().is_empty(), "no request reached the server");
    let r = backup(&server.authority());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(server.requests().len(), 1);
}

/// A source handler's snapshot written to a volume and scanned into a new
/// datastore comes back saying which handler made it (name, version,
/// digest), with the handler's files, so a restore through the handler
/// works there too.
#[test]
fn a_handler_snapshot_scans_back_with_its_handler() {
    let data = export(1_500_000);
    let server = ExportServer::start("/exports/app.dump", data.clone());
    let store = Store::new();
    run_ok(store.cmd().args(["policy", "add"]).arg(policy_guests::example("source-http")));
    let url = format!("url=http://{}/exports/app.dump", server.authority());
    let allow = server.authority();
    let made = run_json(
        store
            .cmd()
            .args(["backup", "--source", "source-http", "--param", &url, "--allow-host", &allow])
            .args(["--group", "app/db", "--time", "2026-11-30T02:00:00Z", "--json"]),
    );
    let id = made["id"].as_str().unwrap().to_owned();
    let vol = store.path("Vol1");
    run_ok(store.cmd().args(["volume", "write", &id, "--to"]).arg(&vol));
    let manifest = |ds: &std::path::Path| -> serde_json::Value {
        serde_json::from_slice(
            &std::fs::read(ds.join("snapshots/app/db/2026-11-30T02:00:00Z/manifest.json")).unwrap(),
        )
        .unwrap()
    };
    let original = manifest(&store.ds);
    assert_eq!(original["source"]["name"], "source-http", "{original}");

    let fresh = Store::new();
    run_ok(fresh.cmd().args(["volume", "scan"]).arg(&vol));
    let scanned = manifest(&fresh.ds);
    assert_eq!(scanned["source"], original["source"], "{scanned}");
    run_ok(fresh.cmd().args(["policy", "add"]).arg(policy_guests::example("source-http")));
    let confirm = format!("source-http@{}", original["source"]["digest"].as_str().unwrap());
    let restored = run_ok(fresh.cmd().args([
        "restore",
        &id,
        "--handler",
        &confirm,
        "--param",
        &url,
        "--allow-host",
        &allow,
    ]));
    assert!(restored.contains("through the source handler source-http"), "{restored}");
    let put = server.requests().into_iter().find(|r| r.method == "PUT").expect("the handler uploaded");
    assert!(put.body == data, "the upload is the export byte for byte");
}
