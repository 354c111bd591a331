//! Block devices and mount points: a loop device backed up as an image
//! archive and restored onto another device; `--one-file-system` stops at
//! a mount point inside the source.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use rand::{RngCore, SeedableRng, rngs::StdRng};

use crate::support::{Store, Tmpfs, run, run_ok, str_of};

const MIB: usize = 1 << 20;

/// A loop device over `file`, detached on drop.
struct Loop(PathBuf);

impl Loop {
    fn attach(file: &Path) -> Loop {
        let out = Command::new("losetup").args(["-f", "--show"]).arg(file).output().expect("run losetup");
        assert!(
            out.status.success(),
            "this test needs loop devices (root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Loop(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

#[test]
fn block_device_backup_and_restore_onto_a_device() {
    if !testkit::needs(testkit::Need::Root) {
        return;
    }
    let store = Store::new();
    // 20 MiB: 9 MiB of random data, then zeros (whole zero chunks), then a tail.
    let mut image = vec![0u8; 20 * MIB];
    StdRng::seed_from_u64(90).fill_bytes(&mut image[..9 * MIB]);
    image[19 * MIB..19 * MIB + 5].copy_from_slice(b"tail!");
    let source_file = store.path("source.raw");
    fs::write(&source_file, &image).expect("write image");
    let source = Loop::attach(&source_file);

    let id = store.backup(&source.0, "vm/100", "2026-04-01T00:00:00Z");
    let listed = run_ok(store.cmd().args(["ls", "--json", &id]));
    let archives: serde_json::Value = serde_json::from_str(&listed).expect("ls json");
    assert_eq!(archives[0]["type"], "image", "{archives}");
    assert_eq!(archives[0]["size"], image.len(), "{archives}");
    let name = str_of(&archives[0], "path").to_owned();

    // The target device starts full of 0xff, so zero chunks must really be written.
    let target_file = store.path("target.raw");
    fs::write(&target_file, vec![0xffu8; 20 * MIB]).expect("write target");
    let target = Loop::attach(&target_file);
    let r = run(store.cmd().args(["restore", &id]).arg(&target.0).args(["--path", &name]));
    assert!(r.code == 1 && r.stderr.contains("--overwrite"), "a device is replaced only on request: {r:?}");
    let untouched = fs::read(&target.0).expect("read the target device");
    assert!(untouched.iter().all(|b| *b == 0xff), "the refused restore wrote to the device");
    run_ok(store.cmd().args(["restore", &id]).arg(&target.0).args(["--path", &name, "--overwrite"]));
    drop(target);
    assert!(fs::read(&target_file).expect("read target") == image, "device restore differs from the source");

    // A device too small for the image is refused before anything is written.
    let small_file = store.path("small.raw");
    fs::write(&small_file, vec![0xeeu8; 8 * MIB]).expect("write small");
    let small = Loop::attach(&small_file);
    let r = run(store.cmd().args(["restore", &id]).arg(&small.0).args(["--path", &name, "--overwrite"]));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("too small"), "{}", r.stderr);
    drop(small);
    assert!(fs::read(&small_file).expect("read small").iter().all(|b| *b == 0xee), "a refused restore wrote");
}

#[test]
fn one_file_system_stops_at_mount_points() {
    if !testkit::needs(testkit::Need::Root) {
        return;
    }
    let store = Store::new();
    let src = store.path("src");
    fs::create_dir_all(src.join("local")).expect("mkdir");
    fs::write(src.join("local/file"), "on the root filesystem").expect("write");
    let mnt = src.join("mnt");
    let _tmpfs = Tmpfs::mount(&mnt, 4);
    fs::write(mnt.join("other"), "on another filesystem").expect("write");

    let all = store.backup(&src, "host/fs", "2026-04-02T00:00:00Z");
    let one = store.backup_with(&[&src], "host/fs", "2026-04-03T00:00:00Z", &["--one-file-system"]);
    let list = |id: &str| run_ok(store.cmd().args(["ls", "-R", id, "src"]));
    assert!(list(&all).lines().any(|l| l.trim() == "src/mnt/other"), "{}", list(&all));
    let listed = list(&one);
    assert!(listed.lines().any(|l| l.trim() == "src/mnt/"), "the mount point itself is kept: {listed}");
    assert!(!listed.contains("src/mnt/other"), "crossed into the mounted filesystem: {listed}");
    assert!(listed.lines().any(|l| l.trim() == "src/local/file"), "{listed}");
}
