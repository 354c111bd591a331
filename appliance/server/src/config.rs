//! The server's configuration file (TOML, `/etc/cairn/cairn.toml` on the
//! appliance) and the defaults used without one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::limits::Limits;

/// The port PBS made familiar for backup servers.
pub const DEFAULT_PORT: u16 = 8007;

/// `cairn.toml`. Every key is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `ADDR:PORT` to listen on (default `127.0.0.1:8007`).
    pub listen: Option<SocketAddr>,
    /// Datastore directory (default: the global `--datastore`).
    pub datastore: Option<PathBuf>,
    /// Most jobs running at once (default 2).
    pub workers: Option<usize>,
    /// Seconds after which a remote backup session nobody uses is aborted
    /// and its group freed (default 1800).
    pub session_idle: Option<u64>,
    #[serde(default)]
    pub tls: TlsConfig,
    /// `[limits]`: sessions, uploads and logins per caller.
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub jobs: JobsConfig,
    #[serde(default)]
    pub tape: TapeConfig,
    #[serde(default)]
    pub appliance: ApplianceConfig,
    /// `[s3]`: keep the datastore's data in an S3 bucket.
    pub s3: Option<S3Config>,
}

/// `[s3]`: when the datastore directory holds no datastore yet, the first
/// start makes one whose chunks, indexes and manifests live in this bucket
/// (`cairn init --s3`), or with `existing`, attaches to the datastore
/// already in it. The key never appears here: it comes from
/// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` or `credentials_file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// `https://HOST[:PORT]` (or `http://` on a trusted network).
    pub url: String,
    pub bucket: String,
    #[serde(default)]
    pub prefix: String,
    /// Default `us-east-1`.
    pub region: Option<String>,
    /// Default `/etc/cairn/s3-credentials`.
    pub credentials_file: Option<PathBuf>,
    /// Size limit of the local chunk cache, e.g. `4G` (default `1G`).
    pub cache_size: Option<String>,
    /// Uploads in flight per backup (default 16).
    pub uploads: Option<usize>,
    /// Attach to the datastore already in the bucket (disaster recovery).
    #[serde(default)]
    pub existing: bool,
}

impl S3Config {
    pub fn settings(&self) -> Result<(engine::S3Settings, bool)> {
        let mut settings = engine::S3Settings::new(&self.url, &self.bucket);
        settings.prefix.clone_from(&self.prefix);
        if let Some(region) = &self.region {
            settings.region.clone_from(region);
        }
        if let Some(file) = &self.credentials_file {
            settings.credentials_file.clone_from(file);
        }
        if let Some(t) = &self.cache_size {
            settings.cache_bytes =
                model::size::parse_size(t).map_err(|e| anyhow::anyhow!("[s3] cache_size: {e}"))?;
        }
        if let Some(n) = self.uploads {
            settings.uploads = n;
        }
        if !(1..=256).contains(&settings.uploads) {
            bail!("[s3] uploads must be between 1 and 256");
        }
        Ok((settings, self.existing))
    }
}

/// `[appliance]`: set on Cairn's appliance image, where the server also
/// manages the machine: A/B updates and the first boot's admin password.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplianceConfig {
    /// This server runs on the appliance image: the Appliance page and
    /// `/api/v1/appliance` show its slots and take update bundles.
    #[serde(default)]
    pub enabled: bool,
    /// Where the first start writes the initial `admin` password (mode
    /// 0600) for the console to show; removed once the admin has logged in.
    pub initial_password_file: Option<PathBuf>,
    /// Where an uploaded update bundle is kept while it is applied
    /// (default: beside the datastore).
    pub upload_dir: Option<PathBuf>,
}

/// `[tape]`: the tape library the server writes to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TapeConfig {
    /// A virtual library's directory, or a `library.toml` describing a
    /// real one (`cairn tape library create`, docs/formats.md). None by
    /// default: the Tape page then says how to set one up.
    pub library: Option<PathBuf>,
}

/// `[jobs]`: what jobs may read on the server.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsConfig {
    /// Directories under which operators may name job sources and granted
    /// directories (admins may name any path). None by default.
    #[serde(default)]
    pub source_roots: Vec<PathBuf>,
}

/// The configuration directory no job may read.
pub const CONFIG_DIR: &str = "/etc/cairn";

/// `[tls]`: certificate and key files (PEM). Without `cert` and `key`, a
/// self-signed pair is made on first start in the datastore's `server/`
/// directory. Files named here must exist, unless `self_signed = true`
/// asks for a pair to be made there when both are missing.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Make a self-signed pair at `cert` and `key` when both are missing.
    #[serde(default)]
    pub self_signed: bool,
    /// Serve plain HTTP instead (loopback addresses only).
    #[serde(default)]
    pub insecure_http: bool,
}

/// The resolved settings the server runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub datastore: PathBuf,
    pub workers: usize,
    pub session_idle: std::time::Duration,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Whether a self-signed pair may be made when `cert` and `key` are
    /// both missing (they are the defaults, or `self_signed` is set).
    pub make_cert: bool,
    pub insecure_http: bool,
    pub limits: Limits,
    /// Where jobs may read; the datastore is added by `AppState::configured`.
    pub job_paths: engine::job_paths::PathRules,
    /// The tape library, if any.
    pub tape_library: Option<PathBuf>,
    /// `[appliance]`, when the server runs on the appliance image.
    pub appliance: Option<Appliance>,
    /// Where to write the initial admin password, if anywhere.
    pub initial_password_file: Option<PathBuf>,
    /// `[s3]`: the bucket a new datastore is made in (or attached to).
    pub s3: Option<(engine::S3Settings, bool)>,
}

/// The appliance the server manages.
#[derive(Debug, Clone)]
pub struct Appliance {
    pub layout: osimage::Layout,
    pub upload_dir: PathBuf,
    /// Reboot into an updated slot (false only in tests).
    pub reboot: bool,
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("{} is not a valid cairn configuration", path.display()))
    }

    /// Settings from this file, the command line overriding it.
    pub fn settings(
        &self,
        datastore: &Path,
        listen: Option<SocketAddr>,
        insecure_http: bool,
    ) -> Result<Settings> {
        let listen =
            listen.or(self.listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)));
        let datastore = self.datastore.clone().unwrap_or_else(|| datastore.to_owned());
        let server_dir = datastore.join("server");
        let insecure_http = insecure_http || self.tls.insecure_http;
        if insecure_http && !listen.ip().is_loopback() {
            bail!(
                "plain HTTP is only allowed on a loopback address, not {listen}: \
                 passwords and tokens would cross the network in the clear; drop --insecure-http"
            );
        }
        self.limits.check()?;
        let tls = &self.tls;
        if tls.cert.is_some() != tls.key.is_some() {
            bail!("[tls] names only one of cert and key; give both, or neither for a self-signed pair");
        }
        let workers = self.workers.unwrap_or(2);
        if workers == 0 {
            bail!("workers must be at least 1");
        }
        for root in &self.jobs.source_roots {
            if !root.is_absolute() {
                bail!("[jobs] source_roots: {} is not an absolute path", root.display());
            }
        }
        let cert = self.tls.cert.clone().unwrap_or_else(|| server_dir.join("cert.pem"));
        let key = self.tls.key.clone().unwrap_or_else(|| server_dir.join("key.pem"));
        // (The datastore is added by the server, whatever its settings.)
        let mut protected = vec![PathBuf::from(CONFIG_DIR)];
        protected.extend([&cert, &key].iter().filter_map(|p| p.parent().map(Path::to_path_buf)));
        let job_paths = engine::job_paths::PathRules { roots: self.jobs.source_roots.clone(), protected };
        let appliance = self.appliance.enabled.then(|| Appliance {
            layout: osimage::Layout::appliance(),
            reboot: true,
            upload_dir: self.appliance.upload_dir.clone().unwrap_or_else(|| {
                datastore.parent().map(Path::to_path_buf).unwrap_or_else(|| datastore.clone())
            }),
        });
        Ok(Settings {
            listen,
            datastore,
            workers,
            session_idle: std::time::Duration::from_secs(self.session_idle.unwrap_or(1800).max(1)),
            cert,
            key,
            make_cert: tls.cert.is_none() || tls.self_signed,
            insecure_http,
            limits: self.limits,
            job_paths,
            tape_library: self.tape.library.clone(),
            appliance,
            initial_password_file: self.appliance.initial_password_file.clone(),
            s3: self.s3.as_ref().map(S3Config::settings).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_take_the_command_line_over_the_file_and_refuse_remote_plain_http() {
        let file: ConfigFile = toml::from_str(
            "listen = \"0.0.0.0:9000\"\nworkers = 4\n[tls]\ncert = \"/etc/cairn/c.pem\"\nkey = \"/etc/cairn/k.pem\"\n",
        )
        .unwrap();
        let s = file.settings(Path::new("/data"), None, false).unwrap();
        assert_eq!((s.listen.port(), s.workers, s.cert.as_path()), (9000, 4, Path::new("/etc/cairn/c.pem")));
        let err = file.settings(Path::new("/data"), None, true).unwrap_err().to_string();
        assert!(err.contains("loopback"), "{err}");
        let local = file.settings(Path::new("/data"), Some("127.0.0.1:1".parse().unwrap()), true).unwrap();
        assert!(local.insecure_http);
        let none = ConfigFile::default().settings(Path::new("/data"), None, false).unwrap();
        assert_eq!(none.key, Path::new("/data/server/key.pem"));
        assert!(toml::from_str::<ConfigFile>("listne = \"x\"").is_err(), "unknown keys are refused");
        assert!(none.make_cert, "no [tls] files: a self-signed pair is made");
        assert!(!s.make_cert, "files named in [tls] must exist");
        let one: ConfigFile = toml::from_str("[tls]\ncert = \"/c.pem\"\n").unwrap();
        let err = one.settings(Path::new("/data"), None, false).unwrap_err().to_string();
        assert!(err.contains("only one of cert and key"), "{err}");
        assert_eq!(none.limits, Limits::default());
        let limited: ConfigFile =
            toml::from_str("[limits]\nuploads_per_caller = 2\nbackup_sessions_per_caller = 1\n").unwrap();
        let s = limited.settings(Path::new("/data"), None, false).unwrap();
        assert_eq!((s.limits.uploads_per_caller, s.limits.backup_sessions_per_caller), (2, 1));
        assert_eq!(s.limits.reader_sessions, Limits::default().reader_sessions);
        let zero: ConfigFile = toml::from_str("[limits]\nlogin_queue = 0\n").unwrap();
        assert!(zero.settings(Path::new("/data"), None, false).is_err());
        assert!(toml::from_str::<ConfigFile>("[limits]\nsessions = 1\n").is_err());
    }

    #[test]
    fn the_shipped_configuration_reads() {
        let text = include_str!("../../systemd/cairn.toml");
        let file: ConfigFile = toml::from_str(text).expect("appliance/systemd/cairn.toml");
        let s = file.settings(Path::new("/unused"), None, false).expect("settings");
        assert_eq!(s.datastore, Path::new("/var/lib/cairn/datastore"));
        assert_eq!((s.listen.port(), s.workers, s.insecure_http), (DEFAULT_PORT, 2, false));
        assert!(s.cert.starts_with("/var/lib/cairn") && s.key.starts_with("/var/lib/cairn"));
        assert!(s.make_cert, "the appliance makes its pair on the first start");
        let unit = include_str!("../../systemd/cairn.service");
        assert!(unit.contains("ExecStart=/usr/bin/cairn serve --config /etc/cairn/cairn.toml"));
        assert!(unit.contains("ReadWritePaths=/var/lib/cairn"));
    }
}
