//! Jobs beyond cron: backy's named intervals that the server runs by
//! itself (with their tags), and a job whose source is a handler, whose
//! schedule is a scheduler policy and whose retention is a retention policy.

use std::time::Duration;

use serde_json::{Value, json};
use testkit::http::ExportServer;

use crate::serve::{Server, pinned_client};
use crate::support::{Store, run_code, run_json, run_ok};

#[test]
fn an_interval_job_runs_by_itself_with_every_due_tag() {
    let store = Store::new();
    let src = store.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("motd"), b"tagged\n").unwrap();
    let server = Server::start_with(&store, &["--config", &crate::serve::roots_config(&store, &src)]);
    let http = pinned_client(&server.fingerprint);
    let token = run_ok(store.cmd().args(["token", "create", "--name", "ops", "--role", "operator"]));
    let token = token.trim();
    // Never run: both intervals are due, so the first run carries both tags.
    let job = json!({
        "name": "backy", "group": "host/backy", "sources": [src.display().to_string()],
        "intervals": "daily=1d:7 weekly=1w:4",
    });
    let res = http.post(server.url("/api/v1/jobs")).bearer_auth(token).json(&job).send().unwrap();
    assert_eq!(res.status(), 201, "{:?}", res.text());
    let src_text = src.display().to_string();
    for (bad, why) in [
        (
            json!({"name": "b", "group": "host/x", "sources": [src_text], "intervals": "daily=1d"}),
            "INTERVAL:KEEP",
        ),
        (json!({"name": "b", "group": "host/x", "sources": [src_text]}), "exactly one of"),
        (
            json!({"name": "b", "group": "host/x", "sources": [src_text], "schedule": "* * * * *", "intervals": "d=1d:1"}),
            "exactly one of",
        ),
    ] {
        let res = http.post(server.url("/api/v1/jobs")).bearer_auth(token).json(&bad).send().unwrap();
        assert_eq!(res.status(), 400);
        let text = res.text().unwrap();
        assert!(text.contains(why), "{text}");
    }
    let task = server.finished_task(&http, token, "backy", 120);
    assert_eq!((task["state"].as_str(), task["trigger"].as_str()), (Some("ok"), Some("schedule")), "{task}");
    let log = task["log"].to_string();
    assert!(log.contains("tags: daily, weekly") && log.contains("prune by the intervals"), "{log}");
    let snaps: Value = http
        .get(server.url("/api/v1/snapshots?group=host/backy"))
        .bearer_auth(token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(snaps[0]["tags"], json!(["daily", "weekly"]), "{snaps}");
    // A job whose handler is missing fails its run, and is not retried at
    // every tick; its parameters are hidden from read-only callers.
    let failing = json!({
        "name": "broken", "group": "app/broken", "intervals": "daily=1d:7",
        "source": {"handler": "no-such-handler", "params": {"authorization": "Bearer s3cret"}},
    });
    let res = http.post(server.url("/api/v1/jobs")).bearer_auth(token).json(&failing).send().unwrap();
    assert_eq!(res.status(), 201, "{:?}", res.text());
    let auditor = run_ok(store.cmd().args(["token", "create", "--name", "audit", "--role", "auditor"]));
    let jobs: Value =
        http.get(server.url("/api/v1/jobs")).bearer_auth(auditor.trim()).send().unwrap().json().unwrap();
    assert!(!jobs.to_string().contains("s3cret") && jobs.to_string().contains("(hidden)"), "{jobs}");
    let jobs: Value = http.get(server.url("/api/v1/jobs")).bearer_auth(token).send().unwrap().json().unwrap();
    assert!(jobs.to_string().contains("Bearer s3cret"), "an operator sees what it set: {jobs}");

    // Nothing is due any more for `backy`: no second scheduled run; the
    // broken job failed once and waits before it is tried again. Once its
    // run has ended, wait for the scheduler to have looked twice more,
    // rather than for a time.
    server.finished_task(&http, token, "broken", 120);
    let ticks = || {
        let text = http.get(server.url("/metrics")).bearer_auth(token).send().unwrap().text().unwrap();
        let line =
            text.lines().find(|l| l.starts_with("cairn_scheduler_ticks_total ")).expect("ticks metric");
        line.split(' ').nth(1).unwrap().parse::<u64>().unwrap()
    };
    let (seen, deadline) = (ticks(), std::time::Instant::now() + Duration::from_secs(120));
    while ticks() < seen + 2 {
        assert!(std::time::Instant::now() < deadline, "the scheduler stopped looking");
        std::thread::sleep(Duration::from_millis(200));
    }
    let tasks: Value =
        http.get(server.url("/api/v1/tasks?job=backy")).bearer_auth(token).send().unwrap().json().unwrap();
    assert_eq!(tasks.as_array().map(Vec::len), Some(1), "{tasks}");
    let tasks: Value =
        http.get(server.url("/api/v1/tasks?job=broken")).bearer_auth(token).send().unwrap().json().unwrap();
    assert_eq!(tasks.as_array().map(Vec::len), Some(1), "one failed run, not one per tick: {tasks}");
    assert_eq!(tasks[0]["state"], "failed");
    assert!(tasks[0]["log"].to_string().contains("no policy named"), "{tasks}");
    let jobs: Value = http.get(server.url("/api/v1/jobs")).bearer_auth(token).send().unwrap().json().unwrap();
    let jobs: Vec<&Value> = jobs.as_array().unwrap().iter().filter(|j| j["name"] == "backy").collect();
    assert_eq!(jobs[0]["intervals"], "daily=1d:7 weekly=1w:4");
    assert_eq!((jobs[0]["sla"].as_str(), jobs[0]["interval_seconds"].as_i64()), (Some("ok"), Some(86_400)));
    let (status, _) = server.stop();
    assert!(status.success());
}

#[test]
fn a_job_with_a_source_handler_scheduler_policy_and_retention_policy() {
    let data: Vec<u8> = (0..400_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let http = ExportServer::start("/dump", data.clone());
    let store = Store::new();
    for (example, name) in
        [("source-http", "source-http"), ("schedule-backy", "backy"), ("retention-gfs", "gfs")]
    {
        run_ok(store.cmd().args(["policy", "add", "--name", name]).arg(policy_guests::example(example)));
    }
    let url = format!("url=http://{}/dump", http.authority());
    let allow = http.authority();
    let handler = ["--source", "source-http", "--param", &url, "--allow-host", &allow];
    run_ok(store.cmd().args(["job", "add", "db", "--group", "app/db"]).args(handler).args([
        "--scheduler",
        "backy",
        "--scheduler-param",
        "daily=1d",
        "--retention",
        "gfs",
        "--retention-param",
        "keep-last=1",
    ]));
    let jobs = run_json(store.cmd().args(["job", "list", "--json"]));
    assert_eq!(jobs[0]["schedule_text"], "policy backy", "{jobs}");

    let first = run_ok(store.cmd().args(["job", "run", "db"]));
    assert!(first.contains("source handler source-http") && first.contains("tags: daily"), "{first}");
    assert!(
        first.contains("prune with the retention policy gfs") && first.contains("finished: ok"),
        "{first}"
    );
    let snaps = run_json(store.cmd().args(["snapshots", "--json"]));
    assert_eq!(snaps[0]["tags"], json!(["daily"]), "the scheduler policy's tag: {snaps}");
    let id = snaps[0]["id"].as_str().unwrap().to_owned();
    std::thread::sleep(Duration::from_millis(1100));
    let second = run_ok(store.cmd().args(["job", "run", "db"]));
    assert!(second.contains("removed 1") || second.contains("prune: kept 1, removed 1"), "{second}");
    let snaps = run_json(store.cmd().args(["snapshots", "--json"]));
    assert_eq!(snaps.as_array().map(Vec::len), Some(1), "keep-last=1 left one: {snaps}");
    assert_ne!(snaps[0]["id"], id.as_str());
    let raw = store.path("raw");
    run_ok(store.cmd().args(["restore", "--raw", snaps[0]["id"].as_str().unwrap()]).arg(&raw));
    assert!(std::fs::read(raw.join("dump")).unwrap() == data);
    // A job made this snapshot (its task says so), so the handler it names
    // is the one the admin configured: it runs without --handler.
    let restored = run_ok(store.cmd().args(["restore", snaps[0]["id"].as_str().unwrap()]).args([
        "--param",
        &url,
        "--allow-host",
        &allow,
    ]));
    assert!(restored.contains("through the source handler source-http"), "{restored}");
    assert!(http.requests().iter().any(|r| r.method == "PUT" && r.body == data), "the handler uploaded");

    // A job whose handler yields more than the job's size limit fails
    // its run and keeps nothing.
    run_ok(store.cmd().args(["job", "add", "db-small", "--group", "app/small"]).args(handler).args([
        "--max-size",
        "100K",
        "--schedule",
        "0 3 * * *",
    ]));
    let r = run_code(store.cmd().args(["job", "run", "db-small"]), 1);
    assert!(r.stdout.contains("size limit of 100.0 KiB"), "{}", r.stdout);
    let snaps = run_json(store.cmd().args(["snapshots", "app/small", "--json"]));
    assert_eq!(snaps.as_array().map(Vec::len), Some(0), "{snaps}");

    // A job naming a policy that is gone fails its run with a clear log.
    run_ok(store.cmd().args(["policy", "rm", "gfs"]));
    let r = run_code(store.cmd().args(["job", "run", "db"]), 1);
    assert!(r.stdout.contains("no policy named \"gfs\""), "{}", r.stdout);
}
