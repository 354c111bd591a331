//! Update bundles (format 1, `docs/formats.md`):
//!
//! ```text
//! offset  size  field
//! 0       8     magic "CAIRNUPD"
//! 8       4     format version, u32 little-endian (1)
//! 12      4     manifest length M, u32 little-endian (at most 1 MiB)
//! 16      M     manifest: JSON (UTF-8), below
//! 16+M    64    Ed25519 signature over SIGNING_CONTEXT followed by the manifest
//! 80+M    ...   the sections' stored bytes, one after another, in manifest order
//! ```
//!
//! The manifest names the image (`image_id` "cairn", `version`) and lists
//! each section: its name (`rootfs`, `uki-a`, `uki-b`), its encoding
//! (`zstd` or `none`), its stored length in the bundle, its decoded length
//! and the blake3 of the decoded bytes. The signature covers the manifest,
//! and the manifest covers every byte that gets written, so a bundle is
//! checked before anything is written and each section while it is.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::keys::{PublicKey, SecretKey};

pub const MAGIC: &[u8; 8] = b"CAIRNUPD";
pub const FORMAT: u32 = 1;
pub const MAX_MANIFEST: u32 = 1 << 20;
/// What the signature covers: this, then the manifest's bytes.
pub const SIGNING_CONTEXT: &[u8] = b"cairn-update-bundle-v1\0";
const HEADER: u64 = 16;
const SIGNATURE: u64 = 64;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("reading the bundle: {0}")]
    Io(#[from] io::Error),
    #[error("not a Cairn update bundle (no CAIRNUPD magic)")]
    NotABundle,
    #[error("update bundle format {0} is newer than this Cairn understands (format {FORMAT})")]
    Format(u32),
    #[error("the bundle is damaged: {0}")]
    Damaged(String),
    #[error("the bundle's signature is not from the key this appliance trusts: refused")]
    BadSignature,
    #[error("section {name} does not match its manifest: {why}")]
    Section { name: String, why: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    pub name: String,
    /// "zstd" or "none".
    pub encoding: String,
    pub stored_length: u64,
    pub length: u64,
    pub blake3: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub image_id: String,
    pub version: String,
    /// RFC 3339, UTC.
    pub created: String,
    pub sections: Vec<Section>,
}

impl Manifest {
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }
}

/// What goes into a bundle.
#[derive(Debug)]
pub struct Input<'a> {
    pub name: &'a str,
    pub path: &'a Path,
    pub compress: bool,
}

/// Write a signed bundle to `out`; returns its manifest.
pub fn create(
    key: &SecretKey,
    version: &str,
    created: &str,
    inputs: &[Input<'_>],
    out: &Path,
) -> Result<Manifest, BundleError> {
    // Encode each section into a temporary file beside `out`, hashing the
    // plain bytes on the way; then the manifest knows every length.
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut parts = Vec::new();
    let mut sections = Vec::new();
    for input in inputs {
        let mut plain = BufReader::new(File::open(input.path)?);
        // An unnamed file: nothing is left behind if the build is cut short.
        let mut stored = tempfile::tempfile_in(dir)?;
        let mut hasher = blake3::Hasher::new();
        let length = if input.compress {
            let mut enc = zstd::Encoder::new(&mut stored, 6)?;
            let n = copy_hashing(&mut plain, &mut enc, &mut hasher)?;
            enc.finish()?;
            n
        } else {
            copy_hashing(&mut plain, &mut stored, &mut hasher)?
        };
        let stored_length = stored.seek(SeekFrom::End(0))?;
        stored.seek(SeekFrom::Start(0))?;
        sections.push(Section {
            name: input.name.to_owned(),
            encoding: if input.compress { "zstd" } else { "none" }.to_owned(),
            stored_length,
            length,
            blake3: hasher.finalize().to_hex().to_string(),
        });
        parts.push(stored);
    }
    let manifest = Manifest {
        image_id: "cairn".into(),
        version: version.to_owned(),
        created: created.to_owned(),
        sections,
    };
    let text = serde_json::to_vec_pretty(&manifest).map_err(io::Error::other)?;
    let mut signed = SIGNING_CONTEXT.to_vec();
    signed.extend_from_slice(&text);
    let signature = key.sign(&signed);

    let tmp = out.with_extension("bundle.part");
    let mut f = io::BufWriter::new(File::create(&tmp)?);
    f.write_all(MAGIC)?;
    f.write_all(&FORMAT.to_le_bytes())?;
    f.write_all(&(text.len() as u32).to_le_bytes())?;
    f.write_all(&text)?;
    f.write_all(&signature)?;
    for mut part in parts {
        io::copy(&mut part, &mut f)?;
    }
    let f = f.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    std::fs::rename(&tmp, out)?;
    Ok(manifest)
}

fn copy_hashing(r: &mut impl Read, w: &mut impl Write, h: &mut blake3::Hasher) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let got = r.read(&mut buf)?;
        if got == 0 {
            return Ok(n);
        }
        h.update(&buf[..got]);
        w.write_all(&buf[..got])?;
        n += got as u64;
    }
}

/// An opened bundle whose signature has been checked.
#[derive(Debug)]
pub struct Bundle<R> {
    pub manifest: Manifest,
    reader: R,
    /// Where the first section starts.
    data: u64,
}

/// Parse the header and the manifest of a bundle (no signature check):
/// the manifest, its bytes and the signature. The reader is left at the
/// first section.
pub fn read_header(r: &mut impl Read) -> Result<(Manifest, Vec<u8>, [u8; 64]), BundleError> {
    let mut head = [0u8; HEADER as usize];
    match r.read_exact(&mut head) {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(BundleError::NotABundle),
        other => other?,
    }
    if &head[..8] != MAGIC {
        return Err(BundleError::NotABundle);
    }
    let format = u32::from_le_bytes(head[8..12].try_into().unwrap());
    if format != FORMAT {
        return Err(BundleError::Format(format));
    }
    let len = u32::from_le_bytes(head[12..16].try_into().unwrap());
    if len > MAX_MANIFEST {
        return Err(BundleError::Damaged(format!("a manifest of {len} bytes (at most {MAX_MANIFEST})")));
    }
    let mut text = vec![0u8; len as usize];
    let mut signature = [0u8; 64];
    let cut = |e: io::Error| match e.kind() {
        io::ErrorKind::UnexpectedEof => BundleError::Damaged("it ends inside its header".into()),
        _ => BundleError::Io(e),
    };
    r.read_exact(&mut text).map_err(cut)?;
    r.read_exact(&mut signature).map_err(cut)?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| BundleError::Damaged(format!("its manifest does not parse: {e}")))?;
    check_manifest(&manifest)?;
    Ok((manifest, text, signature))
}

fn check_manifest(m: &Manifest) -> Result<(), BundleError> {
    let bad = |why: String| Err(BundleError::Damaged(why));
    if m.image_id != "cairn" {
        return bad(format!("it is an image of {:?}, not of cairn", m.image_id));
    }
    if m.version.is_empty() || !m.version.chars().all(|c| c.is_ascii_alphanumeric() || "._~".contains(c)) {
        return bad(format!("its version {:?} is not letters, digits and . _ ~", m.version));
    }
    for (i, s) in m.sections.iter().enumerate() {
        if m.sections[..i].iter().any(|o| o.name == s.name) {
            return bad(format!("section {} appears twice", s.name));
        }
        if s.encoding != "zstd" && s.encoding != "none" {
            return bad(format!("section {} has an unknown encoding {:?}", s.name, s.encoding));
        }
        if s.encoding == "none" && s.stored_length != s.length {
            return bad(format!("section {} is stored plain but its lengths differ", s.name));
        }
        if s.blake3.len() != 64 || hex::decode(&s.blake3).is_err() {
            return bad(format!("section {} has no valid blake3", s.name));
        }
    }
    Ok(())
}

impl Bundle<BufReader<File>> {
    /// Open a bundle file and check its signature against `trusted`.
    pub fn open(path: &Path, trusted: &PublicKey) -> Result<Self, BundleError> {
        Bundle::new(BufReader::with_capacity(1 << 20, File::open(path)?), trusted)
    }
}

impl<R: Read + Seek> Bundle<R> {
    pub fn new(mut reader: R, trusted: &PublicKey) -> Result<Self, BundleError> {
        let (manifest, text, signature) = read_header(&mut reader)?;
        let mut signed = SIGNING_CONTEXT.to_vec();
        signed.extend_from_slice(&text);
        if !trusted.verify(&signed, &signature) {
            return Err(BundleError::BadSignature);
        }
        let data = HEADER + text.len() as u64 + SIGNATURE;
        let total = reader.seek(SeekFrom::End(0))?;
        let want: u64 = manifest.sections.iter().map(|s| s.stored_length).sum();
        if total != data + want {
            return Err(BundleError::Damaged(format!(
                "it is {total} bytes, its manifest says {} (cut short or grown)",
                data + want
            )));
        }
        Ok(Bundle { manifest, reader, data })
    }

    /// Decode section `name` into `out`, checking its length and blake3
    /// on the way; an error means `out` got bytes that must not be used.
    pub fn extract(&mut self, name: &str, out: &mut impl Write) -> Result<u64, BundleError> {
        let Some(idx) = self.manifest.sections.iter().position(|s| s.name == name) else {
            return Err(BundleError::Section { name: name.into(), why: "missing from the bundle".into() });
        };
        let start = self.data + self.manifest.sections[..idx].iter().map(|s| s.stored_length).sum::<u64>();
        let s = self.manifest.sections[idx].clone();
        self.reader.seek(SeekFrom::Start(start))?;
        let stored = (&mut self.reader).take(s.stored_length);
        let mut hasher = blake3::Hasher::new();
        // At most one byte more than the manifest says, to see it was more.
        let mut limited = Limit { w: out, left: s.length, over: false };
        let copied = if s.encoding == "zstd" {
            let mut dec = zstd::Decoder::new(stored)?;
            copy_hashing(&mut dec, &mut limited, &mut hasher)
        } else {
            let mut plain = stored;
            copy_hashing(&mut plain, &mut limited, &mut hasher)
        };
        let section_err = |why: String| BundleError::Section { name: s.name.clone(), why };
        let n = match copied {
            Ok(n) => n,
            Err(_) if limited.over => return Err(section_err(format!("longer than its {} bytes", s.length))),
            Err(e) if e.kind() == io::ErrorKind::InvalidData || e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(section_err(format!("does not decode: {e}")));
            }
            Err(e) => return Err(e.into()),
        };
        if n != s.length {
            return Err(section_err(format!("{n} bytes, the manifest says {}", s.length)));
        }
        if hasher.finalize().to_hex().as_str() != s.blake3 {
            return Err(section_err("its blake3 differs from the signed manifest".into()));
        }
        Ok(n)
    }

    /// Check every section without writing anything.
    pub fn verify_all(&mut self) -> Result<(), BundleError> {
        for name in self.manifest.sections.iter().map(|s| s.name.clone()).collect::<Vec<_>>() {
            self.extract(&name, &mut io::sink())?;
        }
        Ok(())
    }
}

struct Limit<'a, W> {
    w: &'a mut W,
    left: u64,
    over: bool,
}

impl<W: Write> Write for Limit<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() as u64 > self.left {
            self.over = true;
            return Err(io::Error::other("section longer than its manifest says"));
        }
        let n = self.w.write(buf)?;
        self.left -= n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(dir: &Path) -> (SecretKey, std::path::PathBuf, Vec<u8>, Vec<u8>) {
        let (_, key) = SecretKey::generate().unwrap();
        let rootfs: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let uki: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
        std::fs::write(dir.join("rootfs"), &rootfs).unwrap();
        std::fs::write(dir.join("uki"), &uki).unwrap();
        let out = dir.join("u.bundle");
        create(
            &key,
            "1.2",
            "2026-12-05T00:00:00Z",
            &[
                Input { name: "rootfs", path: &dir.join("rootfs"), compress: true },
                Input { name: "uki-a", path: &dir.join("uki"), compress: false },
            ],
            &out,
        )
        .unwrap();
        (key, out, rootfs, uki)
    }

    #[test]
    fn a_bundle_round_trips_and_only_its_signer_is_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let (key, out, rootfs, uki) = fixture(dir.path());
        let mut b = Bundle::open(&out, &key.public()).unwrap();
        assert_eq!(b.manifest.version, "1.2");
        let rs = b.manifest.section("rootfs").unwrap();
        assert!(rs.stored_length < rs.length / 10, "{rs:?}");
        let mut got = Vec::new();
        b.extract("rootfs", &mut got).unwrap();
        assert!(got == rootfs);
        let mut got = Vec::new();
        b.extract("uki-a", &mut got).unwrap();
        assert!(got == uki);
        assert!(matches!(b.extract("uki-b", &mut io::sink()), Err(BundleError::Section { .. })));
        b.verify_all().unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3, "no temporary files left");

        let (_, stranger) = SecretKey::generate().unwrap();
        assert!(matches!(Bundle::open(&out, &stranger.public()), Err(BundleError::BadSignature)));
    }

    #[test]
    fn changed_truncated_or_foreign_bundles_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let (key, out, _, _) = fixture(dir.path());
        let good = std::fs::read(&out).unwrap();
        let open = |bytes: &[u8]| Bundle::new(io::Cursor::new(bytes.to_vec()), &key.public());

        // A byte of the manifest changed: the signature no longer holds.
        let mut m = good.clone();
        m[30] ^= 1;
        assert!(matches!(open(&m), Err(BundleError::BadSignature | BundleError::Damaged(_))));
        // A byte of the payload changed: found while extracting.
        let mut p = good.clone();
        let last = p.len() - 10;
        p[last] ^= 0x40;
        let mut b = open(&p).unwrap();
        let e = b.verify_all().unwrap_err();
        assert!(e.to_string().contains("uki-a") && e.to_string().contains("blake3"), "{e}");
        // Cut short, or grown.
        assert!(matches!(open(&good[..good.len() - 1]), Err(BundleError::Damaged(_))));
        let mut grown = good.clone();
        grown.push(0);
        assert!(matches!(open(&grown), Err(BundleError::Damaged(_))));
        // Not a bundle at all, or a newer format.
        assert!(matches!(open(b"hello"), Err(BundleError::NotABundle)));
        assert!(matches!(open(&[0u8; 100]), Err(BundleError::NotABundle)));
        let mut newer = good.clone();
        newer[8] = 2;
        assert!(matches!(open(&newer), Err(BundleError::Format(2))));
        // Every prefix of the header fails cleanly.
        for n in 0..200 {
            assert!(open(&good[..n]).is_err());
        }
    }

    #[test]
    fn a_signed_manifest_that_lies_about_a_section_is_caught_while_writing() {
        // The signer is trusted but the payload's zstd stream decodes to
        // more than the manifest says: extraction stops at the limit.
        let dir = tempfile::tempdir().unwrap();
        let (key, out, _, _) = fixture(dir.path());
        let bytes = std::fs::read(&out).unwrap();
        let (mut manifest, text, _) = read_header(&mut io::Cursor::new(&bytes)).unwrap();
        manifest.sections[0].length -= 1;
        let new_text = serde_json::to_vec(&manifest).unwrap();
        let mut signed = SIGNING_CONTEXT.to_vec();
        signed.extend_from_slice(&new_text);
        let mut forged = Vec::new();
        forged.extend_from_slice(&bytes[..12]);
        forged.extend_from_slice(&(new_text.len() as u32).to_le_bytes());
        forged.extend_from_slice(&new_text);
        forged.extend_from_slice(&key.sign(&signed));
        forged.extend_from_slice(&bytes[16 + text.len() + 64..]);
        let mut b = Bundle::new(io::Cursor::new(forged), &key.public()).unwrap();
        let mut sink = Vec::new();
        let e = b.extract("rootfs", &mut sink).unwrap_err();
        assert!(e.to_string().contains("longer than"), "{e}");
    }
}
