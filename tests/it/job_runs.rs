//! Job runs on the server: one run of a job at a time, and a run cut short
//! by the server's death leaves no snapshot and is marked failed when the
//! server starts again. The run is held mid-way by a source handler whose
//! HTTP server accepts and never answers, so nothing depends on timing.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::serve::{Server, pinned_client, token};
use crate::support::{Store, run_ok};

/// A TCP server that accepts connections and never answers; how many it has.
fn stalling_server() -> (String, Arc<Mutex<Vec<std::net::TcpStream>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let authority = listener.local_addr().unwrap().to_string();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            keep.lock().unwrap().push(stream);
        }
    });
    (authority, held)
}

#[test]
fn a_job_runs_once_at_a_time_and_a_run_cut_short_fails_on_the_next_start() {
    let store = Store::new();
    run_ok(store.cmd().args(["policy", "add"]).arg(policy_guests::example("source-http")));
    let (authority, held) = stalling_server();
    let server = Server::start(&store);
    let http = pinned_client(&server.fingerprint);
    let ops = token(&store, "ops", "operator", None);
    let job = json!({
        "name": "stuck", "group": "app/stuck", "schedule": "0 3 1 1 *",
        "source": {"handler": "source-http", "params": {"url": format!("http://{authority}/export")},
                   "allow_hosts": [authority]},
    });
    let res = http.post(server.url("/api/v1/jobs")).bearer_auth(&ops).json(&job).send().unwrap();
    assert_eq!(res.status(), 201, "{:?}", res.text());

    let run = || -> Value {
        let res = http.post(server.url("/api/v1/jobs/stuck/run")).bearer_auth(&ops).send().unwrap();
        assert!(res.status().is_success(), "{:?}", res.text());
        res.json().unwrap()
    };
    let first = run();
    let task = first["task"].as_u64().unwrap_or_else(|| panic!("a task: {first}"));
    // The handler has reached the HTTP server, which holds it there.
    let deadline = Instant::now() + Duration::from_secs(120);
    while held.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the job's handler never connected");
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = run();
    assert_eq!((second["task"].clone(), second["already_running"].clone()), (Value::Null, json!(true)));
    let task_of = |server: &Server| -> Value {
        let http = pinned_client(&server.fingerprint);
        let res = http.get(server.url(&format!("/api/v1/tasks/{task}"))).bearer_auth(&ops).send().unwrap();
        res.json().unwrap()
    };
    assert_eq!(task_of(&server)["state"], "running");

    // The server dies mid-run (SIGKILL, as a power cut would end it).
    drop(server);
    let stuck = |s: &Value| s["id"].as_str().unwrap().starts_with("app/stuck/");
    assert!(!store.snapshots().iter().any(stuck), "a run cut short is not a snapshot");

    // On the next start its task is failed, not left running forever.
    let server = Server::start(&store);
    let t = task_of(&server);
    assert_eq!(t["state"], "failed", "{t}");
    assert!(!store.snapshots().iter().any(stuck));
    drop(server);
    // Its leftovers go at the next gc.
    run_ok(store.cmd().arg("gc"));
    let writers = store.ds.join("writers");
    let left: Vec<_> =
        std::fs::read_dir(&writers).map(|d| d.map(|e| e.unwrap().path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

/// SIGTERM while a job runs: the server lets the run end (here it fails:
/// its source goes away), stops, and leaves no partial snapshot; the task
/// is recorded as failed, never left running.
#[test]
fn sigterm_during_a_run_leaves_no_partial_snapshot() {
    let store = Store::new();
    run_ok(store.cmd().args(["policy", "add"]).arg(policy_guests::example("source-http")));
    let (authority, held) = stalling_server();
    let server = Server::start(&store);
    let http = pinned_client(&server.fingerprint);
    let ops = token(&store, "ops", "operator", None);
    let job = json!({
        "name": "stuck", "group": "app/stuck", "schedule": "0 3 1 1 *",
        "source": {"handler": "source-http", "params": {"url": format!("http://{authority}/export")},
                   "allow_hosts": [authority]},
    });
    let res = http.post(server.url("/api/v1/jobs")).bearer_auth(&ops).json(&job).send().unwrap();
    assert_eq!(res.status(), 201, "{:?}", res.text());
    let started: Value =
        http.post(server.url("/api/v1/jobs/stuck/run")).bearer_auth(&ops).send().unwrap().json().unwrap();
    let task = started["task"].as_u64().unwrap_or_else(|| panic!("a task: {started}"));
    let deadline = Instant::now() + Duration::from_secs(120);
    while held.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the job's handler never connected");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGTERM; meanwhile the source goes away, so the run ends (failing)
    // within the grace period instead of being cut short after 30 s.
    let closer = {
        let held = held.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            held.lock().unwrap().clear();
        })
    };
    let (status, _) = server.stop();
    closer.join().unwrap();
    assert!(status.success(), "{status}");
    let stuck = |s: &Value| s["id"].as_str().unwrap().starts_with("app/stuck/");
    assert!(!store.snapshots().iter().any(stuck), "a run cut short is not a snapshot");
    // The task is failed, never left running.
    let server = Server::start(&store);
    let http = pinned_client(&server.fingerprint);
    let url = server.url(&format!("/api/v1/tasks/{task}"));
    let t: Value = http.get(url).bearer_auth(&ops).send().unwrap().json().unwrap();
    assert_eq!(t["state"], "failed", "{t}");
    assert!(!store.snapshots().iter().any(stuck));
}
