//! A job's hold on a library: the changer, the one drive it reserved
//! (only once it has data to write or read), the cartridge in it, and
//! the adapters that let a volume writer and reader use the drive as a
//! stream of blocks.
//!
//! Invariant: a drive is reserved when the job first needs a cartridge
//! and let go (cartridge back in its slot) when the job ends; a job that
//! never needs one never opens a drive.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use tape::{Changer, Drive, Library, ReadOutcome, TapeError, WriteOutcome};
use volfmt::stream::{CAIRN, CAIRN_MAGIC, CAIRN_MEDIA};
use volfmt::{Event, VolumeLabel, VolumeReader};

/// How long a job waits for a free drive before it gives up.
const DRIVE_WAIT: Duration = Duration::from_secs(24 * 3600);

/// Cairn's media label: what block 0 of each cartridge says after the
/// volume label (docs/formats.md, Tapes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaLabel {
    pub barcode: String,
    pub pool: String,
    /// The pool's rules when the cartridge was labelled, so a scan can
    /// make the pool again: `continue` or `new-set`, seconds a closed set
    /// is kept (none: forever), WORM only.
    pub allocation: String,
    pub retention: Option<i64>,
    pub worm: bool,
    /// The media set's id.
    pub set: String,
    /// The cartridge's place in the set, from 1.
    pub seq: u32,
    /// Unix seconds the set was made.
    pub set_created: i64,
}

impl MediaLabel {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = CAIRN_MAGIC.to_vec();
        out.push(CAIRN_MEDIA);
        out.extend(serde_json::to_vec(self).expect("a media label serializes"));
        out
    }

    fn decode(data: &[u8]) -> Option<MediaLabel> {
        let body = data.strip_prefix(CAIRN_MAGIC.as_slice())?.strip_prefix(&[CAIRN_MEDIA])?;
        serde_json::from_slice(body).ok()
    }
}

/// What the start of a cartridge holds.
#[derive(Debug)]
pub enum Found {
    /// Nothing was ever written.
    Blank,
    /// A volume label, and Cairn's media label if it has one.
    Label(Box<VolumeLabel>, Option<MediaLabel>),
    /// Something that is not a readable volume label.
    Unreadable(String),
}

/// A job's library, drive and cartridge.
pub struct Deck {
    lib: Library,
    changer: Box<dyn Changer>,
    drive: Option<(usize, Box<dyn Drive>)>,
    /// The cartridge in the reserved drive.
    loaded: Option<String>,
    /// The drive said early warning since the cartridge was labelled.
    pub warned: bool,
    /// The next block written is a volume label: a filemark follows it.
    pub label_next: bool,
    /// Filemarks before the head on the cartridge being written.
    pub files: u32,
    /// Bytes written to the cartridge being written, in this job.
    pub bytes: u64,
    reserved: Option<Instant>,
    /// Time the drive was reserved, and time spent in drive calls.
    pub held: Duration,
    pub busy: Duration,
    /// Time spent waiting for a free drive.
    pub waited: Duration,
    /// Drives this job used, in order.
    pub used_drives: Vec<usize>,
    /// Cleanings done (`drive N with CLN…`).
    pub cleaned: Vec<String>,
}

/// A deck shared by a job and its volume writer or reader.
pub type SharedDeck = Rc<RefCell<Deck>>;

impl Deck {
    pub fn new(lib: &Library) -> Result<Deck> {
        Ok(Deck {
            lib: lib.clone(),
            changer: lib.changer()?,
            drive: None,
            loaded: None,
            warned: false,
            label_next: false,
            files: 0,
            bytes: 0,
            reserved: None,
            held: Duration::ZERO,
            busy: Duration::ZERO,
            waited: Duration::ZERO,
            used_drives: Vec::new(),
            cleaned: Vec::new(),
        })
    }

    pub fn changer(&mut self) -> &mut dyn Changer {
        self.changer.as_mut()
    }

    /// The reserved drive.
    pub fn drive(&mut self) -> Result<&mut dyn Drive> {
        match self.drive.as_mut() {
            Some((_, d)) => Ok(d.as_mut()),
            None => bail!("no drive is reserved"),
        }
    }

    /// Run `f` on the drive, counting the time as busy.
    pub fn with_drive<T>(&mut self, f: impl FnOnce(&mut dyn Drive) -> tape::Result<T>) -> Result<T> {
        let t = Instant::now();
        let d = self.drive()?;
        let r = f(d);
        self.busy += t.elapsed();
        Ok(r?)
    }

    pub fn loaded(&self) -> Option<&str> {
        self.loaded.as_deref()
    }

    pub fn drive_number(&self) -> Option<usize> {
        self.drive.as_ref().map(|(n, _)| *n)
    }

    /// Reserve a drive if none is: one already holding `prefer` if free,
    /// else the first free one; while every drive is in use, wait.
    fn reserve(&mut self, prefer: Option<&str>) -> Result<()> {
        if self.drive.is_some() {
            return Ok(());
        }
        let start = Instant::now();
        let mut said = false;
        // What the drives hold, asked of the changer again every few
        // seconds while waiting (a real changer's inventory is slow).
        let mut inv = self.changer.inventory()?;
        let mut asked = Instant::now();
        loop {
            if asked.elapsed() > Duration::from_secs(5) {
                inv = self.changer.inventory()?;
                asked = Instant::now();
            }
            let mut order: Vec<usize> = (0..self.lib.drives()).collect();
            if let Some(p) = prefer {
                order.sort_by_key(|n| inv.drives.get(*n).and_then(|d| d.barcode.as_deref()) != Some(p));
            }
            for n in order {
                match self.lib.drive(n) {
                    Ok(d) => {
                        self.take(n, d, start)?;
                        self.clean(false)?;
                        return Ok(());
                    }
                    Err(TapeError::Busy(_)) => {}
                    Err(e) => return Err(e).context(format!("opening drive {n}")),
                }
            }
            if start.elapsed() > DRIVE_WAIT {
                bail!("no drive came free in {} hours", DRIVE_WAIT.as_secs() / 3600);
            }
            if !said {
                tracing::info!("every drive is in use: waiting for one");
                said = true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Clean the reserved drive when it says it needs it, with a cleaning
    /// cartridge (`CLN…`) of the library, before any data goes through it.
    /// A drive that needs cleaning and finds no cleaning cartridge is
    /// used all the same (and said so in the log).
    /// With `force`, clean it whatever it says (`cairn tape clean`), and
    /// fail when the library holds no cleaning cartridge. Returns what
    /// cleaned it.
    pub fn clean(&mut self, force: bool) -> Result<Option<String>> {
        let Some(n) = self.drive_number() else { return Ok(None) };
        if !force && !self.with_drive(|d| d.status())?.cleaning_needed {
            return Ok(None);
        }
        let inv = self.changer.inventory()?;
        let cleaner = inv
            .storage
            .iter()
            .chain(&inv.import_export)
            .filter_map(|e| e.barcode.clone())
            .find(|b| model::tape::is_cleaning(b));
        let Some(cleaner) = cleaner else {
            if force {
                bail!("the library holds no cleaning cartridge (CLN…) to clean drive {n} with");
            }
            tracing::warn!("drive {n} needs cleaning and the library holds no cleaning cartridge");
            return Ok(None);
        };
        self.unmount()?;
        self.changer.load(&cleaner, n).with_context(|| format!("loading {cleaner} to clean drive {n}"))?;
        self.loaded = Some(cleaner.clone());
        // A drive cleans as the cartridge goes in, and lets it go when done.
        let deadline = Instant::now() + Duration::from_secs(600);
        while self.with_drive(|d| d.status())?.cleaning_needed {
            if Instant::now() > deadline {
                bail!("drive {n} did not finish cleaning with {cleaner} in 10 minutes");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.unmount()?;
        tracing::info!("cleaned drive {n} with {cleaner}");
        self.cleaned.push(format!("drive {n} with {cleaner}"));
        Ok(Some(cleaner))
    }

    /// Hold drive `n`, opened after waiting since `start`, and learn what
    /// it holds now (an inventory asked while waiting may be old).
    fn take(&mut self, n: usize, d: Box<dyn Drive>, start: Instant) -> Result<()> {
        tracing::info!("reserved drive {n} ({})", d.name());
        self.waited += start.elapsed();
        self.drive = Some((n, d));
        self.reserved = Some(Instant::now());
        self.used_drives.push(n);
        self.loaded = self.changer.inventory()?.drives.get(n).and_then(|d| d.barcode.clone());
        Ok(())
    }

    /// Reserve drive `n` itself (waiting while another user has it), with
    /// no cleaning.
    pub fn reserve_drive(&mut self, n: usize) -> Result<()> {
        if self.drive.is_some() {
            bail!("a drive is reserved already");
        }
        let start = Instant::now();
        loop {
            match self.lib.drive(n) {
                Ok(d) => return self.take(n, d, start),
                Err(TapeError::Busy(_)) if start.elapsed() < DRIVE_WAIT => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e).context(format!("opening drive {n}")),
            }
        }
    }

    /// Have `barcode` in the reserved drive (reserving one first),
    /// putting back whatever it held.
    pub fn mount(&mut self, barcode: &str) -> Result<()> {
        self.reserve(Some(barcode))?;
        if self.loaded.as_deref() == Some(barcode) {
            return Ok(());
        }
        self.unmount()?;
        let n = self.drive_number().expect("reserved");
        self.changer.load(barcode, n).with_context(|| format!("loading {barcode} into drive {n}"))?;
        self.loaded = Some(barcode.to_owned());
        self.warned = false;
        self.files = 0;
        self.bytes = 0;
        Ok(())
    }

    /// Eject the cartridge in the reserved drive and put it back.
    pub fn unmount(&mut self) -> Result<()> {
        let Some((n, d)) = self.drive.as_mut() else { return Ok(()) };
        let n = *n;
        let inv = self.changer.inventory()?;
        if inv.drive(n)?.full {
            match d.eject() {
                Ok(()) | Err(TapeError::NoMedium(_)) => {}
                Err(e) => return Err(e).context(format!("ejecting from drive {n}")),
            }
            self.changer.unload(n).with_context(|| format!("unloading drive {n}"))?;
        }
        self.loaded = None;
        Ok(())
    }

    /// Put the cartridge back and let the drive go.
    pub fn release(&mut self) -> Result<()> {
        let r = self.unmount();
        if let Some(t) = self.reserved.take() {
            self.held += t.elapsed();
        }
        self.drive = None;
        r
    }

    /// Read what the start of the loaded cartridge holds.
    pub fn read_label(&mut self) -> Result<Found> {
        let mut buf = vec![0u8; volfmt::MAX_BLOCK_SIZE];
        let got = self.with_drive(|d| {
            d.rewind()?;
            d.read_block(&mut buf)
        });
        let n = match got {
            Ok(ReadOutcome::EndOfData) => return Ok(Found::Blank),
            Ok(ReadOutcome::Filemark) => return Ok(Found::Unreadable("it starts with a filemark".into())),
            Ok(ReadOutcome::Block(n)) => n,
            Err(e) => return Ok(Found::Unreadable(format!("{e:#}"))),
        };
        let mut r = VolumeReader::new(&buf[..n]);
        let label = match r.next_event() {
            Ok(Some(Event::Volume(v))) => v,
            Ok(_) => return Ok(Found::Unreadable("its first block holds no volume label".into())),
            Err(e) => return Ok(Found::Unreadable(e.to_string())),
        };
        let media = match r.next_event() {
            Ok(Some(Event::Record { record, .. })) if record.stream == CAIRN => {
                MediaLabel::decode(&record.data)
            }
            _ => None,
        };
        Ok(Found::Label(Box::new(label), media))
    }

    /// End with a filemark what a job that died left after the last
    /// filemark (blocks of sessions cut short, kill -9 or power loss), so
    /// the next session starts a file of its own. Returns the highest
    /// session id among those blocks (the next session must take a higher
    /// one), or `None` when nothing was cut.
    pub fn close_cut_file(&mut self) -> Result<Option<u32>> {
        let mut buf = vec![0u8; volfmt::MAX_BLOCK_SIZE];
        self.with_drive(|d| {
            d.seek_end_of_data()?;
            d.space_filemarks(-1)?;
            let mark = d.read_block(&mut buf)?;
            let mut highest = None;
            if mark == ReadOutcome::Filemark {
                while let ReadOutcome::Block(n) = d.read_block(&mut buf)? {
                    let id = buf.get(16..20.min(n)).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes);
                    highest = highest.max(Some(id.unwrap_or(0)));
                }
            }
            d.seek_end_of_data()?;
            if highest.is_some() {
                d.write_filemarks(1)?;
            }
            Ok(highest)
        })
    }

    /// Block number of the last block before the end of data (the next
    /// one written gets this plus one), leaving the head at the end.
    pub fn last_block_number(&mut self) -> Result<u32> {
        let mut buf = vec![0u8; volfmt::MAX_BLOCK_SIZE];
        let n = self.with_drive(|d| {
            d.seek_end_of_data()?;
            d.space_filemarks(-1)?;
            d.space_blocks(-1)?;
            let got = d.read_block(&mut buf);
            d.seek_end_of_data()?;
            got
        })?;
        let ReadOutcome::Block(n) = n else { bail!("no block before the last filemark") };
        let head: &[u8; volfmt::BLOCK_HEADER] = buf
            .get(..volfmt::BLOCK_HEADER)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| anyhow!("a short block"))?;
        let _ = n;
        Ok(volfmt::block::BlockHeader::parse(head, 0)?.number)
    }
}

/// The volume writer's output: each write is one block to the drive.
pub struct TapeOut(pub SharedDeck);

impl Write for TapeOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut deck = self.0.borrow_mut();
        let label = deck.label_next;
        let done = deck.with_drive(|d| {
            let w = d.write_block(buf)?;
            if label {
                d.write_filemarks(1)?;
            }
            Ok(w)
        });
        match done {
            Ok(w) => {
                if w == WriteOutcome::EarlyWarning {
                    deck.warned = true;
                }
                if label {
                    deck.label_next = false;
                    deck.files += 1;
                }
                deck.bytes += buf.len() as u64;
                Ok(buf.len())
            }
            Err(e) => Err(io::Error::other(format!("{e:#}"))),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One file of a cartridge (up to its filemark or the end of data) as a
/// stream of blocks, for a volume reader.
pub struct TapeIn {
    deck: SharedDeck,
    block: Vec<u8>,
    at: usize,
    len: usize,
    ended: Option<ReadOutcome>,
    /// Bytes of blocks read.
    pub read: Rc<std::cell::Cell<u64>>,
}

impl TapeIn {
    pub fn new(deck: SharedDeck) -> TapeIn {
        TapeIn {
            deck,
            block: vec![0; volfmt::MAX_BLOCK_SIZE],
            at: 0,
            len: 0,
            ended: None,
            read: Rc::default(),
        }
    }

    /// What ended the file: a filemark or the end of data (`None` while
    /// it goes on).
    pub fn ended(&self) -> Option<ReadOutcome> {
        self.ended
    }
}

impl Read for TapeIn {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at == self.len {
            if self.ended.is_some() {
                return Ok(0);
            }
            let block = &mut self.block;
            let got = self.deck.borrow_mut().with_drive(|d| d.read_block(block));
            match got {
                Ok(ReadOutcome::Block(n)) => {
                    self.at = 0;
                    self.len = n;
                    self.read.set(self.read.get() + n as u64);
                }
                Ok(end) => {
                    self.ended = Some(end);
                    return Ok(0);
                }
                Err(e) => return Err(io::Error::other(format!("{e:#}"))),
            }
        }
        let n = out.len().min(self.len - self.at);
        out[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
