//! What the subcommands share: the global options they see (`Global`),
//! `--keep-*` and `--ns`, opening the datastore, the clock.

use std::path::PathBuf;

use anyhow::Result;
use engine::Engine;
use model::Namespace;

pub use engine::clock::now;

/// The global options, resolved: what every subcommand is given.
#[derive(Debug)]
pub struct Global {
    /// The datastore directory, absolute.
    pub datastore: PathBuf,
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

pub fn open(cli: &Global) -> Result<Engine> {
    Engine::open(&cli.datastore)
}

/// Open the datastore, creating it if missing (for commands that set a
/// new server up).
pub fn open_or_init(cli: &Global) -> Result<Engine> {
    Ok(Engine::init(&cli.datastore, engine::DatastoreConfig::default())?.0)
}
