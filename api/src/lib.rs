//! The HTTP API: one router, one set of handlers, served by `portwatch up` and by
//! `portwatch control` alike.
//!
//! `probes → event log → projections → stores → **API** / alerts / dashboards`
//!
//! Handlers read through a [`ReadModel`], which each deployment implements over its
//! store (SQLite embedded, ClickHouse scale-out), so both answer the same paths with
//! the same JSON shapes, query parameters and error body. Filters and pages are
//! evaluated by the store; every finding carries the asset match of its address.
//! The contract is written down in `openapi.json`, served at `/api/v1/openapi.json`.

mod error;
mod params;
pub mod read;
mod routes;
pub mod views;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use portwatch_projections::Assets;

pub use error::ApiError;
pub use params::DEFAULT_LIMIT;
pub use read::{Health, JobView, NodeView, ReadError, ReadFuture, ReadModel};
pub use routes::NEXT_CURSOR;
pub use views::ScheduledTask;

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// What the handlers share.
#[derive(Clone)]
pub struct ApiContext {
    /// The deployment's read model.
    pub read: Arc<dyn ReadModel>,
    /// Assets, for the asset match of findings and the `owner` filter.
    pub assets: Arc<Assets>,
    /// The schedule as configured.
    pub schedule: Arc<Vec<ScheduledTask>>,
    /// Prometheus renderer for `/metrics`.
    pub metrics: PrometheusHandle,
}

impl std::fmt::Debug for ApiContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiContext").finish_non_exhaustive()
    }
}

/// Every path the router serves (the OpenAPI test checks each is documented).
pub const PATHS: &[&str] = &[
    "/healthz",
    "/metrics",
    "/api/v1/ports",
    "/api/v1/hosts",
    "/api/v1/episodes",
    "/api/v1/alerts",
    "/api/v1/jobs",
    "/api/v1/nodes",
    "/api/v1/schedule",
    "/api/v1/openapi.json",
];

/// The router.
pub fn router(ctx: ApiContext) -> Router {
    Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/metrics", get(routes::metrics))
        .route("/api/v1/ports", get(routes::ports))
        .route("/api/v1/hosts", get(routes::hosts))
        .route("/api/v1/episodes", get(routes::episodes))
        .route("/api/v1/alerts", get(routes::alerts))
        .route("/api/v1/jobs", get(routes::jobs))
        .route("/api/v1/nodes", get(routes::nodes))
        .route("/api/v1/schedule", get(routes::schedule))
        .route("/api/v1/openapi.json", get(routes::openapi))
        .with_state(ctx)
}
