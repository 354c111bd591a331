//! The server certificate: loaded from PEM files, or made self-signed on
//! first start when none is configured; and its SHA-256 fingerprint, which clients pin.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// A certificate and key pair in PEM.
#[derive(Debug, Clone)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
    /// DER of the (first) certificate.
    pub cert_der: Vec<u8>,
}

/// Load the identity at `cert`/`key`; if neither file exists, make a
/// self-signed one when `make` allows it, else refuse (a mistyped path must
/// not quietly become a certificate no client expects). Returns it and
/// whether it was just made.
pub fn load_or_create(cert: &Path, key: &Path, make: bool) -> Result<(Identity, bool)> {
    match (cert.exists(), key.exists()) {
        (true, true) => Ok((load(cert, key)?, false)),
        (false, false) if make => Ok((create(cert, key)?, true)),
        (false, false) => bail!(
            "the certificate {} and key {} named in [tls] do not exist; correct the paths, \
             or set self_signed = true under [tls] to have a self-signed pair made there",
            cert.display(),
            key.display()
        ),
        _ => bail!(
            "only one of {} and {} exists; provide both, or remove the other to have a new pair made",
            cert.display(),
            key.display()
        ),
    }
}

fn load(cert: &Path, key: &Path) -> Result<Identity> {
    let cert_pem = fs::read_to_string(cert).with_context(|| format!("cannot read {}", cert.display()))?;
    let key_pem = fs::read_to_string(key).with_context(|| format!("cannot read {}", key.display()))?;
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let Some(first) = CertificateDer::pem_slice_iter(cert_pem.as_bytes()).next() else {
        bail!("{} holds no certificate", cert.display());
    };
    let first = first.with_context(|| format!("{} is not a PEM certificate", cert.display()))?;
    Ok(Identity { cert_der: first.to_vec(), cert_pem, key_pem })
}

fn create(cert: &Path, key: &Path) -> Result<Identity> {
    let host = hostname();
    let names = vec![host.clone(), "localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    let mut params = rcgen::CertificateParams::new(names).context("certificate parameters")?;
    params.distinguished_name.push(rcgen::DnType::CommonName, format!("cairn on {host}"));
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "Cairn backup server");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2099, 12, 31);
    let key_pair = rcgen::KeyPair::generate().context("making a key")?;
    let made = params.self_signed(&key_pair).context("signing the certificate")?;
    let identity =
        Identity { cert_pem: made.pem(), key_pem: key_pair.serialize_pem(), cert_der: made.der().to_vec() };
    for path in [cert, key] {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
    }
    write_new(key, identity.key_pem.as_bytes(), 0o600)?;
    write_new(cert, identity.cert_pem.as_bytes(), 0o644)?;
    Ok(identity)
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(())
}

pub fn hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into())
}

pub use protocol::fingerprint;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_made_identity_is_kept_and_reloaded_with_the_same_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("s/cert.pem"), dir.path().join("s/key.pem"));
        let err = load_or_create(&cert, &key, false).unwrap_err().to_string();
        assert!(err.contains("do not exist") && err.contains("self_signed"), "{err}");
        assert!(!cert.exists() && !key.exists() && !dir.path().join("s").exists(), "nothing made");
        let (made, new) = load_or_create(&cert, &key, true).unwrap();
        assert!(new);
        let (again, new) = load_or_create(&cert, &key, false).unwrap();
        assert!(!new);
        assert_eq!(fingerprint(&made.cert_der), fingerprint(&again.cert_der));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        fs::remove_file(&key).unwrap();
        assert!(load_or_create(&cert, &key, true).unwrap_err().to_string().contains("only one of"));
        let fp = fingerprint(&made.cert_der);
        assert_eq!((fp.len(), fp.matches(':').count()), (95, 31), "{fp}");
    }
}
