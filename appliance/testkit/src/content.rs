//! File-content helpers: seeded random trees and images, a sparse-aware
//! content digest, byte flipping and the datastore's chunk file listing.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::{Whence, lseek};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

/// Granularity of the sparse-aware digest: all-zero blocks of this size are
/// skipped, so a hole and written zeros digest the same.
const DIGEST_BLOCK: u64 = 4096;

/// What [`write_random_tree`] made.
#[derive(Debug, Clone)]
pub struct RandomTree {
    /// Every regular file written, relative to the root, in creation order.
    pub files: Vec<PathBuf>,
    /// Sum of the file sizes.
    pub total_bytes: u64,
}

/// Writes `files` regular files of seeded random content totalling exactly
/// `total_bytes` under `root` (created if missing), spread over a few
/// subdirectories. The same seed always gives the same tree.
pub fn write_random_tree(root: &Path, files: usize, total_bytes: u64, seed: u64) -> RandomTree {
    assert!(files > 0, "write_random_tree needs at least one file");
    let mut rng = StdRng::seed_from_u64(seed);
    let sizes = random_sizes(&mut rng, files, total_bytes);
    let mut made = Vec::with_capacity(files);
    for (i, size) in sizes.into_iter().enumerate() {
        let rel = PathBuf::from(format!("d{:02}/s{:02}/f{i:05}.bin", i % 7, i % 3));
        let path = root.join(&rel);
        let parent = path.parent().expect("file path has a parent");
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
        write_random_file(&path, size, &mut rng);
        made.push(rel);
    }
    RandomTree { files: made, total_bytes }
}

/// Splits `total` into `n` random positive-weight parts summing to `total`.
fn random_sizes(rng: &mut StdRng, n: usize, total: u64) -> Vec<u64> {
    let weights: Vec<u64> = (0..n).map(|_| rng.random_range(1..=1000u64)).collect();
    let sum: u64 = weights.iter().sum();
    let mut sizes: Vec<u64> = weights.iter().map(|w| total * w / sum).collect();
    let short = total - sizes.iter().sum::<u64>();
    sizes[0] += short;
    sizes
}

/// Writes `size` bytes from `rng` to a new file at `path`.
pub(crate) fn write_random_file(path: &Path, size: u64, rng: &mut StdRng) {
    let mut file = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill_bytes(&mut buf[..n]);
        file.write_all(&buf[..n]).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        left -= n as u64;
    }
}

/// Writes a disk-image-like file of `size_mib` MiB (a multiple of 8) in
/// eighths: random data (2), written zeros (1), random (2), a hole (2),
/// random (1). Returns the byte ranges that are zero (written or hole).
pub fn write_image_file(path: &Path, size_mib: u64, seed: u64) -> Vec<(u64, u64)> {
    assert!(size_mib > 0 && size_mib.is_multiple_of(8), "image size must be a multiple of 8 MiB");
    let unit = size_mib / 8 * (1 << 20);
    let mut rng = StdRng::seed_from_u64(seed);
    let file = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    file.set_len(8 * unit).unwrap_or_else(|e| panic!("truncate {}: {e}", path.display()));
    let mut buf = vec![0u8; 1 << 20];
    let mut put = |from: u64, to: u64, random: bool| {
        let mut off = from;
        while off < to {
            let n = (to - off).min(buf.len() as u64) as usize;
            if random {
                rng.fill_bytes(&mut buf[..n]);
            } else {
                buf[..n].fill(0);
            }
            file.write_all_at(&buf[..n], off).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            off += n as u64;
        }
    };
    put(0, 2 * unit, true);
    put(2 * unit, 3 * unit, false);
    put(3 * unit, 5 * unit, true);
    put(7 * unit, 8 * unit, true);
    file.sync_all().unwrap_or_else(|e| panic!("fsync {}: {e}", path.display()));
    vec![(2 * unit, 3 * unit), (5 * unit, 7 * unit)]
}

/// Inverts every bit of the byte at `offset` in `path`, in place.
pub fn flip_byte(path: &Path, offset: u64) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, offset)
        .unwrap_or_else(|e| panic!("read {} at {offset}: {e}", path.display()));
    byte[0] ^= 0xff;
    file.write_all_at(&byte, offset).unwrap_or_else(|e| panic!("write {} at {offset}: {e}", path.display()));
    file.sync_all().unwrap_or_else(|e| panic!("fsync {}: {e}", path.display()));
}

/// Every chunk file of a datastore: `DATASTORE/chunks/*/*/*`. Empty when the
/// datastore has no chunk directory yet.
pub fn chunk_files(datastore: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for first in subdirs(&datastore.join("chunks")) {
        for second in subdirs(&first) {
            for entry in read_dir_sorted(&second) {
                if entry.is_file() {
                    out.insert(entry);
                }
            }
        }
    }
    out
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    read_dir_sorted(dir).into_iter().filter(|p| p.is_dir()).collect()
}

fn read_dir_sorted(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> =
        entries.map(|e| e.unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display())).path()).collect();
    out.sort();
    out
}

/// A digest of a regular file's bytes that reads only its data regions: the
/// length, then every 4 KiB block that is not all zero, with its offset. Two
/// files digest equal exactly when their bytes are equal, whatever their
/// holes, and a 5 GiB file with 1 MiB of data costs 1 MiB of reading.
pub fn content_digest(path: &Path) -> io::Result<blake3::Hash> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut hasher = blake3::Hasher::new();
    hasher.update(&len.to_le_bytes());
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < len {
        let Some((start, end)) = data_region(&file, done, len)? else {
            break;
        };
        let mut off = (start - start % DIGEST_BLOCK).max(done);
        let end = end.div_ceil(DIGEST_BLOCK).saturating_mul(DIGEST_BLOCK).min(len);
        while off < end {
            let n = (end - off).min(buf.len() as u64) as usize;
            file.read_exact_at(&mut buf[..n], off)?;
            for (i, block) in buf[..n].chunks(DIGEST_BLOCK as usize).enumerate() {
                if block.iter().any(|&b| b != 0) {
                    hasher.update(&(off + i as u64 * DIGEST_BLOCK).to_le_bytes());
                    hasher.update(block);
                }
            }
            off += n as u64;
        }
        done = end.max(done + 1);
    }
    Ok(hasher.finalize())
}

/// The next data region at or after `pos` as `(start, end)`, `None` past the
/// last one. Filesystems without SEEK_DATA report the whole rest as data.
fn data_region(file: &File, pos: u64, len: u64) -> io::Result<Option<(u64, u64)>> {
    let start = match lseek(file, pos as i64, Whence::SeekData) {
        Ok(off) => off as u64,
        Err(Errno::ENXIO) => return Ok(None),
        Err(Errno::EINVAL | Errno::EOPNOTSUPP) => return Ok(Some((pos, len))),
        Err(e) => return Err(e.into()),
    };
    let end = match lseek(file, start as i64, Whence::SeekHole) {
        Ok(off) => off as u64,
        Err(Errno::ENXIO) => len,
        Err(e) => return Err(e.into()),
    };
    Ok(Some((start, end.min(len))))
}
