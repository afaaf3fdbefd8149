//! The handlers: check the parameters, ask the read model, join assets, answer.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::IntoResponse;
use axum::Json;
use portwatch_stores::{AlertQuery, EpisodeQuery, HostQuery, Page, PortQuery};

use crate::error::ApiError;
use crate::params::Params;
use crate::views::{alert_views, port_views, with_assets, ScheduledTask};
use crate::ApiContext;

type Q = Query<HashMap<String, String>>;

/// The header that carries the cursor of the next page.
pub const NEXT_CURSOR: &str = "x-next-cursor";

/// A page as a JSON array, with its successor's cursor in `X-Next-Cursor`.
fn paged<T: serde::Serialize>(items: Vec<T>, next: Option<String>) -> impl IntoResponse {
    let mut headers = HeaderMap::new();
    if let Some(value) = next.and_then(|n| HeaderValue::from_str(&n).ok()) {
        headers.insert(NEXT_CURSOR, value);
    }
    (headers, Json(items))
}

pub(crate) async fn healthz(State(ctx): State<ApiContext>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(ctx.read.health().await?))
}

pub(crate) async fn metrics(State(ctx): State<ApiContext>) -> impl IntoResponse {
    if let Ok(health) = ctx.read.health().await {
        if let Some(lag) = health.projection_lag {
            metrics::gauge!("portwatch_projection_lag_events").set(lag as f64);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ctx.metrics.render(),
    )
}

pub(crate) async fn ports(State(ctx): State<ApiContext>, Query(q): Q) -> Result<impl IntoResponse, ApiError> {
    let p = Params::new(q, &["state", "ip", "risk", "owner", "limit", "cursor"])?;
    let query = PortQuery {
        state: p.port_state()?,
        ip: p.ip()?,
        risk: p.risk()?,
        within: p.owner(&ctx.assets)?,
    };
    let Page { items, next } = ctx.read.ports(&query, &p.page()?).await?;
    let views = {
        let notifier = ctx.notifier.read().unwrap_or_else(|p| p.into_inner());
        port_views(items, &ctx.assets, notifier.ledger())
    };
    Ok(paged(views, next))
}

pub(crate) async fn hosts(State(ctx): State<ApiContext>, Query(q): Q) -> Result<impl IntoResponse, ApiError> {
    let p = Params::new(q, &["ip", "owner", "limit", "cursor"])?;
    let query = HostQuery {
        ip: p.ip()?,
        within: p.owner(&ctx.assets)?,
    };
    let Page { items, next } = ctx.read.hosts(&query, &p.page()?).await?;
    let views = with_assets(items, &ctx.assets);
    Ok(paged(views, next))
}

pub(crate) async fn episodes(
    State(ctx): State<ApiContext>,
    Query(q): Q,
) -> Result<impl IntoResponse, ApiError> {
    let p = Params::new(q, &["open", "ip", "owner", "limit", "cursor"])?;
    let query = EpisodeQuery {
        open: p.open()?,
        ip: p.ip()?,
        within: p.owner(&ctx.assets)?,
    };
    let Page { items, next } = ctx.read.episodes(&query, &p.page()?).await?;
    let views = with_assets(items, &ctx.assets);
    Ok(paged(views, next))
}

pub(crate) async fn alerts(
    State(ctx): State<ApiContext>,
    Query(q): Q,
) -> Result<impl IntoResponse, ApiError> {
    let p = Params::new(q, &["ip", "risk", "owner", "limit", "cursor"])?;
    let query = AlertQuery {
        ip: p.ip()?,
        risk: p.risk()?,
        within: p.owner(&ctx.assets)?,
    };
    let Page { items, next } = ctx.read.alerts(&query, &p.page()?).await?;
    let views = {
        let notifier = ctx.notifier.read().unwrap_or_else(|p| p.into_inner());
        alert_views(items, &ctx.assets, notifier.ledger())
    };
    Ok(paged(views, next))
}

pub(crate) async fn jobs(State(ctx): State<ApiContext>, Query(q): Q) -> Result<impl IntoResponse, ApiError> {
    let p = Params::new(q, &["limit"])?;
    let limit = p.limit()?;
    Ok(Json(ctx.read.jobs(limit).await?))
}

pub(crate) async fn nodes(State(ctx): State<ApiContext>, Query(q): Q) -> Result<impl IntoResponse, ApiError> {
    Params::new(q, &[])?;
    Ok(Json(ctx.read.nodes().await?))
}

pub(crate) async fn schedule(
    State(ctx): State<ApiContext>,
    Query(q): Q,
) -> Result<Json<Vec<ScheduledTask>>, ApiError> {
    Params::new(q, &[])?;
    Ok(Json(ctx.schedule.as_ref().clone()))
}

pub(crate) async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], crate::OPENAPI)
}
