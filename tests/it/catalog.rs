//! `catalog rebuild` recreates the catalog from the datastore alone:
//! `snapshots --json` is the same before and after, protection and verify
//! state included.

use std::fs;

use testkit::{chunk_files, flip_byte, write_random_tree};

use crate::support::{Store, run, run_ok};

#[test]
fn rebuild_from_a_stale_or_deleted_catalog_gives_identical_listing() {
    let store = Store::new();
    let (a, b) = (store.path("a"), store.path("b"));
    write_random_tree(&a, 10, 2 << 20, 70);
    let first = store.backup_with(&[&a], "host/cat", "2026-10-01T00:00:00Z", &["--tag", "daily"]);
    store.backup_with(&[&a], "host/cat", "2026-10-02T00:00:00Z", &["--tag", "daily", "--tag", "weekly"]);
    store.backup_with(&[&a], "vm/other", "2026-10-01T00:00:00Z", &["--ns", "team"]);
    let before_b = chunk_files(&store.ds);
    write_random_tree(&b, 10, 2 << 20, 71);
    let damaged = store.backup(&b, "host/bad", "2026-10-03T00:00:00Z");
    let victim = chunk_files(&store.ds).difference(&before_b).next().cloned().expect("new chunk");
    flip_byte(&victim, 60);
    // The catalog as it was before protect and verify: every snapshot row
    // is there, but stale.
    let stale = store.path("stale-catalog.redb");
    fs::copy(store.ds.join("catalog.redb"), &stale).unwrap();
    run_ok(store.cmd().args(["protect", &first]));
    assert_eq!(run(store.cmd().arg("verify")).code, 1);

    let before = store.snapshots();
    assert_eq!(before.len(), 4, "{before:?}");
    assert!(before.iter().any(|s| s["id"] == damaged.as_str() && s["verify_state"] == "failed"));
    assert!(before.iter().any(|s| s["id"] == first.as_str() && s["protected"] == true));
    assert!(before.iter().any(|s| s["id"].as_str().is_some_and(|id| id.starts_with("ns/team/vm/other/"))));

    // A stale catalog put back is not put right by opening it (its rows
    // all exist), only by the rebuild, from the snapshots' own state.json.
    fs::copy(&stale, store.ds.join("catalog.redb")).unwrap();
    let stale_listing = store.snapshots();
    assert!(stale_listing.iter().any(|s| s["id"] == first.as_str() && s["protected"] == false));
    assert!(stale_listing.iter().all(|s| s["verify_state"] == "none"), "{stale_listing:?}");
    run_ok(store.cmd().args(["catalog", "rebuild"]));
    assert_eq!(store.snapshots(), before);

    fs::remove_file(store.ds.join("catalog.redb")).expect("catalog.redb exists");
    run_ok(store.cmd().args(["catalog", "rebuild"]));
    assert_eq!(store.snapshots(), before);
    run_ok(store.cmd().args(["catalog", "rebuild"]));
    assert_eq!(store.snapshots(), before, "a second rebuild changed the listing");

    // A snapshot whose manifest is cut short is left out, with a warning
    // naming it; the others are listed; its files stay.
    let manifest = store.ds.join("snapshots/host/cat/2026-10-02T00:00:00Z/manifest.json");
    let bytes = fs::read(&manifest).unwrap();
    fs::write(&manifest, &bytes[..bytes.len() / 2]).unwrap();
    let r = run(store.cmd().args(["catalog", "rebuild"]));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("host/cat/2026-10-02T00:00:00Z left out") && r.stderr.contains("damaged"),
        "{r:?}"
    );
    let after = store.snapshots();
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(manifest.exists());
}
