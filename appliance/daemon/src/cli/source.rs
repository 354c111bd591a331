//! The command-line face of source handlers: what `--param`,
//! `--allow-host` and `--grant-dir` give a handler (the work is in
//! `crate::sources`).

use std::path::PathBuf;

use anyhow::Result;
use policy::Grants;

use crate::sources::grants;
pub use crate::sources::{HandlerRun, backup, backup_remote, made_by_handler};

/// What a source handler gets: its parameters and what it may reach.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct HandlerArgs {
    /// A parameter for the source handler, KEY=VALUE (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Let the source handler send HTTP(S) requests to HOST:PORT (repeatable); nothing else is
    /// reachable.
    #[arg(long = "allow-host", value_name = "HOST:PORT")]
    pub allow_hosts: Vec<String>,
    /// Let the source handler read this directory (read-only, seen as /source).
    #[arg(long, value_name = "DIR")]
    pub grant_dir: Option<PathBuf>,
}

impl HandlerArgs {
    pub fn is_empty(&self) -> bool {
        self.params.is_empty() && self.allow_hosts.is_empty() && self.grant_dir.is_none()
    }

    pub fn grants(&self) -> Result<Grants> {
        grants(&self.allow_hosts, self.grant_dir.as_deref())
    }

    /// The parameters as `(KEY, VALUE)` pairs and the grants, both checked.
    pub fn parsed(&self) -> Result<(Vec<(String, String)>, Grants)> {
        Ok((super::policy::parse_params(&self.params)?, self.grants()?))
    }
}

/// Restore snapshot `id` through the handler that made it (see
/// [`crate::sources::restore`]), with what `args` give it.
pub fn restore(
    engine: &engine::Engine,
    id: &model::SnapshotId,
    m: &engine::Manifest,
    confirm: Option<&str>,
    args: &HandlerArgs,
    progress: &engine::Progress,
) -> Result<()> {
    let (params, grants) = args.parsed()?;
    crate::sources::restore(engine, id, m, confirm, &params, &grants, progress)
}

/// Restore a snapshot on the server through the handler that made it (see
/// [`crate::sources::restore_remote`]), with what `args` give it.
pub fn restore_remote(
    remote: &crate::remote::Remote,
    snapshot: &crate::remote::RemoteSnapshot,
    confirm: Option<&str>,
    args: &HandlerArgs,
    progress: &engine::Progress,
) -> Result<()> {
    let (params, grants) = args.parsed()?;
    crate::sources::restore_remote(remote, snapshot, confirm, &params, &grants, progress)
}
