//! The chunk blob envelope, format version 1 (all integers little-endian):
//!
//! ```text
//! offset size field
//!      0    4 magic "CRNB"
//!      4    1 format version (1)
//!      5    1 flags: bit 0 = payload is zstd-compressed; other bits 0
//!      6    2 reserved, 0
//!      8    4 plain length (bytes after decompression)
//!     12    4 stored length (payload bytes following the header)
//!     16   32 blake3 of the plain bytes (the chunk id)
//!     48    … payload
//! ```
//!
//! A blob whose compressed form would not be smaller is stored plain.

use crate::ChunkId;

pub const MAGIC: [u8; 4] = *b"CRNB";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 48;
pub const FLAG_ZSTD: u8 = 1;
/// The largest plain chunk a reader accepts (the FastCDC maximum).
pub const MAX_PLAIN: usize = 16 << 20;

/// Why a blob could not be decoded. Every variant means "this chunk is bad".
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlobError {
    #[error("not a chunk blob (bad magic)")]
    Magic,
    #[error("chunk blob format version {0} is not supported (this build reads version 1)")]
    Version(u8),
    #[error("chunk blob header is damaged: {0}")]
    Header(&'static str),
    #[error("chunk blob is truncated: {have} of {want} bytes")]
    Truncated { have: usize, want: usize },
    #[error("chunk payload does not decompress: {0}")]
    Decompress(String),
    #[error("chunk content does not match its digest (expected {expected}, got {actual})")]
    Digest { expected: ChunkId, actual: ChunkId },
}

/// The decoded fixed header of a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobHeader {
    pub compressed: bool,
    pub plain_len: u32,
    pub stored_len: u32,
    pub id: ChunkId,
}

/// Encode `data` as a blob, compressing with zstd at `level` when it helps.
pub fn encode_blob(data: &[u8], level: i32) -> (ChunkId, Vec<u8>) {
    let id = ChunkId::of(data);
    (id, encode_blob_with_id(data, id, level))
}

/// Encode `data` whose id the caller already computed.
pub fn encode_blob_with_id(data: &[u8], id: ChunkId, level: i32) -> Vec<u8> {
    let mut out = Vec::new();
    encode_blob_into(data, id, level, &mut out);
    out
}

/// Encode `data` into `out`, replacing what it held: a caller that keeps
/// `out` for the next chunk allocates (and faults in) no fresh buffer.
/// The compressed payload is written in place after the header, so only
/// the bytes the blob has are touched, however much room `out` reserves.
pub fn encode_blob_into(data: &[u8], id: ChunkId, level: i32, out: &mut Vec<u8>) {
    assert!(data.len() <= MAX_PLAIN, "chunk larger than {MAX_PLAIN} bytes");
    out.clear();
    out.resize(HEADER_LEN, 0);
    let compressed = level > 0 && compress_into(data, out, level) && out.len() - HEADER_LEN < data.len();
    if !compressed {
        out.truncate(HEADER_LEN);
        out.extend_from_slice(data);
    }
    let stored = (out.len() - HEADER_LEN) as u32;
    out[0..4].copy_from_slice(&MAGIC);
    out[4] = VERSION;
    out[5] = if compressed { FLAG_ZSTD } else { 0 };
    out[8..12].copy_from_slice(&(data.len() as u32).to_le_bytes());
    out[12..16].copy_from_slice(&stored.to_le_bytes());
    out[16..48].copy_from_slice(&id.0);
}

thread_local! {
    /// One compression context per thread and level: creating a context
    /// per chunk costs an allocation and a table reset each time.
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

/// Append the zstd frame of `data` to `out` (written in place after what
/// `out` holds); false if compression failed, `out` then unchanged.
fn compress_into(data: &[u8], out: &mut Vec<u8>, level: i32) -> bool {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            match zstd::bulk::Compressor::new(level) {
                Ok(c) => *slot = Some((level, c)),
                Err(_) => return false,
            }
        }
        let Some((_, c)) = slot.as_mut() else { return false };
        let at = out.len();
        out.reserve(zstd::zstd_safe::compress_bound(data.len()));
        // The cursor writes from its position on, up to the capacity.
        let mut cursor = std::io::Cursor::new(&mut *out);
        cursor.set_position(at as u64);
        if c.compress_to_buffer(data, &mut cursor).is_err() {
            out.truncate(at);
            return false;
        }
        true
    })
}

/// Read and check the fixed header without touching the payload.
pub fn peek_header(bytes: &[u8]) -> Result<BlobHeader, BlobError> {
    if bytes.len() < HEADER_LEN {
        return Err(if bytes.len() >= 4 && bytes[..4] != MAGIC {
            BlobError::Magic
        } else {
            BlobError::Truncated { have: bytes.len(), want: HEADER_LEN }
        });
    }
    if bytes[0..4] != MAGIC {
        return Err(BlobError::Magic);
    }
    if bytes[4] != VERSION {
        return Err(BlobError::Version(bytes[4]));
    }
    let flags = bytes[5];
    if flags & !FLAG_ZSTD != 0 || bytes[6..8] != [0, 0] {
        return Err(BlobError::Header("unknown flags or reserved bits set"));
    }
    let plain_len = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
    let stored_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap_or_default());
    if plain_len as usize > MAX_PLAIN {
        return Err(BlobError::Header("plain length over the 16 MiB limit"));
    }
    let compressed = flags & FLAG_ZSTD != 0;
    if !compressed && stored_len != plain_len {
        return Err(BlobError::Header("plain payload length differs from plain length"));
    }
    let mut id = [0u8; 32];
    id.copy_from_slice(&bytes[16..48]);
    Ok(BlobHeader { compressed, plain_len, stored_len, id: ChunkId(id) })
}

/// The header and the payload of a whole blob (exactly as long as its
/// header says).
fn split(bytes: &[u8]) -> Result<(BlobHeader, &[u8]), BlobError> {
    let h = peek_header(bytes)?;
    let want = HEADER_LEN + h.stored_len as usize;
    if bytes.len() != want {
        return Err(if bytes.len() < want {
            BlobError::Truncated { have: bytes.len(), want }
        } else {
            BlobError::Header("trailing bytes after the payload")
        });
    }
    Ok((h, &bytes[HEADER_LEN..]))
}

/// Decode a blob and check its content against the digest in its header.
pub fn decode_blob(bytes: &[u8]) -> Result<(ChunkId, Vec<u8>), BlobError> {
    let (h, payload) = split(bytes)?;
    let plain = if h.compressed {
        // Written by zstd into the new vector's capacity (exactly the
        // plain length), not zeroed first.
        let mut v = Vec::with_capacity(h.plain_len as usize);
        decompress_exact(payload, &mut v, h.plain_len as usize)?;
        v
    } else {
        payload.to_vec()
    };
    let actual = ChunkId::of(&plain);
    if actual != h.id {
        return Err(BlobError::Digest { expected: h.id, actual });
    }
    Ok((h.id, plain))
}

thread_local! {
    /// One decompression context per thread: a fresh one per chunk costs an
    /// allocation and a table set-up each time.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    /// `verify_blob`'s output buffer (a fresh one would cost a page fault
    /// per 4 KiB of every chunk).
    static VERIFY_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Decompress the zstd frames of `payload` into `out` (a slice, or a
/// vector's capacity), whose room of `want` bytes they must fill exactly
/// (zstd refuses output beyond the room).
fn decompress_exact<C>(payload: &[u8], out: &mut C, want: usize) -> Result<(), BlobError>
where
    C: zstd::zstd_safe::WriteBuf + ?Sized,
{
    let failed = |e: std::io::Error| BlobError::Decompress(e.to_string());
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().map_err(failed)?);
        }
        let Some(d) = slot.as_mut() else { unreachable!("set above") };
        let n = d.decompress_to_buffer(payload, out).map_err(failed)?;
        if n != want {
            return Err(BlobError::Decompress(format!("{n} bytes instead of {want}")));
        }
        Ok(())
    })
}

/// Check a blob as `decode_blob` does, without handing out its content: a
/// plain payload is hashed where it lies, a compressed one is decompressed
/// into this thread's buffer (with the same request `decode_blob` makes)
/// and hashed there. Accepts and refuses exactly what `decode_blob` does;
/// returns the header.
pub fn verify_blob(bytes: &[u8]) -> Result<BlobHeader, BlobError> {
    let (h, payload) = split(bytes)?;
    let actual = if h.compressed {
        VERIFY_BUF.with(|cell| {
            let mut buf = cell.borrow_mut();
            let want = h.plain_len as usize;
            if buf.len() < want {
                buf.resize(want, 0);
            }
            decompress_exact(payload, &mut buf[..want], want)?;
            Ok::<_, BlobError>(ChunkId::of(&buf[..want]))
        })?
    } else {
        ChunkId::of(payload)
    };
    if actual != h.id {
        return Err(BlobError::Digest { expected: h.id, actual });
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    #[test]
    fn round_trip_compressible_and_random() {
        let text = b"cairn ".repeat(50_000);
        let mut rng = StdRng::seed_from_u64(7);
        let random: Vec<u8> = (0..100_000).map(|_| rng.random()).collect();
        for data in [&text[..], &random[..], &[][..]] {
            let (id, blob) = encode_blob(data, 3);
            let (id2, back) = decode_blob(&blob).unwrap();
            assert_eq!((id, &back[..]), (id2, data));
        }
        let (_, blob) = encode_blob(&text, 3);
        assert!(blob.len() < text.len() / 10, "text compresses");
        let (_, blob) = encode_blob(&random, 3);
        assert_eq!(blob[5], 0, "random data is stored plain");
    }

    /// A buffer kept from chunk to chunk gives the same blobs as a fresh
    /// one, whatever it held before: longer or shorter, plain or not.
    #[test]
    fn a_reused_buffer_encodes_like_a_fresh_one() {
        let mut rng = StdRng::seed_from_u64(5);
        let text = b"cairn reuses its buffers ".repeat(40_000);
        let random: Vec<u8> = (0..700_000).map(|_| rng.random()).collect();
        let chunks = [&random[..], &text[..], &text[..3000], &random[..100], &[][..], &text[..], &random[..]];
        let mut out = b"left over from before".to_vec();
        for level in [3, 0] {
            for data in chunks {
                let id = ChunkId::of(data);
                encode_blob_into(data, id, level, &mut out);
                assert_eq!(
                    out,
                    encode_blob_with_id(data, id, level),
                    "{} bytes at level {level}",
                    data.len()
                );
                assert_eq!(decode_blob(&out).unwrap(), (id, data.to_vec()));
            }
        }
    }

    #[test]
    fn damage_is_detected() {
        let (_, blob) = encode_blob(&b"some data ".repeat(1000), 3);
        for pos in [0, 4, 5, 9, 20, HEADER_LEN + 3, blob.len() - 1] {
            let mut bad = blob.clone();
            bad[pos] ^= 0x40;
            assert!(decode_blob(&bad).is_err(), "flip at {pos} undetected");
        }
        assert!(matches!(decode_blob(&blob[..blob.len() - 1]), Err(BlobError::Truncated { .. })));
        assert!(matches!(decode_blob(&blob[..10]), Err(BlobError::Truncated { .. })));
    }

    /// `verify_blob` and `decode_blob` agree on every blob: good ones of
    /// every kind and size (beyond one piece, several frames), and damaged
    /// ones.
    #[test]
    fn verify_agrees_with_decode() {
        let mut rng = StdRng::seed_from_u64(11);
        let text: Vec<u8> = b"cairn keeps snapshots ".iter().cycle().take(5 << 20).copied().collect();
        let random: Vec<u8> = (0..300_000).map(|_| rng.random()).collect();
        let mut blobs = Vec::new();
        for data in [&text[..], &text[..1000], &random[..], &[][..]] {
            let (id, blob) = encode_blob(data, 3);
            assert_eq!(verify_blob(&blob).map(|h| (h.id, h.plain_len as usize)), Ok((id, data.len())));
            blobs.push(blob);
        }
        // Two frames in one payload decode as their concatenation.
        let half = text.len() / 2;
        let compress = |d: &[u8]| zstd::bulk::compress(d, 3).expect("compress");
        let frames = [compress(&text[..half]), compress(&text[half..])].concat();
        let mut two = encode_blob(&text, 3).1;
        two.truncate(HEADER_LEN);
        two[12..16].copy_from_slice(&(frames.len() as u32).to_le_bytes());
        two.extend_from_slice(&frames);
        assert!(decode_blob(&two).is_ok() && verify_blob(&two).is_ok());
        blobs.push(two);
        // A plain length one byte short of or past what the frames hold:
        // refused by both, though zstd writes into a vector's capacity
        // for one and into a slice for the other.
        let (_, good) = encode_blob(&text[..100_000], 3);
        for len in [99_999u32, 100_001] {
            let mut bad = good.clone();
            bad[8..12].copy_from_slice(&len.to_le_bytes());
            assert!(matches!(decode_blob(&bad), Err(BlobError::Decompress(_))), "plain length {len}");
            assert!(matches!(verify_blob(&bad), Err(BlobError::Decompress(_))), "plain length {len}");
        }
        for blob in &blobs {
            for _ in 0..200 {
                let mut bad = blob.clone();
                match rng.random_range(0..3) {
                    0 if !bad.is_empty() => {
                        let at = rng.random_range(0..bad.len());
                        bad[at] ^= 1 << rng.random_range(0..8);
                    }
                    1 => bad.truncate(rng.random_range(0..bad.len())),
                    _ => bad.extend_from_slice(&[0x28, 0xb5, 0x2f, 0xfd]),
                }
                let (decoded, verified) = (decode_blob(&bad), verify_blob(&bad));
                assert_eq!(decoded.is_ok(), verified.is_ok(), "{decoded:?} / {verified:?}");
            }
        }
    }
}
