//! Stored policies for both faces of the binary, the CLI and the server:
//! adding a component, loading one ready to call (through the compiled-
//! artifact cache; components compile in a child process, this binary run
//! as `cairn __compile-policy`), pruning with a retention policy and the
//! prune simulator. Both render what these return.
//!
//! The cache's artifacts are sealed with a key kept outside the datastore,
//! in the state directory of the user running Cairn ([`cache_key_path`]):
//! whoever can write the datastore but not that directory cannot plant
//! machine code the host runs.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use engine::Engine;
use engine::ops::{BadRequest, Decider};
use model::PolicyRecord;
use model::{BackupGroup, SnapshotInfo};
use policy::{CacheKey, CompileIn, Host, Limits, Origin, Policy, RetentionSnapshot, VerifyState, World};
use serde::Serialize;

/// A policy name that is not stored.
#[derive(Debug, thiserror::Error)]
#[error("no policy named {0:?}")]
pub struct NoSuchPolicy(pub String);

/// A policy name as the store takes it, or a 400 saying why not.
pub fn check_name(name: &str) -> Result<()> {
    if !model::policy::valid_name(name) {
        bail!(BadRequest(format!(
            "policy name {:?}: {}",
            name.chars().take(80).collect::<String>(),
            model::policy::NAME_RULE
        )));
    }
    Ok(())
}

/// The policy host of this process. Components compile in a child
/// process, this binary run as `cairn __compile-policy`, under the policy
/// crate's default limits (2 GiB of address space, 60 s of CPU, 120 s).
/// The child is started through `/proc/self/exe`, which names the running
/// binary even after an upgrade replaced the file on disk, so it is always
/// this very build (and its artifacts load here). Its cache key is the
/// one in [`cache_key_path`]; without one it caches nothing.
pub fn host() -> Result<Host> {
    let proc_exe = PathBuf::from("/proc/self/exe");
    let program = if proc_exe.exists() {
        proc_exe
    } else {
        std::env::current_exe().context("cannot find the cairn binary to compile policies with")?
    };
    let host = Host::with_compiler(CompileIn::Process { program, args: vec!["__compile-policy".into()] })?;
    Ok(match cache_key() {
        Some(key) => host.with_cache_key(key),
        None => host,
    })
}

/// Name of the file that keeps the compiled-policy cache key.
const CACHE_KEY_FILE: &str = "policy-cache.key";

/// Where the compiled-policy cache key of the user running Cairn lives,
/// outside any datastore: the service's state directory (systemd's
/// `$STATE_DIRECTORY`, `/var/lib/cairn` for the unit shipped), else
/// `$XDG_STATE_HOME/cairn`, else `~/.local/state/cairn`. `None` when none
/// of these is set to an absolute path.
pub fn cache_key_path() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).map(PathBuf::from).filter(|p| p.is_absolute());
    let state = std::env::var_os("STATE_DIRECTORY")
        .and_then(|v| v.to_str().and_then(|v| v.split(':').next()).map(PathBuf::from))
        .filter(|p| p.is_absolute());
    let dir = state
        .or_else(|| var("XDG_STATE_HOME").map(|d| d.join("cairn")))
        .or_else(|| var("HOME").map(|h| h.join(".local/state/cairn")))?;
    Some(dir.join(CACHE_KEY_FILE))
}

/// The cache key, made on first use; `None` (and a warning: policies are
/// then compiled each time they load) when it cannot be had.
fn cache_key() -> Option<CacheKey> {
    let Some(path) = cache_key_path() else {
        tracing::warn!(
            "compiled policies are not cached: no state directory for the cache key \
             (set XDG_STATE_HOME or HOME)"
        );
        return None;
    };
    CacheKey::load_or_create(&path).map_err(|e| tracing::warn!("compiled policies are not cached: {e}")).ok()
}

/// `engine`'s datastore as the cache, when `host` has a key and the key
/// is not inside that datastore (where it would protect nothing).
fn cache_of<'e>(engine: &'e Engine, host: &Host) -> Option<&'e Engine> {
    if !host.caches() {
        return None;
    }
    let key = cache_key_path()?;
    let canonical = |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    let (root, key_dir) = (canonical(engine.datastore().root()), canonical(key.parent()?));
    if key_dir.starts_with(&root) {
        tracing::warn!(
            "compiled policies are not cached: the cache key {} is inside the datastore {}, where it \
             protects nothing; point XDG_STATE_HOME (or the service's StateDirectory) outside it",
            key.display(),
            root.display()
        );
        return None;
    }
    Some(engine)
}

/// The budget for one call; values from a stored record are clamped to
/// what `policy add` accepts, whatever the file says.
fn budget(cpu_ms: u64, memory_mib: u64) -> Limits {
    Limits {
        cpu: std::time::Duration::from_millis(cpu_ms.clamp(10, 60_000)),
        memory: (memory_mib.clamp(1, 4096) as usize) << 20,
    }
}

/// Validate and compile `wasm` (in the child), store it under `name`
/// (default: the name the policy gives itself) with its budget (default:
/// 1 s and 64 MiB per call; a source handler's 10 s per call and 256 MiB
/// per session), and cache its compiled form.
pub fn add(
    engine: &Engine,
    host: &Host,
    wasm: &[u8],
    name: Option<&str>,
    cpu_ms: Option<u64>,
    memory_mib: Option<u64>,
    now: i64,
) -> Result<PolicyRecord> {
    let ready = host.load_with_cache(wasm, None, &Limits::default())?;
    let p = &ready.policy;
    let defaults = match p.world {
        World::Source => Host::source_limits(),
        _ => Limits::default(),
    };
    let name = name.map_or_else(|| p.info.name.clone(), str::to_owned);
    check_name(&name)?;
    let record = PolicyRecord {
        name,
        world: p.world.name().into(),
        wit_version: p.wit_version().to_owned(),
        policy_name: p.info.name.clone(),
        policy_version: p.info.version.clone(),
        description: p.info.description.clone(),
        params: p.info.params.clone(),
        digest: p.digest.clone(),
        size: wasm.len() as u64,
        added: now,
        cpu_ms: cpu_ms.unwrap_or(defaults.cpu.as_millis() as u64).clamp(10, 60_000),
        memory_mib: memory_mib.unwrap_or((defaults.memory >> 20) as u64).clamp(1, 4096),
    };
    engine.save_policy(&record, wasm)?;
    if let (Some(engine), Some(artifact)) = (cache_of(engine, host), &ready.artifact) {
        cache_artifact(engine, &record.digest, &host.artifact_tag(), artifact);
    }
    Ok(record)
}

/// Policy `record` (component `wasm`) ready to call, with its budget:
/// from the compiled artifact `cache`'s datastore keeps for this build
/// when it is usable (sealed with the host's key), otherwise compiled
/// again and the cache rewritten. Trouble with the cache is logged, never
/// fatal; only the component can fail this. Without a cache (a client
/// running a server's source handler, or no cache key) it is compiled
/// each time.
pub fn ready(
    cache: Option<&Engine>,
    host: &Host,
    record: &PolicyRecord,
    wasm: &[u8],
) -> Result<(Policy, Limits)> {
    let cache = cache.and_then(|engine| cache_of(engine, host));
    let (name, tag) = (&record.name, host.artifact_tag());
    let cached = cache.and_then(|engine| {
        engine.datastore().load_policy_artifact(&record.digest, &tag).unwrap_or_else(|e| {
            tracing::warn!("policy {name}: cannot read its compiled artifact, compiling it again: {e}");
            None
        })
    });
    let limits = budget(record.cpu_ms, record.memory_mib);
    let ready =
        host.load_with_cache(wasm, cached.as_deref(), &limits).with_context(|| format!("policy {name}"))?;
    match &ready.origin {
        Origin::Cached => tracing::debug!("policy {name}: loaded its compiled artifact"),
        Origin::Compiled { cache_problem: None } => {
            tracing::info!("policy {name}: compiled (nothing cached)")
        }
        Origin::Compiled { cache_problem: Some(why) } => {
            tracing::warn!(
                "policy {name}: its cached compiled artifact is unusable ({why}); compiled it again"
            )
        }
    }
    if let (Some(engine), Some(artifact)) = (cache, &ready.artifact) {
        cache_artifact(engine, &record.digest, &tag, artifact);
    }
    Ok((ready.policy, limits))
}

/// Write a compiled artifact to the cache; a failure only costs a compile
/// next time.
fn cache_artifact(engine: &Engine, digest: &str, tag: &str, artifact: &[u8]) {
    if let Err(e) = engine.datastore().save_policy_artifact(digest, tag, artifact) {
        tracing::warn!("cannot cache the compiled policy component {}: {e}", &digest[..12]);
    }
}

/// Stored policy `name` of world `world`, ready to call.
pub fn load(
    engine: &Engine,
    host: &Host,
    name: &str,
    world: World,
) -> Result<(PolicyRecord, Policy, Limits)> {
    check_name(name)?;
    let (record, wasm) = engine.load_policy(name)?.ok_or_else(|| NoSuchPolicy(name.to_owned()))?;
    if record.world != world.name() {
        bail!(BadRequest(format!(
            "policy {name} is a {} policy, not a {} policy",
            record.world,
            world.name()
        )));
    }
    let (policy, limits) = ready(Some(engine), host, &record, &wasm)?;
    Ok((record, policy, limits))
}

/// `KEY=VALUE` parameters for a policy, as `--param` and the dashboard's
/// forms give them (a value may hold `=` and spaces).
pub fn parse_params<S: AsRef<str>>(raw: impl IntoIterator<Item = S>) -> Result<Vec<(String, String)>> {
    model::policy::parse_params(raw).map_err(|e| anyhow!(BadRequest(e)))
}

/// A decider for `Engine::prune_with` that asks retention policy `name`
/// with `now` as the time.
pub fn retention_decider(
    engine: &Engine,
    name: &str,
    params: Vec<(String, String)>,
    now: i64,
) -> Result<Box<Decider<'static>>> {
    let host = host()?;
    let (_, policy, limits) = load(engine, &host, name, World::Retention)?;
    Ok(Box::new(move |group: &BackupGroup, infos: &[SnapshotInfo]| {
        let snaps: Vec<RetentionSnapshot> = infos.iter().map(to_retention).collect();
        let decisions = host.retention(&policy, &group.to_string(), &snaps, now, &params, &limits)?;
        Ok(decisions.into_iter().map(|d| (d.keep, d.reason)).collect())
    }))
}

pub fn to_retention(i: &SnapshotInfo) -> RetentionSnapshot<'_> {
    RetentionSnapshot {
        time: i.id.time,
        tags: &i.tags,
        size: i.size,
        protected: i.protected,
        verify_state: match i.verify {
            model::VerifyState::None => VerifyState::None,
            model::VerifyState::Ok => VerifyState::Ok,
            model::VerifyState::Failed => VerifyState::Failed,
        },
    }
}

/// `30m`, `6h`, `1d`, `1w` in seconds (at most ten years).
pub fn parse_every(text: &str) -> Result<i64> {
    let (num, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: i64 = num.parse().map_err(|_| anyhow!("every {text:?}: expected a number and m, h, d or w"))?;
    let unit = match unit {
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => bail!("every {text:?}: the unit is m, h, d or w"),
    };
    if n <= 0 {
        bail!("every {text:?}: must be positive");
    }
    n.checked_mul(unit)
        .filter(|s| *s <= 10 * 366 * 86_400)
        .ok_or_else(|| anyhow!("every {text:?}: at most ten years"))
}

#[derive(Debug, Serialize)]
pub struct SimRemoved {
    pub at: String,
    pub id: String,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct SimKept {
    pub id: String,
    pub reason: String,
}

/// What the prune simulator found.
#[derive(Debug, Serialize)]
pub struct Simulation {
    pub steps: u64,
    /// The time of the last step.
    pub until: String,
    /// How many snapshots the group has now.
    pub snapshots: usize,
    pub removed: Vec<SimRemoved>,
    pub kept: Vec<SimKept>,
}

/// When a simulation steps: from `from` (default: the oldest snapshot's
/// time) to `to` (default: the newest's) by `every` seconds.
#[derive(Debug, Clone, Copy)]
pub struct SimSpan {
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub every: i64,
}

/// Longest a simulation may run.
pub const MAX_SIMULATION: std::time::Duration = std::time::Duration::from_secs(60);

/// Most steps a simulation may take.
pub const MAX_STEPS: i64 = 100_000;

/// Replay retention policy `name` over `group`'s real snapshots at each
/// step of `span`: the snapshots made by each step join, the
/// policy decides with `now` at that step, and those it removes leave.
/// Nothing is removed for real.
pub fn simulate(
    engine: &Engine,
    host: &Host,
    name: &str,
    group: &BackupGroup,
    span: SimSpan,
    params: &[(String, String)],
) -> Result<Simulation> {
    let SimSpan { from, to, every } = span;
    let (_, policy, limits) = load(engine, host, name, World::Retention)?;
    let infos = engine.snapshots(Some(group))?;
    let (Some(first), Some(last)) = (infos.first(), infos.last()) else {
        bail!(BadRequest(format!("group {group} has no snapshots to simulate with")));
    };
    let (from, to) = (from.unwrap_or(first.id.time), to.unwrap_or(last.id.time));
    if every <= 0 || to < from || (to - from) / every > MAX_STEPS {
        bail!(BadRequest(format!("from, to and every give no steps or more than {MAX_STEPS}")));
    }
    let group_name = group.to_string();
    let mut alive: Vec<&SnapshotInfo> = Vec::new();
    let mut next = 0;
    let (mut removed, mut kept, mut steps) = (Vec::new(), Vec::new(), 0u64);
    let started = std::time::Instant::now();
    let mut t = from;
    while t <= to {
        if started.elapsed() > MAX_SIMULATION {
            bail!(BadRequest(format!(
                "the simulation ran over {} s after {steps} steps; use a longer step or a shorter span",
                MAX_SIMULATION.as_secs()
            )));
        }
        while next < infos.len() && infos[next].id.time <= t {
            alive.push(&infos[next]);
            next += 1;
        }
        let snaps: Vec<RetentionSnapshot> = alive.iter().map(|i| to_retention(i)).collect();
        let decisions = host.retention(&policy, &group_name, &snaps, t, params, &limits)?;
        kept.clear();
        let mut still = Vec::new();
        // The kept ones' ids are written out once, at the end.
        for (info, d) in alive.iter().zip(decisions) {
            if d.keep {
                still.push(*info);
                kept.push((*info, d.reason));
            } else {
                removed.push(SimRemoved {
                    at: model::time::format_rfc3339(t),
                    id: info.id.to_string(),
                    reason: d.reason,
                });
            }
        }
        alive = still;
        steps += 1;
        t += every;
    }
    Ok(Simulation {
        steps,
        until: model::time::format_rfc3339(t - every),
        snapshots: infos.len(),
        removed,
        kept: kept.into_iter().map(|(info, reason)| SimKept { id: info.id.to_string(), reason }).collect(),
    })
}
