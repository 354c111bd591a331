//! The command-line face of source handlers: what `--param`,
//! `--allow-host` and `--grant-dir` give a handler, and running one
//! against a server: the handler the server stores is fetched, checked
//! against its listed digest and run here (the handler work itself is in
//! `jobhost::sources`).

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use client::{Remote, RemoteSnapshot};
use engine::restore::Reader;
use engine::{BackupReport, Progress};
use jobhost::policies::host;
use jobhost::sources::{Handler, first_archive, grants, handler_missing, vouch};
pub use jobhost::sources::{HandlerRun, backup, made_by_handler};
use policy::{Grants, Host};
use protocol::SourceHandlerInfo;

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
/// [`jobhost::sources::restore`]), with what `args` give it.
pub fn restore(
    engine: &engine::Engine,
    id: &model::SnapshotId,
    m: &engine::Manifest,
    confirm: Option<&str>,
    args: &HandlerArgs,
    progress: &Progress,
) -> Result<()> {
    let (params, grants) = args.parsed()?;
    jobhost::sources::restore(engine, id, m, confirm, &params, &grants, progress)
}

/// The first source handler the server stores that `pick` accepts,
/// fetched and checked against its listed digest.
fn fetch<'h>(
    remote: &Remote,
    host: &'h Host,
    pick: impl Fn(&SourceHandlerInfo) -> bool,
) -> Result<Option<Handler<'h>>> {
    let Some(info) = remote.source_handlers()?.into_iter().find(pick) else { return Ok(None) };
    let wasm = remote.source_component(&info)?;
    Handler::load(None, host, info.record(), &wasm).map(Some)
}

/// `cairn backup --source NAME --server URL`: fetch the handler the server
/// stores under `name`, run it here, and upload what it reads into a new
/// snapshot on the server. The handler reaches only what `run.grants`
/// give it on this machine.
pub fn backup_remote(
    remote: &Remote,
    host: &Host,
    name: &str,
    run: &HandlerRun<'_>,
    progress: &Progress,
) -> Result<BackupReport> {
    let handler = fetch(remote, host, |h| h.name == name)?.ok_or_else(|| {
        anyhow!("the server has no source handler named {name:?} (its `cairn policy list` shows what it has)")
    })?;
    handler.back_up(run, |opts, steps| remote.backup_items(opts, steps, progress))
}

/// Restore a snapshot on the server (made by a handler) through the
/// handler with the very component that made it, fetched from the server
/// and run here, with what `args` give it. The server's task records are
/// not visible from here, so only `confirm` (`--handler NAME@DIGEST`)
/// vouches for the handler.
pub fn restore_remote(
    remote: &Remote,
    snapshot: &RemoteSnapshot,
    confirm: Option<&str>,
    args: &HandlerArgs,
    progress: &Progress,
) -> Result<()> {
    let (params, grants) = args.parsed()?;
    let (id, m) = (&snapshot.id, &snapshot.manifest);
    vouch(id, m, None, confirm)?;
    let digest = m.source.digest.as_deref().unwrap_or_default();
    let host = host()?;
    let Some(handler) = fetch(remote, &host, |h| h.digest == digest)? else {
        bail!(handler_missing(id, m, "on the server; its admin can add it with `cairn policy add` there"))
    };
    let archive = first_archive(id, m)?;
    handler.restore(&params, &grants, |sink| Reader::new(snapshot).replay(id, archive, sink, progress))
}
