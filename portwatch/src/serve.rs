//! Serving the one API (`portwatch_api`) from a role: the same router over the
//! role's read model, with the config's assets and schedule.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use metrics_exporter_prometheus::PrometheusHandle;
use portwatch_api::report::{Figures, FIGURES_MAX_AGE};
use portwatch_api::{ApiContext, Auth, ReadModel, ScheduledTask};
use portwatch_events::Task;
use portwatch_ingest::Journal;
use portwatch_projections::Notifier;
use tokio::sync::watch;

use crate::config::Config;
use crate::control::scheduler::{cadence, implemented};

/// Every schedulable task with its configured cadence.
pub fn schedule(cfg: &Config) -> Vec<ScheduledTask> {
    Task::SCHEDULED
        .iter()
        .map(|&task| {
            let configured = cfg.schedule.get(&task).map(|d| cadence(*d));
            ScheduledTask {
                task,
                cadence: configured.clone(),
                configured,
                set_by: None,
                set_at: None,
                implemented: implemented(task),
            }
        })
        .collect()
}

/// The API context of `cfg` over `read`, with the journal and its fold.
pub fn context(
    cfg: &Config,
    read: Arc<dyn ReadModel>,
    journal: Arc<dyn Journal>,
    notifier: Arc<RwLock<Notifier>>,
    metrics: PrometheusHandle,
) -> ApiContext {
    let assets = Arc::new(cfg.asset_map());
    let figures = Arc::new(Figures::new(
        read.clone(),
        notifier.clone(),
        assets.clone(),
        FIGURES_MAX_AGE,
    ));
    ApiContext {
        read,
        notifier,
        journal,
        auth: Arc::new(Auth::new(cfg.anonymous_read).issuing_for_others(cfg.admin_may_issue_for_others)),
        max_block: cfg.control.max_duration,
        assets,
        schedule: Arc::new(schedule(cfg)),
        metrics,
        figures,
    }
}

/// Bind `listen` now (so that a busy port is an error at start), and return the
/// server future, which runs until `stop` is set.
pub async fn bind(
    listen: SocketAddr,
    ctx: ApiContext,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<impl std::future::Future<Output = std::io::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            " (another program listens there: set [api] listen in the config or pass --listen IP:PORT)"
        } else {
            ""
        };
        anyhow::anyhow!("api.listen: cannot listen on {listen}: {e}{hint}")
    })?;
    let app = portwatch_api::router(ctx);
    Ok(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
    })
}
