//! `/metrics`: the datastore's figures, the scheduler's and the policy
//! host's counters in the Prometheus text format, limited to what the
//! caller may see (a backup client, its own groups).

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::api::{groups_of, status_from, visible_summaries};
use crate::caller::Caller;
use crate::error::AppResult;
use crate::state::AppState;

/// Prometheus text exposition of the datastore's figures.
pub async fn metrics(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> AppResult<Response> {
    let snaps = visible_summaries(&state, &caller).await?;
    let st = status_from(&state, &caller, &snaps).await?;
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, kind: &str, lines: Vec<(String, String)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, value) in lines {
            out.push_str(&format!("{name}{labels} {value}\n"));
        }
    };
    let one = |v: String| vec![(String::new(), v)];
    metric("cairn_snapshots", "Snapshots in the datastore.", "gauge", one(st.snapshots.to_string()));
    metric("cairn_groups", "Backup groups in the datastore.", "gauge", one(st.groups.to_string()));
    metric(
        "cairn_logical_bytes",
        "Logical bytes of all snapshots.",
        "gauge",
        one(st.logical_bytes.to_string()),
    );
    metric(
        "cairn_stored_bytes",
        "Chunk bytes the snapshots added when made.",
        "gauge",
        one(st.stored_bytes.to_string()),
    );
    metric(
        "cairn_dedup_factor",
        "Logical bytes per stored byte.",
        "gauge",
        one(format!("{:.4}", st.dedup_factor)),
    );
    metric(
        "cairn_disk_total_bytes",
        "Size of the datastore's file system.",
        "gauge",
        one(st.disk_total_bytes.unwrap_or(0).to_string()),
    );
    metric(
        "cairn_disk_free_bytes",
        "Free space on the datastore's file system.",
        "gauge",
        one(st.disk_free_bytes.unwrap_or(0).to_string()),
    );
    let newest: Vec<(String, String)> = groups_of(&snaps)
        .iter()
        .map(|g| {
            let t = model::time::parse_rfc3339(&g.last).unwrap_or(0);
            (
                format!("{{ns=\"{}\",group=\"{}\"}}", escape_label(&g.ns), escape_label(&g.group)),
                t.to_string(),
            )
        })
        .collect();
    metric(
        "cairn_group_last_snapshot_seconds",
        "Time of the newest snapshot of each group.",
        "gauge",
        newest,
    );
    let jobs = super::jobs_api::statuses(&state, &caller).await?;
    let job_label = |j: &model::Job| format!("{{job=\"{}\"}}", escape_label(&j.name));
    let per_job = |f: &dyn Fn(&engine::jobs::JobStatus) -> Option<String>| {
        jobs.iter().filter_map(|s| f(s).map(|v| (job_label(&s.job), v))).collect::<Vec<_>>()
    };
    metric(
        "cairn_job_overdue",
        "1 when the job's newest good snapshot is older than 1.5 times its shortest interval.",
        "gauge",
        per_job(&|s| Some(u8::from(s.sla == model::Sla::Overdue).to_string())),
    );
    metric(
        "cairn_job_last_success",
        "1 when the job's last finished run succeeded (ok or warning), 0 when it failed.",
        "gauge",
        per_job(&|s| {
            let t = s.last_task.as_ref().filter(|t| t.finished.is_some())?;
            Some(u8::from(t.state != model::TaskState::Failed).to_string())
        }),
    );
    metric(
        "cairn_job_last_duration_seconds",
        "Duration of the job's last finished run.",
        "gauge",
        per_job(&|s| {
            let t = s.last_task.as_ref()?;
            Some((t.finished? - t.started).to_string())
        }),
    );
    metric(
        "cairn_scheduler_ticks_total",
        "Times the scheduler looked for due jobs (every 5 s).",
        "counter",
        one(state.runner().ticks().to_string()),
    );
    metric(
        "cairn_scheduler_policy_calls_total",
        "Times a scheduler policy was asked whether a job runs.",
        "counter",
        one(state.scheduler_calls().to_string()),
    );
    let mut res = out.into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    Ok(res)
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
