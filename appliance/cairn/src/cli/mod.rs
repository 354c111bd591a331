//! Command-line definition and dispatch.

mod backup;
mod jobs;
mod maintain;
mod policy;
mod remote;
mod restore;
mod server;
mod snapshots;
mod source;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use engine::Engine;
use model::Namespace;

pub use engine::clock::now;

const ABOUT: &str = "Cairn keeps deduplicated, verified backups of directory trees and disk images \
in a local datastore: content-defined chunks named by their blake3 digest, compressed with zstd, \
with snapshots grouped by machine or service.";

const AFTER: &str = "\
EXAMPLES:
    cairn init
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
    /// Free every chunk no snapshot references (safe during backups).
    Gc(maintain::GcArgs),
    /// Catalog maintenance.
    #[command(subcommand)]
    Catalog(maintain::CatalogCommand),
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
    /// Internal: the policy host's compiler process (a component on stdin, its artifact on stdout).
    #[command(name = "__compile-policy", hide = true)]
    CompilePolicy,
}

/// `--keep-*` shared by `prune` and `job add` (PBS semantics).
#[derive(Debug, clap::Args)]
pub struct KeepArgs {
    /// Keep the N newest snapshots.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub keep_last: u32,
    /// Keep the newest snapshot of each of the last N hours.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub keep_hourly: u32,
    /// Keep the newest snapshot of each of the last N days.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub keep_daily: u32,
    /// Keep the newest snapshot of each of the last N ISO weeks.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub keep_weekly: u32,
    /// Keep the newest snapshot of each of the last N months.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub keep_monthly: u32,
    /// Keep the newest snapshot of each of the last N years.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub keep_yearly: u32,
}

impl KeepArgs {
    pub fn rules(&self) -> model::prune::KeepRules {
        model::prune::KeepRules {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
        }
    }
}

/// `--ns` shared by commands that name groups or snapshots.
#[derive(Debug, clap::Args)]
pub struct NsArg {
    /// Namespace (levels separated by '/'); references may also carry an `ns/NAME/` prefix.
    #[arg(long, value_name = "NAMESPACE", default_value = "")]
    pub ns: String,
}

impl NsArg {
    pub fn get(&self) -> Result<Namespace> {
        Ok(Namespace::parse(&self.ns)?)
    }
}

pub fn open(cli: &Cli) -> Result<Engine> {
    Engine::open(&cli.datastore)
}

/// Open the datastore, creating it if missing (for commands that set a
/// new server up).
pub fn open_or_init(cli: &Cli) -> Result<Engine> {
    Ok(Engine::init(&cli.datastore, engine::DatastoreConfig::default())?.0)
}

pub fn run(mut cli: Cli) -> Result<ExitCode> {
    // Every later path is relative to the datastore root; make it absolute once.
    cli.datastore = std::path::absolute(&cli.datastore)
        .with_context(|| format!("invalid datastore path {}", cli.datastore.display()))?;
    match &cli.command {
        Command::Init(a) => maintain::init(&cli, a),
        Command::Backup(a) => backup::run(&cli, a),
        Command::Snapshots(a) => snapshots::list(&cli, a),
        Command::Ls(a) => restore::ls(&cli, a),
        Command::Restore(a) => restore::restore(&cli, a),
        Command::Verify(a) => maintain::verify(&cli, a),
        Command::Prune(a) => maintain::prune(&cli, a),
        Command::Protect(a) => snapshots::protect(&cli, a, true),
        Command::Unprotect(a) => snapshots::protect(&cli, a, false),
        Command::Gc(a) => maintain::gc(&cli, a),
        Command::Catalog(c) => maintain::catalog(&cli, c),
        Command::Policy(c) => policy::run(&cli, c),
        Command::Serve(a) => server::serve(&cli, a),
        Command::User(c) => server::user(&cli, c),
        Command::Token(c) => server::token(&cli, c),
        Command::Job(c) => jobs::run(&cli, c),
        Command::Check(a) => jobs::check(&cli, a),
        Command::CompilePolicy => Ok(policy::compile_child()),
    }
}
