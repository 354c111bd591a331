//! `cairn job …` (define and run scheduled backups) and `cairn check`
//! (their SLA, as a monitoring plugin).

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use model::{BackupGroup, Job, JobSource, Namespace, PolicyUse, Sla, TaskState};

use super::policy::parse_params;

use super::common::{Global, KeepArgs, now, open, open_or_init};
use crate::output;

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Create or replace a job; `cairn serve` runs it on its schedule.
    Add(Box<JobAddArgs>),
    /// List jobs with their SLA state and next run.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a job (its snapshots stay).
    Rm { name: String },
    /// Run a job now, here, as a task; prints the task's log.
    Run { name: String },
}

#[derive(Debug, Args)]
pub struct JobAddArgs {
    /// Job name (letters, digits, '-', '_', '.').
    pub name: String,
    /// Paths on this machine to back up.
    #[arg(required_unless_present = "source", conflicts_with = "source")]
    pub sources: Vec<String>,
    /// Back up through this stored source handler instead of paths.
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
    #[command(flatten)]
    pub handler: super::source::HandlerArgs,
    /// With --source: a run fails, keeping nothing, when the handler yields more than SIZE (bytes,
    /// or with a unit K, M, G or T: 50G).
    #[arg(long, value_name = "SIZE", value_parser = model::size::parse_limit, requires = "source")]
    pub max_size: Option<u64>,
    /// Group of the snapshots (TYPE/ID).
    #[arg(long)]
    pub group: String,
    #[arg(long, default_value = "")]
    pub ns: String,
    /// Cron schedule, five fields as in crontab(5), UTC (`0 3 * * *`; weekday 0 or 7 is Sunday).
    #[arg(long, required_unless_present_any = ["intervals", "scheduler"], conflicts_with_all = ["intervals", "scheduler"])]
    pub schedule: Option<String>,
    /// backy's named intervals instead of cron: `daily=1d:7 weekly=1w:4` (TAG=INTERVAL:KEEP). A run
    /// carries the tags that are due; without --keep-* or --retention each tag keeps its count.
    #[arg(long, value_name = "TAG=INTERVAL:KEEP …", conflicts_with = "scheduler")]
    pub intervals: Option<String>,
    /// A stored scheduler policy decides when the job runs and with which tags.
    #[arg(long, value_name = "NAME")]
    pub scheduler: Option<String>,
    /// A parameter for the scheduler policy, KEY=VALUE (repeatable).
    #[arg(long = "scheduler-param", value_name = "KEY=VALUE", requires = "scheduler")]
    pub scheduler_params: Vec<String>,
    /// A stored retention policy prunes the group after each run (instead of --keep-*).
    #[arg(long, value_name = "NAME")]
    pub retention: Option<String>,
    /// A parameter for the retention policy, KEY=VALUE (repeatable).
    #[arg(long = "retention-param", value_name = "KEY=VALUE", requires = "retention")]
    pub retention_params: Vec<String>,
    /// Tag for every snapshot; repeat for more.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    #[command(flatten)]
    pub keep: KeepArgs,
    /// Verify each new snapshot.
    #[arg(long)]
    pub verify: bool,
}

pub fn run(cli: &Global, c: &JobCommand) -> Result<ExitCode> {
    match c {
        JobCommand::Add(a) => {
            let engine = open_or_init(cli)?;
            let group = BackupGroup::parse(&a.group, &Namespace::parse(&a.ns)?)?;
            let created = engine.job(&a.name).map_or(now(), |j| j.created);
            let job = Job {
                sources: a
                    .sources
                    .iter()
                    .map(|s| std::path::absolute(s).map(|p| p.display().to_string()))
                    .collect::<Result<_, _>>()?,
                schedule: a.schedule.clone().unwrap_or_default(),
                tags: a.tags.clone(),
                keep: a.keep.rules(),
                verify: a.verify,
                intervals: model::backy::parse_intervals(a.intervals.as_deref().unwrap_or(""))
                    .map_err(|e| anyhow::anyhow!("--intervals: {e}"))?,
                scheduler: policy_use(&a.scheduler, &a.scheduler_params)?,
                retention: policy_use(&a.retention, &a.retention_params)?,
                source: a
                    .source
                    .as_ref()
                    .map(|handler| -> Result<JobSource> {
                        let (params, _) = a.handler.parsed()?;
                        Ok(JobSource {
                            handler: handler.clone(),
                            params,
                            allow_hosts: a.handler.allow_hosts.clone(),
                            grant_dir: a
                                .handler
                                .grant_dir
                                .as_ref()
                                .map(|d| std::path::absolute(d).map(|p| p.display().to_string()))
                                .transpose()?,
                            max_bytes: a.max_size,
                        })
                    })
                    .transpose()?,
                ..Job::new(a.name.clone(), group, created)
            };
            if a.source.is_none() && !a.handler.is_empty() {
                bail!("--param, --allow-host and --grant-dir are for a source handler (--source NAME)");
            }
            engine.put_job(&job)?;
            println!("job {} saved", job.name);
        }
        JobCommand::List { json } => {
            let statuses = open(cli)?.job_statuses(now())?;
            let t = |v: Option<i64>| v.map_or("-".to_owned(), model::time::format_rfc3339);
            if *json {
                output::json(&statuses.iter().map(dto::JobJson::from).collect::<Vec<_>>());
            } else {
                let rows: Vec<Vec<String>> = statuses
                    .iter()
                    .map(|s| {
                        vec![
                            s.job.name.clone(),
                            s.job.group.to_string(),
                            s.job.describe_schedule(),
                            s.sla.as_str().into(),
                            t(s.newest_good),
                            t(s.next_run),
                        ]
                    })
                    .collect();
                output::table(&["JOB", "GROUP", "SCHEDULE", "SLA", "NEWEST GOOD", "NEXT RUN"], &rows);
            }
        }
        JobCommand::Rm { name } => {
            if !open(cli)?.remove_job(name)? {
                bail!("no job named {name}");
            }
            println!("removed job {name}");
        }
        JobCommand::Run { name } => {
            let policies = jobhost::JobHost::default();
            let task = open(cli)?.run_job(name, "manual (command line)", now(), &policies)?;
            for line in &task.log {
                println!("{line}");
            }
            return Ok(match task.state {
                TaskState::Ok => ExitCode::SUCCESS,
                TaskState::Warning => ExitCode::from(3),
                _ => ExitCode::from(1),
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
#[command(after_long_help = "\
EXIT STATUS (as a Nagios/Icinga plugin):
    0  OK        every job has a recent good snapshot
    1  WARNING   a job has no snapshot yet, but is not overdue
    2  CRITICAL  a job is overdue: its newest good snapshot is older than 1.5x its shortest interval
    3  UNKNOWN   the datastore or a job cannot be read")]
pub struct CheckArgs {
    /// Check only this job.
    #[arg(long)]
    pub job: Option<String>,
}

/// Nagios plugin semantics; any error is UNKNOWN (3), not a plain failure.
pub fn check(cli: &Global, a: &CheckArgs) -> Result<ExitCode> {
    let statuses = match open(cli).and_then(|e| e.job_statuses(now())) {
        Ok(s) => s,
        Err(e) => {
            println!("UNKNOWN - {e:#}");
            return Ok(ExitCode::from(3));
        }
    };
    let selected: Vec<_> =
        statuses.iter().filter(|s| a.job.as_ref().is_none_or(|j| *j == s.job.name)).collect();
    if let Some(name) = &a.job
        && selected.is_empty()
    {
        println!("UNKNOWN - no job named {name}");
        return Ok(ExitCode::from(3));
    }
    let count = |sla| selected.iter().filter(|s| s.sla == sla).count();
    let (overdue, pending) = (count(Sla::Overdue), count(Sla::Pending));
    let details: Vec<String> = selected
        .iter()
        .map(|s| {
            let newest = s.newest_good.map_or("never".to_owned(), model::time::format_rfc3339);
            format!("{}: {} (newest good {newest})", s.job.name, s.sla.as_str())
        })
        .collect();
    let (word, code) = if overdue > 0 {
        ("CRITICAL", 2)
    } else if pending > 0 {
        ("WARNING", 1)
    } else {
        ("OK", 0)
    };
    println!(
        "{word} - {} jobs, {overdue} overdue, {pending} pending | overdue={overdue} pending={pending}",
        selected.len()
    );
    for d in details {
        println!("{d}");
    }
    Ok(ExitCode::from(code))
}

/// `--scheduler NAME` or `--retention NAME` with its `KEY=VALUE` parameters.
fn policy_use(name: &Option<String>, params: &[String]) -> Result<Option<PolicyUse>> {
    name.as_ref().map(|name| Ok(PolicyUse { name: name.clone(), params: parse_params(params)? })).transpose()
}
