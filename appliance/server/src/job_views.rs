//! Dashboard pages for jobs and tasks: the jobs table, a job's page, and
//! one form (`job_form.html`, `JobFormView`) to create or edit a job with
//! every kind of schedule, retention and source the API takes. A form
//! becomes the API's `NewJob` and is saved by `jobs_api::save`, which
//! checks it.

use askama::Template;
use axum::Extension;
use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use model::PolicyRecord;
use model::prune::Rule;
use policy::World;

use super::auth::Caller;
use super::error::{AppError, AppResult};
use dto::{HIDDEN, JobForm};

use super::jobs_api;
use super::page::{Chrome, Flash, render, render_flash};
use super::policy_api;
use super::state::AppState;

/// A job as its table rows show it.
pub struct JobRow {
    pub name: String,
    pub group: String,
    pub schedule: String,
    pub sla: &'static str,
    pub newest: String,
    pub next: String,
    pub last_task: Option<u64>,
    pub last_state: &'static str,
}

impl From<&engine::jobs::JobStatus> for JobRow {
    fn from(s: &engine::jobs::JobStatus) -> Self {
        let t = |v: Option<i64>| v.map_or("—".to_owned(), model::time::format_rfc3339);
        JobRow {
            name: s.job.name.clone(),
            group: s.job.group.to_string(),
            schedule: s.job.describe_schedule(),
            sla: s.sla.as_str(),
            newest: t(s.newest_good),
            next: t(s.next_run),
            last_task: s.last_task.as_ref().map(|t| t.id),
            last_state: s.last_task.as_ref().map_or("", |t| t.state.as_str()),
        }
    }
}

pub async fn job_rows(state: &AppState, caller: &Caller) -> AppResult<Vec<JobRow>> {
    Ok(jobs_api::statuses(state, caller).await?.iter().map(JobRow::from).collect())
}

/// One choice of a policy select.
pub struct PolicyOption {
    name: String,
    selected: bool,
    /// Why a chosen name is not a stored policy of the select's world.
    note: &'static str,
}

/// The stored policies of `world` for a select, with `chosen` selected
/// (and offered even when it is not stored, so that it is not lost
/// silently: saving it is refused with the reason).
fn options(stored: &[PolicyRecord], world: World, chosen: &str) -> Vec<PolicyOption> {
    let chosen = chosen.trim();
    let mut out: Vec<PolicyOption> = stored
        .iter()
        .filter(|r| r.world == world.name())
        .map(|r| PolicyOption { name: r.name.clone(), selected: r.name == chosen, note: "" })
        .collect();
    if !chosen.is_empty() && !out.iter().any(|o| o.selected) {
        let note = if stored.iter().any(|r| r.name == chosen) { " (another world)" } else { " (not stored)" };
        out.push(PolicyOption { name: chosen.to_owned(), selected: true, note });
    }
    out
}

/// The job form as a page shows it (`job_form.html`, included by the jobs
/// page to create a job and by a job's page to edit it).
pub struct JobFormView {
    action: String,
    /// Editing a job: its name is the key, shown but not changed.
    editing: bool,
    v: JobForm,
    schedulers: Vec<PolicyOption>,
    retentions: Vec<PolicyOption>,
    handlers: Vec<PolicyOption>,
    /// The policies section starts open: something in it is set.
    policies_open: bool,
}

impl JobFormView {
    async fn new(state: &AppState, v: JobForm, editing: bool) -> AppResult<Self> {
        let stored = policy_api::stored(state).await?;
        let policies_open = [
            &v.scheduler,
            &v.scheduler_params,
            &v.retention,
            &v.retention_params,
            &v.source,
            &v.source_params,
            &v.allow_hosts,
            &v.grant_dir,
            &v.max_size,
        ]
        .iter()
        .any(|f| !f.trim().is_empty());
        Ok(Self {
            action: if editing { format!("/jobs/{}", v.name) } else { "/jobs".into() },
            editing,
            schedulers: options(&stored, World::Scheduler, &v.scheduler),
            retentions: options(&stored, World::Retention, &v.retention),
            handlers: options(&stored, World::Source, &v.source),
            policies_open,
            v,
        })
    }
}

#[derive(Template)]
#[template(path = "jobs.html")]
struct JobsPage {
    chrome: Chrome,
    jobs: Vec<JobRow>,
    flash: Flash,
    /// The new-job form, for those who may change jobs.
    form: Option<JobFormView>,
}

/// The jobs page; `refill` is a refused new job's values.
async fn jobs_page(
    state: &AppState,
    caller: &Caller,
    flash: Flash,
    refill: Option<JobForm>,
) -> AppResult<Response> {
    let chrome = Chrome::new(state, caller);
    let form = if chrome.can_operate {
        Some(JobFormView::new(state, refill.unwrap_or_else(JobForm::new_job), false).await?)
    } else {
        None
    };
    let page = JobsPage { chrome, jobs: job_rows(state, caller).await?, flash, form };
    render_flash(&page, &page.flash)
}

pub async fn jobs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> AppResult<Response> {
    jobs_page(&state, &caller, Flash::default(), None).await
}

/// Save a posted job form through the API's checks.
async fn save_form(state: &AppState, caller: &Caller, f: &JobForm, editing: bool) -> AppResult<model::Job> {
    let stored = policy_api::stored(state).await?;
    let new = f.to_new_job(editing).map_err(AppError::bad_request)?;
    let uses = [
        (new.scheduler.as_ref().map(|p| &p.name), World::Scheduler),
        (new.retention.as_ref().map(|p| &p.name), World::Retention),
        (new.source.as_ref().map(|s| &s.handler), World::Source),
    ];
    for (name, world) in uses {
        let Some(name) = name else { continue };
        match stored.iter().find(|r| &r.name == name) {
            None => {
                return Err(AppError::bad_request(format!(
                    "no policy named {name:?} is stored; add it on the Policies page, or choose another"
                )));
            }
            Some(r) if r.world != world.name() => {
                return Err(AppError::bad_request(format!(
                    "policy {name} is a {} policy, not a {} policy",
                    r.world,
                    world.name()
                )));
            }
            Some(_) => {}
        }
    }
    jobs_api::save(state, caller, new).await
}

/// `POST /jobs`: the new-job form; a refused job is shown again with why.
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Form(f): Form<JobForm>,
) -> AppResult<Response> {
    match save_form(&state, &caller, &f, false).await {
        Ok(job) => jobs_page(&state, &caller, Flash::done(format!("Saved job {}.", job.name)), None).await,
        Err(e) => jobs_page(&state, &caller, Flash::refused(e)?, Some(f)).await,
    }
}

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    chrome: Chrome,
    job: JobRow,
    flash: Flash,
    /// The edit form, for those who may change jobs.
    form: Option<JobFormView>,
    /// The settings, for those who may only look (parameters hidden).
    facts: Vec<(&'static str, String)>,
}

/// A job's page; `refill` is a refused edit's values.
async fn job_page(
    state: &AppState,
    caller: &Caller,
    name: &str,
    flash: Flash,
    refill: Option<JobForm>,
) -> AppResult<Response> {
    let status = jobs_api::statuses(state, caller)
        .await?
        .into_iter()
        .find(|s| s.job.name == name)
        .ok_or_else(|| AppError::not_found(format!("no job named {name}")))?;
    let chrome = Chrome::new(state, caller);
    let (form, facts) = if chrome.can_operate {
        let v = refill.unwrap_or_else(|| JobForm::of(&status.job));
        (Some(JobFormView::new(state, v, true).await?), Vec::new())
    } else {
        (None, facts(&status.job))
    };
    let page = JobPage { chrome, job: JobRow::from(&status), flash, form, facts };
    render_flash(&page, &page.flash)
}

/// `GET /jobs/{name}`.
pub async fn job(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> AppResult<Response> {
    job_page(&state, &caller, &name, Flash::default(), None).await
}

/// `POST /jobs/{name}`: the edit form; the job is replaced (its name is
/// the one in the path). A refused edit is shown again with why.
pub async fn edit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Form(mut f): Form<JobForm>,
) -> AppResult<Response> {
    jobs_api::job(&state, &caller, &name).await?;
    f.name.clone_from(&name);
    match save_form(&state, &caller, &f, true).await {
        Ok(job) => jobs_page(&state, &caller, Flash::done(format!("Saved job {}.", job.name)), None).await,
        Err(e) => job_page(&state, &caller, &name, Flash::refused(e)?, Some(f)).await,
    }
}

/// `POST /jobs/{name}/delete`: the job goes, its snapshots stay.
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> AppResult<Response> {
    let job = jobs_api::job(&state, &caller, &name).await?;
    state.engine(move |e| e.remove_job(&job.name)).await?;
    let done = Flash::done(format!("Deleted job {name}; its snapshots stay."));
    jobs_page(&state, &caller, done, None).await
}

/// A job's settings for those who may not change them: what each policy
/// is given is hidden, as the API hides it from them.
fn facts(j: &model::Job) -> Vec<(&'static str, String)> {
    let with = |name: &str, params: &[(String, String)]| {
        let hidden: Vec<String> = params.iter().map(|(k, _)| format!("{k}={HIDDEN}")).collect();
        if hidden.is_empty() { name.to_owned() } else { format!("{name} ({})", hidden.join(" ")) }
    };
    let listed = |items: &[String]| if items.is_empty() { "—".to_owned() } else { items.join(", ") };
    let mut out = Vec::new();
    match &j.source {
        Some(s) => {
            out.push(("Source handler", with(&s.handler, &s.params)));
            out.push(("Allowed hosts", listed(&s.allow_hosts)));
            out.push(("Grant dir", s.grant_dir.clone().unwrap_or_else(|| "—".into())));
            out.push(("Size limit", s.max_bytes.map_or_else(|| "none".into(), model::human::size)));
        }
        None => out.push(("Sources", listed(&j.sources))),
    }
    if let Some(p) = &j.scheduler {
        out.push(("Scheduler policy", with(&p.name, &p.params)));
    }
    out.push(("Tags", listed(&j.tags)));
    let counts: Vec<String> = Rule::ALL
        .iter()
        .filter(|r| j.keep.count(**r) > 0)
        .map(|r| format!("{} {}", r.name(), j.keep.count(*r)))
        .collect();
    let keep = match &j.retention {
        Some(p) => format!("retention policy {}", with(&p.name, &p.params)),
        None if !counts.is_empty() => counts.join(", "),
        None if !j.intervals.is_empty() => "each interval's count".into(),
        None => "everything".into(),
    };
    out.push(("Keep", keep));
    out.push(("Verify", if j.verify { "after each backup".into() } else { "no".into() }));
    out
}

pub async fn run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> AppResult<Response> {
    match jobs_api::start(&state, &caller, &name).await? {
        Some(id) => Ok(Redirect::to(&format!("/tasks/{id}")).into_response()),
        None => {
            let busy = Flash::done(format!("Job {name} is already running."));
            jobs_page(&state, &caller, busy, None).await
        }
    }
}

#[derive(Template)]
#[template(path = "task.html")]
struct TaskPage {
    chrome: Chrome,
    id: u64,
    state: &'static str,
    running: bool,
    kind: String,
    job: String,
    trigger: String,
    started: String,
    finished: String,
    snapshot: String,
    snapshot_link: Option<String>,
    log: Vec<String>,
}

pub async fn task(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
) -> AppResult<Response> {
    let t =
        state.engine(move |e| e.task(id)).await.map_err(|_| AppError::not_found(format!("no task {id}")))?;
    let page = TaskPage {
        chrome: Chrome::new(&state, &caller),
        id,
        state: t.state.as_str(),
        running: t.state == model::TaskState::Running,
        kind: t.kind.clone(),
        job: t.job.clone().unwrap_or_else(|| "—".into()),
        trigger: t.trigger.clone(),
        started: model::time::format_rfc3339(t.started),
        finished: t.finished.map_or("—".into(), model::time::format_rfc3339),
        snapshot: t.snapshot.clone().unwrap_or_default(),
        snapshot_link: t
            .snapshot
            .as_deref()
            .and_then(|s| model::SnapshotId::parse(s, &model::Namespace::root()).ok())
            .map(|id| super::page::snapshot_path(&id)),
        log: t.log,
    };
    render(&page)
}
