//! The two root slots and their boot entries.
//!
//! The disk has an EFI system partition and two root partitions,
//! `cairn-root-a` and `cairn-root-b`. Each slot boots through a unified
//! kernel image on the ESP, `EFI/Linux/cairn-VERSION-SLOT.efi`, whose
//! command line names its root partition. systemd-boot lists these entries
//! highest version first, but puts an entry whose boot counter has run out
//! (`+0-N` in its name) last.
//!
//! An update writes the slot that is not running, then installs its entry
//! as `cairn-VERSION-SLOT+3.efi`: three tries. systemd-boot counts one down
//! before each boot of it (`+2-1`, ...); `systemd-bless-boot` drops the
//! counter once the boot reaches `boot-complete.target`, which needs
//! `cairn serve` to answer its health check. Three failed boots leave
//! `+0-3`: the entry sorts last and the old slot boots again, by itself.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::bundle::{Bundle, BundleError};
use crate::keys::{KeyError, PublicKey};
use crate::version;

/// How many boots a new slot gets to become healthy.
pub const TRIES: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn letter(self) -> char {
        match self {
            Slot::A => 'a',
            Slot::B => 'b',
        }
    }
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
    pub fn parse(s: &str) -> Option<Slot> {
        match s {
            "a" | "A" => Some(Slot::A),
            "b" | "B" => Some(Slot::B),
            _ => None,
        }
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.letter().to_ascii_uppercase())
    }
}

/// One boot entry on the ESP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub file: String,
    pub version: String,
    pub slot: Slot,
    /// Boots left before systemd-boot gives up on it; `None`: no counter
    /// (a good entry).
    pub tries_left: Option<u32>,
    pub tries_done: Option<u32>,
}

impl Entry {
    /// Parse `cairn-VERSION-SLOT[+LEFT[-DONE]].efi` (any case: FAT).
    pub fn parse(file: &str) -> Option<Entry> {
        let lower = file.to_ascii_lowercase();
        let stem = lower.strip_prefix("cairn-")?.strip_suffix(".efi")?;
        let (name, counter) = match stem.split_once('+') {
            Some((n, c)) => (n, Some(c)),
            None => (stem, None),
        };
        let (ver, slot) = name.rsplit_once('-')?;
        let slot = Slot::parse(slot)?;
        if ver.is_empty() {
            return None;
        }
        let (left, done) = match counter {
            None => (None, None),
            Some(c) => match c.split_once('-') {
                Some((l, d)) => (Some(l.parse().ok()?), Some(d.parse().ok()?)),
                None => (Some(c.parse().ok()?), None),
            },
        };
        // The version as written (FAT keeps the case it was given).
        let version = file["cairn-".len().."cairn-".len() + ver.len()].to_owned();
        Some(Entry { file: file.to_owned(), version, slot, tries_left: left, tries_done: done })
    }

    pub fn is_good(&self) -> bool {
        self.tries_left.is_none()
    }
    pub fn is_exhausted(&self) -> bool {
        self.tries_left == Some(0)
    }
}

/// Where the appliance's pieces are. `Layout::appliance()` is the real
/// machine; tests point it at plain files.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The mounted EFI system partition.
    pub esp: PathBuf,
    pub slot_a: PathBuf,
    pub slot_b: PathBuf,
    /// The kernel command line (names `cairn.slot=`).
    pub cmdline: PathBuf,
    /// The running image's os-release (names `IMAGE_VERSION=`).
    pub os_release: PathBuf,
    /// The public key update bundles must be signed with.
    pub update_key: PathBuf,
}

impl Layout {
    pub fn appliance() -> Layout {
        Layout {
            esp: "/efi".into(),
            slot_a: "/dev/disk/by-partlabel/cairn-root-a".into(),
            slot_b: "/dev/disk/by-partlabel/cairn-root-b".into(),
            cmdline: "/proc/cmdline".into(),
            os_release: "/etc/os-release".into(),
            update_key: "/usr/share/cairn/update.pub".into(),
        }
    }

    /// A machine made of plain files under `dir`: `esp/`, `slot-a`,
    /// `slot-b`, `cmdline`, `os-release` and `update.pub` (tests, and
    /// trying a bundle on a copy of a machine).
    pub fn under(dir: &Path) -> Layout {
        Layout {
            esp: dir.join("esp"),
            slot_a: dir.join("slot-a"),
            slot_b: dir.join("slot-b"),
            cmdline: dir.join("cmdline"),
            os_release: dir.join("os-release"),
            update_key: dir.join("update.pub"),
        }
    }

    pub fn slot_device(&self, slot: Slot) -> &Path {
        match slot {
            Slot::A => &self.slot_a,
            Slot::B => &self.slot_b,
        }
    }

    fn entries_dir(&self) -> PathBuf {
        self.esp.join("EFI/Linux")
    }

    /// The boot entries, highest version first (systemd-boot's order but
    /// for the exhausted ones, which are listed too).
    pub fn entries(&self) -> io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        for e in fs::read_dir(self.entries_dir())? {
            let name = e?.file_name();
            if let Some(entry) = name.to_str().and_then(Entry::parse) {
                out.push(entry);
            }
        }
        out.sort_by(|a, b| {
            a.is_exhausted()
                .cmp(&b.is_exhausted())
                .then_with(|| version::compare(&b.version, &a.version))
                .then_with(|| b.file.cmp(&a.file))
        });
        Ok(out)
    }

    pub fn running_slot(&self) -> Result<Slot, UpdateError> {
        let cmdline = fs::read_to_string(&self.cmdline).map_err(|e| UpdateError::io(&self.cmdline, e))?;
        cmdline
            .split_whitespace()
            .find_map(|w| w.strip_prefix("cairn.slot=").and_then(Slot::parse))
            .ok_or(UpdateError::NotAnAppliance("the kernel command line names no cairn.slot"))
    }

    pub fn running_version(&self) -> Result<String, UpdateError> {
        let text = fs::read_to_string(&self.os_release).map_err(|e| UpdateError::io(&self.os_release, e))?;
        text.lines()
            .find_map(|l| l.strip_prefix("IMAGE_VERSION="))
            .map(|v| v.trim_matches('"').to_owned())
            .ok_or(UpdateError::NotAnAppliance("os-release names no IMAGE_VERSION"))
    }

    /// The appliance's state: what runs, what else is installed, and what
    /// became of the last update.
    pub fn status(&self) -> Result<Status, UpdateError> {
        let running = self.running_slot()?;
        let version = self.running_version()?;
        let entries = self.entries().map_err(|e| UpdateError::io(&self.entries_dir(), e))?;
        let other = entries.iter().find(|e| e.slot == running.other()).cloned();
        let newer = |e: &Entry| version::compare(&e.version, &version).is_gt();
        let state = match &other {
            Some(e) if e.is_exhausted() && newer(e) => UpdateState::RolledBack {
                version: e.version.clone(),
                slot: e.slot,
                tries: e.tries_done.unwrap_or(TRIES),
            },
            Some(e) if !e.is_good() && newer(e) => {
                UpdateState::Pending { version: e.version.clone(), slot: e.slot }
            }
            _ => UpdateState::Settled,
        };
        Ok(Status { running, version, entries, update: state })
    }

    /// Write `bundle` into the slot that is not running and install its
    /// boot entry with `TRIES` tries. The order keeps every step safe to
    /// cut short: the old entry of that slot goes first (a half-written
    /// slot is never bootable), the new entry comes last, after the slot's
    /// bytes were written, synced and read back.
    pub fn apply<R: Read + Seek>(
        &self,
        bundle: &mut Bundle<R>,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Applied, UpdateError> {
        let status = self.status()?;
        let target = status.running.other();
        let m = bundle.manifest.clone();
        if !version::compare(&m.version, &status.version).is_gt() {
            return Err(UpdateError::NotNewer { bundle: m.version, running: status.version });
        }
        let rootfs = m.section("rootfs").ok_or_else(|| missing("rootfs"))?.clone();
        let uki_name = format!("uki-{}", target.letter());
        m.section(&uki_name).ok_or_else(|| missing(&uki_name))?;
        let device = self.slot_device(target);
        let mut dev =
            File::options().read(true).write(true).open(device).map_err(|e| UpdateError::io(device, e))?;
        let capacity = dev.seek(SeekFrom::End(0)).map_err(|e| UpdateError::io(device, e))?;
        if rootfs.length > capacity {
            return Err(UpdateError::TooBig { need: rootfs.length, slot: target, capacity });
        }

        progress(&format!("removing slot {target}'s boot entry"));
        let dir = self.entries_dir();
        for e in self.entries().map_err(|e| UpdateError::io(&dir, e))? {
            if e.slot == target {
                let p = dir.join(&e.file);
                fs::remove_file(&p).map_err(|err| UpdateError::io(&p, err))?;
            }
        }
        sync_dir(&dir)?;

        progress(&format!(
            "writing {} bytes of root file system {} to slot {target}",
            rootfs.length, m.version
        ));
        dev.seek(SeekFrom::Start(0)).map_err(|e| UpdateError::io(device, e))?;
        {
            let mut w = io::BufWriter::with_capacity(4 << 20, &mut dev);
            bundle.extract("rootfs", &mut w)?;
            w.flush().map_err(|e| UpdateError::io(device, e))?;
        }
        dev.sync_all().map_err(|e| UpdateError::io(device, e))?;
        progress("reading the slot back");
        dev.seek(SeekFrom::Start(0)).map_err(|e| UpdateError::io(device, e))?;
        let mut hasher = blake3::Hasher::new();
        let n = io::copy(&mut (&mut dev).take(rootfs.length), &mut hasher)
            .map_err(|e| UpdateError::io(device, e))?;
        if n != rootfs.length || hasher.finalize().to_hex().as_str() != rootfs.blake3 {
            return Err(UpdateError::ReadBack(target));
        }

        let file = format!("cairn-{}-{}+{TRIES}.efi", m.version, target.letter());
        progress(&format!("installing boot entry {file}"));
        let tmp = dir.join(format!(".{file}.tmp"));
        let mut f = File::create(&tmp).map_err(|e| UpdateError::io(&tmp, e))?;
        let written = bundle.extract(&uki_name, &mut f);
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e.into());
        }
        f.sync_all().map_err(|e| UpdateError::io(&tmp, e))?;
        drop(f);
        fs::rename(&tmp, dir.join(&file)).map_err(|e| UpdateError::io(&dir, e))?;
        sync_dir(&dir)?;
        Ok(Applied { version: m.version, slot: target, entry: file })
    }
}

fn missing(name: &str) -> UpdateError {
    UpdateError::Bundle(BundleError::Section { name: name.into(), why: "missing from the bundle".into() })
}

fn sync_dir(dir: &Path) -> Result<(), UpdateError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| UpdateError::io(dir, e))
}

#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub version: String,
    pub slot: Slot,
    pub entry: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum UpdateState {
    /// Nothing in flight.
    Settled,
    /// Installed and waiting for a healthy boot (reboot to try it).
    Pending { version: String, slot: Slot },
    /// The update never became healthy: the old slot runs again.
    RolledBack { version: String, slot: Slot, tries: u32 },
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub running: Slot,
    pub version: String,
    pub entries: Vec<Entry>,
    pub update: UpdateState,
}

impl Status {
    /// One line for people.
    pub fn summary(&self) -> String {
        let head = format!("running Cairn {} from slot {}", self.version, self.running);
        match &self.update {
            UpdateState::Settled => head,
            UpdateState::Pending { version, slot } => {
                format!("{head}; update {version} is in slot {slot}, waiting for a reboot into it")
            }
            UpdateState::RolledBack { version, slot, tries } => format!(
                "{head}; the update to {version} was rolled back: slot {slot} did not become healthy in {tries} boots"
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("{0}")]
    Bundle(#[from] BundleError),
    #[error("{0}")]
    Key(#[from] KeyError),
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("this is not a Cairn appliance: {0}")]
    NotAnAppliance(&'static str),
    #[error("the bundle holds {bundle}, which is not newer than the running {running}: refused")]
    NotNewer { bundle: String, running: String },
    #[error("the root file system needs {need} bytes; slot {slot} has {capacity}")]
    TooBig { need: u64, slot: Slot, capacity: u64 },
    #[error(
        "slot {0} reads back different bytes than were written: the disk is failing; its entry was not installed"
    )]
    ReadBack(Slot),
}

impl UpdateError {
    fn io(path: &Path, source: io::Error) -> UpdateError {
        UpdateError::Io { path: path.display().to_string(), source }
    }
}

/// Reboot the machine through systemd (`systemctl reboot`): services stop
/// in order, file systems are synced and unmounted.
pub fn reboot() -> io::Result<()> {
    let status = std::process::Command::new("systemctl").arg("reboot").status()?;
    if status.success() { Ok(()) } else { Err(io::Error::other(format!("systemctl reboot: {status}"))) }
}

/// Open `path` as a bundle signed by the key in `layout.update_key`.
pub fn open_trusted(layout: &Layout, path: &Path) -> Result<Bundle<io::BufReader<File>>, UpdateError> {
    let key = PublicKey::read(&layout.update_key)?;
    Ok(Bundle::open(path, &key)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{Input, create};
    use crate::keys::SecretKey;

    #[test]
    fn entry_names_parse_with_their_boot_counters() {
        let e = Entry::parse("cairn-0.1.0.2026-a.efi").unwrap();
        assert_eq!(
            (e.version.as_str(), e.slot, e.tries_left, e.tries_done),
            ("0.1.0.2026", Slot::A, None, None)
        );
        let e = Entry::parse("cairn-2-b+3.efi").unwrap();
        assert_eq!((e.version.as_str(), e.slot, e.tries_left, e.tries_done), ("2", Slot::B, Some(3), None));
        let e = Entry::parse("CAIRN-2-B+0-3.EFI").unwrap();
        assert_eq!((e.slot, e.tries_left, e.tries_done), (Slot::B, Some(0), Some(3)));
        assert!(e.is_exhausted());
        for bad in ["cairn-2-c.efi", "cairn--a.efi", "linux.efi", "cairn-2-a+x.efi", "cairn-2-a.conf"] {
            assert!(Entry::parse(bad).is_none(), "{bad}");
        }
    }

    struct Machine {
        _dir: tempfile::TempDir,
        layout: Layout,
        key: SecretKey,
        root: PathBuf,
    }

    fn machine(running: Slot, version: &str) -> Machine {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        fs::create_dir_all(root.join("esp/EFI/Linux")).unwrap();
        fs::write(root.join(format!("esp/EFI/Linux/cairn-{version}-{}.efi", running.letter())), b"old uki")
            .unwrap();
        for s in ["a", "b"] {
            fs::write(root.join(format!("slot-{s}")), vec![0u8; 4 << 20]).unwrap();
        }
        fs::write(root.join("cmdline"), format!("root=x ro cairn.slot={} quiet\n", running.letter()))
            .unwrap();
        fs::write(root.join("os-release"), format!("ID=cairn\nIMAGE_VERSION={version}\n")).unwrap();
        let (_, key) = SecretKey::generate().unwrap();
        fs::write(root.join("update.pub"), format!("{}\n", key.public())).unwrap();
        Machine { _dir: dir, layout: Layout::under(&root), key, root }
    }

    fn bundle(m: &Machine, version: &str, rootfs_len: usize) -> PathBuf {
        let rootfs: Vec<u8> = (0..rootfs_len).map(|i| (i % 253) as u8 ^ 0x5a).collect();
        fs::write(m.root.join("rootfs"), &rootfs).unwrap();
        fs::write(m.root.join("uki-a"), format!("uki for a, {version}")).unwrap();
        fs::write(m.root.join("uki-b"), format!("uki for b, {version}")).unwrap();
        let out = m.root.join(format!("{version}.bundle"));
        create(
            &m.key,
            version,
            "2026-12-05T00:00:00Z",
            &[
                Input { name: "rootfs", path: &m.root.join("rootfs"), compress: true },
                Input { name: "uki-a", path: &m.root.join("uki-a"), compress: false },
                Input { name: "uki-b", path: &m.root.join("uki-b"), compress: false },
            ],
            &out,
        )
        .unwrap();
        out
    }

    #[test]
    fn an_update_fills_the_other_slot_and_installs_its_entry_with_three_tries() {
        let m = machine(Slot::A, "1");
        let path = bundle(&m, "2", 3 << 20);
        let mut b = open_trusted(&m.layout, &path).unwrap();
        let mut steps = Vec::new();
        let applied = m.layout.apply(&mut b, &mut |s| steps.push(s.to_owned())).unwrap();
        assert_eq!((applied.slot, applied.entry.as_str()), (Slot::B, "cairn-2-b+3.efi"));
        let slot = fs::read(&m.layout.slot_b).unwrap();
        assert!(slot[..3 << 20] == fs::read(m.root.join("rootfs")).unwrap()[..], "slot B holds the root fs");
        assert_eq!(fs::read(&m.layout.slot_a).unwrap(), vec![0u8; 4 << 20], "slot A untouched");
        let entry = fs::read_to_string(m.layout.esp.join("EFI/Linux/cairn-2-b+3.efi")).unwrap();
        assert_eq!(entry, "uki for b, 2", "slot B's own kernel image (its command line names slot B)");
        assert!(steps.iter().any(|s| s.contains("reading the slot back")), "{steps:?}");
        // systemd-boot would now boot the new entry first.
        let entries = m.layout.entries().unwrap();
        assert_eq!(entries[0].file, "cairn-2-b+3.efi");
        assert_eq!(
            m.layout.status().unwrap().update,
            UpdateState::Pending { version: "2".into(), slot: Slot::B }
        );
    }

    #[test]
    fn three_failed_boots_read_as_a_rollback_and_a_blessed_slot_as_settled() {
        let m = machine(Slot::A, "1");
        let linux = m.layout.esp.join("EFI/Linux");
        fs::write(linux.join("cairn-2-b+0-3.efi"), b"x").unwrap();
        let s = m.layout.status().unwrap();
        assert_eq!(s.update, UpdateState::RolledBack { version: "2".into(), slot: Slot::B, tries: 3 });
        assert!(s.summary().contains("rolled back"), "{}", s.summary());
        // The exhausted entry sorts after the good one, as systemd-boot does.
        assert_eq!(m.layout.entries().unwrap()[0].file, "cairn-1-a.efi");
        fs::remove_file(linux.join("cairn-2-b+0-3.efi")).unwrap();
        fs::write(linux.join("cairn-0.9-b.efi"), b"x").unwrap();
        assert_eq!(m.layout.status().unwrap().update, UpdateState::Settled);
    }

    #[test]
    fn refused_updates_change_nothing() {
        let m = machine(Slot::B, "5");
        let snapshot = |m: &Machine| {
            let mut names: Vec<_> = fs::read_dir(m.layout.esp.join("EFI/Linux"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            (names, fs::read(&m.layout.slot_a).unwrap())
        };
        let before = snapshot(&m);
        // Not newer than the running version.
        let old = bundle(&m, "5", 1000);
        let e = m.layout.apply(&mut open_trusted(&m.layout, &old).unwrap(), &mut |_| {}).unwrap_err();
        assert!(matches!(e, UpdateError::NotNewer { .. }), "{e}");
        // Larger than the slot.
        let big = bundle(&m, "6", 5 << 20);
        let e = m.layout.apply(&mut open_trusted(&m.layout, &big).unwrap(), &mut |_| {}).unwrap_err();
        assert!(matches!(e, UpdateError::TooBig { slot: Slot::A, .. }), "{e}");
        // Signed by another key.
        let (_, stranger) = SecretKey::generate().unwrap();
        fs::write(&m.layout.update_key, format!("{}\n", stranger.public())).unwrap();
        let good = bundle(&m, "7", 1000);
        assert!(matches!(
            open_trusted(&m.layout, &good),
            Err(UpdateError::Bundle(BundleError::BadSignature))
        ));
        assert_eq!(snapshot(&m), before);
    }

    #[test]
    fn a_damaged_payload_leaves_the_target_slot_without_an_entry() {
        let m = machine(Slot::A, "1");
        // An earlier good update left an entry for slot B.
        fs::write(m.layout.esp.join("EFI/Linux/cairn-0.5-b.efi"), b"x").unwrap();
        let path = bundle(&m, "2", 2 << 20);
        let mut bytes = fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 5] ^= 1; // inside uki-b, the last section
        fs::write(&path, &bytes).unwrap();
        let e = m.layout.apply(&mut open_trusted(&m.layout, &path).unwrap(), &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("uki-b"), "{e}");
        let names: Vec<_> = m.layout.entries().unwrap().into_iter().map(|e| e.file).collect();
        assert_eq!(names, ["cairn-1-a.efi"], "slot B is not bootable, slot A still is");
        assert!(
            !fs::read_dir(m.layout.esp.join("EFI/Linux"))
                .unwrap()
                .any(|e| { e.unwrap().file_name().to_string_lossy().ends_with(".tmp") })
        );
    }
}
