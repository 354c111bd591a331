//! `cairn init`, `verify`, `prune`, `gc` and `catalog rebuild`.

use std::process::ExitCode;
use std::sync::Arc;

use super::common::KeepArgs;
use anyhow::{Result, bail};
use engine::{CdcParams, DatastoreConfig, Engine, Progress};
use model::{BackupGroup, GroupOrSnapshot, SnapshotId};
use serde::Serialize;

use super::common::{Global, NsArg, now, open};
use crate::output;
use crate::progress::Bar;

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Minimum chunk size in KiB for content-defined chunking.
    #[arg(long, default_value_t = 256, value_name = "KIB")]
    chunk_min: usize,
    /// Average chunk size in KiB (a power of two).
    #[arg(long, default_value_t = 1024, value_name = "KIB")]
    chunk_avg: usize,
    /// Maximum chunk size in KiB.
    #[arg(long, default_value_t = 4096, value_name = "KIB")]
    chunk_max: usize,
    /// zstd compression level (1-19; 0 stores chunks uncompressed).
    #[arg(long, default_value_t = engine::DEFAULT_ZSTD_LEVEL, value_name = "LEVEL", value_parser = clap::value_parser!(i32).range(0..=19))]
    zstd_level: i32,
    #[command(flatten)]
    s3: S3InitArgs,
}

/// `cairn init --s3`: where the bucket is. Credentials never come from
/// the command line.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "S3 object storage")]
pub struct S3InitArgs {
    /// Keep chunks, indexes and manifests in an S3 bucket at this URL
    /// (http://HOST:PORT or https://HOST); DIR keeps the config, the
    /// catalog and a cache.
    #[arg(long, value_name = "URL", requires = "bucket")]
    s3: Option<String>,
    /// The bucket's name.
    #[arg(long, value_name = "NAME", requires = "s3")]
    bucket: Option<String>,
    /// Key prefix inside the bucket, so that several datastores share one.
    #[arg(long, value_name = "P", default_value = "", requires = "s3")]
    prefix: String,
    /// The bucket's region (any name for most S3 servers other than AWS).
    #[arg(long, value_name = "R", default_value = "us-east-1", requires = "s3")]
    region: String,
    /// Attach to the datastore already in the bucket (a new or rebuilt
    /// machine): its snapshots are listed, restorable and verifiable.
    #[arg(long, requires = "s3")]
    existing: bool,
    /// Size limit of the local cache of chunks read from the bucket.
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = parse_size_arg, requires = "s3")]
    cache_size: u64,
    /// Uploads in flight per backup.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256), requires = "s3")]
    uploads: u16,
    /// Read when AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set:
    /// an AWS shared-credentials file ([default] with aws_access_key_id and
    /// aws_secret_access_key).
    #[arg(long, value_name = "FILE", default_value = engine::DEFAULT_CREDENTIALS_FILE, requires = "s3")]
    credentials: std::path::PathBuf,
}

fn parse_size_arg(s: &str) -> Result<u64, String> {
    model::size::parse_size(s)
}

pub fn init(cli: &Global, a: &InitArgs) -> Result<ExitCode> {
    let cdc =
        CdcParams { min: a.chunk_min << 10, avg: a.chunk_avg << 10, max: a.chunk_max << 10 }.validate()?;
    let config = DatastoreConfig { cdc, zstd_level: a.zstd_level };
    if let (Some(url), Some(bucket)) = (&a.s3.s3, &a.s3.bucket) {
        let settings = engine::S3Settings {
            prefix: a.s3.prefix.clone(),
            region: a.s3.region.clone(),
            credentials_file: std::path::absolute(&a.s3.credentials)?,
            cache_bytes: a.s3.cache_size,
            uploads: usize::from(a.s3.uploads),
            ..engine::S3Settings::new(url, bucket)
        };
        let place = settings.describe();
        let engine = Engine::init_s3(&cli.datastore, config, settings, a.s3.existing)?;
        if a.s3.existing {
            let n = engine.snapshots(None)?.len();
            println!("datastore attached: {} over {place}, {n} snapshots", cli.datastore.display());
            if let Err(e) = engine.datastore().check_owner() {
                println!("read-only: {e}");
            }
        } else {
            println!("datastore created: {} over {place}", cli.datastore.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (_, created) = Engine::init(&cli.datastore, config)?;
    let verb = if created { "created" } else { "already exists:" };
    println!("datastore {verb} {}", cli.datastore.display());
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Every chunk referenced by the chosen snapshots is read, decompressed and hashed once. Corrupt \
chunks are moved to DATASTORE/quarantine (never deleted); the next backup that needs such a chunk \
stores it again. Each snapshot's result is remembered (see `cairn snapshots`). Exit status 1 if \
any snapshot is damaged.")]
pub struct VerifyArgs {
    /// A snapshot (TYPE/ID/TIME) or a group (TYPE/ID); default: all snapshots.
    #[arg(value_name = "SNAPSHOT|GROUP", conflicts_with = "all")]
    target: Option<String>,
    /// Verify every snapshot (the default).
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    ns: NsArg,
    /// Print a JSON array of verdicts.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct VerdictJson {
    id: String,
    state: &'static str,
    bad_chunks: Vec<String>,
    problems: Vec<String>,
}

pub fn verify(cli: &Global, a: &VerifyArgs) -> Result<ExitCode> {
    let engine = open(cli)?;
    let ids: Vec<SnapshotId> = match &a.target {
        None => engine.snapshots(None)?.into_iter().map(|i| i.id).collect(),
        Some(t) => match GroupOrSnapshot::parse(t, &a.ns.get()?)? {
            GroupOrSnapshot::Snapshot(id) => vec![engine.snapshot(&id)?.id],
            GroupOrSnapshot::Group(g) => {
                let ids: Vec<SnapshotId> = engine.snapshots(Some(&g))?.into_iter().map(|i| i.id).collect();
                if ids.is_empty() {
                    bail!(no_snapshots(&g));
                }
                ids
            }
        },
    };
    let progress = Arc::new(Progress::default());
    let bar = Bar::start("verify", progress.clone());
    let report = engine.verify(&ids, now(), &progress);
    bar.done();
    let report = report?;
    let damaged = report.snapshots.iter().filter(|v| !v.ok).count();
    if a.json {
        let out: Vec<VerdictJson> = report
            .snapshots
            .iter()
            .map(|v| VerdictJson {
                id: v.id.to_string(),
                state: if v.ok { "ok" } else { "failed" },
                bad_chunks: v.bad_chunks.iter().map(|c| c.to_hex()).collect(),
                problems: v.problems.clone(),
            })
            .collect();
        output::json(&out);
    } else {
        for v in &report.snapshots {
            if v.ok {
                println!("ok       {}", v.id);
            } else {
                let what = if v.problems.is_empty() {
                    output::count(v.bad_chunks.len() as u64, "bad chunk")
                } else {
                    v.problems.join("; ")
                };
                println!("DAMAGED  {} ({what})", v.id);
            }
        }
        for (id, why) in &report.bad {
            eprintln!("bad chunk {id}: {why}");
        }
        println!(
            "{} checked, {} damaged; {} ({}) read",
            output::count(report.snapshots.len() as u64, "snapshot"),
            damaged,
            output::count(report.chunks as u64, "chunk"),
            output::size(report.bytes)
        );
    }
    Ok(if damaged == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Rules work as in Proxmox Backup Server: for each rule, the newest snapshot of each of the last N \
periods (hours, days, ISO weeks, months, years, in UTC) that have snapshots is kept; rules add up; \
snapshots kept by an earlier rule are not counted again; protected snapshots are always kept. \
Chunks are freed by the next `cairn gc`.")]
pub struct PruneArgs {
    /// The group, TYPE/ID.
    #[arg(value_name = "GROUP")]
    group: String,
    #[command(flatten)]
    ns: NsArg,
    #[command(flatten)]
    keep: KeepArgs,
    /// Decide with a stored retention policy instead of --keep-* (see `cairn policy`).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"])]
    policy: Option<String>,
    /// A parameter for the policy, KEY=VALUE (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE", requires = "policy")]
    params: Vec<String>,
    /// Only show what would be kept and removed.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Print a JSON array of {id, keep, reason}, oldest first.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct PruneJson {
    id: String,
    keep: bool,
    reason: String,
}

/// A named group without snapshots is most likely a mistyped name.
fn no_snapshots(group: &BackupGroup) -> String {
    format!("group {group} has no snapshots (`cairn snapshots` lists the groups that do)")
}

pub fn prune(cli: &Global, a: &PruneArgs) -> Result<ExitCode> {
    let group = BackupGroup::parse(&a.group, &a.ns.get()?)?;
    let rules = a.keep.rules();
    let engine = open(cli)?;
    if engine.snapshots(Some(&group))?.is_empty() {
        bail!(no_snapshots(&group));
    }
    let result = match &a.policy {
        Some(name) => {
            let params = super::policy::parse_params(&a.params)?;
            let mut decider =
                jobhost::policies::retention_decider(&engine, name, params, engine::clock::now())?;
            engine.prune_with(&group, a.dry_run, &mut *decider)?
        }
        None => engine.prune(&group, &rules, a.dry_run)?,
    };
    if a.json {
        let out: Vec<PruneJson> = result
            .iter()
            .map(|e| PruneJson { id: e.id.to_string(), keep: e.keep, reason: e.reason.clone() })
            .collect();
        output::json(&out);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = result
        .iter()
        .map(|e| vec![if e.keep { "keep" } else { "remove" }.into(), e.id.to_string(), e.reason.clone()])
        .collect();
    output::table(&["ACTION", "SNAPSHOT", "REASON"], &rows);
    let removed = result.iter().filter(|e| !e.keep).count();
    if a.dry_run {
        println!("dry run: {removed} of {} snapshots would be removed", result.len());
    } else {
        println!("{removed} of {} snapshots removed; run `cairn gc` to free their chunks", result.len());
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// Print a JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct GcJson {
    snapshots: u64,
    removed_chunks: u64,
    removed_bytes: u64,
    kept_chunks: u64,
    kept_bytes: u64,
}

pub fn gc(cli: &Global, a: &GcArgs) -> Result<ExitCode> {
    let engine = open(cli)?;
    let progress = Arc::new(Progress::default());
    progress.total_bytes.store(256, std::sync::atomic::Ordering::Relaxed);
    let bar = Bar::start("gc", progress.clone());
    let stats = engine.gc(&mut |_| progress.add_bytes(1));
    bar.done();
    let s = stats?;
    if a.json {
        output::json(&GcJson {
            snapshots: s.snapshots,
            removed_chunks: s.removed_chunks,
            removed_bytes: s.removed_bytes,
            kept_chunks: s.kept_chunks,
            kept_bytes: s.kept_bytes,
        });
    } else {
        println!(
            "removed {} ({}); kept {} ({}) referenced by {}",
            output::count(s.removed_chunks, "chunk"),
            output::size(s.removed_bytes),
            output::count(s.kept_chunks, "chunk"),
            output::size(s.kept_bytes),
            output::count(s.snapshots as u64, "snapshot")
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Subcommand)]
pub enum CatalogCommand {
    /// Rebuild the catalog from the datastore's own files.
    Rebuild,
}

pub fn catalog(cli: &Global, c: &CatalogCommand) -> Result<ExitCode> {
    match c {
        CatalogCommand::Rebuild => {
            let engine = open_without_catalog(cli)?;
            let (n, left_out) = engine.rebuild_catalog()?;
            for (id, why) in &left_out {
                eprintln!("warning: {}", output::text(&format!("snapshot {id} left out: {why}")));
            }
            println!("catalog rebuilt: {n} snapshots");
            if !left_out.is_empty() {
                eprintln!(
                    "error: {} snapshots could not be read and are not listed (see above); \
                     their files are untouched",
                    left_out.len()
                );
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Open without reconciling first (the catalog may be missing or damaged).
fn open_without_catalog(cli: &Global) -> Result<Engine> {
    Engine::open_raw(&cli.datastore)
}
