//! Source handlers through the CLI: `cairn backup --source` with the
//! `source-http` example against a local HTTP server, restore through the
//! handler (an upload back to the server) and `restore --raw`, and what
//! happens without the grant or without the handler.

use crate::support::{Store, run_code, run_json, run_ok};
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
    let backup = |time: &str| {
        run_json(store.cmd().args([
            "backup",
            "--source",
            "source-http",
            "--param",
            &url,
            "--allow-host",
            &allow,
            "--group",
            "app/db",
            "--time",
            time,
            "--tag",
            "daily",
            "--json",
        ]))
    };
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

    // Restore through the handler: the server receives the export back.
    let restored = run_ok(store.cmd().args(["restore", &id, "--param", &url, "--allow-host", &allow]));
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
    let r = run_code(store.cmd().args(["restore", &id]), 1);
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
}
