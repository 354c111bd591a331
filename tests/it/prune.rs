//! Prune: table-driven `--dry-run --json` decisions for snapshots made at
//! chosen times, then a real prune removes exactly the `remove` ones.

use std::fs;

use serde_json::Value;

use crate::support::{Store, run, run_json, run_ok, str_of};

/// One prune case: snapshot times (oldest first), which of them are
/// protected, the keep options, and per snapshot the expected reason
/// (`remove` or the keep reason).
struct Case {
    group: &'static str,
    times: &'static [&'static str],
    protect: &'static [usize],
    options: &'static [&'static str],
    expect: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        group: "host/last",
        times: &[
            "2026-05-01T00:00:00Z",
            "2026-05-02T00:00:00Z",
            "2026-05-03T00:00:00Z",
            "2026-05-04T00:00:00Z",
        ],
        protect: &[],
        options: &["--keep-last", "2"],
        expect: &["remove", "remove", "keep-last 2", "keep-last 1"],
    },
    Case {
        group: "host/daily",
        times: &[
            "2026-05-01T01:00:00Z",
            "2026-05-01T05:00:00Z",
            "2026-05-02T03:00:00Z",
            "2026-05-02T20:00:00Z",
            "2026-05-02T23:59:59Z",
            "2026-05-03T10:00:00Z",
        ],
        protect: &[],
        options: &["--keep-daily", "2"],
        expect: &["remove", "remove", "remove", "remove", "keep-daily 2", "keep-daily 1"],
    },
    Case {
        group: "host/protected",
        times: &["2026-05-01T00:00:00Z", "2026-05-02T00:00:00Z", "2026-05-03T00:00:00Z"],
        protect: &[0],
        options: &["--keep-last", "1"],
        expect: &["protected", "remove", "keep-last 1"],
    },
    Case {
        group: "host/monthly",
        times: &[
            "2026-01-31T23:00:00Z",
            "2026-02-01T00:00:00Z",
            "2026-02-15T00:00:00Z",
            "2026-03-01T00:00:00Z",
        ],
        protect: &[],
        options: &["--keep-monthly", "2"],
        expect: &["remove", "remove", "keep-monthly 2", "keep-monthly 1"],
    },
];

fn prune(store: &Store, case: &Case, dry: bool) -> Vec<Value> {
    let mut cmd = store.cmd();
    cmd.args(["prune", case.group, "--json"]).args(case.options);
    if dry {
        cmd.arg("--dry-run");
    }
    match run_json(&mut cmd) {
        Value::Array(items) => items,
        other => panic!("prune --json is not an array: {other}"),
    }
}

fn check(store: &Store, case: &Case) {
    let src = store.path(case.group.replace('/', "_").as_str());
    fs::create_dir_all(&src).expect("mkdir");
    fs::write(src.join("f"), case.group).expect("write");
    let ids: Vec<String> = case.times.iter().map(|t| store.backup(&src, case.group, t)).collect();
    for &i in case.protect {
        run_ok(store.cmd().args(["protect", &ids[i]]));
    }
    let decisions = prune(store, case, true);
    let got: Vec<(String, bool, String)> = decisions
        .iter()
        .map(|d| {
            (str_of(d, "id").to_owned(), d["keep"].as_bool().expect("keep"), str_of(d, "reason").to_owned())
        })
        .collect();
    let want: Vec<(String, bool, String)> =
        ids.iter().zip(case.expect).map(|(id, r)| (id.clone(), *r != "remove", (*r).to_owned())).collect();
    assert_eq!(got, want, "case {}", case.group);
    assert_eq!(
        store.snapshots().iter().filter(|s| str_of(s, "id").starts_with(case.group)).count(),
        ids.len()
    );

    let real = prune(store, case, false);
    assert_eq!(real, decisions, "case {}: real prune decided differently", case.group);
    let left: Vec<String> = store
        .snapshots()
        .iter()
        .map(|s| str_of(s, "id").to_owned())
        .filter(|id| id.starts_with(&format!("{}/", case.group)))
        .collect();
    let kept: Vec<String> = want.iter().filter(|w| w.1).map(|w| w.0.clone()).collect();
    assert_eq!(left, kept, "case {}", case.group);
    for (id, keep, _) in &want {
        assert_eq!(store.ds.join("snapshots").join(id).exists(), *keep, "snapshot dir of {id}");
    }
}

#[test]
fn prune_cases() {
    let store = Store::new();
    for case in CASES {
        check(&store, case);
    }
}

#[test]
fn prune_needs_a_keep_option_and_never_removes_protected() {
    let store = Store::new();
    let src = store.path("src");
    fs::create_dir(&src).expect("mkdir");
    let old = store.backup(&src, "host/p", "2026-06-01T00:00:00Z");
    store.backup(&src, "host/p", "2026-06-02T00:00:00Z");
    let r = run(store.cmd().args(["prune", "host/p"]));
    assert_eq!(r.code, 1, "prune without keep options must fail: {r:?}");
    assert!(!r.stderr.trim().is_empty());

    run_ok(store.cmd().args(["protect", &old]));
    assert_eq!(store.snapshot(&old)["protected"], true);
    run_ok(store.cmd().args(["prune", "host/p", "--keep-last", "1"]));
    assert_eq!(store.snapshots().len(), 2, "protected snapshot pruned");
    run_ok(store.cmd().args(["unprotect", &old]));
    assert_eq!(store.snapshot(&old)["protected"], false);
    run_ok(store.cmd().args(["prune", "host/p", "--keep-last", "1"]));
    let left: Vec<String> = store.snapshots().iter().map(|s| str_of(s, "id").to_owned()).collect();
    assert_eq!(left, vec!["host/p/2026-06-02T00:00:00Z".to_owned()]);
}
