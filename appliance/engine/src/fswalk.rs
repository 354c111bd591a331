//! Walking a source tree into archive entries, and reading a regular file's
//! data (with its sparse map) for the payload stream.
//!
//! The walk is depth first, a directory's entry before its children, the
//! children of each directory sorted by raw name bytes, so two walks of one
//! tree yield paths in the same order (change detection relies on it). The
//! root directory is the first entry, with the empty path.
//!
//! Listing a directory (its names, then each child's `lstat`, link target
//! and extended attributes) is a job for a pool of threads
//! (`prefetch.rs`) that list the directories the walk will enter
//! next, in that order; the walk itself only puts the listings' children
//! in order and numbers hard-link groups, so its items are those of a
//! walk on one thread. Listings done ahead are bounded (`AHEAD_LIMIT`
//! children, `DIR_WEIGHT` more per listing, which also bounds the
//! directories held open), and a big directory is listed in pieces of
//! `PIECE` children.
//!
//! Invariant: the walk never follows a symlink below the root (everything is
//! `lstat`ed; a symlink given as the root itself is resolved once), never
//! resolves a path from the root again: each directory is opened relative
//! to its open parent (`O_NOFOLLOW`), and its children are reached through
//! `/proc/self/fd/N/NAME`, so a directory swapped for a symlink while the
//! walk runs cannot lead it outside the tree; never
//! aborts on an unreadable or vanished object (it yields
//! [`WalkItem::Error`] and goes on), and never opens a file's data: that is
//! [`open_data`], called by the pipeline for regular files only.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use filevol::archive::{Entry, EntryKind, MAX_EXTENTS, MAX_PATH_LEN, check_entry};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{FileStat, Mode, fstat, fstatat};
use nix::unistd::{Whence, lseek};

use crate::prefetch::{Ordered, PoolTimes, Submit, Ticket};

/// What to leave out of a walk.
#[derive(Debug, Clone, Default)]
pub struct WalkOptions {
    /// Glob patterns. A pattern without `/` matches a name at any depth
    /// (`*.tmp`, `.cache`); one with `/` matches the path relative to the
    /// root (`var/cache/**`; a leading `/` is ignored). A trailing `/`
    /// restricts the pattern to directories. An excluded directory is not
    /// descended into.
    pub excludes: Vec<String>,
    /// Do not descend into directories on another filesystem than the root
    /// (the mount point itself is recorded, empty).
    pub one_file_system: bool,
    /// Threads listing directories ahead of the walk; none: the walk
    /// lists each directory as it enters it.
    pub threads: usize,
}

/// Why a walk could not start or a file's data could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("cannot read {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{} is not a directory; give a directory to back up", .0.display())]
    NotADirectory(PathBuf),
    #[error("bad exclude pattern {pattern:?}: {source}; use glob syntax (*, **, ?, [abc])")]
    BadExclude { pattern: String, source: globset::Error },
    #[error("{} is no longer a regular file; it was replaced during the backup", .0.display())]
    NotRegular(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalkError + '_ {
    move |source| WalkError::Io { path: path.to_owned(), source }
}

/// One step of a walk.
#[derive(Debug)]
pub enum WalkItem {
    /// An object to archive; `source` is the absolute path to read a regular
    /// file's data from.
    Entry { entry: Entry, source: Source },
    /// An object that could not be read; the walk goes on.
    Error { path: Vec<u8>, message: String },
}

/// Compiled exclude patterns: (set, per-pattern "directories only").
#[derive(Debug)]
struct Excludes {
    names: (GlobSet, Vec<bool>),
    paths: (GlobSet, Vec<bool>),
}

impl Excludes {
    fn new(patterns: &[String]) -> Result<Self, WalkError> {
        let (mut names, mut paths) =
            ((GlobSetBuilder::new(), Vec::new()), (GlobSetBuilder::new(), Vec::new()));
        for pattern in patterns {
            let trimmed = pattern.trim();
            let dir_only = trimmed.ends_with('/');
            let p = trimmed.trim_end_matches('/');
            if p.is_empty() {
                continue;
            }
            let bad = |source| WalkError::BadExclude { pattern: pattern.clone(), source };
            let (p, target) =
                if p.contains('/') { (p.trim_start_matches('/'), &mut paths) } else { (p, &mut names) };
            let glob =
                GlobBuilder::new(p).literal_separator(true).backslash_escape(true).build().map_err(bad)?;
            target.0.add(glob);
            target.1.push(dir_only);
        }
        let build = |(b, d): (GlobSetBuilder, Vec<bool>)| -> Result<_, WalkError> {
            let set =
                b.build().map_err(|source| WalkError::BadExclude { pattern: patterns.join(" "), source })?;
            Ok((set, d))
        };
        Ok(Self { names: build(names)?, paths: build(paths)? })
    }

    fn matches(&self, rel: &[u8], name: &[u8], is_dir: bool) -> bool {
        let hit = |(set, dir_only): &(GlobSet, Vec<bool>), what: &[u8]| {
            let path = Path::new(OsStr::from_bytes(what));
            set.is_match(path) && set.matches(path).iter().any(|i| is_dir || !dir_only[*i])
        };
        hit(&self.names, name) || hit(&self.paths, rel)
    }
}

/// Where to read an entry from: an absolute path, for a child of a
/// directory being walked `/proc/self/fd/N/NAME`, which holds that
/// directory open (`N` stays its descriptor) for as long as the `Source`
/// lives, so the file can be opened after the walk has moved on (the
/// backup's readers open files ahead of the reader).
#[derive(Debug, Clone)]
pub struct Source {
    path: PathBuf,
    /// The open directory and where the name starts in `path`.
    dir: Option<(Arc<OwnedFd>, usize)>,
}

impl Source {
    fn plain(path: PathBuf) -> Self {
        Self { path, dir: None }
    }

    /// The name inside the open directory, if there is one.
    fn at(&self) -> Option<(&OwnedFd, &[u8])> {
        let (dir, start) = self.dir.as_ref()?;
        Some((dir, &self.path.as_os_str().as_bytes()[*start..]))
    }

    /// The target of a symlink: through the directory's descriptor where
    /// there is one.
    fn read_link(&self) -> io::Result<PathBuf> {
        match self.at() {
            Some((dir, name)) => Ok(PathBuf::from(nix::fcntl::readlinkat(dir, name)?)),
            None => std::fs::read_link(&self.path),
        }
    }

    /// Open for reading, not following a symlink, with `flags` more:
    /// through the directory's descriptor where there is one.
    fn open(&self, flags: i32) -> io::Result<File> {
        match self.at() {
            Some((dir, name)) => {
                let flags =
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::from_bits_retain(flags);
                Ok(File::from(openat(dir, name, flags, Mode::empty())?))
            }
            None => OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | flags).open(&self.path),
        }
    }
}

impl std::ops::Deref for Source {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.path
    }
}

/// The path of `name` inside the open directory `dir`, resolved by the
/// kernel through the descriptor (never through the directory's own path).
fn child_path(dir: &Arc<OwnedFd>, name: &[u8]) -> Source {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    let start = p.len();
    p.extend_from_slice(name);
    Source { path: PathBuf::from(std::ffi::OsString::from_vec(p)), dir: Some((dir.clone(), start)) }
}

/// Directory listings (with each child's `lstat`, link target and
/// extended attributes) done and not yet walked weigh at most this many
/// children, a directory counting [`DIR_WEIGHT`] more: about 4 MiB of
/// entries, and at most 128 directories held open ahead of the walk.
const AHEAD_LIMIT: usize = 16_384;
const DIR_WEIGHT: usize = 128;
/// Children looked at per listing job: a bigger directory is listed in
/// pieces, the rest of its names a job of its own (which another thread
/// may start at once), so a directory of a million names holds its names
/// ahead of the walk, not a million entries.
const PIECE: usize = 1_024;

/// A directory to list: how to open it, and its path in the archive.
struct DirJob {
    open: DirOpen,
    rel: Vec<u8>,
    /// Where the walk enters the directory: the child indices leading to
    /// it.
    key: Vec<u32>,
}

enum DirOpen {
    /// The root: open, its names listed.
    Root(Arc<OwnedFd>, Vec<Vec<u8>>),
    /// A child of an open directory, which must still be the object its
    /// `lstat` saw when it is opened.
    Child { parent: Arc<OwnedFd>, name: Vec<u8>, dev: u64, ino: u64 },
    /// The names of a directory being listed, from `start` on.
    Rest { dir: Arc<OwnedFd>, names: Arc<Vec<Vec<u8>>>, start: usize },
}

/// Up to [`PIECE`] of a directory's children, in walk order, and the
/// listing of the rest.
struct Piece {
    children: Vec<Child>,
    rest: Option<Pending>,
}

/// A piece of a directory's listing, or why it could not be listed.
type Listing = Result<Piece, Refusal>;

/// A listing handed to the pool, for the walk to take.
type Pending = Ticket<DirJob, Listing>;

/// An object the walk could not archive, and why: a [`WalkItem::Error`].
struct Refusal {
    path: Vec<u8>,
    message: String,
}

impl From<Refusal> for WalkItem {
    fn from(Refusal { path, message }: Refusal) -> Self {
        WalkItem::Error { path, message }
    }
}

/// One child of a listed directory.
// Nearly every child is `Found`: boxing it would cost an allocation each.
#[allow(clippy::large_enum_variant)]
enum Child {
    /// Not archived; the walk reports it and goes on.
    Skipped(Refusal),
    Found {
        entry: Entry,
        source: Source,
        /// (dev, ino) of a regular file with more than one name.
        inode: Option<(u64, u64)>,
        xattr_error: Option<io::Error>,
        /// A directory to descend into: its listing.
        sub: Option<Pending>,
    },
}

/// What every listing needs to know of the walk.
#[derive(Debug)]
struct Rules {
    excludes: Excludes,
    one_file_system: bool,
    root_dev: u64,
}

/// A depth-first walk of a source tree; see the module doc for the order.
///
/// With `WalkOptions::threads` above zero, that many threads list
/// directories (and `lstat` their children) ahead of the walk, in the
/// order the walk will enter them; the walk itself only puts the
/// listings in order, so its items are those of a walk on one thread.
pub struct Walker {
    pool: Ordered<DirJob, Listing>,
    /// The children left to walk at each level, and the listing of the
    /// level's next piece.
    stack: Vec<(std::vec::IntoIter<Child>, Option<Pending>)>,
    /// The root's listing, until the walk starts.
    root: Option<Pending>,
    pending: VecDeque<WalkItem>,
    /// (dev, ino) → hard-link group, only for files with more than one name.
    links: HashMap<(u64, u64), u64>,
}

impl std::fmt::Debug for Walker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Walker").field("depth", &self.stack.len()).finish_non_exhaustive()
    }
}

impl Walker {
    /// Start a walk at `root`, a directory (a symlink to one is resolved).
    pub fn new(root: &Path, opts: &WalkOptions) -> Result<Walker, WalkError> {
        let excludes = Excludes::new(&opts.excludes)?;
        let lstat = |p: &Path| nix::sys::stat::lstat(p).map(Stat::from).map_err(|e| io_err(p)(e.into()));
        let mut root = root.to_owned();
        let mut meta = lstat(&root)?;
        if meta.kind() == EntryKind::Symlink {
            root = std::fs::canonicalize(&root).map_err(io_err(&root))?;
            meta = lstat(&root)?;
        }
        if meta.kind() != EntryKind::Dir {
            return Err(WalkError::NotADirectory(root));
        }
        let dir: OwnedFd = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(&root)
            .map_err(io_err(&root))?
            .into();
        let names = list_dir(&dir).map_err(io_err(&root))?;
        let rules = Rules { excludes, one_file_system: opts.one_file_system, root_dev: meta.dev };
        let failed = || Err(Refusal { path: Vec::new(), message: "the walking thread failed".into() });
        let pool =
            Ordered::new("cairn-list", opts.threads, AHEAD_LIMIT, failed, move |job: DirJob, submit| {
                // A listing that fails (a bug) is that directory's error,
                // whichever thread ran it; the walk goes on.
                let path = job.rel.clone();
                let listing =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| list(job, &rules, submit)))
                        .unwrap_or_else(|_| {
                            Err(Refusal {
                                path,
                                message: "cannot list directory: the walk failed here".into(),
                            })
                        });
                let weight = DIR_WEIGHT + listing.as_ref().map_or(0, |p| p.children.len());
                (listing, weight)
            });
        let job = DirJob { open: DirOpen::Root(Arc::new(dir), names), rel: Vec::new(), key: Vec::new() };
        let root_listing = pool.submit(Vec::new(), job);
        let mut pending = VecDeque::new();
        let source = Source::plain(root);
        match make_entry(Vec::new(), &source, &meta) {
            Ok((entry, xattr_error)) => push_found(&mut pending, entry, source, xattr_error),
            Err(refusal) => pending.push_back(refusal.into()),
        }
        Ok(Walker { pool, stack: Vec::new(), root: Some(root_listing), pending, links: HashMap::new() })
    }

    /// The clock of the threads listing directories (and of the walk
    /// listing those no thread had started).
    pub fn times(&self) -> Arc<PoolTimes> {
        self.pool.times()
    }

    /// Descend into a listed directory.
    fn enter(&mut self, listing: Pending) {
        match self.pool.take(listing) {
            Ok(piece) => self.stack.push((piece.children.into_iter(), piece.rest)),
            Err(refusal) => self.pending.push_back(refusal.into()),
        }
    }
}

impl Iterator for Walker {
    type Item = WalkItem;

    fn next(&mut self) -> Option<WalkItem> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if let Some(root) = self.root.take() {
                self.enter(root);
                continue;
            }
            let (level, rest) = self.stack.last_mut()?;
            let Some(child) = level.next() else {
                let rest = rest.take();
                self.stack.pop();
                if let Some(rest) = rest {
                    self.enter(rest);
                }
                continue;
            };
            match child {
                Child::Skipped(refusal) => return Some(refusal.into()),
                Child::Found { mut entry, source, inode, xattr_error, sub } => {
                    if let Some(inode) = inode {
                        let next = self.links.len() as u64 + 1;
                        entry.hardlink = *self.links.entry(inode).or_insert(next);
                    }
                    push_found(&mut self.pending, entry, source, xattr_error);
                    if let Some(sub) = sub {
                        self.enter(sub);
                    }
                }
            }
        }
    }
}

/// Queue an entry, and the error about its extended attributes if any.
fn push_found(
    pending: &mut VecDeque<WalkItem>,
    entry: Entry,
    source: Source,
    xattr_error: Option<io::Error>,
) {
    let path = xattr_error.as_ref().map(|_| entry.path.clone());
    pending.push_back(WalkItem::Entry { entry, source });
    if let (Some(path), Some(e)) = (path, xattr_error) {
        pending.push_back(refusal(path, &e, "extended attributes not backed up").into());
    }
}

fn refusal(path: Vec<u8>, e: &io::Error, what: &str) -> Refusal {
    let message = if e.kind() == io::ErrorKind::NotFound {
        "vanished during the backup".to_owned()
    } else {
        format!("{what}: {e}")
    };
    Refusal { path, message }
}

/// List a directory: open it (a child through its parent, checked to be
/// the directory its `lstat` saw), read its names, and look at each in
/// name order; hand in the listing of each subdirectory to descend into.
fn list(job: DirJob, rules: &Rules, submit: &Submit<'_, DirJob, Listing>) -> Listing {
    let DirJob { open, rel, key } = job;
    let (dir, names, start) = match open {
        DirOpen::Root(dir, names) => (dir, Arc::new(names), 0),
        DirOpen::Rest { dir, names, start } => (dir, names, start),
        DirOpen::Child { parent, name, dev, ino } => {
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let dir = openat(&parent, name.as_slice(), flags, Mode::empty())
                .map_err(|e| refusal(rel.clone(), &io::Error::from(e), "cannot open directory"))?;
            match fstat(&dir) {
                Ok(st) if st.st_dev == dev && st.st_ino == ino => {}
                Ok(_) => {
                    let message =
                        "replaced while the backup read it; its contents are not backed up".to_owned();
                    return Err(Refusal { path: rel, message });
                }
                Err(e) => return Err(refusal(rel, &io::Error::from(e), "cannot open directory")),
            }
            let names = list_dir(&dir).map_err(|e| refusal(rel.clone(), &e, "cannot list directory"))?;
            (Arc::new(dir), Arc::new(names), 0)
        }
    };
    // Keyed by the index of its first name: after this piece's children
    // and everything below them, before the subdirectories it finds.
    let end = names.len().min(start + PIECE);
    let rest = (end < names.len()).then(|| {
        let mut at = key.clone();
        at.push(end as u32);
        let open = DirOpen::Rest { dir: dir.clone(), names: names.clone(), start: end };
        submit.submit(at, DirJob { open, rel: rel.clone(), key: key.clone() })
    });
    let mut children = Vec::with_capacity(end - start);
    for (i, name) in names[start..end].iter().enumerate() {
        let mut path = rel.clone();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name);
        let child = look_at(&dir, name.clone(), path, rules, |job| {
            let mut k = key.clone();
            k.push((start + i) as u32);
            submit.submit(k.clone(), DirJob { key: k, ..job })
        });
        children.extend(child);
    }
    Ok(Piece { children, rest })
}

/// Look at one child of `dir`: its entry (or why not), and, for a
/// directory to descend into, its listing handed in through `descend`.
/// `None` when it is excluded.
fn look_at(
    dir: &Arc<OwnedFd>,
    name: Vec<u8>,
    rel: Vec<u8>,
    rules: &Rules,
    descend: impl FnOnce(DirJob) -> Pending,
) -> Option<Child> {
    if rel.len() > MAX_PATH_LEN {
        let message = "path longer than 4096 bytes; not backed up (shorten the path)".to_owned();
        return Some(Child::Skipped(Refusal { path: rel, message }));
    }
    // Through the descriptor, not the `/proc` path: the kernel then
    // resolves one name instead of five.
    let meta = match fstatat(dir, name.as_slice(), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Stat::from(st),
        Err(e) => return Some(Child::Skipped(refusal(rel, &io::Error::from(e), "cannot read"))),
    };
    let is_dir = meta.kind() == EntryKind::Dir;
    if rules.excludes.matches(&rel, &name, is_dir) {
        return None;
    }
    let source = child_path(dir, &name);
    let (entry, xattr_error) = match make_entry(rel, &source, &meta) {
        Ok(found) => found,
        Err(refusal) => return Some(Child::Skipped(refusal)),
    };
    let inode = (entry.kind == EntryKind::File && meta.nlink > 1).then_some((meta.dev, meta.ino));
    let sub = (is_dir && !(rules.one_file_system && meta.dev != rules.root_dev)).then(|| {
        let open = DirOpen::Child { parent: dir.clone(), name, dev: meta.dev, ino: meta.ino };
        descend(DirJob { open, rel: entry.path.clone(), key: Vec::new() })
    });
    Some(Child::Found { entry, source, inode, xattr_error, sub })
}

/// The entry for `meta` at `rel` (hard-link group not set), with the
/// error reading its extended attributes if any; or why it is not
/// archived.
fn make_entry(rel: Vec<u8>, source: &Source, meta: &Stat) -> Result<(Entry, Option<io::Error>), Refusal> {
    let mut entry = entry_from_meta(rel, meta);
    if entry.kind == EntryKind::Symlink {
        match source.read_link() {
            Ok(t) => entry.link_target = t.into_os_string().into_vec(),
            Err(e) => return Err(refusal(entry.path, &e, "cannot read symlink")),
        }
    }
    let none = source.at().is_some_and(|(dir, name)| no_xattrs_at(dir, name));
    let xattr_error = match if none { Ok(Vec::new()) } else { read_xattrs(source) } {
        Ok(x) => {
            entry.xattrs = x;
            None
        }
        Err(e) => Some(e),
    };
    if let Err(e) = check_entry(&entry) {
        return Err(Refusal { message: format!("not backed up: {e}"), path: entry.path });
    }
    Ok((entry, xattr_error))
}

/// The names in the open directory `dir`, sorted by their bytes. They are
/// read through a duplicate of its descriptor (the directory is not
/// opened again by a path); the duplicate shares the reading position,
/// and nothing else reads names through `dir`.
fn list_dir(dir: &OwnedFd) -> io::Result<Vec<Vec<u8>>> {
    let mut stream = nix::dir::Dir::from_fd(dir.try_clone()?)?;
    let mut names = Vec::new();
    for item in stream.iter() {
        let item = item?;
        let name = item.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// What the walk keeps of a `stat` answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stat {
    /// `st_mode`: type and permission bits.
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    ctime: (i64, i64),
    dev: u64,
    ino: u64,
    nlink: u64,
    size: u64,
    rdev: u64,
}

impl From<FileStat> for Stat {
    fn from(st: FileStat) -> Self {
        Self {
            mode: st.st_mode,
            uid: st.st_uid,
            gid: st.st_gid,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
            dev: st.st_dev,
            ino: st.st_ino,
            nlink: st.st_nlink,
            size: st.st_size as u64,
            rdev: st.st_rdev,
        }
    }
}

impl Stat {
    fn kind(&self) -> EntryKind {
        match self.mode & libc::S_IFMT {
            libc::S_IFDIR => EntryKind::Dir,
            libc::S_IFLNK => EntryKind::Symlink,
            libc::S_IFIFO => EntryKind::Fifo,
            libc::S_IFCHR => EntryKind::CharDev,
            libc::S_IFBLK => EntryKind::BlockDev,
            libc::S_IFSOCK => EntryKind::Socket,
            _ => EntryKind::File,
        }
    }
}

fn entry_from_meta(path: Vec<u8>, meta: &Stat) -> Entry {
    let kind = meta.kind();
    let nsec = |n: i64| n.clamp(0, 999_999_999) as u32;
    Entry {
        path,
        kind,
        mode: meta.mode & 0o7777,
        uid: meta.uid,
        gid: meta.gid,
        mtime: meta.mtime.0,
        mtime_nsec: nsec(meta.mtime.1),
        ctime: meta.ctime.0,
        ctime_nsec: nsec(meta.ctime.1),
        ino: meta.ino,
        size: if kind == EntryKind::File { meta.size } else { 0 },
        rdev: if matches!(kind, EntryKind::CharDev | EntryKind::BlockDev) { meta.rdev } else { 0 },
        link_target: Vec::new(),
        hardlink: 0,
        payload_offset: 0,
        extents: None,
        xattrs: Vec::new(),
    }
}

/// Set once the kernel said it has no `listxattrat`.
static NO_LISTXATTRAT: AtomicBool = AtomicBool::new(false);

/// Whether `name` in `dir` surely has no extended attributes, asked with
/// `listxattrat(2)` (Linux 6.13) through the descriptor: the kernel looks
/// up one name, where a `/proc/self/fd/N/NAME` path costs it five (on
/// the Linux tree that was a third of the walk's time). `false` means
/// "read them" (some exist, an error, or no such system call).
fn no_xattrs_at(dir: &OwnedFd, name: &[u8]) -> bool {
    // The system call's number is the same on every architecture that has
    // it (the shared table, from 424 on).
    const SYS_LISTXATTRAT: libc::c_long = 465;
    if !cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) || NO_LISTXATTRAT.load(Ordering::Relaxed) {
        return false;
    }
    let Ok(name) = std::ffi::CString::new(name) else { return false };
    // SAFETY: a descriptor we own, a NUL-terminated name that outlives
    // the call, and a zero-sized list (the call only returns the size
    // the names would need, writing nothing).
    #[allow(unsafe_code)]
    let size = unsafe {
        libc::syscall(
            SYS_LISTXATTRAT,
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW as libc::c_uint,
            std::ptr::null_mut::<libc::c_char>(),
            0usize,
        )
    };
    if size < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
        NO_LISTXATTRAT.store(true, Ordering::Relaxed);
    }
    size == 0
}

fn unsupported(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOTSUP) || e.kind() == io::ErrorKind::Unsupported
}

/// Every listable extended attribute of `path` (not following a symlink),
/// sorted by name; none on a filesystem without xattr support.
fn read_xattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) if unsupported(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names {
        match xattr::get(path, &name) {
            Ok(Some(value)) => out.push((name.into_vec(), value)),
            Ok(None) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// A regular file opened for the payload stream: yields the bytes of its
/// data extents, concatenated, exactly [`Entry::data_len`] of them.
#[derive(Debug)]
pub struct FileData {
    file: File,
    path: PathBuf,
    /// Data extents to read; a dense file is one extent `[0, size)`.
    plan: Vec<(u64, u64)>,
    idx: usize,
    done: u64,
    changed: bool,
    opened: (u64, i64, i64),
    checked: bool,
}

/// Open the regular file at `source` for reading its data into `entry`'s
/// payload. Refreshes `entry`'s size, times and inode from the opened file
/// (so the stored metadata describes the stored data) and sets
/// `entry.extents` when the file has holes.
/// A walked file is opened through its directory's descriptor.
pub fn open_data(source: &Source, entry: &mut Entry) -> Result<FileData, WalkError> {
    // Errors name the file by its path in the archive, not by `source`
    // (a `/proc/self/fd` path during a walk).
    let shown = PathBuf::from(OsStr::from_bytes(&entry.path));
    let open = |extra: i32| source.open(libc::O_NONBLOCK | extra);
    let file = match open(libc::O_NOATIME) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(0),
        r => r,
    };
    let file = match file {
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(WalkError::NotRegular(shown)),
        r => r.map_err(io_err(&shown))?,
    };
    let meta = file.metadata().map_err(io_err(&shown))?;
    if !meta.is_file() {
        return Err(WalkError::NotRegular(shown));
    }
    let size = meta.len();
    entry.size = size;
    (entry.mtime, entry.mtime_nsec) = (meta.mtime(), meta.mtime_nsec().clamp(0, 999_999_999) as u32);
    (entry.ctime, entry.ctime_nsec) = (meta.ctime(), meta.ctime_nsec().clamp(0, 999_999_999) as u32);
    entry.ino = meta.ino();
    let may_have_holes = meta.blocks().saturating_mul(512) < size || size > 1 << 20;
    entry.extents = if may_have_holes { data_extents(&file, size).map_err(io_err(&shown))? } else { None };
    let plan = match &entry.extents {
        Some(ext) => ext.clone(),
        None if size > 0 => vec![(0, size)],
        None => Vec::new(),
    };
    let opened = (size, meta.mtime(), meta.mtime_nsec());
    Ok(FileData { file, path: shown, plan, idx: 0, done: 0, changed: false, opened, checked: false })
}

/// The data extents of a file of `size` bytes, `None` if it has no holes.
fn data_extents(file: &File, size: u64) -> io::Result<Option<Vec<(u64, u64)>>> {
    let mut ext: Vec<(u64, u64)> = Vec::new();
    let mut pos = 0u64;
    let mut gap = 4096;
    while pos < size {
        let data = match lseek(file, pos as i64, Whence::SeekData) {
            Ok(d) => d as u64,
            Err(Errno::ENXIO) => break,
            Err(Errno::EINVAL) if pos == 0 => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if data >= size {
            break;
        }
        let hole = match lseek(file, data as i64, Whence::SeekHole) {
            Ok(h) => (h as u64).min(size),
            Err(Errno::ENXIO) => size,
            Err(e) => return Err(e.into()),
        };
        if data < pos || hole <= data {
            return Ok(None); // the file changes under us: read it dense
        }
        ext.push((data, hole - data));
        pos = hole;
        // Merge as we go so that memory stays bounded on a file with
        // millions of tiny holes.
        while ext.len() > MAX_EXTENTS {
            ext = merge_gaps(ext, gap);
            gap *= 2;
        }
    }
    if ext.len() == 1 && ext[0] == (0, size) {
        return Ok(None);
    }
    Ok(Some(ext))
}

/// Join extents separated by less than `gap` bytes (the gap reads as zeros).
fn merge_gaps(ext: Vec<(u64, u64)>, gap: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ext.len() / 2);
    for (off, len) in ext {
        match out.last_mut() {
            Some(last) if off - (last.0 + last.1) < gap => last.1 = off + len - last.0,
            _ => out.push((off, len)),
        }
    }
    out
}

impl FileData {
    /// Read the next payload bytes into `buf` (which must not be empty);
    /// `Ok(0)` when all of them were read. A file that shrank reads as
    /// zeros up to its recorded extents.
    pub fn read_next(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "read_next needs a non-empty buffer"));
        }
        if let Some((at, left)) = self.next_span() {
            let want = left.min(buf.len() as u64) as usize;
            let mut n = if self.changed { 0 } else { self.read_at(&mut buf[..want], at)? };
            if n == 0 {
                self.changed = true;
                buf[..want].fill(0);
                n = want;
            }
            self.done += n as u64;
            return Ok(n);
        }
        self.check_end()?;
        Ok(0)
    }

    /// Append every payload byte not read yet to `out`: the bytes
    /// `read_next` would give, read straight into `out`'s spare capacity
    /// (no zeros written first: for a whole small file that is a pass
    /// over its bytes saved), then the check for a change that
    /// `read_next` makes at the end.
    pub fn read_rest_into(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        let planned: u64 = self.plan.iter().skip(self.idx).map(|e| e.1).sum();
        out.reserve(planned.saturating_sub(self.done) as usize);
        while let Some((at, left)) = self.next_span() {
            let want = left as usize;
            let n = if self.changed { 0 } else { self.read_at_into(out, want, at)? };
            if n == 0 {
                self.changed = true;
                out.resize(out.len() + want, 0);
                self.done += left;
            } else {
                self.done += n as u64;
            }
        }
        self.check_end()
    }

    /// Where the next payload bytes are in the file and how many of the
    /// extent are left, past the extents read whole; `None` at the end.
    fn next_span(&mut self) -> Option<(u64, u64)> {
        while let Some(&(off, len)) = self.plan.get(self.idx) {
            if self.done < len {
                return Some((off + self.done, len - self.done));
            }
            self.idx += 1;
            self.done = 0;
        }
        None
    }

    /// Once all the data was read: whether the file changed meanwhile.
    fn check_end(&mut self) -> io::Result<()> {
        if !self.checked {
            self.checked = true;
            let meta = self.file.metadata().map_err(|e| io::Error::new(e.kind(), self.what(e)))?;
            self.changed |= (meta.len(), meta.mtime(), meta.mtime_nsec()) != self.opened;
        }
        Ok(())
    }

    fn read_at(&self, buf: &mut [u8], at: u64) -> io::Result<usize> {
        loop {
            match self.file.read_at(buf, at) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return r.map_err(|e| io::Error::new(e.kind(), self.what(e))),
            }
        }
    }

    /// Read up to `want` bytes at `at` into `out`'s spare capacity (which
    /// must hold that many), extending it by what was read.
    fn read_at_into(&self, out: &mut Vec<u8>, want: usize, at: u64) -> io::Result<usize> {
        assert!(out.capacity() - out.len() >= want, "room for the read");
        // A file's offsets fit in 63 bits (the kernel's own limit).
        let at = i64::try_from(at).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        loop {
            let spare = out.spare_capacity_mut();
            // SAFETY: the kernel writes at most `want` bytes at the start
            // of `out`'s spare capacity, which holds at least that many
            // (asserted above); only the bytes it says it wrote are then
            // counted as part of `out`.
            #[allow(unsafe_code)]
            let n = unsafe { libc::pread64(self.file.as_raw_fd(), spare.as_mut_ptr().cast(), want, at) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(io::Error::new(e.kind(), self.what(e)));
            }
            let n = n as usize;
            // SAFETY: as above, these `n <= want` bytes were written.
            #[allow(unsafe_code)]
            unsafe {
                out.set_len(out.len() + n)
            };
            return Ok(n);
        }
    }

    fn what(&self, e: io::Error) -> String {
        format!("reading {}: {e}", self.path.display())
    }

    /// Whether the file changed (shrank, grew or was modified) while it was
    /// read; meaningful once [`FileData::read_next`] returned 0.
    pub fn changed_while_reading(&self) -> bool {
        self.changed
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::Write;

    use super::*;

    /// Asking the kernel through the directory's descriptor whether a file
    /// has extended attributes never hides one: the walk still finds a
    /// tagged file's attribute, and where the kernel has `listxattrat`, a
    /// plain file is answered without reading any.
    #[test]
    fn a_file_with_extended_attributes_is_never_taken_for_one_without() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("plain"), b"p").unwrap();
        fs::write(tmp.path().join("tagged"), b"t").unwrap();
        if xattr::set(tmp.path().join("tagged"), "user.cairn", b"value").is_err() {
            return; // no user xattrs on this filesystem
        }
        let dir: OwnedFd = File::open(tmp.path()).unwrap().into();
        assert!(!no_xattrs_at(&dir, b"tagged"));
        assert!(!no_xattrs_at(&dir, b"missing"));
        let plain = no_xattrs_at(&dir, b"plain");
        assert_eq!(plain, !NO_LISTXATTRAT.load(Ordering::Relaxed), "listxattrat missing yet answered");
        let walked: Vec<Entry> = Walker::new(tmp.path(), &WalkOptions::default())
            .unwrap()
            .filter_map(|i| match i {
                WalkItem::Entry { entry, .. } => Some(entry),
                _ => None,
            })
            .collect();
        let tagged = walked.iter().find(|e| e.path == b"tagged").unwrap();
        assert_eq!(tagged.xattrs, vec![(b"user.cairn".to_vec(), b"value".to_vec())]);
        assert!(walked.iter().find(|e| e.path == b"plain").unwrap().xattrs.is_empty());
    }

    fn paths(root: &Path, excludes: &[&str]) -> Vec<Vec<u8>> {
        let opts =
            WalkOptions { excludes: excludes.iter().map(|s| s.to_string()).collect(), ..Default::default() };
        Walker::new(root, &opts)
            .unwrap()
            .map(|item| match item {
                WalkItem::Entry { entry, .. } => entry.path,
                WalkItem::Error { path, message } => panic!("{path:?}: {message}"),
            })
            .collect()
    }

    fn touch(root: &Path, rel: &[u8]) {
        fs::write(root.join(OsStr::from_bytes(rel)), b"x").unwrap();
    }

    #[test]
    fn order_is_depth_first_by_name_bytes() {
        let t = tempfile::tempdir().unwrap();
        for d in ["a", "a/b", "B"] {
            fs::create_dir(t.path().join(d)).unwrap();
        }
        for f in [&b"a.txt"[..], b"a/b/c", b"a/\xff", b"a/b0", b"B/z", b"-"] {
            touch(t.path(), f);
        }
        let want: Vec<&[u8]> =
            vec![b"", b"-", b"B", b"B/z", b"a", b"a/b", b"a/b/c", b"a/b0", b"a/\xff", b"a.txt"];
        assert_eq!(paths(t.path(), &[]), want);
        assert_eq!(paths(t.path(), &[]), want, "a second walk gives the same order");
    }

    #[test]
    fn excludes_match_names_paths_and_directories() {
        let t = tempfile::tempdir().unwrap();
        for d in ["src", "src/.cache", "src/build", "build", "keep"] {
            fs::create_dir(t.path().join(d)).unwrap();
        }
        for f in [&b"x.tmp"[..], b"src/y.tmp", b"src/.cache/z", b"src/build/o", b"keep/build", b"keep/a.rs"] {
            touch(t.path(), f);
        }
        let got = paths(t.path(), &["*.tmp", ".cache", "/src/build", "build/"]);
        let want: Vec<&[u8]> = vec![b"", b"keep", b"keep/a.rs", b"keep/build", b"src"];
        assert_eq!(got, want);
        let err = Walker::new(t.path(), &WalkOptions { excludes: vec!["a[".into()], ..Default::default() });
        assert!(matches!(err, Err(WalkError::BadExclude { .. })));
    }

    #[test]
    fn vanished_files_are_reported_and_the_walk_goes_on() {
        let t = tempfile::tempdir().unwrap();
        touch(t.path(), b"a");
        touch(t.path(), b"b");
        let mut walker = Walker::new(t.path(), &WalkOptions::default()).unwrap();
        fs::remove_file(t.path().join("a")).unwrap();
        let items: Vec<WalkItem> = walker.by_ref().collect();
        assert!(
            matches!(&items[1], WalkItem::Error { path, message } if path == b"a" && message.contains("vanished"))
        );
        assert!(matches!(&items[2], WalkItem::Entry { entry, .. } if entry.path == b"b"));
        assert_eq!(items.len(), 3);
        assert!(matches!(
            Walker::new(&t.path().join("b"), &WalkOptions::default()),
            Err(WalkError::NotADirectory(_))
        ));
    }

    #[test]
    fn hard_link_groups_are_numbered_per_inode() {
        let t = tempfile::tempdir().unwrap();
        for f in [&b"a"[..], b"c", b"single"] {
            touch(t.path(), f);
        }
        fs::hard_link(t.path().join("a"), t.path().join("b")).unwrap();
        fs::hard_link(t.path().join("c"), t.path().join("d")).unwrap();
        fs::hard_link(t.path().join("a"), t.path().join("e")).unwrap();
        let groups: Vec<(Vec<u8>, u64)> = Walker::new(t.path(), &WalkOptions::default())
            .unwrap()
            .filter_map(|i| match i {
                WalkItem::Entry { entry, .. } => Some((entry.path, entry.hardlink)),
                WalkItem::Error { .. } => None,
            })
            .collect();
        let want: Vec<(&[u8], u64)> =
            vec![(b"", 0), (b"a", 1), (b"b", 1), (b"c", 2), (b"d", 2), (b"e", 1), (b"single", 0)];
        assert_eq!(groups, want.into_iter().map(|(p, g)| (p.to_vec(), g)).collect::<Vec<_>>());
    }

    /// A directory swapped for a symlink after the walk entered it: its
    /// children still come from the directory that was entered, never from
    /// the symlink's target outside the tree.
    #[test]
    fn a_directory_swapped_for_a_symlink_does_not_lead_outside() {
        let t = tempfile::tempdir().unwrap();
        let (root, outside) = (t.path().join("root"), t.path().join("outside"));
        fs::create_dir_all(root.join("d")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(root.join("d/secret"), b"inside").unwrap();
        fs::write(outside.join("secret"), b"OUTSIDE").unwrap();
        let mut walker = Walker::new(&root, &WalkOptions::default()).unwrap();
        let mut seen = Vec::new();
        for item in walker.by_ref() {
            if let WalkItem::Entry { entry, .. } = item {
                let is_d = entry.path == b"d";
                seen.push(entry.path);
                if is_d {
                    break;
                }
            }
        }
        assert_eq!(seen, vec![b"".to_vec(), b"d".to_vec()]);
        fs::rename(root.join("d"), t.path().join("d-moved")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("d")).unwrap();
        let mut read = Vec::new();
        for item in walker {
            if let WalkItem::Entry { mut entry, source } = item {
                assert_eq!(entry.path, b"d/secret");
                read = read_all(&mut open_data(&source, &mut entry).unwrap());
            }
        }
        assert_eq!(read, b"inside");
    }

    /// What a test compares of a walk's items.
    fn summary(root: &Path, opts: &WalkOptions) -> Vec<String> {
        Walker::new(root, opts)
            .unwrap()
            .map(|item| match item {
                WalkItem::Entry { entry, source } => format!(
                    "{} {:?} link={} target={} xattrs={:?} from {}",
                    String::from_utf8_lossy(&entry.path),
                    entry.kind,
                    entry.hardlink,
                    String::from_utf8_lossy(&entry.link_target),
                    entry.xattrs,
                    fs::symlink_metadata(&*source).map(|m| m.ino()).unwrap_or(0),
                ),
                WalkItem::Error { path, message } => {
                    format!("error {}: {message}", String::from_utf8_lossy(&path))
                }
            })
            .collect()
    }

    /// Directories listed ahead on threads give the very items of a walk
    /// that lists each directory as it enters it: order, hard-link
    /// groups, link targets, excludes, errors, sources.
    #[test]
    fn a_walk_on_threads_yields_the_items_of_a_walk_on_one() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        // More directories than the listings allowed ahead, some deep.
        for i in 0..300u32 {
            let d = root.join(format!("d{}/e{}/f{i}", i % 7, i % 13));
            fs::create_dir_all(&d).unwrap();
            for j in 0..(i % 4) {
                fs::write(d.join(format!("file{j}")), [j as u8; 3]).unwrap();
            }
            if i % 10 == 0 {
                fs::hard_link(d.join("file1").with_file_name("file1"), root.join(format!("link{i}"))).ok();
                std::os::unix::fs::symlink(format!("../{i}"), d.join("sym")).unwrap();
                fs::write(d.join("skip.tmp"), b"x").unwrap();
            }
        }
        fs::write(root.join("d0/e0/a.tmp"), b"x").unwrap();
        // A directory listed in pieces, with subdirectories in each.
        let wide = root.join("wide");
        fs::create_dir(&wide).unwrap();
        for i in 0..(2 * PIECE + 300) {
            if i % 100 == 7 {
                fs::create_dir(wide.join(format!("{i:05}"))).unwrap();
                fs::write(wide.join(format!("{i:05}/inner")), b"i").unwrap();
            } else {
                fs::write(wide.join(format!("{i:05}")), b"w").unwrap();
            }
        }
        // A path longer than the archive takes, made level by level
        // through descriptors (the whole path is longer than a system
        // call takes).
        let long_name = [b'n'; 200];
        let mut deep: OwnedFd = File::open(root).unwrap().into();
        for _ in 0..22 {
            nix::sys::stat::mkdirat(&deep, &long_name[..], Mode::from_bits_truncate(0o755)).unwrap();
            deep =
                openat(&deep, &long_name[..], OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        }
        let excludes = vec!["*.tmp".to_owned()];
        let serial = summary(root, &WalkOptions { excludes: excludes.clone(), ..Default::default() });
        assert!(serial.len() > 900 + 2 * PIECE, "{} items", serial.len());
        assert!(serial.iter().any(|s| s.starts_with("error ") && s.contains("longer than 4096")));
        assert!(!serial.iter().any(|s| s.contains(".tmp")));
        for threads in [1, 4] {
            let opts = WalkOptions { excludes: excludes.clone(), threads, ..Default::default() };
            assert_eq!(summary(root, &opts), serial, "{threads} threads");
        }
    }

    /// However many directories there are, the threads listing ahead hold
    /// only so many of them open.
    #[test]
    fn listing_ahead_holds_few_directories_open() {
        let t = tempfile::tempdir().unwrap();
        for i in 0..2_000 {
            let d = t.path().join(format!("{i:04}"));
            fs::create_dir(&d).unwrap();
            fs::write(d.join("f"), b"x").unwrap();
        }
        // Descriptors open on this test's directories (other tests run
        // in the same process at the same time).
        let open_fds = || crate::fsrestore::tests::fds_under(t.path());
        let before = open_fds();
        let mut walker = Walker::new(t.path(), &WalkOptions { threads: 4, ..Default::default() }).unwrap();
        // Let the threads run as far ahead as they may.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let mut most = 0;
        let mut items = 0;
        for _ in walker.by_ref() {
            items += 1;
            if items % 50 == 0 {
                most = most.max(open_fds());
            }
        }
        assert_eq!(items, 1 + 2_000 * 2);
        // A listing done ahead holds its directory open; so does one a
        // thread is making (four here), the root and the walk's own levels.
        let ahead = AHEAD_LIMIT / DIR_WEIGHT;
        assert!(most > 0, "the walk held no directory open");
        assert!(most <= before + ahead + 16, "{most} descriptors open, {before} before the walk");
        drop(walker);
        let f = open_fds();
        assert_eq!(f, before, "descriptors left open after the walk");
    }

    #[test]
    fn one_file_system_records_mount_points_empty() {
        let root = Path::new("/dev");
        let opts = WalkOptions { one_file_system: true, ..Default::default() };
        let root_dev = fs::symlink_metadata(root).unwrap().dev();
        let mut mount_points = Vec::new();
        let mut all = Vec::new();
        for item in Walker::new(root, &opts).unwrap() {
            if let WalkItem::Entry { entry, source } = item {
                let m = fs::symlink_metadata(&*source);
                if entry.kind == EntryKind::Dir && m.is_ok_and(|m| m.dev() != root_dev) {
                    mount_points.push(entry.path.clone());
                }
                all.push(entry.path);
            }
        }
        // Linux mounts devpts and a tmpfs under /dev, in containers too; a
        // host without them fails here rather than passing vacuously.
        assert!(!mount_points.is_empty(), "no file system is mounted under /dev to test with: {all:?}");
        for mp in &mount_points {
            assert!(all.contains(mp), "the mount point itself is kept");
            assert!(!all.iter().any(|p| p.len() > mp.len() && p.starts_with(mp) && p[mp.len()] == b'/'));
        }
    }

    fn read_all(data: &mut FileData) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 3];
        loop {
            let n = data.read_next(&mut buf).unwrap();
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    fn walked(path: &Path) -> Entry {
        entry_from_meta(b"f".to_vec(), &Stat::from(nix::sys::stat::lstat(path).unwrap()))
    }

    #[test]
    fn data_of_dense_shrinking_and_growing_files() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f");
        fs::write(&p, b"0123456789").unwrap();
        let mut e = walked(&p);
        let mut data = open_data(&Source::plain(p.clone()), &mut e).unwrap();
        assert_eq!((e.extents.clone(), e.data_len()), (None, 10));
        assert_eq!(read_all(&mut data), b"0123456789");
        assert!(!data.changed_while_reading());

        let mut data = open_data(&Source::plain(p.clone()), &mut e).unwrap();
        fs::OpenOptions::new().write(true).open(&p).unwrap().set_len(4).unwrap();
        assert_eq!(read_all(&mut data), b"0123\0\0\0\0\0\0");
        assert!(data.changed_while_reading());

        let mut data = open_data(&Source::plain(p.clone()), &mut e).unwrap();
        fs::OpenOptions::new().append(true).open(&p).unwrap().write_all(b"more").unwrap();
        assert_eq!(read_all(&mut data), b"0123");
        assert!(data.changed_while_reading());

        let link = t.path().join("l");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(matches!(open_data(&Source::plain(link.clone()), &mut e), Err(WalkError::NotRegular(_))));
    }

    /// `read_rest_into` gives the bytes `read_next` gives, and says the
    /// same about changes: for a dense file, one that shrinks or grows
    /// while read, one with holes, and after part was read with `read_next`.
    #[test]
    fn reading_into_spare_capacity_reads_what_read_next_reads() {
        type Step<'a> = &'a dyn Fn(&Path);
        let t = tempfile::tempdir().unwrap();
        let dense =
            |p: &Path| fs::write(p, (0..70_000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>()).unwrap();
        // Written in place (a copy could fill the holes in).
        let holes = |p: &Path| {
            let f = File::create(p).unwrap();
            f.set_len(3 << 20).unwrap();
            f.write_all_at(b"head", 0).unwrap();
            f.write_all_at(&[7u8; 5000], 2 << 20).unwrap();
        };
        let shrink = |p: &Path| fs::OpenOptions::new().write(true).open(p).unwrap().set_len(1000).unwrap();
        let grow =
            |p: &Path| fs::OpenOptions::new().append(true).open(p).unwrap().write_all(b"more").unwrap();
        let keep = |_: &Path| {};
        let cases: [(Step, Step, usize); 5] = [
            (&dense, &keep, 0),
            (&dense, &keep, 3),
            (&holes, &keep, 0),
            (&dense, &shrink, 0),
            (&dense, &grow, 0),
        ];
        for (n, (make, change, first)) in cases.into_iter().enumerate() {
            let mut got = Vec::new();
            for way in 0..2 {
                let p = t.path().join(format!("case{n}-{way}"));
                make(&p);
                let mut e = walked(&p);
                let mut data = open_data(&Source::plain(p.clone()), &mut e).unwrap();
                if n == 2 {
                    assert!(e.extents.as_ref().is_some_and(|x| x.len() > 1), "holes found: {:?}", e.extents);
                }
                let mut bytes = vec![0u8; first];
                if first > 0 {
                    assert_eq!(data.read_next(&mut bytes).unwrap(), first);
                }
                change(&p);
                if way == 0 {
                    bytes.extend(read_all(&mut data));
                } else {
                    data.read_rest_into(&mut bytes).unwrap();
                }
                assert_eq!(bytes.len() as u64, e.data_len(), "case {n}");
                got.push((bytes, data.changed_while_reading()));
            }
            assert!(got[0] == got[1], "case {n}: the two ways differ");
        }
    }

    #[test]
    fn sparse_file_beyond_4_gib_reads_its_extents() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("sparse");
        let f = File::create(&p).unwrap();
        f.set_len(5 << 30).unwrap();
        f.write_all_at(b"head", 0).unwrap();
        f.write_all_at(b"tail", 9 << 29).unwrap();
        drop(f);
        let mut e = walked(&p);
        let mut data = open_data(&Source::plain(p.clone()), &mut e).unwrap();
        let ext = e.extents.clone().expect("holes detected");
        assert_eq!(ext.len(), 2);
        assert_eq!(ext[0].0, 0);
        assert!(ext[1].0 <= 9 << 29 && ext[1].0 + ext[1].1 > 9 << 29, "{ext:?}");
        check_entry(&e).unwrap();
        let bytes = read_all(&mut data);
        assert_eq!(bytes.len() as u64, e.data_len());
        assert_eq!(&bytes[..4], b"head");
        let at = (ext[0].1 + (9 << 29) - ext[1].0) as usize;
        assert_eq!(&bytes[at..at + 4], b"tail");
        assert!(!data.changed_while_reading());
    }

    #[test]
    fn merging_gaps_bounds_the_extent_count() {
        let ext: Vec<(u64, u64)> = (0..10).map(|i| (i * 100, 10)).collect();
        assert_eq!(merge_gaps(ext.clone(), 50), ext);
        assert_eq!(merge_gaps(ext, 100), vec![(0, 910)]);
    }
}
