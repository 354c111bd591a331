//! Reading tapes back: a snapshot restored from the cartridges the media
//! catalog names (into a directory, or into the datastore), and the
//! media catalog rebuilt from the cartridges themselves (`scan`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use anyhow::{Context, Result, anyhow, bail};
use catalog::TapeChange;
use model::SnapshotId;
use model::tape::{Allocation, MediaPool, MediaSet, Medium, MediumState, TapeCopy, TapePart, is_cleaning};
use serde::Serialize;
use tape::ReadOutcome;
use volfmt::{Event, VolumeReader};

use super::deck::{Deck, Found, MediaLabel, SharedDeck, TapeIn};
use crate::Engine;
use crate::progress::Progress;
use crate::volume::{SnapshotRecord, VolumeInput, VolumeSet, VolumeSource};
use crate::volume_extract::{ExtractOptions, ExtractReport, Pick, extract_session};

/// The pieces of one session, cartridge after cartridge: each read from
/// the start of its file to its filemark.
struct TapeParts {
    deck: SharedDeck,
    parts: Vec<TapePart>,
}

impl VolumeSource for TapeParts {
    fn open(&mut self, i: usize) -> Result<Option<(String, VolumeInput)>> {
        let Some(p) = self.parts.get(i) else { return Ok(None) };
        let mut deck = self.deck.borrow_mut();
        deck.mount(&p.barcode)?;
        let file = i32::try_from(p.file)?;
        deck.with_drive(|d| {
            d.rewind()?;
            d.space_filemarks(file)
        })
        .with_context(|| format!("finding file {} of {}", p.file, p.barcode))?;
        Ok(Some((format!("{} (file {})", p.barcode, p.file), Box::new(TapeIn::new(self.deck.clone())))))
    }
}

/// What a restore from tape did.
#[derive(Debug, Clone, Serialize)]
pub struct TapeRestoreReport {
    pub snapshot: String,
    pub set: String,
    /// Cartridges read, in order.
    pub media: Vec<String>,
    /// Into the datastore: `added`, or `present` when it held it already.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<&'static str>,
    pub files: u64,
    pub bytes: u64,
    pub failed: Vec<(String, String)>,
    pub damage: Vec<String>,
    pub drive_held_secs: f64,
}

/// What a scan found on each cartridge.
#[derive(Debug, Clone, Serialize)]
pub struct TapeScanReport {
    pub media: Vec<ScannedMedium>,
    pub sets: usize,
    pub copies: usize,
    pub pools: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScannedMedium {
    pub barcode: String,
    pub state: String,
    pub set: Option<String>,
    pub sessions: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The reason a cartridge with an unreadable label is in error, the same
/// whether a job or a scan found it.
pub(crate) fn unreadable_label(why: &str) -> String {
    format!("its label cannot be read: {why}")
}

/// A session as a scan pieces it together.
#[derive(Default)]
struct SessionSeen {
    snapshot: Option<String>,
    archives: Vec<(String, String)>,
    written: i64,
    parts: Vec<TapePart>,
    end: Option<(u64, u64)>,
}

impl Engine {
    /// The copy of `id` on tape (in `pool` if given) whose session is
    /// dated latest, the last in catalog order among equals. Sessions
    /// written at once onto one cartridge carry the date of the job that
    /// held it, so a copy that joined an earlier job's cartridge can be
    /// dated before one written in between: either holds the same
    /// snapshot.
    pub fn tape_copy(&self, id: &SnapshotId, pool: Option<&str>) -> Result<TapeCopy> {
        let copies = self.catalog()?.list_tape_copies()?;
        copies
            .into_iter()
            .filter(|c| c.snapshot == *id && pool.is_none_or(|p| c.pool == p))
            .max_by_key(|c| c.written)
            .ok_or_else(|| {
                anyhow!("no tape holds {id}{}", pool.map(|p| format!(" in pool {p}")).unwrap_or_default())
            })
    }

    /// Restore `id` from the tapes of `lib` into `target`, or into this
    /// datastore when `target` is `None` (as the same snapshot), loading
    /// only the cartridges its copy is on.
    pub fn tape_restore(
        &self,
        lib: &tape::Library,
        id: &SnapshotId,
        pool: Option<&str>,
        target: Option<&Path>,
        opts: &ExtractOptions,
        progress: &Progress,
    ) -> Result<TapeRestoreReport> {
        let copy = self.tape_copy(id, pool)?;
        let deck: SharedDeck = Rc::new(RefCell::new(Deck::new(lib)?));
        let source =
            || VolumeSet::from_source(Box::new(TapeParts { deck: deck.clone(), parts: copy.parts.clone() }));
        let snapshot = copy.snapshot.to_string();
        let mut state = None;
        let result: Result<ExtractReport> = match target {
            Some(t) => extract_session(
                source(),
                Pick::Id(copy.session, copy.written as u32),
                &snapshot,
                &copy.archives,
                t,
                opts,
            ),
            None => {
                let mut report = None;
                let done = self.put_back(
                    &snapshot,
                    None,
                    |work| {
                        let o = ExtractOptions {
                            per_archive: true,
                            overwrite: false,
                            ..ExtractOptions::default()
                        };
                        let r = extract_session(
                            source(),
                            Pick::Id(copy.session, copy.written as u32),
                            &snapshot,
                            &copy.archives,
                            work,
                            &o,
                        )?;
                        report = Some(r.clone());
                        Ok(r)
                    },
                    progress,
                );
                done.map(|(s, _)| {
                    state = Some(s);
                    report.unwrap_or_default()
                })
            }
        };
        let release = deck.borrow_mut().release();
        let r = result?;
        release?;
        if r.snapshot != snapshot && !r.snapshot.is_empty() {
            bail!("the tape gave back {}, not {snapshot}", r.snapshot);
        }
        Ok(TapeRestoreReport {
            snapshot,
            set: copy.set.clone(),
            media: copy.parts.iter().map(|p| p.barcode.clone()).collect(),
            state,
            files: r.files,
            bytes: r.bytes,
            failed: r.failed,
            damage: r.damage,
            drive_held_secs: deck.borrow().held.as_secs_f64(),
        })
    }

    /// Rebuild the media catalog from the cartridges in `lib` (all but
    /// cleaning cartridges, or only `only`): pools, cartridges, media sets
    /// and which snapshot is where, read from the labels and sessions on
    /// tape. Replaces what the catalog held for those cartridges and sets.
    pub fn tape_scan(&self, lib: &tape::Library, only: &[String]) -> Result<TapeScanReport> {
        let deck: SharedDeck = Rc::new(RefCell::new(Deck::new(lib)?));
        let result = self.scan_cartridges(&deck, only);
        let release = deck.borrow_mut().release();
        let r = result?;
        release?;
        Ok(r)
    }

    fn scan_cartridges(&self, deck: &SharedDeck, only: &[String]) -> Result<TapeScanReport> {
        let inv = deck.borrow_mut().changer().inventory()?;
        let barcodes: Vec<String> = inv
            .all()
            .filter_map(|e| e.barcode.clone())
            .filter(|b| !is_cleaning(b) && (only.is_empty() || only.contains(b)))
            .collect();
        for b in only {
            if !barcodes.contains(b) {
                bail!("no cartridge {b} in the library");
            }
        }
        let mut media: Vec<Medium> = Vec::new();
        let mut report = Vec::new();
        let mut pools: BTreeMap<String, (i64, MediaPool)> = BTreeMap::new();
        // set id → (pool, created, seq → barcode, prev names)
        let mut sets: BTreeMap<String, (String, i64, BTreeMap<u32, String>)> = BTreeMap::new();
        let mut sessions: BTreeMap<(String, u32, u32), SessionSeen> = BTreeMap::new();
        let mut prev_of: BTreeMap<String, String> = BTreeMap::new();
        // First the labels: which cartridges hold which set, in what order.
        let mut labelled_media: Vec<(Medium, MediaLabel)> = Vec::new();
        for b in &barcodes {
            deck.borrow_mut().mount(b)?;
            let status = deck.borrow_mut().with_drive(|d| d.status())?;
            let mut m = Medium { worm: status.worm, ..Medium::new(b) };
            let found = deck.borrow_mut().read_label()?;
            let (label, ml) = match found {
                Found::Blank => {
                    report.push(ScannedMedium {
                        barcode: b.clone(),
                        state: "blank".into(),
                        set: None,
                        sessions: 0,
                        reason: None,
                    });
                    continue;
                }
                Found::Unreadable(why) => {
                    m.state = MediumState::Error;
                    m.reason = Some(unreadable_label(&why));
                    report.push(scanned(&m, 0));
                    media.push(m);
                    continue;
                }
                Found::Label(v, None) => {
                    m.state = MediumState::Foreign;
                    m.reason = Some(format!(
                        "it holds volume {:?} (pool {:?}), not written by a Cairn tape job",
                        v.volume_name, v.pool_name
                    ));
                    report.push(scanned(&m, 0));
                    media.push(m);
                    continue;
                }
                Found::Label(v, Some(ml)) => (v, ml),
            };
            let labelled = label.label_time_us / 1_000_000;
            m.state = MediumState::Writable;
            m.set = Some(ml.set.clone());
            m.seq = ml.seq;
            m.labelled = Some(labelled);
            m.written = Some(labelled);
            if !label.prev_volume_name.is_empty() {
                prev_of.insert(b.clone(), label.prev_volume_name.clone());
            }
            let allocation = Allocation::parse(&ml.allocation)
                .ok_or_else(|| anyhow!("{b}: its media label names allocation {:?}", ml.allocation))?;
            let pool =
                MediaPool { name: ml.pool.clone(), allocation, retention: ml.retention, worm: ml.worm };
            MediaPool::check_name(&pool.name).map_err(|e| anyhow!("{b}: {e}"))?;
            // The newest label says what the pool's rules are now.
            let newer = pools.get(&ml.pool).is_none_or(|(t, _)| labelled >= *t);
            if newer {
                pools.insert(ml.pool.clone(), (labelled, pool));
            }
            let entry = sets
                .entry(ml.set.clone())
                .or_insert_with(|| (ml.pool.clone(), ml.set_created, BTreeMap::new()));
            entry.2.insert(ml.seq, b.clone());
            labelled_media.push((m, ml));
        }
        // Then each set's cartridges in order, read as one stream: a session
        // cut at one cartridge's end goes on after the next one's label.
        labelled_media.sort_by(|(_, a), (_, b)| (&a.set, a.seq).cmp(&(&b.set, b.seq)));
        let mut reader: Option<(String, VolumeReader<TapeIn>)> = None;
        for (mut m, ml) in labelled_media {
            let b = m.barcode.clone();
            deck.borrow_mut().mount(&b)?;
            // Block 0 and its filemark, then the files of sessions.
            let (mut files, mut bytes, mut found_sessions) = (0u32, 0u64, 0usize);
            let label_block = deck.borrow_mut().with_drive(|d| {
                d.rewind()?;
                let mut buf = vec![0u8; volfmt::MAX_BLOCK_SIZE];
                let first = d.read_block(&mut buf)?;
                let mark = d.read_block(&mut buf)?;
                Ok((first, mark))
            })?;
            if let (ReadOutcome::Block(n), mark) = label_block {
                bytes += n as u64;
                if mark == ReadOutcome::Filemark {
                    files += 1;
                }
            }
            loop {
                let input = TapeIn::new(deck.clone());
                let read = input.read.clone();
                let r = match reader.as_mut() {
                    Some((set, r)) if *set == ml.set => {
                        r.next_volume(input);
                        r
                    }
                    _ => &mut reader.insert((ml.set.clone(), VolumeReader::new(input))).1,
                };
                let file = files;
                loop {
                    let e = match r.next_event() {
                        Ok(Some(e)) => e,
                        Ok(None) => break,
                        Err(e) => {
                            m.reason = Some(format!("file {file}: {e}"));
                            continue;
                        }
                    };
                    match e {
                        Event::SessionStart { session_id, session_time, .. } => {
                            let s = sessions.entry((ml.set.clone(), session_id, session_time)).or_default();
                            s.written = i64::from(session_time);
                            s.parts.push(TapePart { barcode: b.clone(), file });
                            found_sessions += 1;
                            m.written = m.written.max(Some(i64::from(session_time)));
                        }
                        Event::Record { session_id, session_time, record, .. } if session_id != 0 => {
                            let s = sessions.entry((ml.set.clone(), session_id, session_time)).or_default();
                            if !s.parts.iter().any(|p| p.barcode == b) {
                                // A session going on from the cartridge before.
                                s.parts.push(TapePart { barcode: b.clone(), file });
                            }
                            if let Some(snap) = SnapshotRecord::read(record.stream, &record.data) {
                                s.archives = snap.archives();
                                s.snapshot = Some(snap.snapshot);
                            }
                        }
                        Event::SessionEnd { session_id, session_time, label } => {
                            let s = sessions.entry((ml.set.clone(), session_id, session_time)).or_default();
                            if let Some(end) = label.end {
                                s.end = Some((u64::from(end.job_files), end.job_bytes));
                            }
                            m.written = m.written.max(Some(i64::from(session_time)));
                        }
                        _ => {}
                    }
                }
                bytes += read.get();
                match r.get_ref().ended() {
                    Some(ReadOutcome::Filemark) => files += 1,
                    _ => break,
                }
            }
            m.files = files;
            m.bytes = bytes;
            report.push(scanned(&m, found_sessions));
            media.push(m);
        }
        // Sets: cartridges by their place; a place whose cartridge could
        // not be read is filled from the next one's label.
        let mut out_sets = Vec::new();
        for (id, (pool, created, members)) in &sets {
            let mut list: Vec<String> = Vec::new();
            let last = members.keys().max().copied().unwrap_or(0);
            for seq in 1..=last {
                match members.get(&seq) {
                    Some(b) => list.push(b.clone()),
                    None => {
                        if let Some(prev) = members.get(&(seq + 1)).and_then(|n| prev_of.get(n)) {
                            list.push(prev.clone());
                        }
                    }
                }
            }
            let copies_here: Vec<&SessionSeen> =
                sessions.iter().filter(|((s, _, _), _)| s == id).map(|(_, v)| v).collect();
            let count = sessions.keys().filter(|(s, _, _)| s == id).map(|(_, n, _)| *n).max().unwrap_or(0);
            let allocation = pools.get(pool).map(|(_, p)| p.allocation);
            let last_write = copies_here
                .iter()
                .map(|s| s.written)
                .chain(media.iter().filter(|m| m.set.as_deref() == Some(id)).filter_map(|m| m.written))
                .max();
            let closed = if allocation == Some(Allocation::NewSet) { last_write } else { None };
            out_sets.push(MediaSet {
                id: id.clone(),
                pool: pool.clone(),
                created: *created,
                closed,
                media: list,
                sessions: count,
            });
        }
        // A cartridge is full when its set closed or went on after it.
        for m in media.iter_mut() {
            let Some(s) = out_sets.iter().find(|s| Some(&s.id) == m.set.as_ref()) else { continue };
            if m.state == MediumState::Writable && (s.closed.is_some() || s.media.last() != Some(&m.barcode))
            {
                m.state = MediumState::Full;
            }
        }
        let mut copies = Vec::new();
        for ((set, session, _), s) in sessions {
            let (Some(snapshot), Some((files, bytes))) = (s.snapshot, s.end) else { continue };
            let Some(pool) = sets.get(&set).map(|(p, _, _)| p.clone()) else { continue };
            copies.push(TapeCopy {
                snapshot: SnapshotId::parse(&snapshot, &model::Namespace::root())?,
                set,
                pool,
                session,
                written: s.written,
                parts: s.parts,
                files,
                bytes,
                archives: s.archives,
            });
        }
        let cat = self.catalog()?;
        for (_, pool) in pools.values() {
            if cat.get_pool(&pool.name)?.is_none() {
                cat.put_pool(pool)?;
            }
        }
        let scanned: Vec<String> = barcodes.clone();
        cat.replace_tape_media(
            &scanned,
            &TapeChange { media: &media, sets: &out_sets, copies: &copies, ..TapeChange::default() },
        )?;
        Ok(TapeScanReport {
            media: report,
            sets: out_sets.len(),
            copies: copies.len(),
            pools: pools.keys().cloned().collect(),
        })
    }
}

fn scanned(m: &Medium, sessions: usize) -> ScannedMedium {
    ScannedMedium {
        barcode: m.barcode.clone(),
        state: m.state.as_str().into(),
        set: m.set.clone(),
        sessions,
        reason: m.reason.clone(),
    }
}
