//! `GET /api/v1/plan`: whether the cadences can be met. From the estate as
//! configured (addresses per zone after exclusions, the rate of a probe node, the
//! port lists), the cadences as they run (the config's with admins' changes), and
//! what the read model says (the liveness ratio last seen, the probe nodes running,
//! the open ports, recent passes), the planner (`portwatch_work::plan`) computes each
//! task's pass per zone, its share of the rate budget and the worst-case detection
//! time per risk class, and warns where a cadence cannot be met. The CLI's
//! `portwatch plan` prints the same.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::Json;
use portwatch_events::Task;
use portwatch_work::Plan;

use crate::error::{ApiError, ErrorBody};
use crate::params::Params;
use crate::views::ScheduledTask;
use crate::ApiContext;

/// The parameters of `GET /api/v1/plan`.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct PlanParams {
    /// Plan every zone with this many probe nodes instead of those running (what if).
    #[param(minimum = 1, maximum = 100000)]
    nodes: Option<u32>,
}

/// The cadences the tasks run at: the schedule as configured, with the changes
/// admins made over it (tasks switched off are absent).
pub fn cadences(
    configured: &[ScheduledTask],
    ledger: &portwatch_projections::Ledger,
) -> BTreeMap<Task, Duration> {
    crate::schedule::effective(configured, ledger)
        .iter()
        .filter(|t| t.implemented)
        .filter_map(|t| Some((t.task, humantime::parse_duration(t.cadence.as_deref()?).ok()?)))
        .collect()
}

/// Each task's expected pass per zone, beside the measured one; whether it meets
/// its cadence; the worst-case detection times; what cannot be met and what would
/// fix it.
#[utoipa::path(get, operation_id = "plan", path = "/api/v1/plan", tag = "tasks", params(PlanParams), responses(
    (status = 200, description = "The plan of every zone, and its warnings.", body = Plan),
    (status = 400, description = "A parameter is wrong; the message names it.", body = ErrorBody),
    (status = 503, description = "The store did not answer.", body = ErrorBody),
))]
pub(crate) async fn plan(
    State(ctx): State<ApiContext>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Plan>, ApiError> {
    let p = Params::of::<PlanParams>(q)?;
    let nodes = p
        .number("nodes", 1, 100_000)?
        .map(|n| u32::try_from(n).unwrap_or(1));
    Ok(Json(current(&ctx, nodes).await?))
}

/// The plan now, with the cadences as they run; with `nodes`, for that many probe
/// nodes in every zone.
pub async fn current(ctx: &ApiContext, nodes: Option<u32>) -> Result<Plan, portwatch_stores::ReadError> {
    let cadences = {
        let state = ctx.ledger.read();
        cadences(&ctx.schedule, state.ledger())
    };
    portwatch_work::current(&*ctx.read, &ctx.assets, &ctx.estate, cadences, nodes).await
}
