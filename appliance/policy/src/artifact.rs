//! Compiled artifacts: a component compiled by wasmtime and serialized
//! (`Engine::precompile_component` / `Component::serialize`), sealed in an
//! envelope that says which build may load it, which component it was
//! compiled from, and a MAC over all of it made with a secret
//! [`CacheKey`]. The compiler child process answers with one (sealed with
//! a key made for that one compile), and the compiled-artifact cache
//! stores them (sealed with the host's cache key, which is kept outside
//! the datastore).
//!
//! Layout (integers little-endian):
//!
//! | offset | bytes | field |
//! |---:|---:|---|
//! | 0 | 8 | magic `CAIRNPA` then format version 2 |
//! | 8 | 32 | engine fingerprint ([`fingerprint`]) |
//! | 40 | 32 | blake3 of the component compiled |
//! | 72 | 8 | payload length |
//! | 80 | 32 | MAC: keyed blake3 (the cache key) of bytes 0..80, then the payload |
//! | 112 | … | payload: wasmtime's serialized component |
//!
//! Version 1 had the unkeyed blake3 of the payload at 80: anyone who could
//! write the cache could make one, so version 1 is never loaded.
//!
//! Deserializing a payload loads machine code into the process, so it is
//! only ever done after [`open`] has checked the envelope and its MAC (see
//! the SAFETY comment in [`deserialize`]).

use std::hash::{Hash, Hasher};

use wasmtime::Engine;
use wasmtime::component::Component;

/// Magic and format version.
const MAGIC: &[u8; 8] = b"CAIRNPA\x02";
/// The first format, whose checksum was not keyed: refused.
const MAGIC_V1: &[u8; 8] = b"CAIRNPA\x01";
/// Bytes before the payload.
const HEADER: usize = 112;
/// Largest artifact accepted, envelope included (a component is at most
/// [`crate::MAX_COMPONENT_BYTES`]; its machine code is a few times that).
pub const MAX_ARTIFACT_BYTES: usize = 256 << 20;

/// The secret an artifact's MAC is made with: whoever can write the cache
/// but does not hold the key cannot make an artifact this host loads.
#[derive(Clone, PartialEq, Eq)]
pub struct CacheKey([u8; 32]);

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheKey(…)")
    }
}

impl CacheKey {
    /// The length of a key, bytes.
    pub const LEN: usize = 32;

    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<CacheKey, std::io::Error> {
        use rand::TryRngCore;
        let mut key = [0u8; 32];
        rand::rngs::OsRng.try_fill_bytes(&mut key).map_err(std::io::Error::other)?;
        Ok(CacheKey(key))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> CacheKey {
        CacheKey(bytes)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The MAC of an envelope: keyed blake3 of its first 80 bytes and its
    /// payload.
    fn mac(&self, header: &[u8], payload: &[u8]) -> blake3::Hash {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(&header[..80]);
        h.update(payload);
        h.finalize()
    }
}

/// Which builds can load each other's artifacts: blake3 over this
/// envelope's format, the policy crate's version and wasmtime's
/// `precompile_compatibility_hash` (target, compiler flags, tunables,
/// enabled features and wasmtime's own version). An upgraded build has
/// another fingerprint, so it never loads an artifact of the old one.
pub fn fingerprint(engine: &Engine) -> [u8; 32] {
    /// `std::hash::Hasher` over blake3, so the fingerprint does not depend
    /// on the standard library's hasher.
    struct Blake3(blake3::Hasher);
    impl Hasher for Blake3 {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            let hash = self.0.finalize();
            let mut first = [0u8; 8];
            first.copy_from_slice(&hash.as_bytes()[..8]);
            u64::from_le_bytes(first)
        }
    }
    let mut h = Blake3(blake3::Hasher::new());
    h.0.update(MAGIC);
    h.0.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.0.update(&[0]);
    engine.precompile_compatibility_hash().hash(&mut h);
    *h.0.finalize().as_bytes()
}

/// Wrap a serialized component, sealed with `key`.
pub fn seal(key: &CacheKey, fingerprint: &[u8; 32], component: &blake3::Hash, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(fingerprint);
    out.extend_from_slice(component.as_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    let mac = key.mac(&out, payload);
    out.extend_from_slice(mac.as_bytes());
    out.extend_from_slice(payload);
    out
}

/// The payload of an envelope sealed with `key` by this build for
/// `component`, or why it cannot be used.
pub fn open<'a>(
    bytes: &'a [u8],
    key: &CacheKey,
    fingerprint: &[u8; 32],
    component: &blake3::Hash,
) -> Result<&'a [u8], String> {
    if bytes.len() > MAX_ARTIFACT_BYTES {
        return Err(format!(
            "it is {} bytes, over the {} MiB limit on a compiled artifact",
            bytes.len(),
            MAX_ARTIFACT_BYTES >> 20
        ));
    }
    if bytes.len() >= HEADER && bytes[..8] == *MAGIC_V1 {
        return Err("it is of format version 1, whose checksum is not keyed (planted, or left by an \
                    older build)"
            .into());
    }
    if bytes.len() < HEADER || bytes[..8] != *MAGIC {
        return Err("it is not a Cairn compiled-policy artifact (or not this format version)".into());
    }
    if bytes[8..40] != *fingerprint {
        return Err("it was compiled by another build of Cairn".into());
    }
    if bytes[40..72] != *component.as_bytes() {
        return Err("it was compiled from another component".into());
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[72..80]);
    let payload = &bytes[HEADER..];
    if u64::from_le_bytes(len) != payload.len() as u64 {
        return Err(format!(
            "it is truncated or extended: {} payload bytes recorded, {} present",
            u64::from_le_bytes(len),
            payload.len()
        ));
    }
    let mut recorded = [0u8; 32];
    recorded.copy_from_slice(&bytes[80..HEADER]);
    // `blake3::Hash` compares in constant time.
    if key.mac(bytes, payload) != blake3::Hash::from_bytes(recorded) {
        return Err("its MAC does not verify with this host's cache key (corrupt, planted, or sealed \
                    with another key)"
            .into());
    }
    Ok(payload)
}

/// Check an envelope with [`open`], then load the component it holds.
#[allow(unsafe_code)]
pub fn deserialize(
    engine: &Engine,
    key: &CacheKey,
    fingerprint: &[u8; 32],
    component: &blake3::Hash,
    bytes: &[u8],
) -> Result<Component, String> {
    let payload = open(bytes, key, fingerprint, component)?;
    // SAFETY: `Component::deserialize` trusts its input to be wasmtime's own
    // output: it would load whatever machine code the bytes hold. Cairn
    // deserializes only envelopes that Cairn itself sealed, and `open` has
    // just checked that this one is exactly such an envelope: the magic,
    // this engine's fingerprint (same wasmtime, same configuration), the
    // digest of the component it was compiled from, the payload's length,
    // and the MAC `seal` made over all of these and the payload with
    // `key`. The only payloads `seal` is given are what
    // `Engine::precompile_component` or `Component::serialize` produced: in
    // the compiler child process (this same binary, started by the host,
    // given a key made for that compile, read through a pipe), or in this
    // process. The cache stores them in the datastore's `policies/`, which
    // others may be able to write; but its key is kept outside the
    // datastore (the caller's choice, see `Host::with_cache_key`), so
    // whoever can write the datastore but not read the key cannot make a
    // file that passes. A damaged, truncated, foreign, planted or stale
    // file therefore never reaches this call; it is compiled again
    // instead. wasmtime checks its own header and compatibility again and
    // returns an error, not undefined behaviour, on a mismatch.
    unsafe { Component::deserialize(engine, payload) }.map_err(|e| format!("wasmtime cannot load it: {e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_opens_only_for_its_build_and_component_and_intact() {
        let key = CacheKey::from_bytes([1u8; 32]);
        let (fp, other_fp) = ([7u8; 32], [8u8; 32]);
        let (c, other_c) = (blake3::hash(b"component"), blake3::hash(b"another"));
        let sealed = seal(&key, &fp, &c, b"payload bytes");
        assert_eq!(open(&sealed, &key, &fp, &c), Ok(&b"payload bytes"[..]));
        assert!(open(&sealed, &key, &other_fp, &c).unwrap_err().contains("another build"));
        assert!(open(&sealed, &key, &fp, &other_c).unwrap_err().contains("another component"));
        assert!(open(&sealed[..sealed.len() - 1], &key, &fp, &c).unwrap_err().contains("truncated"));
        assert!(open(&sealed[..50], &key, &fp, &c).unwrap_err().contains("not a Cairn"));
        assert!(open(b"", &key, &fp, &c).unwrap_err().contains("not a Cairn"));
        let mut flipped = sealed.clone();
        *flipped.last_mut().expect("payload") ^= 1;
        assert!(open(&flipped, &key, &fp, &c).unwrap_err().contains("corrupt"));
        let mut extended = sealed;
        extended.push(0);
        assert!(open(&extended, &key, &fp, &c).unwrap_err().contains("extended"));
    }

    /// What someone who can write the cache but not read the key can make
    /// is refused: the unkeyed checksum of format version 1 (under either
    /// magic), or a MAC made with another key.
    #[test]
    fn only_an_envelope_sealed_with_the_key_opens() {
        let (key, other_key) = (CacheKey::from_bytes([1u8; 32]), CacheKey::from_bytes([2u8; 32]));
        let (fp, c, payload) = ([7u8; 32], blake3::hash(b"component"), &b"machine code"[..]);
        let sealed = seal(&key, &fp, &c, payload);
        let planted = |magic: &[u8; 8]| {
            let mut v = sealed[..80].to_vec();
            v[..8].copy_from_slice(magic);
            v.extend_from_slice(blake3::hash(payload).as_bytes());
            v.extend_from_slice(payload);
            v
        };
        assert!(open(&planted(MAGIC), &key, &fp, &c).unwrap_err().contains("sealed with another key"));
        assert!(open(&planted(MAGIC_V1), &key, &fp, &c).unwrap_err().contains("format version 1"));
        let foreign = seal(&other_key, &fp, &c, payload);
        assert!(open(&foreign, &key, &fp, &c).unwrap_err().contains("sealed with another key"));
        assert_eq!(open(&foreign, &other_key, &fp, &c), Ok(payload));
        assert_ne!(CacheKey::generate().expect("key"), CacheKey::generate().expect("key"));
    }

    #[test]
    fn the_fingerprint_is_the_same_for_engines_of_one_configuration() {
        let a = Engine::new(&crate::sandbox::config()).expect("engine");
        let b = Engine::new(&crate::sandbox::config()).expect("engine");
        assert_eq!(fingerprint(&a), fingerprint(&b));
        let mut other = crate::sandbox::config();
        other.cranelift_nan_canonicalization(false);
        assert_ne!(fingerprint(&a), fingerprint(&Engine::new(&other).expect("engine")));
    }
}
