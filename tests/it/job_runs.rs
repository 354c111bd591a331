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

/// A server with a job `stuck` whose source handler reads from a server
/// that never answers, and an operator token.
struct Stuck {
    server: Server,
    ops: String,
    held: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl Stuck {
    fn start(store: &Store) -> Stuck {
        run_ok(store.cmd().args(["policy", "add"]).arg(policy_guests::example("source-http")));
        let (authority, held) = stalling_server();
        let server = Server::start(store);
        let ops = token(store, "ops", "operator", None);
        let job = json!({
            "name": "stuck", "group": "app/stuck", "schedule": "0 3 1 1 *",
            "source": {"handler": "source-http", "params": {"url": format!("http://{authority}/export")},
                       "allow_hosts": [authority]},
        });
        let http = pinned_client(&server.fingerprint);
        let res = http.post(server.url("/api/v1/jobs")).bearer_auth(&ops).json(&job).send().unwrap();
        assert_eq!(res.status(), 201, "{:?}", res.text());
        Stuck { server, ops, held }
    }

    /// `POST /api/v1/jobs/stuck/run`.
    fn run(&self) -> Value {
        let http = pinned_client(&self.server.fingerprint);
        let res = http.post(self.server.url("/api/v1/jobs/stuck/run")).bearer_auth(&self.ops).send().unwrap();
        assert!(res.status().is_success(), "{:?}", res.text());
        res.json().unwrap()
    }

    /// Wait until the job's handler has reached the server that holds it.
    fn wait_held(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.held.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "the job's handler never connected");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Task `id` as a server started on `store` answers it.
fn task_on(store: &Store, ops: &str, id: u64) -> Value {
    let server = Server::start(store);
    let http = pinned_client(&server.fingerprint);
    let res = http.get(server.url(&format!("/api/v1/tasks/{id}"))).bearer_auth(ops).send().unwrap();
    res.json().unwrap()
}

fn stuck(s: &Value) -> bool {
    s["id"].as_str().unwrap().starts_with("app/stuck/")
}

#[test]
fn a_job_runs_once_at_a_time_and_a_run_cut_short_fails_on_the_next_start() {
    let store = Store::new();
    let job = Stuck::start(&store);
    let first = job.run();
    let task = first["task"].as_u64().unwrap_or_else(|| panic!("a task: {first}"));
    job.wait_held();
    let second = job.run();
    assert_eq!((second["task"].clone(), second["already_running"].clone()), (Value::Null, json!(true)));

    // The server dies mid-run (SIGKILL, as a power cut would end it).
    let Stuck { server, ops, .. } = job;
    drop(server);
    assert!(!store.snapshots().iter().any(stuck), "a run cut short is not a snapshot");

    // On the next start its task is failed, not left running forever.
    let t = task_on(&store, &ops, task);
    assert_eq!(t["state"], "failed", "{t}");
    assert!(!store.snapshots().iter().any(stuck));
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
    let job = Stuck::start(&store);
    let started = job.run();
    let task = started["task"].as_u64().unwrap_or_else(|| panic!("a task: {started}"));
    job.wait_held();
    // SIGTERM; meanwhile the source goes away, so the run ends (failing)
    // within the grace period instead of being cut short after 30 s.
    let Stuck { server, ops, held } = job;
    let closer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        held.lock().unwrap().clear();
    });
    let (status, _) = server.stop();
    closer.join().unwrap();
    assert!(status.success(), "{status}");
    assert!(!store.snapshots().iter().any(stuck), "a run cut short is not a snapshot");
    // The task is failed, never left running.
    let t = task_on(&store, &ops, task);
    assert_eq!(t["state"], "failed", "{t}");
    assert!(!store.snapshots().iter().any(stuck));
}
