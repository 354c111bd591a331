//! Cairn's policy host: loads WebAssembly components that target one of the
//! `cairn:policy` worlds (`wit/policy.wit`) and runs them under strict
//! budgets. The only crate that knows wasmtime.
//!
//! Every call gets its own store with:
//! - a CPU budget (an epoch deadline, checked every 10 ms by a ticker
//!   thread, default 1 s), a memory cap (default 64 MiB, growth beyond it
//!   traps), a 512 KiB wasm stack;
//! - NaN canonicalisation, so float results do not depend on the machine;
//! - a minimal WASI: no environment, arguments or sockets, a clock frozen
//!   at the epoch (`now` is an argument), stdout and stderr captured
//!   (64 KiB each); retention and scheduler policies get random bytes from
//!   a fixed seed (they are pure functions), source handlers the operating
//!   system's, and only a source handler gets files (its granted directory,
//!   read-only, special files refused) and HTTP (its granted hosts).
//!
//! A trap, timeout, malformed answer or error fails that one decision with
//! an error naming the policy and version; nothing a guest does can crash
//! or stall the process.
//!
//! Compiling is the other place a component could hurt the process: the
//! daemon's host compiles in a child process with address-space, CPU and
//! wall-clock limits (`compile.rs`), and [`Host::load_with_cache`] loads
//! the compiled artifact a previous load left, sealed with this build's
//! engine fingerprint and a MAC made with the host's secret [`CacheKey`]
//! (`artifact.rs`, `cache_key.rs`), so a stored policy is compiled once
//! per build, not once per use, and a planted artifact is never run.

mod artifact;
mod cache_key;
mod compile;
mod error;
mod fsguard;
mod net;
mod retention;
mod sandbox;
mod scheduler;
mod source;

use std::collections::HashMap;
use std::time::Duration;

pub use artifact::{CacheKey, MAX_ARTIFACT_BYTES};
pub use cache_key::CacheKeyError;
pub use compile::{CompileIn, CompileLimits, compile_child};
pub use error::{CompileLimit, PolicyError};
pub use retention::{RetentionDecision, RetentionSnapshot, VerifyState};
pub use sandbox::{Grants, Limits, SUPPORTED_VERSIONS};
pub use scheduler::{JobRun, ScheduleDecision, ScheduleJob};
pub use source::{Features, ItemKind, MAX_DATA_STEP, Session as SourceSession, SourceItem, SourceStep};

use sandbox::Sandbox;

/// The world a component targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    Retention,
    Scheduler,
    Source,
}

impl World {
    pub fn name(self) -> &'static str {
        match self {
            World::Retention => "retention",
            World::Scheduler => "scheduler",
            World::Source => "source",
        }
    }
}

/// The `cairn:policy` version a component was built against: the host
/// keeps bindings for each one it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WitVersion {
    /// Retention passes ids and tags as strings per snapshot.
    V0_1,
    /// Retention passes scalars per snapshot, distinct strings once.
    V0_2,
}

impl WitVersion {
    pub(crate) fn parse(version: &str) -> Option<Self> {
        match version {
            "0.1.0" => Some(WitVersion::V0_1),
            "0.2.0" => Some(WitVersion::V0_2),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            WitVersion::V0_1 => "0.1.0",
            WitVersion::V0_2 => "0.2.0",
        }
    }
}

/// What a policy says about itself (its `describe` export).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    /// Parameter name → one-line help.
    pub params: Vec<(String, String)>,
}

/// A validated, compiled component.
pub struct Policy {
    component: wasmtime::component::Component,
    pub world: World,
    /// The WIT package version the component was built against.
    wit: WitVersion,
    /// blake3 of the component bytes, hex.
    pub digest: String,
    pub info: PolicyInfo,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("world", &self.world)
            .field("wit_version", &self.wit_version())
            .field("digest", &self.digest)
            .field("info", &self.info)
            .finish()
    }
}

impl Policy {
    /// The WIT package version the component was built against (`0.2.0`).
    pub fn wit_version(&self) -> &'static str {
        self.wit.as_str()
    }

    fn expect_world(&self, world: World) -> Result<(), PolicyError> {
        if self.world == world {
            return Ok(());
        }
        Err(PolicyError::Call {
            policy: self.label(),
            message: format!("it is a {} policy, not a {} policy", self.world.name(), world.name()),
        })
    }

    /// `NAME VERSION (world, digest prefix)`, for error messages.
    pub fn label(&self) -> String {
        format!(
            "policy {} {} ({}, {})",
            self.info.name,
            self.info.version,
            self.world.name(),
            &self.digest[..12]
        )
    }
}

/// How [`Host::load_with_cache`] made a policy ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Deserialized from the cached artifact it was given.
    Cached,
    /// Compiled: there was no cached artifact (`None`), or the one given
    /// could not be used (why: another build, another component, damaged,
    /// not sealed with this host's key…).
    Compiled { cache_problem: Option<String> },
}

/// A policy ready to call, from [`Host::load_with_cache`].
#[derive(Debug)]
pub struct Ready {
    pub policy: Policy,
    pub origin: Origin,
    /// When it was compiled by a host with a cache key: the sealed
    /// artifact to cache for next time (under [`Host::artifact_tag`]).
    pub artifact: Option<Vec<u8>>,
}

/// The engine every policy runs on (one per process), and where it
/// compiles components.
pub struct Host {
    sandbox: Sandbox,
    compiler: CompileIn,
    compile_limits: CompileLimits,
    /// This build's engine fingerprint (`artifact::fingerprint`).
    fingerprint: [u8; 32],
    /// What cached artifacts are sealed and checked with; none: no cache.
    cache_key: Option<CacheKey>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("compiler", &self.compiler)
            .field("compile_limits", &self.compile_limits)
            .finish_non_exhaustive()
    }
}

/// Largest component accepted.
pub use model::policy::MAX_COMPONENT_BYTES;

impl Host {
    /// A host that compiles on the calling thread: for tests, benchmarks
    /// and components that are trusted. The daemon uses
    /// [`Host::with_compiler`] with a child process.
    pub fn new() -> Result<Host, PolicyError> {
        Host::with_compiler(CompileIn::ThisProcess)
    }

    /// A host that compiles where `compiler` says, a child process under
    /// the default [`CompileLimits`] (see [`Host::with_compile_limits`]).
    pub fn with_compiler(compiler: CompileIn) -> Result<Host, PolicyError> {
        let sandbox = Sandbox::new()?;
        let fingerprint = artifact::fingerprint(sandbox.engine());
        Ok(Host { sandbox, compiler, compile_limits: CompileLimits::default(), fingerprint, cache_key: None })
    }

    /// The same host, sealing the artifacts it hands back and checking the
    /// ones it is given with `key`. Without a key the host caches nothing:
    /// [`Host::load_with_cache`] ignores what it is given and hands back no
    /// artifact. Keep the key where whoever can write the cache cannot
    /// read it (outside the datastore): with it, anyone can make an
    /// artifact this host runs as machine code.
    pub fn with_cache_key(mut self, key: CacheKey) -> Host {
        self.cache_key = Some(key);
        self
    }

    /// Whether this host has a cache key (and so uses cached artifacts).
    pub fn caches(&self) -> bool {
        self.cache_key.is_some()
    }

    /// The same host, with other limits on the compiler process.
    pub fn with_compile_limits(mut self, limits: CompileLimits) -> Host {
        self.compile_limits = limits;
        self
    }

    /// Names this build's engine in the cache (16 hex digits of its
    /// fingerprint): an artifact stored under another tag is of another
    /// build. The envelope carries the whole fingerprint and is checked
    /// whatever the name says.
    pub fn artifact_tag(&self) -> String {
        self.fingerprint[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Validate and compile a component (where [`CompileIn`] says): it must
    /// be a component (not a core module) that exports one of the worlds
    /// this host supports, at a WIT version it supports; its `describe`
    /// must answer within `limits`.
    pub fn load(&self, bytes: &[u8], limits: &Limits) -> Result<Policy, PolicyError> {
        sandbox::precheck(bytes)?;
        let hash = blake3::hash(bytes);
        let (component, _) = self.compile(bytes, &hash)?;
        self.ready(component, hash, limits)
    }

    /// Like [`Host::load`], from the cached artifact `cached` when it is
    /// one this build sealed with this host's key for this very component;
    /// when it is missing or unusable, the component is compiled again and
    /// [`Ready::artifact`] holds the artifact to cache instead. A bad cache
    /// never fails the load: only the component itself can. A host without
    /// a key ([`Host::with_cache_key`]) never loads `cached`.
    pub fn load_with_cache(
        &self,
        bytes: &[u8],
        cached: Option<&[u8]>,
        limits: &Limits,
    ) -> Result<Ready, PolicyError> {
        sandbox::precheck(bytes)?;
        let hash = blake3::hash(bytes);
        let mut cache_problem = None;
        match (cached, &self.cache_key) {
            (Some(cached), Some(key)) => {
                match artifact::deserialize(self.sandbox.engine(), key, &self.fingerprint, &hash, cached) {
                    Ok(component) => {
                        let policy = self.ready(component, hash, limits)?;
                        return Ok(Ready { policy, origin: Origin::Cached, artifact: None });
                    }
                    Err(why) => cache_problem = Some(why),
                }
            }
            (Some(_), None) => cache_problem = Some("this host has no cache key to check it with".into()),
            (None, _) => {}
        }
        let (component, payload) = self.compile(bytes, &hash)?;
        let sealed = match &self.cache_key {
            None => None,
            Some(key) => {
                let payload = match payload {
                    Some(payload) => payload,
                    None => component.serialize().map_err(|e| {
                        PolicyError::Host(format!("cannot serialize the compiled component: {e:#}"))
                    })?,
                };
                Some(artifact::seal(key, &self.fingerprint, &hash, &payload))
            }
        };
        let policy = self.ready(component, hash, limits)?;
        Ok(Ready { policy, origin: Origin::Compiled { cache_problem }, artifact: sealed })
    }

    /// Compile where this host compiles; a child also hands back the
    /// serialized component (the payload to seal).
    fn compile(
        &self,
        bytes: &[u8],
        hash: &blake3::Hash,
    ) -> Result<(wasmtime::component::Component, Option<Vec<u8>>), PolicyError> {
        match &self.compiler {
            CompileIn::ThisProcess => Ok((self.sandbox.compile(bytes)?, None)),
            CompileIn::Process { program, args } => {
                let (component, payload) = compile::in_child(
                    program,
                    args,
                    &self.compile_limits,
                    self.sandbox.engine(),
                    &self.fingerprint,
                    hash,
                    bytes,
                )?;
                Ok((component, Some(payload)))
            }
        }
    }

    /// Check a compiled component's world and version, and ask it to
    /// describe itself.
    fn ready(
        &self,
        component: wasmtime::component::Component,
        hash: blake3::Hash,
        limits: &Limits,
    ) -> Result<Policy, PolicyError> {
        let (world, wit) = self.sandbox.world_of(&component)?;
        let info = match world {
            World::Retention => retention::describe(&self.sandbox, &component, wit, limits)?,
            World::Scheduler => scheduler::describe(&self.sandbox, &component, wit, limits)?,
            World::Source => source::describe(&self.sandbox, &component, wit, limits)?,
        };
        check_info(&info)?;
        let digest = hash.to_hex().to_string();
        Ok(Policy { component, world, wit, digest, info })
    }

    /// Instantiate `policy` in a fresh store and call nothing: what every
    /// call pays before the policy runs (the benchmark measures it).
    pub fn instantiate(&self, policy: &Policy, limits: &Limits) -> Result<(), PolicyError> {
        let mut store = self.sandbox.store(limits);
        match self.sandbox.linker().instantiate(&mut store, &policy.component) {
            Ok(_) => Ok(()),
            Err(e) => Err(PolicyError::Call {
                policy: policy.label(),
                message: sandbox::describe_failure(&e, limits, &store.data().stderr),
            }),
        }
    }

    /// Ask a retention policy about the snapshots of one group (`group`:
    /// `TYPE/ID`). The answer is validated: exactly one decision per
    /// snapshot passed in, returned in their order; reasons short and
    /// printable. Protected snapshots are always kept, whatever the policy
    /// says (the reason then says so).
    pub fn retention(
        &self,
        policy: &Policy,
        group: &str,
        snapshots: &[RetentionSnapshot],
        now: i64,
        params: &[(String, String)],
        limits: &Limits,
    ) -> Result<Vec<RetentionDecision>, PolicyError> {
        policy.expect_world(World::Retention)?;
        retention::decide(&self.sandbox, policy, group, snapshots, now, params, limits)
    }

    /// Start a source handler with what `grants` allows: the session
    /// knows the handler's capabilities and runs its backup or restore.
    /// `limits` of `None` means [`Host::source_limits`].
    pub fn source(
        &self,
        policy: &Policy,
        grants: &Grants,
        limits: Option<&Limits>,
    ) -> Result<SourceSession, PolicyError> {
        policy.expect_world(World::Source)?;
        source::open(&self.sandbox, policy, grants, limits.unwrap_or(&Host::source_limits()))
    }

    /// A source handler's default budgets: 10 s of CPU per call, 256 MiB
    /// of memory for the whole session.
    pub fn source_limits() -> Limits {
        source::default_limits()
    }

    /// Ask a scheduler policy whether `job` runs now, with which tags, and
    /// when to ask again (checked: after `now`, within a year; tags short
    /// and printable).
    pub fn schedule(
        &self,
        policy: &Policy,
        job: &ScheduleJob,
        runs: &[JobRun],
        now: i64,
        limits: &Limits,
    ) -> Result<ScheduleDecision, PolicyError> {
        policy.expect_world(World::Scheduler)?;
        scheduler::decide(&self.sandbox, policy, job, runs, now, limits)
    }
}

fn check_info(info: &PolicyInfo) -> Result<(), PolicyError> {
    let ok_name = !info.name.is_empty()
        && info.name.len() <= 64
        && info.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !ok_name {
        return Err(PolicyError::Invalid(format!("policy name {:?} is not a short plain name", info.name)));
    }
    if !printable(&info.version, 64) || info.version.is_empty() {
        return Err(PolicyError::Invalid(format!(
            "policy version {:?} is empty, too long or not printable",
            info.version
        )));
    }
    if !printable(&info.description, 1000) {
        return Err(PolicyError::Invalid("the description is over 1000 bytes or not printable".into()));
    }
    if info.params.len() > 64 {
        return Err(PolicyError::Invalid("more than 64 parameters described".into()));
    }
    let mut seen = HashMap::new();
    for (k, help) in &info.params {
        if !printable(k, 64) || !printable(help, 300) {
            return Err(PolicyError::Invalid(format!(
                "parameter {:?} has a name or help that is too long or not printable",
                clip(k)
            )));
        }
        if seen.insert(k.as_str(), ()).is_some() {
            return Err(PolicyError::Invalid(format!("parameter {k:?} is described twice")));
        }
    }
    Ok(())
}

/// At most `max` bytes and no control characters (no terminal escapes).
fn printable(text: &str, max: usize) -> bool {
    text.len() <= max && !text.chars().any(char::is_control)
}

/// Text from a guest, made safe to print: at most 300 characters, control
/// characters replaced.
pub(crate) fn clip(text: &str) -> String {
    let mut out: String = text.chars().take(300).map(|c| if c.is_control() { '?' } else { c }).collect();
    if text.chars().count() > 300 {
        out.push('…');
    }
    out
}

/// Default budgets: 1 s of CPU and 64 MiB of memory per call.
impl Default for Limits {
    fn default() -> Self {
        Limits { cpu: Duration::from_secs(1), memory: 64 << 20 }
    }
}
