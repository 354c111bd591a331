//! The client side of the remote backup protocol (the `protocol` crate): an
//! HTTPS client that pins the server's certificate by its SHA-256
//! fingerprint, a chunk sink that uploads what the server lacks, and a
//! snapshot reader over a reader session. The engine's backup pipeline and
//! restore run on top of these unchanged.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use engine::backup::BackupTarget;
use engine::items::{ItemSource, SourceBackup};
use engine::target::{ChunkRead, ChunkSink, SnapshotRead};
use engine::{BackupOptions, BackupReport, Progress};
use engine::{ChunkId, IndexRef, Manifest, StoreError, WriteCounters, decode_checked};
use model::{Namespace, SnapshotId};
use reqwest::Method;
use reqwest::blocking::{Client, RequestBuilder, Response};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::Serialize;
use serde::de::DeserializeOwned;

use protocol::{
    BackupSession, BackupStart, Finished, MAX_CHUNK_BODY, MAX_INDEX_BODY, MAX_MANIFEST_BODY, ReaderSession,
    ReaderStart, SourceHandlerInfo,
};

/// Accepts exactly one certificate, named by its SHA-256 fingerprint.
#[derive(Debug)]
struct Pinned {
    fingerprint: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if protocol::fingerprint(end_entity.as_ref()) == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the server's certificate does not have the pinned fingerprint".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A connection to a Cairn server with an API token.
///
/// Requests go out over several HTTP clients in turn ("lanes"): each has
/// its own connections and its own thread that encrypts, decrypts and
/// frames their bytes, so a backup's uploads and a restore's downloads
/// are not bound by what one thread can encrypt.
#[derive(Clone)]
pub struct Remote {
    lanes: Arc<[Client]>,
    next: Arc<AtomicUsize>,
    base: String,
    token: String,
    /// Whether the server dates new snapshots (no `--time` given).
    server_dates: bool,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("base", &self.base).finish_non_exhaustive()
    }
}

impl Remote {
    /// HTTPS needs the fingerprint (the server's certificate is
    /// self-signed); plain `http://` is for loopback development only.
    pub fn connect(url: &str, token: &str, fingerprint: Option<&str>) -> Result<Remote> {
        Self::connect_with_lanes(url, token, fingerprint, default_lanes())
    }

    /// `connect`, with `lanes` HTTP clients (at least 1).
    fn connect_with_lanes(url: &str, token: &str, fingerprint: Option<&str>, lanes: usize) -> Result<Remote> {
        let base = url.trim_end_matches('/').to_owned();
        let mut tls = None;
        if base.starts_with("https://") {
            let fp = fingerprint.ok_or_else(|| {
                anyhow!(
                    "--fingerprint is needed for {base}: the SHA-256 fingerprint `cairn serve` prints \
                     on start and the web UI shows in its footer"
                )
            })?;
            let fp = fp.trim().to_ascii_lowercase();
            let ok = fp.len() == 95
                && fp.split(':').all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit()));
            if !ok {
                bail!("--fingerprint {fp:?} is not a SHA-256 fingerprint (32 hex pairs separated by colons)");
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let verifier = Arc::new(Pinned { fingerprint: fp, provider: provider.clone() });
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth();
            tls = Some(config);
        } else if base.starts_with("http://") {
            plain_http_allowed(&base)?;
            // Plain HTTP still builds a client that could do TLS, which
            // needs a process-wide provider (an error only says one is set).
            let _ = rustls::crypto::ring::default_provider().install_default();
        } else {
            bail!("--server {url:?}: use an https:// URL");
        }
        let lanes = (0..lanes.max(1))
            .map(|_| {
                let mut builder = Client::builder()
                    .timeout(Duration::from_secs(300))
                    .connect_timeout(Duration::from_secs(20))
                    .pool_max_idle_per_host(32)
                    .redirect(reqwest::redirect::Policy::none());
                if let Some(config) = &tls {
                    builder = builder.use_preconfigured_tls(config.clone());
                }
                builder.build().context("setting up the HTTP client")
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Remote {
            lanes: lanes.into(),
            next: Arc::default(),
            base,
            token: token.to_owned(),
            server_dates: false,
        })
    }

    /// The HTTP client for the next request.
    fn http(&self) -> &Client {
        &self.lanes[self.next.fetch_add(1, Ordering::Relaxed) % self.lanes.len()]
    }

    /// `GET /healthz` without credentials: Ok when the server answers `ok`.
    pub fn healthz(&self) -> Result<()> {
        let res = self
            .http()
            .get(format!("{}/healthz", self.base))
            .timeout(Duration::from_secs(10))
            .send()
            .map_err(|e| anyhow!("cannot reach {}: {}", self.base, error_chain(&e)))?;
        let status = res.status();
        let body = read_capped(res, 64, "health check")?;
        if status.is_success() && body.trim_ascii() == b"ok" {
            Ok(())
        } else {
            bail!("{} answered {status}", self.base)
        }
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http().request(method, format!("{}{path}", self.base)).bearer_auth(&self.token)
    }

    /// Send, and turn an error answer into an error naming the server's
    /// message and request id.
    fn send(&self, req: RequestBuilder, what: &str) -> Result<Response> {
        let res =
            req.send().map_err(|e| anyhow!("{what}: cannot reach {}: {}", self.base, error_chain(&e)))?;
        self.answer(res, what)
    }

    /// A successful answer, or an error naming the server's message.
    fn answer(&self, res: Response, what: &str) -> Result<Response> {
        if res.status().is_success() {
            return Ok(res);
        }
        let status = res.status();
        // An error answer is a short JSON object; read no more than that.
        let text = match read_capped(res, MAX_ERROR_BODY, what) {
            Ok(body) => String::from_utf8_lossy(&body).into_owned(),
            Err(e) => format!("{e:#}"),
        };
        let (message, id) = match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(v) => (
                v["error"].as_str().unwrap_or(&text).to_owned(),
                v["request_id"].as_str().map(|s| format!(" (request id {s})")).unwrap_or_default(),
            ),
            Err(_) => (text.trim().to_owned(), String::new()),
        };
        bail!("{what}: the server answered {status}: {message}{id}")
    }

    fn json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
        what: &str,
    ) -> Result<T> {
        let res = self.send(self.request(method, path).json(body), what)?;
        read_json(res, what)
    }

    /// GET `path`; the answer may be at most `limit` bytes.
    fn get_bytes(&self, path: &str, limit: usize, what: &str) -> Result<Vec<u8>> {
        let res = self.send(self.request(Method::GET, path), what)?;
        read_capped(res, limit, what)
    }

    fn put_bytes(&self, path: &str, body: Vec<u8>, what: &str) -> Result<Response> {
        self.send(self.put_request(path, body), what)
    }

    fn put_request(&self, path: &str, body: impl Into<reqwest::blocking::Body>) -> RequestBuilder {
        self.request(Method::PUT, path).header("content-type", "application/octet-stream").body(body)
    }

    /// PUT `body`; while the server answers 429 (the caller's uploads are
    /// all in flight, perhaps from another of its sessions), wait and try
    /// again, for up to [`BUSY_RETRY`].
    fn put_retrying(&self, path: &str, body: bytes::Bytes, what: &str) -> Result<Response> {
        let deadline = Instant::now() + BUSY_RETRY;
        let mut pause = Duration::from_millis(10);
        loop {
            let req = self.put_request(path, body.clone());
            let res =
                req.send().map_err(|e| anyhow!("{what}: cannot reach {}: {}", self.base, error_chain(&e)))?;
            if res.status() != reqwest::StatusCode::TOO_MANY_REQUESTS || Instant::now() >= deadline {
                return self.answer(res, what);
            }
            drop(res);
            tracing::info!(
                "{what}: the server has all of this caller's uploads in flight (429); trying again"
            );
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    fn delete(&self, path: &str) {
        if let Err(e) = self.send(self.request(Method::DELETE, path), "closing the session") {
            tracing::warn!("{e:#}");
        }
    }

    /// Let the server date the snapshots this client makes (the time a
    /// backup is given is then only the client's guess).
    pub fn dated_by_server(mut self, yes: bool) -> Self {
        self.server_dates = yes;
        self
    }

    /// Open a backup session for `group` at `time` (`None`: the server's).
    pub fn start_backup(&self, group: &model::BackupGroup, time: Option<i64>) -> Result<BackupSession> {
        let start = BackupStart { group: group.to_string(), time };
        self.json(Method::POST, "/api/v1/backup", &start, "opening a backup session")
    }

    /// Back up `opts.sources` into a new snapshot on the server: the same
    /// walk, chunking and compression as a local backup; chunks of the
    /// group's previous snapshot are named, the rest uploaded.
    pub fn backup(&self, opts: &BackupOptions, progress: &Progress) -> Result<BackupReport> {
        self.backup_with(&opts.group, opts.time, |target| engine::backup::back_up(target, opts, progress))
    }

    /// Back up what a source handler running here yields into a new
    /// snapshot on the server (see [`engine::items::back_up_items`]).
    pub fn backup_items(
        &self,
        opts: &SourceBackup,
        source: &mut dyn ItemSource,
        progress: &Progress,
    ) -> Result<BackupReport> {
        self.backup_with(&opts.group, opts.time, |target| {
            engine::items::back_up_items(target, opts, source, progress)
        })
    }

    /// Open a backup session for `group` at `time`, let `run` store its
    /// data and make its manifest, and have the server commit it.
    fn backup_with(
        &self,
        group: &model::BackupGroup,
        time: i64,
        run: impl FnOnce(&BackupTarget<'_>) -> Result<Manifest>,
    ) -> Result<BackupReport> {
        let s = self.start_backup(group, (!self.server_dates).then_some(time))?;
        let dated = SnapshotId::parse(&s.snapshot, &Namespace::root())?;
        // From here on, dropping `sink` aborts the session on the server.
        let mut sink = RemoteBackup::new(self.clone(), s.session, s.uploads);
        let config = s.settings.config()?;
        let prev = s.previous.map(|p| RemoteSnapshot::new(self.clone(), p)).transpose()?;
        if let Some(p) = &prev {
            sink.known = p.chunk_ids(&p.id, &p.manifest)?;
        }
        let target = BackupTarget {
            sink: &sink,
            prev_src: match &prev {
                Some(p) => p,
                None => &NoSnapshots,
            },
            prev: prev.as_ref().map(|p| (p.id.clone(), p.manifest.clone())),
            config,
        };
        let mut manifest = run(&target)?;
        manifest.time = dated.time_text();
        let done = sink.finish(&manifest)?;
        let id = SnapshotId::parse(&done.snapshot, &Namespace::root())?;
        Ok(BackupReport { id, stats: done.manifest.stats, errors: done.manifest.errors })
    }

    /// The source handlers the server stores.
    pub fn source_handlers(&self) -> Result<Vec<SourceHandlerInfo>> {
        let what = "listing the source handlers";
        read_json(self.send(self.request(Method::GET, "/api/v1/sources"), what)?, what)
    }

    /// The component of source handler `h`, checked against its listed
    /// digest (it runs here, so it must be the one the server stores);
    /// never read past the component size limit.
    pub fn source_component(&self, h: &SourceHandlerInfo) -> Result<Vec<u8>> {
        use std::io::Read;
        let what = format!("fetching the source handler {}", h.name);
        let limit = model::policy::MAX_COMPONENT_BYTES as u64;
        if h.size > limit {
            bail!("{what}: the server lists {} bytes, over the {limit} byte limit for a component", h.size);
        }
        let res =
            self.send(self.request(Method::GET, &format!("/api/v1/sources/{}/component", h.name)), &what)?;
        let mut wasm = Vec::with_capacity(h.size as usize);
        res.take(limit + 1).read_to_end(&mut wasm).map_err(|e| anyhow!("{what}: {e}"))?;
        if wasm.len() as u64 > limit {
            bail!("{what}: over the {limit} byte limit for a component");
        }
        if blake3::hash(&wasm).to_hex().as_str() != h.digest {
            bail!("{what}: the component does not match the digest the server lists for it");
        }
        Ok(wasm)
    }

    /// Open a snapshot for reading.
    pub fn open_snapshot(&self, id: &SnapshotId) -> Result<RemoteSnapshot> {
        let start = ReaderStart { snapshot: id.to_string() };
        let s: ReaderSession = self.json(Method::POST, "/api/v1/reader", &start, "opening the snapshot")?;
        RemoteSnapshot::new(self.clone(), s)
    }
}

/// The most of an error answer the client reads.
const MAX_ERROR_BODY: usize = 64 << 10;

/// HTTP clients of a `Remote`: half the cores, 2 to 8. Each adds a thread
/// and its own connections.
fn default_lanes() -> usize {
    (engine::target::cores() / 2).clamp(2, 8)
}

/// Upload bodies a backup waits for the HTTP client to let go of, to
/// fill their buffers again.
const LENT: usize = 8;

/// How long a chunk upload answered 429 is tried again.
const BUSY_RETRY: Duration = Duration::from_secs(120);

/// Plain `http://` sends the token in clear text: allowed only to a
/// loopback address (127.0.0.0/8, ::1, `localhost`), checked before
/// anything is sent.
fn plain_http_allowed(url: &str) -> Result<()> {
    let parsed = reqwest::Url::parse(url).map_err(|e| anyhow!("--server {url:?}: not a URL: {e}"))?;
    // The URL parser writes IPv4 addresses in dotted form (`127.1` is
    // `127.0.0.1`) and IPv6 ones in brackets.
    let host = parsed.host_str().unwrap_or_default();
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!(
            "--server {url:?}: plain http:// would send the token unencrypted; it is allowed only to \
             this machine (127.0.0.1, ::1, localhost). Use the server's https:// URL with --fingerprint"
        );
    }
    Ok(())
}

/// Read an answer's body, at most `limit` bytes: reads `limit + 1` at
/// most and fails beyond, whatever the server announces or keeps sending.
fn read_capped(res: Response, limit: usize, what: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    if res.content_length().is_some_and(|n| n > limit as u64) {
        bail!("{what}: the server's answer is over the {limit} byte limit");
    }
    let mut body = Vec::new();
    res.take(limit as u64 + 1).read_to_end(&mut body).map_err(|e| anyhow!("{what}: {}", error_chain(&e)))?;
    if body.len() > limit {
        bail!("{what}: the server's answer is over the {limit} byte limit");
    }
    Ok(body)
}

/// A JSON answer, at most [`MAX_MANIFEST_BODY`] bytes (the largest the
/// protocol has: a manifest).
fn read_json<T: DeserializeOwned>(res: Response, what: &str) -> Result<T> {
    let body = read_capped(res, MAX_MANIFEST_BODY, what)?;
    serde_json::from_slice(&body).map_err(|e| anyhow!("{what}: unreadable answer: {e}"))
}

/// reqwest's error with its causes (the TLS reason for a refused pin).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// One snapshot on the server, read through a reader session (closed
/// when dropped). Index files are fetched once and kept.
pub struct RemoteSnapshot {
    remote: Remote,
    session: String,
    pub id: SnapshotId,
    pub manifest: Manifest,
    indexes: Mutex<HashMap<String, Vec<u8>>>,
}

impl RemoteSnapshot {
    fn new(remote: Remote, s: ReaderSession) -> Result<Self> {
        let id = SnapshotId::parse(&s.snapshot, &Namespace::root())?;
        s.manifest.check().map_err(|e| anyhow!("the server sent a bad manifest for {id}: {e}"))?;
        Ok(Self { remote, session: s.session, id, manifest: s.manifest, indexes: Mutex::new(HashMap::new()) })
    }
}

impl Drop for RemoteSnapshot {
    fn drop(&mut self) {
        self.remote.delete(&format!("/api/v1/reader/{}", self.session));
    }
}

fn remote_err(e: anyhow::Error) -> StoreError {
    StoreError::Remote(format!("{e:#}"))
}

impl SnapshotRead for RemoteSnapshot {
    fn read_manifest(&self, id: &SnapshotId) -> Result<Manifest, StoreError> {
        if *id != self.id {
            return Err(StoreError::SnapshotNotFound(id.to_string()));
        }
        Ok(self.manifest.clone())
    }

    fn read_index_bytes(&self, id: &SnapshotId, r: &IndexRef) -> Result<Vec<u8>, StoreError> {
        if *id != self.id {
            return Err(StoreError::SnapshotNotFound(id.to_string()));
        }
        if let Some(b) = self.indexes.lock().expect("lock").get(&r.file) {
            return Ok(b.clone());
        }
        let path = format!("/api/v1/reader/{}/indexes/{}", self.session, r.file);
        let what = format!("reading index {}", r.file);
        let bytes = self.remote.get_bytes(&path, MAX_INDEX_BODY, &what).map_err(remote_err)?;
        if blake3::hash(&bytes).to_hex().as_str() != r.blake3 {
            return Err(StoreError::BadIndex {
                path: format!("{id}/{}", r.file).into(),
                detail: "content from the server does not match the manifest digest".into(),
            });
        }
        self.indexes.lock().expect("lock").insert(r.file.clone(), bytes.clone());
        Ok(bytes)
    }

    fn chunk_reader(&self) -> Arc<dyn ChunkRead> {
        Arc::new(RemoteChunks { remote: self.remote.clone(), session: self.session.clone() })
    }
}

struct RemoteChunks {
    remote: Remote,
    session: String,
}

impl ChunkRead for RemoteChunks {
    fn read_chunk(&self, id: &ChunkId) -> Result<Vec<u8>, StoreError> {
        let path = format!("/api/v1/reader/{}/chunks/{id}", self.session);
        let what = format!("reading chunk {id}");
        let blob = self.remote.get_bytes(&path, MAX_CHUNK_BODY, &what).map_err(remote_err)?;
        decode_checked(id, &blob)
    }

    fn parallel_reads(&self) -> usize {
        8
    }
}

/// Stands in for the previous snapshot when a group has none.
pub struct NoSnapshots;

impl SnapshotRead for NoSnapshots {
    fn read_manifest(&self, id: &SnapshotId) -> Result<Manifest, StoreError> {
        Err(StoreError::SnapshotNotFound(id.to_string()))
    }

    fn read_index_bytes(&self, id: &SnapshotId, _r: &IndexRef) -> Result<Vec<u8>, StoreError> {
        Err(StoreError::SnapshotNotFound(id.to_string()))
    }

    fn chunk_reader(&self) -> Arc<dyn ChunkRead> {
        Arc::new(NoSnapshots)
    }
}

impl ChunkRead for NoSnapshots {
    fn read_chunk(&self, id: &ChunkId) -> Result<Vec<u8>, StoreError> {
        Err(StoreError::ChunkMissing(*id))
    }
}

/// A backup session on the server, as the pipeline's chunk sink: chunks of
/// the group's previous snapshot are named, not sent; every other chunk is
/// uploaded once. Aborted on the server when dropped unfinished.
pub struct RemoteBackup {
    remote: Remote,
    session: String,
    known: HashSet<ChunkId>,
    uploaded: Mutex<HashSet<ChunkId>>,
    /// Uploads in flight, and how many the server allows.
    in_flight: (Mutex<usize>, Condvar, usize),
    counters: WriteCounters,
    /// Upload bodies the HTTP client may still hold (`take_back`).
    lent: Mutex<Vec<bytes::Bytes>>,
    /// Uploads that gave a buffer back for the next blob.
    buffers_back: AtomicU64,
    finished: bool,
}

impl RemoteBackup {
    fn new(remote: Remote, session: String, uploads: usize) -> Self {
        Self {
            remote,
            session,
            known: HashSet::new(),
            uploaded: Mutex::new(HashSet::new()),
            in_flight: (Mutex::new(0), Condvar::new(), uploads.max(1)),
            counters: WriteCounters::default(),
            lent: Mutex::new(Vec::new()),
            buffers_back: AtomicU64::new(0),
            finished: false,
        }
    }

    /// Lend `body`'s buffer out, and take back the first lent buffer the
    /// HTTP client has let go of. An answered request's body is usually
    /// dropped by then, but on the client's own thread, which may not
    /// have got to it yet: a buffer still held is looked at again after
    /// the next upload. At most [`LENT`] are waited for.
    fn take_back(&self, body: bytes::Bytes) -> Option<Vec<u8>> {
        let mut lent = self.lent.lock().expect("lock");
        lent.push(body);
        let free = lent.iter().position(bytes::Bytes::is_unique);
        let back = free.and_then(|i| lent.swap_remove(i).try_into_mut().ok()).map(Vec::from);
        if lent.len() > LENT {
            lent.remove(0);
        }
        back
    }

    /// Send the manifest; the server commits the snapshot.
    fn finish(mut self, manifest: &Manifest) -> Result<Finished> {
        tracing::info!(
            uploads = self.counters.new_chunks.load(Ordering::Relaxed),
            buffers_back = self.buffers_back.load(Ordering::Relaxed),
            "chunk uploads"
        );
        let path = format!("/api/v1/backup/{}/finish", self.session);
        let done = self.remote.json(Method::POST, &path, manifest, "committing the snapshot")?;
        self.finished = true;
        Ok(done)
    }
}

impl Drop for RemoteBackup {
    fn drop(&mut self) {
        if !self.finished {
            self.remote.delete(&format!("/api/v1/backup/{}", self.session));
        }
    }
}

impl ChunkSink for RemoteBackup {
    fn reference(&self, id: &ChunkId) -> Result<bool> {
        Ok(self.known.contains(id) || self.uploaded.lock().expect("lock").contains(id))
    }

    /// Upload a chunk; at most as many at once as the server allows (the
    /// pipeline's other workers keep compressing meanwhile). A buffer
    /// goes back to the caller for its next blob: this one's, or an
    /// earlier upload's (`take_back`).
    fn store(&self, id: &ChunkId, blob: &mut Vec<u8>) -> Result<()> {
        let body = bytes::Bytes::from(std::mem::take(blob));
        let path = format!("/api/v1/backup/{}/chunks/{id}", self.session);
        let len = body.len() as u64;
        let (count, freed, limit) = &self.in_flight;
        {
            let mut n = count.lock().expect("lock");
            while *n >= *limit {
                n = freed.wait(n).expect("lock");
            }
            *n += 1;
        }
        let sent = self.remote.put_retrying(&path, body.clone(), &format!("uploading chunk {id}"));
        *count.lock().expect("lock") -= 1;
        freed.notify_one();
        if let Some(back) = self.take_back(body) {
            *blob = back;
            self.buffers_back.fetch_add(1, Ordering::Relaxed);
        }
        sent?;
        self.uploaded.lock().expect("lock").insert(*id);
        self.counters.new_chunks.fetch_add(1, Ordering::Relaxed);
        self.counters.stored_bytes.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    fn write_index(&self, file: &str, bytes: &[u8], length: u64, chunks: u64) -> Result<IndexRef> {
        let path = format!("/api/v1/backup/{}/indexes/{file}", self.session);
        let res = self.remote.put_bytes(&path, bytes.to_vec(), &format!("uploading index {file}"))?;
        let r: IndexRef = read_json(res, &format!("uploading index {file}"))?;
        let expected = IndexRef {
            file: file.to_owned(),
            blake3: blake3::hash(bytes).to_hex().to_string(),
            length,
            chunks,
        };
        if r != expected {
            bail!("the server recorded index {file} differently from what was sent ({r:?})");
        }
        Ok(r)
    }

    fn counters(&self) -> &WriteCounters {
        &self.counters
    }

    fn workers(&self) -> usize {
        (2 * engine::target::cores()).max(4)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    use super::*;

    /// A server on loopback that reads each request's head and lets
    /// `answer` write to the connection (one request per connection).
    fn serving(answer: impl Fn(&mut std::net::TcpStream) + Send + 'static) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                answer(&mut conn);
            }
        });
        format!("http://{addr}")
    }

    /// A keep-alive server answering `ok` to every request once it has
    /// read its body (`content-length` bytes); each connection's requests
    /// are counted under the connection's number.
    fn keeping_alive() -> (String, Arc<Mutex<Vec<usize>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let counts = Arc::new(Mutex::new(Vec::new()));
        let seen = counts.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let n = {
                    let mut c = seen.lock().unwrap();
                    c.push(0);
                    c.len() - 1
                };
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    loop {
                        let (mut line, mut length) = (String::new(), 0);
                        loop {
                            line.clear();
                            match reader.read_line(&mut line) {
                                Ok(0) | Err(_) => return,
                                Ok(_) if line == "\r\n" => break,
                                Ok(_) => {
                                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:")
                                    {
                                        length = v.trim().parse().unwrap();
                                    }
                                }
                            }
                        }
                        if reader.read_exact(&mut vec![0; length]).is_err() {
                            return;
                        }
                        seen.lock().unwrap()[n] += 1;
                        let answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if conn.write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (format!("http://{addr}"), counts)
    }

    /// Requests take the lanes in turn, each lane with connections of its
    /// own: eight requests one after another over three lanes use at least
    /// three connections (one client reuses its one: each request ends
    /// before the next starts).
    #[test]
    fn requests_take_the_lanes_in_turn() {
        /// Eight requests one after another over `lanes`: the requests
        /// each connection the server saw carried.
        fn connections(lanes: usize) -> Vec<usize> {
            let (url, counts) = keeping_alive();
            let remote = Remote::connect_with_lanes(&url, "t", None, lanes).unwrap();
            for _ in 0..8 {
                remote.healthz().unwrap();
            }
            let counts = counts.lock().unwrap().clone();
            assert_eq!(counts.iter().sum::<usize>(), 8, "{counts:?}");
            counts
        }
        let counts = connections(3);
        assert!(counts.len() >= 3, "three lanes, three connections at least: {counts:?}");
        let counts = connections(1);
        assert!(counts.len() < 3, "one lane keeps its connection: {counts:?}");
    }

    /// An upload gives a blob's buffer back for the next blob (its own or
    /// one an earlier upload lent out), the same allocation with the same
    /// bytes, instead of the pipeline allocating (and faulting in) a
    /// fresh one per chunk.
    #[test]
    fn an_answered_upload_gives_the_blob_buffer_back() {
        let remote = Remote::connect_with_lanes(&keeping_alive().0, "t", None, 1).unwrap();
        let sink = RemoteBackup::new(remote, "s".into(), 4);
        let (mut back, mut given) = (0, Vec::new());
        for i in 0..20u8 {
            // Half of them with room to spare, as the pipeline's blobs have.
            let mut blob = Vec::with_capacity(if i % 2 == 0 { 300_000 } else { 400_000 });
            blob.resize(300_000, i);
            given.push(blob.as_ptr());
            sink.store(&ChunkId([i; 32]), &mut blob).unwrap();
            if blob.is_empty() {
                continue;
            }
            // This upload's buffer, or an earlier one's, as it was given.
            let j = blob[0];
            assert!(j <= i && given[j as usize] == blob.as_ptr(), "upload {i}: buffer of upload {j}");
            assert_eq!(blob.len(), 300_000);
            assert!(blob.iter().all(|&b| b == j), "upload {i}: the bytes of upload {j} as they were");
            back += 1;
        }
        assert!(back >= 18, "{back} of 20 buffers came back");
        assert_eq!(sink.buffers_back.load(Ordering::Relaxed), back);
        assert_eq!(sink.counters.new_chunks.load(Ordering::Relaxed), 20);
    }

    /// A server whose answers never end: a body without a length, sent
    /// until the client hangs up.
    fn endless() -> String {
        serving(|conn| {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n";
            let piece = [b' '; 64 << 10];
            if conn.write_all(head.as_bytes()).is_ok() {
                while conn.write_all(&piece).is_ok() {}
            }
        })
    }

    /// A server that answers every request with `body` (one per connection).
    fn answering(body: Vec<u8>) -> String {
        serving(move |conn| {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/wasm\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes()).and_then(|()| conn.write_all(&body));
        })
    }

    fn info(digest: String, size: u64) -> SourceHandlerInfo {
        SourceHandlerInfo {
            name: "dump".into(),
            policy_name: "dump".into(),
            policy_version: "1.0.0".into(),
            digest,
            size,
            cpu_ms: 1000,
            memory_mib: 64,
        }
    }

    /// The client runs what it fetches, so it takes only the component the
    /// listing names, and never reads more than a component may be.
    #[test]
    fn a_fetched_handler_must_match_its_listed_digest_and_size() {
        let wasm = b"\0asm the component the server lists".to_vec();
        let remote = Remote::connect(&answering(b"\0asm something else".to_vec()), "t", None).unwrap();
        let listed = info(blake3::hash(&wasm).to_hex().to_string(), wasm.len() as u64);
        let err = remote.source_component(&listed).unwrap_err().to_string();
        assert!(err.contains("does not match the digest"), "{err}");

        let remote = Remote::connect(&answering(wasm.clone()), "t", None).unwrap();
        assert_eq!(remote.source_component(&listed).unwrap(), wasm);

        let huge = info(listed.digest.clone(), model::policy::MAX_COMPONENT_BYTES as u64 + 1);
        let err = remote.source_component(&huge).unwrap_err().to_string();
        assert!(err.contains("over the") && err.contains("byte limit"), "{err}");

        let endless = vec![0u8; model::policy::MAX_COMPONENT_BYTES + 10];
        let remote = Remote::connect(&answering(endless), "t", None).unwrap();
        let err = remote.source_component(&listed).unwrap_err().to_string();
        assert!(err.contains("over the") && err.contains("byte limit"), "{err}");
    }

    /// Plain HTTP carries the token in clear text: only to this machine,
    /// refused before anything is sent.
    #[test]
    fn plain_http_is_only_for_loopback() {
        for ok in ["http://127.0.0.1:8007", "http://127.9.8.7", "http://[::1]:8007/", "http://LocalHost:1"] {
            assert!(plain_http_allowed(ok).is_ok(), "{ok}");
            assert!(Remote::connect(ok, "t", None).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1:8007",
            "http://backup.example.com",
            "http://[::2]:1",
            "http://localhost.evil.com",
        ] {
            let err = Remote::connect(bad, "t", None).unwrap_err().to_string();
            assert!(err.contains("unencrypted") && err.contains("https://"), "{bad}: {err}");
        }
    }

    /// Every answer is read up to the protocol's limit for what it is, and
    /// no further: an oversized or endless body fails, naming the limit.
    #[test]
    fn answers_are_read_up_to_the_protocol_limits() {
        let over = |limit: usize| {
            let remote = Remote::connect(&answering(vec![b' '; limit + 1]), "t", None).unwrap();
            RemoteChunks { remote, session: "s".into() }
        };
        let id = ChunkId::of(b"x");
        let err = over(MAX_CHUNK_BODY).read_chunk(&id).unwrap_err().to_string();
        assert!(err.contains(&format!("over the {MAX_CHUNK_BODY} byte limit")), "{err}");
        let remote = over(MAX_INDEX_BODY).remote;
        let err = remote.get_bytes("/i", MAX_INDEX_BODY, "reading index").unwrap_err().to_string();
        assert!(err.contains(&format!("over the {MAX_INDEX_BODY} byte limit")), "{err}");
        let err = over(MAX_MANIFEST_BODY).remote.source_handlers().unwrap_err().to_string();
        assert!(err.contains(&format!("over the {MAX_MANIFEST_BODY} byte limit")), "{err}");

        let remote = Remote::connect(&endless(), "t", None).unwrap();
        let err = remote.source_handlers().unwrap_err().to_string();
        assert!(err.contains("byte limit"), "{err}");
        let chunks = RemoteChunks { remote: remote.clone(), session: "s".into() };
        let err = chunks.read_chunk(&id).unwrap_err().to_string();
        assert!(err.contains("byte limit"), "{err}");
        let group = model::BackupGroup::new(Namespace::root(), "host", "a").unwrap();
        let err = remote.start_backup(&group, Some(0)).unwrap_err().to_string();
        assert!(err.contains("byte limit"), "{err}");
    }
}
