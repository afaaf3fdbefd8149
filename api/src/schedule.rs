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
use portwatch_projections::{Decision, DecisionKind, Ledger};
use serde::Deserialize;

use crate::auth::Identity;
use crate::error::{ApiError, ErrorBody};
use crate::params::{NoParams, Params};
use crate::views::ScheduledTask;
use crate::{record, ApiContext};

/// The longest cadence one may set.
const LONGEST: Duration = Duration::from_secs(30 * 86_400);

/// The schedule as it runs: the config's cadences, with the ledger's changes.
fn effective(configured: &[ScheduledTask], ledger: &Ledger) -> Vec<ScheduledTask> {
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
    let state = ctx.notifier.read().unwrap_or_else(|p| p.into_inner());
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
        vec![Decision::new(
            Utc::now(),
            &me.user,
            DecisionKind::ScheduleSet { task, every },
        )],
    )
    .await?;
    let state = ctx.notifier.read().unwrap_or_else(|p| p.into_inner());
    Ok(Json(effective(&ctx.schedule, state.ledger())))
}

#[cfg(test)]
mod tests {
    use super::*;

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
