//! `cairn policy add|list|show|rm`, running a retention policy for
//! `cairn prune --policy`, and loading stored policies through the
//! compiled-artifact cache (components compile in a child process, this
//! binary run as `cairn __compile-policy`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use engine::Engine;
use engine::PolicyRecord;
use engine::ops::Decider;
use model::SnapshotInfo;
use policy::{CompileIn, Host, Limits, Origin, Policy, RetentionSnapshot, VerifyState};
use serde::Serialize;

use super::{Cli, now, open};
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Validate a WebAssembly component and store it under a name.
    #[command(after_long_help = "\
The component must target a world of the cairn:policy WIT package (wit/policy.wit) at a version \
this build runs, and compile in a child process within 2 GiB of address space, 20 s of CPU and \
60 s; its `describe` must answer within the default budget. The component is stored in the \
datastore (policies/<blake3>.wasm) with a record naming it, and its compiled form is cached next \
to it for this build; adding another component under the same name replaces the record.")]
    Add {
        /// The component, built for wasm32-wasip2.
        #[arg(value_name = "FILE.wasm")]
        file: PathBuf,
        /// Name to use with --policy (default: the name the policy gives itself).
        #[arg(long)]
        name: Option<String>,
        /// CPU budget per call, in milliseconds [default: 1000; source handlers 10000].
        #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(10..=60_000))]
        cpu_ms: Option<u64>,
        /// Memory cap per call (a source handler's: per backup or restore), in MiB [default: 64;
        /// source handlers 256].
        #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=4096))]
        memory_mib: Option<u64>,
    },
    /// List stored policies.
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Show one policy: world, versions, digest and the parameters it documents.
    Show {
        name: String,
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Remove a stored policy.
    Rm { name: String },
    /// Replay a retention policy over a group's real snapshots as time passes.
    #[command(after_long_help = "\
Like the Proxmox Backup Server prune simulator, but on the group's real snapshots and for any \
retention policy: time steps from --from to --to by --every; at each step the snapshots made by \
then join, the policy decides with `now` set to that step, and the snapshots it removes leave. \
Prints when each snapshot would go, and what is left at the end with the reasons. Nothing is \
removed for real.")]
    Simulate(SimulateArgs),
}

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// The retention policy.
    name: String,
    /// The group, TYPE/ID.
    group: String,
    #[command(flatten)]
    ns: super::NsArg,
    /// First step, RFC 3339 (default: the oldest snapshot's time).
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// Last step, RFC 3339 (default: the newest snapshot's time).
    #[arg(long, value_name = "TIME")]
    to: Option<String>,
    /// Step length: 30m, 6h, 1d, 1w.
    #[arg(long, default_value = "1d", value_name = "DURATION")]
    every: String,
    /// A parameter for the policy, KEY=VALUE (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Print a JSON object {steps, removed: [{at, id, reason}], kept: [{id, reason}]}.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct RecordJson<'a> {
    name: &'a str,
    world: &'a str,
    wit_version: &'a str,
    policy_name: &'a str,
    policy_version: &'a str,
    description: &'a str,
    params: Vec<ParamJson<'a>>,
    digest: &'a str,
    size: u64,
    added: String,
    cpu_ms: u64,
    memory_mib: u64,
}

#[derive(Serialize)]
struct ParamJson<'a> {
    name: &'a str,
    help: &'a str,
}

fn record_json(r: &PolicyRecord) -> RecordJson<'_> {
    RecordJson {
        name: &r.name,
        world: &r.world,
        wit_version: &r.wit_version,
        policy_name: &r.policy_name,
        policy_version: &r.policy_version,
        description: &r.description,
        params: r.params.iter().map(|(k, v)| ParamJson { name: k, help: v }).collect(),
        digest: &r.digest,
        size: r.size,
        added: model::time::format_rfc3339(r.added),
        cpu_ms: r.cpu_ms,
        memory_mib: r.memory_mib,
    }
}

pub fn run(cli: &Cli, c: &PolicyCommand) -> Result<ExitCode> {
    let engine = open(cli)?;
    let ds = engine.datastore();
    match c {
        PolicyCommand::Add { file, name, cpu_ms, memory_mib } => {
            let wasm = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let host = host()?;
            let ready = host.load_with_cache(&wasm, None, &Limits::default())?;
            let p = &ready.policy;
            let defaults = match p.world {
                policy::World::Source => Host::source_limits(),
                _ => Limits::default(),
            };
            let record = PolicyRecord {
                name: name.clone().unwrap_or_else(|| p.info.name.clone()),
                world: p.world.name().into(),
                wit_version: p.wit_version.clone(),
                policy_name: p.info.name.clone(),
                policy_version: p.info.version.clone(),
                description: p.info.description.clone(),
                params: p.info.params.clone(),
                digest: p.digest.clone(),
                size: wasm.len() as u64,
                added: now(),
                cpu_ms: cpu_ms.unwrap_or(defaults.cpu.as_millis() as u64),
                memory_mib: memory_mib.unwrap_or((defaults.memory >> 20) as u64),
            };
            ds.save_policy(&record, &wasm)?;
            if let Some(artifact) = &ready.artifact {
                cache_artifact(&engine, &record.digest, &host.artifact_tag(), artifact);
            }
            println!(
                "added {} policy {} ({} {}, cairn:policy@{}, blake3 {})",
                record.world,
                record.name,
                record.policy_name,
                record.policy_version,
                record.wit_version,
                &record.digest[..16]
            );
        }
        PolicyCommand::List { json } => {
            let all = ds.list_policies()?;
            if *json {
                output::json(&all.iter().map(record_json).collect::<Vec<_>>());
            } else {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|r| {
                        vec![
                            r.name.clone(),
                            r.world.clone(),
                            format!("{} {}", r.policy_name, r.policy_version),
                            r.digest[..12].to_owned(),
                            output::size(r.size),
                        ]
                    })
                    .collect();
                output::table(&["NAME", "WORLD", "POLICY", "DIGEST", "SIZE"], &rows);
            }
        }
        PolicyCommand::Show { name, json } => {
            let (r, _) = ds.load_policy(name)?.ok_or_else(|| anyhow!("no policy named {name:?}"))?;
            if *json {
                output::json(&record_json(&r));
            } else {
                println!("name:         {}", r.name);
                println!("world:        {} (cairn:policy@{})", r.world, r.wit_version);
                println!("policy:       {} {}", r.policy_name, r.policy_version);
                println!("digest:       blake3 {}", r.digest);
                println!("size:         {}", output::size(r.size));
                println!("added:        {}", model::time::format_rfc3339(r.added));
                println!("budget:       {} ms CPU, {} MiB memory per call", r.cpu_ms, r.memory_mib);
                let cached = host()
                    .ok()
                    .and_then(|h| ds.load_policy_artifact(&r.digest, &h.artifact_tag()).ok().flatten());
                match cached {
                    Some(a) => {
                        println!("compiled:     cached for this build ({})", output::size(a.len() as u64))
                    }
                    None => println!("compiled:     not cached for this build (compiled at its next use)"),
                }
                println!("description:  {}", r.description);
                if !r.params.is_empty() {
                    println!("parameters:");
                    for (k, v) in &r.params {
                        println!("  {k:<16} {v}");
                    }
                }
            }
        }
        PolicyCommand::Simulate(a) => return simulate(&engine, a),
        PolicyCommand::Rm { name } => {
            if !ds.remove_policy(name)? {
                bail!("no policy named {name:?}");
            }
            println!("removed policy {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The budget for one call; values from a stored record are clamped to
/// what `policy add` accepts, whatever the file says.
fn budget(cpu_ms: u64, memory_mib: u64) -> Limits {
    Limits {
        cpu: std::time::Duration::from_millis(cpu_ms.clamp(10, 60_000)),
        memory: (memory_mib.clamp(1, 4096) as usize) << 20,
    }
}

/// `cairn __compile-policy`: the child process that compiles for
/// [`host`].
pub fn compile_child() -> ExitCode {
    policy::compile_child()
}

/// The policy host of this process. Components compile in a child
/// process, this binary run as `cairn __compile-policy`, under the policy
/// crate's default limits (2 GiB of address space, 20 s of CPU, 60 s).
/// The child is started through `/proc/self/exe`, which names the running
/// binary even after an upgrade replaced the file on disk, so it is always
/// this very build (and its artifacts load here).
pub fn host() -> Result<Host> {
    let proc_exe = PathBuf::from("/proc/self/exe");
    let program = if proc_exe.exists() {
        proc_exe
    } else {
        std::env::current_exe().context("cannot find the cairn binary to compile policies with")?
    };
    Ok(Host::with_compiler(CompileIn::Process { program, args: vec!["__compile-policy".into()] })?)
}

/// Stored policy `record` (component `wasm`) ready to call, with its
/// budget: from the compiled artifact cached for this build when it is
/// usable, otherwise compiled again and the cache rewritten. Trouble with
/// the cache is logged, never fatal; only the component can fail this.
pub fn ready(engine: &Engine, host: &Host, record: &PolicyRecord, wasm: &[u8]) -> Result<(Policy, Limits)> {
    let ds = engine.datastore();
    let (name, tag) = (&record.name, host.artifact_tag());
    let cached = ds.load_policy_artifact(&record.digest, &tag).unwrap_or_else(|e| {
        tracing::warn!("policy {name}: cannot read its compiled artifact, compiling it again: {e}");
        None
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
    if let Some(artifact) = &ready.artifact {
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

/// `k=v` pairs from `--param`.
pub fn parse_params(raw: &[String]) -> Result<Vec<(String, String)>> {
    raw.iter()
        .map(|p| {
            let (k, v) = p.split_once('=').ok_or_else(|| anyhow!("--param {p:?}: expected KEY=VALUE"))?;
            if k.is_empty() {
                bail!("--param {p:?}: the key is empty");
            }
            Ok((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// A decider for `Engine::prune_with` that asks retention policy `name`.
pub fn retention_decider(
    engine: &Engine,
    name: &str,
    params: Vec<(String, String)>,
) -> Result<Box<Decider<'static>>> {
    let (record, wasm) =
        engine.datastore().load_policy(name)?.ok_or_else(|| anyhow!("no policy named {name:?}"))?;
    if record.world != "retention" {
        bail!("policy {name} is a {} policy, not a retention policy", record.world);
    }
    let host = host()?;
    let (policy, limits) = ready(engine, &host, &record, &wasm)?;
    Ok(Box::new(move |infos: &[SnapshotInfo]| {
        let snaps: Vec<RetentionSnapshot> = infos.iter().map(to_retention).collect();
        let decisions = host.retention(&policy, &snaps, now(), &params, &limits)?;
        Ok(decisions.into_iter().map(|d| (d.keep, d.reason)).collect())
    }))
}

fn parse_every(text: &str) -> Result<i64> {
    let (num, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: i64 = num.parse().map_err(|_| anyhow!("--every {text:?}: expected a number and m, h, d or w"))?;
    let unit = match unit {
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => bail!("--every {text:?}: the unit is m, h, d or w"),
    };
    if n <= 0 {
        bail!("--every {text:?}: must be positive");
    }
    n.checked_mul(unit)
        .filter(|s| *s <= 10 * 366 * 86_400)
        .ok_or_else(|| anyhow!("--every {text:?}: at most ten years"))
}

#[derive(Serialize)]
struct SimRemoved {
    at: String,
    id: String,
    reason: String,
}

#[derive(Serialize)]
struct SimKept {
    id: String,
    reason: String,
}

#[derive(Serialize)]
struct SimJson {
    steps: u64,
    removed: Vec<SimRemoved>,
    kept: Vec<SimKept>,
}

/// Most steps a simulation may take.
const MAX_STEPS: i64 = 100_000;

fn simulate(engine: &Engine, a: &SimulateArgs) -> Result<ExitCode> {
    let group = model::BackupGroup::parse(&a.group, &a.ns.get()?)?;
    let every = parse_every(&a.every)?;
    let params = parse_params(&a.params)?;
    let (record, wasm) =
        engine.datastore().load_policy(&a.name)?.ok_or_else(|| anyhow!("no policy named {:?}", a.name))?;
    if record.world != "retention" {
        bail!("policy {} is a {} policy, not a retention policy", a.name, record.world);
    }
    let host = host()?;
    let (policy, limits) = ready(engine, &host, &record, &wasm)?;
    let infos = engine.snapshots(Some(&group))?;
    let (Some(first), Some(last)) = (infos.first(), infos.last()) else {
        bail!("group {group} has no snapshots to simulate with");
    };
    let time = |t: &Option<String>, default: i64, what: &str| -> Result<i64> {
        match t {
            Some(t) => {
                model::time::parse_rfc3339(t).ok_or_else(|| anyhow!("--{what} {t:?} is not an RFC 3339 time"))
            }
            None => Ok(default),
        }
    };
    let (from, to) = (time(&a.from, first.id.time, "from")?, time(&a.to, last.id.time, "to")?);
    if to < from || (to - from) / every > MAX_STEPS {
        bail!("--from/--to/--every give no steps or more than {MAX_STEPS}");
    }
    let mut alive: Vec<&SnapshotInfo> = Vec::new();
    let mut next = 0;
    let (mut removed, mut kept, mut steps) = (Vec::new(), Vec::new(), 0u64);
    let mut t = from;
    while t <= to {
        while next < infos.len() && infos[next].id.time <= t {
            alive.push(&infos[next]);
            next += 1;
        }
        let snaps: Vec<RetentionSnapshot> = alive.iter().map(|i| to_retention(i)).collect();
        let decisions = host.retention(&policy, &snaps, t, &params, &limits)?;
        kept.clear();
        let mut still = Vec::new();
        for (info, d) in alive.iter().zip(decisions) {
            if d.keep {
                still.push(*info);
                kept.push(SimKept { id: d.id, reason: d.reason });
            } else {
                removed.push(SimRemoved { at: model::time::format_rfc3339(t), id: d.id, reason: d.reason });
            }
        }
        alive = still;
        steps += 1;
        t += every;
    }
    if a.json {
        output::json(&SimJson { steps, removed, kept });
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> =
        removed.iter().map(|r| vec![r.at.clone(), "remove".into(), r.id.clone(), r.reason.clone()]).collect();
    if !rows.is_empty() {
        output::table(&["AT", "ACTION", "SNAPSHOT", "REASON"], &rows);
        println!();
    }
    println!(
        "after {steps} steps, at {}: {} of {} snapshots kept",
        model::time::format_rfc3339(t - every),
        kept.len(),
        infos.len()
    );
    let rows: Vec<Vec<String>> = kept.iter().map(|k| vec![k.id.clone(), k.reason.clone()]).collect();
    output::table(&["SNAPSHOT", "REASON"], &rows);
    Ok(ExitCode::SUCCESS)
}

fn to_retention(i: &SnapshotInfo) -> RetentionSnapshot {
    RetentionSnapshot {
        id: i.id.to_string(),
        time: i.id.time,
        tags: i.tags.clone(),
        size: i.size,
        protected: i.protected,
        verify_state: match i.verify {
            model::VerifyState::None => VerifyState::None,
            model::VerifyState::Ok => VerifyState::Ok,
            model::VerifyState::Failed => VerifyState::Failed,
        },
    }
}
