//! `cairn ls` and `cairn restore`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Result, bail};
use dto::{ListedJson, kind_name};
use engine::Progress;
use engine::restore::EntryKind;
use engine::restore::{Listed, Reader, RestoreRequest};
use model::SnapshotId;

use super::common::{Global, NsArg, open};
use super::remote::RemoteArgs;
use super::source::{self, HandlerArgs};
use crate::output;
use crate::progress::Bar;
use client::{Remote, RemoteSnapshot};

#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Without PATH, lists the snapshot's archives (file archives end with '/'). PATH starts with an \
archive name (www/etc); when the snapshot has a single archive, its name may be left out.")]
pub struct LsArgs {
    /// The snapshot, TYPE/ID/TIME.
    #[arg(value_name = "SNAPSHOT")]
    snapshot: String,
    /// Directory or file inside the snapshot.
    #[arg(value_name = "PATH")]
    path: Option<OsString>,
    #[command(flatten)]
    ns: NsArg,
    /// List everything below PATH, not only its children.
    #[arg(short = 'R', long)]
    recursive: bool,
    /// Long format: type and mode, owner, size, modification time.
    #[arg(short = 'l', long)]
    long: bool,
    /// Print a JSON array.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Without --path, a snapshot with one archive is restored into TARGET (a file archive's contents \
directly into the directory TARGET, an image archive to the file or block device TARGET); with \
several archives each goes to TARGET/ARCHIVE. With --path, that archive, subtree or file is \
restored as TARGET/<last path component>. Nothing is ever written outside TARGET, whatever the \
snapshot contains, and existing files are left alone unless --overwrite is given. Owners, modes, \
times, extended attributes, ACLs, hard links and holes of sparse files are restored.

With --server the snapshot was written by a client the server trusts only with its own group, so \
by default no block or character device node is created and files lose their setuid and setgid \
bits and file capabilities (the summary counts both); --keep-devices and --keep-setuid restore \
them as archived. A local restore restores them always.

A snapshot made by a source handler (`cairn backup --source`) is restored through the same \
handler, found among the stored policies by its component digest (with --server, among the \
server's; it is fetched, checked and run here): its items go back to it in \
order, with --param, --allow-host and --grant-dir as for the backup, and no TARGET is given. \
The snapshot's manifest names that handler, and whoever made the snapshot wrote the manifest, \
so the handler runs only when a job of this datastore made the snapshot (its task says so) or \
--handler NAME@DIGEST confirms the very handler the snapshot names (always needed with --server). \
With --raw (also the way when the handler is gone), its items are restored as plain files into \
TARGET instead.")]
pub struct RestoreArgs {
    /// The snapshot, TYPE/ID/TIME.
    #[arg(value_name = "SNAPSHOT")]
    snapshot: String,
    /// Directory (or, for an image, file or block device) to restore into.
    #[arg(value_name = "TARGET")]
    target: Option<PathBuf>,
    /// A snapshot made by a source handler: restore its items as plain files into TARGET,
    /// not through the handler.
    #[arg(long)]
    raw: bool,
    #[command(flatten)]
    handler: HandlerArgs,
    /// A snapshot made by a source handler: run the handler it names only if it is this one
    /// (NAME@DIGEST, as the refusal without it shows).
    #[arg(long = "handler", value_name = "NAME@DIGEST")]
    confirm_handler: Option<String>,
    /// Only this archive, subtree or file (ARCHIVE/path/inside).
    #[arg(long, value_name = "PATH")]
    path: Option<OsString>,
    #[command(flatten)]
    ns: NsArg,
    /// Replace existing files in TARGET.
    #[arg(long)]
    overwrite: bool,
    /// With --server: create the snapshot's block and character device nodes (skipped by default).
    #[arg(long)]
    keep_devices: bool,
    /// With --server: keep setuid/setgid bits and file capabilities (cleared by default).
    #[arg(long)]
    keep_setuid: bool,
    /// Write files on N threads of their own, and read and decompress chunks on N (0: write on
    /// the restoring thread; 4 or more also create the files). Default: one writer per core and
    /// at least 4, or none on a single core; one reader per core.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=256))]
    threads: Option<u16>,
    #[command(flatten)]
    remote: RemoteArgs,
}

fn shown_path(l: &Listed) -> String {
    let mut p = output::path(&l.path);
    let is_dir =
        matches!(l.entry.as_ref().map(|e| e.kind), Some(EntryKind::Dir)) || l.archive_kind == "archive";
    if is_dir {
        p.push('/');
    }
    p
}

pub fn ls(cli: &Global, a: &LsArgs) -> Result<ExitCode> {
    let id = SnapshotId::parse(&a.snapshot, &a.ns.get()?)?;
    let path = a.path.as_ref().map(|p| p.as_bytes());
    let items = match a.remote.connect()? {
        Some(remote) => Reader::new(&remote.open_snapshot(&id)?).list(&id, path, a.recursive)?,
        None => open(cli)?.list(&id, path, a.recursive)?,
    };
    if a.json {
        let out: Vec<ListedJson> = items.iter().map(ListedJson::new).collect();
        output::json(&out);
        return Ok(ExitCode::SUCCESS);
    }
    for l in &items {
        if a.long {
            let (mode, owner, mtime) = match &l.entry {
                Some(e) => (
                    format!("{:o}", e.mode),
                    format!("{}:{}", e.uid, e.gid),
                    model::time::format_rfc3339(e.mtime),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            println!("{:<8} {mode:>5} {owner:>11} {:>12} {mtime} {}", kind_name(l), l.size, shown_path(l));
        } else {
            println!("{}", shown_path(l));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Restore `id` through the source handler that made it, if one did;
/// false when it is an ordinary snapshot.
fn through_handler(
    cli: &Global,
    a: &RestoreArgs,
    id: &SnapshotId,
    remote: Option<(&Remote, &RemoteSnapshot)>,
) -> Result<bool> {
    let engine = if remote.is_none() { Some(open(cli)?) } else { None };
    let local;
    let m = match (remote, &engine) {
        (Some((_, s)), _) => &s.manifest,
        (None, Some(engine)) => {
            local = engine.datastore().read_manifest(id)?;
            &local
        }
        (None, None) => unreachable!("a local restore opened the datastore"),
    };
    if !source::made_by_handler(m) {
        return Ok(false);
    }
    if a.path.is_some() || a.target.is_some() {
        bail!(
            "{id} was made by the source handler {}: restore it through the handler without \
             TARGET or --path, or add --raw to restore its items as plain files into TARGET",
            m.source.name
        );
    }
    let confirm = a.confirm_handler.as_deref();
    let progress = Arc::new(Progress::default());
    progress.total_bytes.store(m.stats.size, std::sync::atomic::Ordering::Relaxed);
    let bar = Bar::start("restore", progress.clone());
    let done = match (remote, &engine) {
        (Some((remote, snapshot)), _) => {
            source::restore_remote(remote, snapshot, confirm, &a.handler, &progress)
        }
        (None, Some(engine)) => source::restore(engine, id, m, confirm, &a.handler, &progress),
        (None, None) => unreachable!("a local restore opened the datastore"),
    };
    bar.done();
    done?;
    println!(
        "restored {id} through the source handler {} {}",
        output::path(m.source.name.as_bytes()),
        output::path(m.source.version.as_bytes())
    );
    Ok(true)
}

/// What a restore from a server left out, for the summary line.
fn withheld(report: &engine::restore::RestoreReport) -> String {
    let mut parts = Vec::new();
    if report.devices_skipped > 0 {
        parts.push(format!(
            "{} skipped (--keep-devices to restore them)",
            output::count(report.devices_skipped, "device node")
        ));
    }
    if report.setuid_cleared > 0 {
        parts.push(format!(
            "{} cleared (--keep-setuid to keep them)",
            output::count(report.setuid_cleared, "setuid/setgid bit")
        ));
    }
    parts.iter().map(|p| format!("; {p}")).collect()
}

pub fn restore(cli: &Global, a: &RestoreArgs) -> Result<ExitCode> {
    if let Some(n) = a.threads.filter(|&n| n > 0) {
        engine::target::plan_for_cores(usize::from(n));
    }
    let id = SnapshotId::parse(&a.snapshot, &a.ns.get()?)?;
    let remote = a.remote.connect()?;
    let snapshot = remote.as_ref().map(|r| r.open_snapshot(&id)).transpose()?;
    if !a.raw && through_handler(cli, a, &id, remote.as_ref().zip(snapshot.as_ref()))? {
        return Ok(ExitCode::SUCCESS);
    }
    if !a.handler.is_empty() || a.confirm_handler.is_some() {
        bail!("--param, --allow-host, --grant-dir and --handler are for a restore through a source handler");
    }
    let Some(target) = a.target.clone() else {
        bail!("TARGET is needed: where to restore to");
    };
    let req = RestoreRequest {
        snapshot: id,
        target,
        path: a.path.as_ref().map(|p| p.as_bytes().to_vec()),
        overwrite: a.overwrite,
        // What a client wrote to the server is not trusted with device
        // nodes or privileges unless asked.
        skip_devices: snapshot.is_some() && !a.keep_devices,
        clear_setuid: snapshot.is_some() && !a.keep_setuid,
        threads: a.threads.map(usize::from),
    };
    let progress = Arc::new(Progress::default());
    let set_total = |size: u64| progress.total_bytes.store(size, std::sync::atomic::Ordering::Relaxed);
    let report = match snapshot {
        Some(snapshot) => {
            set_total(snapshot.manifest.archives.iter().map(|a| a.size).sum());
            let bar = Bar::start("restore", progress.clone());
            let report = Reader::new(&snapshot).restore(&req, &progress);
            bar.done();
            report
        }
        None => {
            let engine = open(cli)?;
            if let Ok(info) = engine.snapshot(&req.snapshot) {
                set_total(info.size);
            }
            let bar = Bar::start("restore", progress.clone());
            let report = engine.restore(&req, &progress);
            bar.done();
            report
        }
    };
    let report = report?;
    for w in &report.warnings {
        eprintln!("warning: {}", output::text(w));
    }
    for (path, err) in &report.failed {
        eprintln!("error: {}", output::text(&format!("{path}: {err}")));
    }
    println!(
        "restored {} entries, {} to {}{}",
        report.files,
        output::size(report.bytes),
        output::path(req.target.as_os_str().as_bytes()),
        withheld(&report)
    );
    if report.failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        // Locally a file fails for a damaged chunk; remotely also when the
        // server cannot be read.
        let advice = if a.remote.server.is_some() {
            "check the server and its datastore (`cairn verify` there), then restore them again"
        } else {
            "run `cairn verify`"
        };
        eprintln!(
            "error: {} files could not be restored and were removed (see above); {advice}",
            report.failed.len()
        );
        Ok(ExitCode::from(1))
    }
}
