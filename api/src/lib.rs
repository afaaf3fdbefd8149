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

use std::sync::{Arc, RwLock};

use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use portwatch_projections::{Assets, Notifier};

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
    /// The notifier's state: notifications and their deliveries.
    pub notifier: Arc<RwLock<Notifier>>,
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! The router over an in-memory read model: parameters, paging headers, asset
    //! joins and the OpenAPI document (the stores' SQL is tested against SQLite and
    //! ClickHouse, and both deployments against each other, elsewhere).

    use std::sync::Mutex;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use futures::FutureExt;
    use http_body_util::BodyExt;
    use portwatch_projections::{Alert, Asset, Episode, HostRow, PortRow};
    use portwatch_stores::{AlertQuery, EpisodeQuery, HostQuery, Page, PageRequest, PortQuery};
    use tower::ServiceExt;

    use super::*;

    /// Remembers the last port query and answers with one page of nothing.
    #[derive(Default)]
    struct Recorder {
        last: Mutex<Option<(PortQuery, PageRequest)>>,
    }

    impl ReadModel for Recorder {
        fn ports<'a>(&'a self, q: &'a PortQuery, p: &'a PageRequest) -> ReadFuture<'a, Page<PortRow>> {
            *self.last.lock().unwrap() = Some((q.clone(), p.clone()));
            async {
                Ok(Page {
                    items: Vec::new(),
                    next: Some("4c0a80001/tcp/00022".into()),
                })
            }
            .boxed()
        }
        fn hosts<'a>(&'a self, _: &'a HostQuery, _: &'a PageRequest) -> ReadFuture<'a, Page<HostRow>> {
            async {
                Err(ReadError(
                    "clickhouse at http://127.0.0.1:8123: connection refused".into(),
                ))
            }
            .boxed()
        }
        fn episodes<'a>(&'a self, _: &'a EpisodeQuery, _: &'a PageRequest) -> ReadFuture<'a, Page<Episode>> {
            async {
                Ok(Page {
                    items: Vec::new(),
                    next: None,
                })
            }
            .boxed()
        }
        fn alerts<'a>(&'a self, _: &'a AlertQuery, _: &'a PageRequest) -> ReadFuture<'a, Page<Alert>> {
            async {
                Ok(Page {
                    items: Vec::new(),
                    next: None,
                })
            }
            .boxed()
        }
        fn jobs(&self, _: usize) -> ReadFuture<'_, Vec<JobView>> {
            async { Ok(Vec::new()) }.boxed()
        }
        fn nodes(&self) -> ReadFuture<'_, Vec<NodeView>> {
            async { Ok(Vec::new()) }.boxed()
        }
        fn health(&self) -> ReadFuture<'_, Health> {
            async {
                Ok(Health {
                    status: "ok",
                    projection_lag: Some(0),
                })
            }
            .boxed()
        }
    }

    fn app(read: Arc<Recorder>) -> Router {
        let assets = Assets::new(vec![Asset {
            net: "10.0.0.0/24".parse().unwrap(),
            owner: Some("db-team".into()),
            system: None,
            zone: "default".into(),
        }]);
        let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle();
        router(ApiContext {
            read,
            notifier: Arc::new(RwLock::new(portwatch_projections::Notifier::new(
                portwatch_projections::NotifyPolicy {
                    group_wait: chrono::Duration::seconds(10),
                    group_interval: chrono::Duration::minutes(5),
                    repeat_interval: chrono::Duration::hours(4),
                    escalate_after: None,
                    baseline: true,
                },
            ))),
            assets: Arc::new(assets),
            schedule: Arc::new(Vec::new()),
            metrics,
        })
    }

    async fn get(app: &Router, uri: &str) -> (StatusCode, Option<String>, serde_json::Value) {
        let response = app
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let next = response
            .headers()
            .get(NEXT_CURSOR)
            .map(|v| v.to_str().unwrap().to_string());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            next,
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    #[tokio::test]
    async fn parameters_become_one_store_query_and_a_cursor_header() {
        let read = Arc::new(Recorder::default());
        let app = app(read.clone());
        let (status, next, body) = get(
            &app,
            "/api/v1/ports?state=all&risk=high_risk_port&owner=db-team&limit=5&cursor=abc",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(next.as_deref(), Some("4c0a80001/tcp/00022"));
        let (query, page) = read.last.lock().unwrap().clone().unwrap();
        assert_eq!(query.state, None);
        assert_eq!(query.risk, Some(portwatch_events::RiskClass::HighRiskPort));
        let within = query.within.unwrap();
        assert_eq!(within.len(), 1);
        assert_eq!(
            (within[0].lo.to_string(), within[0].hi.to_string()),
            ("10.0.0.0".into(), "10.0.0.255".into())
        );
        assert_eq!(
            page,
            PageRequest {
                limit: Some(5),
                after: Some("abc".into())
            }
        );
        // Defaults: open ports, the default page size.
        get(&app, "/api/v1/ports").await;
        let (query, page) = read.last.lock().unwrap().clone().unwrap();
        assert_eq!(query.state, Some(portwatch_projections::PortState::Open));
        assert_eq!(page.limit, Some(DEFAULT_LIMIT));
    }

    #[tokio::test]
    async fn bad_parameters_are_named_and_a_store_fault_is_503() {
        let app = app(Arc::new(Recorder::default()));
        for (uri, word) in [
            ("/api/v1/ports?state=shut", "state"),
            ("/api/v1/ports?ip=10.0.0", "ip"),
            ("/api/v1/ports?risk=medium", "risk"),
            ("/api/v1/ports?limit=0", "limit"),
            ("/api/v1/alerts?limit=ten", "limit"),
            ("/api/v1/episodes?open=yes", "open"),
            ("/api/v1/ports?owner=", "owner"),
            ("/api/v1/jobs?cursor=x", "cursor"),
        ] {
            let (status, _, body) = get(&app, uri).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
            let msg = body["error"].as_str().unwrap();
            assert!(msg.contains(word), "{uri}: {msg}");
        }
        let (status, _, body) = get(&app, "/api/v1/hosts").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body["error"].as_str().unwrap().contains("connection refused"));
    }

    #[tokio::test]
    async fn the_openapi_document_covers_every_path_and_is_served() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(doc["openapi"], "3.0.3");
        for path in PATHS {
            assert!(doc["paths"].get(*path).is_some(), "{path} undocumented");
        }
        assert_eq!(
            doc["paths"].as_object().unwrap().len(),
            PATHS.len(),
            "documented but not served"
        );
        let app = app(Arc::new(Recorder::default()));
        let (status, _, body) = get(&app, "/api/v1/openapi.json").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, doc);
        // Every path answers (none is documented but missing from the router).
        for path in PATHS.iter().filter(|p| **p != "/api/v1/hosts") {
            let response = app
                .clone()
                .oneshot(Request::get(*path).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
        }
    }
}
