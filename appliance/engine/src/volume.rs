//! Snapshots written to a volume (`volfmt`, Bacula's BB02 format): one
//! session per snapshot, each file an attribute record in Bacula's form
//! and its data in Bacula's data streams, so Bacula's `bls` and
//! `bextract` list and restore it; what only Cairn uses (the snapshot's
//! manifest, each file's blake3 digest) rides in a stream they skip.
//!
//! Names in the volume are `/ARCHIVE/PATH`; directories come after their
//! contents (as Bacula writes them, so their times survive a restore); an
//! image archive is one sparse file `/ARCHIVE`, its all-zero pieces left
//! out. See `docs/formats.md` (Volumes).
//!
//! Invariant: a volume on disk holds only whole sessions: a write that
//! fails leaves the file as it was before it began.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use chunker::ChunkId;
use filevol::archive::{Entry, EntryKind};
use filevol::{Manifest, ManifestArchive};
use model::SnapshotId;
use serde::Serialize;
use volfmt::label::SessionEnd;
use volfmt::stream::{
    ACL_LINUX_ACCESS, ACL_LINUX_DEFAULT, CAIRN, CAIRN_DIGEST, CAIRN_ENTRY, CAIRN_MAGIC, CAIRN_SNAPSHOT,
    FILE_DATA, SPARSE_DATA, UNIX_ATTRIBUTES, XATTR_LINUX,
};
use volfmt::{Attributes, Event, FileType, SessionLabel, Stat, VolumeLabel, VolumeReader, VolumeWriter};

use crate::Engine;
use crate::progress::Progress;
use crate::restore::{Reader, copy_data};
use crate::stream::{Fetcher, StreamReader};

/// Bytes of file data per data record (Bacula's file daemon sends at
/// most this much per record).
const DATA_PIECE: usize = 64 << 10;

/// How to write a volume.
#[derive(Debug, Clone)]
pub struct VolumeOptions {
    /// The volume's name in its label; the file's name when `None`.
    pub label: Option<String>,
    pub block_size: usize,
    /// Recorded in the volume label.
    pub host: String,
    pub program_version: String,
    /// Bytes a volume file may hold: a full one ends cleanly and the
    /// session goes on in `FILE.2`, `FILE.3`, … labelled `NAME.2`, ….
    pub max_size: Option<u64>,
}

/// What a write added to a volume.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeReport {
    pub volume: String,
    pub sessions: Vec<SessionReport>,
    /// Bytes of the volume file after the write.
    pub volume_bytes: u64,
    /// Further volume files a full one went on in, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub continued_in: Vec<String>,
}

/// One session: a snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct SessionReport {
    pub session: u32,
    pub snapshot: String,
    /// Attribute records (files, directories, links, …).
    pub files: u64,
    /// Bytes of file data.
    pub bytes: u64,
}

/// What a volume already holds, found by reading it through.
struct Existing {
    name: String,
    label_time: u32,
    next_block: u32,
    sessions: u32,
    len: u64,
}

fn read_existing(path: &Path) -> Result<Existing> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let len = file.metadata()?.len();
    let mut r = VolumeReader::new(std::io::BufReader::with_capacity(1 << 20, file));
    let (mut name, mut label_time, mut sessions, mut open) = (None, 0, 0, false);
    while let Some(e) = r.next_event().with_context(|| format!("{} cannot be appended to", path.display()))? {
        match e {
            Event::Volume(v) => {
                label_time = (v.label_time_us / 1_000_000) as u32;
                name = Some(v.volume_name);
            }
            Event::SessionStart { .. } => {
                sessions += 1;
                open = true;
            }
            Event::SessionEnd { .. } => open = false,
            _ => {}
        }
    }
    let name = name.ok_or_else(|| anyhow!("{} has no volume label", path.display()))?;
    if open {
        bail!("{}: its last session has no end; the volume is damaged", path.display());
    }
    let next_block = u32::try_from(r.blocks_read())?;
    Ok(Existing { name, label_time, next_block, sessions, len })
}

/// The job id of session `session`: twice its number. Bacula's `bls`
/// takes a label whose job id is 1 or 5 (modulo 2048) for a file's
/// attributes and lists it as a file; an even id never is.
fn job_id(session: u32) -> Result<u32> {
    session
        .checked_mul(2)
        .filter(|j| *j < 10_000_000)
        .ok_or_else(|| anyhow!("too many sessions in one volume"))
}

/// A Bacula client name for a snapshot's group: `TYPE-ID`, a namespace
/// before it as `ns-A-B-`.
fn client_name(id: &SnapshotId) -> String {
    let g = &id.group;
    let ns = g.ns.to_string();
    let base = format!("{}-{}", g.kind, g.id);
    if ns.is_empty() { base } else { format!("ns-{}-{base}", ns.replace('/', "-")) }
}

impl Engine {
    /// Write `ids` into the volume file `path`, one session each: a new
    /// labelled volume if it does not exist, else after its last session.
    /// On any error the file is left as it was (or removed, if new).
    pub fn write_volume(
        &self,
        ids: &[SnapshotId],
        path: &Path,
        opts: &VolumeOptions,
        progress: &Progress,
    ) -> Result<VolumeReport> {
        volfmt::writer::check_block_size(opts.block_size)?;
        let existing = if path.exists() { Some(read_existing(path)?) } else { None };
        let now = crate::clock::now();
        let (file, mut w, name, label_time, first_session, old_len) = match &existing {
            Some(x) => {
                let file = OpenOptions::new().write(true).open(path)?;
                let mut out = BufWriter::with_capacity(4 << 20, file);
                out.seek(SeekFrom::Start(x.len))?;
                let w = VolumeWriter::append(out, x.next_block, opts.block_size)?;
                (path, w, x.name.clone(), x.label_time, x.sessions + 1, Some(x.len))
            }
            None => {
                let name = match &opts.label {
                    Some(l) => l.clone(),
                    None => path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .ok_or_else(|| anyhow!("{}: the volume needs a name (--label)", path.display()))?
                        .to_owned(),
                };
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                let label = VolumeLabel {
                    label_time_us: now * 1_000_000,
                    write_time_us: now * 1_000_000,
                    volume_name: name.clone(),
                    prev_volume_name: String::new(),
                    pool_name: "cairn".into(),
                    pool_type: "Backup".into(),
                    media_type: "File".into(),
                    host_name: opts.host.clone(),
                    label_prog: "cairn".into(),
                    prog_version: opts.program_version.clone(),
                    prog_date: String::new(),
                };
                let w =
                    VolumeWriter::create(BufWriter::with_capacity(4 << 20, file), &label, opts.block_size);
                let w = match w {
                    Ok(w) => w,
                    Err(e) => {
                        let _ = std::fs::remove_file(path);
                        return Err(e.into());
                    }
                };
                (path, w, name, now as u32, 1, None)
            }
        };
        let mut sessions = Vec::new();
        let made: std::rc::Rc<std::cell::RefCell<Vec<std::path::PathBuf>>> = std::rc::Rc::default();
        let result = (|| {
            if let Some(max) = opts.max_size {
                let (made, base, host, version) =
                    (made.clone(), path.to_owned(), opts.host.clone(), opts.program_version.clone());
                let mut prev = name.clone();
                let first = name.clone();
                w.span(
                    max,
                    Box::new(move |n| {
                        let next = std::path::PathBuf::from(format!("{}.{n}", base.display()));
                        let file = OpenOptions::new().write(true).create_new(true).open(&next)?;
                        made.borrow_mut().push(next);
                        let now = crate::clock::now() * 1_000_000;
                        let label = VolumeLabel {
                            label_time_us: now,
                            write_time_us: now,
                            volume_name: format!("{first}.{n}"),
                            prev_volume_name: prev.clone(),
                            pool_name: "cairn".into(),
                            pool_type: "Backup".into(),
                            media_type: "File".into(),
                            host_name: host.clone(),
                            label_prog: "cairn".into(),
                            prog_version: version.clone(),
                            prog_date: String::new(),
                        };
                        prev = label.volume_name.clone();
                        Ok(volfmt::writer::NewVolume {
                            out: BufWriter::with_capacity(4 << 20, file),
                            label,
                            record: None,
                        })
                    }),
                )?;
            }
            for (n, id) in ids.iter().enumerate() {
                let session = first_session + n as u32;
                sessions.push(self.write_session(&mut w, id, session, label_time, progress)?);
            }
            let mut first_len = 0;
            for (i, out) in w.finish_all()?.into_iter().enumerate() {
                let file = out.into_inner().map_err(|e| anyhow!("writing the volume: {}", e.error()))?;
                file.sync_all()?;
                if i == 0 {
                    first_len = file.metadata()?.len();
                }
            }
            Ok(first_len)
        })();
        let continued_in: Vec<String> = made.borrow().iter().map(|p| p.display().to_string()).collect();
        match result {
            Ok(volume_bytes) => Ok(VolumeReport { volume: name, sessions, volume_bytes, continued_in }),
            Err(e) => {
                for p in made.borrow().iter() {
                    let _ = std::fs::remove_file(p);
                }
                // Leave the file as it was before this write.
                match old_len {
                    Some(len) => {
                        if let Ok(f) = OpenOptions::new().write(true).open(file) {
                            let _ = f.set_len(len);
                        }
                    }
                    None => {
                        let _ = std::fs::remove_file(file);
                    }
                }
                Err(e)
            }
        }
    }

    pub(crate) fn write_session<W: std::io::Write>(
        &self,
        w: &mut VolumeWriter<W>,
        id: &SnapshotId,
        session: u32,
        volume_time: u32,
        progress: &Progress,
    ) -> Result<SessionReport> {
        let reader = Reader::new(&self.ds);
        let m = self.ds.read_manifest(id)?;
        let time = model::time::parse_rfc3339(&m.time).unwrap_or_default();
        let client = client_name(id);
        let stamp = model::time::format_rfc3339(time)
            .replace('T', "_")
            .replace(':', ".")
            .trim_end_matches('Z')
            .to_owned();
        let mut label = SessionLabel {
            job_id: job_id(session)?,
            write_time_us: time * 1_000_000,
            pool_name: "cairn".into(),
            pool_type: "Backup".into(),
            job_name: "cairn".into(),
            client_name: client.clone(),
            job: format!("{client}.{stamp}_{:02}", session % 100),
            fileset_name: "cairn".into(),
            job_type: b'B',
            job_level: b'F',
            fileset_md5: String::new(),
            end: None,
        };
        let start_block = w.next_block();
        w.begin_session(session, volume_time, &label)?;
        let mut s = SessionWriter {
            w,
            fi: 0,
            files: 0,
            bytes: 0,
            extras: Some(extras(id, &m, &self.ds.read_state(id)?.notes)?),
            progress,
        };
        for a in &m.archives {
            if a.kind == "image" {
                s.image(&reader, id, a, time)?;
            } else {
                s.archive(&reader, id, a)?;
            }
        }
        s.put_extras()?;
        let (files, bytes) = (s.files, s.bytes);
        label.end = Some(SessionEnd {
            job_files: u32::try_from(files)?,
            job_bytes: bytes,
            start_block,
            // The end label's block: the one being filled now.
            end_block: w.next_block(),
            job_status: b'T',
            ..SessionEnd::default()
        });
        w.end_session(&label)?;
        Ok(SessionReport { session, snapshot: id.to_string(), files, bytes })
    }
}

/// The session's Cairn record: the snapshot, so `cairn volume` can give
/// it back as the datastore had it.
fn extras(id: &SnapshotId, m: &Manifest, notes: &str) -> Result<Vec<u8>> {
    let record = SnapshotRecord { snapshot: id.to_string(), manifest: m.clone(), notes: notes.to_owned() };
    let mut out = CAIRN_MAGIC.to_vec();
    out.push(CAIRN_SNAPSHOT);
    serde_json::to_writer(&mut out, &record)?;
    Ok(out)
}

/// Cairn's snapshot record (stream 28, kind 2): the session's snapshot,
/// as written by `write_session` and read back by every reader.
#[derive(Serialize, serde::Deserialize)]
pub(crate) struct SnapshotRecord {
    pub snapshot: String,
    pub manifest: Manifest,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub notes: String,
}

impl SnapshotRecord {
    /// The record in a record's data, if it is one.
    pub(crate) fn read(stream: i32, data: &[u8]) -> Option<SnapshotRecord> {
        if stream != CAIRN {
            return None;
        }
        let body = data.strip_prefix(CAIRN_MAGIC.as_slice())?.strip_prefix(&[CAIRN_SNAPSHOT])?;
        serde_json::from_slice(body).ok()
    }

    /// The snapshot's archives: (name, kind).
    pub(crate) fn archives(&self) -> Vec<(String, String)> {
        self.manifest.archives.iter().map(|a| (a.name.clone(), a.kind.clone())).collect()
    }
}

struct SessionWriter<'w, 'p, W: std::io::Write> {
    w: &'w mut VolumeWriter<W>,
    /// The last file index given.
    fi: i32,
    files: u64,
    bytes: u64,
    /// The session's Cairn record, written after the first file.
    extras: Option<Vec<u8>>,
    progress: &'p Progress,
}

fn type_bits(kind: EntryKind) -> i64 {
    (match kind {
        EntryKind::Dir => libc::S_IFDIR,
        EntryKind::File => libc::S_IFREG,
        EntryKind::Symlink => libc::S_IFLNK,
        EntryKind::Fifo => libc::S_IFIFO,
        EntryKind::CharDev => libc::S_IFCHR,
        EntryKind::BlockDev => libc::S_IFBLK,
        EntryKind::Socket => libc::S_IFSOCK,
    }) as i64
}

fn stat_of(e: &Entry, nlink: i64, link_fi: i64, data_stream: i32) -> Stat {
    let size = if e.kind == EntryKind::File { e.size as i64 } else { 0 };
    Stat {
        ino: e.ino as i64,
        mode: type_bits(e.kind) | i64::from(e.mode),
        nlink,
        uid: i64::from(e.uid),
        gid: i64::from(e.gid),
        rdev: e.rdev as i64,
        size,
        blksize: 4096,
        blocks: (size + 511) / 512,
        atime: e.mtime,
        mtime: e.mtime,
        ctime: e.ctime,
        link_fi,
        data_stream: i64::from(data_stream),
        ..Stat::default()
    }
}

/// What starts each attribute in Bacula's xattr stream.
const XATTR_MAGIC: u32 = 0x5C5884;

/// A POSIX ACL as Linux keeps it in `system.posix_acl_*` (little-endian:
/// version 2, then (tag u16, permissions u16, id u32) per entry) in the
/// long text form `acl_to_text` gives (`user::rw-`, `user:1000:r--`, …),
/// ids as numbers. `None` for a value that is not such an ACL.
pub fn acl_text(value: &[u8]) -> Option<String> {
    let (head, entries) = value.split_at_checked(4)?;
    if u32::from_le_bytes(head.try_into().ok()?) != 2 || entries.len() % 8 != 0 {
        return None;
    }
    let mut out = String::new();
    for e in entries.chunks_exact(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let perm = u16::from_le_bytes([e[2], e[3]]);
        let id = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        let who = match tag {
            0x01 => "user:".to_owned(),
            0x02 => format!("user:{id}"),
            0x04 => "group:".to_owned(),
            0x08 => format!("group:{id}"),
            0x10 => "mask:".to_owned(),
            0x20 => "other:".to_owned(),
            _ => return None,
        };
        let bit = |b: u16, c: char| if perm & b != 0 { c } else { '-' };
        out.push_str(&format!("{who}:{}{}{}\n", bit(4, 'r'), bit(2, 'w'), bit(1, 'x')));
    }
    Some(out)
}

/// `/ARCHIVE/PATH` (`/ARCHIVE` for the archive's root).
fn volume_name(archive: &str, path: &[u8]) -> Vec<u8> {
    let mut name = format!("/{archive}").into_bytes();
    if !path.is_empty() {
        name.push(b'/');
        name.extend_from_slice(path);
    }
    name
}

fn is_ancestor(dir: &[u8], path: &[u8]) -> bool {
    dir.is_empty() || (path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/')
}

impl<W: std::io::Write> SessionWriter<'_, '_, W> {
    fn attributes(&mut self, a: Attributes) -> Result<()> {
        self.w.record(a.file_index, UNIX_ATTRIBUTES, &a.encode()?)?;
        self.files += 1;
        Ok(())
    }

    /// Cairn's own record of an archive entry (every field, nanoseconds,
    /// xattrs, extents), right after its attribute record.
    fn entry(&mut self, fi: i32, archive: &str, e: &Entry) -> Result<()> {
        let mut rec = CAIRN_MAGIC.to_vec();
        rec.push(CAIRN_ENTRY);
        let name = archive.as_bytes();
        rec.extend_from_slice(&u16::try_from(name.len())?.to_be_bytes());
        rec.extend_from_slice(name);
        filevol::archive::encode_entry(e, &mut rec);
        self.w.record(fi, CAIRN, &rec)?;
        Ok(())
    }

    fn next_fi(&mut self) -> Result<i32> {
        self.fi = self.fi.checked_add(1).ok_or_else(|| anyhow!("too many files for one session"))?;
        Ok(self.fi)
    }

    fn put_extras(&mut self) -> Result<()> {
        if let Some(x) = self.extras.take() {
            if self.fi == 0 {
                bail!("a snapshot with no file cannot be written to a volume");
            }
            self.w.record(1, CAIRN, &x)?;
        }
        Ok(())
    }

    fn digest(&mut self, fi: i32, hash: blake3::Hash) -> Result<()> {
        let mut rec = CAIRN_MAGIC.to_vec();
        rec.push(CAIRN_DIGEST);
        rec.extend_from_slice(hash.as_bytes());
        self.w.record(fi, CAIRN, &rec)?;
        Ok(())
    }

    /// One piece of sparse data, led by its offset. The file's digest
    /// covers its data records as written, offsets included.
    fn sparse_piece(&mut self, fi: i32, offset: u64, data: &[u8], hash: &mut blake3::Hasher) -> Result<()> {
        let mut rec = Vec::with_capacity(8 + data.len());
        rec.extend_from_slice(&offset.to_be_bytes());
        rec.extend_from_slice(data);
        hash.update(&rec);
        self.w.record(fi, SPARSE_DATA, &rec)?;
        Ok(())
    }

    fn archive(&mut self, reader: &Reader<'_>, id: &SnapshotId, a: &ManifestArchive) -> Result<()> {
        let payload_index = reader.src.read_didx(id, &a.indexes[1])?;
        let mut payload = StreamReader::new(reader.src.chunk_reader(), payload_index);
        let mut dirs: Vec<Entry> = Vec::new();
        let mut links: std::collections::HashMap<u64, (Vec<u8>, i32)> = std::collections::HashMap::new();
        for e in reader.entries(id, a)? {
            let e = e?;
            while dirs.last().is_some_and(|d| !is_ancestor(&d.path, &e.path)) {
                let d = dirs.pop().expect("a directory");
                self.directory(&a.name, &d)?;
            }
            match e.kind {
                EntryKind::Dir => dirs.push(e),
                EntryKind::Socket => {} // nothing to restore: its program makes it again
                EntryKind::File => self.file(&a.name, &e, &mut payload, &mut links)?,
                EntryKind::Symlink | EntryKind::Fifo | EntryKind::CharDev | EntryKind::BlockDev => {
                    let fi = self.next_fi()?;
                    let file_type =
                        if e.kind == EntryKind::Symlink { FileType::Symlink } else { FileType::Special };
                    let link = if e.kind == EntryKind::Symlink { e.link_target.clone() } else { Vec::new() };
                    let stat = stat_of(&e, 1, 0, 0);
                    self.attributes(Attributes {
                        file_index: fi,
                        file_type,
                        name: volume_name(&a.name, &e.path),
                        stat,
                        link,
                    })?;
                    self.entry(fi, &a.name, &e)?;
                    self.xattrs(fi, &e)?;
                }
            }
            self.put_extras_after_first()?;
        }
        while let Some(d) = dirs.pop() {
            self.directory(&a.name, &d)?;
        }
        Ok(())
    }

    fn put_extras_after_first(&mut self) -> Result<()> {
        if self.fi >= 1 { self.put_extras() } else { Ok(()) }
    }

    fn directory(&mut self, archive: &str, d: &Entry) -> Result<()> {
        let fi = self.next_fi()?;
        let mut name = volume_name(archive, &d.path);
        name.push(b'/');
        let stat = stat_of(d, 2, 0, 0);
        self.attributes(Attributes {
            file_index: fi,
            file_type: FileType::Directory,
            name,
            stat,
            link: Vec::new(),
        })?;
        self.entry(fi, archive, d)?;
        self.xattrs(fi, d)?;
        self.put_extras_after_first()
    }

    fn file(
        &mut self,
        archive: &str,
        e: &Entry,
        payload: &mut StreamReader,
        links: &mut std::collections::HashMap<u64, (Vec<u8>, i32)>,
    ) -> Result<()> {
        let fi = self.next_fi()?;
        let name = volume_name(archive, &e.path);
        if e.hardlink != 0 {
            if let Some((first, first_fi)) = links.get(&e.hardlink) {
                let stat = stat_of(e, 2, i64::from(*first_fi), FILE_DATA);
                let a = Attributes {
                    file_index: fi,
                    file_type: FileType::LinkSaved,
                    name,
                    stat,
                    link: first.clone(),
                };
                self.attributes(a)?;
                return self.entry(fi, archive, e);
            }
            links.insert(e.hardlink, (name.clone(), fi));
        }
        let nlink = if e.hardlink != 0 { 2 } else { 1 };
        let sparse = e.extents.is_some();
        let data_stream = if sparse { SPARSE_DATA } else { FILE_DATA };
        let file_type = if e.size == 0 { FileType::RegularEmpty } else { FileType::Regular };
        let stat = stat_of(e, nlink, 0, data_stream);
        self.attributes(Attributes { file_index: fi, file_type, name, stat, link: Vec::new() })?;
        self.entry(fi, archive, e)?;
        if e.size == 0 {
            return self.xattrs(fi, e);
        }
        let mut hash = blake3::Hasher::new();
        if let Some(extents) = &e.extents {
            // The payload holds the extents' bytes in order.
            let mut ext = extents.iter().copied();
            let (mut off, mut left) = ext.next().unwrap_or((0, 0));
            let mut end = 0u64;
            let (progress, w) = (self.progress, &mut *self);
            copy_data(payload, e, DATA_PIECE, progress, &mut |data| {
                let mut data = data;
                while !data.is_empty() {
                    while left == 0 {
                        (off, left) = ext.next().ok_or_else(|| anyhow!("more data than the extents hold"))?;
                    }
                    let n = (left as usize).min(data.len()).min(DATA_PIECE);
                    w.sparse_piece(fi, off, &data[..n], &mut hash)?;
                    end = off + n as u64;
                    off += n as u64;
                    left -= n as u64;
                    data = &data[n..];
                }
                Ok(())
            })?;
            if end < e.size {
                // The last piece tells the file's length.
                self.sparse_piece(fi, e.size - 1, &[0], &mut hash)?;
            }
        } else {
            let (progress, w) = (self.progress, &mut *self);
            copy_data(payload, e, DATA_PIECE, progress, &mut |data| {
                hash.update(data);
                w.w.record(fi, FILE_DATA, data)?;
                Ok(())
            })?;
        }
        self.bytes += e.data_len();
        self.digest(fi, hash.finalize())?;
        self.xattrs(fi, e)
    }

    /// A file's POSIX ACLs in Bacula's ACL streams (as `acl_to_text`
    /// text) and its other extended attributes in its xattr stream.
    fn xattrs(&mut self, fi: i32, e: &Entry) -> Result<()> {
        let mut other = Vec::new();
        let mut acls = Vec::new();
        for (name, value) in &e.xattrs {
            match name.as_slice() {
                b"system.posix_acl_access" => acls.push((ACL_LINUX_ACCESS, value)),
                b"system.posix_acl_default" => acls.push((ACL_LINUX_DEFAULT, value)),
                _ => {
                    for part in [&XATTR_MAGIC.to_be_bytes()[..], &(name.len() as u32).to_be_bytes(), name] {
                        other.extend_from_slice(part);
                    }
                    other.extend_from_slice(&(value.len() as u32).to_be_bytes());
                    other.extend_from_slice(value);
                }
            }
        }
        acls.sort_by_key(|(stream, _)| std::cmp::Reverse(*stream));
        for (stream, value) in acls {
            if let Some(text) = acl_text(value) {
                self.w.record(fi, stream, text.as_bytes())?;
            }
        }
        if !other.is_empty() {
            self.w.record(fi, XATTR_LINUX, &other)?;
        }
        Ok(())
    }

    /// An image archive as one sparse file, dated `time` (the snapshot's).
    fn image(&mut self, reader: &Reader<'_>, id: &SnapshotId, a: &ManifestArchive, time: i64) -> Result<()> {
        let fidx = reader.src.read_fidx(id, &a.indexes[0])?;
        let fi = self.next_fi()?;
        let size = fidx.size as i64;
        let stat = Stat {
            mode: i64::from(libc::S_IFREG) | 0o600,
            nlink: 1,
            size,
            blksize: 4096,
            blocks: (size + 511) / 512,
            atime: time,
            mtime: time,
            ctime: time,
            data_stream: i64::from(SPARSE_DATA),
            ..Stat::default()
        };
        let name = volume_name(&a.name, b"");
        let file_type = if size == 0 { FileType::RegularEmpty } else { FileType::Regular };
        self.attributes(Attributes { file_index: fi, file_type, name, stat, link: Vec::new() })?;
        if size == 0 {
            return self.put_extras_after_first();
        }
        let zero_chunk = ChunkId::zeros(fidx.chunk_size as usize);
        let mut fetch = Fetcher::new(reader.src.chunk_reader(), fidx.ids.clone());
        let mut hash = blake3::Hasher::new();
        let mut end = 0u64;
        for i in 0..fetch.len() {
            let start = i as u64 * u64::from(fidx.chunk_size);
            let len = fidx.chunk_len(i);
            if fidx.ids[i] == zero_chunk && len == u64::from(fidx.chunk_size) {
                self.progress.add_bytes(len);
                continue;
            }
            let data = fetch.get(i).map_err(|e| anyhow!("image {}: {e}", a.name))?;
            if data.len() as u64 != len {
                bail!("image {}: chunk {i} holds {} bytes, the index says {len}", a.name, data.len());
            }
            for (j, piece) in data.chunks(DATA_PIECE).enumerate() {
                if piece.iter().all(|b| *b == 0) {
                    continue;
                }
                let off = start + (j * DATA_PIECE) as u64;
                self.sparse_piece(fi, off, piece, &mut hash)?;
                self.bytes += piece.len() as u64;
                end = off + piece.len() as u64;
            }
            self.progress.add_bytes(len);
        }
        if end < fidx.size {
            self.sparse_piece(fi, fidx.size - 1, &[0], &mut hash)?;
        }
        self.digest(fi, hash.finalize())?;
        self.put_extras_after_first()
    }
}

/// A session as `cairn volume ls` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    /// The volume it starts in.
    pub volume: String,
    pub session: u32,
    /// The snapshot it holds (from Cairn's record; empty if the session
    /// was not written by Cairn).
    pub snapshot: String,
    pub time: String,
    /// Bacula's unique job name for it.
    pub job: String,
    /// Files and data bytes, as its end label says (absent: the session
    /// has no end, it was cut short).
    pub files: Option<u64>,
    pub bytes: Option<u64>,
    /// Attribute records seen.
    pub files_seen: u64,
    /// The snapshot's archives: (name, kind), from Cairn's record.
    pub archives: Vec<(String, String)>,
    /// The snapshot's manifest, from Cairn's record.
    #[serde(skip)]
    pub manifest: Option<Manifest>,
    /// `name`s of the files, with `--files`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<VolumeEntry>,
}

/// A file in a volume, as its attribute record says.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeEntry {
    pub file_index: i32,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub mode: u32,
    pub size: u64,
    pub mtime: String,
    /// The name, invalid UTF-8 replaced.
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub link: String,
}

fn kind_of(a: &Attributes) -> &'static str {
    match a.file_type {
        FileType::Directory => "dir",
        FileType::Regular | FileType::RegularEmpty => "file",
        FileType::LinkSaved => "hardlink",
        FileType::Symlink => "symlink",
        FileType::Special => match (a.stat.mode as u32) & libc::S_IFMT {
            libc::S_IFIFO => "fifo",
            libc::S_IFCHR => "chardev",
            libc::S_IFBLK => "blockdev",
            _ => "special",
        },
    }
}

/// One volume of a set, opened for reading.
pub(crate) type VolumeInput = Box<dyn std::io::Read>;

/// Where the volumes of a set come from, in order: files, or cartridges
/// in a drive.
pub(crate) trait VolumeSource {
    /// Volume `i` (from 0) and a name for it in messages; `None` after
    /// the last.
    fn open(&mut self, i: usize) -> Result<Option<(String, VolumeInput)>>;
}

/// Volume files, in the order given.
struct VolumeFiles<'p>(&'p [std::path::PathBuf]);

impl VolumeSource for VolumeFiles<'_> {
    fn open(&mut self, i: usize) -> Result<Option<(String, VolumeInput)>> {
        let Some(path) = self.0.get(i) else { return Ok(None) };
        let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Some((path.display().to_string(), Box::new(std::io::BufReader::with_capacity(1 << 20, f)))))
    }
}

/// The volumes of a set read in order as one stream of events: a session
/// (and a record) cut at the end of one volume goes on in the next.
pub(crate) struct VolumeSet<'s> {
    source: Box<dyn VolumeSource + 's>,
    /// The volume being read, and its name.
    current: usize,
    name: String,
    reader: Option<VolumeReader<VolumeInput>>,
    ended: bool,
}

impl<'s> VolumeSet<'s> {
    pub(crate) fn new(paths: &'s [std::path::PathBuf]) -> Self {
        Self::from_source(Box::new(VolumeFiles(paths)))
    }

    pub(crate) fn from_source(source: Box<dyn VolumeSource + 's>) -> Self {
        VolumeSet { source, current: 0, name: String::new(), reader: None, ended: false }
    }

    /// The name of the volume being read.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The next event (or the damage found instead); `None` after the
    /// last volume.
    pub(crate) fn next_event(&mut self) -> Result<Option<Result<Event, volfmt::VolError>>> {
        loop {
            if self.ended {
                return Ok(None);
            }
            let Some(r) = self.reader.as_mut() else {
                match self.source.open(0)? {
                    Some((name, input)) => {
                        self.name = name;
                        self.reader = Some(VolumeReader::new(input));
                    }
                    None => self.ended = true,
                }
                continue;
            };
            match r.next_event() {
                Ok(Some(e)) => return Ok(Some(Ok(e))),
                Err(e) => return Ok(Some(Err(e))),
                Ok(None) => match self.source.open(self.current + 1)? {
                    Some((name, input)) => {
                        self.current += 1;
                        self.name = name;
                        self.reader.as_mut().expect("a reader").next_volume(input);
                    }
                    None => self.ended = true,
                },
            }
        }
    }

    /// Damage at the end of the set: a record the last volume cut off.
    pub(crate) fn unfinished(&self) -> Option<String> {
        let missing = self.reader.as_ref()?.unfinished()?;
        Some(format!(
            "{}: the volumes end {missing} bytes before a record's end (a further volume of the set is missing)",
            self.name
        ))
    }
}

/// The sessions of the volume files `paths` (in order), with their files
/// when `files`, and the damage found (one line per damaged block, naming
/// the volume): what can be read is listed all the same.
pub fn list_volumes(paths: &[std::path::PathBuf], files: bool) -> Result<(Vec<SessionInfo>, Vec<String>)> {
    list_sessions(VolumeSet::new(paths), files)
}

/// The sessions of a set of volumes, as `list_volumes`.
pub(crate) fn list_sessions(mut set: VolumeSet<'_>, files: bool) -> Result<(Vec<SessionInfo>, Vec<String>)> {
    let mut out: Vec<SessionInfo> = Vec::new();
    let mut damage = Vec::new();
    let mut volume = String::new();
    // Sessions begun and not ended, by VolSessionId and VolSessionTime →
    // their place in `out` (sessions written at once interleave).
    let mut open: std::collections::HashMap<(u32, u32), usize> = Default::default();
    {
        loop {
            let e = match set.next_event()? {
                Some(Ok(e)) => e,
                None => break,
                Some(Err(e)) => {
                    damage.push(format!("{}: {e}", set.name()));
                    continue;
                }
            };
            let path = set.name().to_owned();
            match e {
                Event::Volume(v) => volume = v.volume_name,
                Event::SessionStart { session_id, session_time, label } => {
                    let time = model::time::format_rfc3339(label.write_time_us / 1_000_000);
                    out.push(SessionInfo {
                        volume: volume.clone(),
                        session: session_id,
                        snapshot: String::new(),
                        time,
                        job: label.job,
                        files: None,
                        bytes: None,
                        files_seen: 0,
                        archives: Vec::new(),
                        manifest: None,
                        entries: Vec::new(),
                    });
                    open.insert((session_id, session_time), out.len() - 1);
                }
                Event::SessionEnd { session_id, session_time, label } => {
                    if let (Some(i), Some(end)) = (open.remove(&(session_id, session_time)), label.end) {
                        out[i].files = Some(u64::from(end.job_files));
                        out[i].bytes = Some(end.job_bytes);
                    }
                }
                Event::Record { record, session_id, session_time, .. } => {
                    let Some(&i) = open.get(&(session_id, session_time)) else { continue };
                    if record.stream == UNIX_ATTRIBUTES {
                        out[i].files_seen += 1;
                        if files {
                            let Ok(a) = Attributes::decode(&record.data) else {
                                damage.push(format!("{path}: an unreadable attribute record"));
                                continue;
                            };
                            out[i].entries.push(VolumeEntry {
                                file_index: a.file_index,
                                kind: kind_of(&a),
                                mode: (a.stat.mode as u32) & 0o7777,
                                size: a.stat.size.max(0) as u64,
                                mtime: model::time::format_rfc3339(a.stat.mtime),
                                name: String::from_utf8_lossy(&a.name).into_owned(),
                                link: String::from_utf8_lossy(&a.link).into_owned(),
                            });
                        }
                    } else if let Some(s) = SnapshotRecord::read(record.stream, &record.data) {
                        out[i].archives = s.archives();
                        out[i].snapshot = s.snapshot;
                        out[i].manifest = Some(s.manifest);
                    }
                }
                Event::OtherLabel { .. } => {}
            }
        }
    }
    damage.extend(set.unfinished());
    Ok((out, damage))
}
