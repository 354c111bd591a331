//! The dashboard's job form (`job_form.html`) as posted and as it is
//! filled in again: every field is text, lists one item per line. It
//! becomes a [`NewJob`], saved through the same checks as the API's.

use model::policy::parse_params;
use serde::Deserialize;

use crate::job::{JobSourceJson, KeepJson, NewJob, PolicyUseJson};

/// The job form as posted, and as it is filled in again: every field is
/// text (an empty number is 0), lists one item per line.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct JobForm {
    pub name: String,
    pub group: String,
    /// Paths on the server (without a source handler).
    pub sources: String,
    /// A cron schedule, or backy's named intervals, or a scheduler policy.
    pub schedule: String,
    pub intervals: String,
    pub tags: String,
    pub keep_last: String,
    pub keep_hourly: String,
    pub keep_daily: String,
    pub keep_weekly: String,
    pub keep_monthly: String,
    pub keep_yearly: String,
    pub verify: Option<String>,
    /// Stored policies by name ("" for none) with their `KEY=VALUE` lines.
    pub scheduler: String,
    pub scheduler_params: String,
    pub retention: String,
    pub retention_params: String,
    pub source: String,
    pub source_params: String,
    /// `HOST:PORT` lines the source handler may reach.
    pub allow_hosts: String,
    pub grant_dir: String,
    /// The most a source handler may yield in one run (`50G`; empty: no limit).
    pub max_size: String,
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

fn param_lines(params: &[(String, String)]) -> String {
    params.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

fn keep_count(field: &str, text: &str) -> Result<u32, String> {
    Ok(form_number(field, text)?.unwrap_or(0))
}

impl JobForm {
    /// A new job: nightly at 03:00 UTC, a week of dailies, four weeklies
    /// and six monthlies.
    pub fn new_job() -> Self {
        let keep = model::prune::KeepRules { daily: 7, weekly: 4, monthly: 6, ..Default::default() };
        Self { schedule: "0 3 * * *".into(), ..Self::keeping(&keep) }
    }

    fn keeping(k: &model::prune::KeepRules) -> Self {
        Self {
            keep_last: k.last.to_string(),
            keep_hourly: k.hourly.to_string(),
            keep_daily: k.daily.to_string(),
            keep_weekly: k.weekly.to_string(),
            keep_monthly: k.monthly.to_string(),
            keep_yearly: k.yearly.to_string(),
            ..Self::default()
        }
    }

    /// An existing job's settings.
    pub fn of(j: &model::Job) -> Self {
        let policy = |p: &Option<model::PolicyUse>| {
            p.as_ref().map(|p| (p.name.clone(), param_lines(&p.params))).unwrap_or_default()
        };
        let (scheduler, scheduler_params) = policy(&j.scheduler);
        let (retention, retention_params) = policy(&j.retention);
        let source = j.source.clone().unwrap_or_default();
        Self {
            name: j.name.clone(),
            group: j.group.to_string(),
            sources: j.sources.join("\n"),
            schedule: j.schedule.clone(),
            intervals: model::backy::format_intervals(&j.intervals),
            tags: j.tags.join(" "),
            verify: j.verify.then(|| "on".into()),
            scheduler,
            scheduler_params,
            retention,
            retention_params,
            source_params: param_lines(&source.params),
            allow_hosts: source.allow_hosts.join("\n"),
            grant_dir: source.grant_dir.unwrap_or_default(),
            max_size: source.max_bytes.map(model::size::format_size).unwrap_or_default(),
            source: source.handler,
            ..Self::keeping(&j.keep)
        }
    }

    /// The job as the API takes it (`Engine::put_job` then checks that
    /// the policies it names are stored). `editing`: the form was filled in
    /// from a stored job, so its keep fields are the job's own.
    pub fn to_new_job(&self, editing: bool) -> Result<NewJob, String> {
        let scheduler = policy_use("scheduler", &self.scheduler, &self.scheduler_params)?;
        let retention = policy_use("retention", &self.retention, &self.retention_params)?;
        let max_bytes =
            Some(self.max_size.trim()).filter(|s| !s.is_empty()).map(model::size::parse_limit).transpose()?;
        let source = match policy_use("source", &self.source, &self.source_params)? {
            Some(p) => Some(JobSourceJson {
                handler: p.name,
                params: p.params,
                allow_hosts: lines(&self.allow_hosts),
                grant_dir: Some(self.grant_dir.trim()).filter(|d| !d.is_empty()).map(str::to_owned),
                max_bytes,
            }),
            None if !lines(&self.allow_hosts).is_empty()
                || !self.grant_dir.trim().is_empty()
                || max_bytes.is_some() =>
            {
                return Err(
                    "allowed hosts, a grant dir and a size limit are for a source handler: choose one, or clear them"
                        .into(),
                );
            }
            None => None,
        };
        // A retention policy replaces the keep counts. A new job's keep
        // fields start with defaults, which would override the counts of
        // named intervals: a new interval job keeps none. A stored job's
        // keep fields show its own rules (as the API may have set them
        // beside intervals), so an edit saves what the form shows.
        let keep = if retention.is_none() && (editing || self.intervals.trim().is_empty()) {
            KeepJson {
                last: keep_count("keep last", &self.keep_last)?,
                hourly: keep_count("keep hourly", &self.keep_hourly)?,
                daily: keep_count("keep daily", &self.keep_daily)?,
                weekly: keep_count("keep weekly", &self.keep_weekly)?,
                monthly: keep_count("keep monthly", &self.keep_monthly)?,
                yearly: keep_count("keep yearly", &self.keep_yearly)?,
            }
        } else {
            KeepJson::default()
        };
        Ok(NewJob {
            name: self.name.trim().to_owned(),
            group: self.group.trim().to_owned(),
            sources: lines(&self.sources),
            schedule: self.schedule.clone(),
            intervals: self.intervals.clone(),
            scheduler,
            retention,
            source,
            tags: self.tags.split([',', ' ', '\n']).map(str::to_owned).collect(),
            keep,
            verify: self.verify.is_some(),
        })
    }
}

/// The policy a select chose ("" for none) for `world`, with the
/// parameters typed for it.
fn policy_use(world: &str, name: &str, params: &str) -> Result<Option<PolicyUseJson>, String> {
    let name = name.trim();
    let params = parse_params(lines(params)).map_err(|e| format!("{world} {e}"))?;
    if name.is_empty() {
        if !params.is_empty() {
            return Err(format!("{world} parameters need a {world} policy: choose one, or clear them"));
        }
        return Ok(None);
    }
    Ok(Some(PolicyUseJson { name: name.to_owned(), params: params.into_iter().collect() }))
}

/// A number typed into a form field; empty is `None`.
pub fn form_number<T: std::str::FromStr>(field: &str, text: &str) -> Result<Option<T>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| format!("{field} must be a whole number, not {text:?}"))
}
