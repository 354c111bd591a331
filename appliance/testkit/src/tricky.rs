//! The tricky-file corpus: one tree holding every filesystem case a backup
//! must restore faithfully. Must run as root (devices, owners, setuid).

use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::fcntl::AT_FDCWD;
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, makedev, mknod, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::mkfifo;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::content::write_random_file;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// What [`build_tricky_tree`] made. Paths are relative to the tree root.
#[derive(Debug, Clone, Default)]
pub struct TreeInfo {
    /// Names of every kind below the root (hard links counted per name).
    pub entries: usize,
    /// Directories below the root.
    pub dirs: usize,
    /// Regular-file names (hard links counted per name).
    pub files: usize,
    /// Symbolic links.
    pub symlinks: usize,
    /// FIFOs and device nodes.
    pub specials: usize,
    /// Hard-link groups, each its names.
    pub link_groups: Vec<Vec<PathBuf>>,
    /// A directory holding two of the three names of the first link group;
    /// the third name lives elsewhere.
    pub partial_link_dir: PathBuf,
    /// An ordinary multi-MiB regular file.
    pub single_file: PathBuf,
    /// The 5 GiB file with about 1 MiB of data beyond 4 GiB.
    pub sparse_file: PathBuf,
    /// The file at the bottom of the 40-level directory chain.
    pub deep_file: PathBuf,
    /// A file whose name is not UTF-8 (`caf\xe9`).
    pub non_utf8_file: PathBuf,
    /// A subdirectory with user xattrs and ACLs on its members.
    pub xattr_dir: PathBuf,
}

/// Builds the tricky tree under `root` (created if missing) and returns what
/// it holds. Content is seeded, so two calls build equal trees (except inode
/// numbers and ctimes).
///
/// Panics with a message when a case cannot be made, including when the
/// `setfacl` command (Debian package `acl`) is missing. Needs root: a test
/// that calls it checks [`crate::needs`]`(Need::Root)` first.
pub fn build_tricky_tree(root: &Path) -> TreeInfo {
    let b = Builder { root: root.to_path_buf() };
    b.dir("");
    let mut rng = StdRng::seed_from_u64(0x7121_c4e5);
    b.plain_files(&mut rng);
    b.modes();
    b.owners();
    b.symlinks();
    let link_groups = b.hard_links();
    b.sparse();
    b.specials();
    b.xattrs();
    b.names();
    let deep_file = b.deep();
    let mut info = TreeInfo {
        link_groups,
        partial_link_dir: "hard/a".into(),
        single_file: "data/random-3m.bin".into(),
        sparse_file: "sparse/big-sparse.img".into(),
        deep_file,
        non_utf8_file: PathBuf::from(OsStr::from_bytes(b"names/caf\xe9")),
        xattr_dir: "xattrs".into(),
        ..TreeInfo::default()
    };
    let mut counter = 0u32;
    set_times_and_count(root, true, &mut counter, &mut info);
    info
}

struct Builder {
    root: PathBuf,
}

impl Builder {
    fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(rel)
    }

    fn dir(&self, rel: impl AsRef<Path>) -> PathBuf {
        let path = self.path(rel);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        path
    }

    fn write(&self, rel: impl AsRef<Path>, data: &[u8]) -> PathBuf {
        let path = self.path(rel);
        fs::write(&path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    fn chmod(&self, rel: impl AsRef<Path>, mode: u32) {
        let path = self.path(rel);
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    }

    fn chown(&self, rel: impl AsRef<Path>, uid: u32, gid: u32) {
        let path = self.path(rel);
        lchown(&path, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    }

    fn symlink(&self, target: &str, rel: &str) {
        let path = self.path(rel);
        symlink(target, &path).unwrap_or_else(|e| panic!("symlink {}: {e}", path.display()));
    }

    fn plain_files(&self, rng: &mut StdRng) {
        self.dir("empty-dir");
        self.write("empty-file", b"");
        self.write("small.txt", b"hello, cairn\n");
        self.dir("data");
        write_random_file(&self.path("data/random-3m.bin"), 3 * MIB, rng);
        write_random_file(&self.path("data/random-odd.bin"), 5 * MIB + 12_345, rng);
        for (i, size) in [1u64, 100, 4095, 4096, 4097, 65_536, 300_000].into_iter().enumerate() {
            write_random_file(&self.path(format!("data/small-{i}.bin")), size, rng);
        }
    }

    fn modes(&self) {
        self.dir("modes/sticky");
        self.dir("modes/dir-751");
        self.write("modes/setuid", b"#!/bin/sh\necho setuid\n");
        self.write("modes/secret", b"secret\n");
        self.write("modes/odd-751", b"751\n");
        self.chmod("modes/setuid", 0o4755);
        self.chmod("modes/secret", 0o600);
        self.chmod("modes/odd-751", 0o751);
        self.chmod("modes/sticky", 0o1777);
        self.chmod("modes/dir-751", 0o751);
    }

    fn owners(&self) {
        self.dir("owners/group-dir");
        self.write("owners/user-file", b"owned by 1234:5678\n");
        self.write("owners/group-dir/inner.txt", b"inside a dir owned by 0:4321\n");
        self.symlink("user-file", "owners/link-owned");
        self.chown("owners/user-file", 1234, 5678);
        self.chown("owners/group-dir", 0, 4321);
        self.chown("owners/link-owned", 1234, 5678);
    }

    fn symlinks(&self) {
        self.dir("links");
        self.symlink("../small.txt", "links/relative");
        self.symlink("/etc/passwd", "links/absolute");
        self.symlink("does/not/exist", "links/dangling");
        self.symlink("../data", "links/to-dir");
    }

    /// A group of three names over `hard/a` and `hard/b`, and a group of two
    /// in `hard/c`.
    fn hard_links(&self) -> Vec<Vec<PathBuf>> {
        self.dir("hard/a");
        self.dir("hard/b");
        self.dir("hard/c");
        self.write("hard/a/one", &[b'1'; 70_000]);
        self.write("hard/c/p1", b"pair\n");
        let groups = [vec!["hard/a/one", "hard/a/two", "hard/b/three"], vec!["hard/c/p1", "hard/c/p2"]];
        for group in &groups {
            for name in &group[1..] {
                let (from, to) = (self.path(group[0]), self.path(name));
                fs::hard_link(&from, &to).unwrap_or_else(|e| panic!("link {}: {e}", to.display()));
            }
        }
        groups.iter().map(|g| g.iter().map(PathBuf::from).collect()).collect()
    }

    /// 5 GiB long, 64 KiB of data at 0 and 1 MiB at 4.5 GiB.
    fn sparse(&self) {
        let path = self.dir("sparse").join("big-sparse.img");
        let file = File::create(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        file.set_len(5 * GIB).unwrap_or_else(|e| panic!("truncate {}: {e}", path.display()));
        let head: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
        let tail: Vec<u8> = (0..MIB as u32).map(|i| (i % 241 + 1) as u8).collect();
        file.write_all_at(&head, 0).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        file.write_all_at(&tail, 4 * GIB + GIB / 2)
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    fn specials(&self) {
        let dir = self.dir("special");
        mkfifo(&dir.join("fifo"), Mode::from_bits_truncate(0o640)).expect("mkfifo special/fifo");
        let devices =
            [("null-like", SFlag::S_IFCHR, makedev(1, 3)), ("loop200", SFlag::S_IFBLK, makedev(7, 200))];
        for (name, kind, dev) in devices {
            mknod(&dir.join(name), kind, Mode::from_bits_truncate(0o660), dev)
                .unwrap_or_else(|e| panic!("mknod special/{name}: {e}"));
        }
    }

    fn xattrs(&self) {
        let dir = self.dir("xattrs/acl-dir");
        let plain = self.write("xattrs/plain", b"with xattrs\n");
        let attrs: [(&str, &[u8]); 4] = [
            ("user.alpha", b"first value"),
            ("user.binary", &[0, 1, 2, 0xff, 0xfe, 0, b'\n', 0x80]),
            ("user.empty", b""),
            ("user.long", &[b'x'; 2000]),
        ];
        for (name, value) in attrs {
            xattr::set(&plain, name, value).unwrap_or_else(|e| panic!("setxattr {name}: {e}"));
        }
        xattr::set(&dir, "user.on-dir", b"dir value").expect("setxattr on a directory");
        let acl_file = self.write("xattrs/acl-file", b"with an access ACL\n");
        setfacl(&["-m", "u:1234:rw,g:5678:r"], &acl_file);
        setfacl(&["-m", "u:1234:rwx"], &dir);
        setfacl(&["-d", "-m", "u:1234:rx"], &dir);
    }

    fn names(&self) {
        let dir = self.dir("names");
        let long = vec![b'n'; 255];
        let names: [&[u8]; 5] = [b"caf\xe9", b"line\nbreak", b" spaced  name ", &long, b"-dash"];
        for name in names {
            let path = dir.join(OsStr::from_bytes(name));
            fs::write(&path, name).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }
        let odd_dir = dir.join(OsStr::from_bytes(b"dir \xff\x01"));
        fs::create_dir(&odd_dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", odd_dir.display()));
        fs::write(odd_dir.join("inside"), b"x").expect("write in an odd-named dir");
    }

    /// `deep/l01/…/l40/leaf.txt`.
    fn deep(&self) -> PathBuf {
        let mut rel = PathBuf::from("deep");
        for level in 1..=40 {
            rel.push(format!("l{level:02}"));
        }
        self.dir(&rel);
        rel.push("leaf.txt");
        self.write(&rel, b"forty levels down\n");
        rel
    }
}

/// Runs `setfacl ARGS PATH`; panics if it is missing or fails.
fn setfacl(args: &[&str], path: &Path) {
    let status = match Command::new("setfacl").args(args).arg(path).status() {
        Ok(status) => status,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("`setfacl` not found: install the Debian package `acl` (apt-get install acl)")
        }
        Err(e) => panic!("running setfacl: {e}"),
    };
    assert!(status.success(), "setfacl {args:?} {} failed: {status}", path.display());
}

/// Post-order pass: gives every entry (symlinks included, never followed) a
/// distinct mtime with a non-zero nanosecond part, after its children were
/// made, and counts the entries into `info`.
fn set_times_and_count(path: &Path, is_root: bool, counter: &mut u32, info: &mut TreeInfo) {
    let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
    let ft = meta.file_type();
    if ft.is_dir() {
        let mut children: Vec<PathBuf> = fs::read_dir(path)
            .unwrap_or_else(|e| panic!("read_dir {}: {e}", path.display()))
            .map(|e| e.expect("read_dir entry").path())
            .collect();
        children.sort();
        for child in children {
            set_times_and_count(&child, false, counter, info);
        }
    }
    if !is_root {
        info.entries += 1;
        match () {
            _ if ft.is_dir() => info.dirs += 1,
            _ if ft.is_file() => info.files += 1,
            _ if ft.is_symlink() => info.symlinks += 1,
            _ => info.specials += 1,
        }
    }
    *counter += 1;
    let n = i64::from(*counter);
    let mtime = TimeSpec::new(1_700_000_000 + n * 3_607, (n * 123_456_789 + 1) % 1_000_000_000);
    let atime = TimeSpec::new(1_750_000_000 + n, 0);
    utimensat(AT_FDCWD, path, &atime, &mtime, UtimensatFlags::NoFollowSymlink)
        .unwrap_or_else(|e| panic!("utimensat {}: {e}", path.display()));
}
