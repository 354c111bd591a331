//! Policies from the API and the dashboard: upload, list, show, remove,
//! and the prune simulator. Components compile in a child process under
//! bounded resources, off the async workers. The API and the dashboard's
//! forms share `add` and `remove_stored`.

use std::collections::BTreeMap;

use askama::Template;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use model::PolicyRecord;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::error::{AppError, AppResult};
use super::page::{Chrome, Flash, render_flash};
use super::state::{AppState, now};
use dto::PolicyJson;
use jobhost::policies::{self, NoSuchPolicy, Simulation};
use protocol::SourceHandlerInfo;

/// Largest upload: the component size limit plus room for nothing else.
pub const MAX_POLICY_BODY: usize = policy::MAX_COMPONENT_BYTES;

/// Largest upload form: the component and a few short fields.
pub const MAX_POLICY_FORM: usize = MAX_POLICY_BODY + (64 << 10);

#[derive(Debug, Default, Deserialize)]
pub struct UploadQuery {
    /// Name to store it under (default: the name the policy gives itself).
    pub name: Option<String>,
    pub cpu_ms: Option<u64>,
    pub memory_mib: Option<u64>,
}

/// Validate, compile and store a component; the API's upload and the
/// dashboard's form both add through here.
async fn add(state: &AppState, wasm: Bytes, q: UploadQuery) -> AppResult<PolicyRecord> {
    if wasm.is_empty() {
        return Err(AppError::bad_request(
            "no component: send a .wasm file built for wasm32-wasip2 (as the body, or the form's file)",
        ));
    }
    if q.cpu_ms.is_some_and(|ms| !(10..=60_000).contains(&ms))
        || q.memory_mib.is_some_and(|m| !(1..=4096).contains(&m))
    {
        return Err(AppError::bad_request("cpu_ms is 10 to 60000, memory_mib 1 to 4096"));
    }
    state
        .policies(move |e, host| {
            policies::add(e, host, &wasm, q.name.as_deref(), q.cpu_ms, q.memory_mib, now())
        })
        .await
}

/// `POST /api/v1/policies`: the body is the component (`application/wasm`).
pub async fn upload(
    State(state): State<AppState>,
    Query(q): Query<UploadQuery>,
    body: Bytes,
) -> AppResult<(StatusCode, Json<PolicyJson>)> {
    let record = add(&state, body, q).await?;
    Ok((StatusCode::CREATED, Json(PolicyJson::from(&record))))
}

/// Every stored policy, by name.
pub async fn stored(state: &AppState) -> AppResult<Vec<PolicyRecord>> {
    state.engine(|e| e.list_policies()).await
}

/// `GET /api/v1/policies`.
pub async fn list(State(state): State<AppState>) -> AppResult<Json<Vec<PolicyJson>>> {
    Ok(Json(stored(&state).await?.iter().map(PolicyJson::from).collect()))
}

/// `GET /api/v1/policies/{name}`.
pub async fn show(State(state): State<AppState>, Path(name): Path<String>) -> AppResult<Json<PolicyJson>> {
    policies::check_name(&name)?;
    let record = state.engine(move |e| Ok(e.policy(&name)?.ok_or(NoSuchPolicy(name))?)).await?;
    Ok(Json(PolicyJson::from(&record)))
}

/// `GET /api/v1/sources`: the stored source handlers, for clients that
/// run one themselves and upload what it reads (see the `protocol` crate).
pub async fn sources(State(state): State<AppState>) -> AppResult<Json<Vec<SourceHandlerInfo>>> {
    let all = stored(&state).await?;
    Ok(Json(all.iter().filter(|r| r.world == "source").map(SourceHandlerInfo::from).collect()))
}

/// `GET /api/v1/sources/{name}/component`: a source handler's component.
/// Other policies are not handed out here: only source handlers run on
/// clients.
pub async fn source_component(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> AppResult<Response> {
    policies::check_name(&name)?;
    let wanted = name.clone();
    let found = state
        .engine(move |e| {
            Ok(e.load_policy(&wanted)?.filter(|(r, _)| r.world == "source").map(|(_, wasm)| wasm))
        })
        .await?;
    let Some(wasm) = found else {
        return Err(AppError::not_found(format!("no source handler named {name:?}")));
    };
    let mut res = wasm.into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/wasm"));
    Ok(res)
}

/// Remove stored policy `name`.
async fn remove_stored(state: &AppState, name: String) -> AppResult<()> {
    policies::check_name(&name)?;
    state
        .engine(move |e| {
            if !e.remove_policy(&name)? {
                return Err(NoSuchPolicy(name).into());
            }
            Ok(())
        })
        .await
}

/// `DELETE /api/v1/policies/{name}`.
pub async fn remove(State(state): State<AppState>, Path(name): Path<String>) -> AppResult<StatusCode> {
    remove_stored(&state, name).await?;
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
    flash: Flash,
}

struct SimView {
    policy: String,
    group: String,
    every: String,
    params: String,
    result: Simulation,
}

/// `GET /policies`: the stored policies, the simulator form, and for
/// admins the upload form.
pub async fn page(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> AppResult<Response> {
    policies_page(&state, &caller, None, Flash::default()).await
}

async fn policies_page(
    state: &AppState,
    caller: &Caller,
    sim: Option<SimView>,
    flash: Flash,
) -> AppResult<Response> {
    let page = PoliciesPage {
        chrome: Chrome::new(state, caller),
        policies: stored(state).await?.iter().map(PolicyJson::from).collect(),
        sim,
        flash,
    };
    render_flash(&page, &page.flash)
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
    let params =
        policies::parse_params(f.params.split([' ', ',', '\n']).map(str::trim).filter(|s| !s.is_empty()))?;
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
    policies_page(&state, &caller, Some(sim), Flash::default()).await
}

/// The upload form's fields: `component` (the file), `name`, `cpu_ms`,
/// `memory_mib` (the CSRF field was checked before).
async fn add_from_form(state: &AppState, mut form: Multipart) -> AppResult<String> {
    let (mut wasm, mut q) = (Bytes::new(), UploadQuery::default());
    while let Some(field) = form.next_field().await? {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "component" => wasm = field.bytes().await?,
            "name" => q.name = Some(field.text().await?.trim().to_owned()).filter(|n| !n.is_empty()),
            "cpu_ms" => {
                q.cpu_ms = dto::form_number("cpu_ms", &field.text().await?).map_err(AppError::bad_request)?
            }
            "memory_mib" => {
                q.memory_mib =
                    dto::form_number("memory_mib", &field.text().await?).map_err(AppError::bad_request)?
            }
            _ => {}
        }
    }
    let r = add(state, wasm, q).await?;
    Ok(format!("Added policy {} ({}, {}).", r.name, r.world, r.policy_version))
}

/// `POST /policies`: the upload form; the page says what was added, or why not.
pub async fn upload_form(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    form: Multipart,
) -> AppResult<Response> {
    let flash = Flash::outcome(add_from_form(&state, form).await)?;
    policies_page(&state, &caller, None, flash).await
}

/// `POST /policies/{name}/remove`: a policy's Remove button.
pub async fn remove_form(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> AppResult<Response> {
    let removed = remove_stored(&state, name.clone()).await.map(|()| format!("Removed policy {name}."));
    policies_page(&state, &caller, None, Flash::outcome(removed)?).await
}
