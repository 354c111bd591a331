//! Signing keys for update bundles: Ed25519 (ring). The secret key is a
//! PKCS#8 document in PEM ("PRIVATE KEY", as `openssl genpkey -algorithm
//! ed25519` writes it too); the public key file is one line,
//! `cairn-update-ed25519 HEX` (32 bytes).

use std::path::Path;

use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}: not an Ed25519 private key in PEM (PKCS#8)")]
    BadSecret(String),
    #[error("{0}: not a Cairn update public key (a line `cairn-update-ed25519` and 64 hex digits)")]
    BadPublic(String),
    #[error("cannot make a key: the system's random source failed")]
    Random,
}

const PUBLIC_TAG: &str = "cairn-update-ed25519";

/// A signing key pair.
pub struct SecretKey(Ed25519KeyPair);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.public())
    }
}

/// The public half: verifies signatures.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey([u8; 32]);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.0))
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PUBLIC_TAG} {}", hex::encode(self.0))
    }
}

impl SecretKey {
    /// A new random key, as PEM text and the key.
    pub fn generate() -> Result<(String, SecretKey), KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError::Random)?;
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", doc.as_ref().to_vec()));
        let key = Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(|_| KeyError::Random)?;
        Ok((pem, SecretKey(key)))
    }

    /// A key from its 32-byte seed (fuzzing and tests; real keys come
    /// from `generate`).
    pub fn from_seed(seed: &[u8; 32]) -> SecretKey {
        SecretKey(Ed25519KeyPair::from_seed_unchecked(seed).expect("any 32 bytes are a seed"))
    }

    pub fn from_pem(text: &str, name: &str) -> Result<SecretKey, KeyError> {
        let bad = || KeyError::BadSecret(name.to_owned());
        let p = pem::parse(text).map_err(|_| bad())?;
        if p.tag() != "PRIVATE KEY" {
            return Err(bad());
        }
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(p.contents()).map(SecretKey).map_err(|_| bad())
    }

    pub fn read(path: &Path) -> Result<SecretKey, KeyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| KeyError::Io { path: path.display().to_string(), source })?;
        SecretKey::from_pem(&text, &path.display().to_string())
    }

    pub fn public(&self) -> PublicKey {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.0.public_key().as_ref());
        PublicKey(k)
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut s = [0u8; 64];
        s.copy_from_slice(self.0.sign(message).as_ref());
        s
    }
}

impl PublicKey {
    pub fn parse(text: &str, name: &str) -> Result<PublicKey, KeyError> {
        let bad = || KeyError::BadPublic(name.to_owned());
        let mut words = text.split_whitespace();
        if words.next() != Some(PUBLIC_TAG) {
            return Err(bad());
        }
        let bytes = hex::decode(words.next().ok_or_else(bad)?).map_err(|_| bad())?;
        if words.next().is_some() {
            return Err(bad());
        }
        Ok(PublicKey(bytes.try_into().map_err(|_| bad())?))
    }

    pub fn read(path: &Path) -> Result<PublicKey, KeyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| KeyError::Io { path: path.display().to_string(), source })?;
        PublicKey::parse(&text, &path.display().to_string())
    }

    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        UnparsedPublicKey::new(&ED25519, self.0).verify(message, signature).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_signs_and_its_public_half_verifies_through_their_files() {
        let (pem, key) = SecretKey::generate().unwrap();
        let again = SecretKey::from_pem(&pem, "k").unwrap();
        assert_eq!(key.public(), again.public());
        let public = PublicKey::parse(&format!("{}\n", key.public()), "p").unwrap();
        let sig = again.sign(b"message");
        assert!(public.verify(b"message", &sig));
        assert!(!public.verify(b"messagf", &sig));
        let (_, other) = SecretKey::generate().unwrap();
        assert!(!other.public().verify(b"message", &sig));
    }

    #[test]
    fn malformed_key_files_are_refused_by_name() {
        assert!(matches!(SecretKey::from_pem("nope", "k"), Err(KeyError::BadSecret(n)) if n == "k"));
        let cert = pem::encode(&pem::Pem::new("CERTIFICATE", vec![1, 2, 3]));
        assert!(SecretKey::from_pem(&cert, "k").is_err());
        for text in [
            "",
            "cairn-update-ed25519",
            "cairn-update-ed25519 abcd",
            "ssh-ed25519 00",
            &format!("cairn-update-ed25519 {} x", "00".repeat(32)),
        ] {
            assert!(PublicKey::parse(text, "p").is_err(), "{text:?}");
        }
    }
}
