//! Compiled artifacts: a component compiled by wasmtime and serialized
//! (`Engine::precompile_component` / `Component::serialize`), sealed in an
//! envelope that says which build may load it, which component it was
//! compiled from, and the blake3 of its bytes. The compiler child process
//! answers with one, and the compiled-artifact cache stores them.
//!
//! Layout (integers little-endian):
//!
//! | offset | bytes | field |
//! |---:|---:|---|
//! | 0 | 8 | magic `CAIRNPA` then format version 1 |
//! | 8 | 32 | engine fingerprint ([`fingerprint`]) |
//! | 40 | 32 | blake3 of the component compiled |
//! | 72 | 8 | payload length |
//! | 80 | 32 | blake3 of the payload |
//! | 112 | … | payload: wasmtime's serialized component |
//!
//! Deserializing a payload loads machine code into the process, so it is
//! only ever done after [`open`] has checked the envelope (see the SAFETY
//! comment in [`deserialize`]).

use std::hash::{Hash, Hasher};

use wasmtime::Engine;
use wasmtime::component::Component;

/// Magic and format version.
const MAGIC: &[u8; 8] = b"CAIRNPA\x01";
/// Bytes before the payload.
const HEADER: usize = 112;
/// Largest artifact accepted, envelope included (a component is at most
/// [`crate::MAX_COMPONENT_BYTES`]; its machine code is a few times that).
pub const MAX_ARTIFACT_BYTES: usize = 256 << 20;

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

/// Wrap a serialized component.
pub fn seal(fingerprint: &[u8; 32], component: &blake3::Hash, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(fingerprint);
    out.extend_from_slice(component.as_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(blake3::hash(payload).as_bytes());
    out.extend_from_slice(payload);
    out
}

/// The payload of an envelope sealed by this build for `component`, or
/// why it cannot be used.
pub fn open<'a>(
    bytes: &'a [u8],
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
    if blake3::hash(payload).as_bytes()[..] != bytes[80..112] {
        return Err("its bytes do not match the blake3 recorded when it was written (corrupt)".into());
    }
    Ok(payload)
}

/// Check an envelope with [`open`], then load the component it holds.
#[allow(unsafe_code)]
pub fn deserialize(
    engine: &Engine,
    fingerprint: &[u8; 32],
    component: &blake3::Hash,
    bytes: &[u8],
) -> Result<Component, String> {
    let payload = open(bytes, fingerprint, component)?;
    // SAFETY: `Component::deserialize` trusts its input to be wasmtime's own
    // output: it would load whatever machine code the bytes hold. Cairn
    // deserializes only envelopes that Cairn itself sealed, and `open` has
    // just checked that this one is exactly such an envelope: the magic,
    // this engine's fingerprint (same wasmtime, same configuration), the
    // digest of the component it was compiled from, the payload's length,
    // and the payload's blake3 recorded by `seal` when it was written. The
    // only payloads `seal` is given are what `Engine::precompile_component`
    // or `Component::serialize` produced: in the compiler child process
    // (this same binary, started by the host and read through a pipe), or
    // in this process; the cache stores them under the datastore's
    // `policies/`, which only Cairn writes. A damaged, truncated, foreign or
    // stale file therefore never reaches this call; it is compiled again
    // instead. (The checksum detects damage, not forgery: whoever can write
    // the datastore's files with a matching checksum is trusted as much as
    // the datastore is.) wasmtime checks its own header and compatibility
    // again and returns an error, not undefined behaviour, on a mismatch.
    unsafe { Component::deserialize(engine, payload) }.map_err(|e| format!("wasmtime cannot load it: {e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_opens_only_for_its_build_and_component_and_intact() {
        let (fp, other_fp) = ([7u8; 32], [8u8; 32]);
        let (c, other_c) = (blake3::hash(b"component"), blake3::hash(b"another"));
        let sealed = seal(&fp, &c, b"payload bytes");
        assert_eq!(open(&sealed, &fp, &c), Ok(&b"payload bytes"[..]));
        assert!(open(&sealed, &other_fp, &c).unwrap_err().contains("another build"));
        assert!(open(&sealed, &fp, &other_c).unwrap_err().contains("another component"));
        assert!(open(&sealed[..sealed.len() - 1], &fp, &c).unwrap_err().contains("truncated"));
        assert!(open(&sealed[..50], &fp, &c).unwrap_err().contains("not a Cairn"));
        assert!(open(b"", &fp, &c).unwrap_err().contains("not a Cairn"));
        let mut flipped = sealed.clone();
        *flipped.last_mut().expect("payload") ^= 1;
        assert!(open(&flipped, &fp, &c).unwrap_err().contains("corrupt"));
        let mut extended = sealed;
        extended.push(0);
        assert!(open(&extended, &fp, &c).unwrap_err().contains("extended"));
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
