//! Which disk becomes the data disk on first boot.
//!
//! A disk already holding a file system labelled `cairn-data` is the data
//! disk, whatever else is attached. Without one, the data disk is the one
//! whole disk that is empty: no partition table, no file system or other
//! signature, not removable, not read-only, not the boot disk (which has
//! partitions anyway). Two or more empty disks are a question for the
//! operator, never a guess: formatting the wrong disk loses data.

use std::fs;
use std::path::Path;

/// A whole disk as /sys/block and blkid describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Kernel name: `vdb`, `sdb`, `nvme0n1`.
    pub name: String,
    pub bytes: u64,
    pub partitions: usize,
    pub removable: bool,
    pub read_only: bool,
    /// What blkid found on the whole disk (`ext4`, `gpt`, ...), if anything.
    pub signature: Option<String>,
    /// The file system label, if any.
    pub label: Option<String>,
}

pub const LABEL: &str = "cairn-data";
/// Smaller disks are not data disks (an appliance's datastore needs room).
pub const MIN_BYTES: u64 = 1 << 30;

#[derive(Debug, PartialEq, Eq)]
pub enum Choice {
    /// Already formatted as the data disk: mount it.
    Existing(String),
    /// Empty: format it, then mount it.
    Format(String),
    /// Nothing to use.
    None { why: String },
    /// More than one empty disk.
    Ambiguous(Vec<String>),
}

pub fn choose(disks: &[Disk]) -> Choice {
    if let Some(d) = disks.iter().find(|d| d.label.as_deref() == Some(LABEL)) {
        return Choice::Existing(d.name.clone());
    }
    let empty: Vec<&Disk> = disks
        .iter()
        .filter(|d| {
            d.partitions == 0 && d.signature.is_none() && !d.removable && !d.read_only && d.bytes >= MIN_BYTES
        })
        .collect();
    match empty.as_slice() {
        [one] => Choice::Format(one.name.clone()),
        [] => {
            let seen: Vec<String> = disks
                .iter()
                .map(|d| {
                    let why = if d.partitions > 0 {
                        "has partitions".to_owned()
                    } else if let Some(s) = &d.signature {
                        format!("holds {s}")
                    } else if d.removable {
                        "is removable".to_owned()
                    } else if d.read_only {
                        "is read-only".to_owned()
                    } else {
                        format!("is smaller than {} GiB", MIN_BYTES >> 30)
                    };
                    format!("{} {why}", d.name)
                })
                .collect();
            Choice::None { why: if seen.is_empty() { "no disks".into() } else { seen.join(", ") } }
        }
        many => Choice::Ambiguous(many.iter().map(|d| d.name.clone()).collect()),
    }
}

/// What blkid found on a disk: (signature, label).
pub type Probe = (Option<String>, Option<String>);

/// Whole disks under a /sys/block directory (loop, ram, zram, optical and
/// device-mapper devices are never data disks). `probe` answers blkid's
/// (signature, label) for `/dev/NAME`.
pub fn scan(sys_block: &Path, probe: &mut dyn FnMut(&str) -> Probe) -> std::io::Result<Vec<Disk>> {
    let mut out = Vec::new();
    let mut names: Vec<String> =
        fs::read_dir(sys_block)?.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    names.sort();
    for name in names {
        if ["loop", "ram", "zram", "sr", "dm-", "md", "nbd", "fd"].iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let dir = sys_block.join(&name);
        let read = |f: &str| fs::read_to_string(dir.join(f)).unwrap_or_default().trim().to_owned();
        let partitions = fs::read_dir(&dir)
            .map(|it| it.filter_map(|e| e.ok()).filter(|e| e.path().join("partition").exists()).count())
            .unwrap_or(0);
        let (signature, label) = probe(&name);
        out.push(Disk {
            bytes: read("size").parse::<u64>().unwrap_or(0) * 512,
            partitions,
            removable: read("removable") == "1",
            read_only: read("ro") == "1",
            signature,
            label,
            name,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(name: &str) -> Disk {
        Disk {
            name: name.into(),
            bytes: 32 << 30,
            partitions: 0,
            removable: false,
            read_only: false,
            signature: None,
            label: None,
        }
    }

    #[test]
    fn the_one_empty_disk_is_chosen_and_never_the_boot_disk() {
        let boot = Disk { partitions: 3, signature: Some("gpt".into()), ..disk("vda") };
        assert_eq!(choose(&[boot.clone(), disk("vdb")]), Choice::Format("vdb".into()));
        // A labelled data disk wins, even beside an empty one.
        let data = Disk { signature: Some("ext4".into()), label: Some(LABEL.into()), ..disk("sdb") };
        assert_eq!(choose(&[boot.clone(), disk("vdc"), data]), Choice::Existing("sdb".into()));
        // Disks with anything on them are left alone, and said why.
        let used = Disk { signature: Some("xfs".into()), ..disk("vdb") };
        let usb = Disk { removable: true, ..disk("sdc") };
        let tiny = Disk { bytes: 100 << 20, ..disk("vdd") };
        match choose(&[boot.clone(), used, usb, tiny]) {
            Choice::None { why } => {
                for part in ["vda has partitions", "vdb holds xfs", "sdc is removable", "vdd is smaller"] {
                    assert!(why.contains(part), "{why}");
                }
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            choose(&[boot, disk("vdb"), disk("nvme0n1")]),
            Choice::Ambiguous(vec!["vdb".into(), "nvme0n1".into()])
        );
    }

    #[test]
    fn sys_block_is_read_as_the_kernel_lays_it_out() {
        let dir = tempfile::tempdir().unwrap();
        let sb = dir.path();
        for (name, size, parts) in
            [("vda", 4_000_000u64, 3), ("vdb", 8_388_608, 0), ("loop0", 100, 0), ("sr0", 100, 0)]
        {
            fs::create_dir_all(sb.join(name)).unwrap();
            fs::write(sb.join(name).join("size"), format!("{size}\n")).unwrap();
            fs::write(sb.join(name).join("removable"), "0\n").unwrap();
            fs::write(sb.join(name).join("ro"), "0\n").unwrap();
            for p in 1..=parts {
                fs::create_dir_all(sb.join(name).join(format!("{name}{p}"))).unwrap();
                fs::write(sb.join(name).join(format!("{name}{p}/partition")), format!("{p}\n")).unwrap();
            }
        }
        let disks =
            scan(sb, &mut |n| if n == "vda" { (Some("gpt".into()), None) } else { (None, None) }).unwrap();
        let names: Vec<_> = disks.iter().map(|d| (d.name.as_str(), d.partitions, d.bytes)).collect();
        assert_eq!(names, [("vda", 3, 4_000_000 * 512), ("vdb", 0, 8_388_608 * 512)]);
        assert_eq!(choose(&disks), Choice::Format("vdb".into()));
    }
}
