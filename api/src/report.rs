//! `GET /api/v1/report`: MTTD, time to notify, MTTR and the convergence trend over a
//! period, from the deployment's episodes and port rows and the journal's decisions.

use std::collections::HashMap;
use std::sync::RwLock;

use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::Json;
use chrono::Utc;
use portwatch_events::Timestamp;
use portwatch_projections::report::{
    aggregate, convergence, episodes, open_now, risk_by_port, By, Day, EpisodeReport, Group, OpenNow,
};
use portwatch_projections::{Assets, Notifier};
use portwatch_stores::{EpisodeQuery, PageRequest, PortQuery};

use crate::error::{ApiError, ErrorBody};
use crate::params::{Params, ReportParams};
use crate::read::{ReadError, ReadModel};
use crate::ApiContext;

/// MTTD, time to notify, MTTR and the convergence trend over the last days.
#[utoipa::path(get, path = "/api/v1/report", tag = "report", params(ReportParams), responses(
    (status = 200, description = "Groups and the daily trend.", body = Report),
    (status = 400, description = "A parameter is wrong; the message names it.", body = ErrorBody),
    (status = 503, description = "The store did not answer.", body = ErrorBody),
))]
pub(crate) async fn report(
    State(ctx): State<ApiContext>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let p = Params::of::<ReportParams>(q)?;
    let (by, days) = (p.by()?, p.days()?);
    let reports = episode_reports(&*ctx.read, &ctx.notifier, &ctx.assets).await?;
    let until = Utc::now();
    let since = until - chrono::Duration::days(days);
    Ok(Json(Report {
        since,
        until,
        by,
        groups: aggregate(&reports, by, since, until),
        convergence: convergence(&reports, since.date_naive(), until.date_naive()),
        open_now: open_now(&reports),
    }))
}

/// The report over a period.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Report {
    /// Start of the period.
    #[schema(value_type = String, format = DateTime)]
    pub since: Timestamp,
    /// Its end (now).
    #[schema(value_type = String, format = DateTime)]
    pub until: Timestamp,
    /// How the groups are made.
    pub by: By,
    /// Episodes opened in the period, by group.
    pub groups: Vec<Group>,
    /// Exposures open and not remediated at the end of each day of the period.
    pub convergence: Vec<Day>,
    /// The exposures open now, by risk class (whatever the period).
    pub open_now: Vec<OpenNow>,
}

/// The figures of every episode of `read`, with the decisions `notifier` has folded:
/// what the report serves, and what the deployment publishes for `/metrics` and the
/// dashboards.
pub async fn episode_reports(
    read: &dyn ReadModel,
    notifier: &RwLock<Notifier>,
    assets: &Assets,
) -> Result<Vec<EpisodeReport>, ReadError> {
    let all = PageRequest::all();
    let list = read.episodes(&EpisodeQuery::default(), &all).await?.items;
    let rows = read.ports(&PortQuery::default(), &all).await?.items;
    let risk_of = risk_by_port(&rows);
    let state = notifier.read().unwrap_or_else(|p| p.into_inner());
    Ok(episodes(&list, &risk_of, assets, state.ledger()))
}
