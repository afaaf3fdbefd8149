//! The notifier role's wiring, the same in both deployments: the notification
//! policy and the channels of the config (`portwatch_notify::Service`), reading
//! alerts through the deployment's read model and journalling decisions to the
//! deployment's journal (the embedded log file, or the Kafka decisions topic).

use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;
use futures::FutureExt;
use portwatch_api::ReadModel;
use portwatch_ingest::Journal;
use portwatch_notify::{AlertSource, Service, Timing};
use portwatch_projections::{Alert, Notifier};
use portwatch_stores::{AlertQuery, PageRequest};
use tokio::sync::watch;

use crate::config::Config;

/// Every alert of a read model.
struct ReadAlerts(Arc<dyn ReadModel>);

impl AlertSource for ReadAlerts {
    fn alerts(&self) -> BoxFuture<'_, Result<Vec<Alert>, String>> {
        async move {
            let page = self
                .0
                .alerts(&AlertQuery::default(), &PageRequest::all())
                .await
                .map_err(|e| e.to_string())?;
            Ok(page.items)
        }
        .boxed()
    }
}

/// The shared notification state: the notifier folds into it, the API reads it.
pub fn state(cfg: &Config) -> Arc<RwLock<Notifier>> {
    Arc::new(RwLock::new(Notifier::new(cfg.alerts.policy.clone())))
}

/// Start the notifier; it runs until `stop` is set. It always follows the journal
/// (users and tokens issued elsewhere); without channels nobody can be told
/// anything, so nothing is decided: alerts stay on record, and the first channel
/// configured later hears about the exposures still open.
pub fn spawn(
    cfg: &Config,
    journal: Arc<dyn Journal>,
    read: Arc<dyn ReadModel>,
    state: Arc<RwLock<Notifier>>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    if cfg.alerts.channels.is_empty() {
        tracing::info!("no [[channels]] configured: alerts are recorded, nobody is notified");
    }
    let service = Service::new(
        journal,
        Arc::new(ReadAlerts(read)),
        state,
        Arc::new(cfg.asset_map()),
        cfg.alerts.channels.clone(),
        Timing::default(),
    )
    .map_err(anyhow::Error::msg)?;
    tracing::debug!(
        channels = cfg.alerts.channels.len(),
        group_wait = ?cfg.alerts.policy.group_wait.to_std().unwrap_or_default(),
        "notifier started"
    );
    Ok(tokio::spawn(service.run(stop)))
}

/// Fold the journal, and on the very first start (no user on record) create the
/// admin's first token: returned to be shown once; only its hash is journalled.
pub async fn bootstrap(
    journal: &Arc<dyn Journal>,
    state: &Arc<RwLock<Notifier>>,
) -> anyhow::Result<Option<String>> {
    portwatch_notify::service::catch_up(journal, state, 0).await?;
    let empty = state
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .ledger()
        .users()
        .is_empty();
    if !empty {
        return Ok(None);
    }
    let (decisions, token, id, _) = portwatch_api::tokens::issue(
        None,
        "admin",
        Some(portwatch_projections::Role::Admin),
        "portwatch",
    )
    .map_err(anyhow::Error::msg)?;
    portwatch_notify::service::record(journal, state, decisions).await?;
    tracing::info!(user = "admin", token = %id, "first start: admin token issued");
    Ok(Some(token))
}

/// Show the first admin token on stdout (never in the log).
pub fn show_first_token(token: &str, listen: std::net::SocketAddr) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "\nportwatch: first start. The admin's API token, shown this once (only its hash is kept):\n\n    {token}\n\nUse it as `Authorization: Bearer <token>` on http://{listen}/api/v1/ ; make more with\n`portwatch token create --user NAME --role viewer|operator|approver|admin`.\n"
    );
    let _ = out.flush();
}
