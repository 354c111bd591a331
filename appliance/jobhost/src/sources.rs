//! Backups and restores through a source handler (a stored `source`
//! policy), for `cairn backup --source`, `cairn restore` of a snapshot a
//! handler made, and jobs with a source handler. Against a server, the
//! CLI fetches the handler the server stores and runs it here through
//! [`Handler`].

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
    let hosts = allow_hosts
        .iter()
        .map(|h| model::job::check_allow_host(h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!(e))?;
    if let Some(dir) = grant_dir
        && !dir.is_dir()
    {
        bail!("--grant-dir {}: not a directory", dir.display());
    }
    Ok(Grants { dir: grant_dir.map(Into::into), hosts })
}

/// A source handler's component, ready to start.
pub struct Handler<'h> {
    host: &'h Host,
    record: PolicyRecord,
    policy: policy::Policy,
    limits: policy::Limits,
}

impl<'h> Handler<'h> {
    /// Compile (or load the compiled form `cache` keeps) `wasm`, the
    /// component of `record`.
    pub fn load(
        cache: Option<&Engine>,
        host: &'h Host,
        record: PolicyRecord,
        wasm: &[u8],
    ) -> Result<Handler<'h>> {
        if record.world != "source" {
            bail!("policy {} is a {} policy, not a source handler", record.name, record.world);
        }
        let (policy, limits) = ready(cache, host, &record, wasm)?;
        Ok(Handler { host, record, policy, limits })
    }

    fn start(&self, grants: &Grants) -> Result<SourceSession> {
        Ok(self.host.source(&self.policy, grants, Some(&self.limits))?)
    }

    /// Start the handler's backup (every backup is full: the items of an
    /// incremental one would need merging with the previous snapshot's to
    /// make a complete snapshot, which Cairn does not do yet, so handlers
    /// get no `since`).
    fn begin_backup(&self, run: &HandlerRun<'_>) -> Result<SourceSession> {
        let mut session = self.start(run.grants)?;
        if !session.features.full {
            bail!("{} cannot make a full backup (its capabilities say so)", self.policy.label());
        }
        session.begin_backup(run.params, None)?;
        Ok(session)
    }

    /// Run the handler's backup; `store` makes the snapshot from its
    /// steps. The handler starts at the first step `store` asks for, so
    /// only once the target (a local writer, a server's session) is open.
    pub fn back_up(
        &self,
        run: &HandlerRun<'_>,
        store: impl FnOnce(&SourceBackup, &mut dyn ItemSource) -> Result<BackupReport>,
    ) -> Result<BackupReport> {
        // The snapshot records the handler as the component describes
        // itself (a fetched one's listing could say otherwise).
        let info = &self.policy.info;
        let opts = SourceBackup {
            group: run.group.clone(),
            tags: run.tags.to_vec(),
            time: run.time,
            archive: info.name.clone(),
            handler: engine::SourceHandler {
                name: info.name.clone(),
                version: info.version.clone(),
                digest: Some(self.policy.digest.clone()),
            },
        };
        let mut steps = Steps { handler: self, run, session: None, announced: None, total: 0 };
        let report = store(&opts, &mut steps);
        if let Some(session) = &steps.session {
            log_stderr(&self.record.name, session);
        }
        report
    }

    /// Hand the items `replay` reads back to the handler's restore.
    pub fn restore(
        &self,
        params: &[(String, String)],
        grants: &Grants,
        replay: impl FnOnce(&mut dyn ItemSink) -> Result<()>,
    ) -> Result<()> {
        let mut session = self.start(grants)?;
        session.begin_restore(params)?;
        let replayed = replay(&mut Upload { session: &mut session });
        let finished = replayed.and_then(|()| Ok(session.finish_restore()?));
        log_stderr(&self.record.name, &session);
        finished
    }
}

/// What one backup through a handler is: the handler's parameters and
/// grants, and the snapshot to make.
pub struct HandlerRun<'a> {
    pub params: &'a [(String, String)],
    pub grants: &'a Grants,
    pub group: BackupGroup,
    pub tags: &'a [String],
    /// Snapshot time, epoch seconds.
    pub time: i64,
    /// The most data the handler may yield; more fails the backup.
    pub max_bytes: Option<u64>,
}

/// `cairn backup --source NAME` (and a job with a source handler): run the
/// stored handler's backup into a new snapshot in the local datastore.
pub fn backup(
    engine: &Engine,
    host: &Host,
    name: &str,
    run: &HandlerRun<'_>,
    progress: &Progress,
) -> Result<BackupReport> {
    let (record, wasm) =
        engine.load_policy(name)?.ok_or_else(|| crate::policies::NoSuchPolicy(name.to_owned()))?;
    let handler = Handler::load(Some(engine), host, record, &wasm)?;
    handler.back_up(run, |opts, steps| engine.backup_items(opts, steps, progress))
}

fn log_stderr(name: &str, session: &SourceSession) {
    let err = session.stderr();
    if !err.trim().is_empty() {
        tracing::info!("source handler {name} wrote on stderr: {}", err.trim());
    }
}

/// The handler's steps as the engine wants them; checks each file's data
/// against the size the handler announced for it, and the whole against
/// the backup's limit.
struct Steps<'a> {
    handler: &'a Handler<'a>,
    run: &'a HandlerRun<'a>,
    /// Started at the first step.
    session: Option<SourceSession>,
    /// The current file: (path, announced size, bytes so far).
    announced: Option<(String, u64, u64)>,
    /// Data bytes so far.
    total: u64,
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
        let session = match &mut self.session {
            Some(s) => s,
            None => self.session.insert(self.handler.begin_backup(self.run)?),
        };
        Ok(match session.next_step()? {
            SourceStep::End => {
                self.check_size()?;
                Step::End
            }
            SourceStep::Data(d) => {
                self.total += d.len() as u64;
                if let Some(max) = self.run.max_bytes.filter(|&max| self.total > max) {
                    bail!(
                        "the source handler yielded more than the backup's size limit of {} ({max} bytes); \
                         nothing was kept. Raise the limit (--max-size, or the job's size limit) if the \
                         source really is that large",
                        model::human::size(max)
                    );
                }
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

/// What vouches for the handler a snapshot names. A manifest names its
/// handler's digest, and whoever wrote the snapshot wrote the manifest
/// (a backup client uploads it to a server), so the name alone must not
/// make an admin run that component with the admin's own parameters
/// and grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vouch {
    /// A job of this datastore made the snapshot (its task records it):
    /// the handler is the one the admin configured.
    Job(String),
    /// The person restoring named the handler with `--handler NAME@DIGEST`.
    Confirmed,
}

/// `NAME@DIGEST` for the handler `m` names, as `--handler` takes it.
pub fn handler_label(m: &Manifest) -> String {
    format!("{}@{}", m.source.name, m.source.digest.as_deref().unwrap_or_default())
}

/// Decide whether the handler `m` names may run: `confirm` (the value of
/// `--handler`) must be exactly what the manifest names; without it the
/// snapshot must have been made by a job (`job`, as the task records
/// say). A pure function of what it is given.
pub fn vouch(id: &SnapshotId, m: &Manifest, job: Option<&str>, confirm: Option<&str>) -> Result<Vouch> {
    let label = handler_label(m);
    let shown = model::human::escaped(label.as_bytes());
    if let Some(c) = confirm {
        let matches = c.rsplit_once('@').is_some_and(|(name, digest)| {
            name == m.source.name
                && m.source.digest.as_deref().is_some_and(|d| d.eq_ignore_ascii_case(digest))
        });
        if !matches {
            bail!("--handler {c:?} does not match the handler {id} names, {shown}; nothing was run");
        }
        return Ok(Vouch::Confirmed);
    }
    if let Some(job) = job {
        return Ok(Vouch::Job(job.to_owned()));
    }
    bail!(
        "{id} names the source handler {shown}, but no job of this datastore made it, so nothing \
         vouches for that choice: whoever wrote the snapshot chose the handler that would run here with \
         your parameters and grants. If that is the handler you expect, confirm with --handler {shown}; \
         or restore the items as plain files with --raw TARGET"
    )
}

/// The job whose task recorded making snapshot `id` in this datastore,
/// if any (tasks are kept up to `catalog::MAX_TASKS`).
pub fn made_by_job(engine: &Engine, id: &SnapshotId) -> Result<Option<String>> {
    let id = id.to_string();
    let tasks = engine.tasks(usize::MAX, None)?;
    Ok(tasks.into_iter().find(|t| t.snapshot.as_deref() == Some(id.as_str())).and_then(|t| t.job))
}

/// Restore snapshot `id` (made by a handler, see [`made_by_handler`])
/// through the stored policy with the very component that made it, once
/// something vouches for it (see [`vouch`]).
pub fn restore(
    engine: &Engine,
    id: &SnapshotId,
    m: &Manifest,
    confirm: Option<&str>,
    params: &[(String, String)],
    grants: &Grants,
    progress: &Progress,
) -> Result<()> {
    vouch(id, m, made_by_job(engine, id)?.as_deref(), confirm)?;
    let digest = m.source.digest.as_deref().unwrap_or_default();
    let found = engine.list_policies()?.into_iter().find(|r| r.world == "source" && r.digest == digest);
    let Some(record) = found else {
        bail!(handler_missing(id, m, "here; add that component with `cairn policy add`"))
    };
    let (record, wasm) =
        engine.load_policy(&record.name)?.ok_or_else(|| anyhow!("policy {} disappeared", record.name))?;
    let host = host()?;
    let handler = Handler::load(Some(engine), &host, record, &wasm)?;
    let archive = first_archive(id, m)?;
    handler.restore(params, grants, |sink| engine.replay(id, archive, sink, progress))
}

pub fn first_archive<'m>(id: &SnapshotId, m: &'m Manifest) -> Result<&'m str> {
    Ok(&m.archives.first().ok_or_else(|| anyhow!("{id} has no archive"))?.name)
}

pub fn handler_missing(id: &SnapshotId, m: &Manifest, remedy: &str) -> String {
    format!(
        "{id} was made by the source handler {} {} (component blake3 {}), which is not stored {remedy}, \
         or restore its items as plain files with --raw",
        m.source.name,
        m.source.version,
        m.source.digest.as_deref().unwrap_or_default().chars().take(16).collect::<String>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(name: &str, digest: &str) -> Manifest {
        Manifest {
            format: "cairn-manifest".into(),
            version: 1,
            ns: String::new(),
            backup_type: "app".into(),
            backup_id: "db".into(),
            time: "2026-01-01T00:00:00Z".into(),
            tags: vec![],
            archives: vec![],
            stats: filevol::ManifestStats::default(),
            errors: vec![],
            source: engine::SourceHandler {
                name: name.into(),
                version: "1.0.0".into(),
                digest: Some(digest.into()),
            },
            created_by: "anyone".into(),
        }
    }

    #[test]
    fn a_handler_runs_only_when_a_job_made_the_snapshot_or_the_restore_names_it() {
        let id = SnapshotId::parse("app/db/2026-01-01T00:00:00Z", &model::Namespace::root()).unwrap();
        let digest = "ab".repeat(32);
        let m = manifest("dump", &digest);
        let label = format!("dump@{digest}");
        let err = vouch(&id, &m, None, None).unwrap_err().to_string();
        assert!(err.contains(&format!("--handler {label}")) && err.contains("--raw"), "{err}");
        assert_eq!(vouch(&id, &m, Some("nightly"), None).unwrap(), Vouch::Job("nightly".into()));
        assert_eq!(vouch(&id, &m, None, Some(&label)).unwrap(), Vouch::Confirmed);
        assert_eq!(
            vouch(&id, &m, None, Some(&label.to_uppercase().replace("DUMP", "dump"))).unwrap(),
            Vouch::Confirmed
        );
        // A confirmation must name exactly what the manifest names, even
        // when a job made the snapshot.
        for wrong in [
            "dump".to_owned(),
            "other@".to_owned() + &digest,
            format!("dump@{}", "cd".repeat(32)),
            format!("dump@{}", &digest[..16]),
        ] {
            let err = vouch(&id, &m, Some("nightly"), Some(&wrong)).unwrap_err().to_string();
            assert!(err.contains("does not match") && err.contains(&label), "{wrong}: {err}");
        }
        // A name with control characters is shown escaped.
        let m = manifest("x\x1b]0;t\x07", &digest);
        let err = vouch(&id, &m, None, None).unwrap_err().to_string();
        assert!(!err.contains('\x1b') && err.contains("\\x1b"), "{err}");
    }
}
