//! Tree comparison by raw name bytes: type, content, mode, owner, mtime with
//! nanoseconds, symlink target, device number, every xattr (ACLs included),
//! hard-link structure and allocated blocks.
//!
//! The comparison is directed: `a` is the source, `b` the copy or restore.
//! Only the block check is asymmetric (`b` may be sparser than `a`, not
//! denser). The two roots are compared like any other directory, mtime
//! included.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::content::content_digest;

/// How far a copy's allocation may exceed the source's before it counts as
/// "restored dense".
const BLOCK_SLACK_BYTES: u64 = 1 << 20;

/// Compares the trees under `a` (source) and `b` (copy). Returns one readable
/// line per difference, naming the path relative to the roots; empty when the
/// trees are equal.
pub fn compare_trees(a: &Path, b: &Path) -> Vec<String> {
    compare_trees_with(a, b, Fidelity::FULL)
}

/// What a comparison holds a copy to.
#[derive(Debug, Clone, Copy)]
pub struct Fidelity {
    /// mtimes to the nanosecond (else to the second).
    pub nanoseconds: bool,
    /// Extended attributes and ACLs.
    pub xattrs: bool,
}

impl Fidelity {
    /// Everything Cairn restores.
    pub const FULL: Fidelity = Fidelity { nanoseconds: true, xattrs: true };
    /// What a restore by Bacula's `bextract` keeps: times to the second,
    /// no extended attributes or ACLs.
    pub const BACULA: Fidelity = Fidelity { nanoseconds: false, xattrs: false };
}

/// [`compare_trees`], holding the copy only to `fidelity`.
pub fn compare_trees_with(a: &Path, b: &Path, fidelity: Fidelity) -> Vec<String> {
    let mut cmp =
        Comparer { a, b, fidelity, diffs: Vec::new(), inodes_a: HashMap::new(), inodes_b: HashMap::new() };
    cmp.entry(&[]);
    cmp.check_links();
    cmp.diffs
}

struct Comparer<'p> {
    a: &'p Path,
    b: &'p Path,
    fidelity: Fidelity,
    diffs: Vec<String>,
    /// Non-directory name → (dev, ino), per tree.
    inodes_a: HashMap<Vec<u8>, (u64, u64)>,
    inodes_b: HashMap<Vec<u8>, (u64, u64)>,
}

/// A relative path as bytes, shown with non-printable and non-ASCII bytes
/// escaped; the root shows as `.`.
fn show(rel: &[u8]) -> String {
    if rel.is_empty() { ".".to_owned() } else { rel.escape_ascii().to_string() }
}

fn join(root: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() { root.to_path_buf() } else { root.join(OsStr::from_bytes(rel)) }
}

fn kind(meta: &Metadata) -> &'static str {
    let ft = meta.file_type();
    match () {
        _ if ft.is_dir() => "directory",
        _ if ft.is_file() => "regular file",
        _ if ft.is_symlink() => "symlink",
        _ if ft.is_fifo() => "fifo",
        _ if ft.is_socket() => "socket",
        _ if ft.is_char_device() => "char device",
        _ if ft.is_block_device() => "block device",
        _ => "unknown",
    }
}

impl Comparer<'_> {
    fn diff(&mut self, rel: &[u8], what: String) {
        self.diffs.push(format!("{}: {what}", show(rel)));
    }

    fn entry(&mut self, rel: &[u8]) {
        let (pa, pb) = (join(self.a, rel), join(self.b, rel));
        let (ma, mb) = match (fs::symlink_metadata(&pa), fs::symlink_metadata(&pb)) {
            (Ok(ma), Ok(mb)) => (ma, mb),
            (ea, eb) => {
                let why = format!("cannot stat: a: {:?}, b: {:?}", ea.err(), eb.err());
                return self.diff(rel, why);
            }
        };
        if kind(&ma) != kind(&mb) {
            return self.diff(rel, format!("type {} != {}", kind(&ma), kind(&mb)));
        }
        self.metadata(rel, &ma, &mb);
        if self.fidelity.xattrs {
            self.xattrs(rel, &pa, &pb);
        }
        let ft = ma.file_type();
        if ft.is_dir() {
            return self.children(rel, &pa, &pb);
        }
        self.inodes_a.insert(rel.to_vec(), (ma.dev(), ma.ino()));
        self.inodes_b.insert(rel.to_vec(), (mb.dev(), mb.ino()));
        if ft.is_symlink() {
            let (ta, tb) = (fs::read_link(&pa).ok(), fs::read_link(&pb).ok());
            if ta != tb {
                self.diff(rel, format!("symlink target {ta:?} != {tb:?}"));
            }
        } else if ft.is_file() {
            self.file(rel, (&pa, &ma), (&pb, &mb));
        } else if (ft.is_char_device() || ft.is_block_device()) && ma.rdev() != mb.rdev() {
            self.diff(rel, format!("rdev {:#x} != {:#x}", ma.rdev(), mb.rdev()));
        }
    }

    fn metadata(&mut self, rel: &[u8], ma: &Metadata, mb: &Metadata) {
        if ma.mode() & 0o7777 != mb.mode() & 0o7777 {
            self.diff(rel, format!("mode {:#o} != {:#o}", ma.mode() & 0o7777, mb.mode() & 0o7777));
        }
        if (ma.uid(), ma.gid()) != (mb.uid(), mb.gid()) {
            self.diff(rel, format!("owner {}:{} != {}:{}", ma.uid(), ma.gid(), mb.uid(), mb.gid()));
        }
        let nsec = |m: &Metadata| if self.fidelity.nanoseconds { m.mtime_nsec() } else { 0 };
        if (ma.mtime(), nsec(ma)) != (mb.mtime(), nsec(mb)) {
            let (sa, na, sb, nb) = (ma.mtime(), ma.mtime_nsec(), mb.mtime(), mb.mtime_nsec());
            self.diff(rel, format!("mtime {sa}.{na:09} != {sb}.{nb:09}"));
        }
    }

    fn file(&mut self, rel: &[u8], (pa, ma): (&Path, &Metadata), (pb, mb): (&Path, &Metadata)) {
        if ma.len() != mb.len() {
            return self.diff(rel, format!("size {} != {}", ma.len(), mb.len()));
        }
        match (content_digest(pa), content_digest(pb)) {
            (Ok(da), Ok(db)) if da != db => self.diff(rel, "contents differ".to_owned()),
            (Ok(_), Ok(_)) => {}
            (ea, eb) => self.diff(rel, format!("cannot read: a: {:?}, b: {:?}", ea.err(), eb.err())),
        }
        let (ba, bb) = (ma.blocks() * 512, mb.blocks() * 512);
        if bb > ba + BLOCK_SLACK_BYTES {
            self.diff(rel, format!("allocated {bb} bytes, source only {ba}: sparseness lost"));
        }
    }

    fn xattrs(&mut self, rel: &[u8], pa: &Path, pb: &Path) {
        let (xa, xb) = (read_xattrs(pa), read_xattrs(pb));
        let (xa, xb) = match (xa, xb) {
            (Ok(xa), Ok(xb)) => (xa, xb),
            (ea, eb) => {
                return self.diff(rel, format!("cannot list xattrs: a: {:?}, b: {:?}", ea.err(), eb.err()));
            }
        };
        let names: BTreeSet<&OsString> = xa.keys().chain(xb.keys()).collect();
        for name in names {
            let shown = name.as_bytes().escape_ascii().to_string();
            match (xa.get(name), xb.get(name)) {
                (Some(_), None) => self.diff(rel, format!("xattr {shown} missing")),
                (None, Some(_)) => self.diff(rel, format!("xattr {shown} unexpected")),
                (Some(va), Some(vb)) if va != vb => {
                    let (va, vb) = (va.escape_ascii(), vb.escape_ascii());
                    self.diff(rel, format!("xattr {shown} value \"{va}\" != \"{vb}\""));
                }
                _ => {}
            }
        }
    }

    fn children(&mut self, rel: &[u8], pa: &Path, pb: &Path) {
        let (ca, cb) = match (list_names(pa), list_names(pb)) {
            (Ok(ca), Ok(cb)) => (ca, cb),
            (ea, eb) => return self.diff(rel, format!("cannot list: a: {:?}, b: {:?}", ea.err(), eb.err())),
        };
        for name in ca.union(&cb) {
            let mut child = rel.to_vec();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(name);
            match (ca.contains(name), cb.contains(name)) {
                (true, false) => self.diff(&child, "missing in copy".to_owned()),
                (false, true) => self.diff(&child, "not in source".to_owned()),
                _ => self.entry(&child),
            }
        }
    }

    /// The partition of non-directory names into same-inode groups must be
    /// the same in both trees.
    fn check_links(&mut self) {
        let (ga, gb) = (groups(&self.inodes_a), groups(&self.inodes_b));
        let mut seen = BTreeSet::new();
        let mut names: Vec<&Vec<u8>> =
            self.inodes_a.keys().filter(|n| self.inodes_b.contains_key(*n)).collect();
        names.sort();
        let mut found = Vec::new();
        for name in names {
            let (in_a, in_b) = (&ga[&self.inodes_a[name]], &gb[&self.inodes_b[name]]);
            if in_a != in_b && seen.insert((in_a.clone(), in_b.clone())) {
                let line = |g: &BTreeSet<Vec<u8>>| g.iter().map(|n| show(n)).collect::<Vec<_>>().join(", ");
                found.push((name.clone(), format!("hard-link group [{}] != [{}]", line(in_a), line(in_b))));
            }
        }
        for (name, what) in found {
            self.diff(&name, what);
        }
    }
}

fn groups(inodes: &HashMap<Vec<u8>, (u64, u64)>) -> HashMap<(u64, u64), BTreeSet<Vec<u8>>> {
    let mut out: HashMap<(u64, u64), BTreeSet<Vec<u8>>> = HashMap::new();
    for (name, ino) in inodes {
        out.entry(*ino).or_default().insert(name.clone());
    }
    out
}

fn list_names(dir: &Path) -> std::io::Result<BTreeSet<Vec<u8>>> {
    fs::read_dir(dir)?.map(|e| e.map(|e| e.file_name().as_bytes().to_vec())).collect()
}

/// Every xattr of `path` (not following symlinks), ACLs included.
fn read_xattrs(path: &Path) -> std::io::Result<BTreeMap<OsString, Vec<u8>>> {
    let mut out = BTreeMap::new();
    for name in xattr::list(path)? {
        let value = xattr::get(path, &name)?.unwrap_or_default();
        out.insert(name, value);
    }
    Ok(out)
}
