//! `cairn backup`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Result, anyhow};
use engine::{BackupOptions, DatastoreConfig, Engine, Progress};
use model::BackupGroup;
use serde::Serialize;

use super::common::{Global, NsArg, now, open};
use super::remote::RemoteArgs;
use super::source::{self, HandlerArgs};
use crate::output;
use crate::progress::Bar;

#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
A directory becomes a file archive named after it (/srv/www -> www, / -> root); a regular file \
or block device becomes an image archive (disk.raw -> disk.raw.img). Files whose size, mtime, \
ctime and inode match the group's previous snapshot are not read again: their chunks are reused \
in runs that changed files do not break (their new bytes, up to 8 MiB, are written after the \
run). Where a run must end, an unchanged file of up to 1 MiB that starts in a chunk already \
written is read again rather than that chunk written twice. Unreadable files are \
reported, left out and recorded in the snapshot (exit status 3). The last line printed is the \
new snapshot's id.

With --server, the backup goes to a Cairn server over HTTPS (pinned with --fingerprint, \
authorised by a token of role backup-client, operator or admin): reading, chunking, hashing and \
compressing happen here exactly as for a local backup; the server tells which chunks its newest \
snapshot of the group holds, only the others are uploaded and checked on arrival, and the \
snapshot becomes visible on the server only when everything arrived.

With --source NAME, a stored source handler (a `source` policy, see `cairn policy add`) reads the source instead of the file walker: an HTTP export, a database dump. It reaches only what --allow-host and --grant-dir grant, its items become one file archive named after the handler, and the snapshot records which handler (name, version, component digest) made it, so that `cairn restore` hands the items back to the same handler. With --server as well, the handler is the one the server stores under NAME: it is fetched, checked against the digest the server lists, and run here, with only what this machine's --allow-host and --grant-dir grant; what it reads is uploaded like any other backup.")]
pub struct BackupArgs {
    /// Directories, regular files or block devices to back up.
    #[arg(required_unless_present = "source", conflicts_with = "source", value_name = "SOURCE")]
    sources: Vec<PathBuf>,
    /// Back up through this stored source handler instead of reading files (with --server:
    /// one the server stores, run here).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["excludes", "one_file_system"])]
    source: Option<String>,
    #[command(flatten)]
    handler: HandlerArgs,
    /// With --source: fail the backup, keeping nothing, when the handler yields more than SIZE
    /// (bytes, or with a unit K, M, G or T: 50G). Without it there is no limit but free space.
    #[arg(long, value_name = "SIZE", value_parser = model::size::parse_limit, requires = "source")]
    max_size: Option<u64>,
    /// The backup group, TYPE/ID (e.g. host/web01, vm/100).
    #[arg(long, value_name = "TYPE/ID")]
    group: String,
    #[command(flatten)]
    ns: NsArg,
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Leave out paths matching a glob; a pattern without '/' matches names at any depth (repeatable).
    #[arg(long = "exclude", value_name = "GLOB")]
    excludes: Vec<String>,
    /// Do not descend into other filesystems.
    #[arg(long, short = 'x')]
    one_file_system: bool,
    /// Snapshot time (RFC 3339) instead of now, e.g. for imports.
    #[arg(long, value_name = "RFC3339")]
    time: Option<String>,
    /// Print a JSON summary object as the last line.
    #[arg(long)]
    json: bool,
    /// Size the backup's threads as for a machine with N cores: N workers hash and compress
    /// (2N with --server, which also wait on uploads), N threads read files ahead, and the
    /// threads that find chunk boundaries and sync chunk files follow. Fewer leave cores to
    /// other work. Default: this machine's cores.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Serialize)]
struct BackupJson {
    id: String,
    files: u64,
    size: u64,
    stored: u64,
    new_chunks: u64,
    reused_chunks: u64,
    duration_ms: u64,
    errors: Vec<ErrorJson>,
    /// A datastore in an S3 bucket: what this backup asked of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    object_store: Option<ObjectStoreJson>,
}

#[derive(Serialize)]
struct ObjectStoreJson {
    requests: u64,
    puts: u64,
    gets: u64,
    bytes_sent: u64,
    bytes_received: u64,
}

#[derive(Serialize)]
struct ErrorJson {
    path: String,
    error: String,
}

pub fn run(cli: &Global, a: &BackupArgs) -> Result<ExitCode> {
    let group = BackupGroup::parse(&a.group, &a.ns.get()?)?;
    let time = match &a.time {
        Some(t) => {
            model::time::parse_rfc3339(t).ok_or_else(|| anyhow!("--time {t:?} is not an RFC 3339 time"))?
        }
        None => now(),
    };
    for t in &a.tags {
        if t.is_empty() || t.len() > 64 || t.chars().any(|c| c.is_control() || c == ',') {
            return Err(anyhow!("invalid tag {t:?}: use up to 64 printable characters without commas"));
        }
    }
    if a.source.is_none() && (!a.handler.is_empty() || a.max_size.is_some()) {
        return Err(anyhow!(
            "--param, --allow-host, --grant-dir and --max-size are for a source handler (--source NAME)"
        ));
    }
    if let Some(n) = a.threads {
        engine::target::plan_for_cores(usize::from(n));
    }
    fix_allocator_thresholds();
    // Without --time, a server dates the snapshot by its own clock.
    let remote = a.remote.connect()?.map(|r| r.dated_by_server(a.time.is_none()));
    if let Some(name) = &a.source {
        let (params, grants) = a.handler.parsed()?;
        let max_bytes = a.max_size;
        let engine = if remote.is_none() { Some(open(cli)?) } else { None };
        let time = match (&engine, &a.time) {
            (Some(engine), None) => engine.free_backup_time(&group, &now, &std::thread::sleep),
            _ => time,
        };
        let run =
            source::HandlerRun { params: &params, grants: &grants, group, tags: &a.tags, time, max_bytes };
        let host = jobhost::policies::host()?;
        let progress = Arc::new(Progress::default());
        let bar = Bar::start("backup", progress.clone());
        let report = match (&remote, &engine) {
            (Some(remote), _) => source::backup_remote(remote, &host, name, &run, &progress),
            (None, Some(engine)) => source::backup(engine, &host, name, &run, &progress),
            (None, None) => unreachable!("a local backup opened the datastore"),
        };
        bar.done();
        return print_report(a, report?);
    }
    let opts = BackupOptions {
        group,
        sources: a.sources.clone(),
        tags: a.tags.clone(),
        excludes: a.excludes.clone(),
        one_file_system: a.one_file_system,
        time,
    };
    let progress = Arc::new(Progress::default());
    let bar = Bar::start("backup", progress.clone());
    if bar.is_drawing() {
        engine::progress::estimate_in_background(&opts.sources, progress.clone());
    }
    let report = match &remote {
        Some(remote) => remote.backup(&opts, &progress),
        // The first backup into a directory that does not exist yet creates
        // the datastore there with default settings (`cairn init` tunes them).
        None if !cli.datastore.exists() => {
            Engine::init(&cli.datastore, DatastoreConfig::default()).and_then(|(engine, _)| {
                eprintln!("created datastore {}", cli.datastore.display());
                engine.backup(&opts, &progress)
            })
        }
        None => open(cli).and_then(|engine| {
            // Without --time, a second already taken by the group's last
            // snapshot is waited out rather than failing.
            let time = match a.time {
                Some(_) => opts.time,
                None => engine.free_backup_time(&opts.group, &now, &std::thread::sleep),
            };
            engine.backup(&BackupOptions { time, ..opts.clone() }, &progress)
        }),
    };
    bar.done();
    print_report(a, report?)
}

fn print_report(a: &BackupArgs, report: engine::BackupReport) -> Result<ExitCode> {
    let s = &report.stats;
    for e in &report.errors {
        eprintln!("warning: {}", output::text(&format!("{}: {}", e.path, e.error)));
    }
    let c = engine::bucket_counters();
    let object_store = (c.requests > 0).then(|| {
        tracing::info!(
            requests = c.requests,
            puts = c.puts,
            gets = c.gets,
            bytes_sent = c.bytes_sent,
            bytes_received = c.bytes_received,
            "object store"
        );
        ObjectStoreJson {
            requests: c.requests,
            puts: c.puts,
            gets: c.gets,
            bytes_sent: c.bytes_sent,
            bytes_received: c.bytes_received,
        }
    });
    if a.json {
        output::json(&BackupJson {
            object_store,
            id: report.id.to_string(),
            files: s.files,
            size: s.size,
            stored: s.stored,
            new_chunks: s.new_chunks,
            reused_chunks: s.reused_chunks,
            duration_ms: s.duration_ms,
            errors: report
                .errors
                .iter()
                .map(|e| ErrorJson { path: e.path.clone(), error: e.error.clone() })
                .collect(),
        });
    } else {
        println!(
            "{}, {} logical, {} new in {} ({} reused), {}",
            output::count(s.files, "file"),
            output::size(s.size),
            output::size(s.stored),
            output::count(s.new_chunks, "chunk"),
            s.reused_chunks,
            output::duration_ms(s.duration_ms)
        );
        if !report.errors.is_empty() {
            println!("{} source objects could not be read and were left out", report.errors.len());
        }
        println!("{}", report.id);
    }
    Ok(if report.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(3) })
}

/// Fix glibc's allocator thresholds for a backup. By default glibc raises
/// its mmap threshold to the size of each large block freed (up to 32 MiB),
/// so after the first chunk a backup's buffers (up to 4 MiB each) come from
/// per-thread arenas, which keep what they free: sized for 32 cores, a
/// tree backup peaked at 150–220 MiB instead of about 110 (see
/// `docs/benchmarks.md`, "Peak memory with more threads"). Fixed, a block
/// of 1 MiB or more is mapped on its own and unmapped when freed; the
/// backup reuses its chunk and blob buffers, so few are. Smaller blocks
/// stay in the heap, trimmed only past 64 MiB free at its top. At most
/// four arenas: a file read ahead lives until the worker that stores its
/// chunk frees it, each thread's arena keeps its own high-water mark, and
/// glibc's default (eight per core) makes the peak grow with the machine.
/// With `--threads 32` on two cores, four arenas took a tree backup's peak
/// from 135 to 106 MiB (a remote one from 144 to 118), at the same CPU
/// time; small allocations still go through each thread's cache. A restore
/// keeps the defaults: it decodes each chunk into a fresh buffer, which
/// a fixed threshold would fault in page by page every time.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn fix_allocator_thresholds() {
    // SAFETY: mallopt only sets allocator parameters, under glibc's own
    // locks; no pointer is passed.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn fix_allocator_thresholds() {}
