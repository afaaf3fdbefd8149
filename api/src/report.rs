//! `GET /api/v1/report`: MTTD, time to notify, MTTR and the convergence trend over a
//! period, from the deployment's episodes and port rows and the journal's decisions.

use std::collections::HashMap;
use std::sync::RwLock;

use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::Json;
use chrono::Utc;
use portwatch_projections::report::{aggregate, convergence, episodes, risk_by_port, EpisodeReport};
use portwatch_projections::{Assets, Notifier};
use portwatch_stores::{EpisodeQuery, PageRequest, PortQuery};

use crate::error::ApiError;
use crate::params::Params;
use crate::read::{ReadError, ReadModel};
use crate::ApiContext;

pub(crate) async fn report(
    State(ctx): State<ApiContext>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let p = Params::new(q, &["by", "days"])?;
    let (by, days) = (p.by()?, p.days()?);
    let reports = episode_reports(&*ctx.read, &ctx.notifier, &ctx.assets).await?;
    let until = Utc::now();
    let since = until - chrono::Duration::days(days);
    Ok(Json(serde_json::json!({
        "since": since,
        "until": until,
        "by": by,
        "groups": aggregate(&reports, by, since, until),
        "convergence": convergence(&reports, since.date_naive(), until.date_naive()),
    })))
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
