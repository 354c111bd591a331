//! Policies from the API and the dashboard: upload, list, show, remove,
//! and the prune simulator. Components compile in a child process under
//! bounded resources, off the async workers.

use std::collections::BTreeMap;

use askama::Template;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Form, Json};
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::error::{AppError, AppResult};
use super::state::{AppState, now};
use super::views::{Chrome, render};
use crate::policies::{self, NoSuchPolicy, PolicyJson, Simulation};

/// Largest upload: the component size limit plus room for nothing else.
pub const MAX_POLICY_BODY: usize = policy::MAX_COMPONENT_BYTES;

#[derive(Debug, Deserialize)]
pub struct UploadQuery {
    /// Name to store it under (default: the name the policy gives itself).
    pub name: Option<String>,
    pub cpu_ms: Option<u64>,
    pub memory_mib: Option<u64>,
}

/// `POST /api/v1/policies`: the body is the component (`application/wasm`).
pub async fn upload(
    State(state): State<AppState>,
    Query(q): Query<UploadQuery>,
    body: Bytes,
) -> AppResult<(StatusCode, Json<PolicyJson>)> {
    if body.is_empty() {
        return Err(AppError::bad_request(
            "send the component (a .wasm file built for wasm32-wasip2) as the body",
        ));
    }
    if q.cpu_ms.is_some_and(|ms| !(10..=60_000).contains(&ms))
        || q.memory_mib.is_some_and(|m| !(1..=4096).contains(&m))
    {
        return Err(AppError::bad_request("cpu_ms is 10 to 60000, memory_mib 1 to 4096"));
    }
    let record = state
        .policies(move |e, host| {
            policies::add(e, host, &body, q.name.as_deref(), q.cpu_ms, q.memory_mib, now())
        })
        .await?;
    Ok((StatusCode::CREATED, Json(PolicyJson::from(&record))))
}

/// `GET /api/v1/policies`.
pub async fn list(State(state): State<AppState>) -> AppResult<Json<Vec<PolicyJson>>> {
    let all = state.engine(|e| e.list_policies()).await?;
    Ok(Json(all.iter().map(PolicyJson::from).collect()))
}

/// `GET /api/v1/policies/{name}`.
pub async fn show(State(state): State<AppState>, Path(name): Path<String>) -> AppResult<Json<PolicyJson>> {
    policies::check_name(&name)?;
    let record = state.engine(move |e| Ok(e.policy(&name)?.ok_or(NoSuchPolicy(name))?)).await?;
    Ok(Json(PolicyJson::from(&record)))
}

/// `DELETE /api/v1/policies/{name}`.
pub async fn remove(State(state): State<AppState>, Path(name): Path<String>) -> AppResult<StatusCode> {
    policies::check_name(&name)?;
    state
        .engine(move |e| {
            if !e.remove_policy(&name)? {
                return Err(NoSuchPolicy(name).into());
            }
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub struct SimulateJson {
    /// `TYPE/ID`.
    pub group: String,
    #[serde(default)]
    pub ns: String,
    /// RFC 3339; default: the oldest snapshot's time.
    pub from: Option<String>,
    /// RFC 3339; default: the newest snapshot's time.
    pub to: Option<String>,
    /// `30m`, `6h`, `1d`, `1w`.
    #[serde(default = "one_day")]
    pub every: String,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

fn one_day() -> String {
    "1d".into()
}

fn time(t: &Option<String>, what: &str) -> AppResult<Option<i64>> {
    t.as_ref()
        .map(|t| {
            model::time::parse_rfc3339(t)
                .ok_or_else(|| AppError::bad_request(format!("{what} {t:?} is not an RFC 3339 time")))
        })
        .transpose()
}

/// `POST /api/v1/policies/{name}/simulate`: what a retention policy would
/// keep over time on a group's real snapshots; nothing is removed.
pub async fn simulate(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(body): Json<SimulateJson>,
) -> AppResult<Json<Simulation>> {
    let group = model::BackupGroup::parse(&body.group, &model::Namespace::parse(&body.ns)?)?;
    let (from, to) = (time(&body.from, "from")?, time(&body.to, "to")?);
    let every = policies::parse_every(&body.every).map_err(|e| AppError::bad_request(format!("{e:#}")))?;
    let params: Vec<(String, String)> = body.params.into_iter().collect();
    let sim = state
        .policies(move |e, host| {
            policies::simulate(e, host, &name, &group, policies::SimSpan { from, to, every }, &params)
        })
        .await?;
    Ok(Json(sim))
}

#[derive(Template)]
#[template(path = "policies.html")]
struct PoliciesPage {
    chrome: Chrome,
    policies: Vec<PolicyJson>,
    /// The simulation asked for on this page, if any.
    sim: Option<SimView>,
}

struct SimView {
    policy: String,
    group: String,
    every: String,
    params: String,
    result: Simulation,
}

/// `GET /policies`: the stored policies, and the simulator form.
pub async fn page(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> AppResult<Response> {
    policies_page(&state, &caller, None).await
}

async fn policies_page(state: &AppState, caller: &Caller, sim: Option<SimView>) -> AppResult<Response> {
    let all = state.engine(|e| e.list_policies()).await?;
    render(&PoliciesPage {
        chrome: Chrome::new(state, caller),
        policies: all.iter().map(PolicyJson::from).collect(),
        sim,
    })
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SimulateForm {
    policy: String,
    group: String,
    #[serde(default = "one_day")]
    every: String,
    /// `key=value` pairs separated by spaces or commas.
    #[serde(default)]
    params: String,
}

/// `POST /policies/simulate`: the simulator form; the page shows the result.
pub async fn simulate_form(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Form(f): Form<SimulateForm>,
) -> AppResult<Response> {
    let group = model::BackupGroup::parse(f.group.trim(), &model::Namespace::root())?;
    let every = policies::parse_every(f.every.trim()).map_err(|e| AppError::bad_request(format!("{e:#}")))?;
    let mut params = Vec::new();
    for kv in f.params.split([' ', ',', '\n']).map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| AppError::bad_request(format!("parameter {kv:?}: expected key=value")))?;
        params.push((k.to_owned(), v.to_owned()));
    }
    let name = f.policy.clone();
    let result = state
        .policies(move |e, host| {
            policies::simulate(
                e,
                host,
                &name,
                &group,
                policies::SimSpan { from: None, to: None, every },
                &params,
            )
        })
        .await?;
    let sim = SimView { policy: f.policy, group: f.group, every: f.every, params: f.params, result };
    policies_page(&state, &caller, Some(sim)).await
}
