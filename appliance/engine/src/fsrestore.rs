//! Restoring archive entries into a target directory, safely.
//!
//! Entries arrive in archive walk order (parents before children). Every
//! path is resolved from an open handle on the target one component at a
//! time with `O_NOFOLLOW | O_DIRECTORY`, so a parent is always a real
//! directory (one this restore created or one that already existed as a
//! directory). Files are created with `O_EXCL | O_NOFOLLOW`; with
//! `overwrite` an existing non-directory is removed first, so an existing
//! inode (perhaps a hard link to a file elsewhere) is never written into.
//! Symlinks are created only in [`Restorer::finish`], after every other
//! entry, so no entry can be written through one. Directory modes and times
//! are set last, children first, because creating children changes them.
//!
//! Invariant: nothing is ever created, changed or removed outside the
//! target directory; no symlink is followed below the target.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use filevol::archive::{ArchiveError, Entry, EntryKind, check_entry, escaped, validate_path};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{
    FchmodatFlags, Mode, SFlag, UtimensatFlags, fchmod, fchmodat, fstatat, futimens, mkdirat, mknodat,
    utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, mkfifoat, symlinkat, unlinkat};
use xattr::FileExt as _;

/// How to restore. The defaults restore everything the archive holds;
/// a restore of a snapshot someone else wrote (from a server) sets
/// `skip_devices` and `clear_setuid` unless told otherwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct RestoreOptions {
    /// Replace existing non-directories at restored paths.
    pub overwrite: bool,
    /// Create no block or character device nodes (counted in
    /// [`RestoreStats::devices_skipped`]).
    pub skip_devices: bool,
    /// Restore no setuid or setgid bit on a non-directory and no
    /// `security.capability` attribute (counted in
    /// [`RestoreStats::setuid_cleared`]). A directory's setgid bit only
    /// passes its group to new children and is kept.
    pub clear_setuid: bool,
    /// Directories come after their contents (as in a volume): a missing
    /// parent is made (0700, the restoring user's) without a warning, and
    /// takes its metadata when its own entry arrives.
    pub parents_later: bool,
}

/// Extended attributes: (name, value).
type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// The extended attribute holding a file's capabilities, which grant
/// privileges as a setuid bit does.
const CAPABILITY: &[u8] = b"security.capability";

/// What a restore did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RestoreStats {
    /// Regular files written with data.
    pub files: u64,
    pub dirs: u64,
    /// Hard links made to an already restored member of a group.
    pub links: u64,
    pub symlinks: u64,
    /// FIFOs and device nodes.
    pub specials: u64,
    /// File data bytes written.
    pub bytes: u64,
    /// Things restored incompletely or skipped (sockets, xattrs the target
    /// refuses, device nodes without root); the restore still succeeded.
    pub warnings: Vec<String>,
    /// Device nodes not created because of [`RestoreOptions::skip_devices`].
    pub devices_skipped: u64,
    /// Objects restored without their setuid/setgid bits or capabilities
    /// because of [`RestoreOptions::clear_setuid`].
    pub setuid_cleared: u64,
}

/// Why a restore step failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("cannot {op} {path}: {source}")]
    Io { op: &'static str, path: String, source: io::Error },
    #[error("{path} already exists; use --overwrite to replace it")]
    Exists { path: String },
    #[error("{path} is a directory but the archive has a {kind} there; remove it or restore elsewhere")]
    IsDir { path: String, kind: &'static str },
    #[error(
        "{path}: a parent is a symlink or not a directory; refusing to write through it (remove it first)"
    )]
    NotADirectory { path: String },
    #[error(
        "only a directory can be restored onto the target directory itself; give a target file path instead"
    )]
    RootNotDir,
    #[error(
        "{path}: expected {expected} data bytes but got {got}; the archive is damaged: run `cairn verify`"
    )]
    DataLength { path: String, expected: u64, got: u64 },
    #[error(transparent)]
    Archive(#[from] ArchiveError),
}

/// The result of [`Restorer::begin`].
#[derive(Debug)]
pub enum Begin {
    /// Nothing more to do for this entry. For a regular file this means it
    /// became a hard link to an already restored member of its group: the
    /// caller must skip its payload bytes.
    Done,
    /// A regular file: write exactly `entry.data_len()` payload bytes into
    /// the sink, then hand it to [`Restorer::finish_file`] before the next
    /// [`Restorer::begin`].
    Data(FileSink),
}

/// An open restored file receiving its payload bytes in order: written
/// here ([`FileSink::write`]), or placed here ([`FileSink::place`]) and
/// written by other threads through [`FileSink::file`].
#[derive(Debug)]
pub struct FileSink {
    /// The file, once created (see [`FileSink::file`]).
    file: Option<Arc<File>>,
    /// Where to create it, when the restorer left that to the writer.
    create: Option<CreateAt>,
    rel: Vec<u8>,
    shown: String,
    entry: Box<Entry>,
    /// Data extents; a dense file is one extent `[0, size)`.
    plan: Vec<(u64, u64)>,
    idx: usize,
    done: u64,
    written: u64,
}

impl FileSink {
    /// Write the next payload bytes: they land in the file's data extents in
    /// order, the holes between them are skipped.
    pub fn write(&mut self, data: &[u8]) -> Result<(), RestoreError> {
        let file = self.file()?;
        let mut at = 0;
        for (off, n) in self.place(data.len() as u64)? {
            let piece = &data[at..at + n as usize];
            file.write_all_at(piece, off).map_err(|e| io_error("write", &self.shown, e))?;
            at += n as usize;
        }
        Ok(())
    }

    /// Where the next `len` payload bytes belong: (file offset, length)
    /// pieces in payload order, one per data extent they touch. The bytes
    /// count as written; whoever writes them uses [`FileSink::file`].
    pub fn place(&mut self, mut len: u64) -> Result<Vec<(u64, u64)>, RestoreError> {
        let mut pieces = Vec::new();
        while len > 0 {
            let Some(&(off, extent)) = self.plan.get(self.idx) else {
                let (expected, got) = (self.entry.data_len(), self.written + len);
                return Err(RestoreError::DataLength { path: self.shown.clone(), expected, got });
            };
            let n = (extent - self.done).min(len);
            pieces.push((off + self.done, n));
            self.done += n;
            self.written += n;
            len -= n;
            if self.done == extent {
                self.idx += 1;
                self.done = 0;
            }
        }
        Ok(pieces)
    }

    /// The open file, for writing placed bytes from another thread;
    /// created first if the restorer left that to the writer.
    pub fn file(&mut self) -> Result<Arc<File>, RestoreError> {
        if let Some(file) = &self.file {
            return Ok(file.clone());
        }
        let c = self.create.take().expect("a sink has a file or a place to create it");
        let file = c.create(&self.shown)?;
        self.file = Some(file.clone());
        Ok(file)
    }

    /// Move the creation (and the writes) to another thread: the sink
    /// without it, and a [`Creation`] that makes the file once.
    pub fn creation(&mut self) -> Creation {
        let made = std::sync::OnceLock::new();
        if let Some(file) = &self.file {
            made.set(Some(file.clone())).expect("a new cell");
        }
        Creation { made, create: self.create.take(), shown: self.shown.clone(), error: Mutex::new(None) }
    }

    /// Payload bytes still expected.
    pub fn remaining(&self) -> u64 {
        self.entry.data_len() - self.written
    }
}

/// Where a file is to be created: its parent (held open) and name.
#[derive(Debug)]
struct CreateAt {
    dir: Arc<OwnedFd>,
    name: Vec<u8>,
    overwrite: bool,
}

impl CreateAt {
    /// Create the file, new (`O_EXCL`), never through a symlink, 0600
    /// until it is complete.
    fn create(&self, shown: &str) -> Result<Arc<File>, RestoreError> {
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = create_at(&self.dir, &self.name, shown, self.overwrite, EntryKind::File, || {
            openat(&*self.dir, self.name.as_slice(), flags, mode_of(0o600))
        })?;
        Ok(Arc::new(File::from(fd)))
    }
}

/// A file's creation shared by the threads that write it: the first to
/// need the file creates it (`O_EXCL | O_NOFOLLOW` in its parent's
/// descriptor), the others wait for it.
#[derive(Debug)]
pub struct Creation {
    made: std::sync::OnceLock<Option<Arc<File>>>,
    create: Option<CreateAt>,
    shown: String,
    error: Mutex<Option<RestoreError>>,
}

impl Creation {
    /// The file, or `None` if it could not be created (see [`Creation::result`]).
    pub fn file(&self) -> Option<&Arc<File>> {
        self.made
            .get_or_init(|| {
                let c = self.create.as_ref()?;
                match c.create(&self.shown) {
                    Ok(file) => Some(file),
                    Err(e) => {
                        *self.error.lock().expect("lock") = Some(e);
                        None
                    }
                }
            })
            .as_ref()
    }

    /// The file's path in the target, escaped for a terminal.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The file, or why it could not be created (told once).
    pub fn result(&self) -> Result<Arc<File>, RestoreError> {
        match self.file() {
            Some(file) => Ok(file.clone()),
            None => Err(self.error.lock().expect("lock").take().unwrap_or_else(|| {
                io_error("create", &self.shown, io::Error::other("the file was not created"))
            })),
        }
    }
}

/// Run `create`; if the name is taken, make room (with `overwrite`, an
/// existing non-directory is removed; without, an error naming the path;
/// an existing directory where the archive has something else is an
/// error) and try once more. Works in `dir` only: any thread may call it.
fn create_at<T>(
    dir: &OwnedFd,
    name: &[u8],
    shown: &str,
    overwrite: bool,
    kind: EntryKind,
    create: impl Fn() -> nix::Result<T>,
) -> Result<T, RestoreError> {
    match create() {
        Err(Errno::EEXIST) => {}
        r => return r.map_err(|e| io_error("create", shown, e)),
    }
    clear_at(dir, name, shown, overwrite, kind)?;
    create().map_err(|e| io_error("create", shown, e))
}

/// Make room for a new object at `name` (see [`create_at`]).
fn clear_at(
    dir: &OwnedFd,
    name: &[u8],
    shown: &str,
    overwrite: bool,
    kind: EntryKind,
) -> Result<(), RestoreError> {
    if !occupied_at(dir, name, shown, kind)? {
        return Ok(());
    }
    if !overwrite {
        return Err(RestoreError::Exists { path: shown.to_owned() });
    }
    unlinkat(dir, name, UnlinkatFlags::NoRemoveDir).map_err(|e| io_error("remove", shown, e))
}

/// Whether something exists at `name`; an existing directory where the
/// archive has a non-directory is an error.
fn occupied_at(dir: &OwnedFd, name: &[u8], shown: &str, kind: EntryKind) -> Result<bool, RestoreError> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(io_error("inspect", shown, e)),
        Ok(st) if (st.st_mode & libc::S_IFMT) == libc::S_IFDIR && kind != EntryKind::Dir => {
            Err(RestoreError::IsDir { path: shown.to_owned(), kind: kind_name(kind) })
        }
        Ok(_) => Ok(true),
    }
}

/// A directory whose mode and time are set in [`Restorer::finish`].
#[derive(Debug)]
struct DirMeta {
    rel: Vec<u8>,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    mtime_nsec: u32,
    /// `system.posix_acl_default`, set last so that the restored children
    /// do not inherit it.
    default_acl: Option<Vec<u8>>,
}

const DEFAULT_ACL: &[u8] = b"system.posix_acl_default";

/// Directories a restorer keeps open along its current path, at most (a
/// deeper one is opened from the deepest kept, each time it is needed).
const OPEN_CHAIN: usize = 64;

/// Writes archive entries under one target directory.
#[derive(Debug)]
pub struct Restorer {
    target: PathBuf,
    root: Arc<OwnedFd>,
    /// Directories kept open along the path of the last one opened:
    /// each entry is a child of the one before (the first a child of the
    /// root), at most [`OPEN_CHAIN`] of them. Entries come in walk order,
    /// so an entry's parent is mostly there, or a step from one that is,
    /// instead of a walk from the root.
    chain: Vec<(Vec<u8>, Arc<OwnedFd>)>,
    /// Leave creating files to whoever writes them ([`FileSink::file`]).
    defer_files: bool,
    dirs: Vec<DirMeta>,
    symlinks: Vec<(Vec<u8>, Entry)>,
    /// Hard-link group → path of its first restored member.
    links: HashMap<u64, Vec<u8>>,
    shared: Arc<Shared>,
    stats: RestoreStats,
}

/// What the restorer and the threads completing its files share.
#[derive(Debug)]
struct Shared {
    opts: RestoreOptions,
    is_root: bool,
    /// xattr namespaces (`user`, `system`, …) the target refused with
    /// ENOTSUP: warned about once, then skipped.
    xattrs_unsupported: Mutex<Vec<Vec<u8>>>,
}

/// Completes files whose bytes are written ([`Completer::complete`]), on
/// any thread: it works on the open file only, never on a path.
#[derive(Debug, Clone)]
pub struct Completer {
    shared: Arc<Shared>,
}

/// A file [`Completer::complete`] finished with; hand it to
/// [`Restorer::settle`].
#[derive(Debug)]
pub struct Completed {
    rel: Vec<u8>,
    shown: String,
    hardlink: u64,
    written: u64,
    warnings: Vec<String>,
    setuid_cleared: bool,
    outcome: Outcome,
}

#[derive(Debug)]
enum Outcome {
    Done,
    /// Its data could not be read or written: the file is removed and the
    /// restore goes on.
    DataFailed(String),
    /// Its metadata could not be set: the restore stops.
    Failed(RestoreError),
}

/// What [`Restorer::settle`] made of a completed file.
#[derive(Debug, PartialEq, Eq)]
pub enum Settled {
    /// Restored with this many data bytes.
    Restored(u64),
    /// Removed because its data failed: (path, why).
    Failed(String, String),
}

impl Completed {
    /// The file's hard-link group (0: none).
    pub fn hardlink(&self) -> u64 {
        self.hardlink
    }
}

impl Completer {
    /// Finish a file whose payload bytes were all placed and written:
    /// size, owner, xattrs, mode (after the owner: chown clears setuid),
    /// mtime. `failed` says why its data did not arrive whole.
    pub fn complete(&self, mut sink: FileSink, failed: Option<String>) -> Completed {
        let file = sink.file();
        self.complete_with(sink, file, failed)
    }

    /// [`Completer::complete`] with the file as a [`Creation`] made it: a
    /// file that could not be created stops the restore.
    pub fn complete_with(
        &self,
        sink: FileSink,
        file: Result<Arc<File>, RestoreError>,
        failed: Option<String>,
    ) -> Completed {
        let FileSink { rel, shown, entry, written, .. } = sink;
        let mut done = Completed {
            rel,
            shown,
            hardlink: entry.hardlink,
            written,
            warnings: Vec::new(),
            setuid_cleared: false,
            outcome: Outcome::Done,
        };
        let file = match (file, failed) {
            (Err(e), _) => {
                done.outcome = Outcome::Failed(e);
                return done;
            }
            (Ok(_), Some(why)) => {
                done.outcome = Outcome::DataFailed(why);
                return done;
            }
            (Ok(file), None) => file,
        };
        if let Err(e) = self.metadata(&file, &entry, &mut done) {
            done.outcome = Outcome::Failed(e);
        }
        done
    }

    fn metadata(&self, file: &File, entry: &Entry, done: &mut Completed) -> Result<(), RestoreError> {
        let shown = done.shown.as_str();
        if done.written != entry.data_len() {
            let (expected, got) = (entry.data_len(), done.written);
            return Err(RestoreError::DataLength { path: shown.to_owned(), expected, got });
        }
        // The file is new (O_EXCL), so only a sparse file's trailing hole
        // needs a size set; a dense file already has all its bytes.
        if entry.extents.is_some() {
            file.set_len(entry.size).map_err(|e| io_error("set the size of", shown, e))?;
        }
        let shared = &self.shared;
        let owner = fchown(file, Some(Uid::from_raw(entry.uid)), Some(Gid::from_raw(entry.gid)));
        chown(shared.is_root, owner, shown)?;
        let (mode, xattrs, cleared) = unprivileged(&shared.opts, entry);
        done.setuid_cleared = cleared;
        set_xattrs(shared, &mut done.warnings, shown, &xattrs, |n, v| {
            file.set_xattr(OsStr::from_bytes(n), v)
        });
        fchmod(file, mode_of(mode)).map_err(|e| io_error("set the mode of", shown, e))?;
        futimens(file, &TimeSpec::UTIME_OMIT, &mtime_of(entry))
            .map_err(|e| io_error("set the times of", shown, e))
    }
}

/// The mode and xattrs to give a non-directory: as archived, or with
/// [`RestoreOptions::clear_setuid`] without setuid/setgid bits and
/// capabilities; and whether that removed anything.
fn unprivileged(opts: &RestoreOptions, entry: &Entry) -> (u32, Xattrs, bool) {
    let privileged = entry.mode & 0o6000 != 0 || entry.xattrs.iter().any(|(n, _)| n.as_slice() == CAPABILITY);
    if !opts.clear_setuid || !privileged {
        return (entry.mode, entry.xattrs.clone(), false);
    }
    let xattrs = entry.xattrs.iter().filter(|(n, _)| n.as_slice() != CAPABILITY).cloned().collect();
    (entry.mode & !0o6000, xattrs, true)
}

/// A chown result: refused ownership is fine when not running as root.
fn chown(is_root: bool, r: nix::Result<()>, shown: &str) -> Result<(), RestoreError> {
    match r {
        Err(Errno::EPERM) if !is_root => Ok(()),
        r => r.map_err(|e| io_error("set the owner of", shown, e)),
    }
}

/// Set every xattr with `set`; failures become warnings.
fn set_xattrs(
    shared: &Shared,
    warnings: &mut Vec<String>,
    shown: &str,
    xattrs: &[(Vec<u8>, Vec<u8>)],
    set: impl Fn(&[u8], &[u8]) -> io::Result<()>,
) {
    for (name, value) in xattrs {
        let namespace = name.split(|c| *c == b'.').next().unwrap_or_default().to_vec();
        if shared.xattrs_unsupported.lock().expect("lock").contains(&namespace) {
            continue;
        }
        match set(name, value) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {
                let mut unsupported = shared.xattrs_unsupported.lock().expect("lock");
                if unsupported.contains(&namespace) {
                    continue;
                }
                let ns = escaped(&namespace);
                let name = escaped(name);
                warnings.push(format!(
                    "{shown}: the target filesystem does not support {name}; no '{ns}.' \
                     extended attributes restored from here on"
                ));
                unsupported.push(namespace);
            }
            Err(e) => {
                let name = escaped(name);
                warnings.push(format!("{shown}: extended attribute {name} not restored: {e}"));
            }
        }
    }
}

fn io_error(op: &'static str, path: &str, e: impl Into<io::Error>) -> RestoreError {
    RestoreError::Io { op, path: path.to_owned(), source: e.into() }
}

fn split(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|c| *c == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&[], rel),
    }
}

fn kind_name(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::Dir => "directory",
        EntryKind::File => "file",
        EntryKind::Symlink => "symlink",
        EntryKind::Fifo => "FIFO",
        EntryKind::CharDev => "character device",
        EntryKind::BlockDev => "block device",
        EntryKind::Socket => "socket",
    }
}

fn mode_of(mode: u32) -> Mode {
    Mode::from_bits_truncate(mode as libc::mode_t)
}

fn mtime_of(e: &Entry) -> TimeSpec {
    TimeSpec::new(e.mtime as libc::time_t, e.mtime_nsec as _)
}

fn open_dir_at(dir: &OwnedFd, name: &[u8]) -> nix::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    openat(dir, name, flags, Mode::empty())
}

impl Restorer {
    /// Restore into `target`, creating it if missing (it may exist). A
    /// target that is itself a symlink is refused: whoever could plant it
    /// (in `/tmp`, say) would choose where the restore writes.
    pub fn new(target: &Path, opts: RestoreOptions) -> Result<Restorer, RestoreError> {
        let shown = escaped(target.as_os_str().as_bytes());
        std::fs::create_dir_all(target).map_err(|e| io_error("create", &shown, e))?;
        let root = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(target)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) | Some(libc::ENOTDIR) if target.is_symlink() => io_error(
                    "open",
                    &shown,
                    std::io::Error::other(
                        "the target is a symlink; restore into the directory it points to, named itself",
                    ),
                ),
                _ => io_error("open", &shown, e),
            })?;
        Ok(Restorer {
            target: target.to_owned(),
            root: Arc::new(root.into()),
            chain: Vec::new(),
            defer_files: false,
            dirs: Vec::new(),
            symlinks: Vec::new(),
            links: HashMap::new(),
            shared: Arc::new(Shared {
                opts,
                is_root: nix::unistd::geteuid().is_root(),
                xattrs_unsupported: Mutex::new(Vec::new()),
            }),
            stats: RestoreStats::default(),
        })
    }

    /// The target path of `rel`, escaped for a terminal (it comes from
    /// the archive): see [`escaped`].
    fn shown(&self, rel: &[u8]) -> String {
        escaped(self.target.join(OsStr::from_bytes(rel)).as_os_str().as_bytes())
    }

    /// Start restoring `entry` at `rel` (relative to the target; empty = the
    /// target itself, which takes a directory's metadata). See [`Begin`].
    pub fn begin(&mut self, rel: &[u8], entry: &Entry) -> Result<Begin, RestoreError> {
        validate_path(rel)?;
        check_entry(entry)?;
        if rel.is_empty() {
            if entry.kind != EntryKind::Dir {
                return Err(RestoreError::RootNotDir);
            }
            let dir = self.root.try_clone().map_err(|e| io_error("open", &self.shown(rel), e))?;
            self.restore_dir_fd(dir, rel, entry)?;
            return Ok(Begin::Done);
        }
        let (parent, name) = split(rel);
        let dir = self.open_dir(parent, true)?;
        self.begin_in(&dir, name, rel, entry)
    }

    fn begin_in(
        &mut self,
        dir: &Arc<OwnedFd>,
        name: &[u8],
        rel: &[u8],
        entry: &Entry,
    ) -> Result<Begin, RestoreError> {
        match entry.kind {
            EntryKind::Dir => self.make_dir(dir, name, rel, entry).map(|()| Begin::Done),
            EntryKind::File => self.make_file(dir, name, rel, entry),
            EntryKind::Symlink => {
                if self.occupied(dir, name, rel, entry.kind)? && !self.shared.opts.overwrite {
                    return Err(RestoreError::Exists { path: self.shown(rel) });
                }
                self.symlinks.push((rel.to_vec(), entry.clone()));
                Ok(Begin::Done)
            }
            EntryKind::Fifo | EntryKind::CharDev | EntryKind::BlockDev => {
                self.make_node(dir, name, rel, entry).map(|()| Begin::Done)
            }
            EntryKind::Socket => {
                let shown = self.shown(rel);
                self.warn(format!(
                    "{shown}: socket not restored (the program that owns it creates it again)"
                ));
                Ok(Begin::Done)
            }
        }
    }

    fn warn(&mut self, message: String) {
        tracing::warn!("{message}");
        self.stats.warnings.push(message);
    }

    /// Leave creating each file to whoever writes it: [`Begin::Data`]'s
    /// sink creates it on [`FileSink::file`] (or [`FileSink::creation`]),
    /// on any thread, in the parent directory this restorer opened.
    pub fn defer_file_creation(&mut self) {
        self.defer_files = true;
    }

    /// Open the directory `rel` one component at a time without following
    /// symlinks, from the deepest of its ancestors kept open ([`Self::chain`]);
    /// with `create`, a missing one is made (with a warning).
    fn open_dir(&mut self, rel: &[u8], create: bool) -> Result<Arc<OwnedFd>, RestoreError> {
        if rel.is_empty() {
            // The chain holds the ancestors of the last directory opened.
            self.chain.clear();
            return Ok(self.root.clone());
        }
        let within = |dir: &[u8]| rel.starts_with(dir) && rel.get(dir.len()).is_none_or(|&c| c == b'/');
        let kept = self.chain.iter().take_while(|(dir, _)| within(dir)).count();
        self.chain.truncate(kept);
        let (mut cur, mut end) = match self.chain.last() {
            Some((dir, fd)) if dir.len() == rel.len() => return Ok(fd.clone()),
            Some((dir, fd)) => (fd.clone(), dir.len() + 1),
            None => (self.root.clone(), 0),
        };
        for comp in rel[end..].split(|c| *c == b'/') {
            end += comp.len();
            let here = &rel[..end];
            end += 1;
            let fd = match open_dir_at(&cur, comp) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) if create => {
                    let mode = if self.shared.opts.parents_later { 0o700 } else { 0o755 };
                    mkdirat(&cur, comp, mode_of(mode))
                        .map_err(|e| io_error("create", &self.shown(here), e))?;
                    let shown = self.shown(here);
                    if !self.shared.opts.parents_later {
                        self.warn(format!("{shown}: directory missing from the archive; created it"));
                    }
                    open_dir_at(&cur, comp).map_err(|e| io_error("open", &shown, e))?
                }
                Err(Errno::ELOOP | Errno::ENOTDIR) => {
                    return Err(RestoreError::NotADirectory { path: self.shown(here) });
                }
                Err(e) => return Err(io_error("open", &self.shown(here), e)),
            };
            cur = Arc::new(fd);
            if self.chain.len() < OPEN_CHAIN {
                self.chain.push((here.to_vec(), cur.clone()));
            }
        }
        Ok(cur)
    }

    fn occupied(
        &self,
        dir: &OwnedFd,
        name: &[u8],
        rel: &[u8],
        kind: EntryKind,
    ) -> Result<bool, RestoreError> {
        occupied_at(dir, name, &self.shown(rel), kind)
    }

    fn clear(&self, dir: &OwnedFd, name: &[u8], rel: &[u8], kind: EntryKind) -> Result<(), RestoreError> {
        clear_at(dir, name, &self.shown(rel), self.shared.opts.overwrite, kind)
    }

    fn create<T>(
        &self,
        dir: &OwnedFd,
        name: &[u8],
        rel: &[u8],
        kind: EntryKind,
        create: impl Fn() -> nix::Result<T>,
    ) -> Result<T, RestoreError> {
        create_at(dir, name, &self.shown(rel), self.shared.opts.overwrite, kind, create)
    }

    fn make_dir(
        &mut self,
        dir: &OwnedFd,
        name: &[u8],
        rel: &[u8],
        entry: &Entry,
    ) -> Result<(), RestoreError> {
        let existing = match mkdirat(dir, name, mode_of(0o700)) {
            Ok(()) => None,
            Err(Errno::EEXIST) => match open_dir_at(dir, name) {
                Ok(fd) => Some(fd),
                Err(Errno::ELOOP | Errno::ENOTDIR) => {
                    self.clear(dir, name, rel, EntryKind::Dir)?;
                    mkdirat(dir, name, mode_of(0o700))
                        .map_err(|e| io_error("create", &self.shown(rel), e))?;
                    None
                }
                Err(e) => return Err(io_error("open", &self.shown(rel), e)),
            },
            Err(e) => return Err(io_error("create", &self.shown(rel), e)),
        };
        let fd = match existing {
            Some(fd) => fd,
            None => open_dir_at(dir, name).map_err(|e| io_error("open", &self.shown(rel), e))?,
        };
        let fd = self.restore_dir_fd(fd, rel, entry)?;
        // Its entries come next in walk order: they find it open. (No
        // later entry replaces it: a directory in the way of a
        // non-directory is an error, and one in the way of a directory is
        // taken as it is.)
        let parent = split(rel).0;
        if self.chain.len() < OPEN_CHAIN && self.chain.last().map_or(parent.is_empty(), |(d, _)| d == parent)
        {
            self.chain.push((rel.to_vec(), Arc::new(fd)));
        }
        Ok(())
    }

    /// Xattrs of a directory now; owner, default ACL, mode and time in
    /// `finish`. Until then every directory this restore made belongs to
    /// the restoring user with mode 0700, so no other user can swap a
    /// path component under it while the restore works by path.
    fn restore_dir_fd(&mut self, fd: OwnedFd, rel: &[u8], entry: &Entry) -> Result<OwnedFd, RestoreError> {
        let file = File::from(fd);
        let (default_acl, now): (Vec<_>, Vec<_>) =
            entry.xattrs.iter().cloned().partition(|(n, _)| n == DEFAULT_ACL);
        if !now.is_empty() {
            let shown = self.shown(rel);
            self.set_xattrs(&shown, &now, |n, v| file.set_xattr(OsStr::from_bytes(n), v));
        }
        let default_acl = default_acl.into_iter().next().map(|(_, v)| v);
        self.dirs.push(DirMeta {
            rel: rel.to_vec(),
            mode: entry.mode,
            uid: entry.uid,
            gid: entry.gid,
            mtime: entry.mtime,
            mtime_nsec: entry.mtime_nsec,
            default_acl,
        });
        self.stats.dirs += 1;
        Ok(OwnedFd::from(file))
    }

    fn make_file(
        &mut self,
        dir: &Arc<OwnedFd>,
        name: &[u8],
        rel: &[u8],
        entry: &Entry,
    ) -> Result<Begin, RestoreError> {
        if entry.hardlink != 0
            && let Some(first) = self.links.get(&entry.hardlink).cloned()
        {
            let (first_parent, first_name) = split(&first);
            let first_dir = self.open_dir(first_parent, false)?;
            self.create(dir, name, rel, entry.kind, || {
                linkat(&first_dir, first_name, dir, name, AtFlags::empty())
            })?;
            self.stats.links += 1;
            return Ok(Begin::Done);
        }
        let create =
            CreateAt { dir: dir.clone(), name: name.to_vec(), overwrite: self.shared.opts.overwrite };
        let plan = match &entry.extents {
            Some(ext) => ext.clone(),
            None if entry.size > 0 => vec![(0, entry.size)],
            None => Vec::new(),
        };
        let mut sink = FileSink {
            file: None,
            create: Some(create),
            rel: rel.to_vec(),
            shown: self.shown(rel),
            entry: Box::new(entry.clone()),
            plan,
            idx: 0,
            done: 0,
            written: 0,
        };
        if !self.defer_files {
            sink.file()?;
        }
        Ok(Begin::Data(sink))
    }

    /// Remove the file a failed copy left half written (it was created
    /// by this restore, so nothing else is lost), so that no truncated
    /// file is taken for a restored one. Best effort: a failure is a
    /// warning.
    pub fn discard(&mut self, sink: FileSink) {
        let FileSink { file, rel, shown, .. } = sink;
        drop(file);
        self.remove(&rel, &shown);
    }

    fn remove(&mut self, rel: &[u8], shown: &str) {
        let (parent, name) = split(rel);
        let removed = self.open_dir(parent, false).and_then(|dir| {
            unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir).map_err(|e| io_error("remove", shown, e))
        });
        if let Err(e) = removed {
            self.warn(format!("{shown}: the partly restored file could not be removed: {e}"));
        }
    }

    /// Complete a file after all its payload bytes were written: size,
    /// owner, xattrs, mode (after the owner: chown clears setuid), mtime.
    pub fn finish_file(&mut self, sink: FileSink) -> Result<(), RestoreError> {
        let done = self.completer().complete(sink, None);
        self.settle(done).map(|_| ())
    }

    /// What completes files on other threads (see [`Completer`]).
    pub fn completer(&self) -> Completer {
        Completer { shared: self.shared.clone() }
    }

    /// Take back a file another thread completed: count it, or remove it
    /// if its data failed. An error is one the whole restore stops on.
    pub fn settle(&mut self, done: Completed) -> Result<Settled, RestoreError> {
        let Completed { rel, shown, hardlink, written, warnings, setuid_cleared, outcome } = done;
        for w in warnings {
            self.warn(w);
        }
        match outcome {
            Outcome::Failed(e) => Err(e),
            Outcome::DataFailed(why) => {
                self.remove(&rel, &shown);
                Ok(Settled::Failed(shown, why))
            }
            Outcome::Done => {
                if hardlink != 0 {
                    self.links.entry(hardlink).or_insert(rel);
                }
                self.stats.setuid_cleared += u64::from(setuid_cleared);
                self.stats.files += 1;
                self.stats.bytes += written;
                Ok(Settled::Restored(written))
            }
        }
    }

    fn make_node(
        &mut self,
        dir: &OwnedFd,
        name: &[u8],
        rel: &[u8],
        entry: &Entry,
    ) -> Result<(), RestoreError> {
        if self.shared.opts.skip_devices && matches!(entry.kind, EntryKind::CharDev | EntryKind::BlockDev) {
            self.stats.devices_skipped += 1;
            return Ok(());
        }
        let kind = match entry.kind {
            EntryKind::CharDev => SFlag::S_IFCHR,
            EntryKind::BlockDev => SFlag::S_IFBLK,
            _ => SFlag::S_IFIFO,
        };
        let made = self.create(dir, name, rel, entry.kind, || {
            if kind == SFlag::S_IFIFO {
                mkfifoat(dir, name, mode_of(0o600))
            } else {
                mknodat(dir, name, kind, mode_of(0o600), entry.rdev as libc::dev_t)
            }
        });
        match made {
            Err(RestoreError::Io { source, .. })
                if !self.shared.is_root && source.raw_os_error() == Some(libc::EPERM) =>
            {
                let shown = self.shown(rel);
                self.warn(format!("{shown}: device node not restored (creating one needs root)"));
                return Ok(());
            }
            r => r?,
        }
        self.path_metadata(dir, name, rel, entry)?;
        self.stats.specials += 1;
        Ok(())
    }

    /// Owner, xattrs, mode (not for symlinks) and mtime of an object that is
    /// not opened (symlinks, FIFOs, devices), never following a symlink.
    fn path_metadata(
        &mut self,
        dir: &OwnedFd,
        name: &[u8],
        rel: &[u8],
        entry: &Entry,
    ) -> Result<(), RestoreError> {
        let shown = self.shown(rel);
        let (uid, gid) = (Some(Uid::from_raw(entry.uid)), Some(Gid::from_raw(entry.gid)));
        self.chown(fchownat(dir, name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW), &shown)?;
        let path = self.target.join(OsStr::from_bytes(rel));
        let (mode, xattrs) = if entry.kind == EntryKind::Symlink {
            (entry.mode, entry.xattrs.clone())
        } else {
            self.unprivileged(entry)
        };
        self.set_xattrs(&shown, &xattrs, |n, v| xattr::set(&path, OsStr::from_bytes(n), v));
        if entry.kind != EntryKind::Symlink {
            fchmodat(dir, name, mode_of(mode), FchmodatFlags::FollowSymlink)
                .map_err(|e| io_error("set the mode of", &shown, e))?;
        }
        utimensat(dir, name, &TimeSpec::UTIME_OMIT, &mtime_of(entry), UtimensatFlags::NoFollowSymlink)
            .map_err(|e| io_error("set the times of", &shown, e))
    }

    /// The mode and xattrs to give a non-directory (see [`unprivileged`]),
    /// counted once per object that lost something.
    fn unprivileged(&mut self, entry: &Entry) -> (u32, Xattrs) {
        let (mode, xattrs, cleared) = unprivileged(&self.shared.opts, entry);
        self.stats.setuid_cleared += u64::from(cleared);
        (mode, xattrs)
    }

    fn chown(&self, r: nix::Result<()>, shown: &str) -> Result<(), RestoreError> {
        chown(self.shared.is_root, r, shown)
    }

    /// Set every xattr with `set`; failures become warnings.
    fn set_xattrs(
        &mut self,
        shown: &str,
        xattrs: &[(Vec<u8>, Vec<u8>)],
        set: impl Fn(&[u8], &[u8]) -> io::Result<()>,
    ) {
        let mut warnings = Vec::new();
        set_xattrs(&self.shared, &mut warnings, shown, xattrs, set);
        for w in warnings {
            self.warn(w);
        }
    }

    /// Create the deferred symlinks, then set directory modes and times
    /// (children first). A symlink or directory that cannot be completed
    /// becomes a warning; the rest still gets done.
    pub fn finish(mut self) -> Result<RestoreStats, RestoreError> {
        for (rel, entry) in std::mem::take(&mut self.symlinks) {
            if let Err(e) = self.make_symlink(&rel, &entry) {
                self.warn(format!("symlink not restored: {e}"));
            }
        }
        for d in std::mem::take(&mut self.dirs).into_iter().rev() {
            if let Err(e) = self.dir_metadata(&d) {
                self.warn(format!("directory metadata not restored: {e}"));
            }
        }
        Ok(self.stats)
    }

    fn make_symlink(&mut self, rel: &[u8], entry: &Entry) -> Result<(), RestoreError> {
        let (parent, name) = split(rel);
        let dir = self.open_dir(parent, true)?;
        let target = OsStr::from_bytes(&entry.link_target);
        self.create(&dir, name, rel, entry.kind, || symlinkat(target, &dir, name))?;
        self.path_metadata(&dir, name, rel, entry)?;
        self.stats.symlinks += 1;
        Ok(())
    }

    fn dir_metadata(&mut self, d: &DirMeta) -> Result<(), RestoreError> {
        let fd = self.open_dir(&d.rel, false)?;
        let shown = self.shown(&d.rel);
        self.chown(fchown(&fd, Some(Uid::from_raw(d.uid)), Some(Gid::from_raw(d.gid))), &shown)?;
        if let Some(acl) = &d.default_acl {
            let file = File::from(fd.try_clone().map_err(|e| io_error("open", &shown, e))?);
            let acl = [(DEFAULT_ACL.to_vec(), acl.clone())];
            self.set_xattrs(&shown, &acl, |n, v| file.set_xattr(OsStr::from_bytes(n), v));
        }
        fchmod(fd.as_fd(), mode_of(d.mode)).map_err(|e| io_error("set the mode of", &shown, e))?;
        let mtime = TimeSpec::new(d.mtime as libc::time_t, d.mtime_nsec as _);
        futimens(fd.as_fd(), &TimeSpec::UTIME_OMIT, &mtime)
            .map_err(|e| io_error("set the times of", &shown, e))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    /// An entry owned by the restoring user, dated 2023-11-14.
    pub(crate) fn entry(path: &[u8], kind: EntryKind, mode: u32) -> Entry {
        Entry {
            path: path.to_vec(),
            kind,
            mode,
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            mtime: 1_700_000_000,
            mtime_nsec: 0,
            ctime: 0,
            ctime_nsec: 0,
            ino: 0,
            size: 0,
            rdev: 0,
            link_target: Vec::new(),
            hardlink: 0,
            payload_offset: 0,
            extents: None,
            xattrs: Vec::new(),
        }
    }

    fn file(path: &[u8], data: &[u8]) -> Entry {
        Entry { size: data.len() as u64, ..entry(path, EntryKind::File, 0o644) }
    }

    fn symlink(path: &[u8], to: &[u8]) -> Entry {
        Entry { link_target: to.to_vec(), ..entry(path, EntryKind::Symlink, 0o777) }
    }

    /// Restore one entry (writing `data` when it is a file).
    fn put(r: &mut Restorer, e: &Entry, data: &[u8]) -> Result<(), RestoreError> {
        match r.begin(&e.path, e)? {
            Begin::Done => Ok(()),
            Begin::Data(mut sink) => {
                sink.write(data)?;
                r.finish_file(sink)
            }
        }
    }

    /// A restorer into `t` in a new temporary directory, the target's own
    /// entry restored.
    fn restorer() -> (tempfile::TempDir, PathBuf, Restorer) {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("t");
        let mut r = Restorer::new(&target, RestoreOptions::default()).unwrap();
        put(&mut r, &entry(b"", EntryKind::Dir, 0o755), b"").unwrap();
        (tmp, target, r)
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// Every directory the restore makes is 0700 and the restoring user's
    /// until `finish`, however open the archive says it was: no other
    /// user can swap a path component in it while the restore works.
    #[test]
    fn directories_stay_0700_until_the_end() {
        let (_tmp, target, mut r) = restorer();
        let open = entry(b"open", EntryKind::Dir, 0o1777);
        let inner = entry(b"open/inner", EntryKind::Dir, 0o755);
        put(&mut r, &open, b"").unwrap();
        put(&mut r, &inner, b"").unwrap();
        put(&mut r, &file(b"open/inner/f", b"abc"), b"abc").unwrap();
        for dir in ["open", "open/inner"] {
            let path = target.join(dir);
            assert_eq!(mode(&path), 0o700, "{dir} during the restore");
            assert_eq!(std::fs::metadata(&path).unwrap().uid(), nix::unistd::geteuid().as_raw());
        }
        let stats = r.finish().unwrap();
        assert_eq!(mode(&target.join("open")), 0o1777);
        assert_eq!(mode(&target.join("open/inner")), 0o755);
        let mtime = std::fs::metadata(target.join("open/inner")).unwrap().mtime();
        assert_eq!(mtime, 1_700_000_000, "directory times are set after their children");
        assert_eq!((stats.dirs, stats.files), (3, 1), "{stats:?}");
    }

    /// Symlinks appear only in `finish`, after every other entry, so no
    /// entry is ever written through one, even one the archive lists first
    /// and points outside the target.
    #[test]
    fn symlinks_are_made_last() {
        let tmp = tempfile::tempdir().unwrap();
        let (target, outside) = (tmp.path().join("t"), tmp.path().join("outside"));
        std::fs::create_dir(&outside).unwrap();
        let mut r = Restorer::new(&target, RestoreOptions::default()).unwrap();
        put(&mut r, &entry(b"", EntryKind::Dir, 0o755), b"").unwrap();
        put(&mut r, &symlink(b"away", outside.as_os_str().as_bytes()), b"").unwrap();
        put(&mut r, &symlink(b"near", b"d/f"), b"").unwrap();
        assert!(std::fs::symlink_metadata(target.join("away")).is_err(), "a symlink made before the end");
        put(&mut r, &entry(b"d", EntryKind::Dir, 0o755), b"").unwrap();
        put(&mut r, &file(b"d/f", b"inside"), b"inside").unwrap();
        // The archive's next entry lies beneath the symlink: it becomes a
        // real directory inside the target, and the symlink loses.
        put(&mut r, &file(b"away/pwned", b"pwned"), b"pwned").unwrap();
        assert!(std::fs::symlink_metadata(target.join("near")).is_err(), "a symlink made before the end");
        let stats = r.finish().unwrap();

        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "written outside the target");
        assert_eq!(std::fs::read(target.join("away/pwned")).unwrap(), b"pwned");
        assert!(std::fs::symlink_metadata(target.join("away")).unwrap().is_dir());
        assert!(stats.warnings.iter().any(|w| w.contains("symlink not restored")), "{stats:?}");
        assert_eq!(std::fs::read_link(target.join("near")).unwrap(), Path::new("d/f"));
        assert_eq!(std::fs::read(target.join("near")).unwrap(), b"inside");
        assert_eq!(stats.symlinks, 1, "{stats:?}");
    }

    /// Descriptors this process holds open on anything under `dir` (tests
    /// running beside one another each count only their own).
    pub(crate) fn fds_under(dir: &Path) -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|p| p.starts_with(dir))
            .count()
    }

    /// The restorer keeps the directories along its path open and opens
    /// the next entry's parent from the nearest of them: entries in walk
    /// order, out of it, below the deepest kept ([`OPEN_CHAIN`]), hard
    /// links to a far directory and directory modes set at the end all
    /// land where they belong, and the descriptors are bounded and gone
    /// once the restore ends.
    #[test]
    fn open_directories_follow_the_entries() {
        let (tmp, target, mut r) = restorer();
        let depth = OPEN_CHAIN + 16;
        let mut path = Vec::new();
        let mut most = 0;
        for level in 0..depth {
            if level > 0 {
                path.push(b'/');
            }
            path.extend_from_slice(b"d");
            let mode = if level % 7 == 3 { 0o555 } else { 0o750 };
            put(&mut r, &entry(&path, EntryKind::Dir, mode), b"").unwrap();
            let f = [&path[..], b"/f"].concat();
            let data = format!("level {level}");
            let e = Entry { hardlink: u64::from(level == OPEN_CHAIN + 4) * 3, ..file(&f, data.as_bytes()) };
            put(&mut r, &e, data.as_bytes()).unwrap();
            most = most.max(fds_under(tmp.path()));
        }
        // Back up the tree, then out of walk order, then a hard link to
        // the file below the deepest directory kept open.
        put(&mut r, &entry(b"dd", EntryKind::Dir, 0o755), b"").unwrap();
        put(&mut r, &file(b"dd/h", b"dd"), b"dd").unwrap();
        put(&mut r, &entry(b"e", EntryKind::Dir, 0o755), b"").unwrap();
        put(&mut r, &file(b"e/g", b"e"), b"e").unwrap();
        put(&mut r, &file(b"d/d/late", b"late"), b"late").unwrap();
        let far = format!("level {}", OPEN_CHAIN + 4);
        put(&mut r, &Entry { hardlink: 3, ..file(b"e/link", far.as_bytes()) }, far.as_bytes()).unwrap();
        assert!(most <= OPEN_CHAIN + 4, "{most} directories open under the target");
        let stats = r.finish().unwrap();
        assert_eq!(fds_under(tmp.path()), 0, "descriptors left open");
        assert_eq!(
            (stats.dirs, stats.files, stats.links),
            (depth as u64 + 3, depth as u64 + 3, 1),
            "{stats:?}"
        );

        let mut path = target.clone();
        for level in 0..depth {
            path.push("d");
            assert_eq!(mode(&path), if level % 7 == 3 { 0o555 } else { 0o750 }, "level {level}");
            assert_eq!(std::fs::read(path.join("f")).unwrap(), format!("level {level}").as_bytes());
        }
        assert_eq!(std::fs::read(target.join("d/d/late")).unwrap(), b"late");
        assert_eq!(std::fs::read(target.join("e/g")).unwrap(), b"e");
        assert_eq!(std::fs::read(target.join("dd/h")).unwrap(), b"dd");
        let far_file: PathBuf = std::iter::repeat_n("d", OPEN_CHAIN + 5).collect::<PathBuf>().join("f");
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        assert_eq!(ino(&target.join(far_file)), ino(&target.join("e/link")));
        // Let the temporary directory go (some levels are read-only).
        let mut path = target.clone();
        for _ in 0..depth {
            path.push("d");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    /// A directory the restore makes stays open for the entries after it
    /// (its first child does not open it again), and closes once the
    /// entries have left it.
    #[test]
    fn a_directory_made_stays_open_for_its_entries() {
        let (_tmp, target, mut r) = restorer();
        // The target itself is open until the end.
        assert_eq!(fds_under(&target), 1);
        put(&mut r, &entry(b"a", EntryKind::Dir, 0o755), b"").unwrap();
        assert_eq!(fds_under(&target), 2);
        put(&mut r, &entry(b"a/b", EntryKind::Dir, 0o755), b"").unwrap();
        put(&mut r, &file(b"a/b/f", b"x"), b"x").unwrap();
        assert_eq!(fds_under(&target), 3);
        put(&mut r, &entry(b"a/c", EntryKind::Dir, 0o755), b"").unwrap();
        assert_eq!(fds_under(&target), 3, "a and a/c");
        put(&mut r, &entry(b"d", EntryKind::Dir, 0o755), b"").unwrap();
        assert_eq!(fds_under(&target), 2, "d alone");
        put(&mut r, &file(b"d/g", b"y"), b"y").unwrap();
        r.finish().unwrap();
        assert_eq!(fds_under(&target), 0);
        assert_eq!(std::fs::read(target.join("a/b/f")).unwrap(), b"x");
        assert_eq!(std::fs::read(target.join("d/g")).unwrap(), b"y");
    }

    /// A hard link in the archive names a group, never a path: a member
    /// links only to the first member restored in this target, and a
    /// group whose first member was never restored gets a file of its own.
    #[test]
    fn hard_links_stay_inside_the_target() {
        let (_tmp, target, mut r) = restorer();
        let first = Entry { hardlink: 7, ..file(b"a", b"same") };
        let second = Entry { hardlink: 7, ..file(b"b", b"same") };
        let lonely = Entry { hardlink: 9, ..file(b"c", b"own") };
        put(&mut r, &first, b"same").unwrap();
        put(&mut r, &second, b"same").unwrap();
        put(&mut r, &lonely, b"own").unwrap();
        let stats = r.finish().unwrap();
        let ino = |n: &str| std::fs::metadata(target.join(n)).unwrap().ino();
        assert_eq!(ino("a"), ino("b"));
        assert_eq!(std::fs::metadata(target.join("c")).unwrap().nlink(), 1);
        assert_eq!(std::fs::read(target.join("c")).unwrap(), b"own");
        assert_eq!((stats.files, stats.links), (2, 1), "{stats:?}");
    }
}
