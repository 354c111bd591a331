//! Where the datastore keeps its data. `GET /api/v1/datastore` and the
//! Datastore page say it (directory, or bucket with its owner and the
//! local cache); for a datastore in an S3 bucket, admins take the claim
//! over (`POST /api/v1/datastore/takeover`, disaster recovery) and
//! operators fetch what the bucket's owner wrote since (`…/refresh`).

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::response::Response;
use axum::{Extension, Json};
use dto::{DatastoreJson, SyncJson};
use serde::Deserialize;

use super::auth::Caller;
use super::error::{AppError, AppResult};
use super::page::{Chrome, Flash, render_flash};
use super::state::AppState;

async fn read(state: &AppState) -> AppResult<DatastoreJson> {
    state.engine(DatastoreJson::of).await
}

/// `GET /api/v1/datastore`.
pub async fn status(State(state): State<AppState>) -> AppResult<Json<DatastoreJson>> {
    Ok(Json(read(&state).await?))
}

fn not_s3(e: &engine::Engine) -> anyhow::Result<()> {
    if e.datastore().remote().is_none() {
        return Err(engine::ops::BadRequest(
            "this datastore is a directory: only one in an S3 bucket has a claim to take over or a bucket to refresh from"
                .into(),
        )
        .into());
    }
    Ok(())
}

async fn sync(state: &AppState, caller: &Caller, takeover: bool) -> AppResult<SyncJson> {
    let stats = state
        .engine(move |e| {
            not_s3(e)?;
            let ds = e.datastore();
            let stats = if takeover { ds.take_over()? } else { ds.sync_from_bucket(true)? };
            e.reconcile()?;
            Ok(stats)
        })
        .await?;
    let what = if takeover { "took over the datastore's bucket" } else { "refreshed from the bucket" };
    tracing::warn!(user = %caller.name, pulled = stats.pulled, dropped = stats.dropped, "{what}");
    Ok(stats.into())
}

/// `POST /api/v1/datastore/takeover` (admins).
pub async fn takeover(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> AppResult<Json<SyncJson>> {
    Ok(Json(sync(&state, &caller, true).await?))
}

/// `POST /api/v1/datastore/refresh`.
pub async fn refresh(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> AppResult<Json<SyncJson>> {
    Ok(Json(sync(&state, &caller, false).await?))
}

#[derive(Template)]
#[template(path = "datastore.html")]
struct DatastorePage {
    chrome: Chrome,
    ds: Option<DatastoreJson>,
    place: String,
    cache: String,
    problem: Option<String>,
    flash: Flash,
}

async fn page_with(state: &AppState, caller: &Caller, flash: Flash) -> AppResult<Response> {
    let (ds, problem) = match read(state).await {
        Ok(d) => (Some(d), None),
        Err(e) => (None, Some(e.message)),
    };
    let place = ds.as_ref().and_then(DatastoreJson::place).unwrap_or_default();
    let cache = match ds.as_ref().and_then(|d| d.bucket.as_ref()) {
        Some(b) => format!("{} of {}", model::human::size(b.cache_bytes), model::human::size(b.cache_limit)),
        None => String::new(),
    };
    let page = DatastorePage { chrome: Chrome::new(state, caller), ds, place, cache, problem, flash };
    render_flash(&page, &page.flash)
}

/// `GET /datastore`.
pub async fn page(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> AppResult<Response> {
    page_with(&state, &caller, Flash::default()).await
}

/// A form's sync; a takeover only once its box is ticked.
async fn form(state: AppState, caller: Caller, takeover: bool, confirmed: bool) -> AppResult<Response> {
    let outcome = async {
        if !confirmed {
            return Err(AppError::bad_request(
                "tick the box to confirm that the appliance holding the bucket is gone or stopped",
            ));
        }
        let s = sync(&state, &caller, takeover).await?;
        Ok(format!(
            "{}{} snapshots fetched from the bucket, {} dropped (gone from it).",
            if takeover { "This machine now writes the bucket. " } else { "" },
            s.pulled,
            s.dropped
        ))
    }
    .await;
    page_with(&state, &caller, Flash::outcome(outcome)?).await
}

#[derive(Debug, Deserialize)]
pub struct TakeoverForm {
    /// The confirmation checkbox: the old owner is gone or stopped.
    #[serde(default)]
    confirm: Option<String>,
}

/// `POST /datastore/takeover` (form, with its confirmation box).
pub async fn takeover_form(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Form(f): Form<TakeoverForm>,
) -> AppResult<Response> {
    form(state, caller, true, f.confirm.is_some()).await
}

/// `POST /datastore/refresh` (form).
pub async fn refresh_form(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> AppResult<Response> {
    form(state, caller, false, true).await
}
