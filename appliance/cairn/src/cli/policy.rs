//! `cairn policy add|list|show|rm|simulate` and the hidden
//! `cairn __compile-policy` (this binary as the policy host's compiler
//! child). Loading, caching and running policies is `jobhost::policies`'
//! work; this module parses arguments and renders what it returns.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use engine::Engine;

use dto::PolicyJson;
use jobhost::policies::host;
pub use jobhost::policies::parse_params;
use jobhost::policies::{self, parse_every};

use super::common::{Global, now, open};
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Validate a WebAssembly component and store it under a name.
    #[command(after_long_help = "\
The component must target a world of the cairn:policy WIT package (wit/policy.wit) at a version \
this build runs (0.1.0 or 0.2.0), and compile in a child process within 2 GiB of address space, 60 s of CPU and \
120 s; its `describe` must answer within the default budget. The component is stored in the \
catalog by its blake3 digest with a record naming it, and its compiled form is cached in the \
datastore (policies/<blake3>.<build>.cwasm) for this build; adding another component under the \
same name replaces the record.")]
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
    ns: super::common::NsArg,
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

pub fn run(cli: &Global, c: &PolicyCommand) -> Result<ExitCode> {
    let engine = open(cli)?;
    let ds = engine.datastore();
    match c {
        PolicyCommand::Add { file, name, cpu_ms, memory_mib } => {
            let wasm = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let record =
                policies::add(&engine, &host()?, &wasm, name.as_deref(), *cpu_ms, *memory_mib, now())?;
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
            let all = engine.list_policies()?;
            if *json {
                output::json(&all.iter().map(PolicyJson::from).collect::<Vec<_>>());
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
            let r = engine.policy(name)?.ok_or_else(|| anyhow!("no policy named {name:?}"))?;
            if *json {
                output::json(&PolicyJson::from(&r));
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
            if !engine.remove_policy(name)? {
                bail!("no policy named {name:?}");
            }
            println!("removed policy {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `cairn __compile-policy`: the child process that compiles for
/// [`host`].
pub fn compile_child() -> ExitCode {
    policy::compile_child()
}

fn simulate(engine: &Engine, a: &SimulateArgs) -> Result<ExitCode> {
    let group = model::BackupGroup::parse(&a.group, &a.ns.get()?)?;
    let every = parse_every(&a.every).map_err(|e| anyhow!("--{e}"))?;
    let params = parse_params(&a.params)?;
    let time = |t: &Option<String>, what: &str| -> Result<Option<i64>> {
        t.as_ref()
            .map(|t| {
                model::time::parse_rfc3339(t).ok_or_else(|| anyhow!("--{what} {t:?} is not an RFC 3339 time"))
            })
            .transpose()
    };
    let (from, to) = (time(&a.from, "from")?, time(&a.to, "to")?);
    let sim = policies::simulate(
        engine,
        &host()?,
        &a.name,
        &group,
        policies::SimSpan { from, to, every },
        &params,
    )?;
    if a.json {
        output::json(&sim);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = sim
        .removed
        .iter()
        .map(|r| vec![r.at.clone(), "remove".into(), r.id.clone(), r.reason.clone()])
        .collect();
    if !rows.is_empty() {
        output::table(&["AT", "ACTION", "SNAPSHOT", "REASON"], &rows);
        println!();
    }
    println!(
        "after {} steps, at {}: {} of {} snapshots kept",
        sim.steps,
        sim.until,
        sim.kept.len(),
        sim.snapshots
    );
    let rows: Vec<Vec<String>> = sim.kept.iter().map(|k| vec![k.id.clone(), k.reason.clone()]).collect();
    output::table(&["SNAPSHOT", "REASON"], &rows);
    Ok(ExitCode::SUCCESS)
}
