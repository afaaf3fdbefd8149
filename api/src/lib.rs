//! The HTTP API: one router, one set of handlers, served by `portwatch up` and by
//! `portwatch control` alike.
//!
//! `probes → event log → projections → stores → **API** / alerts / dashboards`
//!
//! Handlers read through a [`ReadModel`], which each deployment implements over its
//! store (SQLite embedded, ClickHouse scale-out), so both answer the same paths with
//! the same JSON shapes, query parameters and error body. Filters and pages are
//! evaluated by the store; every finding carries the asset match of its address.
//! The contract is generated from the handlers and the roles the router enforces
//! ([`openapi`]), served at `/api/v1/openapi.json`.

pub mod approvals;
pub mod audit;
pub mod auth;
pub mod blocks;
mod console;
mod docs;
mod error;
mod events;
mod params;
pub mod plan;
pub mod report;
mod routes;
mod schedule;
pub mod server;
pub mod session;
mod signin;
mod throttle;
pub mod tokens;
pub mod views;

use std::sync::{Arc, OnceLock};

use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use portwatch_projections::{Assets, Role};
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::Auth;

pub use error::{ApiError, ErrorBody};
pub use params::DEFAULT_LIMIT;
/// The read model lives with the stores; the API answers from it.
pub use portwatch_stores::read;
pub use portwatch_stores::{
    EventCursor, Health, JobView, NodeView, ReadError, ReadFuture, ReadModel, StoredEvent, TaskRuns,
};
pub use routes::NEXT_CURSOR;
pub use views::ScheduledTask;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiContext {
    /// The deployment's read model.
    pub read: Arc<dyn ReadModel>,
    /// The ledger: where writes are recorded (the journal of decisions) and what it
    /// folds to (users and tokens, approvals, blocks, notifications).
    pub ledger: portwatch_ledger::Handle,
    /// Token checks.
    pub auth: Arc<Auth>,
    /// The limits of approvals and blocks (`[approvals] max_addresses`, `[control]
    /// max_duration` and `protect`).
    pub bounds: Arc<portwatch_projections::bounds::Bounds>,
    /// Assets, for the asset match of findings and the `owner` filter.
    pub assets: Arc<Assets>,
    /// The schedule as configured.
    pub schedule: Arc<Vec<ScheduledTask>>,
    /// The estate as the planner sees it (zones and their addresses, the rate).
    pub estate: Arc<portwatch_work::Estate>,
    /// Prometheus renderer for `/metrics`.
    pub metrics: PrometheusHandle,
    /// Every episode's MTTD/MTTR figures, shared with the reporter.
    pub figures: Arc<report::Figures>,
}

impl ApiContext {
    /// Fold what the journal holds beyond what this API has read: a token made a
    /// moment ago by `portwatch token create` works at the very next request,
    /// without waiting for the notifier's next pass. Records are folded by id, so
    /// reading some the notifier folded too is harmless.
    pub async fn read_journal(&self) {
        if let Err(e) = self.ledger.catch_up().await {
            tracing::warn!(error = %e, "the journal could not be read");
        }
    }
}

impl std::fmt::Debug for ApiContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiContext").finish_non_exhaustive()
    }
}

/// An attempt refused by a rule of the ledger (the two-person rule, who may issue
/// whose tokens): journalled, so that the audit lists it with the token and address
/// it came from, logged, and answered 403 naming the rule. If the journal does not
/// take the record, the answer is 403 all the same.
pub(crate) async fn refuse(
    ctx: &ApiContext,
    me: &auth::Identity,
    action: &str,
    subject: &str,
    rule: String,
) -> ApiError {
    tracing::warn!(user = %me.user, token = ?me.token, client = ?me.client, action, subject, rule = %rule, "attempt refused");
    metrics::counter!("portwatch_api_refused_total", "action" => action.to_string()).increment(1);
    let decision = me.actor().decide(
        chrono::Utc::now(),
        portwatch_projections::DecisionKind::Refused {
            action: action.to_string(),
            subject: subject.to_string(),
            rule: rule.clone(),
        },
    );
    if let Err(e) = ctx.ledger.record(vec![decision]).await {
        tracing::error!(error = %e, "a refused attempt could not be journalled");
    }
    ApiError::forbidden(rule)
}

/// Journal a write's `decisions` and fold them, or answer 503 (nothing recorded).
pub(crate) async fn record(
    ctx: &ApiContext,
    decisions: Vec<portwatch_projections::Decision>,
) -> Result<(), ApiError> {
    ctx.ledger
        .record(decisions)
        .await
        .map_err(|e| ApiError::unavailable(format!("the journal did not take the change: {e}")))
}

/// The document's frame; the paths and their schemas come from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "portwatch API",
        version = "1",
        description = "The same API in the embedded (`portwatch up`) and scale-out (`portwatch control`) deployments. \
Every operation but the public three needs a token (`Authorization: Bearer pwt_...`) of a user whose role is at least \
the one its `x-portwatch-role` names (viewer < operator < approver < admin); reads need none with `[auth] anonymous_read`. \
Lists are paged: the `X-Next-Cursor` header of an answer is the `cursor` of the next page."
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "findings", description = "Ports, hosts, exposure episodes and alerts."),
        (name = "tasks", description = "Monitoring tasks, jobs and probe nodes."),
        (name = "report", description = "MTTD, MTTR and convergence."),
        (name = "approvals", description = "Filing: exposures the business needs, approved by a second person."),
        (name = "blocks", description = "Active control under a two-person rule."),
        (name = "users", description = "Identities, roles and tokens."),
        (name = "service", description = "Health, metrics and this document."),
    )
)]
struct ApiDoc;

/// Every route, with the role it needs (`None`: public). The router and the OpenAPI
/// document are both made from this list, so nothing is served undocumented or
/// documented with another role than the one enforced.
fn groups() -> Vec<(Option<Role>, OpenApiRouter<ApiContext>)> {
    vec![
        (
            None,
            OpenApiRouter::new()
                .routes(routes!(routes::healthz))
                .routes(routes!(routes::metrics))
                .routes(routes!(routes::openapi))
                .routes(routes!(docs::page))
                .routes(routes!(signin::login, signin::current, signin::logout)),
        ),
        (
            Some(Role::Viewer),
            OpenApiRouter::new()
                .routes(routes!(routes::ports))
                .routes(routes!(routes::hosts))
                .routes(routes!(routes::episodes))
                .routes(routes!(routes::alerts))
                .routes(routes!(events::events))
                .routes(routes!(routes::jobs))
                .routes(routes!(routes::nodes))
                .routes(routes!(schedule::list))
                .routes(routes!(schedule::health))
                .routes(routes!(plan::plan))
                .routes(routes!(tokens::whoami))
                .routes(routes!(report::report))
                .routes(routes!(approvals::list))
                .routes(routes!(blocks::list)),
        ),
        (
            Some(Role::Operator),
            OpenApiRouter::new()
                .routes(routes!(approvals::create))
                .routes(routes!(blocks::propose))
                .routes(routes!(blocks::rollback)),
        ),
        (
            Some(Role::Approver),
            OpenApiRouter::new()
                .routes(routes!(approvals::approve))
                .routes(routes!(approvals::reject))
                .routes(routes!(blocks::confirm)),
        ),
        (
            Some(Role::Admin),
            OpenApiRouter::new()
                .routes(routes!(tokens::list, tokens::create))
                .routes(routes!(tokens::revoke))
                .routes(routes!(tokens::set_role))
                .routes(routes!(audit::list))
                .routes(routes!(schedule::set)),
        ),
    ]
}

/// An error answer of `description`, with the error body.
fn error_response(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Error")))
                .build(),
        )
        .build()
        .into()
}

/// 429: too many failed authentications; with `Retry-After`.
fn throttled_response() -> RefOr<Response> {
    let mut response = ResponseBuilder::new()
        .description("Too many failed authentications from this address or for this token ([auth] failures_per_minute); retry after `Retry-After` seconds.")
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Error")))
                .build(),
        )
        .build();
    response.headers.insert(
        "Retry-After".into(),
        utoipa::openapi::header::HeaderBuilder::new()
            .schema(utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::Integer))
            .description(Some("Seconds to wait."))
            .build(),
    );
    response.into()
}

/// Mark every operation of `doc` with who may call it: public ones need no token;
/// the others name their role (`x-portwatch-role`), need the bearer token, and can
/// answer 401 and 403.
fn annotate(doc: &mut utoipa::openapi::OpenApi, role: Option<Role>) {
    for item in doc.paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for op in ops.into_iter().flatten() {
            let Some(role) = role else {
                op.security = Some(Vec::new());
                continue;
            };
            op.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
            op.extensions
                .get_or_insert_with(Extensions::default)
                .insert("x-portwatch-role".into(), role.as_str().into());
            let responses = &mut op.responses.responses;
            responses.entry("401".into()).or_insert_with(|| {
                error_response("No valid token (missing, malformed, unknown or revoked).")
            });
            responses.entry("403".into()).or_insert_with(|| {
                error_response(&format!(
                    "The token's user lacks the {} role (or, deciding, is the one who asked).",
                    role.as_str()
                ))
            });
            responses.entry("429".into()).or_insert_with(throttled_response);
        }
    }
}

/// The OpenAPI document of this API, generated from the handlers and the roles the
/// router enforces.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for (role, group) in groups() {
        let (_, mut part) = group.split_for_parts();
        annotate(&mut part, role);
        doc.merge(part);
    }
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token (`pwt_<id>_<secret>`) from `portwatch token create` or POST /api/v1/tokens.",
                    ))
                    .build(),
            ),
        );
    doc.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
    doc
}

/// The document as served (made once).
pub(crate) fn openapi_json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| openapi().to_pretty_json().unwrap_or_default())
}

/// The router: every route of [`groups`] behind the gate of its role, and the
/// console.
pub fn router(ctx: ApiContext) -> Router {
    let mut router = console::router();
    for (role, group) in groups() {
        let (routes, _) = group.split_for_parts();
        router = router.merge(match role {
            None => routes,
            Some(role) => auth::guard(routes, &ctx, role),
        });
    }
    router.with_state(ctx)
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
        /// One host's history, oldest first (position = index).
        history: Vec<portwatch_events::Event>,
        /// How many times every episode was read (each report computation does).
        episode_reads: std::sync::atomic::AtomicUsize,
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
            self.episode_reads
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
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
        fn observations<'a>(
            &'a self,
            ip: std::net::IpAddr,
            after: Option<&'a EventCursor>,
            max: usize,
        ) -> ReadFuture<'a, Vec<StoredEvent>> {
            let before = after.map_or(self.history.len(), |c| c.at as usize);
            let found = self.history[..before]
                .iter()
                .enumerate()
                .rev()
                .filter(|(_, e)| e.observation.ip() == ip)
                .take(max)
                .map(|(i, e)| StoredEvent {
                    at: EventCursor {
                        at: i as i64,
                        id: String::new(),
                    },
                    event: Ok(e.clone()),
                })
                .collect();
            async move { Ok(found) }.boxed()
        }
        fn jobs(&self, _: usize) -> ReadFuture<'_, Vec<JobView>> {
            async { Ok(Vec::new()) }.boxed()
        }
        fn task_runs(&self, _: portwatch_events::Timestamp) -> ReadFuture<'_, Vec<TaskRuns>> {
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

    /// A journal in memory (the SQLite and Kafka journals are tested on their own).
    #[derive(Default)]
    struct MemoryJournal(Mutex<Vec<(String, String)>>);

    impl portwatch_ingest::Journal for MemoryJournal {
        fn append_decisions(&self, records: &[(String, String)]) -> Result<(), portwatch_ingest::LogError> {
            let mut all = self.0.lock().unwrap();
            for r in records {
                if !all.iter().any(|(id, _)| id == &r.0) {
                    all.push(r.clone());
                }
            }
            Ok(())
        }
        fn read_decisions(
            &self,
            from: u64,
            max: usize,
        ) -> Result<Vec<portwatch_ingest::JournalRecord>, portwatch_ingest::LogError> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .iter()
                .enumerate()
                .skip(from as usize)
                .take(max)
                .map(|(i, (_, body))| portwatch_ingest::JournalRecord {
                    offset: i as u64,
                    body: body.clone(),
                })
                .collect())
        }
    }

    fn context(read: Arc<Recorder>, anonymous_read: bool) -> ApiContext {
        let assets = Assets::new(vec![Asset {
            net: "10.0.0.0/24".parse().unwrap(),
            owner: Some("db-team".into()),
            system: None,
            zone: "default".into(),
        }]);
        let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle();
        let ledger = portwatch_ledger::Handle::new(
            Arc::new(MemoryJournal::default()),
            portwatch_projections::Notifier::new(portwatch_projections::NotifyPolicy {
                group_wait: chrono::Duration::seconds(10),
                group_interval: chrono::Duration::minutes(5),
                repeat_interval: chrono::Duration::hours(4),
                escalate_after: None,
                baseline: true,
            }),
        );
        let assets = Arc::new(assets);
        let figures = Arc::new(report::Figures::new(
            read.clone(),
            ledger.clone(),
            assets.clone(),
            report::FIGURES_MAX_AGE,
        ));
        ApiContext {
            read,
            ledger,
            auth: Arc::new(Auth::new(anonymous_read)),
            bounds: Arc::new(portwatch_projections::bounds::Bounds::default()),
            assets,
            schedule: Arc::new(vec![ScheduledTask {
                task: portwatch_events::Task::FullPorts,
                cadence: Some("1day".into()),
                configured: Some("1day".into()),
                set_by: None,
                set_at: None,
                implemented: true,
            }]),
            estate: Arc::new(portwatch_work::Estate {
                zones: vec![("default".into(), 256)],
                rate: 100.0,
                high_risk_ports: 41,
                liveness_ports: 4,
            }),
            metrics,
            figures,
        }
    }

    fn app(read: Arc<Recorder>) -> Router {
        router(context(read, true))
    }

    /// `method uri` with `headers` and a JSON `body` (if any): the status, the
    /// answer's headers and its body as JSON (null when it is not JSON).
    async fn exchange(
        app: &Router,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if !body.is_empty() {
            req = req.header("Content-Type", "application/json");
        }
        let response = app
            .clone()
            .oneshot(req.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            headers,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    /// A header of an answer, as text.
    fn header(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
        headers.get(name).map(|v| v.to_str().unwrap().to_string())
    }

    /// GET `uri`: the status, the next page's cursor and the body.
    async fn get(app: &Router, uri: &str) -> (StatusCode, Option<String>, serde_json::Value) {
        let (status, headers, body) = exchange(app, "GET", uri, &[], "").await;
        (status, header(&headers, NEXT_CURSOR), body)
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
    async fn a_ports_history_is_walked_page_by_page_without_gaps_or_repeats() {
        use portwatch_events::{Event, HostScan, JobId, Observation, Origin, OutcomeCounts, PortSet, Task};
        let origin = Origin {
            node: "n1".into(),
            job: JobId::new(),
            task: Task::FullPorts,
        };
        let t0 = chrono::Utc::now();
        // 3000 scans, of two hosts in turn; 10.0.0.1's cover 6379 every third time and
        // find it open every sixth: 500 of its 1500 scans concern the port.
        let history: Vec<Event> = (0..3000)
            .map(|i| {
                let ip = if i % 2 == 0 { "10.0.0.1" } else { "10.0.0.2" };
                let covered = if (i / 2) % 3 == 0 { "1-65535" } else { "1-1024" };
                let open = if (i / 2) % 6 == 0 {
                    vec![22, 6379]
                } else {
                    vec![22]
                };
                Event::new(
                    &origin,
                    t0 + chrono::Duration::seconds(i),
                    Observation::HostScan(HostScan {
                        ip: ip.parse().unwrap(),
                        proto: portwatch_events::Proto::Tcp,
                        started_at: t0,
                        covered: PortSet::parse(covered).unwrap(),
                        open,
                        counts: OutcomeCounts::default(),
                        wildcard: false,
                        unverified: 0,
                    }),
                )
            })
            .collect();
        let expected: Vec<(String, bool)> = history
            .iter()
            .enumerate()
            .rev()
            .filter(|(i, _)| i % 2 == 0 && (i / 2) % 3 == 0)
            .map(|(i, e)| (e.id.to_string(), (i / 2) % 6 == 0))
            .collect();
        assert_eq!(expected.len(), 500);
        let app = app(Arc::new(Recorder {
            history,
            ..Recorder::default()
        }));
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let uri = match &cursor {
                Some(c) => format!("/api/v1/events?ip=10.0.0.1&port=6379&limit=70&cursor={c}"),
                None => "/api/v1/events?ip=10.0.0.1&port=6379&limit=70".to_string(),
            };
            let (status, next, body) = get(&app, &uri).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let page = body.as_array().unwrap();
            assert!(page.len() <= 70);
            for e in page {
                assert_eq!(e["kind"], "host_scan");
                assert_eq!(e["event"]["ip"], "10.0.0.1");
                seen.push((
                    e["id"].as_str().unwrap().to_string(),
                    e["port_open"].as_bool().unwrap(),
                ));
            }
            cursor = next;
            if cursor.is_none() {
                break;
            }
        }
        assert!(cursor.is_none(), "the walk ends");
        assert_eq!(seen, expected, "every event of the port once, newest first");
        // Without a port: every event of the host, and nothing of the other.
        let (_, _, body) = get(&app, "/api/v1/events?ip=10.0.0.2&limit=1000").await;
        assert_eq!(body.as_array().unwrap().len(), 1000);
        assert!(body.as_array().unwrap().iter().all(|e| e["port_open"].is_null()));
        for (uri, word) in [
            ("/api/v1/events", "ip: required"),
            ("/api/v1/events?ip=10.0.0.1&port=0", "port"),
            ("/api/v1/events?ip=10.0.0.1&port=70000", "port"),
            ("/api/v1/events?ip=10.0.0.1&proto=sctp", "proto"),
            ("/api/v1/events?ip=10.0.0.1&kind=scan", "kind"),
            ("/api/v1/events?ip=10.0.0.1&limit=1001", "limit"),
            ("/api/v1/events?ip=10.0.0.1&cursor=abc", "cursor"),
        ] {
            let (status, _, body) = get(&app, uri).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
            assert!(body["error"].as_str().unwrap().contains(word), "{uri}: {body}");
        }
    }

    #[tokio::test]
    async fn report_figures_are_computed_once_for_many_requests_and_refreshed_behind_them() {
        use std::sync::atomic::Ordering::SeqCst;
        let read = Arc::new(Recorder::default());
        let ctx = context(read.clone(), true);
        let figures = Arc::new(report::Figures::new(
            read.clone(),
            ctx.ledger.clone(),
            ctx.assets.clone(),
            std::time::Duration::from_millis(300),
        ));
        // Many requests at once: one computation.
        let answers = futures::future::join_all((0..20).map(|_| figures.current())).await;
        assert!(answers.iter().all(Result::is_ok));
        assert_eq!(read.episode_reads.load(SeqCst), 1);
        // Young figures are served as they are.
        figures.current().await.unwrap();
        assert_eq!(read.episode_reads.load(SeqCst), 1);
        // Older ones are served at once and computed again behind the answer, once.
        tokio::time::sleep(std::time::Duration::from_millis(350)).await;
        for _ in 0..5 {
            figures.current().await.unwrap();
        }
        for _ in 0..100 {
            if read.episode_reads.load(SeqCst) == 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(read.episode_reads.load(SeqCst), 2);
        // The reporter's pass always computes.
        figures.refresh().await.unwrap();
        assert_eq!(read.episode_reads.load(SeqCst), 3);
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

    /// The paths the issues fixed (contracts), public ones first.
    const CONTRACT: &[&str] = &[
        "/healthz",
        "/metrics",
        "/api/v1/openapi.json",
        "/api/v1/docs",
        "/api/v1/session",
        "/api/v1/ports",
        "/api/v1/hosts",
        "/api/v1/episodes",
        "/api/v1/alerts",
        "/api/v1/events",
        "/api/v1/jobs",
        "/api/v1/nodes",
        "/api/v1/schedule",
        "/api/v1/schedule/{task}",
        "/api/v1/tasks",
        "/api/v1/plan",
        "/api/v1/report",
        "/api/v1/whoami",
        "/api/v1/approvals",
        "/api/v1/approvals/{id}/approve",
        "/api/v1/approvals/{id}/reject",
        "/api/v1/blocks",
        "/api/v1/blocks/{id}/confirm",
        "/api/v1/blocks/{id}/rollback",
        "/api/v1/tokens",
        "/api/v1/tokens/{id}",
        "/api/v1/users/{user}",
        "/api/v1/audit",
    ];

    /// `api/openapi.json` is the generated document, committed so that a change of
    /// the contract shows in review; `PORTWATCH_UPDATE_OPENAPI=1 cargo test -p
    /// portwatch-api` writes it again.
    #[test]
    fn the_committed_document_is_the_generated_one() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
        let generated = format!("{}\n", openapi_json());
        if std::env::var_os("PORTWATCH_UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "api/openapi.json is stale: run PORTWATCH_UPDATE_OPENAPI=1 cargo test -p portwatch-api"
        );
    }

    #[tokio::test]
    async fn the_generated_document_covers_every_path_and_role_and_is_served() {
        let doc: serde_json::Value = serde_json::from_str(openapi_json()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let paths = doc["paths"].as_object().unwrap();
        let mut documented: Vec<&str> = paths.keys().map(String::as_str).collect();
        let mut contract = CONTRACT.to_vec();
        documented.sort_unstable();
        contract.sort_unstable();
        assert_eq!(documented, contract);
        let mut ids = std::collections::BTreeSet::new();
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap_or_default();
                assert!(
                    ids.insert(id),
                    "{method} {path}: operationId `{id}` is used twice"
                );
                let public = CONTRACT[..5].contains(&path.as_str());
                assert_eq!(op["x-portwatch-role"].is_null(), public, "{method} {path}");
                assert_eq!(
                    op["security"].as_array().unwrap().is_empty(),
                    public,
                    "{method} {path}"
                );
                assert!(op["summary"].is_string(), "{method} {path}: no summary");
                if !public {
                    for code in ["401", "403"] {
                        assert!(op["responses"][code].is_object(), "{method} {path}: no {code}");
                    }
                }
            }
        }
        // Every schema a path names is in the document.
        let text = openapi_json();
        for (at, _) in text.match_indices("#/components/schemas/") {
            let name: String = text[at + 21..].chars().take_while(|c| *c != '"').collect();
            assert!(doc["components"]["schemas"][&name].is_object(), "{name} missing");
        }
        let app = app(Arc::new(Recorder::default()));
        let (status, _, body) = get(&app, "/api/v1/openapi.json").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, doc);
        // Every read path answers (none is documented but missing from the router).
        // (Not the ones with a path parameter, nor those needing a token here.)
        for path in CONTRACT.iter().filter(|p| {
            !p.contains('{')
                && ![
                    "/api/v1/hosts",
                    // Reads the hosts too.
                    "/api/v1/plan",
                    "/api/v1/tokens",
                    "/api/v1/audit",
                    "/api/v1/whoami",
                    "/api/v1/session",
                ]
                .contains(p)
        }) {
            // The one read with a required parameter.
            let uri = match *path {
                "/api/v1/events" => "/api/v1/events?ip=10.0.0.1",
                other => other,
            };
            let response = app
                .clone()
                .oneshot(Request::get(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
        }
    }

    /// A token for the new `user` with `role`, issued from the shell (`cli:test`)
    /// and journalled: (the token, its id).
    async fn token_for(ctx: &ApiContext, user: &str, role: Role) -> (String, String) {
        let shell = portwatch_projections::Actor::system("cli:test");
        let issued = portwatch_ledger::tokens::issue(None, user, Some(role), &shell).unwrap();
        ctx.ledger.record(issued.decisions).await.unwrap();
        (issued.token, issued.id)
    }

    async fn call(
        app: &Router,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer.iter().map(|b| ("Authorization", b.as_str())).collect();
        let (status, _, body) = exchange(app, method, uri, &headers, body).await;
        (status, body)
    }

    #[tokio::test]
    async fn tokens_and_roles_are_enforced_on_every_route() {
        let ctx = context(Arc::new(Recorder::default()), false);
        let (admin, _) = token_for(&ctx, "root", Role::Admin).await;
        let app = router(ctx.clone());

        // Public paths need nothing; reads need a token when reads are not anonymous.
        assert_eq!(call(&app, "GET", "/healthz", None, "").await.0, StatusCode::OK);
        assert_eq!(
            call(&app, "GET", "/api/v1/ports", None, "").await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(&app, "GET", "/api/v1/ports", Some("pwt_nope"), "").await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(&app, "GET", "/api/v1/ports", Some(&admin), "").await.0,
            StatusCode::OK
        );

        // The admin issues a viewer token; the viewer reads but may not write.
        let (status, issued) = call(
            &app,
            "POST",
            "/api/v1/tokens",
            Some(&admin),
            r#"{"user":"ann","role":"viewer"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{issued}");
        let viewer = issued["token"].as_str().unwrap().to_string();
        let (status, me) = call(&app, "GET", "/api/v1/whoami", Some(&viewer), "").await;
        assert_eq!(
            (status, me["user"].as_str(), me["role"].as_str()),
            (StatusCode::OK, Some("ann"), Some("viewer"))
        );
        let writes = [
            ("POST", "/api/v1/tokens", r#"{"user":"eve","role":"admin"}"#),
            (
                "DELETE",
                &format!("/api/v1/tokens/{}", issued["id"].as_str().unwrap()) as &str,
                "",
            ),
            ("GET", "/api/v1/tokens", ""),
        ];
        for (method, uri, body) in writes {
            assert_eq!(
                call(&app, method, uri, None, body).await.0,
                StatusCode::UNAUTHORIZED,
                "{method} {uri}"
            );
            let (status, refusal) = call(&app, method, uri, Some(&viewer), body).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri}");
            assert!(
                refusal["error"].as_str().unwrap().contains("needs admin"),
                "{refusal}"
            );
        }
        // Bad input is named; revoking works at the next request.
        let (status, err) = call(&app, "POST", "/api/v1/tokens", Some(&admin), r#"{"user":"bob"}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(err["error"].as_str().unwrap().contains("bob"), "{err}");
        let (status, _) = call(
            &app,
            "POST",
            "/api/v1/tokens",
            Some(&admin),
            r#"{"user":"bob","role":"boss"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let uri = format!("/api/v1/tokens/{}", issued["id"].as_str().unwrap());
        assert_eq!(
            call(&app, "DELETE", &uri, Some(&admin), "").await.0,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            call(&app, "GET", "/api/v1/ports", Some(&viewer), "").await.0,
            StatusCode::UNAUTHORIZED
        );
        // The last admin is not demoted (nobody could manage users then); once
        // another admin exists, they may be.
        let (status, refusal) = call(
            &app,
            "POST",
            "/api/v1/tokens",
            Some(&admin),
            r#"{"user":"root","role":"viewer"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{refusal}");
        assert!(
            refusal["error"].as_str().unwrap().contains("last admin"),
            "{refusal}"
        );
        let (status, ada) = call(
            &app,
            "POST",
            "/api/v1/tokens",
            Some(&admin),
            r#"{"user":"ada","role":"admin"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        let ada = ada["token"].as_str().unwrap().to_string();
        let (status, demoted) = call(
            &app,
            "POST",
            "/api/v1/tokens",
            Some(&admin),
            r#"{"user":"root","role":"approver"}"#,
        )
        .await;
        assert_eq!(
            (status, demoted["role"].as_str()),
            (StatusCode::CREATED, Some("approver"))
        );
        // Nothing secret is listed, and every change is journalled with its author.
        let (status, _) = call(&app, "GET", "/api/v1/tokens", Some(&admin), "").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "root is an approver now");
        let (_, listed) = call(&app, "GET", "/api/v1/tokens", Some(&ada), "").await;
        assert_eq!(listed.as_array().unwrap().len(), 4);
        assert!(!listed.to_string().contains("argon2"), "{listed}");
        let state = ctx.ledger.read();
        assert!(state
            .ledger()
            .tokens()
            .all(|t| t.issued_by == "cli:test" || t.issued_by == "root"));
    }

    /// A request with `headers`; the status, the Set-Cookie header and the body.
    async fn raw(
        app: &Router,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, Option<String>, serde_json::Value) {
        let (status, answer, body) = exchange(app, method, uri, headers, body).await;
        (status, header(&answer, "set-cookie"), body)
    }

    #[tokio::test]
    async fn a_console_session_needs_its_csrf_token_for_changes_and_ends_with_its_token() {
        let ctx = context(Arc::new(Recorder::default()), false);
        let (token, token_id) = token_for(&ctx, "olga", Role::Operator).await;
        let app = router(ctx.clone());
        let host = ("Host", "127.0.0.1:7678");
        // A wrong token opens nothing.
        let (status, cookie, _) = raw(
            &app,
            "POST",
            "/api/v1/session",
            &[host],
            r#"{"token":"pwt_0123456789abcdef_nope"}"#,
        )
        .await;
        assert_eq!((status, cookie), (StatusCode::UNAUTHORIZED, None));
        let (status, cookie, me) = raw(
            &app,
            "POST",
            "/api/v1/session",
            &[host],
            &format!(r#"{{"token":"{token}"}}"#),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{me}");
        assert_eq!(
            (me["user"].as_str(), me["role"].as_str()),
            (Some("olga"), Some("operator"))
        );
        let set = cookie.expect("a cookie");
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        assert!(!set.contains(&token), "the cookie is not the token");
        let pair = set.split(';').next().unwrap().to_string();
        let csrf = me["csrf"].as_str().unwrap().to_string();
        let cookie = ("Cookie", pair.as_str());
        // Reads ride on the cookie alone; the session tells the page its CSRF token.
        assert_eq!(
            raw(&app, "GET", "/api/v1/ports", &[cookie], "").await.0,
            StatusCode::OK
        );
        let (_, _, again) = raw(&app, "GET", "/api/v1/session", &[cookie], "").await;
        assert_eq!(again["csrf"].as_str(), Some(csrf.as_str()));
        // A change needs the CSRF token too.
        let body = r#"{"target":"10.0.0.7","ports":"6379","reason":"cache","owner":"web","expires":"7d"}"#;
        let (status, _, err) = raw(&app, "POST", "/api/v1/approvals", &[cookie], body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
        assert!(err["error"].as_str().unwrap().contains("X-CSRF-Token"));
        let wrong = ("X-CSRF-Token", "0000");
        assert_eq!(
            raw(&app, "POST", "/api/v1/approvals", &[cookie, wrong], body)
                .await
                .0,
            StatusCode::FORBIDDEN
        );
        let right = ("X-CSRF-Token", csrf.as_str());
        let (status, _, filed) = raw(&app, "POST", "/api/v1/approvals", &[cookie, right], body).await;
        assert_eq!(status, StatusCode::CREATED, "{filed}");
        assert_eq!(filed["requested_by"], "olga");
        // Roles still hold: an operator's session cannot issue tokens.
        assert_eq!(
            raw(
                &app,
                "POST",
                "/api/v1/tokens",
                &[cookie, right],
                r#"{"user":"x","role":"viewer"}"#
            )
            .await
            .0,
            StatusCode::FORBIDDEN
        );
        // Revoking the token ends the session at its next request.
        ctx.ledger
            .record(vec![portwatch_projections::Decision::new(
                chrono::Utc::now(),
                "test",
                portwatch_projections::DecisionKind::TokenRevoked { token_id },
            )])
            .await
            .unwrap();
        assert_eq!(
            raw(&app, "GET", "/api/v1/ports", &[cookie], "").await.0,
            StatusCode::UNAUTHORIZED
        );
        // Signing out clears the cookie.
        let (status, cleared, _) = raw(&app, "DELETE", "/api/v1/session", &[cookie], "").await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(cleared.unwrap().contains("Max-Age=0"));
    }

    #[tokio::test]
    async fn an_admin_changes_a_cadence_and_it_is_on_record() {
        let ctx = context(Arc::new(Recorder::default()), false);
        let mut tokens_of = std::collections::BTreeMap::new();
        for (user, role) in [("ada", Role::Admin), ("olga", Role::Operator)] {
            tokens_of.insert(user, token_for(&ctx, user, role).await.0);
        }
        let app = router(ctx.clone());
        let put = |token: &str, task: &str, body: &str| {
            let (app, token, uri, body) = (
                app.clone(),
                token.to_string(),
                format!("/api/v1/schedule/{task}"),
                body.to_string(),
            );
            async move { call(&app, "PUT", &uri, Some(&token), &body).await }
        };
        assert_eq!(
            put(&tokens_of["olga"], "full_ports", r#"{"every":"6h"}"#).await.0,
            StatusCode::FORBIDDEN
        );
        let (status, err) = put(&tokens_of["ada"], "full_ports", r#"{"every":"soon"}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(err["error"].as_str().unwrap().contains("every `soon`"), "{err}");
        assert_eq!(
            put(&tokens_of["ada"], "everything", r#"{"every":"6h"}"#).await.0,
            StatusCode::NOT_FOUND
        );
        let (status, schedule) = put(&tokens_of["ada"], "full_ports", r#"{"every":"6h"}"#).await;
        assert_eq!(status, StatusCode::OK, "{schedule}");
        assert_eq!(schedule[0]["cadence"], "6h");
        assert_eq!(schedule[0]["configured"], "1day");
        assert_eq!(schedule[0]["set_by"], "ada");
        let (_, listed) = call(&app, "GET", "/api/v1/schedule", Some(&tokens_of["olga"]), "").await;
        assert_eq!(listed, schedule, "everyone sees it");
        let (_, off) = put(&tokens_of["ada"], "full_ports", r#"{"every":"off"}"#).await;
        assert!(off[0]["cadence"].is_null(), "{off}");
        let (_, back) = put(&tokens_of["ada"], "full_ports", r#"{"every":null}"#).await;
        assert_eq!(
            (back[0]["cadence"].as_str(), back[0]["set_by"].as_str()),
            (Some("1day"), None)
        );
    }

    /// An admin cannot be their own second person: not by minting a token for an
    /// existing approver (refused; with `admin_may_issue_for_others` issued, but it
    /// counts for nobody), not through an approver they create; each attempt is in
    /// the audit with the token it came with and who issued that token.
    #[tokio::test]
    async fn an_admin_cannot_mint_their_own_second_person() {
        let mut ctx = context(Arc::new(Recorder::default()), false);
        let mut tokens_of = std::collections::BTreeMap::new();
        for (user, role) in [
            ("ada", Role::Admin),
            ("bob", Role::Approver),
            ("ops", Role::Approver),
        ] {
            tokens_of.insert(user, token_for(&ctx, user, role).await.0);
        }
        let app = router(ctx.clone());
        let ada = tokens_of["ada"].clone();
        let body = r#"{"target":"10.0.0.7","ports":"8443","service":"https","reason":"vendor portal","owner":"web-team","expires":"30d"}"#;
        let (status, filed) = call(&app, "POST", "/api/v1/approvals", Some(&ada), body).await;
        assert_eq!(status, StatusCode::CREATED, "{filed}");
        let approve = format!(
            "/api/v1/approvals/{}/approve",
            filed["approval_id"].as_str().unwrap()
        );
        // A token for bob, who exists: refused.
        let (status, refused) = call(&app, "POST", "/api/v1/tokens", Some(&ada), r#"{"user":"bob"}"#).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
        assert!(
            refused["error"].as_str().unwrap().contains("only they issue"),
            "{refused}"
        );
        // System names are nobody's.
        for name in ["allow-list", "notifier", "portwatch", "controller"] {
            let (status, err) = call(
                &app,
                "POST",
                "/api/v1/tokens",
                Some(&ada),
                &format!(r#"{{"user":"{name}","role":"approver"}}"#),
            )
            .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {err}");
            assert!(err["error"].as_str().unwrap().contains(name), "{err}");
        }
        // A new approver ada makes: their approval of ada's request is refused.
        let (status, carol) = call(
            &app,
            "POST",
            "/api/v1/tokens",
            Some(&ada),
            r#"{"user":"carol","role":"approver"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{carol}");
        let (status, refused) =
            call(&app, "POST", &approve, Some(carol["token"].as_str().unwrap()), "").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
        assert!(
            refused["error"].as_str().unwrap().contains("two-person rule"),
            "{refused}"
        );
        // Where the config lets admins issue for others, bob's minted token works but
        // counts for nobody's second confirmation.
        ctx.auth = Arc::new(Auth::new(false).issuing_for_others(true));
        let app = router(ctx.clone());
        let (status, minted) = call(&app, "POST", "/api/v1/tokens", Some(&ada), r#"{"user":"bob"}"#).await;
        assert_eq!(status, StatusCode::CREATED, "{minted}");
        let minted_token = minted["token"].as_str().unwrap();
        let (status, me) = call(&app, "GET", "/api/v1/whoami", Some(minted_token), "").await;
        assert_eq!((status, me["user"].as_str()), (StatusCode::OK, Some("bob")));
        let (status, refused) = call(&app, "POST", &approve, Some(minted_token), "").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
        assert!(refused["error"].as_str().unwrap().contains("nobody"), "{refused}");
        // bob with his own token, or ops, is a second person.
        let (status, approved) = call(&app, "POST", &approve, Some(&tokens_of["bob"]), "").await;
        assert_eq!(status, StatusCode::OK, "{approved}");
        // A role changes without a token.
        let (status, user) = call(
            &app,
            "PUT",
            "/api/v1/users/ops",
            Some(&ada),
            r#"{"role":"operator"}"#,
        )
        .await;
        assert_eq!(
            (status, user["role"].as_str()),
            (StatusCode::OK, Some("operator")),
            "{user}"
        );
        assert_eq!(
            call(
                &app,
                "PUT",
                "/api/v1/users/nobody",
                Some(&ada),
                r#"{"role":"operator"}"#
            )
            .await
            .0,
            StatusCode::NOT_FOUND
        );
        // The audit (admin only) lists the refused attempts with token and issuer.
        assert_eq!(
            call(&app, "GET", "/api/v1/audit", Some(&tokens_of["bob"]), "")
                .await
                .0,
            StatusCode::FORBIDDEN
        );
        let (status, refusals) = call(&app, "GET", "/api/v1/audit?kind=refused", Some(&ada), "").await;
        assert_eq!(status, StatusCode::OK, "{refusals}");
        let refusals = refusals.as_array().unwrap();
        let summary: Vec<(&str, &str, &str)> = refusals
            .iter()
            .map(|e| {
                (
                    e["user"].as_str().unwrap(),
                    e["issuer"].as_str().unwrap_or("-"),
                    e["rule"].as_str().unwrap(),
                )
            })
            .map(|(u, i, r)| {
                (
                    u,
                    i,
                    if r.contains("two-person") {
                        "two-person"
                    } else {
                        "issue"
                    },
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("bob", "ada", "two-person"),
                ("carol", "ada", "two-person"),
                ("ada", "cli:test", "issue")
            ],
            "newest first: {refusals:?}"
        );
        assert!(refusals.iter().all(|e| e["token"].is_string()), "{refusals:?}");
        let (_, page) = call(&app, "GET", "/api/v1/audit?limit=2", Some(&ada), "").await;
        assert_eq!(page.as_array().unwrap().len(), 2);
        let (_, by_bob) = call(&app, "GET", "/api/v1/audit?user=bob&since=1h", Some(&ada), "").await;
        assert!(by_bob.as_array().unwrap().iter().all(|e| e["user"] == "bob"));
        assert!(by_bob
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "approval_granted"));
        let (status, err) = call(&app, "GET", "/api/v1/audit?since=yesterday", Some(&ada), "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(err["error"].as_str().unwrap().contains("since"), "{err}");
    }

    #[tokio::test]
    async fn approvals_are_filed_by_operators_and_decided_by_someone_else() {
        let ctx = context(Arc::new(Recorder::default()), false);
        let mut tokens_of = std::collections::BTreeMap::new();
        for (user, role) in [
            ("olga", Role::Operator),
            ("arno", Role::Approver),
            ("vic", Role::Viewer),
            ("ada", Role::Approver),
        ] {
            tokens_of.insert(user, token_for(&ctx, user, role).await.0);
        }
        let app = router(ctx.clone());
        let body = r#"{"target":"10.0.0.0/24","ports":"8080","service":"http","reason":"shop admin behind SSO","owner":"web-team","expires":"30d"}"#;
        assert_eq!(
            call(&app, "POST", "/api/v1/approvals", Some(&tokens_of["vic"]), body)
                .await
                .0,
            StatusCode::FORBIDDEN
        );
        let (status, filed) = call(&app, "POST", "/api/v1/approvals", Some(&tokens_of["olga"]), body).await;
        assert_eq!(status, StatusCode::CREATED, "{filed}");
        assert_eq!(filed["state"], "pending");
        assert_eq!(filed["requested_by"], "olga");
        let id = filed["approval_id"].as_str().unwrap().to_string();
        // Bad input is named; nobody decides their own request.
        for (bad, word) in [
            (
                r#"{"target":"10.0.0.0/24","ports":"8080","reason":"x","owner":"y","expires":"-1d"}"#,
                "expires",
            ),
            (
                r#"{"target":"10.0.0.0/24","ports":"8080","reason":"x","owner":"y","expires":"800d"}"#,
                "expires",
            ),
            (
                r#"{"target":"10.0.0","ports":"8080","reason":"x","owner":"y","expires":"1d"}"#,
                "target",
            ),
            (
                r#"{"target":"10.0.0.1","ports":"99999","reason":"x","owner":"y","expires":"1d"}"#,
                "ports",
            ),
            (
                r#"{"target":"10.0.0.1","ports":"80","reason":" ","owner":"y","expires":"1d"}"#,
                "reason",
            ),
            (
                r#"{"target":"10.0.0.1","ports":"80","reason":"x","owner":"y"}"#,
                "expires",
            ),
        ] {
            let (status, err) = call(&app, "POST", "/api/v1/approvals", Some(&tokens_of["olga"]), bad).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
            assert!(err["error"].as_str().unwrap().contains(word), "{bad}: {err}");
        }
        let approve = format!("/api/v1/approvals/{id}/approve");
        assert_eq!(
            call(&app, "POST", &approve, Some(&tokens_of["olga"]), "").await.0,
            StatusCode::FORBIDDEN,
            "operator"
        );
        let (status, approved) = call(
            &app,
            "POST",
            &approve,
            Some(&tokens_of["arno"]),
            r#"{"note":"ok until the SSO move"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{approved}");
        assert_eq!(approved["state"], "approved");
        assert_eq!(approved["decision"]["by"], "arno");
        let reject = format!("/api/v1/approvals/{id}/reject");
        assert_eq!(
            call(&app, "POST", &reject, Some(&tokens_of["ada"]), "").await.0,
            StatusCode::CONFLICT
        );
        assert_eq!(
            call(
                &app,
                "POST",
                "/api/v1/approvals/ap_nope/approve",
                Some(&tokens_of["ada"]),
                ""
            )
            .await
            .0,
            StatusCode::NOT_FOUND
        );
        // An approver who files a request cannot approve it either.
        let (_, own) = call(&app, "POST", "/api/v1/approvals", Some(&tokens_of["ada"]), body).await;
        let own_id = own["approval_id"].as_str().unwrap();
        let (status, refusal) = call(
            &app,
            "POST",
            &format!("/api/v1/approvals/{own_id}/approve"),
            Some(&tokens_of["ada"]),
            "",
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(
            refusal["error"].as_str().unwrap().contains("someone else"),
            "{refusal}"
        );
        let (_, listed) = call(&app, "GET", "/api/v1/approvals", Some(&tokens_of["vic"]), "").await;
        assert_eq!(listed.as_array().unwrap().len(), 2);
    }
}
