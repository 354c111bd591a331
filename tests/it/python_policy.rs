//! A retention policy written in Python (`policies-py/retention-recent`,
//! built with componentize-py) through the CLI: added with `cairn policy
//! add` under the budget its README states, then pruning real snapshots.

use serde_json::{Value, json};

use crate::support::{Store, run, run_json, run_ok};

/// `now - ago`, as `--time` takes it.
fn ago(now: i64, seconds: i64) -> String {
    model::time::format_rfc3339(now - seconds)
}

fn decisions(v: &Value) -> Vec<(String, bool, String)> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|d| {
            let s = |k: &str| d[k].as_str().unwrap_or_else(|| panic!("{k} in {d}")).to_owned();
            (s("id"), d["keep"].as_bool().expect("keep"), s("reason"))
        })
        .collect()
}

#[test]
fn a_python_policy_prunes_real_snapshots() {
    if !testkit::needs(testkit::Need::Python) {
        return;
    }
    let store = Store::new();
    let src = store.path("empty");
    std::fs::create_dir_all(&src).expect("mkdir");
    // `cairn prune` decides with the real clock: the snapshots are placed
    // days apart around it, so the minutes this test takes do not matter.
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    let day = 86_400;
    let ids: Vec<String> = [40 * day, 20 * day, 12 * day, 9 * day, 3 * day, 3_600]
        .iter()
        .map(|&a| store.backup(&src, "host/py", &ago(now, a)))
        .collect();
    run_ok(store.cmd().args(["protect", &ids[0]]));

    // The budget the README states: 16 MiB per call is enough.
    let wasm = policy_guests::python_example("retention-recent");
    let out = run_ok(store.cmd().args(["policy", "add"]).arg(&wasm).args(["--memory-mib", "16"]));
    assert!(out.contains("added retention policy retention-recent"), "{out}");
    let show = run_json(store.cmd().args(["policy", "show", "retention-recent", "--json"]));
    assert_eq!(
        (show["world"].as_str(), show["memory_mib"].as_u64()),
        (Some("retention"), Some(16)),
        "{show}"
    );
    let params: Vec<&str> =
        show["params"].as_array().expect("params").iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(params, ["keep-within", "keep-last"], "{show}");

    let prune = |extra: &[&str]| {
        let mut cmd = store.cmd();
        cmd.args(["prune", "host/py", "--policy", "retention-recent"]);
        for p in ["keep-within=7d", "keep-last=3"] {
            cmd.args(["--param", p]);
        }
        cmd.args(extra);
        cmd
    };
    let dry = run_json(&mut prune(&["--dry-run", "--json"]));
    let remove = "remove: older than 7d and not among the 3 newest";
    let want = [
        (0, true, "protected"),
        (1, false, remove),
        (2, false, remove),
        (3, true, "keep-last 3"),
        (4, true, "within 7d"),
        (5, true, "within 7d"),
    ]
    .map(|(i, keep, reason): (usize, bool, &str)| (ids[i].clone(), keep, reason.to_owned()));
    assert_eq!(decisions(&dry), want, "{dry}");
    assert_eq!(store.snapshots().len(), 6, "a dry run removed snapshots");

    // A bad parameter is the policy's error: nothing is removed.
    let r = run(store.cmd().args([
        "prune",
        "host/py",
        "--policy",
        "retention-recent",
        "--param",
        "keep-last=two",
    ]));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("keep-last='two': expected a whole number of at least 1"), "{}", r.stderr);
    assert_eq!(store.snapshots().len(), 6, "a failing policy removed snapshots");

    // For real: the two it chose go, the rest stay.
    run_ok(&mut prune(&[]));
    let left: Vec<Value> = store.snapshots().iter().map(|s| s["id"].clone()).collect();
    assert_eq!(left, [0, 3, 4, 5].map(|i| json!(ids[i])), "{left:?}");
}
