//! Backups and restores through a source handler (a stored `source`
//! policy), for `cairn backup --source`, `cairn restore` of a snapshot a
//! handler made, and jobs with a source handler.

use std::path::Path;

use anyhow::{Result, anyhow, bail};
use engine::items::{self, Item, ItemSink, ItemSource, SourceBackup, Step};
use engine::{BackupReport, Engine, Manifest, Progress};
use model::PolicyRecord;
use model::{BackupGroup, SnapshotId};
use policy::{Grants, Host, SourceSession, SourceStep};

use crate::policies::{host, ready};

/// Check the hosts a handler may reach (`HOST:PORT`) and the granted
/// directory.
pub fn grants(allow_hosts: &[String], grant_dir: Option<&Path>) -> Result<Grants> {
    let mut hosts = Vec::new();
    for h in allow_hosts {
        let ok = h.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty()
                && port.parse::<u16>().is_ok_and(|p| p > 0)
                && host.chars().all(|c| c.is_ascii_alphanumeric() || "-.[]:".contains(c))
        });
        if !ok {
            bail!("allowed host {h:?}: expected HOST:PORT, e.g. db.example.com:443 or 127.0.0.1:8080");
        }
        hosts.push(h.to_ascii_lowercase());
    }
    if let Some(dir) = grant_dir
        && !dir.is_dir()
    {
        bail!("--grant-dir {}: not a directory", dir.display());
    }
    Ok(Grants { dir: grant_dir.map(Into::into), hosts })
}

/// A stored source policy, ready to start.
struct Handler<'h> {
    host: &'h Host,
    record: PolicyRecord,
    policy: policy::Policy,
    limits: policy::Limits,
}

impl<'h> Handler<'h> {
    fn load(engine: &Engine, host: &'h Host, record: PolicyRecord, wasm: &[u8]) -> Result<Handler<'h>> {
        if record.world != "source" {
            bail!("policy {} is a {} policy, not a source handler", record.name, record.world);
        }
        let (policy, limits) = ready(engine, host, &record, wasm)?;
        Ok(Handler { host, record, policy, limits })
    }

    fn start(&self, grants: &Grants) -> Result<SourceSession> {
        Ok(self.host.source(&self.policy, grants, Some(&self.limits))?)
    }
}

/// `cairn backup --source NAME`: run the handler's backup into a new
/// snapshot of `group`.
#[allow(clippy::too_many_arguments)] // what a backup through a handler is
pub fn backup(
    engine: &Engine,
    host: &Host,
    name: &str,
    params: &[(String, String)],
    grants: &Grants,
    group: BackupGroup,
    tags: Vec<String>,
    time: i64,
    progress: &Progress,
) -> Result<BackupReport> {
    let (record, wasm) =
        engine.load_policy(name)?.ok_or_else(|| crate::policies::NoSuchPolicy(name.to_owned()))?;
    let handler = Handler::load(engine, host, record, &wasm)?;
    let mut session = handler.start(grants)?;
    if !session.features.full {
        bail!("{} cannot make a full backup (its capabilities say so)", handler.policy.label());
    }
    // Every backup is full: the items of an incremental one would need
    // merging with the previous snapshot's to make a complete snapshot,
    // which Cairn does not do yet, so handlers get no `since`.
    session.begin_backup(params, None)?;
    let opts = SourceBackup {
        group,
        tags,
        time,
        archive: handler.record.policy_name.clone(),
        handler: engine::SourceHandler {
            name: handler.record.policy_name.clone(),
            version: handler.record.policy_version.clone(),
            digest: Some(handler.record.digest.clone()),
        },
    };
    let mut steps = Steps { session: &mut session, announced: None };
    let report = engine.backup_items(&opts, &mut steps, progress);
    log_stderr(&handler.record.name, &session);
    report
}

fn log_stderr(name: &str, session: &SourceSession) {
    let err = session.stderr();
    if !err.trim().is_empty() {
        tracing::info!("source handler {name} wrote on stderr: {}", err.trim());
    }
}

/// The handler's steps as the engine wants them; checks each file's data
/// against the size the handler announced for it.
struct Steps<'a> {
    session: &'a mut SourceSession,
    /// The current file: (path, announced size, bytes so far).
    announced: Option<(String, u64, u64)>,
}

impl Steps<'_> {
    fn check_size(&mut self) -> Result<()> {
        if let Some((path, want, got)) = self.announced.take()
            && want != got
        {
            bail!("the source handler announced {want} bytes for {path} but sent {got}");
        }
        Ok(())
    }
}

impl ItemSource for Steps<'_> {
    fn next(&mut self) -> Result<Step> {
        Ok(match self.session.next_step()? {
            SourceStep::End => {
                self.check_size()?;
                Step::End
            }
            SourceStep::Data(d) => {
                if let Some((_, _, got)) = &mut self.announced {
                    *got += d.len() as u64;
                }
                Step::Data(d)
            }
            SourceStep::Item(i) => {
                self.check_size()?;
                if let Some(size) = i.size.filter(|_| i.kind == policy::ItemKind::File) {
                    self.announced = Some((i.path.clone(), size, 0));
                }
                Step::Item(Item {
                    path: i.path,
                    kind: match i.kind {
                        policy::ItemKind::File => items::ItemKind::File,
                        policy::ItemKind::Directory => items::ItemKind::Directory,
                        policy::ItemKind::Symlink => items::ItemKind::Symlink,
                    },
                    mode: i.mode,
                    mtime: i.mtime,
                    target: i.target,
                })
            }
        })
    }
}

/// Hands a snapshot's items to the handler's restore.
struct Upload<'a> {
    session: &'a mut SourceSession,
}

impl ItemSink for Upload<'_> {
    fn item(&mut self, item: &Item) -> Result<()> {
        let kind = match item.kind {
            items::ItemKind::File => policy::ItemKind::File,
            items::ItemKind::Directory => policy::ItemKind::Directory,
            items::ItemKind::Symlink => policy::ItemKind::Symlink,
        };
        Ok(self.session.restore_item(&policy::SourceItem {
            path: item.path.clone(),
            kind,
            mode: item.mode,
            mtime: item.mtime,
            target: item.target.clone(),
            size: None,
        })?)
    }

    fn data(&mut self, data: &[u8]) -> Result<()> {
        Ok(self.session.restore_data(data)?)
    }
}

/// Whether `m` was made by a source handler (not by the file walker).
pub fn made_by_handler(m: &Manifest) -> bool {
    m.source.digest.is_some() && m.source.name != "builtin-fs"
}

/// Restore snapshot `id` (made by a handler, see [`made_by_handler`])
/// through the stored policy with the very component that made it.
pub fn restore(
    engine: &Engine,
    id: &SnapshotId,
    m: &Manifest,
    params: &[(String, String)],
    grants: &Grants,
    progress: &Progress,
) -> Result<()> {
    let digest = m.source.digest.as_deref().unwrap_or_default();
    let found = engine.list_policies()?.into_iter().find(|r| r.world == "source" && r.digest == digest);
    let Some(record) = found else {
        bail!(
            "{id} was made by the source handler {} {} (component blake3 {}), which is not stored here; \
             add that component with `cairn policy add`, or restore its items as plain files with --raw",
            m.source.name,
            m.source.version,
            digest.chars().take(16).collect::<String>()
        );
    };
    let (record, wasm) =
        engine.load_policy(&record.name)?.ok_or_else(|| anyhow!("policy {} disappeared", record.name))?;
    let host = host()?;
    let handler = Handler::load(engine, &host, record, &wasm)?;
    let mut session = handler.start(grants)?;
    session.begin_restore(params)?;
    let archive = &m.archives.first().ok_or_else(|| anyhow!("{id} has no archive"))?.name;
    let replayed = engine.replay(id, archive, &mut Upload { session: &mut session }, progress);
    let finished = replayed.and_then(|()| Ok(session.finish_restore()?));
    log_stderr(&handler.record.name, &session);
    finished
}
