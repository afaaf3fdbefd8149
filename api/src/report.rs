//! `GET /api/v1/report`: MTTD, time to notify, MTTR and the convergence trend over a
//! period, from the deployment's episodes and port rows and the journal's decisions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::Json;
use chrono::Utc;
use portwatch_events::Timestamp;
use portwatch_projections::report::{
    aggregate, convergence, episodes, open_now, risk_by_port, By, Day, EpisodeReport, Group, OpenNow,
};
use portwatch_projections::Assets;
use portwatch_stores::{EpisodeQuery, PageRequest, PortQuery};

use crate::error::{ApiError, ErrorBody};
use crate::params::{Params, ReportParams};
use crate::read::{ReadError, ReadModel};
use crate::ApiContext;

/// MTTD, time to notify, MTTR and the convergence trend over the last days.
#[utoipa::path(get, path = "/api/v1/report", tag = "report", params(ReportParams), responses(
    (status = 200, description = "Groups and the daily trend, from figures at most 5 s old (they are computed once for every request meanwhile).", body = Report),
    (status = 400, description = "A parameter is wrong; the message names it.", body = ErrorBody),
    (status = 503, description = "The store did not answer.", body = ErrorBody),
))]
pub(crate) async fn report(
    State(ctx): State<ApiContext>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let p = Params::of::<ReportParams>(q)?;
    let (by, days) = (p.by()?, p.days()?);
    let reports = ctx.figures.current().await?;
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

/// How old the figures the report serves may be before they are computed again:
/// the console asks for them every few seconds, and computing them reads every
/// episode and port row.
pub const FIGURES_MAX_AGE: Duration = Duration::from_secs(5);

/// Figures older than this are not served while new ones are computed; the request
/// waits for them.
const FIGURES_STALE_LIMIT: Duration = Duration::from_secs(60);

type Computed = (Instant, Arc<Vec<EpisodeReport>>);

/// Every episode's figures, computed by one computation at a time for every
/// request, and by the deployment's reporter (which publishes them to `/metrics`
/// and the dashboards) whenever it runs. A request gets figures at most
/// [`FIGURES_MAX_AGE`] old at once; older ones (up to [`FIGURES_STALE_LIMIT`]) are
/// served while new ones are computed behind the answer. How long a computation
/// takes is the `portwatch_report_compute_seconds` gauge.
pub struct Figures {
    read: Arc<dyn ReadModel>,
    ledger: portwatch_ledger::Handle,
    assets: Arc<Assets>,
    max_age: Duration,
    last: RwLock<Option<Computed>>,
    computing: tokio::sync::Mutex<()>,
    refreshing: AtomicBool,
}

impl std::fmt::Debug for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Figures")
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl Figures {
    /// The figures of `read` with the decisions `ledger` folds and `assets`' owners.
    pub fn new(
        read: Arc<dyn ReadModel>,
        ledger: portwatch_ledger::Handle,
        assets: Arc<Assets>,
        max_age: Duration,
    ) -> Self {
        Self {
            read,
            ledger,
            assets,
            max_age,
            last: RwLock::new(None),
            computing: tokio::sync::Mutex::new(()),
            refreshing: AtomicBool::new(false),
        }
    }

    fn cached(&self) -> Option<Computed> {
        self.last.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The figures to answer a request with (see [`Figures`]).
    pub async fn current(self: &Arc<Self>) -> Result<Arc<Vec<EpisodeReport>>, ReadError> {
        match self.cached() {
            Some((at, figures)) if at.elapsed() < self.max_age => Ok(figures),
            Some((at, figures)) if at.elapsed() < FIGURES_STALE_LIMIT => {
                if !self.refreshing.swap(true, Ordering::AcqRel) {
                    let me = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = me.fresher_than(me.max_age).await {
                            tracing::warn!(error = %e, "report figures not computed; the next request retries");
                        }
                        me.refreshing.store(false, Ordering::Release);
                    });
                }
                Ok(figures)
            }
            _ => self.fresher_than(self.max_age).await,
        }
    }

    /// Figures computed now (the reporter's pass).
    pub async fn refresh(&self) -> Result<Arc<Vec<EpisodeReport>>, ReadError> {
        self.fresher_than(Duration::ZERO).await
    }

    /// Figures younger than `age`: those at hand, or computed once whoever asks.
    async fn fresher_than(&self, age: Duration) -> Result<Arc<Vec<EpisodeReport>>, ReadError> {
        let _one = self.computing.lock().await;
        if let Some((at, figures)) = self.cached() {
            if at.elapsed() < age {
                return Ok(figures);
            }
        }
        let started = Instant::now();
        let figures = Arc::new(episode_reports(&*self.read, &self.ledger, &self.assets).await?);
        metrics::gauge!("portwatch_report_compute_seconds").set(started.elapsed().as_secs_f64());
        *self.last.write().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), figures.clone()));
        Ok(figures)
    }
}

/// The figures of every episode of `read`, with the decisions `ledger` has folded.
async fn episode_reports(
    read: &dyn ReadModel,
    ledger: &portwatch_ledger::Handle,
    assets: &Assets,
) -> Result<Vec<EpisodeReport>, ReadError> {
    let all = PageRequest::all();
    let list = read.episodes(&EpisodeQuery::default(), &all).await?.items;
    let rows = read.ports(&PortQuery::default(), &all).await?.items;
    let risk_of = risk_by_port(&rows);
    Ok(episodes(&list, &risk_of, assets, ledger.read().ledger()))
}
