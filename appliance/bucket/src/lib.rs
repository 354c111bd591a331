//! S3-compatible object storage for the datastore, behind a blocking API.
//!
//! The `object_store` crate speaks S3 (signing, retries with backoff on
//! throttling, 5xx answers, resets and timeouts); this crate runs it on a
//! small runtime of its own, so callers stay plain threads: every call here
//! blocks until its answer. `Uploads` puts many objects at once, with a
//! bound on how many are in flight (and so on memory).
//!
//! Invariant: the only crate under the engine that knows tokio. Nothing
//! here knows chunks or snapshots: keys are text, values bytes.

mod credentials;
mod uploads;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
};

pub use credentials::{Credentials, DEFAULT_CREDENTIALS_FILE, Secret};
pub use uploads::Uploads;

/// Where a bucket is and how to reach it (credentials apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// `http://host:port` or `https://host`; path-style requests are used.
    pub endpoint: String,
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing `/`; may be empty).
    pub prefix: String,
    pub region: String,
}

/// What went wrong talking to the object store, in the operator's terms.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BucketError {
    #[error("object {0} is not in the bucket")]
    NotFound(String),
    #[error("object {0} already exists in the bucket")]
    Exists(String),
    #[error(
        "the object store refused the credentials for bucket {bucket} ({detail}); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or the credentials file, and the key's permissions on the bucket"
    )]
    Denied { bucket: String, detail: String },
    #[error(
        "the object store rejected the region of the requests for bucket {bucket} ({detail}); give the bucket's region (--region)"
    )]
    WrongRegion { bucket: String, detail: String },
    #[error("bucket {bucket} does not exist at {endpoint}; create it (or check --bucket and the URL)")]
    NoBucket { bucket: String, endpoint: String },
    #[error("object store at {endpoint}: {op} {key} failed after retries: {detail}")]
    Failed { endpoint: String, op: &'static str, key: String, detail: String },
    #[error("{0}")]
    Settings(String),
}

pub type Result<T, E = BucketError> = std::result::Result<T, E>;

/// Requests made and bytes moved by this process (retries of one request
/// inside the S3 client are not counted again).
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub puts: AtomicU64,
    pub gets: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
}

/// A snapshot of `Counters`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterValues {
    pub requests: u64,
    pub puts: u64,
    pub gets: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

impl Counters {
    pub fn values(&self) -> CounterValues {
        CounterValues {
            requests: self.requests.load(Ordering::Relaxed),
            puts: self.puts.load(Ordering::Relaxed),
            gets: self.gets.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
        }
    }
}

/// The process's counters, for `cairn backup -v` and the benchmarks.
pub fn counters() -> &'static Counters {
    static C: OnceLock<Counters> = OnceLock::new();
    C.get_or_init(Counters::default)
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cairn-s3")
            .enable_all()
            .build()
            .expect("the object store's runtime starts")
    })
}

/// Run a future on this crate's runtime and wait for it from a plain
/// thread (also from a blocking thread of another runtime: the answer
/// comes back over a channel, never through `block_on`).
fn wait<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().expect("the object store's task answers")
}

/// One bucket (and prefix) of an object store.
#[derive(Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    name: String,
    endpoint: String,
    /// Objects written through this bucket and its clones (the process's
    /// [`counters`] count those of every bucket).
    puts: Arc<AtomicU64>,
}

impl fmt::Debug for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bucket({} at {}, prefix {:?})", self.name, self.endpoint, self.prefix)
    }
}

impl Bucket {
    /// An S3 bucket. Nothing is requested yet: the first call finds out
    /// whether the bucket is there and the credentials are good.
    pub fn s3(loc: &S3Location, creds: &Credentials) -> Result<Self> {
        // (Newer rustls deprecates ring's provider in favour of
        // post-quantum key exchange; the workspace's pins still offer it.)
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        let url = reqwest::Url::parse(&loc.endpoint)
            .map_err(|e| BucketError::Settings(format!("invalid S3 URL {}: {e}", loc.endpoint)))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(BucketError::Settings(format!(
                "invalid S3 URL {}: expected http://HOST[:PORT] or https://HOST[:PORT]",
                loc.endpoint
            )));
        }
        if loc.bucket.is_empty() {
            return Err(BucketError::Settings("the bucket name is empty".into()));
        }
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(15),
                base: 2.0,
            },
            max_retries: 10,
            retry_timeout: Duration::from_secs(180),
        };
        let client = ClientOptions::new()
            .with_allow_http(url.scheme() == "http")
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(60))
            .with_pool_max_idle_per_host(64);
        let store = AmazonS3Builder::new()
            .with_endpoint(loc.endpoint.trim_end_matches('/'))
            .with_bucket_name(&loc.bucket)
            .with_region(if loc.region.is_empty() { "us-east-1" } else { &loc.region })
            .with_access_key_id(&creds.access_key_id)
            .with_secret_access_key(creds.secret_access_key.expose())
            .with_virtual_hosted_style_request(false)
            .with_allow_http(url.scheme() == "http")
            .with_retry(retry)
            .with_client_options(client)
            .build()
            .map_err(|e| BucketError::Settings(e.to_string()))?;
        Ok(Self {
            store: Arc::new(store),
            prefix: loc.prefix.trim_matches('/').to_owned(),
            name: loc.bucket.clone(),
            endpoint: loc.endpoint.clone(),
            puts: Arc::default(),
        })
    }

    /// A bucket in memory, for tests of the layers above.
    pub fn memory() -> Self {
        Self {
            store: Arc::new(object_store::memory::InMemory::new()),
            prefix: String::new(),
            name: "memory".into(),
            endpoint: "memory:".into(),
            puts: Arc::default(),
        }
    }

    /// Objects written through this bucket and its clones so far.
    pub fn puts(&self) -> u64 {
        self.puts.load(Ordering::Relaxed)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn path(&self, key: &str) -> ObjPath {
        if self.prefix.is_empty() {
            ObjPath::from(key)
        } else {
            ObjPath::from(format!("{}/{key}", self.prefix))
        }
    }

    fn unprefix<'a>(&self, full: &'a str) -> &'a str {
        if self.prefix.is_empty() {
            full
        } else {
            full.strip_prefix(&self.prefix).and_then(|s| s.strip_prefix('/')).unwrap_or(full)
        }
    }

    fn error(&self, op: &'static str, key: &str, e: object_store::Error) -> BucketError {
        classify(&self.name, &self.endpoint, op, key, e)
    }

    /// The object's bytes, or `None` when there is no such object. The S3
    /// client retries a request that fails before its answer starts; a
    /// body cut off in the middle is asked for again here.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let mut attempt = 0;
        loop {
            match self.get_once(key) {
                Err(BucketError::Failed { .. }) if attempt < 4 => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(100 << attempt));
                }
                other => return other,
            }
        }
    }

    fn get_once(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let (store, path) = (self.store.clone(), self.path(key));
        counters().requests.fetch_add(1, Ordering::Relaxed);
        counters().gets.fetch_add(1, Ordering::Relaxed);
        let got = wait(async move {
            let r = store.get(&path).await?;
            r.bytes().await
        });
        match got {
            Ok(b) => {
                counters().bytes_received.fetch_add(b.len() as u64, Ordering::Relaxed);
                Ok(Some(b.to_vec()))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("GET", key, e)),
        }
    }

    /// Store an object (replacing one of the same key).
    pub fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.put_mode(key, bytes, PutMode::Overwrite)
    }

    /// Store an object only if the key is free; `Exists` otherwise. The PUT
    /// carries `If-None-Match: *`; a HEAD before it also catches servers
    /// that ignore that header (two writers can still race there).
    pub fn put_new(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        if self.head(key)?.is_some() {
            return Err(BucketError::Exists(key.to_owned()));
        }
        self.put_mode(key, bytes, PutMode::Create)
    }

    fn put_mode(&self, key: &str, bytes: Vec<u8>, mode: PutMode) -> Result<()> {
        let (store, path) = (self.store.clone(), self.path(key));
        let n = bytes.len() as u64;
        counters().requests.fetch_add(1, Ordering::Relaxed);
        counters().puts.fetch_add(1, Ordering::Relaxed);
        self.puts.fetch_add(1, Ordering::Relaxed);
        let opts = PutOptions { mode, ..Default::default() };
        let r = wait(async move { store.put_opts(&path, PutPayload::from(Bytes::from(bytes)), opts).await });
        match r {
            Ok(_) => {
                counters().bytes_sent.fetch_add(n, Ordering::Relaxed);
                Ok(())
            }
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                Err(BucketError::Exists(key.to_owned()))
            }
            Err(e) => Err(self.error("PUT", key, e)),
        }
    }

    /// The object's size, or `None` when there is none.
    pub fn head(&self, key: &str) -> Result<Option<u64>> {
        let (store, path) = (self.store.clone(), self.path(key));
        counters().requests.fetch_add(1, Ordering::Relaxed);
        match wait(async move { store.head(&path).await }) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("HEAD", key, e)),
        }
    }

    /// Delete an object; a missing one is not an error.
    pub fn delete(&self, key: &str) -> Result<()> {
        let (store, path) = (self.store.clone(), self.path(key));
        counters().requests.fetch_add(1, Ordering::Relaxed);
        match wait(async move { store.delete(&path).await }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("DELETE", key, e)),
        }
    }

    /// Copy an object inside the bucket.
    pub fn copy(&self, from: &str, to: &str) -> Result<()> {
        let (store, a, b) = (self.store.clone(), self.path(from), self.path(to));
        counters().requests.fetch_add(1, Ordering::Relaxed);
        match wait(async move { store.copy(&a, &b).await }) {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Err(BucketError::NotFound(from.to_owned())),
            Err(e) => Err(self.error("COPY", from, e)),
        }
    }

    /// Every object whose key starts with `prefix/` (a directory-like
    /// prefix; empty for all): (key, size), in key order.
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let store = self.store.clone();
        let dir = match (self.prefix.is_empty(), prefix.trim_matches('/')) {
            (true, "") => None,
            (true, p) => Some(ObjPath::from(p)),
            (false, "") => Some(ObjPath::from(self.prefix.as_str())),
            (false, p) => Some(ObjPath::from(format!("{}/{p}", self.prefix))),
        };
        counters().requests.fetch_add(1, Ordering::Relaxed);
        let r = wait(async move { store.list(dir.as_ref()).try_collect::<Vec<_>>().await });
        let mut out: Vec<(String, u64)> = match r {
            Ok(metas) => {
                metas.into_iter().map(|m| (self.unprefix(m.location.as_ref()).to_owned(), m.size)).collect()
            }
            Err(e) => return Err(self.error("LIST", prefix, e)),
        };
        out.sort();
        Ok(out)
    }

    /// Check that the bucket is there and the credentials work: a listing
    /// of one key prefix.
    pub fn probe(&self) -> Result<()> {
        self.list("cairn-probe-nothing-here").map(|_| ())
    }

    /// A set of uploads running at once (at most `in_flight`).
    pub fn uploads(&self, in_flight: usize) -> Uploads {
        Uploads::new(self.clone(), in_flight)
    }

    pub(crate) fn put_async(
        &self,
        key: String,
        bytes: Vec<u8>,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let (store, path) = (self.store.clone(), self.path(&key));
        let this = self.clone();
        async move {
            let n = bytes.len() as u64;
            counters().requests.fetch_add(1, Ordering::Relaxed);
            counters().puts.fetch_add(1, Ordering::Relaxed);
            this.puts.fetch_add(1, Ordering::Relaxed);
            match store.put(&path, PutPayload::from(Bytes::from(bytes))).await {
                Ok(_) => {
                    counters().bytes_sent.fetch_add(n, Ordering::Relaxed);
                    Ok(())
                }
                Err(e) => Err(this.error("PUT", &key, e)),
            }
        }
    }
}

fn classify(
    bucket: &str,
    endpoint: &str,
    op: &'static str,
    key: &str,
    e: object_store::Error,
) -> BucketError {
    let text = e.to_string();
    let chain = {
        let mut s = text.clone();
        let mut src = std::error::Error::source(&e);
        while let Some(inner) = src {
            s.push_str(": ");
            s.push_str(&inner.to_string());
            src = inner.source();
        }
        s
    };
    if chain.contains("AuthorizationHeaderMalformed") || chain.contains("IncorrectEndpoint") {
        return BucketError::WrongRegion { bucket: bucket.to_owned(), detail: short(&chain) };
    }
    if chain.contains("NoSuchBucket") {
        return BucketError::NoBucket { bucket: bucket.to_owned(), endpoint: endpoint.to_owned() };
    }
    match e {
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
            BucketError::Denied { bucket: bucket.to_owned(), detail: short(&chain) }
        }
        object_store::Error::NotFound { .. } => BucketError::NotFound(key.to_owned()),
        _ if chain.contains("403 Forbidden")
            || chain.contains("AccessDenied")
            || chain.contains("InvalidAccessKeyId")
            || chain.contains("SignatureDoesNotMatch") =>
        {
            BucketError::Denied { bucket: bucket.to_owned(), detail: short(&chain) }
        }
        _ => BucketError::Failed {
            endpoint: endpoint.to_owned(),
            op,
            key: key.to_owned(),
            detail: short(&chain),
        },
    }
}

/// Error text without the server's whole XML body.
fn short(s: &str) -> String {
    let mut out: String = s.chars().take(400).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests;
