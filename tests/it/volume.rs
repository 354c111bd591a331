//! `cairn volume`: snapshots written into volume files in Bacula's
//! format, read back by Bacula's own tools (`bls`, `bextract` from
//! Debian's `bacula-sd`) as the oracle, and by `cairn volume ls`.

use std::path::Path;

use testkit::Need;
use testkit::bacula::Bacula;

use crate::support::{Store, run_json};

/// A file of `len` bytes: random data with runs of zeros between.
fn disk_image(path: &Path, len: u64) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::File::create(path).expect("image");
    f.set_len(len).expect("size");
    for (i, at) in [0u64, 3 << 20, len - 70_000].into_iter().enumerate() {
        f.seek(SeekFrom::Start(at)).expect("seek");
        let data: Vec<u8> =
            (0..150_000u32).map(|j| (j.wrapping_mul(2_654_435_761) >> (i + 3)) as u8).collect();
        f.write_all(&data[..data.len().min((len - at) as usize)]).expect("write");
    }
}

/// A volume holding a snapshot of the tricky tree (hard links, sparse
/// files, odd names, ACLs and xattrs, FIFOs, device nodes, owners) and an
/// image: `bls -j` lists one session per snapshot with its file count,
/// `bextract` restores every file with its bytes, type, mode, owner and
/// mtime (to the second), and the image with its bytes and holes.
#[test]
fn bacula_lists_and_restores_a_volume_of_a_tricky_tree_and_an_image() {
    if !testkit::needs(Need::Root) || !testkit::needs(Need::Bacula) {
        return;
    }
    let store = Store::new();
    let tree = store.path("tree");
    let info = testkit::build_tricky_tree(&tree);
    let tree_id = store.backup(&tree, "host/tricky", "2026-03-01T00:00:00Z");
    let image = store.path("disk.img");
    disk_image(&image, 12 << 20);
    let image_id = store.backup(&image, "vm/100", "2026-03-02T00:00:00Z");

    let vols = store.path("vols");
    std::fs::create_dir_all(&vols).unwrap();
    let report = run_json(
        store.cmd().args(["volume", "write", &tree_id, &image_id, "--json", "--to"]).arg(vols.join("Vol1")),
    );
    assert_eq!(report["volume"], "Vol1", "{report}");

    let listed = run_json(store.cmd().args(["volume", "ls", "--json"]).arg(vols.join("Vol1")));
    let listed = listed.as_array().expect("sessions");
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(
        (listed[0]["snapshot"].as_str(), listed[1]["snapshot"].as_str()),
        (Some(tree_id.as_str()), Some(image_id.as_str()))
    );
    // Every entry of the tree is one file of the session (the archive's
    // root included).
    assert_eq!(listed[0]["files"].as_u64(), Some(info.entries as u64 + 1), "{:?}", listed[0]);

    let bacula = Bacula::new(&vols, 4 << 20);
    let sessions = bacula.sessions("Vol1").expect("bls -j");
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_eq!(sessions[0].files, info.entries as u64 + 1, "{sessions:?}");
    assert_eq!((sessions[1].files, sessions[0].status, sessions[1].status), (1, 'T', 'T'), "{sessions:?}");

    let out = store.path("bextract");
    let said = bacula.extract("Vol1", &out).expect("bextract");
    let archive = tree.file_name().unwrap();
    let diffs = testkit::compare_trees_with(&tree, &out.join(archive), testkit::Fidelity::BACULA);
    assert!(
        diffs.is_empty(),
        "bextract restored the tree with {} differences:\n{}\n{said}",
        diffs.len(),
        diffs.join("\n")
    );
    let restored = out.join("disk.img");
    assert_eq!(std::fs::read(&restored).unwrap(), std::fs::read(&image).unwrap(), "the image's bytes");
    use std::os::unix::fs::MetadataExt;
    let blocks = std::fs::metadata(&restored).unwrap().blocks() * 512;
    assert!(blocks < 4 << 20, "the image's zero regions came back as holes ({blocks} bytes allocated)");
}

/// Appending to a volume adds sessions after the last; a volume file is
/// never left with part of a session: a write that fails leaves it as it
/// was.
#[test]
fn a_volume_takes_more_sessions_and_a_failed_write_leaves_it_whole() {
    let store = Store::new();
    let src = store.path("src");
    testkit::write_random_tree(&src, 5, 200 << 10, 3);
    let first = store.backup(&src, "host/a", "2026-03-01T00:00:00Z");
    let second = store.backup(&src, "host/a", "2026-03-02T00:00:00Z");
    let vol = store.path("Vol7");
    crate::support::run_ok(store.cmd().args(["volume", "write", &first, "--to"]).arg(&vol));
    let before = std::fs::read(&vol).unwrap();
    crate::support::run_ok(store.cmd().args(["volume", "write", &second, "--to"]).arg(&vol));
    let listed = run_json(store.cmd().args(["volume", "ls", "--json"]).arg(&vol));
    let ids: Vec<_> =
        listed.as_array().unwrap().iter().map(|s| s["snapshot"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, [first.clone(), second.clone()]);
    let grown = std::fs::read(&vol).unwrap();
    assert!(grown.starts_with(&before), "appending rewrote the volume's start");

    // A snapshot that does not exist after a good one: nothing is added.
    let r = crate::support::run(
        store.cmd().args(["volume", "write", &first, "host/a/2030-01-01T00:00:00Z", "--to"]).arg(&vol),
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(std::fs::read(&vol).unwrap(), grown, "a failed write changed the volume");
    let r = crate::support::run(
        store
            .cmd()
            .args(["volume", "write", "host/a/2030-01-01T00:00:00Z", "--to"])
            .arg(store.path("VolNew")),
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(!store.path("VolNew").exists(), "a failed write left a new volume behind");
}

/// `cairn volume extract` gives a snapshot back from a volume alone (no
/// datastore) with Cairn's full fidelity: nanosecond times, xattrs and
/// ACLs, hard links, sparse files, odd names, devices, owners.
#[test]
fn a_volume_extracts_with_full_fidelity_and_no_datastore() {
    if !testkit::needs(Need::Root) {
        return;
    }
    let store = Store::new();
    let tree = store.path("tree");
    testkit::build_tricky_tree(&tree);
    let id = store.backup(&tree, "host/tricky", "2026-03-01T00:00:00Z");
    let vol = store.path("Vol3");
    crate::support::run_ok(
        store.cmd().args(["volume", "write", &id, "--block-size", "64K", "--to"]).arg(&vol),
    );
    std::fs::remove_dir_all(&store.ds).expect("no datastore from here on");
    let out = store.path("out");
    let r = crate::support::run(store.cmd().args(["volume", "extract"]).arg(&vol).arg(&out));
    assert_eq!(r.code, 0, "{r:?}");
    crate::support::assert_same_tree(&tree, &out);
}

/// A flipped bit and a cut volume: the damage is reported with the file
/// it hit, exit status 1, every other file is restored, and no file is
/// written with wrong bytes.
#[test]
fn a_damaged_volume_restores_what_is_whole_and_says_what_is_not() {
    let store = Store::new();
    let src = store.path("src");
    testkit::write_random_tree(&src, 24, 6 << 20, 11);
    let id = store.backup(&src, "host/d", "2026-03-01T00:00:00Z");
    let vol = store.path("Vol4");
    crate::support::run_ok(
        store.cmd().args(["volume", "write", &id, "--block-size", "64K", "--to"]).arg(&vol),
    );
    let whole = std::fs::read(&vol).unwrap();
    let total = walk_files(&src).len();

    let flipped = store.path("flipped/Vol4");
    std::fs::create_dir_all(flipped.parent().unwrap()).unwrap();
    let mut bytes = whole.clone();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x04;
    std::fs::write(&flipped, &bytes).unwrap();
    let cut = store.path("cut/Vol4");
    std::fs::create_dir_all(cut.parent().unwrap()).unwrap();
    std::fs::write(&cut, &whole[..whole.len() * 3 / 5]).unwrap();

    for (what, damaged) in [("a flipped bit", &flipped), ("a cut volume", &cut)] {
        let out = store.path(&format!("out-{}", what.replace(' ', "-")));
        let r = crate::support::run(store.cmd().args(["volume", "extract"]).arg(damaged).arg(&out));
        assert_eq!(r.code, 1, "{what}: {r:?}");
        assert!(r.stderr.contains("damaged:"), "{what}: the damage is reported: {r:?}");
        let restored = walk_files(&out);
        assert!(
            !restored.is_empty() && restored.len() < total,
            "{what}: {} of {total} restored",
            restored.len()
        );
        for rel in &restored {
            assert_eq!(
                std::fs::read(out.join(rel)).unwrap(),
                std::fs::read(src.join(rel)).unwrap(),
                "{what}: {} was restored with wrong bytes",
                rel.display()
            );
        }
        if what == "a flipped bit" {
            assert!(
                r.stderr.contains("it hit") || r.stderr.contains("not restored:"),
                "{what}: names what it hit: {r:?}"
            );
            assert!(restored.len() + 3 >= total, "{what}: one block lost {} files", total - restored.len());
        }
    }
}

/// Regular files under `root`, relative.
fn walk_files(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.push(e.path().strip_prefix(root).unwrap().to_owned());
            }
        }
    }
    out.sort();
    out
}

/// `cairn volume scan` rebuilds a datastore and its catalog from volumes
/// alone: the same snapshot ids, tags and notes, `verify` passes, a restore
/// equals the source, and scanning again adds nothing.
#[test]
fn a_datastore_is_rebuilt_from_volumes_alone() {
    let store = Store::new();
    let src = store.path("src");
    testkit::write_random_tree(&src, 12, 3 << 20, 21);
    let tree_id = crate::support::run_ok(
        store
            .cmd()
            .args(["backup", "--group", "host/s", "--time", "2026-03-01T00:00:00Z", "--tag", "weekly"])
            .arg(&src),
    )
    .lines()
    .last()
    .unwrap()
    .trim()
    .to_owned();
    let image = store.path("disk.img");
    disk_image(&image, 9 << 20);
    let image_id = store.backup(&image, "vm/7", "2026-03-02T00:00:00Z");
    crate::support::run_ok(store.cmd().args(["notes", &tree_id, "--set", "kept for the audit"]));
    let vol = store.path("Vol6");
    crate::support::run_ok(store.cmd().args(["volume", "write", &tree_id, &image_id, "--to"]).arg(&vol));

    let fresh = store.path("rebuilt");
    let cairn = |ds: &Path| crate::support::cairn(ds);
    let done = run_json(cairn(&fresh).args(["volume", "scan", "--json"]).arg(&vol));
    let states: Vec<_> = done
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["snapshot"].as_str().unwrap().to_owned(), s["state"].clone()))
        .collect();
    assert_eq!(states, [(tree_id.clone(), "added".into()), (image_id.clone(), "added".into())], "{done}");
    let snaps = run_json(cairn(&fresh).args(["snapshots", "--json"]));
    assert_eq!(snaps[0]["id"], tree_id.as_str());
    assert_eq!(snaps[0]["tags"], serde_json::json!(["weekly"]));
    assert_eq!(snaps[0]["notes"], "kept for the audit", "{snaps}");
    assert_eq!(crate::support::run_ok(cairn(&fresh).args(["notes", &tree_id])).trim(), "kept for the audit");
    crate::support::run_code(cairn(&fresh).args(["verify", "--all"]), 0);
    let out = store.path("out");
    crate::support::run_ok(cairn(&fresh).args(["restore", &tree_id]).arg(&out));
    assert_eq!(walk_files(&out), walk_files(&src));
    for rel in walk_files(&src) {
        assert_eq!(
            std::fs::read(out.join(&rel)).unwrap(),
            std::fs::read(src.join(&rel)).unwrap(),
            "{}",
            rel.display()
        );
    }
    let img = store.path("img-out");
    crate::support::run_ok(cairn(&fresh).args(["restore", &image_id]).arg(&img));
    assert_eq!(std::fs::read(&img).unwrap(), std::fs::read(&image).unwrap());
    let again = run_json(cairn(&fresh).args(["volume", "scan", "--json"]).arg(&vol));
    assert!(again.as_array().unwrap().iter().all(|s| s["state"] == "present"), "{again}");
}

/// With `--max-size`, a session that does not fit goes on in `FILE.2`,
/// `FILE.3`, …: listed and extracted whole from the set, and a set with a
/// volume missing is reported as such.
#[test]
fn a_session_spans_volume_files_and_reads_back_whole() {
    let store = Store::new();
    let src = store.path("src");
    testkit::write_random_tree(&src, 16, 3 << 20, 31);
    let id = store.backup(&src, "host/span", "2026-03-01T00:00:00Z");
    let vols = store.path("vols");
    std::fs::create_dir_all(&vols).unwrap();
    let vol = vols.join("Span");
    let report = run_json(
        store
            .cmd()
            .args(["volume", "write", &id, "--block-size", "64K", "--max-size", "1M", "--json", "--to"])
            .arg(&vol),
    );
    let more = report["continued_in"].as_array().expect("continued").len();
    assert!(more >= 2, "{report}");
    let mut set = vec![vol.clone()];
    set.extend((2..=more + 1).map(|n| vols.join(format!("Span.{n}"))));
    for f in &set {
        assert!(std::fs::metadata(f).unwrap().len() <= 1 << 20, "{} over its limit", f.display());
    }
    let listed = run_json(store.cmd().args(["volume", "ls", "--json"]).args(&set));
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["snapshot"], id.as_str());
    let out = store.path("out");
    crate::support::run_ok(store.cmd().args(["volume", "extract"]).args(&set).arg(&out));
    assert_eq!(walk_files(&out), walk_files(&src));
    for rel in walk_files(&src) {
        assert_eq!(
            std::fs::read(out.join(&rel)).unwrap(),
            std::fs::read(src.join(&rel)).unwrap(),
            "{}",
            rel.display()
        );
    }
    // One file of it, by --path: it alone, by its last name.
    let one = walk_files(&src).pop().unwrap();
    let picked = store.path("picked");
    let path = format!("src/{}", one.display());
    crate::support::run_ok(store.cmd().args(["volume", "extract", "--path", &path]).args(&set).arg(&picked));
    let name = std::path::PathBuf::from(one.file_name().unwrap());
    assert_eq!(walk_files(&picked), std::slice::from_ref(&name));
    assert_eq!(std::fs::read(picked.join(&name)).unwrap(), std::fs::read(src.join(&one)).unwrap());
    // The set without its last volume: what it holds is restored, the
    // cut is reported.
    let short = &set[..set.len() - 1];
    let partial = store.path("partial");
    let r = crate::support::run(store.cmd().args(["volume", "extract"]).args(short).arg(&partial));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("damaged:") && r.stderr.contains("missing"), "{r:?}");
    for rel in walk_files(&partial) {
        assert_eq!(
            std::fs::read(partial.join(&rel)).unwrap(),
            std::fs::read(src.join(&rel)).unwrap(),
            "{}",
            rel.display()
        );
    }
}
