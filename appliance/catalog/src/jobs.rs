//! Jobs and tasks in the catalog: server records like users, never touched
//! by a rebuild.

use model::{Job, Task, TaskState};
use redb::{ReadableDatabase, ReadableTable, TableError};

use crate::row::{JobRowV1, TaskRowV1};
use crate::schema::{JOBS, TASKS};
use crate::{Catalog, CatalogError, corrupt, raise_min_reader};

/// Most tasks kept; older finished ones are dropped as new ones start.
pub const MAX_TASKS: u64 = 10_000;

/// Most log lines kept per task (the first ones and the last ones).
pub const MAX_LOG_LINES: usize = 2_000;

impl Catalog {
    /// Store `job`; a row with fields newer than reader version 1 raises
    /// the catalog's minimum reader version in the same transaction.
    pub fn put_job(&self, job: &Job) -> Result<(), CatalogError> {
        let row = JobRowV1::from(job);
        let bytes = serde_json::to_vec(&row).map_err(|e| corrupt(&job.name, e.to_string()))?;
        let write = self.db.begin_write()?;
        write.open_table(JOBS)?.insert(job.name.as_str(), bytes.as_slice())?;
        raise_min_reader(&write, row.reader_version())?;
        write.commit()?;
        Ok(())
    }

    pub fn get_job(&self, name: &str) -> Result<Option<Job>, CatalogError> {
        self.get::<JobRowV1, _>(JOBS, name)
    }

    pub fn list_jobs(&self) -> Result<Vec<Job>, CatalogError> {
        self.list::<JobRowV1, _>(JOBS)
    }

    pub fn remove_job(&self, name: &str) -> Result<bool, CatalogError> {
        self.remove(JOBS, name)
    }

    /// Store a new task under the next free id (returned), dropping the
    /// oldest tasks beyond `MAX_TASKS`.
    pub fn start_task(&self, task: &Task) -> Result<u64, CatalogError> {
        let write = self.db.begin_write()?;
        let id = {
            let mut table = write.open_table(TASKS)?;
            let id = table.last()?.map_or(1, |(k, _)| k.value() + 1);
            let row = TaskRowV1::from(&Task { id, ..task.clone() });
            let bytes = serde_json::to_vec(&row).map_err(|e| corrupt("task", e.to_string()))?;
            table.insert(id, bytes.as_slice())?;
            if id > MAX_TASKS {
                table.retain_in(..=id - MAX_TASKS, |_, _| false)?;
            }
            id
        };
        write.commit()?;
        Ok(id)
    }

    /// Change a task in one transaction (append log lines, finish it).
    pub fn update_task(&self, id: u64, change: impl FnOnce(&mut Task)) -> Result<(), CatalogError> {
        let write = self.db.begin_write()?;
        {
            let mut table = write.open_table(TASKS)?;
            let key = id.to_string();
            let mut task = match table.get(id)? {
                Some(v) => decode_task(&key, v.value())?,
                None => return Err(corrupt(&key, "no such task".into())),
            };
            change(&mut task);
            if task.log.len() > MAX_LOG_LINES {
                let cut = task.log.len() - MAX_LOG_LINES;
                task.log.drain(MAX_LOG_LINES / 2..MAX_LOG_LINES / 2 + cut);
            }
            let bytes =
                serde_json::to_vec(&TaskRowV1::from(&task)).map_err(|e| corrupt(&key, e.to_string()))?;
            table.insert(id, bytes.as_slice())?;
        }
        write.commit()?;
        Ok(())
    }

    pub fn get_task(&self, id: u64) -> Result<Option<Task>, CatalogError> {
        let read = self.db.begin_read()?;
        let table = match read.open_table(TASKS) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let found = table.get(id)?;
        found.map(|v| decode_task(&id.to_string(), v.value())).transpose()
    }

    /// The newest `limit` tasks, newest first, optionally of one job.
    pub fn recent_tasks(&self, limit: usize, job: Option<&str>) -> Result<Vec<Task>, CatalogError> {
        let read = self.db.begin_read()?;
        let table = match read.open_table(TASKS) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for entry in table.iter()?.rev() {
            let (k, v) = entry?;
            let task = decode_task(&k.value().to_string(), v.value())?;
            if job.is_none_or(|j| task.job.as_deref() == Some(j)) {
                out.push(task);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Mark every task still `running` as failed (after a restart, none
    /// can be), with `note` in its log. Returns how many there were.
    pub fn fail_running_tasks(&self, now: i64, note: &str) -> Result<usize, CatalogError> {
        let running: Vec<u64> = self
            .recent_tasks(usize::MAX, None)?
            .into_iter()
            .filter(|t| t.state == TaskState::Running)
            .map(|t| t.id)
            .collect();
        for id in &running {
            self.update_task(*id, |t| {
                t.state = TaskState::Failed;
                t.finished = Some(now);
                t.log.push(note.to_owned());
            })?;
        }
        Ok(running.len())
    }
}

fn decode_task(key: &str, bytes: &[u8]) -> Result<Task, CatalogError> {
    let row: TaskRowV1 = serde_json::from_slice(bytes).map_err(|e| corrupt(key, e.to_string()))?;
    Task::try_from(row).map_err(|e| corrupt(key, e))
}
