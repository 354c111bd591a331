//! The CLI surface: init, snapshot ids with namespaces, archive naming for
//! several sources, and the keys of the JSON outputs.

use std::fs;

use serde_json::Value;
use testkit::write_random_tree;

use crate::support::{Store, assert_same_tree, cairn, run, run_code, run_ok, str_of};

#[test]
fn init_is_idempotent_and_refuses_foreign_directories() {
    let store = Store::new();
    run_ok(store.cmd().arg("init"));
    // Again, over a datastore that holds a snapshot: nothing changes.
    let src = store.path("src");
    write_random_tree(&src, 5, 200_000, 9);
    let id = store.backup(&src, "host/init", "2026-11-01T00:00:00Z");
    let (chunks, listed) = (testkit::chunk_files(&store.ds), store.snapshots());
    let config = fs::read(store.ds.join("cairn-datastore.json")).expect("datastore config");
    run_ok(store.cmd().arg("init"));
    assert_eq!(testkit::chunk_files(&store.ds), chunks);
    assert_eq!(store.snapshots(), listed);
    assert_eq!(fs::read(store.ds.join("cairn-datastore.json")).unwrap(), config);
    run_code(store.cmd().args(["verify", &id]), 0);
    // Listing or removing users and tokens needs a datastore; a mistyped
    // path is an error, not a new datastore.
    let mistyped = store.path("no-such/ds");
    for args in [&["token", "list"][..], &["user", "list"], &["token", "revoke", "x"], &["user", "rm", "x"]] {
        let r = run(cairn(&mistyped).args(args));
        assert_eq!(r.code, 1, "{args:?}: {r:?}");
        assert!(!store.path("no-such").exists(), "{args:?} made {}", mistyped.display());
    }
    // A group without snapshots named to verify or prune is most likely a typo.
    for args in [&["verify", "host/typo"][..], &["prune", "host/typo", "--keep-last", "1"]] {
        let r = run(store.cmd().args(args));
        assert_eq!(r.code, 1, "{args:?}: {r:?}");
        assert!(r.stderr.contains("group host/typo has no snapshots"), "{args:?}: {r:?}");
    }
    let r = run(store.cmd().args(["token", "create", "--name", "web\n\u{1b}[31mroot", "--group", "host/a"]));
    assert!(r.code == 1 && r.stderr.contains("printable"), "a name with control characters: {r:?}");
    let foreign = store.path("foreign");
    fs::create_dir(&foreign).expect("mkdir");
    fs::write(foreign.join("precious.txt"), "mine").expect("write");
    let r = run(cairn(&foreign).arg("init"));
    assert_eq!(r.code, 1, "init of a non-empty foreign directory must fail: {r:?}");
    assert!(!r.stderr.trim().is_empty());
    assert_eq!(fs::read_dir(&foreign).expect("list").count(), 1, "init wrote into a foreign directory");
    let r = run(cairn(&store.path("missing")).args(["snapshots"]));
    assert_eq!(r.code, 1, "a command on a missing datastore must fail: {r:?}");
}

#[test]
fn several_sources_namespaces_and_json_keys() {
    let store = Store::new();
    let (one, two, file) = (store.path("x/www"), store.path("y/www"), store.path("y/disk.raw"));
    write_random_tree(&one, 5, 100_000, 1);
    write_random_tree(&two, 5, 100_000, 2);
    fs::write(&file, vec![7u8; 9000]).expect("write");
    let time = "2026-11-22T03:00:00Z";
    let id = store.backup_with(&[&one, &two, &file], "host/web01", time, &["--ns", "team/a", "--tag", "t1"]);
    assert_eq!(id, format!("ns/team/a/host/web01/{time}"));
    // Archives are listed in the order the sources were given.
    let archives: Vec<String> =
        run_ok(store.cmd().args(["ls", &id])).lines().map(|l| l.trim().to_owned()).collect();
    assert_eq!(
        archives,
        vec!["www/", "www-2/", "disk.raw.img"].into_iter().map(String::from).collect::<Vec<_>>()
    );

    let out = store.path("out");
    store.restore(&id, &out, &[]);
    assert_same_tree(&one, &out.join("www"));
    assert_same_tree(&two, &out.join("www-2"));
    assert_eq!(fs::read(out.join("disk.raw.img")).expect("image restored"), vec![7u8; 9000]);

    let snaps = store.snapshots();
    assert_eq!(snaps.len(), 1);
    for key in ["id", "time", "tags", "size", "stored", "protected", "verify_state", "files", "errors"] {
        assert!(!snaps[0][key].is_null(), "snapshots --json lacks {key}: {}", snaps[0]);
    }
    assert_eq!(snaps[0]["tags"], serde_json::json!(["t1"]));
    assert_eq!(str_of(&snaps[0], "verify_state"), "none");
    let group = run_ok(store.cmd().args(["snapshots", "ns/team/a/host/web01", "--json"]));
    assert_eq!(serde_json::from_str::<Value>(&group).expect("json"), Value::Array(snaps));

    let summary = store.backup_json(&one, "host/solo", time);
    for key in ["id", "files", "size", "stored", "new_chunks", "duration_ms", "errors"] {
        assert!(!summary[key].is_null(), "backup --json lacks {key}: {summary}");
    }
    assert_eq!(summary["files"], 5);
    assert_eq!(summary["errors"], serde_json::json!([]));
    // The image first: TARGET, which does not exist yet, is made for it.
    let img_first = store.backup_with(&[&file, &one], "host/img", time, &[]);
    let out = store.path("img-first");
    store.restore(&img_first, &out, &[]);
    assert_eq!(fs::read(out.join("disk.raw.img")).expect("image restored"), vec![7u8; 9000]);
    assert_same_tree(&one, &out.join("www"));
}

/// A name from a snapshot never reaches the terminal raw: a file named
/// with an escape sequence that retitles a terminal (`ESC ] 0 ; … BEL`)
/// is shown escaped in restore's warnings and errors, in `ls` and in
/// error messages.
#[test]
fn names_from_a_snapshot_are_printed_escaped() {
    let store = Store::new();
    let src = store.path("src");
    fs::create_dir_all(&src).unwrap();
    let evil = "\x1b]0;owned\x07";
    fs::write(src.join(format!("{evil}.txt")), b"x").unwrap();
    // A socket is not restored: its restore makes a warning naming it.
    let _socket = std::os::unix::net::UnixListener::bind(src.join(evil)).unwrap();
    let id = store.backup(&src, "host/esc", "2026-05-01T00:00:00Z");
    let shown = "\\x1b]0;owned\\x07";
    let clean = |r: &crate::support::Run| {
        for text in [&r.stdout, &r.stderr] {
            assert!(!text.contains(['\x1b', '\x07']), "a raw control character was printed: {text:?}");
        }
    };

    let out = store.path("out");
    let r = run(store.cmd().args(["restore", &id]).arg(&out));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains(&format!("{shown}: socket not restored")), "{}", r.stderr);
    clean(&r);
    // Again: the file exists, and the error names it.
    let r = run(store.cmd().args(["restore", &id]).arg(&out));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains(&format!("{shown}.txt already exists")), "{}", r.stderr);
    clean(&r);
    for args in [&["ls", "-R"][..], &["ls", "-l"]] {
        let r = run(store.cmd().args(args).arg(&id).arg("src"));
        assert_eq!(r.code, 0, "{r:?}");
        assert!(r.stdout.contains(&format!("src/{shown}.txt")), "{}", r.stdout);
        clean(&r);
    }
    let r = run(store.cmd().args(["ls", &id]).arg(format!("src/{evil}/nope")));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains(&format!("{shown}/nope: no such path")), "{}", r.stderr);
    clean(&r);
}

/// Two backups of one group in the same second: without `--time` the
/// second one waits for the next second; with `--time` a taken second is
/// still refused.
#[test]
fn a_backup_without_time_waits_out_a_taken_second() {
    let store = Store::new();
    let src = store.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), b"a").unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    // This second and the next are taken.
    for t in [now, now + 1] {
        store.backup(&src, "host/a", &model::time::format_rfc3339(t));
    }
    let at = model::time::format_rfc3339(now);
    let r = run(store.cmd().args(["backup", "--group", "host/a", "--time", &at]).arg(&src));
    assert!(r.code != 0 && r.stderr.contains("already exists"), "{r:?}");
    let id = run_ok(store.cmd().args(["backup", "--group", "host/a"]).arg(&src))
        .trim()
        .lines()
        .last()
        .unwrap()
        .to_owned();
    assert_eq!(store.snapshots().len(), 3, "{id}");
}
