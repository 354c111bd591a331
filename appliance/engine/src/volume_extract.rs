//! Restoring a snapshot from volume files with no datastore and no
//! catalog: Cairn's own records in the volume give every entry's full
//! metadata, the files' data comes from Bacula's data streams and is
//! checked against each file's digest, and the restore goes through the
//! same `Restorer` as `cairn restore` (never outside the target). A
//! damaged block is reported with the file it hit; everything else is
//! still restored.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use filevol::Manifest;
use filevol::archive::{Entry, decode_entry, escaped};
use serde::Serialize;
use volfmt::stream::{
    CAIRN, CAIRN_DIGEST, CAIRN_ENTRY, CAIRN_MAGIC, CAIRN_SNAPSHOT, FILE_DATA, SPARSE_DATA, UNIX_ATTRIBUTES,
};
use volfmt::{Attributes, Event};

use crate::fsrestore::{Begin, FileSink, RestoreOptions, Restorer};
use crate::volume::{SessionInfo, VolumeSet, list_volumes};

/// Which session to restore, and how.
#[derive(Debug, Clone, Default)]
pub struct ExtractOptions {
    /// The session's number in the listing of the volumes (from 1); the
    /// only one when `None`.
    pub session: Option<usize>,
    pub overwrite: bool,
    /// Each archive in TARGET/ARCHIVE even when the snapshot has one.
    pub per_archive: bool,
    /// Only this path: `ARCHIVE/PATH`, or `PATH` in a snapshot of one
    /// archive; it lands in TARGET by its last name, as `cairn restore`
    /// puts a path.
    pub path: Option<String>,
}

/// What an extract did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExtractReport {
    pub snapshot: String,
    /// Files (of any kind) restored, and their data bytes.
    pub files: u64,
    pub bytes: u64,
    /// Files not restored: (name, why).
    pub failed: Vec<(String, String)>,
    /// Damage found in the volumes, with what it hit.
    pub damage: Vec<String>,
    pub warnings: Vec<String>,
    /// The snapshot's manifest and notes, from Cairn's record in the
    /// session.
    #[serde(skip)]
    pub manifest: Option<Manifest>,
    #[serde(skip)]
    pub notes: String,
}

/// The file being restored.
struct Current {
    name: String,
    archive: Option<String>,
    sink: Option<FileSink>,
    image: Option<File>,
    hash: blake3::Hasher,
    /// The file's data records were checked against its digest.
    checked: bool,
    has_data: bool,
    /// Not asked for (outside `--path`): read past.
    skip: bool,
}

struct Extract<'t> {
    target: &'t Path,
    /// Archives as a subdirectory each (several in the snapshot).
    per_archive: bool,
    opts: &'t ExtractOptions,
    restorers: HashMap<String, Restorer>,
    current: Option<Current>,
    report: ExtractReport,
    /// `--path` resolved: the archive and the path in it (empty: all of it).
    only: Option<(String, Vec<u8>)>,
}

/// An archive name from a volume: one safe path component.
fn archive_name(name: &str) -> Result<&str> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        bail!("the volume names an archive {:?}, which is not one path component", escaped(name.as_bytes()));
    }
    Ok(name)
}

impl Extract<'_> {
    fn archive_target(&self, archive: &str) -> PathBuf {
        if self.per_archive { self.target.join(archive) } else { self.target.to_owned() }
    }

    fn restorer(&mut self, archive: &str) -> Result<&mut Restorer> {
        if !self.restorers.contains_key(archive) {
            let opts = RestoreOptions {
                overwrite: self.opts.overwrite,
                parents_later: true,
                ..RestoreOptions::default()
            };
            let r = Restorer::new(&self.archive_target(archive), opts)?;
            self.restorers.insert(archive.to_owned(), r);
        }
        Ok(self.restorers.get_mut(archive).expect("just made"))
    }

    fn fail(&mut self, name: &str, why: String) {
        self.report.failed.push((name.to_owned(), why));
    }

    /// Complete the current file: kept only when its data was whole and
    /// matched its digest.
    fn finish_current(&mut self) -> Result<()> {
        let Some(c) = self.current.take() else { return Ok(()) };
        if c.skip {
            return Ok(());
        }
        let whole = !c.has_data || c.checked;
        if let Some(sink) = c.sink {
            let archive = c.archive.clone().expect("a sink has an archive");
            let r = self.restorer(&archive)?;
            if whole && sink.remaining() == 0 {
                r.finish_file(sink)?;
            } else {
                r.discard(sink);
                let why = if whole {
                    "its data is incomplete"
                } else {
                    "its data does not match its digest or was not all read"
                };
                self.fail(&c.name, why.into());
                return Ok(());
            }
        }
        if c.image.is_some() && !whole {
            self.fail(&c.name, "its data does not match its digest or was not all read".into());
            return Ok(());
        }
        self.report.files += 1;
        Ok(())
    }

    fn record(&mut self, r: volfmt::Record) -> Result<()> {
        match r.stream {
            UNIX_ATTRIBUTES => {
                self.finish_current()?;
                let a = Attributes::decode(&r.data)?;
                let name = String::from_utf8_lossy(&a.name).into_owned();
                self.current = Some(Current {
                    name,
                    archive: None,
                    sink: None,
                    image: None,
                    hash: blake3::Hasher::new(),
                    checked: false,
                    has_data: false,
                    skip: false,
                });
            }
            CAIRN if r.data.starts_with(CAIRN_MAGIC) => self.cairn(&r.data[CAIRN_MAGIC.len()..])?,
            FILE_DATA | SPARSE_DATA => self.data(r.stream, &r.data)?,
            _ => {} // ACLs and xattrs: the entry holds them
        }
        Ok(())
    }

    fn cairn(&mut self, body: &[u8]) -> Result<()> {
        let Some((&kind, rest)) = body.split_first() else { return Ok(()) };
        if kind == CAIRN_SNAPSHOT {
            if let Ok(s) = serde_json::from_slice::<crate::volume::SnapshotRecord>(rest) {
                self.report.manifest = Some(s.manifest);
                self.report.notes = s.notes;
            }
            return Ok(());
        }
        let Some(c) = self.current.as_mut() else { return Ok(()) };
        match kind {
            CAIRN_ENTRY => {
                let (len, rest) = rest.split_at_checked(2).ok_or_else(|| anyhow!("a short entry record"))?;
                let len = u16::from_be_bytes([len[0], len[1]]) as usize;
                let (archive, entry) =
                    rest.split_at_checked(len).ok_or_else(|| anyhow!("a short entry record"))?;
                let archive = archive_name(std::str::from_utf8(archive)?)?.to_owned();
                let body = entry.get(4..).ok_or_else(|| anyhow!("a short entry record"))?;
                let e: Entry = decode_entry(body)?;
                c.archive = Some(archive.clone());
                let name = c.name.clone();
                let rel = match &self.only {
                    None => e.path.clone(),
                    Some((a, _)) if *a != archive => {
                        c.skip = true;
                        return Ok(());
                    }
                    Some((_, inner)) if inner.is_empty() => e.path.clone(),
                    Some((_, inner)) => {
                        let under = e.path == *inner
                            || (e.path.starts_with(inner) && e.path.get(inner.len()) == Some(&b'/'));
                        if !under {
                            c.skip = true;
                            return Ok(());
                        }
                        let base = inner.iter().rposition(|b| *b == b'/').map_or(0, |i| i + 1);
                        e.path[base..].to_vec()
                    }
                };
                let begun = self.restorer(&archive)?.begin(&rel, &e);
                match begun {
                    Ok(Begin::Data(sink)) => self.current.as_mut().expect("current").sink = Some(sink),
                    Ok(Begin::Done) => {}
                    Err(err) => {
                        self.current = None;
                        self.fail(&name, format!("{err}"));
                    }
                }
            }
            CAIRN_DIGEST => {
                let want = rest.get(..32).ok_or_else(|| anyhow!("a short digest record"))?;
                let got = c.hash.finalize();
                c.checked = got.as_bytes()[..] == *want;
            }
            _ => {}
        }
        Ok(())
    }

    fn data(&mut self, stream: i32, payload: &[u8]) -> Result<()> {
        let Some(c) = self.current.as_mut() else { return Ok(()) };
        if c.skip {
            return Ok(());
        }
        if c.archive.is_none() && c.image.is_none() {
            let name = c.name.trim_start_matches('/');
            if self.only.as_ref().is_some_and(|(a, inner)| a != name || !inner.is_empty()) {
                c.skip = true;
                return Ok(());
            }
        }
        let c = self.current.as_mut().expect("current");
        c.has_data = true;
        c.hash.update(payload);
        if c.archive.is_none() && c.image.is_none() {
            // No entry record: an image archive, `/ARCHIVE` in the volume.
            let archive = archive_name(c.name.trim_start_matches('/'))?.to_owned();
            // An image is always TARGET/ARCHIVE.
            let path = self.target.join(&archive);
            std::fs::create_dir_all(self.target)?;
            let mut o = OpenOptions::new();
            o.write(true);
            if self.opts.overwrite {
                o.create(true).truncate(true)
            } else {
                o.create_new(true)
            };
            let f = o.open(&path).with_context(|| format!("cannot create {}", path.display()))?;
            let c = self.current.as_mut().expect("current");
            c.image = Some(f);
        }
        let c = self.current.as_mut().expect("current");
        let (offset, data) = if stream == SPARSE_DATA {
            let (off, data) =
                payload.split_at_checked(8).ok_or_else(|| anyhow!("a sparse piece without its offset"))?;
            (Some(u64::from_be_bytes(off.try_into().expect("8 bytes"))), data)
        } else {
            (None, payload)
        };
        if let Some(img) = &c.image {
            let at = offset.unwrap_or(0);
            img.write_all_at(data, at)?;
            self.report.bytes += data.len() as u64;
        } else if let Some(sink) = c.sink.as_mut() {
            // The piece that only tells a sparse file's length is not data.
            if sink.remaining() > 0 {
                sink.write(data)?;
                self.report.bytes += data.len() as u64;
            }
        }
        Ok(())
    }
}

/// Restore one session of the volume files `paths` (given in order) into
/// `target`. Damage and files that could not be restored are in the
/// report; an `Err` only when nothing could be done.
pub fn extract_volumes(paths: &[PathBuf], target: &Path, opts: &ExtractOptions) -> Result<ExtractReport> {
    let (sessions, _) = list_volumes(paths, false)?;
    let sessions: Vec<SessionInfo> = sessions;
    let wanted = match (opts.session, sessions.len()) {
        (Some(n), len) if n >= 1 && n <= len => n,
        (Some(n), len) => bail!("there is no session {n}: the volumes hold {len}"),
        (None, 1) => 1,
        (None, 0) => bail!("the volumes hold no session that can be read"),
        (None, n) => {
            bail!("the volumes hold {n} sessions: choose one with --session (see `cairn volume ls`)")
        }
    };
    let info = &sessions[wanted - 1];
    extract_session(VolumeSet::new(paths), Pick::Nth(wanted), &info.snapshot, &info.archives, target, opts)
}

/// Which session of a set to restore.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pick {
    /// The n-th (from 1) in the order the set holds their starts.
    Nth(usize),
    /// The one with this VolSessionId and VolSessionTime: on a tape where
    /// jobs wrote at once, its blocks come between other sessions'.
    Id(u32, u32),
}

/// Restore session `wanted` (counted from 1 in the order `set` holds
/// them) of `set`, which holds `snapshot` with `archives` (name, kind),
/// into `target`.
pub(crate) fn extract_session(
    mut set: VolumeSet<'_>,
    wanted: Pick,
    snapshot: &str,
    archives: &[(String, String)],
    target: &Path,
    opts: &ExtractOptions,
) -> Result<ExtractReport> {
    let only = match &opts.path {
        None => None,
        Some(p) => {
            let p = p.trim_matches('/');
            let (first, rest) = p.split_once('/').unwrap_or((p, ""));
            match archives.iter().find(|(a, _)| a == first) {
                Some((a, _)) => Some((a.clone(), rest.as_bytes().to_vec())),
                None if archives.len() == 1 => Some((archives[0].0.clone(), p.as_bytes().to_vec())),
                None => bail!(
                    "--path {p}: name the archive first ({})",
                    archives.iter().map(|a| a.0.as_str()).collect::<Vec<_>>().join(", ")
                ),
            }
        }
    };
    let mut x = Extract {
        target,
        only,
        per_archive: opts.path.is_none() && (opts.per_archive || archives.len() > 1),
        opts,
        restorers: HashMap::new(),
        current: None,
        report: ExtractReport { snapshot: snapshot.to_owned(), ..ExtractReport::default() },
    };
    std::fs::create_dir_all(target).with_context(|| format!("cannot create {}", target.display()))?;
    let mut seen = 0usize;
    let mut inside = false;
    // The session being restored (id and time), once its start is seen,
    // and whether its end was.
    let mut current: Option<(u32, u32)> = None;
    let mut ended = false;
    'volumes: {
        loop {
            let Some(event) = set.next_event()? else { break };
            let path = set.name().to_owned();
            match event {
                Ok(Event::SessionStart { session_id, session_time, .. }) if current.is_none() => {
                    seen += 1;
                    inside = match wanted {
                        Pick::Nth(n) => seen == n,
                        Pick::Id(id, time) => (session_id, session_time) == (id, time),
                    };
                    if inside {
                        current = Some((session_id, session_time));
                    }
                }
                Ok(Event::SessionEnd { session_id, session_time, .. })
                    if inside && current == Some((session_id, session_time)) =>
                {
                    x.finish_current()?;
                    ended = true;
                    break 'volumes;
                }
                Ok(Event::Record { record, session_id, session_time, .. })
                    if inside && current == Some((session_id, session_time)) =>
                {
                    if let Err(e) = x.record(record) {
                        let name = x.current.take().map(|c| c.name).unwrap_or_default();
                        x.fail(&name, format!("{e:#}"));
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if inside {
                        let hit = x.current.as_ref().map(|c| c.name.clone());
                        let what = match &hit {
                            Some(name) => format!(
                                "{path}: {e} (it hit {name}; files whose records were all in that block are not restored)"
                            ),
                            None => format!("{path}: {e}"),
                        };
                        x.report.damage.push(what);
                        if let Some(c) = x.current.take() {
                            if let (Some(sink), Some(archive)) = (c.sink, c.archive) {
                                x.restorer(&archive)?.discard(sink);
                            }
                            x.fail(&c.name, "a damaged block held part of it".into());
                        }
                    } else {
                        x.report.damage.push(format!("{path}: {e}"));
                    }
                }
            }
        }
    }
    // (Another session's record may be in progress where this one ended:
    // sessions written at once interleave.)
    if inside
        && !ended
        && let Some(cut) = set.unfinished()
    {
        x.report.damage.push(cut);
    }
    x.finish_current()?;
    for (_, r) in x.restorers.drain() {
        let stats = r.finish()?;
        x.report.warnings.extend(stats.warnings);
    }
    Ok(x.report)
}

/// What `scan` put back into a datastore.
#[derive(Debug, Clone, Serialize)]
pub struct ScanReport {
    pub session: usize,
    pub snapshot: String,
    /// `added`, or `present` when the datastore already held it.
    pub state: &'static str,
    pub files: u64,
}

impl crate::Engine {
    /// Put the sessions of volume files back into this datastore as the
    /// snapshots they hold (same group, namespace, time, tags and archive
    /// names), chunked and deduplicated as a backup would be: each session
    /// is extracted (digests checked) into a work directory inside the
    /// datastore and backed up from there. `session`: only that one.
    pub fn scan_volumes(
        &self,
        paths: &[PathBuf],
        session: Option<usize>,
        progress: &crate::Progress,
    ) -> Result<Vec<ScanReport>> {
        let (sessions, damage) = list_volumes(paths, false)?;
        if !damage.is_empty() {
            bail!(
                "the volumes are damaged ({}); `cairn volume extract` restores what is whole",
                damage.join("; ")
            );
        }
        let mut out = Vec::new();
        for (i, info) in sessions.iter().enumerate() {
            let n = i + 1;
            if session.is_some_and(|s| s != n) {
                continue;
            }
            if info.snapshot.is_empty() {
                bail!("session {n} holds no Cairn snapshot record; it was not written by Cairn");
            }
            let manifest =
                info.manifest.as_ref().ok_or_else(|| anyhow!("session {n}: no snapshot record"))?;
            let (state, files) = self
                .put_back(
                    &info.snapshot,
                    Some(manifest),
                    |work| {
                        let opts = ExtractOptions {
                            session: Some(n),
                            overwrite: false,
                            per_archive: true,
                            path: None,
                        };
                        extract_volumes(paths, work, &opts)
                    },
                    progress,
                )
                .with_context(|| format!("session {n}"))?;
            out.push(ScanReport { session: n, snapshot: info.snapshot.clone(), state, files });
        }
        Ok(out)
    }

    /// Put `snapshot` (whose manifest is `manifest`) back into this
    /// datastore, unless it holds it already: `extract` restores it into a
    /// work area (each archive in its own directory), which is then backed
    /// up as the same group, time and tags. Returns `added` or `present`,
    /// and the files extracted.
    pub(crate) fn put_back(
        &self,
        snapshot: &str,
        manifest: Option<&Manifest>,
        extract: impl FnOnce(&Path) -> Result<ExtractReport>,
        progress: &crate::Progress,
    ) -> Result<(&'static str, u64)> {
        let id = model::SnapshotId::parse(snapshot, &model::Namespace::root())?;
        if self.datastore().read_manifest(&id).is_ok() {
            return Ok(("present", 0));
        }
        let work = self.datastore().work_area()?;
        let report = extract(work.path())?;
        if !report.failed.is_empty() || !report.damage.is_empty() {
            bail!("{} files could not be read back; nothing was added", report.failed.len());
        }
        let manifest = manifest
            .or(report.manifest.as_ref())
            .ok_or_else(|| anyhow!("the session holds no snapshot record"))?;
        let group = model::BackupGroup::new(
            model::Namespace::parse(&manifest.ns)?,
            &manifest.backup_type,
            &manifest.backup_id,
        )?;
        let time = model::time::parse_rfc3339(&manifest.time)
            .ok_or_else(|| anyhow!("bad snapshot time {:?}", manifest.time))?;
        let backup = crate::BackupOptions {
            group,
            sources: manifest.archives.iter().map(|a| work.path().join(&a.name)).collect(),
            tags: manifest.tags.clone(),
            excludes: Vec::new(),
            one_file_system: false,
            time,
        };
        // The snapshot says what made it (a source handler's name, version
        // and digest), as the original did: its files are what the
        // handler gave, so a restore through the handler works again.
        let source = manifest.source.clone();
        let made = self.backup_with(&backup.group, backup.time, |target| {
            let mut m = crate::backup::back_up(target, &backup, progress)?;
            m.source = source;
            Ok(m)
        })?;
        if made.id != id {
            bail!("the snapshot came back as {}, not {snapshot}", made.id);
        }
        if !report.notes.is_empty() {
            self.set_notes(&id, &report.notes)?;
        }
        Ok(("added", report.files))
    }
}
