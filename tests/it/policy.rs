//! Policies through the CLI: add, list, show and remove components built
//! from source, and prune with a retention policy, which must agree with
//! the built-in rules and never remove a protected snapshot.

use std::path::Path;

use serde_json::Value;

use crate::support::{Store, run, run_json, run_ok};

fn add(store: &Store, wasm: &Path, name: &str) {
    let out = run_ok(store.cmd().args(["policy", "add"]).arg(wasm).args(["--name", name]));
    assert!(out.contains(&format!("added retention policy {name}")), "{out}");
}

fn group_with_snapshots(store: &Store) -> Vec<String> {
    let src = store.path("empty");
    std::fs::create_dir_all(&src).expect("mkdir");
    ["2026-11-01T10:00:00Z", "2026-11-02T10:00:00Z", "2026-11-02T20:00:00Z", "2026-11-03T10:00:00Z"]
        .iter()
        .map(|t| store.backup(&src, "host/pol", t))
        .collect()
}

#[test]
fn retention_policy_prunes_like_the_builtin_rules() {
    let store = Store::new();
    let ids = group_with_snapshots(&store);
    add(&store, &policy_guests::example("retention-gfs"), "gfs");

    let list = run_json(store.cmd().args(["policy", "list", "--json"]));
    assert_eq!(list[0]["name"], "gfs", "{list}");
    assert_eq!(list[0]["world"], "retention");
    assert_eq!(list[0]["wit_version"], "0.2.0");
    let show = run_ok(store.cmd().args(["policy", "show", "gfs"]));
    assert!(show.contains("keep-daily") && show.contains("blake3"), "{show}");

    let builtin =
        run_json(store.cmd().args(["prune", "host/pol", "--keep-daily", "2", "--dry-run", "--json"]));
    let policy = run_json(store.cmd().args([
        "prune",
        "host/pol",
        "--policy",
        "gfs",
        "--param",
        "keep-daily=2",
        "--dry-run",
        "--json",
    ]));
    assert_eq!(policy, builtin);
    assert_eq!(
        policy.as_array().map(|a| a.iter().filter(|d| d["keep"] == false).count()),
        Some(2),
        "{policy}"
    );

    // For real this time; then the removed snapshots are gone.
    run_ok(store.cmd().args(["prune", "host/pol", "--policy", "gfs", "--param", "keep-daily=2"]));
    let left: Vec<Value> = store.snapshots();
    assert_eq!(left.len(), 2, "{left:?}");
    assert_eq!(left[1]["id"], ids[3].as_str());

    run_ok(store.cmd().args(["policy", "rm", "gfs"]));
    let r = run(store.cmd().args(["prune", "host/pol", "--policy", "gfs", "--param", "keep-daily=1"]));
    assert!(r.code == 1 && r.stderr.contains("no policy named"), "{r:?}");
}

#[test]
fn a_failing_or_greedy_policy_removes_nothing_it_must_not() {
    let store = Store::new();
    let ids = group_with_snapshots(&store);
    add(&store, &policy_guests::test_guest("hostile-retention"), "hostile");
    run_ok(store.cmd().args(["protect", &ids[0]]));

    // A per-policy budget: 200 ms of CPU instead of the default second.
    run_ok(store.cmd().args(["policy", "add"]).arg(policy_guests::test_guest("hostile-retention")).args([
        "--name",
        "hostile-fast",
        "--cpu-ms",
        "200",
        "--memory-mib",
        "16",
    ]));
    let show = run_json(store.cmd().args(["policy", "show", "hostile-fast", "--json"]));
    assert_eq!((show["cpu_ms"].as_u64(), show["memory_mib"].as_u64()), (Some(200), Some(16)), "{show}");
    // The message proves which budget stopped it (how long it takes is the
    // benchmark's business, not a test's).
    let r = run(store.cmd().args(["prune", "host/pol", "--policy", "hostile-fast", "--param", "mode=loop"]));
    assert!(r.code == 1 && r.stderr.contains("CPU budget of 200 ms"), "{r:?}");

    for mode in ["loop", "memory", "trap", "bad-reason", "error"] {
        let r = run(store.cmd().args([
            "prune",
            "host/pol",
            "--policy",
            "hostile",
            "--param",
            &format!("mode={mode}"),
        ]));
        assert_eq!(r.code, 1, "{mode}: {r:?}");
        assert!(r.stderr.contains("policy hostile-retention 0.2.0"), "{mode}: {}", r.stderr);
        assert_eq!(store.snapshots().len(), 4, "{mode}: a failing policy removed snapshots");
    }

    let out = run_json(store.cmd().args([
        "prune",
        "host/pol",
        "--policy",
        "hostile",
        "--param",
        "mode=remove-all",
        "--json",
    ]));
    assert_eq!(out[0]["keep"], true, "{out}");
    assert!(out[0]["reason"].as_str().is_some_and(|r| r.starts_with("protected")), "{out}");
    let left = store.snapshots();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["id"], ids[0].as_str());
}

#[test]
fn policy_add_refuses_what_is_not_a_policy() {
    let store = Store::new();
    let junk = store.path("junk.wasm");
    std::fs::write(&junk, b"\0asm\x01\0\0\0").expect("write");
    let r = run(store.cmd().args(["policy", "add"]).arg(&junk));
    assert!(r.code == 1 && r.stderr.contains("not a component"), "{r:?}");
    assert_eq!(run_json(store.cmd().args(["policy", "list", "--json"])), serde_json::json!([]));
}

/// `policy simulate` replays the policy day by day; for keep-daily the
/// snapshots left at the end are exactly what one prune keeps, and the
/// others go on the day they fall out of the window.
#[test]
fn simulate_replays_retention_over_time() {
    let store = Store::new();
    let src = store.path("empty");
    std::fs::create_dir_all(&src).expect("mkdir");
    let ids: Vec<String> =
        (1..=8).map(|d| store.backup(&src, "host/sim", &format!("2026-10-{d:02}T06:00:00Z"))).collect();
    add(&store, &policy_guests::example("retention-gfs"), "gfs");

    let sim = run_json(store.cmd().args([
        "policy",
        "simulate",
        "gfs",
        "host/sim",
        "--every",
        "1d",
        "--param",
        "keep-daily=3",
        "--json",
    ]));
    assert_eq!(sim["steps"], 8, "{sim}");
    let kept: Vec<&str> =
        sim["kept"].as_array().expect("kept").iter().filter_map(|k| k["id"].as_str()).collect();
    assert_eq!(kept, ids[5..].iter().map(String::as_str).collect::<Vec<_>>());
    let removed = sim["removed"].as_array().expect("removed");
    assert_eq!(removed.len(), 5, "{sim}");
    // The first snapshot leaves when the fourth day's arrives.
    assert_eq!(removed[0]["id"], ids[0].as_str());
    assert_eq!(removed[0]["at"], "2026-10-04T06:00:00Z");

    let builtin =
        run_json(store.cmd().args(["prune", "host/sim", "--keep-daily", "3", "--dry-run", "--json"]));
    let builtin_kept: Vec<&str> = builtin
        .as_array()
        .expect("array")
        .iter()
        .filter(|d| d["keep"] == true)
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert_eq!(kept, builtin_kept);
    assert_eq!(store.snapshots().len(), 8, "simulate removed snapshots");
}

/// The compiled artifact `policy add` cached for `name`'s component.
fn cached_artifact(store: &Store) -> std::path::PathBuf {
    let dir = store.ds.join("policies");
    let found: Vec<_> = std::fs::read_dir(&dir)
        .expect("policies/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

/// Whoever can write the datastore cannot plant machine code: the cache
/// key is outside the datastore (mode 0600), an artifact checksummed
/// without it (as format version 1 did) or sealed with another key is
/// not loaded; the policy is compiled again, with a warning, and the
/// planted file replaced.
#[test]
fn a_planted_compiled_policy_is_compiled_again_not_run() {
    use std::os::unix::fs::PermissionsExt;
    let store = Store::new();
    group_with_snapshots(&store);
    add(&store, &policy_guests::example("retention-gfs"), "gfs");
    let key = store.path("state/cairn/policy-cache.key");
    let mode = std::fs::metadata(&key).expect("the cache key beside the datastore").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let artifact = cached_artifact(&store);
    let sealed = std::fs::read(&artifact).expect("artifact");
    let prune = ["prune", "host/pol", "--policy", "gfs", "--param", "keep-daily=2", "--dry-run", "--json"];
    let quiet = crate::support::run_code(store.cmd().args(prune), 0);
    assert!(!quiet.stderr.contains("unusable"), "the good artifact loads: {}", quiet.stderr);

    let mut planted = sealed.clone();
    let unkeyed = *blake3::hash(&sealed[112..]).as_bytes();
    planted[80..112].copy_from_slice(&unkeyed);
    std::fs::write(&artifact, &planted).expect("plant");
    let r = crate::support::run_code(store.cmd().args(prune), 0);
    assert!(r.stderr.contains("unusable") && r.stderr.contains("another key"), "{}", r.stderr);
    assert_eq!(std::fs::read(&artifact).expect("artifact"), sealed, "replaced by a sealed one");

    // Another user's (or installation's) key does not open this one's.
    let r = crate::support::run_code(store.cmd().env("XDG_STATE_HOME", store.path("other")).args(prune), 0);
    assert!(r.stderr.contains("sealed with another key"), "{}", r.stderr);
    assert_ne!(std::fs::read(&artifact).expect("artifact"), sealed, "resealed with the other key");
    assert!(
        walk(&store.ds).iter().all(|p| p.extension().is_none_or(|x| x != "key")),
        "no key inside the datastore"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}
