//! Verify finds a corrupt chunk, names exactly the snapshots that use it,
//! quarantines it, remembers the result; restore of the damaged snapshot
//! fails naming a file; a new backup heals the store.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use testkit::{chunk_files, flip_byte, write_random_tree};

use crate::support::{Store, assert_same_tree, run, run_code, run_json, str_of};

const MIB: u64 = 1 << 20;
const T1: &str = "2026-04-01T00:00:00Z";
const T2: &str = "2026-04-02T00:00:00Z";

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() { out.extend(files_under(&path)) } else { out.push(path) }
    }
    out
}

fn verify_json(store: &Store, code: i32) -> Vec<Value> {
    let r = run_code(store.cmd().args(["verify", "--json"]), code);
    match crate::support::parse_json(&r) {
        Value::Array(items) => items,
        other => panic!("verify --json is not an array: {other}"),
    }
}

#[test]
fn corrupt_chunk_is_found_quarantined_and_healed() {
    let store = Store::new();
    let (a, b) = (store.path("a"), store.path("b"));
    write_random_tree(&a, 30, 8 * MIB, 21);
    let tree_b = write_random_tree(&b, 30, 8 * MIB, 22);
    let id_a = store.backup(&a, "host/g1", T1);
    let before = chunk_files(&store.ds);
    let id_b = store.backup(&b, "host/g2", T1);
    let only_b: BTreeSet<PathBuf> = chunk_files(&store.ds).difference(&before).cloned().collect();
    let victim = only_b
        .iter()
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("backup of tree B added chunks")
        .clone();
    let hex = victim.file_name().and_then(|n| n.to_str()).expect("chunk name").to_owned();
    flip_byte(&victim, 48 + 100);

    let report = verify_json(&store, 1);
    let state =
        |id: &str| report.iter().find(|r| r["id"] == id).unwrap_or_else(|| panic!("{id} not verified"));
    assert_eq!(str_of(state(&id_a), "state"), "ok", "{report:?}");
    assert_eq!(str_of(state(&id_b), "state"), "failed", "{report:?}");
    assert_eq!(state(&id_b)["bad_chunks"], serde_json::json!([hex]), "{report:?}");
    assert!(!victim.exists(), "corrupt chunk left in chunks/");
    let quarantined = files_under(&store.ds.join("quarantine"));
    assert!(
        quarantined.iter().any(|p| p.to_string_lossy().contains(&hex)),
        "not quarantined: {quarantined:?}"
    );

    let text = run_code(store.cmd().arg("verify"), 1);
    let all = format!("{}\n{}", text.stdout, text.stderr);
    assert!(all.lines().any(|l| l.starts_with("DAMAGED") && l.contains(&id_b)), "{all}");
    assert!(all.contains(&format!("DAMAGED  {id_b} (1 bad chunk)\n")), "one chunk, singular: {all}");
    assert!(!all.lines().any(|l| l.starts_with("DAMAGED") && l.contains(&id_a)), "{all}");
    assert_eq!(store.snapshot(&id_a)["verify_state"], "ok");
    assert_eq!(store.snapshot(&id_b)["verify_state"], "failed");

    let r = run(store.cmd().args(["restore", &id_b]).arg(store.path("broken")));
    assert_eq!(r.code, 1, "restore of a damaged snapshot must fail: {r:?}");
    let names: Vec<String> = tree_b.files.iter().map(|f| f.to_string_lossy().into_owned()).collect();
    assert!(names.iter().any(|n| r.stderr.contains(n.as_str())), "error names no file: {}", r.stderr);
    // The files that failed are not left half written: they are absent;
    // every other file is there, byte for byte.
    let failed: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: ") && !l.contains("could not be restored"))
        .collect();
    assert!(!failed.is_empty() && r.stderr.contains("were removed"), "{}", r.stderr);
    let mut absent = 0;
    for rel in &tree_b.files {
        let (name, out) = (rel.to_string_lossy(), store.path("broken").join(rel));
        if failed.iter().any(|l| l.contains(name.as_ref())) {
            assert!(!out.exists(), "{name} failed and was left behind");
            absent += 1;
        } else {
            let same = std::fs::read(&out).ok() == Some(std::fs::read(b.join(rel)).expect("source"));
            assert!(same, "{name} was not restored whole: {}", r.stderr);
        }
    }
    assert_eq!(absent, failed.len(), "each error names one file: {}", r.stderr);
    assert_eq!(files_under(&store.path("broken")).len() + absent, tree_b.files.len());

    let healed = store.backup(&b, "host/g2", T2);
    let report = run_json(store.cmd().args(["verify", &healed, "--json"]));
    assert_eq!(report[0]["state"], "ok", "{report}");
    assert_eq!(store.snapshot(&healed)["verify_state"], "ok");
    let out = store.path("healed");
    store.restore(&healed, &out, &[]);
    assert_same_tree(&b, &out);
}
