//! The HTTP API: JSON over the projected state, plus health and Prometheus metrics.
//! Field names are the event schema's (`ip`, `port`, `proto`, `state`, ...).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use portwatch_events::Task;
use portwatch_ingest::EventLog;
use portwatch_projections::{PortRow, PortState};
use portwatch_stores::{EmbeddedStore, EpisodeFilter, PortFilter};
use serde::Serialize;

use crate::config::{Asset, Config};
use crate::jobs::JobBoard;
use crate::scheduler;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// Read-only view of the store.
    pub store: Arc<EmbeddedStore>,
    /// The event log (for lag).
    pub log: Arc<dyn EventLog>,
    /// The checked config.
    pub cfg: Arc<Config>,
    /// Recent jobs.
    pub board: Arc<JobBoard>,
    /// Prometheus renderer.
    pub metrics: PrometheusHandle,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").finish_non_exhaustive()
    }
}

/// The router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/ports", get(ports))
        .route("/api/v1/hosts", get(hosts))
        .route("/api/v1/episodes", get(episodes))
        .route("/api/v1/jobs", get(jobs))
        .route("/api/v1/schedule", get(schedule))
        .with_state(state)
}

/// An API error: a status and a one-line message as `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

fn bad_request(message: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message)
}

fn internal(err: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %err, "API request failed");
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(internal)?
}

fn lag(state: &ApiState) -> Result<u64, ApiError> {
    crate::projector::lag(&*state.log, &state.store).map_err(internal)
}

async fn healthz(State(state): State<ApiState>) -> Result<Json<serde_json::Value>, ApiError> {
    let lag = blocking(move || lag(&state)).await?;
    Ok(Json(serde_json::json!({ "status": "ok", "projection_lag": lag })))
}

async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    let s = state.clone();
    if let Ok(Ok(lag)) = tokio::task::spawn_blocking(move || lag(&s)).await {
        metrics::gauge!("portwatch_projection_lag_events").set(lag as f64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

fn parse_ip(params: &HashMap<String, String>) -> Result<Option<IpAddr>, ApiError> {
    params
        .get("ip")
        .map(|v| {
            v.parse()
                .map_err(|_| bad_request(format!("ip: `{v}` is not an IP address")))
        })
        .transpose()
}

fn check_params(params: &HashMap<String, String>, known: &[&str]) -> Result<(), ApiError> {
    match params.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(bad_request(format!(
            "unknown query parameter `{k}` (known: {})",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

/// A port row as the API shows it: the row, its risk class and its asset.
#[derive(Debug, Serialize)]
pub struct PortView {
    /// The projected row.
    #[serde(flatten)]
    pub row: PortRow,
    /// `high_risk_port`, `high_risk_service`, `high_risk_admin_panel` or `risk_port`.
    pub risk: &'static str,
    /// Owner from the most specific matching asset.
    pub owner: Option<String>,
    /// System from that asset.
    pub system: Option<String>,
    /// Zone from that asset.
    pub zone: Option<String>,
}

/// The most specific asset containing `ip`.
pub fn asset_for(assets: &[Asset], ip: IpAddr) -> Option<&Asset> {
    assets
        .iter()
        .filter(|a| a.net.contains(&ip))
        .max_by_key(|a| a.net.prefix_len())
}

/// Risk class of a known port: the configured policy applied to its number and the
/// service detected on it; a high-risk admin panel found by the last detection
/// outranks both.
pub fn risk_of_row(cfg: &Config, row: &PortRow) -> &'static str {
    match row.class.as_deref() {
        Some("high_risk_admin_panel") => "high_risk_admin_panel",
        _ => cfg
            .service
            .detect
            .policy
            .classify(row.port, row.service.as_deref(), false)
            .as_str(),
    }
}

/// Risk class of a port under the configured high-risk list.
pub fn risk_of(cfg: &Config, port: u16) -> &'static str {
    cfg.service.detect.policy.classify(port, None, false).as_str()
}

async fn ports(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Vec<PortView>>, ApiError> {
    check_params(&params, &["state", "ip"])?;
    let filter_state = match params.get("state").map(String::as_str) {
        None | Some("open") => Some(PortState::Open),
        Some("closed") => Some(PortState::Closed),
        Some("all") => None,
        Some(other) => {
            return Err(bad_request(format!(
                "state: expected open, closed or all, got `{other}`"
            )))
        }
    };
    let ip = parse_ip(&params)?;
    let cfg = state.cfg.clone();
    let rows = blocking(move || {
        state
            .store
            .ports(&PortFilter {
                state: filter_state,
                ip,
            })
            .map_err(internal)
    })
    .await?;
    Ok(Json(
        rows.into_iter()
            .map(|row| {
                let asset = asset_for(&cfg.assets, row.ip);
                PortView {
                    risk: risk_of_row(&cfg, &row),
                    owner: asset.and_then(|a| a.owner.clone()),
                    system: asset.and_then(|a| a.system.clone()),
                    zone: asset.map(|a| a.zone.clone()),
                    row,
                }
            })
            .collect(),
    ))
}

async fn hosts(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_params(&params, &[])?;
    let rows = blocking(move || state.store.hosts().map_err(internal)).await?;
    serde_json::to_value(rows).map(Json).map_err(internal)
}

async fn episodes(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_params(&params, &["open", "ip"])?;
    let open = match params.get("open").map(String::as_str) {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            return Err(bad_request(format!(
                "open: expected true or false, got `{other}`"
            )))
        }
    };
    let ip = parse_ip(&params)?;
    let rows = blocking(move || {
        state
            .store
            .episodes(&EpisodeFilter { open, ip })
            .map_err(internal)
    })
    .await?;
    serde_json::to_value(rows).map(Json).map_err(internal)
}

async fn jobs(State(state): State<ApiState>) -> Json<serde_json::Value> {
    Json(serde_json::to_value(state.board.list()).unwrap_or_default())
}

#[derive(Serialize)]
struct ScheduledTask {
    task: Task,
    cadence: Option<String>,
    implemented: bool,
}

async fn schedule(State(state): State<ApiState>) -> Json<Vec<ScheduledTask>> {
    Json(
        Task::SCHEDULED
            .iter()
            .map(|&task| ScheduledTask {
                task,
                cadence: state.cfg.schedule.get(&task).map(|d| scheduler::cadence(*d)),
                implemented: scheduler::implemented(task),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigSource;

    #[test]
    fn most_specific_asset_wins_and_risk_follows_policy() {
        let cfg = Config::parse(
            "[scope]\nallow_reserved = true\n[[assets]]\ncidr = \"10.0.0.0/8\"\nowner = \"net-team\"\n[[assets]]\ncidr = \"10.1.2.0/24\"\nowner = \"db-team\"\n",
            ConfigSource::Demo,
        )
        .expect("cfg");
        let ip: IpAddr = "10.1.2.3".parse().expect("ip");
        assert_eq!(
            asset_for(&cfg.assets, ip).and_then(|a| a.owner.as_deref()),
            Some("db-team")
        );
        let other: IpAddr = "10.9.9.9".parse().expect("ip");
        assert_eq!(
            asset_for(&cfg.assets, other).and_then(|a| a.owner.as_deref()),
            Some("net-team")
        );
        assert_eq!(risk_of(&cfg, 6379), "high_risk_port");
        assert_eq!(risk_of(&cfg, 443), "risk_port");
        assert!(portwatch_probes::policy::high_risk_service(6379).is_some());
    }
}
