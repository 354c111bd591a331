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
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use crossbeam_channel::Sender;

use anyhow::{Context, Result, anyhow, bail};
use catalog::TapeChange;
use model::SnapshotId;
use model::tape::{
    Allocation, MediaPool, MediaSet, Medium, MediumState, NextMedium, TapeCopy, TapePart, next_medium,
};
use serde::Serialize;
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
    /// Drives to write with at once (each its own cartridge of the media
    /// set; a snapshot goes to the first drive free for it). 1: one drive.
    pub drives: usize,
}

impl TapeBackupOptions {
    /// Writing to `pool` with `drives` drives at once, in blocks of the
    /// default size, the labels naming this host and Cairn's version.
    pub fn new(pool: &str, drives: usize) -> TapeBackupOptions {
        TapeBackupOptions {
            pool: pool.to_owned(),
            block_size: volfmt::DEFAULT_BLOCK_SIZE,
            host: nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default(),
            program_version: format!("Cairn {}", env!("CARGO_PKG_VERSION")),
            drives,
        }
    }
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
    /// Drives cleaned before use (`drive N with CLN…`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cleaned: Vec<String>,
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

/// How a drive stream ended: its result, its sessions, the drives it
/// used, and its drive's seconds held, busy and waited for.
type StreamEnd = (Result<()>, TapeBackupReport, Vec<usize>, [f64; 3], Vec<String>);

/// What the drive streams of one job share: the media set and the
/// catalog's records as the job changes them.
struct Shared {
    set: MediaSet,
    sets: Vec<MediaSet>,
    /// Catalog records of the cartridges in the library.
    media: BTreeMap<String, Medium>,
    /// Cartridges not to try again in this job.
    exclude: Vec<String>,
    rejected: Vec<(String, String)>,
    written: Vec<String>,
    /// Copies of expired sets lost to a cartridge written over.
    drop_copies: Vec<(String, u32)>,
    drop_sets: Vec<String>,
    /// Cartridges a stream of this job has mounted (another stream does
    /// not choose them).
    busy: BTreeSet<String>,
    /// Other sets this job changed (closed, or lost a recycled cartridge):
    /// the only ones besides its own it writes back, so it never writes
    /// another process's set from a stale copy.
    changed_sets: BTreeSet<String>,
    /// Cartridges whose rows this job changed: their rows here are newer
    /// than the catalog's; every other row is read again before a choice
    /// (another process may be using the library).
    touched: BTreeSet<String>,
}

/// One drive stream of a job: its deck and the sessions on its cartridge.
struct Job {
    engine: Engine,
    deck: SharedDeck,
    pool: MediaPool,
    sh: Arc<Mutex<Shared>>,
    /// Sessions with blocks on tape and no end yet: where each piece
    /// of them starts.
    open: BTreeMap<u32, Vec<TapePart>>,
    /// The number the next block written to the cartridge gets; `None`
    /// while no cartridge is ready.
    next_block: Option<u32>,
    /// The cartridge this stream wrote before the one mounted (the one a
    /// new cartridge's label says it continues).
    prev: Option<String>,
    opts: TapeBackupOptions,
    now: i64,
    /// Only this cartridge may be used (`cairn tape label`).
    only: Option<String>,
    /// The set's session counter, shared by the job's producers.
    sessions: Arc<AtomicU32>,
}

/// How the first cartridge starts.
enum Start {
    Append(u32),
    Fresh(Box<VolumeLabel>, MediaLabel),
}

impl Job {
    fn sh(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.sh.lock().expect("tape job state")
    }

    fn save(&self, media: &[String], copy: Option<&TapeCopy>) -> Result<()> {
        save_to(&self.engine, &self.sh, media, copy)
    }

    fn reject(&mut self, barcode: &str, why: String, state: Option<MediumState>) -> Result<()> {
        tracing::warn!("cartridge {barcode}: {why}");
        {
            let mut sh = self.sh();
            sh.exclude.push(barcode.to_owned());
            sh.rejected.push((barcode.to_owned(), why.clone()));
            sh.busy.remove(barcode);
            if let Some(state) = state {
                let m = sh.media.entry(barcode.to_owned()).or_insert_with(|| Medium::new(barcode));
                m.state = state;
                m.reason = Some(why);
            }
        }
        if state.is_some() {
            self.save(&[barcode.to_owned()], None)?;
        }
        self.deck.borrow_mut().unmount()
    }

    /// The cartridges in the library, with their catalog records.
    fn candidates(&self) -> Result<Vec<(String, Option<Medium>)>> {
        let inv = self.deck.borrow_mut().changer().inventory()?;
        let sh = self.sh();
        Ok(inv
            .all()
            .filter(|e| e.kind != tape::ElementKind::Transport)
            .filter_map(|e| e.barcode.clone())
            .filter(|b| self.only.as_ref().is_none_or(|o| o == b))
            .map(|b| {
                let m = sh.media.get(&b).cloned();
                (b, m)
            })
            .collect())
    }

    /// Read again the catalog's rows this job did not change: another
    /// process (a job on another pool, the CLI) may have labelled or
    /// recycled cartridges since this job began.
    fn refresh(&self) -> Result<()> {
        let cat = self.engine.catalog()?;
        let (media, sets) = (cat.list_media()?, cat.list_media_sets()?);
        drop(cat);
        let mut sh = self.sh();
        for m in media {
            if !sh.touched.contains(&m.barcode) {
                sh.media.insert(m.barcode.clone(), m);
            }
        }
        for s in sets {
            if s.id != sh.set.id && !sh.changed_sets.contains(&s.id) && !sh.drop_sets.contains(&s.id) {
                match sh.sets.iter_mut().find(|x| x.id == s.id) {
                    Some(x) => *x = s,
                    None => sh.sets.push(s),
                }
            }
        }
        Ok(())
    }

    /// Choose the next cartridge (marking it busy for the other streams).
    fn choose(&self, allow_append: bool) -> Result<NextMedium> {
        self.refresh()?;
        let candidates = self.candidates()?;
        let mut sh = self.sh();
        let mut exclude = sh.exclude.clone();
        exclude.extend(sh.busy.iter().cloned());
        if !allow_append {
            exclude.extend(sh.set.media.last().cloned());
        }
        let choice = next_medium(&self.pool, &sh.set, &sh.sets, &candidates, &exclude, self.now).ok_or_else(|| {
            if let Some(only) = &self.only {
                let why = sh.rejected.iter().find(|(b, _)| b == only).map(|(_, w)| w.clone());
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
        let (NextMedium::Append(b) | NextMedium::Label(b)) = &choice;
        sh.busy.insert(b.clone());
        Ok(choice)
    }

    /// Mount the cartridge to write next and get it ready: the set's
    /// last one to append to (`allow_append`), or a new one labelled into
    /// the set. Cartridges that cannot be used are marked and passed over.
    fn ready_next(&mut self, allow_append: bool) -> Result<Start> {
        loop {
            let choice = self.choose(allow_append)?;
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
            let set_id = self.sh().set.id.clone();
            match choice {
                NextMedium::Append(_) => match found {
                    Found::Label(v, Some(m)) if v.volume_name == barcode && m.set == set_id => {
                        let cut = self.deck.borrow_mut().close_cut_file()?;
                        if let Some(id) = cut {
                            tracing::warn!(
                                "{barcode}: a session cut short (ids up to {id}) ends its file with a filemark now"
                            );
                            // Its session ids are taken: the next ones are higher.
                            self.sessions.fetch_max(id, Ordering::SeqCst);
                        }
                        let cut = cut.is_some();
                        let last = self.deck.borrow_mut().last_block_number()?;
                        let files = self.deck.borrow_mut().with_drive(|d| d.status())?.file_number;
                        let known = self.sh().media.get(&barcode).map_or(0, |m| m.files) + u32::from(cut);
                        let mut deck = self.deck.borrow_mut();
                        deck.files = files.map_or(known, |f| f as u32);
                        deck.bytes = 0;
                        return Ok(Start::Append(last + 1));
                    }
                    Found::Label(v, _) => {
                        let why = format!(
                            "its label says {:?}, not the cartridge of set {set_id} the catalog expects",
                            v.volume_name
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
                    let m = {
                        let mut sh = self.sh();
                        let mut m = sh.media.get(&barcode).cloned().unwrap_or_else(|| Medium::new(&barcode));
                        if m.worm != status.worm {
                            m.worm = status.worm;
                            sh.media.insert(barcode.clone(), m.clone());
                        }
                        m
                    };
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
                        Found::Label(v, ml) => {
                            // Another process may have labelled it since
                            // this job read the catalog: ask again.
                            self.refresh()?;
                            let known = ml.as_ref().is_some_and(|ml| {
                                self.sh().media.get(&barcode).and_then(|m| m.set.as_ref()) == Some(&ml.set)
                            });
                            if known {
                                self.sh().exclude.push(barcode.clone());
                                self.sh().busy.remove(&barcode);
                                self.deck.borrow_mut().unmount()?;
                                continue;
                            }
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
    fn forget_old_set(&self, m: &Medium) {
        let Some(old) = m.set.clone() else { return };
        let copies = self.engine.catalog().and_then(|c| Ok(c.list_tape_copies()?)).unwrap_or_default();
        let mut sh = self.sh();
        for c in copies.iter().filter(|c| c.set == old && c.parts.iter().any(|p| p.barcode == m.barcode)) {
            sh.drop_copies.push((c.set.clone(), c.session));
        }
        if let Some(s) = sh.sets.iter_mut().find(|s| s.id == old) {
            s.media.retain(|b| *b != m.barcode);
            let empty = s.media.is_empty();
            sh.changed_sets.insert(old.clone());
            if empty {
                sh.drop_sets.push(old);
            }
        }
    }

    /// Label the mounted cartridge `m` into the set (written with the
    /// first block).
    fn label(&mut self, mut m: Medium) -> Start {
        let barcode = m.barcode.clone();
        let (prev, set_id, set_created) = {
            let mut sh = self.sh();
            let prev = self.prev.clone().or_else(|| sh.set.media.last().cloned()).unwrap_or_default();
            sh.set.media.push(barcode.clone());
            m.state = MediumState::Writable;
            m.set = Some(sh.set.id.clone());
            m.seq = sh.set.media.len() as u32;
            m.labelled = Some(self.now);
            m.written = Some(self.now);
            m.bytes = 0;
            m.files = 1;
            m.reason = None;
            sh.media.insert(barcode.clone(), m.clone());
            (prev, sh.set.id.clone(), sh.set.created)
        };
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
            set: set_id,
            seq: m.seq,
            set_created,
        };
        Start::Fresh(Box::new(label), media)
    }

    /// Bring the record of the mounted cartridge up to date with the deck.
    fn note_written(&mut self) -> Option<String> {
        let deck = self.deck.borrow();
        let b = deck.loaded()?.to_owned();
        let (files, bytes) = (deck.files, deck.bytes);
        drop(deck);
        {
            let mut sh = self.sh();
            let m = sh.media.get_mut(&b)?;
            m.files = files;
            m.bytes += bytes;
            m.written = Some(self.now);
            if !sh.written.contains(&b) {
                sh.written.push(b.clone());
            }
        }
        self.deck.borrow_mut().bytes = 0;
        Some(b)
    }

    /// Get the cartridge `start` says ready: after its last block, or
    /// labelled now (block 0 with the volume and media labels, then a
    /// filemark).
    fn begin(&mut self, start: Start) -> Result<()> {
        match start {
            Start::Append(next) => self.next_block = Some(next),
            Start::Fresh(label, media) => {
                let block = VolumeWriter::create_with(
                    Vec::new(),
                    &label,
                    Some(&media.encode()),
                    self.opts.block_size,
                )?
                .finish()?;
                // (`label` asked the deck for a filemark after this block.)
                std::io::Write::write_all(&mut TapeOut(self.deck.clone()), &block)?;
                self.save(std::slice::from_ref(&label.volume_name), None)?;
                self.next_block = Some(1);
            }
        }
        Ok(())
    }

    /// The cartridge reached its early warning: end it with a filemark,
    /// mark it full, and go on on the next one of the set; every session
    /// in progress goes on there after the label.
    fn change_cartridge(&mut self) -> Result<()> {
        self.deck.borrow_mut().with_drive(|d| d.write_filemarks(1))?;
        self.deck.borrow_mut().files += 1;
        if let Some(b) = self.note_written() {
            {
                let mut sh = self.sh();
                if let Some(m) = sh.media.get_mut(&b) {
                    m.state = MediumState::Full;
                }
                sh.busy.remove(&b);
            }
            self.save(std::slice::from_ref(&b), None)?;
            self.prev = Some(b);
        }
        self.deck.borrow_mut().unmount()?;
        self.next_block = None;
        let start = self.ready_next(false)?;
        let Start::Fresh(label, _) = &start else {
            bail!("a full cartridge's set went on on another cartridge to append to")
        };
        let barcode = label.volume_name.clone();
        self.begin(start)?;
        for parts in self.open.values_mut() {
            // The pieces after the label's filemark: file 1.
            parts.push(TapePart { barcode: barcode.clone(), file: 1 });
        }
        Ok(())
    }

    /// Have a cartridge ready to write (reserving a drive), if none is.
    fn ready_cartridge(&mut self) -> Result<()> {
        if self.next_block.is_none() {
            let start = self.ready_next(true)?;
            self.begin(start)?;
        }
        Ok(())
    }

    /// Write one sealed block of a session (renumbered in the order the
    /// cartridge receives blocks), mounting a cartridge first if none is.
    fn write_block(&mut self, mut block: Vec<u8>) -> Result<()> {
        if self.next_block.is_none() {
            self.ready_cartridge()?;
        } else if self.deck.borrow().warned {
            self.change_cartridge()?;
        }
        let head: &[u8; volfmt::BLOCK_HEADER] = block
            .get(..volfmt::BLOCK_HEADER)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| anyhow!("a block shorter than its header"))?;
        let h = volfmt::block::BlockHeader::parse(head, 0)?;
        let number = self.next_block.expect("a cartridge is ready");
        let (files, barcode) = {
            let deck = self.deck.borrow();
            (deck.files, deck.loaded().unwrap_or_default().to_owned())
        };
        self.open.entry(h.session_id).or_insert_with(|| vec![TapePart { barcode, file: files }]);
        volfmt::block::seal(&mut block, number, h.session_id, h.session_time);
        let mut out = TapeOut(self.deck.clone());
        std::io::Write::write_all(&mut out, &block)?;
        self.next_block = Some(number.checked_add(1).ok_or_else(|| anyhow!("too many blocks"))?);
        Ok(())
    }

    /// A session's last block is on tape: record where it is. The
    /// cartridge's buffer is flushed (a filemark when no other session is
    /// in progress, so the next session starts a file of its own).
    fn end_session(&mut self, session: u32, copy: Option<TapeCopy>) -> Result<Option<TapeCopy>> {
        let parts = self.open.remove(&session).unwrap_or_default();
        if self.next_block.is_some() {
            let marks = u32::from(self.open.is_empty());
            self.deck.borrow_mut().with_drive(|d| d.write_filemarks(marks))?;
            self.deck.borrow_mut().files += marks;
        }
        let set_id = {
            let mut sh = self.sh();
            sh.set.sessions = sh.set.sessions.max(session);
            sh.set.id.clone()
        };
        let touched: Vec<String> = parts.iter().map(|p| p.barcode.clone()).collect();
        self.note_written();
        let copy = copy.map(|c| TapeCopy { parts, set: set_id, ..c });
        self.save(&touched, copy.as_ref())?;
        Ok(copy)
    }
}

/// Write the job's records of `media`, its sets, and `copy` to the
/// catalog in one transaction.
fn save_to(engine: &Engine, state: &Mutex<Shared>, media: &[String], copy: Option<&TapeCopy>) -> Result<()> {
    let mut sh = state.lock().expect("tape job state");
    let media: Vec<Medium> = media.iter().filter_map(|b| sh.media.get(b).cloned()).collect();
    for m in &media {
        sh.touched.insert(m.barcode.clone());
    }
    let mut sets = vec![sh.set.clone()];
    for s in &sh.sets {
        if s.id != sh.set.id && !sh.drop_sets.contains(&s.id) && sh.changed_sets.contains(&s.id) {
            sets.push(s.clone());
        }
    }
    // (Under the lock: the streams' writes reach the catalog in order.)
    engine.catalog()?.put_tape(&TapeChange {
        media: &media,
        sets: &sets,
        copies: copy.map(std::slice::from_ref).unwrap_or_default(),
        drop_copies: &sh.drop_copies,
        drop_sets: &sh.drop_sets,
    })?;
    sh.drop_copies.clear();
    sh.drop_sets.clear();
    Ok(())
}

/// What the producers of sessions tell the owner of the mounted volume.
enum Msg {
    /// A producer has a snapshot to write: the drive is wanted now.
    Ready,
    /// A sealed block of a session.
    Block(Vec<u8>),
    /// A session's last block was sent.
    End { sub: usize, session: u32, report: Box<TapeSessionReport>, copy: Box<TapeCopy> },
    /// A session could not be written whole.
    Failed { sub: usize, session: u32, error: String },
    /// A producer has no more sessions.
    Done { sub: usize },
}

/// A producer's volume output: each write is one block, sent to the owner.
struct ChannelOut(Sender<Msg>, Arc<AtomicBool>);

impl std::io::Write for ChannelOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // Once the cartridge cannot be written, producing more is waste.
        if self.1.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("the tape job failed"));
        }
        self.0
            .send(Msg::Block(buf.to_vec()))
            .map_err(|_| std::io::Error::other("the tape writer stopped"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A producer's sessions written, its first error, and where its report
/// goes (none for the owner's own job).
type Sub = (Vec<TapeSessionReport>, Option<String>, Option<Sender<Result<TapeBackupReport, String>>>);

/// Another job's snapshots for a mounted volume, and where its report goes.
struct Submission {
    ids: Vec<SnapshotId>,
    reply: Sender<Result<TapeBackupReport, String>>,
}

/// The jobs writing to a pool of a library right now, by library and
/// pool: a job for a pool that continues its media set joins the one
/// writing, and its sessions are interleaved block by block on the same
/// cartridge instead of taking another drive.
static WRITERS: LazyLock<Mutex<HashMap<String, Sender<Submission>>>> = LazyLock::new(Mutex::default);

fn writer_key(lib: &tape::Library, pool: &str) -> String {
    format!("{}\0{pool}", lib.identity())
}

/// A job's entry in `WRITERS`, made in the same lock as its look for a job
/// to join: of two jobs for a pool that start at once, the second always
/// finds the first, even before the first has a drive. Submissions wait in
/// the channel until the job's volume takes them; dropping the entry
/// removes it and fails any submission it never took.
struct Registration {
    key: String,
    tx: Sender<Submission>,
    rx: crossbeam_channel::Receiver<Submission>,
}

impl Registration {
    /// Take the entry out of `WRITERS`, unless another job's replaced it.
    fn withdraw(&self) {
        let mut writers = WRITERS.lock().expect("writers lock");
        if writers.get(&self.key).is_some_and(|t| t.same_channel(&self.tx)) {
            writers.remove(&self.key);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.withdraw();
        while let Ok(s) = self.rx.try_recv() {
            let _ = s.reply.send(Err("the tape job it joined failed before it wrote".into()));
        }
    }
}

impl Engine {
    /// Write `ids` to tape in `lib`, to pool `opts.pool`: one session per
    /// snapshot the pool does not hold yet. A drive is reserved only when
    /// there is something to write; while another job of this process
    /// writes to the same pool (one that continues its media set), this
    /// job's sessions go onto its cartridge, interleaved with its own.
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
        let mut registration = None;
        if pool.allocation == Allocation::Continue {
            let key = writer_key(lib, &pool.name);
            let (reply, answer) = crossbeam_channel::bounded(1);
            let joined = {
                let mut writers = WRITERS.lock().expect("writers lock");
                let sub = Submission { ids: todo.clone(), reply };
                let joined = writers.get(&key).is_some_and(|tx| tx.send(sub).is_ok());
                if !joined {
                    let (tx, rx) = crossbeam_channel::unbounded();
                    writers.insert(key.clone(), tx.clone());
                    registration = Some(Registration { key, tx, rx });
                }
                joined
            };
            if joined {
                tracing::info!(
                    "pool {} is being written: this job's sessions go onto its cartridge",
                    pool.name
                );
                let mut theirs = answer
                    .recv()
                    .map_err(|_| anyhow!("the job writing pool {} stopped", pool.name))?
                    .map_err(|e| anyhow!(e))?;
                theirs.skipped = report.skipped;
                return Ok(theirs);
            }
        }
        self.tape_job(lib, &pool, &todo, opts, None, registration.as_ref(), progress, report)
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
        self.tape_job(lib, &pool, &[], opts, Some(barcode.to_owned()), None, &Progress::default(), report)
    }

    #[allow(clippy::too_many_arguments)]
    fn tape_job(
        &self,
        lib: &tape::Library,
        pool: &MediaPool,
        todo: &[SnapshotId],
        opts: &TapeBackupOptions,
        only: Option<String>,
        registration: Option<&Registration>,
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
        let mut closed = BTreeSet::new();
        let set = match (pool.allocation, open) {
            (Allocation::Continue, Some(s)) if !label_only => s,
            _ => {
                for s in sets.iter_mut().filter(|s| s.pool == pool.name && s.closed.is_none()) {
                    s.closed = Some(now);
                    closed.insert(s.id.clone());
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
        let sh = Arc::new(Mutex::new(Shared {
            set,
            sets,
            media,
            exclude: Vec::new(),
            rejected: Vec::new(),
            written: Vec::new(),
            drop_copies: Vec::new(),
            drop_sets: Vec::new(),
            busy: BTreeSet::new(),
            changed_sets: closed,
            touched: BTreeSet::new(),
        }));
        let streams =
            if label_only { 1 } else { opts.drives.clamp(1, lib.drives().max(1)).min(todo.len().max(1)) };
        let queue = Mutex::new(todo.iter().cloned().collect::<VecDeque<_>>());
        let sessions = Arc::new(AtomicU32::new(sh.lock().expect("tape job state").set.sessions));
        // One stream per drive asked for, each in its own thread with its
        // own drive and cartridge, taking snapshots from one queue.
        let results: Vec<StreamEnd> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..streams)
                .map(|k| {
                    let (sh, only, queue, sessions) = (sh.clone(), only.clone(), &queue, sessions.clone());
                    scope.spawn(move || {
                        let mut r = TapeBackupReport::default();
                        let deck: SharedDeck = match Deck::new(lib) {
                            Ok(d) => Rc::new(RefCell::new(d)),
                            Err(e) => return (Err(e), r, Vec::new(), [0.0; 3], Vec::new()),
                        };
                        let mut job = Job {
                            engine: self.clone(),
                            deck: deck.clone(),
                            pool: pool.clone(),
                            sh,
                            open: BTreeMap::new(),
                            next_block: None,
                            prev: None,
                            opts: opts.clone(),
                            now,
                            only,
                            sessions: sessions.clone(),
                        };
                        let result = if label_only {
                            job.ready_next(true).and_then(|start| match start {
                                Start::Fresh(..) => job.begin(start),
                                Start::Append(_) => bail!("the cartridge is labelled already"),
                            })
                        } else {
                            // The first stream takes other jobs for the pool.
                            let joins = registration.filter(|_| k == 0);
                            self.own_volume(&mut job, queue, sessions, joins, progress, &mut r)
                        };
                        let release = deck.borrow_mut().release();
                        let d = deck.borrow();
                        let times = [d.held.as_secs_f64(), d.busy.as_secs_f64(), d.waited.as_secs_f64()];
                        (result.and(release), r, d.used_drives.clone(), times, d.cleaned.clone())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("a tape stream panicked")).collect()
        });
        let mut first_error = None;
        for (result, r, drives, times, cleaned) in results {
            report.cleaned.extend(cleaned);
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
            report.sessions.extend(r.sessions);
            report.bytes += r.bytes;
            report.drives.extend(drives);
            report.drive_held_secs += times[0];
            report.drive_busy_secs += times[1];
            report.drive_wait_secs += times[2];
        }
        report.sessions.sort_by_key(|s| s.session);
        if streams > 1 && pool.allocation == Allocation::Continue {
            // Only the set's last cartridge is ever appended to: the other
            // streams' cartridges are done (as a scan finds them).
            let members = {
                let mut state = sh.lock().expect("tape job state");
                let members = state.set.media.clone();
                for b in members.iter().rev().skip(1) {
                    if let Some(m) = state.media.get_mut(b)
                        && m.state == MediumState::Writable
                    {
                        m.state = MediumState::Full;
                    }
                }
                members
            };
            save_to(self, &sh, &members, None)?;
        }
        if first_error.is_none() && pool.allocation == Allocation::NewSet && !label_only {
            let members = {
                let mut state = sh.lock().expect("tape job state");
                state.set.closed = Some(now);
                let members = state.set.media.clone();
                for b in &members {
                    if let Some(m) = state.media.get_mut(b) {
                        m.state = MediumState::Full;
                    }
                }
                members
            };
            save_to(self, &sh, &members, None)?;
        }
        let state = sh.lock().expect("tape job state");
        report.set = Some(state.set.id.clone());
        report.media = state.written.clone();
        report.rejected = state.rejected.clone();
        drop(state);
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Write `todo` as the owner of the mounted volume: producers turn
    /// snapshots into sealed blocks in their own threads (this job's, and
    /// those of jobs that join through `WRITERS` under `key`); this thread
    /// writes the blocks to the cartridge in the order they come, so
    /// sessions written at once interleave block by block.
    fn own_volume(
        &self,
        job: &mut Job,
        todo: &Mutex<VecDeque<SnapshotId>>,
        sessions: Arc<AtomicU32>,
        joins: Option<&Registration>,
        progress: &Progress,
        report: &mut TapeBackupReport,
    ) -> Result<()> {
        let (tx, rx) = crossbeam_channel::bounded::<Msg>(16);
        // Without a registration no job joins: the channel stays empty
        // (and open while its sender lives).
        let (_sub_tx, sub_rx) = match joins {
            Some(r) => (r.tx.clone(), r.rx.clone()),
            None => crossbeam_channel::unbounded::<Submission>(),
        };
        let idle = &Progress::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (block_size, pool) = (job.opts.block_size, job.pool.name.clone());
        // Every session written onto this volume at once carries this job's
        // time as its VolSessionTime, a joined job's too, as a Bacula
        // storage daemon gives all its sessions its own start time: given a
        // bootstrap naming one session, Bacula 9.6 stops reading at the
        // first record of a session with a later VolSessionTime.
        let now = job.now;
        let result = std::thread::scope(|scope| -> Result<()> {
            let producer = Producer {
                tx: tx.clone(),
                stop: stop.clone(),
                sessions: sessions.clone(),
                pool: pool.clone(),
                block_size,
            };
            let mut running = 1usize;
            {
                let p = producer.clone();
                scope.spawn(move || self.produce(&p, 0, todo, now, progress));
            }
            // Per producer: its sessions written, its first error, where
            // its report goes (none for this job's own).
            let mut subs: Vec<Sub> = vec![(Vec::new(), None, None)];
            let mut failure: Option<anyhow::Error> = None;
            loop {
                if running == 0 {
                    // Stop taking submissions, unless one came meanwhile.
                    let more = {
                        let mut writers = WRITERS.lock().expect("writers lock");
                        match sub_rx.try_recv() {
                            Ok(s) => Some(s),
                            Err(_) => {
                                if let Some(r) = joins {
                                    writers.remove(&r.key);
                                }
                                None
                            }
                        }
                    };
                    match more {
                        Some(s) => {
                            subs.push((Vec::new(), None, Some(s.reply)));
                            running += 1;
                            let (p, sub) = (producer.clone(), subs.len() - 1);
                            scope.spawn(move || {
                                let queue = Mutex::new(s.ids.into_iter().collect());
                                self.produce(&p, sub, &queue, now, idle)
                            });
                            continue;
                        }
                        None => break,
                    }
                }
                if failure.is_some() {
                    stop.store(true, Ordering::Relaxed);
                }
                crossbeam_channel::select! {
                    recv(rx) -> msg => {
                        let Ok(msg) = msg else { break };
                        match msg {
                            Msg::Ready => {
                                if failure.is_none()
                                    && let Err(e) = job.ready_cartridge()
                                {
                                    failure = Some(e);
                                }
                            }
                            Msg::Block(block) => {
                                if failure.is_none()
                                    && let Err(e) = job.write_block(block)
                                {
                                    failure = Some(e);
                                }
                            }
                            Msg::End { sub, session, mut report, copy } => {
                                if failure.is_some() {
                                    subs[sub].1.get_or_insert_with(|| "the tape job failed".into());
                                    continue;
                                }
                                match job.end_session(session, Some(*copy)) {
                                    Ok(copy) => {
                                        let copy = copy.expect("a copy");
                                        report.parts = copy.parts.iter().map(|p| (p.barcode.clone(), p.file)).collect();
                                        subs[sub].0.push(*report);
                                    }
                                    Err(e) => failure = Some(e),
                                }
                            }
                            Msg::Failed { sub, session, error } => {
                                tracing::warn!("{error}");
                                subs[sub].1.get_or_insert(error);
                                if failure.is_none() && let Err(e) = job.end_session(session, None) {
                                    failure = Some(e);
                                }
                            }
                            Msg::Done { sub } => {
                                running -= 1;
                                if let Some(reply) = subs[sub].2.take() {
                                    let sessions = std::mem::take(&mut subs[sub].0);
                                    let answer = match (&failure, subs[sub].1.take()) {
                                        (Some(e), _) => Err(format!("{e:#}")),
                                        (None, Some(e)) => Err(e),
                                        (None, None) => {
                                            let bytes = sessions.iter().map(|s| s.bytes).sum();
                                            let sh = job.sh();
                                            Ok(TapeBackupReport {
                                                pool: job.pool.name.clone(),
                                                set: Some(sh.set.id.clone()),
                                                media: sh.written.clone(),
                                                sessions,
                                                bytes,
                                                ..TapeBackupReport::default()
                                            })
                                        }
                                    };
                                    let _ = reply.send(answer);
                                }
                            }
                        }
                    }
                    recv(sub_rx) -> s => {
                        if let Ok(s) = s {
                            if failure.is_some() {
                                let _ = s.reply.send(Err("the tape job it joined failed".into()));
                                continue;
                            }
                            subs.push((Vec::new(), None, Some(s.reply)));
                            running += 1;
                            let (p, sub) = (producer.clone(), subs.len() - 1);
                            scope.spawn(move || {
                                let queue = Mutex::new(s.ids.into_iter().collect());
                                self.produce(&p, sub, &queue, now, idle)
                            });
                        }
                    }
                }
            }
            drop(tx);
            if let Some(e) = failure {
                return Err(e);
            }
            report.sessions = std::mem::take(&mut subs[0].0);
            report.bytes = report.sessions.iter().map(|s| s.bytes).sum();
            if let Some(e) = subs[0].1.take() {
                bail!(e);
            }
            Ok(())
        });
        if let Some(r) = joins {
            r.withdraw();
        }
        result
    }

    /// Turn `ids` into sessions, one after another, their blocks sent to
    /// the owner of the volume.
    fn produce(
        &self,
        p: &Producer,
        sub: usize,
        ids: &Mutex<VecDeque<SnapshotId>>,
        now: i64,
        progress: &Progress,
    ) {
        loop {
            let Some(id) = ids.lock().expect("snapshot queue").pop_front() else { break };
            let id = &id;
            // The job has data for a drive: the owner takes one now, while
            // this thread reads the snapshot's first chunks.
            let _ = p.tx.send(Msg::Ready);
            let session = p.sessions.fetch_add(1, Ordering::SeqCst) + 1;
            let written = (|| -> Result<(TapeSessionReport, TapeCopy)> {
                let mut w = VolumeWriter::append(ChannelOut(p.tx.clone(), p.stop.clone()), 0, p.block_size)?;
                let r = self.write_session(&mut w, id, session, now as u32, progress)?;
                w.finish()?;
                let m = self.ds.read_manifest(id)?;
                let copy = TapeCopy {
                    snapshot: id.clone(),
                    set: String::new(),
                    pool: p.pool.clone(),
                    session,
                    written: now,
                    parts: Vec::new(),
                    files: r.files,
                    bytes: r.bytes,
                    archives: m.archives.iter().map(|a| (a.name.clone(), a.kind.clone())).collect(),
                };
                let report = TapeSessionReport {
                    snapshot: id.to_string(),
                    session,
                    files: r.files,
                    bytes: r.bytes,
                    parts: Vec::new(),
                };
                Ok((report, copy))
            })();
            let msg = match written {
                Ok((report, copy)) => {
                    Msg::End { sub, session, report: Box::new(report), copy: Box::new(copy) }
                }
                Err(e) => Msg::Failed { sub, session, error: format!("writing {id} to tape: {e:#}") },
            };
            let failed = matches!(msg, Msg::Failed { .. });
            if p.tx.send(msg).is_err() || failed {
                break;
            }
        }
        let _ = p.tx.send(Msg::Done { sub });
    }
}

/// What a producer needs: where blocks go, the set's session counter.
#[derive(Clone)]
struct Producer {
    tx: Sender<Msg>,
    /// Set when the owner cannot write: producers stop.
    stop: Arc<AtomicBool>,
    sessions: Arc<AtomicU32>,
    pool: String,
    block_size: usize,
}
