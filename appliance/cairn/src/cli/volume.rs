//! `cairn volume write|ls`: snapshots in Bacula-readable volume files,
//! and what a volume holds, with no server and no catalog.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::Subcommand;
use engine::Progress;
use engine::volume::{VolumeOptions, list_volumes};
use engine::volume_extract::{ExtractOptions, extract_volumes};
use model::SnapshotId;

use super::common::{Global, NsArg, open};
use crate::output;
use crate::progress::Bar;

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Write snapshots into a volume file, one session each (a new labelled
    /// volume if FILE does not exist, else after its last session). Bacula's
    /// `bls` and `bextract` read the volume too.
    Write(WriteArgs),
    /// List the sessions of volume files (given in order when a session spans
    /// them): snapshot, time, files, bytes.
    Ls(LsArgs),
    /// Restore a session of volume files into TARGET with no datastore, as
    /// `cairn restore` would (never outside TARGET, nothing replaced unless
    /// --overwrite), checking every file against its digest. Damage is reported
    /// with the files it hit; the rest is restored (exit status 1).
    Extract(ExtractArgs),
    /// Put the sessions of volume files back into the datastore (--datastore)
    /// as the snapshots they hold (same group, time, tags and archives),
    /// chunked and deduplicated as a backup would be: a datastore and its
    /// catalog rebuilt from volumes alone.
    Scan(ScanArgs),
}

#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// Volume files, in order.
    #[arg(value_name = "FILE", required = true)]
    files: Vec<PathBuf>,
    /// Only this session (its place in `cairn volume ls`, from 1).
    #[arg(long, value_name = "N")]
    session: Option<usize>,
    /// Print a JSON array of what was done.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ExtractArgs {
    /// Volume files, in order, then the target directory.
    #[arg(value_name = "FILE... TARGET", required = true, num_args = 2..)]
    paths: Vec<PathBuf>,
    /// The session to restore, by its place in `cairn volume ls` (from 1);
    /// needed when the volumes hold several.
    #[arg(long, value_name = "N")]
    session: Option<usize>,
    /// Only this path: ARCHIVE/PATH (or PATH when the snapshot has one archive);
    /// it lands in TARGET by its last name.
    #[arg(long, value_name = "PATH")]
    path: Option<String>,
    /// Replace existing files in TARGET.
    #[arg(long)]
    overwrite: bool,
    /// Print a JSON summary object as the last line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct WriteArgs {
    /// Snapshots to write, TYPE/ID/TIME (repeatable).
    #[arg(value_name = "SNAPSHOT", required = true)]
    snapshots: Vec<String>,
    #[command(flatten)]
    ns: NsArg,
    /// The volume file.
    #[arg(long, value_name = "FILE")]
    to: PathBuf,
    /// The volume's name in its label (default: the file's name; Bacula's
    /// tools find a volume by it, so keep them equal).
    #[arg(long, value_name = "NAME")]
    label: Option<String>,
    /// Block size (64K to 4M).
    #[arg(long, value_name = "SIZE", default_value = "256K", value_parser = model::size::parse_size)]
    block_size: u64,
    /// Close a volume file before it grows past SIZE (e.g. 50G) and go on in
    /// FILE.2, FILE.3, … (labelled NAME.2, NAME.3, …), as on cartridges.
    #[arg(long, value_name = "SIZE", value_parser = model::size::parse_size)]
    max_size: Option<u64>,
    /// Print a JSON summary object as the last line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// Volume files, in order.
    #[arg(value_name = "FILE", required = true)]
    files: Vec<PathBuf>,
    /// Also list each session's files.
    #[arg(long)]
    files_too: bool,
    /// Print a JSON array of sessions.
    #[arg(long)]
    json: bool,
}

pub fn run(g: &Global, c: &VolumeCommand) -> Result<ExitCode> {
    match c {
        VolumeCommand::Write(a) => write(g, a),
        VolumeCommand::Ls(a) => ls(a),
        VolumeCommand::Extract(a) => extract(a),
        VolumeCommand::Scan(a) => scan(g, a),
    }
}

fn extract(a: &ExtractArgs) -> Result<ExitCode> {
    let (target, files) = a.paths.split_last().expect("clap asks for two paths at least");
    let opts = ExtractOptions {
        session: a.session,
        overwrite: a.overwrite,
        per_archive: false,
        path: a.path.clone(),
    };
    let report = extract_volumes(files, target, &opts)?;
    for d in &report.damage {
        eprintln!("damaged: {}", output::text(d));
    }
    for (name, why) in &report.failed {
        eprintln!("not restored: {}: {why}", output::text(name));
    }
    for w in &report.warnings {
        eprintln!("warning: {}", output::text(w));
    }
    if a.json {
        output::json(&report);
    } else {
        println!(
            "{}: {} restored ({}) into {}",
            report.snapshot,
            output::count(report.files, "file"),
            output::size(report.bytes),
            target.display()
        );
    }
    let whole = report.damage.is_empty() && report.failed.is_empty();
    Ok(if whole { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn write(g: &Global, a: &WriteArgs) -> Result<ExitCode> {
    let engine = open(g)?;
    let ns = a.ns.get()?;
    let ids = a.snapshots.iter().map(|s| SnapshotId::parse(s, &ns)).collect::<Result<Vec<_>, _>>()?;
    let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
    let opts = VolumeOptions {
        label: a.label.clone(),
        block_size: usize::try_from(a.block_size)?,
        host,
        program_version: format!("Cairn {}", env!("CARGO_PKG_VERSION")),
        max_size: a.max_size,
    };
    let progress = Arc::new(Progress::default());
    let bar = Bar::start("writing", progress.clone());
    let report = engine.write_volume(&ids, &a.to, &opts, &progress);
    bar.done();
    let report = report?;
    if a.json {
        output::json(&report);
    } else {
        for s in &report.sessions {
            println!(
                "session {} of {}: {} ({}, {})",
                s.session,
                report.volume,
                s.snapshot,
                output::count(s.files, "file"),
                output::size(s.bytes)
            );
        }
        println!("{}: {}", a.to.display(), output::size(report.volume_bytes));
        for next in &report.continued_in {
            println!("continued in {next}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn ls(a: &LsArgs) -> Result<ExitCode> {
    let (sessions, damage) = list_volumes(&a.files, a.files_too)?;
    for d in &damage {
        eprintln!("damaged: {}", output::text(d));
    }
    let code = if damage.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) };
    if a.json {
        output::json(&sessions);
        return Ok(code);
    }
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|s| {
            vec![
                s.volume.clone(),
                s.session.to_string(),
                s.time.clone(),
                s.files.map_or_else(|| format!("{} (cut short)", s.files_seen), |f| f.to_string()),
                s.bytes.map_or_else(|| "-".into(), output::size),
                if s.snapshot.is_empty() { s.job.clone() } else { s.snapshot.clone() },
            ]
        })
        .collect();
    output::table(&["VOLUME", "SESSION", "TIME", "FILES", "BYTES", "SNAPSHOT"], &rows);
    if a.files_too {
        for s in &sessions {
            println!("\nsession {} ({}):", s.session, s.snapshot);
            for e in &s.entries {
                let link = if e.link.is_empty() { String::new() } else { format!(" -> {}", e.link) };
                println!(
                    "{:<8} {:>5o} {:>12} {} {}{}",
                    e.kind,
                    e.mode,
                    e.size,
                    e.mtime,
                    output::text(&e.name),
                    output::text(&link)
                );
            }
        }
    }
    Ok(code)
}

fn scan(g: &Global, a: &ScanArgs) -> Result<ExitCode> {
    let engine = super::common::open_or_init(g)?;
    let progress = Arc::new(Progress::default());
    let bar = Bar::start("scanning", progress.clone());
    let done = engine.scan_volumes(&a.files, a.session, &progress);
    bar.done();
    let done = done?;
    if a.json {
        output::json(&done);
    } else {
        for s in &done {
            match s.state {
                "added" => println!(
                    "session {}: {} added ({})",
                    s.session,
                    s.snapshot,
                    output::count(s.files, "file")
                ),
                _ => println!("session {}: {} is already in the datastore", s.session, s.snapshot),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
