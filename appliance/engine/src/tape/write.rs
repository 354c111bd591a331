//! A tape backup job: snapshots written to a pool's media set, one
//! session each, cartridge after cartridge as they fill.
//!
//! A cartridge is labelled once, when it is first written into a set
//! (block 0: the volume label and Cairn's media label; then a filemark),
//! so WORM cartridges work. Each session ends with a filemark, so a
//! session's first piece starts a file of its cartridge; a session that
//! reaches a cartridge's early warning goes on after the label of the
//! next. The media catalog is written after each session and each
//! cartridge change, in one transaction each.
//!
//! Invariant: a cartridge whose start is not a blank tape or a Cairn
//! label of a set this catalog lets go is never written; a WORM
//! cartridge is never written anywhere but at its end of data.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use anyhow::{Context, Result, anyhow, bail};
use catalog::TapeChange;
use model::SnapshotId;
use model::tape::{
    Allocation, MediaPool, MediaSet, Medium, MediumState, NextMedium, TapeCopy, TapePart, next_medium,
};
use serde::Serialize;
use volfmt::writer::NewVolume;
use volfmt::{VolumeLabel, VolumeWriter};

use super::deck::{Deck, Found, MediaLabel, SharedDeck, TapeOut};
use crate::Engine;
use crate::progress::Progress;

/// How to write.
#[derive(Debug, Clone)]
pub struct TapeBackupOptions {
    pub pool: String,
    pub block_size: usize,
    /// Recorded in volume labels.
    pub host: String,
    pub program_version: String,
}

/// What a tape backup did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TapeBackupReport {
    pub pool: String,
    /// The media set written to (none when there was nothing to write).
    pub set: Option<String>,
    pub sessions: Vec<TapeSessionReport>,
    /// Snapshots the pool held already.
    pub skipped: Vec<String>,
    /// Cartridges written to, in order.
    pub media: Vec<String>,
    /// Cartridges given up on, with why.
    pub rejected: Vec<(String, String)>,
    pub drives: Vec<usize>,
    /// Seconds a drive was reserved, of which in drive calls, and spent
    /// waiting for a free drive.
    pub drive_held_secs: f64,
    pub drive_busy_secs: f64,
    pub drive_wait_secs: f64,
    pub bytes: u64,
}

/// One snapshot written.
#[derive(Debug, Clone, Serialize)]
pub struct TapeSessionReport {
    pub snapshot: String,
    pub session: u32,
    pub files: u64,
    pub bytes: u64,
    /// (cartridge, file) of each piece.
    pub parts: Vec<(String, u32)>,
}

/// The state of one job, shared with the writer's volume change.
struct Job {
    engine: Engine,
    deck: SharedDeck,
    pool: MediaPool,
    set: MediaSet,
    sets: Vec<MediaSet>,
    /// Catalog records of the cartridges in the library, as this job
    /// changes them.
    media: BTreeMap<String, Medium>,
    /// Cartridges not to try again in this job.
    exclude: Vec<String>,
    rejected: Vec<(String, String)>,
    written: Vec<String>,
    /// Pieces of the session being written.
    parts: Vec<TapePart>,
    opts: TapeBackupOptions,
    /// Copies of expired sets lost to a cartridge written over.
    drop_copies: Vec<(String, u32)>,
    drop_sets: Vec<String>,
    now: i64,
    /// Only this cartridge may be used (`cairn tape label`).
    only: Option<String>,
}

/// How the first cartridge starts.
enum Start {
    Append(u32),
    Fresh(Box<VolumeLabel>, MediaLabel),
}

impl Job {
    fn save(&mut self, media: &[String], copy: Option<&TapeCopy>) -> Result<()> {
        let media: Vec<Medium> = media.iter().filter_map(|b| self.media.get(b).cloned()).collect();
        let cat = self.engine.catalog()?;
        let mut sets = vec![self.set.clone()];
        for s in &self.sets {
            if s.id != self.set.id && !self.drop_sets.contains(&s.id) {
                sets.push(s.clone());
            }
        }
        cat.put_tape(&TapeChange {
            media: &media,
            sets: &sets,
            copies: copy.map(std::slice::from_ref).unwrap_or_default(),
            drop_copies: &self.drop_copies,
            drop_sets: &self.drop_sets,
        })?;
        self.drop_copies.clear();
        self.drop_sets.clear();
        Ok(())
    }

    fn reject(&mut self, barcode: &str, why: String, state: Option<MediumState>) -> Result<()> {
        tracing::warn!("cartridge {barcode}: {why}");
        self.exclude.push(barcode.to_owned());
        self.rejected.push((barcode.to_owned(), why.clone()));
        if let Some(state) = state {
            let m = self.media.entry(barcode.to_owned()).or_insert_with(|| Medium::new(barcode));
            m.state = state;
            m.reason = Some(why);
            self.save(&[barcode.to_owned()], None)?;
        }
        self.deck.borrow_mut().unmount()
    }

    /// The cartridges in the library, with their catalog records.
    fn candidates(&mut self) -> Result<Vec<(String, Option<Medium>)>> {
        let inv = self.deck.borrow_mut().changer().inventory()?;
        Ok(inv
            .all()
            .filter(|e| e.kind != tape::ElementKind::Transport)
            .filter_map(|e| e.barcode.clone())
            .filter(|b| self.only.as_ref().is_none_or(|o| o == b))
            .map(|b| {
                let m = self.media.get(&b).cloned();
                (b, m)
            })
            .collect())
    }

    /// Mount the cartridge to write next and get it ready: the set's
    /// last one to append to (`allow_append`), or a new one labelled into
    /// the set. Cartridges that cannot be used are marked and passed over.
    fn ready_next(&mut self, allow_append: bool) -> Result<Start> {
        loop {
            let candidates = self.candidates()?;
            let exclude = if allow_append {
                self.exclude.clone()
            } else {
                let mut e = self.exclude.clone();
                e.extend(self.set.media.last().cloned());
                e
            };
            let choice = next_medium(&self.pool, &self.set, &self.sets, &candidates, &exclude, self.now)
                .ok_or_else(|| {
                    if let Some(only) = &self.only {
                        let why = self.rejected.iter().find(|(b, _)| b == only).map(|(_, w)| w.clone());
                        return anyhow!(
                            "cartridge {only} cannot be labelled into pool {}: {}",
                            self.pool.name,
                            why.unwrap_or_else(|| "it is not in the library, or is a cleaning, error or foreign cartridge, or belongs to a set that is kept".into())
                        );
                    }
                    anyhow!(
                        "no cartridge in the library can be written for pool {}: insert blank ones{}",
                        self.pool.name,
                        if self.pool.worm { " (WORM)" } else { "" }
                    )
                })?;
            let barcode = match &choice {
                NextMedium::Append(b) | NextMedium::Label(b) => b.clone(),
            };
            let mounted = self.deck.borrow_mut().mount(&barcode);
            if let Err(e) = mounted {
                self.reject(&barcode, format!("cannot be loaded: {e:#}"), None)?;
                continue;
            }
            let status = self.deck.borrow_mut().with_drive(|d| d.status());
            let status = match status {
                Ok(s) if s.loaded => s,
                Ok(_) => {
                    self.reject(&barcode, "the drive reports no cartridge after loading it".into(), None)?;
                    continue;
                }
                Err(e) => {
                    self.reject(&barcode, format!("its drive status cannot be read: {e:#}"), None)?;
                    continue;
                }
            };
            if status.write_protected {
                self.reject(&barcode, "it is write-protected".into(), None)?;
                continue;
            }
            let found = self.deck.borrow_mut().read_label()?;
            match choice {
                NextMedium::Append(_) => match found {
                    Found::Label(v, Some(m)) if v.volume_name == barcode && m.set == self.set.id => {
                        let last = self.deck.borrow_mut().last_block_number()?;
                        let files = self.deck.borrow_mut().with_drive(|d| d.status())?.file_number;
                        let known = self.media.get(&barcode).map_or(0, |m| m.files);
                        let mut deck = self.deck.borrow_mut();
                        deck.files = files.map_or(known, |f| f as u32);
                        deck.bytes = 0;
                        return Ok(Start::Append(last + 1));
                    }
                    Found::Label(v, _) => {
                        let why = format!(
                            "its label says {:?}, not the cartridge of set {} the catalog expects",
                            v.volume_name, self.set.id
                        );
                        self.reject(&barcode, why, Some(MediumState::Error))?;
                    }
                    Found::Blank => {
                        self.reject(
                            &barcode,
                            "it is blank, but the catalog says it holds sessions".into(),
                            Some(MediumState::Error),
                        )?;
                    }
                    Found::Unreadable(why) => {
                        self.reject(
                            &barcode,
                            format!("its label cannot be read: {why}"),
                            Some(MediumState::Error),
                        )?;
                    }
                },
                NextMedium::Label(_) => {
                    let mut m = self.media.get(&barcode).cloned().unwrap_or_else(|| Medium::new(&barcode));
                    if m.worm != status.worm {
                        m.worm = status.worm;
                        self.media.insert(barcode.clone(), m.clone());
                    }
                    if status.worm != self.pool.worm {
                        let why = if status.worm {
                            "it is a WORM cartridge and the pool is not WORM"
                        } else {
                            "the pool takes only WORM cartridges"
                        };
                        self.save(std::slice::from_ref(&barcode), None)?;
                        self.reject(&barcode, why.into(), None)?;
                        continue;
                    }
                    let recycling = matches!(m.state, MediumState::Writable | MediumState::Full);
                    match found {
                        Found::Blank => {}
                        Found::Label(_, Some(ml))
                            if recycling && m.set.as_deref() == Some(&ml.set) && !status.worm => {}
                        Found::Label(v, _) => {
                            let why = format!(
                                "it holds volume {:?} (pool {:?}) that this catalog does not know: scan it to import it",
                                v.volume_name, v.pool_name
                            );
                            self.reject(&barcode, why, Some(MediumState::Foreign))?;
                            continue;
                        }
                        Found::Unreadable(why) => {
                            let why = format!("it is not blank and holds no readable label ({why})");
                            self.reject(&barcode, why, Some(MediumState::Foreign))?;
                            continue;
                        }
                    }
                    if recycling {
                        self.forget_old_set(&m);
                    }
                    return Ok(self.label(m));
                }
            }
        }
    }

    /// The cartridge `m` leaves its old (expired) set: that set's copies
    /// with a piece on it are gone, and the set when it has no cartridge
    /// left.
    fn forget_old_set(&mut self, m: &Medium) {
        let Some(old) = m.set.clone() else { return };
        let Ok(cat) = self.engine.catalog() else { return };
        if let Ok(copies) = cat.list_tape_copies() {
            for c in copies.iter().filter(|c| c.set == old && c.parts.iter().any(|p| p.barcode == m.barcode))
            {
                self.drop_copies.push((c.set.clone(), c.session));
            }
        }
        if let Some(s) = self.sets.iter_mut().find(|s| s.id == old) {
            s.media.retain(|b| *b != m.barcode);
            if s.media.is_empty() {
                self.drop_sets.push(old);
            }
        }
    }

    /// Label the mounted cartridge `m` into the set (written with the
    /// first block).
    fn label(&mut self, mut m: Medium) -> Start {
        let barcode = m.barcode.clone();
        let prev = self.set.media.last().cloned().unwrap_or_default();
        self.set.media.push(barcode.clone());
        m.state = MediumState::Writable;
        m.set = Some(self.set.id.clone());
        m.seq = self.set.media.len() as u32;
        m.labelled = Some(self.now);
        m.written = Some(self.now);
        m.bytes = 0;
        m.files = 1;
        m.reason = None;
        self.media.insert(barcode.clone(), m.clone());
        {
            let mut deck = self.deck.borrow_mut();
            deck.label_next = true;
            deck.warned = false;
            deck.files = 0;
            deck.bytes = 0;
        }
        let time = self.now * 1_000_000;
        let label = VolumeLabel {
            label_time_us: time,
            write_time_us: time,
            volume_name: barcode.clone(),
            prev_volume_name: prev,
            pool_name: self.pool.name.clone(),
            pool_type: "Backup".into(),
            media_type: "Tape".into(),
            host_name: self.opts.host.clone(),
            label_prog: "cairn".into(),
            prog_version: self.opts.program_version.clone(),
            prog_date: String::new(),
        };
        let media = MediaLabel {
            barcode,
            pool: self.pool.name.clone(),
            allocation: self.pool.allocation.as_str().into(),
            retention: self.pool.retention,
            worm: self.pool.worm,
            set: self.set.id.clone(),
            seq: m.seq,
            set_created: self.set.created,
        };
        Start::Fresh(Box::new(label), media)
    }

    /// Bring the record of the mounted cartridge up to date with the deck.
    fn note_written(&mut self) -> Option<String> {
        let deck = self.deck.borrow();
        let b = deck.loaded()?.to_owned();
        let (files, bytes) = (deck.files, deck.bytes);
        drop(deck);
        let m = self.media.get_mut(&b)?;
        m.files = files;
        m.bytes += bytes;
        m.written = Some(self.now);
        self.deck.borrow_mut().bytes = 0;
        if !self.written.contains(&b) {
            self.written.push(b.clone());
        }
        Some(b)
    }

    /// The cartridge is full: close it and ready the next one.
    fn next_volume(&mut self) -> Result<NewVolume<TapeOut>> {
        self.deck.borrow_mut().with_drive(|d| d.write_filemarks(1))?;
        self.deck.borrow_mut().files += 1;
        if let Some(b) = self.note_written() {
            if let Some(m) = self.media.get_mut(&b) {
                m.state = MediumState::Full;
            }
            self.save(&[b], None)?;
        }
        self.deck.borrow_mut().unmount()?;
        match self.ready_next(false)? {
            Start::Fresh(label, media) => {
                let b = label.volume_name.clone();
                // The piece after the label's filemark: file 1.
                self.parts.push(TapePart { barcode: b, file: 1 });
                Ok(NewVolume { out: TapeOut(self.deck.clone()), label: *label, record: Some(media.encode()) })
            }
            Start::Append(_) => bail!("a full cartridge's set went on on another cartridge to append to"),
        }
    }
}

impl Engine {
    /// Write `ids` to tape in `lib`, to pool `opts.pool`: one session per
    /// snapshot the pool does not hold yet. A drive is reserved only when
    /// there is something to write.
    pub fn tape_backup(
        &self,
        lib: &tape::Library,
        ids: &[SnapshotId],
        opts: &TapeBackupOptions,
        progress: &Progress,
    ) -> Result<TapeBackupReport> {
        volfmt::writer::check_block_size(opts.block_size)?;
        let cat = self.catalog()?;
        let pool =
            cat.get_pool(&opts.pool)?.ok_or_else(|| anyhow!("there is no media pool {}", opts.pool))?;
        let on_pool: Vec<String> = cat
            .list_tape_copies()?
            .into_iter()
            .filter(|c| c.pool == pool.name)
            .map(|c| c.snapshot.to_string())
            .collect();
        let mut report = TapeBackupReport { pool: pool.name.clone(), ..TapeBackupReport::default() };
        let mut todo = Vec::new();
        for id in ids {
            if on_pool.contains(&id.to_string()) {
                report.skipped.push(id.to_string());
            } else if !todo.contains(id) {
                self.ds.read_manifest(id).with_context(|| format!("snapshot {id}"))?;
                todo.push(id.clone());
            }
        }
        if todo.is_empty() {
            return Ok(report);
        }
        drop(cat);
        self.tape_job(lib, &pool, &todo, opts, None, progress, report)
    }

    /// Label the blank cartridge `barcode` into a new media set of pool
    /// `opts.pool` (closing the pool's open set), so the pool's next job
    /// goes on on it. The label is written once, now.
    pub fn tape_label(
        &self,
        lib: &tape::Library,
        barcode: &str,
        opts: &TapeBackupOptions,
    ) -> Result<TapeBackupReport> {
        volfmt::writer::check_block_size(opts.block_size)?;
        let pool = self
            .catalog()?
            .get_pool(&opts.pool)?
            .ok_or_else(|| anyhow!("there is no media pool {}", opts.pool))?;
        let report = TapeBackupReport { pool: pool.name.clone(), ..TapeBackupReport::default() };
        self.tape_job(lib, &pool, &[], opts, Some(barcode.to_owned()), &Progress::default(), report)
    }

    #[allow(clippy::too_many_arguments)]
    fn tape_job(
        &self,
        lib: &tape::Library,
        pool: &MediaPool,
        todo: &[SnapshotId],
        opts: &TapeBackupOptions,
        only: Option<String>,
        progress: &Progress,
        mut report: TapeBackupReport,
    ) -> Result<TapeBackupReport> {
        let cat = self.catalog()?;
        let now = crate::clock::now();
        let mut sets = cat.list_media_sets()?;
        let media: BTreeMap<String, Medium> =
            cat.list_media()?.into_iter().map(|m| (m.barcode.clone(), m)).collect();
        drop(cat);
        let open = sets
            .iter()
            .filter(|s| s.pool == pool.name && s.closed.is_none())
            .max_by_key(|s| s.created)
            .cloned();
        let label_only = only.is_some();
        let set = match (pool.allocation, open) {
            (Allocation::Continue, Some(s)) if !label_only => s,
            _ => {
                for s in sets.iter_mut().filter(|s| s.pool == pool.name && s.closed.is_none()) {
                    s.closed = Some(now);
                }
                MediaSet {
                    id: uuid::Uuid::new_v4().to_string(),
                    pool: pool.name.clone(),
                    created: now,
                    closed: None,
                    media: Vec::new(),
                    sessions: 0,
                }
            }
        };
        let deck: SharedDeck = Rc::new(RefCell::new(Deck::new(lib)?));
        let job = Rc::new(RefCell::new(Job {
            engine: self.clone(),
            deck: deck.clone(),
            pool: pool.clone(),
            set,
            sets,
            media,
            exclude: Vec::new(),
            rejected: Vec::new(),
            written: Vec::new(),
            parts: Vec::new(),
            opts: opts.clone(),
            drop_copies: Vec::new(),
            drop_sets: Vec::new(),
            now,
            only,
        }));
        let result = self.tape_write(&job, todo, progress, &mut report);
        let release = deck.borrow_mut().release();
        let j = job.borrow();
        report.set = Some(j.set.id.clone());
        report.media = j.written.clone();
        report.rejected = j.rejected.clone();
        let d = deck.borrow();
        report.drives = d.used_drives.clone();
        report.drive_held_secs = d.held.as_secs_f64();
        report.drive_busy_secs = d.busy.as_secs_f64();
        report.drive_wait_secs = d.waited.as_secs_f64();
        result?;
        release?;
        Ok(report)
    }

    fn tape_write(
        &self,
        job: &Rc<RefCell<Job>>,
        todo: &[SnapshotId],
        progress: &Progress,
        report: &mut TapeBackupReport,
    ) -> Result<()> {
        let start = job.borrow_mut().ready_next(true)?;
        // Each session's blocks carry the job's time as their session
        // time (Bacula's VolSessionTime): a scan learns when it was written.
        let (deck, block_size, session_time) = {
            let j = job.borrow();
            (j.deck.clone(), j.opts.block_size, j.now as u32)
        };
        let out = TapeOut(deck.clone());
        let mut w = match start {
            Start::Append(next) => VolumeWriter::append(out, next, block_size)?,
            Start::Fresh(label, media) => {
                job.borrow_mut().save(std::slice::from_ref(&label.volume_name), None)?;
                VolumeWriter::create_with(out, &label, Some(&media.encode()), block_size)?
            }
        };
        let next_job = job.clone();
        w.span_when(
            Box::new(|out: &TapeOut, _, _| out.warned()),
            Box::new(move |_| {
                next_job.borrow_mut().next_volume().map_err(|e| volfmt::VolError::Invalid(format!("{e:#}")))
            }),
        );
        for id in todo {
            let session = {
                let mut j = job.borrow_mut();
                let first = TapePart {
                    barcode: deck.borrow().loaded().unwrap_or_default().to_owned(),
                    file: deck.borrow().files,
                };
                j.parts = vec![first];
                j.set.sessions + 1
            };
            let written = self.write_session(&mut w, id, session, session_time, progress);
            let written = match written {
                Ok(r) => r,
                Err(e) => {
                    // End what was written with a filemark, so the next
                    // session starts a file of its own.
                    let _ = deck.borrow_mut().with_drive(|d| d.write_filemarks(1));
                    deck.borrow_mut().files += 1;
                    let mut j = job.borrow_mut();
                    if let Some(b) = j.note_written() {
                        let _ = j.save(&[b], None);
                    }
                    return Err(e.context(format!("writing {id} to tape")));
                }
            };
            deck.borrow_mut().with_drive(|d| d.write_filemarks(1))?;
            deck.borrow_mut().files += 1;
            let mut j = job.borrow_mut();
            j.set.sessions = session;
            let m = self.ds.read_manifest(id)?;
            let copy = TapeCopy {
                snapshot: id.clone(),
                set: j.set.id.clone(),
                pool: j.pool.name.clone(),
                session,
                written: j.now,
                parts: j.parts.clone(),
                files: written.files,
                bytes: written.bytes,
                archives: m.archives.iter().map(|a| (a.name.clone(), a.kind.clone())).collect(),
            };
            let touched: Vec<String> = j.parts.iter().map(|p| p.barcode.clone()).collect();
            j.note_written();
            j.save(&touched, Some(&copy))?;
            report.bytes += written.bytes;
            report.sessions.push(TapeSessionReport {
                snapshot: id.to_string(),
                session,
                files: written.files,
                bytes: written.bytes,
                parts: copy.parts.iter().map(|p| (p.barcode.clone(), p.file)).collect(),
            });
        }
        w.finish_all()?;
        let mut j = job.borrow_mut();
        if j.pool.allocation == Allocation::NewSet && j.only.is_none() {
            j.set.closed = Some(j.now);
            let members = j.set.media.clone();
            for b in &members {
                if let Some(m) = j.media.get_mut(b) {
                    m.state = MediumState::Full;
                }
            }
            j.save(&members, None)?;
        }
        Ok(())
    }
}
