//! `cairn policy add|list|show|rm`, and running a retention policy for
//! `cairn prune --policy`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use engine::Engine;
use engine::PolicyRecord;
use engine::ops::Decider;
use model::SnapshotInfo;
use policy::{Host, Limits, RetentionSnapshot, VerifyState};
use serde::Serialize;

use super::{Cli, now, open};
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Validate a WebAssembly component and store it under a name.
    #[command(after_long_help = "\
The component must target a world of the cairn:policy WIT package (wit/policy.wit) at a version \
this build runs; its `describe` must answer within the default budget. The component is stored in \
the datastore (policies/<blake3>.wasm) with a record naming it; adding another component under \
the same name replaces the record.")]
    Add {
        /// The component, built for wasm32-wasip2.
        #[arg(value_name = "FILE.wasm")]
        file: PathBuf,
        /// Name to use with --policy (default: the name the policy gives itself).
        #[arg(long)]
        name: Option<String>,
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
    }
}

pub fn run(cli: &Cli, c: &PolicyCommand) -> Result<ExitCode> {
    let engine = open(cli)?;
    let ds = engine.datastore();
    match c {
        PolicyCommand::Add { file, name } => {
            let wasm = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let host = Host::new()?;
            let p = host.load(&wasm, &Limits::default())?;
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
            };
            ds.save_policy(&record, &wasm)?;
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
                println!("description:  {}", r.description);
                if !r.params.is_empty() {
                    println!("parameters:");
                    for (k, v) in &r.params {
                        println!("  {k:<16} {v}");
                    }
                }
            }
        }
        PolicyCommand::Rm { name } => {
            if !ds.remove_policy(name)? {
                bail!("no policy named {name:?}");
            }
            println!("removed policy {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
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
    let host = Host::new()?;
    let policy = host.load(&wasm, &Limits::default())?;
    Ok(Box::new(move |infos: &[SnapshotInfo]| {
        let snaps: Vec<RetentionSnapshot> = infos
            .iter()
            .map(|i| RetentionSnapshot {
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
            })
            .collect();
        let decisions = host.retention(&policy, &snaps, now(), &params, &Limits::default())?;
        Ok(decisions.into_iter().map(|d| (d.keep, d.reason)).collect())
    }))
}
