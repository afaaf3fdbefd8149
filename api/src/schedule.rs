//! The monitoring tasks' cadences: `GET /api/v1/schedule` (the config's, with the
//! changes admins made over them) and `PUT /api/v1/schedule/{task}` (admin): a change
//! is a journal decision like any other, so both deployments' schedulers follow it,
//! it survives restarts, and who changed what stays on record.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use chrono::Utc;
use portwatch_events::Task;
use portwatch_projections::{DecisionKind, Ledger};
use serde::Deserialize;

use crate::auth::Identity;
use crate::error::{ApiError, ErrorBody};
use crate::params::{NoParams, Params};
use crate::read::{JobView, TaskRuns};
use crate::views::ScheduledTask;
use crate::{record, ApiContext};

/// The longest cadence one may set.
const LONGEST: Duration = Duration::from_secs(30 * 86_400);

/// The schedule as it runs: the config's cadences, with the ledger's changes.
pub(crate) fn effective(configured: &[ScheduledTask], ledger: &Ledger) -> Vec<ScheduledTask> {
    configured
        .iter()
        .map(|t| {
            let mut t = t.clone();
            if let Some(change) = ledger.schedule().get(&t.task) {
                t.cadence = (change.every != "off").then(|| change.every.clone());
                t.set_by = Some(change.by.clone());
                t.set_at = Some(change.at);
            }
            t
        })
        .collect()
}

/// The monitoring tasks and their cadences.
#[utoipa::path(get, operation_id = "list_schedule", path = "/api/v1/schedule", tag = "tasks", params(NoParams), responses(
    (status = 200, description = "Every task: the cadence it runs at, the config's, and who changed it.", body = [ScheduledTask]),
    (status = 400, description = "A parameter is wrong; the message names it.", body = ErrorBody),
))]
pub(crate) async fn list(
    State(ctx): State<ApiContext>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Vec<ScheduledTask>>, ApiError> {
    Params::of::<NoParams>(q)?;
    let state = ctx.ledger.read();
    Ok(Json(effective(&ctx.schedule, state.ledger())))
}

/// The body of `PUT /api/v1/schedule/{task}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewCadence {
    /// `10m`, `6h`, ... (1 s to 30 days), `off`, or null for the config's cadence.
    every: Option<String>,
}

/// Whether `every` is a cadence one may set; its canonical text.
fn check(every: &str) -> Result<String, String> {
    if every == "off" {
        return Ok(every.into());
    }
    let d = humantime::parse_duration(every)
        .map_err(|e| format!("every `{every}`: {e} (e.g. 10m, 6h, or off)"))?;
    if d < Duration::from_secs(1) || d > LONGEST {
        return Err(format!("every `{every}`: from 1s to 30 days, or off"));
    }
    Ok(humantime::format_duration(d).to_string())
}

/// Change a task's cadence (admin); recorded in the journal, followed by the
/// scheduler within a second.
#[utoipa::path(put, operation_id = "set_cadence", path = "/api/v1/schedule/{task}", tag = "tasks",
    params(("task" = String, Path, description = "The task, e.g. full_ports.")),
    request_body = NewCadence,
    responses(
        (status = 200, description = "The schedule now.", body = [ScheduledTask]),
        (status = 400, description = "The body is wrong; the message names the field.", body = ErrorBody),
        (status = 404, description = "No such task, or not one this build runs.", body = ErrorBody),
        (status = 503, description = "The journal did not take the change; try again.", body = ErrorBody),
))]
pub(crate) async fn set(
    State(ctx): State<ApiContext>,
    Extension(me): Extension<Identity>,
    Path(task): Path<String>,
    body: Result<Json<NewCadence>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Vec<ScheduledTask>>, ApiError> {
    let runnable = ctx
        .schedule
        .iter()
        .find(|t| t.task.as_str() == task && t.implemented)
        .map(|t| t.task);
    let Some(task): Option<Task> = runnable else {
        return Err(ApiError::not_found(format!(
            "no task `{task}` this build runs (see GET /api/v1/schedule)"
        )));
    };
    let Json(body) = body.map_err(|e| ApiError::bad_request(format!("body: {}", e.body_text())))?;
    let every = body
        .every
        .as_deref()
        .map(check)
        .transpose()
        .map_err(ApiError::bad_request)?;
    tracing::info!(by = %me.user, task = %task, every = every.as_deref().unwrap_or("as configured"), "cadence changed");
    record(
        &ctx,
        vec![me
            .actor()
            .decide(Utc::now(), DecisionKind::ScheduleSet { task, every })],
    )
    .await?;
    let state = ctx.ledger.read();
    Ok(Json(effective(&ctx.schedule, state.ledger())))
}

/// The period of `GET /api/v1/tasks`.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct TaskParams {
    /// Count the jobs of the last this many hours (default 24).
    #[param(minimum = 1, maximum = 720)]
    hours: Option<u32>,
}

/// One task in one zone: its passes in the period (a pass is cut into chunks, each
/// run by a node: those are in the job list too, but not counted here), the newest
/// one, and the figures of the newest one that finished.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ZoneHealth {
    /// The zone (`default` in the embedded deployment).
    pub zone: String,
    /// Passes issued in the period.
    pub runs: u64,
    /// Of those, failed.
    pub failed: u64,
    /// Cadence slots skipped in the period because its pass was still running
    /// (the task overran its cadence: see `GET /api/v1/plan`).
    pub overruns: u64,
    /// The newest job (it may still be queued or running).
    pub last: Option<JobView>,
    /// The newest job that finished, well or not.
    pub last_finished: Option<JobView>,
    /// How long that one took, in seconds.
    pub duration_secs: Option<f64>,
    /// The share of its targets that one finished (0 to 1), where it says.
    pub coverage: Option<f64>,
    /// The newest failed job, whenever it was.
    pub last_failure: Option<JobView>,
}

/// A task: the cadence it runs at and, per zone, how its jobs went.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct TaskHealth {
    /// The task.
    pub task: Task,
    /// The cadence it runs at, or none when it does not run.
    pub cadence: Option<String>,
    /// Its jobs per zone, by zone; empty when it never ran.
    pub zones: Vec<ZoneHealth>,
}

fn zone_health(runs: TaskRuns) -> ZoneHealth {
    let last_finished = match (runs.last_done, &runs.last_failure) {
        (Some(done), Some(failed)) if failed.started_at > done.started_at => Some(failed.clone()),
        (None, failed) => failed.clone(),
        (done, _) => done,
    };
    let duration_secs = last_finished
        .as_ref()
        .and_then(|j| Some((j.updated_at? - j.started_at?).num_milliseconds().max(0) as f64 / 1000.0));
    let coverage = last_finished
        .as_ref()
        .filter(|j| j.targets > 0)
        .and_then(|j| Some((j.hosts_done? as f64 / j.targets as f64).min(1.0)));
    ZoneHealth {
        zone: runs.zone,
        runs: runs.runs,
        failed: runs.failed,
        overruns: runs.overruns,
        last: runs.last,
        last_finished,
        duration_secs,
        coverage,
        last_failure: runs.last_failure,
    }
}

/// How each task is doing: its cadence and, per zone, its jobs in the period, its
/// last run (when, how long, how much of its targets) and its last failure.
#[utoipa::path(get, operation_id = "task_health", path = "/api/v1/tasks", tag = "tasks", params(TaskParams), responses(
    (status = 200, description = "Every scheduled task, in policy order.", body = [TaskHealth]),
    (status = 400, description = "A parameter is wrong; the message names it.", body = ErrorBody),
    (status = 503, description = "The store did not answer.", body = ErrorBody),
))]
pub(crate) async fn health(
    State(ctx): State<ApiContext>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Vec<TaskHealth>>, ApiError> {
    let p = Params::of::<TaskParams>(q)?;
    let hours = p.number("hours", 1, 720)?.unwrap_or(24);
    let runs = ctx
        .read
        .task_runs(Utc::now() - chrono::Duration::hours(hours))
        .await?;
    let schedule = {
        let state = ctx.ledger.read();
        effective(&ctx.schedule, state.ledger())
    };
    let mut by_task: HashMap<Task, Vec<ZoneHealth>> = HashMap::new();
    for r in runs {
        by_task.entry(r.task).or_default().push(zone_health(r));
    }
    Ok(Json(
        schedule
            .into_iter()
            .map(|t| {
                let mut zones = by_task.remove(&t.task).unwrap_or_default();
                zones.sort_by(|a, b| a.zone.cmp(&b.zone));
                TaskHealth {
                    task: t.task,
                    cadence: t.cadence,
                    zones,
                }
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(state: &str, started: i64, updated: i64, targets: u64, hosts: Option<u64>) -> JobView {
        let at = |s| chrono::TimeZone::timestamp_opt(&Utc, 1_800_000_000 + s, 0).single();
        JobView {
            id: "j".into(),
            task: "full_ports".into(),
            state: state.into(),
            zone: "a".into(),
            node: None,
            targets,
            hosts_done: hosts,
            open_found: None,
            error: None,
            started_at: at(started),
            updated_at: at(updated),
            pass: None,
            chunk: None,
            chunks: None,
            chunks_ended: None,
            try_no: None,
            overruns: None,
        }
    }

    #[test]
    fn the_newest_finished_run_gives_the_duration_and_coverage() {
        let runs = |last, done, failure| TaskRuns {
            task: Task::FullPorts,
            zone: "a".into(),
            runs: 3,
            failed: 1,
            overruns: 0,
            last: Some(last),
            last_done: done,
            last_failure: failure,
        };
        let done = job("done", 0, 30, 8, Some(6));
        let z = zone_health(runs(job("running", 40, 50, 8, Some(2)), Some(done.clone()), None));
        assert_eq!(z.last_finished.as_ref(), Some(&done), "not the one in flight");
        assert_eq!((z.duration_secs, z.coverage), (Some(30.0), Some(0.75)));
        let failed = job("failed", 35, 39, 8, None);
        let z = zone_health(runs(failed.clone(), Some(done.clone()), Some(failed.clone())));
        assert_eq!(z.last_finished, Some(failed), "failed after the last done");
        assert_eq!((z.duration_secs, z.coverage), (Some(4.0), None));
        let older_failure = job("failed", -100, -90, 8, None);
        let z = zone_health(runs(done.clone(), Some(done.clone()), Some(older_failure)));
        assert_eq!(z.last_finished, Some(done));
        let z = zone_health(runs(job("queued", 90, 90, 8, None), None, None));
        assert_eq!((z.last_finished, z.duration_secs, z.coverage), (None, None, None));
    }

    #[test]
    fn cadences_are_checked_and_written_canonically() {
        assert_eq!(check("90s").as_deref(), Ok("1m 30s"));
        assert_eq!(check("off").as_deref(), Ok("off"));
        for bad in ["0s", "500ms", "31days", "soon", ""] {
            let err = check(bad).expect_err("refused");
            assert!(err.starts_with("every `"), "{bad}: {err}");
        }
    }
}
