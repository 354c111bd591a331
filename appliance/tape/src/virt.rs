//! A virtual tape library: a directory of file-backed cartridges, drives
//! and slots, used by the server as a real one (for tests, demos and sites
//! without a library).
//!
//! ```text
//! DIR/library.toml          kind = "virtual", drives, slots, import/export slots
//! DIR/state.json            which cartridge is in which element (under DIR/lock)
//! DIR/cartridges/BARCODE    the cartridge's blocks, back to back, as written
//! DIR/cartridges/BARCODE.index   one u32 (little-endian) per logical object:
//!                           a block's length, or 0 for a filemark
//! DIR/cartridges/BARCODE.toml    capacity, early warning, WORM, write-protect
//! DIR/drive-N.lock          held while drive N is open (one user at a time)
//! ```
//!
//! A cartridge's data file holds exactly the volume written to it, so
//! Bacula's tools and `cairn volume` read it as a volume file; filemarks
//! and block boundaries live only in its index, as on a real tape they
//! live only on the tape.
//!
//! Invariant: as on tape, a write at the head makes everything after it
//! unreadable (the data file and index are cut there); a WORM cartridge
//! takes writes only at its end of data; a cartridge leaves a drive only
//! after the drive ejected it.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::changer::{Changer, Element, ElementKind, Inventory};
use crate::drive::{Drive, DriveStatus, ReadOutcome, WriteOutcome};
use crate::{Result, TapeError};

/// Element addresses: the robot, then drives, storage and import/export
/// slots in their own ranges (as SCSI changers number them).
const TRANSPORT: u16 = 0;
const FIRST_DRIVE: u16 = 1;
const FIRST_SLOT: u16 = 1000;
const FIRST_IMPORT_EXPORT: u16 = 2000;

/// The shape of a virtual library (`DIR/library.toml`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VirtualConfig {
    pub drives: u16,
    pub slots: u16,
    #[serde(default)]
    pub import_export: u16,
}

/// One cartridge's properties (`BARCODE.toml`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CartridgeSpec {
    /// Bytes of blocks it holds.
    pub capacity: u64,
    /// Bytes before the end where writes start reporting early warning.
    pub early_warning: u64,
    #[serde(default)]
    pub worm: bool,
    #[serde(default)]
    pub write_protected: bool,
}

impl CartridgeSpec {
    /// A cartridge of `capacity` bytes, its early warning 1/32 of it
    /// before the end, but at least the largest block a volume has (4 MiB:
    /// the block that reaches the warning must still fit), and at most
    /// half the cartridge.
    pub fn new(capacity: u64) -> CartridgeSpec {
        let early_warning = (capacity / 32).max(4 << 20).min(capacity / 2);
        CartridgeSpec { capacity, early_warning, worm: false, write_protected: false }
    }
}

/// What `create` makes.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub drives: u16,
    pub slots: u16,
    pub import_export: u16,
    pub capacity: u64,
    /// Data cartridges put in slots, from the first (the rest stay empty).
    pub cartridges: u16,
    /// How many of them (the last ones) are WORM.
    pub worm: u16,
    /// Cleaning cartridges (`CLN001L1`, …) after the data ones.
    pub cleaning: u16,
    /// Barcode prefix of data cartridges: `PREFIX` + number + `L9` (`LZ`
    /// for WORM), eight characters in all.
    pub prefix: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    /// Element address → the barcode it holds.
    holds: BTreeMap<u16, String>,
    /// Where each cartridge now in a drive came from.
    sources: BTreeMap<u16, u16>,
    /// Drives whose cartridge was ejected (ready to be taken out).
    ejected: Vec<u16>,
    /// Drives that report needing cleaning.
    #[serde(default)]
    dirty: Vec<u16>,
}

/// A virtual library's directory.
#[derive(Debug, Clone)]
pub struct VirtualLibrary {
    dir: PathBuf,
    config: VirtualConfig,
}

fn invalid(s: impl Into<String>) -> TapeError {
    TapeError::Invalid(s.into())
}

fn check_barcode(b: &str) -> Result<()> {
    if b.is_empty() || b.len() > 32 || !b.bytes().all(|c| c.is_ascii_alphanumeric()) {
        return Err(invalid(format!("barcode {b:?}: 1 to 32 letters and digits")));
    }
    Ok(())
}

/// Write `bytes` to `path` atomically (a new file renamed over it).
fn replace_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    Ok(())
}

impl VirtualLibrary {
    /// Make a new library in `dir` (which must not exist or be empty).
    pub fn create(dir: &Path, opts: &CreateOptions) -> Result<VirtualLibrary> {
        if opts.drives == 0 || opts.drives > 64 {
            return Err(invalid("a library has 1 to 64 drives"));
        }
        if opts.slots == 0 || opts.slots > 900 || opts.import_export > 900 {
            return Err(invalid("a library has 1 to 900 slots and at most 900 import/export slots"));
        }
        if opts.cartridges + opts.cleaning > opts.slots {
            return Err(invalid(format!(
                "{} cartridges do not fit in {} slots",
                opts.cartridges + opts.cleaning,
                opts.slots
            )));
        }
        if opts.worm > opts.cartridges {
            return Err(invalid("more WORM cartridges than cartridges"));
        }
        if opts.capacity < 1 << 20 {
            return Err(invalid("a cartridge holds at least 1 MiB"));
        }
        if opts.prefix.len() != 3 || !opts.prefix.bytes().all(|c| c.is_ascii_uppercase()) {
            return Err(invalid("the barcode prefix is three capital letters"));
        }
        if dir.exists() && fs::read_dir(dir)?.next().is_some() {
            return Err(invalid(format!("{} is not empty", dir.display())));
        }
        fs::create_dir_all(dir.join("cartridges"))?;
        let config =
            VirtualConfig { drives: opts.drives, slots: opts.slots, import_export: opts.import_export };
        // `library.toml`: the kind, then the shape (see `library`).
        let shape = toml::to_string(&config).map_err(|e| invalid(e.to_string()))?;
        let text = format!("kind = \"virtual\"\n{shape}");
        replace_file(&dir.join("library.toml"), text.as_bytes())?;
        let lib = VirtualLibrary { dir: dir.to_owned(), config };
        let mut state = State::default();
        let mut slot = FIRST_SLOT;
        for i in 1..=opts.cartridges {
            let worm = i > opts.cartridges - opts.worm;
            let barcode = format!("{}{:03}{}", opts.prefix, i, if worm { "LZ" } else { "L9" });
            lib.new_cartridge(&barcode, &CartridgeSpec { worm, ..CartridgeSpec::new(opts.capacity) })?;
            state.holds.insert(slot, barcode);
            slot += 1;
        }
        for i in 1..=opts.cleaning {
            let barcode = format!("CLN{i:03}L1");
            lib.new_cartridge(&barcode, &CartridgeSpec::new(opts.capacity))?;
            state.holds.insert(slot, barcode);
            slot += 1;
        }
        lib.save(&state)?;
        Ok(lib)
    }

    /// Open the library in `dir` as described by `config`.
    pub fn open(dir: &Path, config: VirtualConfig) -> Result<VirtualLibrary> {
        if !dir.join("state.json").is_file() {
            return Err(invalid(format!("{} holds no virtual library (no state.json)", dir.display())));
        }
        Ok(VirtualLibrary { dir: dir.to_owned(), config })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn drives(&self) -> usize {
        usize::from(self.config.drives)
    }

    /// The data file of cartridge `barcode` (a volume file).
    pub fn cartridge_file(&self, barcode: &str) -> PathBuf {
        self.dir.join("cartridges").join(barcode)
    }

    fn new_cartridge(&self, barcode: &str, spec: &CartridgeSpec) -> Result<()> {
        check_barcode(barcode)?;
        let data = self.cartridge_file(barcode);
        if data.exists() {
            return Err(invalid(format!("a cartridge {barcode} exists already")));
        }
        let text = toml::to_string(spec).map_err(|e| invalid(e.to_string()))?;
        replace_file(&data.with_extension("toml"), text.as_bytes())?;
        File::create(data.with_extension("index"))?;
        File::create(&data)?;
        Ok(())
    }

    /// A cartridge's properties.
    pub fn spec(&self, barcode: &str) -> Result<CartridgeSpec> {
        let path = self.cartridge_file(barcode).with_extension("toml");
        let text = fs::read_to_string(&path).map_err(|e| invalid(format!("cartridge {barcode}: {e}")))?;
        toml::from_str(&text).map_err(|e| invalid(format!("{}: {e}", path.display())))
    }

    /// Change a cartridge's properties (as flipping its write-protect tab).
    pub fn set_spec(&self, barcode: &str, spec: &CartridgeSpec) -> Result<()> {
        self.spec(barcode)?;
        let text = toml::to_string(spec).map_err(|e| invalid(e.to_string()))?;
        replace_file(&self.cartridge_file(barcode).with_extension("toml"), text.as_bytes())
    }

    /// Put a new cartridge in the first empty import/export slot, as an
    /// operator does through the mail slot.
    pub fn insert(&self, barcode: &str, spec: &CartridgeSpec) -> Result<u16> {
        let _lock = self.lock()?;
        let mut state = self.load()?;
        let to = (0..self.config.import_export)
            .map(|i| FIRST_IMPORT_EXPORT + i)
            .find(|a| !state.holds.contains_key(a))
            .ok_or_else(|| invalid("every import/export slot is full"))?;
        self.new_cartridge(barcode, spec)?;
        state.holds.insert(to, barcode.to_owned());
        self.save(&state)?;
        Ok(to)
    }

    /// Take the cartridge out of import/export slot `address`; its files
    /// stay in `cartridges/` (it is on the shelf), so it can come back.
    pub fn take_out(&self, address: u16) -> Result<String> {
        let _lock = self.lock()?;
        let mut state = self.load()?;
        if !(FIRST_IMPORT_EXPORT..FIRST_IMPORT_EXPORT + self.config.import_export).contains(&address) {
            return Err(invalid(format!("{address} is not an import/export slot")));
        }
        let barcode =
            state.holds.remove(&address).ok_or_else(|| invalid(format!("slot {address} is empty")))?;
        self.save(&state)?;
        Ok(barcode)
    }

    /// Mark drive `n` as needing cleaning (as a drive's tape alert does),
    /// or clear it.
    pub fn set_needs_cleaning(&self, n: usize, dirty: bool) -> Result<()> {
        let _lock = self.lock()?;
        let mut state = self.load()?;
        let a = self.drive_address(n)?;
        state.dirty.retain(|d| *d != a);
        if dirty {
            state.dirty.push(a);
        }
        self.save(&state)
    }

    fn drive_address(&self, n: usize) -> Result<u16> {
        u16::try_from(n)
            .ok()
            .filter(|n| *n < self.config.drives)
            .map(|n| FIRST_DRIVE + n)
            .ok_or_else(|| invalid(format!("the library has no drive {n}")))
    }

    fn lock(&self) -> Result<File> {
        let f = OpenOptions::new().create(true).truncate(false).write(true).open(self.dir.join("lock"))?;
        f.lock()?;
        Ok(f)
    }

    fn load(&self) -> Result<State> {
        let text = fs::read(self.dir.join("state.json"))?;
        serde_json::from_slice(&text).map_err(|e| invalid(format!("{}/state.json: {e}", self.dir.display())))
    }

    fn save(&self, state: &State) -> Result<()> {
        let text = serde_json::to_vec_pretty(state).map_err(|e| invalid(e.to_string()))?;
        replace_file(&self.dir.join("state.json"), &text)
    }

    fn kind_of(&self, address: u16) -> Option<ElementKind> {
        let c = &self.config;
        if address == TRANSPORT {
            Some(ElementKind::Transport)
        } else if (FIRST_DRIVE..FIRST_DRIVE + c.drives).contains(&address) {
            Some(ElementKind::Drive)
        } else if (FIRST_SLOT..FIRST_SLOT + c.slots).contains(&address) {
            Some(ElementKind::Storage)
        } else if (FIRST_IMPORT_EXPORT..FIRST_IMPORT_EXPORT + c.import_export).contains(&address) {
            Some(ElementKind::ImportExport)
        } else {
            None
        }
    }

    /// The changer of this library.
    pub fn changer(&self) -> VirtualChanger {
        VirtualChanger { lib: self.clone() }
    }

    /// Open drive `n` (0-based) for this process alone: another user of
    /// it gets `Busy` until this one is dropped.
    pub fn drive(&self, n: usize) -> Result<VirtualDrive> {
        let address = self.drive_address(n)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(format!("drive-{n}.lock")))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(TapeError::Busy(format!("virtual drive {n} is in use")));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
        Ok(VirtualDrive { lib: self.clone(), n, address, _lock: lock, mounted: None })
    }
}

/// The robot of a virtual library.
#[derive(Debug)]
pub struct VirtualChanger {
    lib: VirtualLibrary,
}

impl Changer for VirtualChanger {
    fn name(&self) -> String {
        format!("virtual changer {}", self.lib.dir.display())
    }

    fn inventory(&mut self) -> Result<Inventory> {
        let _lock = self.lib.lock()?;
        let state = self.lib.load()?;
        let c = &self.lib.config;
        let element = |kind, address: u16| Element {
            kind,
            address,
            full: state.holds.contains_key(&address),
            barcode: state.holds.get(&address).cloned(),
            source: state.sources.get(&address).copied(),
            identifier: (kind == ElementKind::Drive).then(|| format!("VDRIVE{:04}", address - FIRST_DRIVE)),
            exception: None,
        };
        Ok(Inventory {
            transports: vec![element(ElementKind::Transport, TRANSPORT)],
            drives: (0..c.drives).map(|i| element(ElementKind::Drive, FIRST_DRIVE + i)).collect(),
            storage: (0..c.slots).map(|i| element(ElementKind::Storage, FIRST_SLOT + i)).collect(),
            import_export: (0..c.import_export)
                .map(|i| element(ElementKind::ImportExport, FIRST_IMPORT_EXPORT + i))
                .collect(),
        })
    }

    fn move_medium(&mut self, from: u16, to: u16) -> Result<()> {
        let _lock = self.lib.lock()?;
        let mut state = self.lib.load()?;
        let (Some(kf), Some(kt)) = (self.lib.kind_of(from), self.lib.kind_of(to)) else {
            return Err(TapeError::Scsi(format!(
                "no element at address {from} or {to} (invalid element address)"
            )));
        };
        if kf == ElementKind::Transport || kt == ElementKind::Transport {
            return Err(invalid("cartridges move between slots and drives, not to the robot"));
        }
        let Some(barcode) = state.holds.get(&from).cloned() else {
            return Err(TapeError::Scsi(format!("element {from} is empty (medium source element empty)")));
        };
        if state.holds.contains_key(&to) {
            return Err(TapeError::Scsi(format!("element {to} is full (medium destination element full)")));
        }
        if kf == ElementKind::Drive && !state.ejected.contains(&from) {
            return Err(TapeError::Busy(format!(
                "drive {} has not ejected {barcode} (medium removal prevented)",
                from - FIRST_DRIVE
            )));
        }
        state.holds.remove(&from);
        state.holds.insert(to, barcode);
        if kf == ElementKind::Drive {
            state.ejected.retain(|d| *d != from);
            state.sources.remove(&from);
        }
        if kt == ElementKind::Drive {
            state.ejected.retain(|d| *d != to);
            // A cleaning cartridge cleans the drive as it goes in.
            if state.holds[&to].starts_with("CLN") {
                state.dirty.retain(|d| *d != to);
            }
            state.sources.insert(to, from);
        }
        self.lib.save(&state)
    }
}

/// The cartridge a virtual drive has mounted.
#[derive(Debug)]
struct Mounted {
    barcode: String,
    spec: CartridgeSpec,
    data: File,
    index: File,
    /// Each logical object's length (0: a filemark).
    objects: Vec<u32>,
    /// Byte offset in `data` of each object, and of the end.
    offsets: Vec<u64>,
    /// The head: a logical object number.
    pos: usize,
}

impl Mounted {
    fn open(lib: &VirtualLibrary, barcode: &str) -> Result<Mounted> {
        let spec = lib.spec(barcode)?;
        let path = lib.cartridge_file(barcode);
        let data = OpenOptions::new().read(true).write(true).open(&path)?;
        let mut index = OpenOptions::new().read(true).write(true).open(path.with_extension("index"))?;
        let mut raw = Vec::new();
        index.read_to_end(&mut raw)?;
        let mut objects: Vec<u32> =
            raw.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
        let mut offsets = Vec::with_capacity(objects.len() + 1);
        let mut at = 0u64;
        offsets.push(0);
        for o in &objects {
            at += u64::from(*o);
            offsets.push(at);
        }
        // What a crash left half-written is gone, as a drive's buffer is
        // lost with its power: the index and the data agree on whole
        // objects only.
        let len = data.metadata()?.len();
        while *offsets.last().expect("one offset") > len {
            objects.pop();
            offsets.pop();
        }
        let end = *offsets.last().expect("one offset");
        if len > end {
            data.set_len(end)?;
        }
        if raw.len() != objects.len() * 4 {
            index.set_len(objects.len() as u64 * 4)?;
        }
        index.seek(SeekFrom::End(0))?;
        Ok(Mounted { barcode: barcode.to_owned(), spec, data, index, objects, offsets, pos: 0 })
    }

    fn used(&self) -> u64 {
        *self.offsets.last().expect("one offset")
    }

    /// Cut the tape at the head before writing there.
    fn prepare_write(&mut self, n: usize) -> Result<()> {
        if self.spec.write_protected {
            return Err(TapeError::WriteProtected(n));
        }
        if self.pos < self.objects.len() {
            if self.spec.worm {
                return Err(TapeError::Worm(self.barcode.clone()));
            }
            self.objects.truncate(self.pos);
            self.offsets.truncate(self.pos + 1);
            self.data.set_len(self.used())?;
            self.index.set_len(self.pos as u64 * 4)?;
            self.index.seek(SeekFrom::End(0))?;
        }
        Ok(())
    }

    fn push(&mut self, len: u32) -> Result<()> {
        self.index.write_all(&len.to_le_bytes())?;
        let end = self.used() + u64::from(len);
        self.objects.push(len);
        self.offsets.push(end);
        self.pos += 1;
        Ok(())
    }
}

/// A drive of a virtual library.
#[derive(Debug)]
pub struct VirtualDrive {
    lib: VirtualLibrary,
    n: usize,
    address: u16,
    _lock: File,
    mounted: Option<Mounted>,
}

impl VirtualDrive {
    /// The mounted cartridge: the one the changer put in this drive.
    fn medium(&mut self) -> Result<&mut Mounted> {
        if self.mounted.is_none() {
            let state = {
                let _lock = self.lib.lock()?;
                self.lib.load()?
            };
            let barcode = state.holds.get(&self.address).filter(|_| !state.ejected.contains(&self.address));
            let Some(barcode) = barcode else { return Err(TapeError::NoMedium(self.n)) };
            if barcode.starts_with("CLN") {
                return Err(invalid(format!(
                    "drive {} holds the cleaning cartridge {barcode}: it holds no data",
                    self.n
                )));
            }
            self.mounted = Some(Mounted::open(&self.lib, barcode)?);
        }
        Ok(self.mounted.as_mut().expect("mounted"))
    }
}

impl Drive for VirtualDrive {
    fn name(&self) -> String {
        format!("virtual drive {}", self.n)
    }

    fn status(&mut self) -> Result<DriveStatus> {
        let (dirty, cleaning) = {
            let _lock = self.lib.lock()?;
            let state = self.lib.load()?;
            let cleaning = state.holds.get(&self.address).is_some_and(|b| b.starts_with("CLN"));
            (state.dirty.contains(&self.address), cleaning)
        };
        if cleaning {
            // A cleaning cartridge: the drive cleans and is not ready.
            return Ok(DriveStatus { cleaning_needed: dirty, ..DriveStatus::default() });
        }
        let m = match self.medium() {
            Ok(m) => m,
            Err(TapeError::NoMedium(_)) => {
                return Ok(DriveStatus { cleaning_needed: dirty, ..DriveStatus::default() });
            }
            Err(e) => return Err(e),
        };
        let filemarks = m.objects[..m.pos].iter().filter(|o| **o == 0).count() as u64;
        Ok(DriveStatus {
            loaded: true,
            write_protected: m.spec.write_protected,
            worm: m.spec.worm,
            cleaning_needed: dirty,
            at_bot: m.pos == 0,
            at_eod: m.pos == m.objects.len(),
            at_eom: m.used() + m.spec.early_warning >= m.spec.capacity,
            position: Some(m.pos as u64),
            file_number: Some(filemarks),
            block_size: 0,
            density: 0,
            alerts: Vec::new(),
        })
    }

    fn rewind(&mut self) -> Result<()> {
        self.medium()?.pos = 0;
        Ok(())
    }

    fn read_block(&mut self, buf: &mut [u8]) -> Result<ReadOutcome> {
        let m = self.medium()?;
        let Some(&len) = m.objects.get(m.pos) else { return Ok(ReadOutcome::EndOfData) };
        if len == 0 {
            m.pos += 1;
            return Ok(ReadOutcome::Filemark);
        }
        let len = len as usize;
        if len > buf.len() {
            return Err(invalid(format!(
                "a block of {len} bytes does not fit the {} bytes asked for",
                buf.len()
            )));
        }
        m.data.read_exact_at(&mut buf[..len], m.offsets[m.pos])?;
        m.pos += 1;
        Ok(ReadOutcome::Block(len))
    }

    fn write_block(&mut self, block: &[u8]) -> Result<WriteOutcome> {
        let n = self.n;
        let m = self.medium()?;
        if block.is_empty() {
            return Err(invalid("an empty block"));
        }
        let len = u32::try_from(block.len()).map_err(|_| invalid("a block over 4 GiB"))?;
        m.prepare_write(n)?;
        if m.used() + block.len() as u64 > m.spec.capacity {
            return Err(TapeError::EndOfMedium(n));
        }
        m.data.write_all_at(block, m.used())?;
        m.push(len)?;
        if m.used() + m.spec.early_warning >= m.spec.capacity {
            Ok(WriteOutcome::EarlyWarning)
        } else {
            Ok(WriteOutcome::Written)
        }
    }

    fn write_filemarks(&mut self, count: u32) -> Result<()> {
        let n = self.n;
        let m = self.medium()?;
        m.prepare_write(n)?;
        for _ in 0..count {
            m.push(0)?;
        }
        // A filemark flushes the drive's buffer to tape.
        m.data.sync_data()?;
        m.index.sync_data()?;
        Ok(())
    }

    fn space_filemarks(&mut self, count: i32) -> Result<()> {
        let m = self.medium()?;
        if count >= 0 {
            let mut left = count;
            while left > 0 {
                let Some(&o) = m.objects.get(m.pos) else {
                    return Err(invalid(format!("end of data after {} of {count} filemarks", count - left)));
                };
                m.pos += 1;
                if o == 0 {
                    left -= 1;
                }
            }
        } else {
            let mut left = -count;
            while left > 0 {
                if m.pos == 0 {
                    return Err(invalid("beginning of tape before the filemarks asked for"));
                }
                m.pos -= 1;
                if m.objects[m.pos] == 0 {
                    left -= 1;
                }
            }
        }
        Ok(())
    }

    fn space_blocks(&mut self, count: i32) -> Result<()> {
        let m = self.medium()?;
        for _ in 0..count.unsigned_abs() {
            let at = if count > 0 {
                let Some(&o) = m.objects.get(m.pos) else { return Err(invalid("end of data while spacing")) };
                m.pos += 1;
                o
            } else {
                if m.pos == 0 {
                    return Err(invalid("beginning of tape while spacing"));
                }
                m.pos -= 1;
                m.objects[m.pos]
            };
            if at == 0 {
                return Err(invalid("a filemark while spacing over blocks"));
            }
        }
        Ok(())
    }

    fn locate(&mut self, position: u64) -> Result<()> {
        let m = self.medium()?;
        let p = usize::try_from(position).ok().filter(|p| *p <= m.objects.len());
        m.pos = p.ok_or_else(|| invalid(format!("position {position} is past the end of data")))?;
        Ok(())
    }

    fn position(&mut self) -> Result<u64> {
        Ok(self.medium()?.pos as u64)
    }

    fn seek_end_of_data(&mut self) -> Result<()> {
        let m = self.medium()?;
        m.pos = m.objects.len();
        Ok(())
    }

    fn eject(&mut self) -> Result<()> {
        let _lock = self.lib.lock()?;
        let mut state = self.lib.load()?;
        if let Some(m) = self.mounted.take() {
            m.data.sync_data()?;
            m.index.sync_data()?;
        }
        if !state.holds.contains_key(&self.address) {
            return Err(TapeError::NoMedium(self.n));
        }
        if !state.ejected.contains(&self.address) {
            state.ejected.push(self.address);
        }
        self.lib.save(&state)
    }
}

#[cfg(test)]
mod tests;
