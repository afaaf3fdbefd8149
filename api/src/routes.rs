//! The handlers: check the parameters, ask the read model, join assets, answer.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::IntoResponse;
use axum::Json;
use portwatch_stores::{AlertQuery, EpisodeQuery, HostQuery, Page, PortQuery};

use portwatch_projections::{Episode, HostRow};

use crate::error::{ApiError, ErrorBody};
use crate::params::{AlertParams, EpisodeParams, HostParams, JobParams, NoParams, Params, PortParams};
use crate::read::{Health, JobView, NodeView};
use crate::views::{alert_views, port_views, with_assets, AlertView, PortView, WithAsset};
use crate::ApiContext;

type Q = Query<HashMap<String, String>>;

/// The header that carries the cursor of the next page.
pub const NEXT_CURSOR: &str = "x-next-cursor";

/// A page as a JSON array, with its successor's cursor in `X-Next-Cursor`.
pub(crate) fn paged<T: serde::Serialize>(items: Vec<T>, next: Option<String>) -> impl IntoResponse {
    let mut headers = HeaderMap::new();
    if let Some(value) = next.and_then(|n| HeaderValue::from_str(&n).ok()) {
        headers.insert(NEXT_CURSOR, value);
    }
    (headers, Json(items))
}

/// Health of the store.
#[utoipa::path(get, path = "/healthz", tag = "service", responses(
    (status = 200, description = "The store answers.", body = Health),
    (status = 503, description = "The store did not answer.", body = ErrorBody),
))]
pub(crate) async fn healthz(State(ctx): State<ApiContext>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(ctx.read.health().await?))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "service", responses(
    (status = 200, description = "Prometheus text format.", content_type = "text/plain", body = String),
))]
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

/// Port state: every port seen open, with its service, evidence, asset and approval.
#[utoipa::path(get, path = "/api/v1/ports", tag = "findings", params(PortParams), responses(
    (status = 200, description = "Ports in (ip, proto, port) order.", body = [PortView], headers(("x-next-cursor" = String, description = "Cursor of the next page, when there is one."))),
    (status = 400, description = "A parameter is wrong; the message names it.", body = ErrorBody),
    (status = 503, description = "The store did not answer.", body = ErrorBody),
))]
pub(crate) async fn ports(State(ctx): State<ApiContext>, Query(q): Q) -> Result<impl IntoResponse, ApiError> {
    let p = Params::of::<PortParams>(q)?;
    let query = PortQuery {
        state: p.port_state()?,
        ip: p.ip()?,
        risk: p.risk()?,
        within: p.owner(&ctx.assets)?,
    };
    let approved = p.flag("approved")?;
    let Page { items, next } = ctx.read.ports(&query, &p.page()?).await?;
    let mut views = {
        let notifier = ctx.ledger.read();
        port_views(items, &ctx.assets, notifier.ledger())
    };
    if let Some(approved) = approved {
        views.retain(|v| v.approval.is_some() == approved);
    }
    Ok(paged(views, next))
}

/// Host liveness.
#[utoipa::path(get, path = "/api/v1/hosts", tag = "findings", params(HostParams), responses(
    (status = 200, description = "Hosts by address.", body = [WithAsset<HostRow>], headers(("x-next-cursor" = String, description = "Cursor of the next page, when there is one."))),
    (status = 400, description = "A parameter is wrong; the message names it.", body = ErrorBody),
    (status = 503, description = "The store did not answer.", body = ErrorBody),
))]
pub(crate) async fn hosts(State(ctx): State<ApiContext>, Query(q): Q) -> Result<impl IntoResponse, ApiError> {
    let p = Params::of::<HostParams>(q)?;
    let query = HostQuery {
        ip: p.ip()?,
        within: p.owner(&ctx.assets)?,
    };
    let Page { items, next } = ctx.read.hosts(&query, &p.page()?).await?;
    let views = with_assets(items, &ctx.assets);
    Ok(paged(views, next))
}

/// Exposure episodes: each period a port was open, with its detection bound.
#[utoipa::path(get, path = "/api/v1/episodes", tag = "findings", params(EpisodeParams), responses(
    (status = 200, description = "Episodes in (ip, proto, port, opened_at) order.", body = [WithAsset<Episode>], headers(("x-next-cursor" = String, description = "Cursor of the next page, when there is one."))),
    (status = 400, description = "A parameter is wrong; the message names it.", body = ErrorBody),
    (status = 503, description = "The store did not answer.", body = ErrorBody),
))]
pub(crate) async fn episodes(
    State(ctx): State<ApiContext>,
    Query(q): Q,
) -> Result<impl IntoResponse, ApiError> {
    let p = Params::of::<EpisodeParams>(q)?;
    let query = EpisodeQuery {
        open: p.flag("open")?,
        ip: p.ip()?,
        within: p.owner(&ctx.assets)?,
    };
    let Page { items, next } = ctx.read.episodes(&query, &p.page()?).await?;
    let views = with_assets(items, &ctx.assets);
    Ok(paged(views, next))
}

/// Alerts, with the notifications that told them and their deliveries.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "findings", params(AlertParams), responses(
    (status = 200, description = "Alerts, oldest first.", body = [AlertView], headers(("x-next-cursor" = String, description = "Cursor of the next page, when there is one."))),
    (status = 400, description = "A parameter is wrong; the message names it.", body = ErrorBody),
    (status = 503, description = "The store did not answer.", body = ErrorBody),
))]
pub(crate) async fn alerts(
    State(ctx): State<ApiContext>,
    Query(q): Q,
) -> Result<impl IntoResponse, ApiError> {
    let p = Params::of::<AlertParams>(q)?;
    let query = AlertQuery {
        ip: p.ip()?,
        risk: p.risk()?,
        within: p.owner(&ctx.assets)?,
    };
    let Page { items, next } = ctx.read.alerts(&query, &p.page()?).await?;
    let views = {
        let notifier = ctx.ledger.read();
        alert_views(items, &ctx.assets, notifier.ledger())
    };
    Ok(paged(views, next))
}

/// Recent jobs.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "tasks", params(JobParams), responses(
    (status = 200, description = "Newest first.", body = [JobView]),
    (status = 400, description = "A parameter is wrong; the message names it.", body = ErrorBody),
    (status = 503, description = "The store did not answer.", body = ErrorBody),
))]
pub(crate) async fn jobs(State(ctx): State<ApiContext>, Query(q): Q) -> Result<impl IntoResponse, ApiError> {
    let p = Params::of::<JobParams>(q)?;
    let limit = p.limit()?;
    Ok(Json(ctx.read.jobs(limit).await?))
}

/// Probe nodes.
#[utoipa::path(get, path = "/api/v1/nodes", tag = "tasks", params(NoParams), responses(
    (status = 200, description = "By name.", body = [NodeView]),
    (status = 400, description = "A parameter is wrong; the message names it.", body = ErrorBody),
    (status = 503, description = "The store did not answer.", body = ErrorBody),
))]
pub(crate) async fn nodes(State(ctx): State<ApiContext>, Query(q): Q) -> Result<impl IntoResponse, ApiError> {
    Params::of::<NoParams>(q)?;
    Ok(Json(ctx.read.nodes().await?))
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "service", responses(
    (status = 200, description = "OpenAPI 3.1, generated from the handlers.", body = Object),
))]
pub(crate) async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi_json(),
    )
}
