//! Command-line definition and dispatch.

mod appliance;
mod backup;
mod common;
mod datastore;
mod jobs;
mod maintain;
mod policy;
mod remote;
mod restore;
mod server;
mod snapshots;
mod source;
mod tape;
mod volume;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use common::Global;

const ABOUT: &str = "Cairn keeps deduplicated, verified backups of directory trees and disk images \
in a local datastore: content-defined chunks named by their blake3 digest, compressed with zstd, \
with snapshots grouped by machine or service.";

const AFTER: &str = "\
EXAMPLES:
    cairn init
    cairn init --s3 https://s3.example.net --bucket backups   (keys: AWS_ACCESS_KEY_ID, …)
    cairn backup /etc /srv/www --group host/web01 --tag daily
    cairn snapshots host/web01
    cairn ls host/web01/2026-11-22T03:00:00Z www
    cairn restore host/web01/2026-11-22T03:00:00Z /tmp/restore --path www/index.html
    cairn verify --all
    cairn prune host/web01 --keep-daily 7 --keep-weekly 4 --dry-run
    cairn gc
    cairn serve --listen 0.0.0.0:8007

ENVIRONMENT:
    CAIRN_DATASTORE   datastore directory (like --datastore)
    CAIRN_LOG         log filter, e.g. info or engine=debug
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
                      the S3 key of a datastore in a bucket (else the file
                      named at `cairn init --s3 --credentials`)

EXIT STATUS:
    0  success
    1  error, or verify found damaged snapshots
    3  backup made, but some source files could not be read (listed in the snapshot)";

#[derive(Debug, Parser)]
#[command(name = "cairn", version, about = ABOUT, long_about = ABOUT, after_long_help = AFTER)]
pub struct Cli {
    /// Datastore directory; created by `cairn init` or by the first backup into it.
    #[arg(long, global = true, env = "CAIRN_DATASTORE", default_value = "./cairn-data", value_name = "DIR")]
    pub datastore: PathBuf,
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a datastore (does nothing if one exists; refuses a non-empty other directory).
    Init(maintain::InitArgs),
    /// Back up directories, files or block devices into a new snapshot.
    Backup(backup::BackupArgs),
    /// List snapshots with sizes, new bytes stored, duration and tags.
    Snapshots(snapshots::SnapshotsArgs),
    /// List the archives of a snapshot, or the files under a path.
    Ls(restore::LsArgs),
    /// Restore a snapshot, an archive, a subtree or a single file.
    Restore(restore::RestoreArgs),
    /// Re-read and re-hash every chunk of snapshots; quarantine corrupt chunks.
    Verify(maintain::VerifyArgs),
    /// Remove snapshots of a group that no keep rule keeps.
    Prune(maintain::PruneArgs),
    /// Protect a snapshot from prune.
    Protect(snapshots::ProtectArgs),
    /// Remove the protection of a snapshot.
    Unprotect(snapshots::ProtectArgs),
    /// Show a snapshot's notes, or replace them (--set).
    Notes(snapshots::NotesArgs),
    /// Free every chunk no snapshot references (safe during backups).
    Gc(maintain::GcArgs),
    /// Catalog maintenance.
    #[command(subcommand)]
    Catalog(maintain::CatalogCommand),
    /// Where the datastore keeps its data; an S3 datastore's claim and refresh.
    #[command(subcommand)]
    Datastore(datastore::DatastoreCommand),
    /// Retention, scheduling and source policies as WebAssembly components.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Run the server: HTTPS API and dashboard over the datastore.
    Serve(server::ServeArgs),
    /// Users of the server's dashboard and API.
    #[command(subcommand)]
    User(server::UserCommand),
    /// API tokens for scripts and remote backup clients.
    #[command(subcommand)]
    Token(server::TokenCommand),
    /// Scheduled backup jobs that `cairn serve` runs.
    #[command(subcommand)]
    Job(jobs::JobCommand),
    /// Report the jobs' SLA state with Nagios exit codes (0 ok, 1 warning, 2 critical, 3 unknown).
    Check(jobs::CheckArgs),
    /// Volumes in Bacula's format (tapes and files): write snapshots into one, list it.
    #[command(subcommand)]
    Volume(volume::VolumeCommand),
    /// Tape libraries and media pools: write snapshots to cartridges, read them back.
    Tape(tape::TapeArgs),
    /// The appliance image: update it (A/B slots), its status, and the
    /// commands its boot runs.
    Appliance(appliance::ApplianceArgs),
    /// Internal: the policy host's compiler process (a component on stdin, its artifact on stdout).
    #[command(name = "__compile-policy", hide = true)]
    CompilePolicy,
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    // Every later path is relative to the datastore root; make it absolute once.
    let datastore = std::path::absolute(&cli.datastore)
        .with_context(|| format!("invalid datastore path {}", cli.datastore.display()))?;
    let g = &Global { datastore };
    match &cli.command {
        Command::Init(a) => maintain::init(g, a),
        Command::Backup(a) => backup::run(g, a),
        Command::Snapshots(a) => snapshots::list(g, a),
        Command::Ls(a) => restore::ls(g, a),
        Command::Restore(a) => restore::restore(g, a),
        Command::Verify(a) => maintain::verify(g, a),
        Command::Prune(a) => maintain::prune(g, a),
        Command::Protect(a) => snapshots::protect(g, a, true),
        Command::Unprotect(a) => snapshots::protect(g, a, false),
        Command::Notes(a) => snapshots::notes(g, a),
        Command::Gc(a) => maintain::gc(g, a),
        Command::Catalog(c) => maintain::catalog(g, c),
        Command::Datastore(c) => datastore::run(g, c),
        Command::Policy(c) => policy::run(g, c),
        Command::Serve(a) => server::serve(g, a),
        Command::User(c) => server::user(g, c),
        Command::Token(c) => server::token(g, c),
        Command::Job(c) => jobs::run(g, c),
        Command::Check(a) => jobs::check(g, a),
        Command::Volume(c) => volume::run(g, c),
        Command::Tape(a) => tape::run(g, a),
        Command::Appliance(a) => appliance::run(a),
        Command::CompilePolicy => Ok(policy::compile_child()),
    }
}
