//! The notifier role's wiring, the same in both deployments: the notification
//! policy and the channels of the config (`portwatch_notify::Service`), reading
//! alerts through the deployment's read model and journalling decisions to the
//! deployment's journal (the embedded log file, or the Kafka decisions topic).

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use portwatch_ingest::Journal;
use portwatch_ingest::{Acks, TopicConsumer};
use portwatch_ledger::Handle;
use portwatch_notify::{Senders, Service, Timing};
use portwatch_projections::{Alert, Decision, DecisionKind, Notifier};
use portwatch_projector::AlertOutlet;
use portwatch_stores::ReadModel;
use tokio::sync::{mpsc, watch};

use crate::config::Config;

/// The projector's outlet into the notifier (embedded: same process): each batch's
/// new alerts, as soon as they are written.
#[derive(Debug)]
pub struct AlertFeed(pub mpsc::UnboundedSender<Vec<Alert>>);

impl AlertOutlet for AlertFeed {
    fn publish<'a>(&'a self, alerts: Vec<Alert>, _stop: watch::Receiver<bool>) -> BoxFuture<'a, bool> {
        // The notifier may have stopped first; its next start reads the store.
        let _ = self.0.send(alerts);
        futures::future::ready(true).boxed()
    }
}

/// The alerts topic into the notifier (scale-out: the control plane follows what
/// the projectors publish), until `stop`.
pub async fn follow_alerts_topic(
    cfg: Arc<Config>,
    feed: mpsc::UnboundedSender<Vec<Alert>>,
    mut stop: watch::Receiver<bool>,
) {
    let so = &cfg.scaleout;
    let group = format!("{}-notifier", so.projector.group);
    let consumer = match TopicConsumer::join(&so.kafka, &group, &so.kafka.topics.alerts, Acks::Auto, &[]) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot follow the alerts topic; the notifier reads the store instead");
            return;
        }
    };
    loop {
        let delivery = tokio::select! {
            d = consumer.next() => d,
            _ = stop.wait_for(|s| *s) => return,
        };
        match delivery {
            Ok(d) => match serde_json::from_str::<Alert>(&d.payload) {
                Ok(alert) => {
                    let _ = feed.send(vec![alert]);
                }
                Err(e) => tracing::warn!(error = %e, offset = d.offset, "alert record skipped"),
            },
            Err(e) => {
                tracing::warn!(error = %e, "alerts topic: retrying");
                if !portwatch_projector::pause(&mut stop, std::time::Duration::from_secs(1)).await {
                    return;
                }
            }
        }
    }
}

/// The ledger of this process over `journal`: the notifier, the API, the block
/// controller, the scheduler and the reporter record and read through it.
pub fn ledger(cfg: &Config, journal: Arc<dyn Journal>) -> Handle {
    Handle::new(journal, Notifier::new(cfg.alerts.policy.clone()))
}

/// Start the notifier; it runs until `stop` is set. It always follows the journal
/// (users and tokens issued elsewhere); without channels nobody can be told
/// anything, so nothing is decided: alerts stay on record, and the first channel
/// configured later hears about the exposures still open.
pub fn spawn(
    cfg: &Config,
    senders: Senders,
    ledger: Handle,
    read: Arc<dyn ReadModel>,
    feed: mpsc::UnboundedReceiver<Vec<Alert>>,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    if cfg.alerts.channels.is_empty() {
        tracing::info!("no [[channels]] configured: alerts are recorded, nobody is notified");
    }
    let service = Service::new(
        ledger,
        read,
        Arc::new(cfg.asset_map()),
        cfg.alerts.channels.clone(),
        senders,
        Timing {
            warn_before: cfg.alerts.warn_before,
            ..Timing::default()
        },
    )
    .with_feed(feed);
    tracing::debug!(
        channels = cfg.alerts.channels.len(),
        group_wait = ?cfg.alerts.policy.group_wait.to_std().unwrap_or_default(),
        "notifier started"
    );
    tokio::spawn(service.run(stop))
}

/// What the channels send with (their private CAs' HTTP clients), made at start so
/// that a bad `ca_file` ends the start with the channel named.
pub fn senders(cfg: &Config) -> anyhow::Result<Senders> {
    Ok(Senders::new(&cfg.alerts.channels)?)
}

/// Fold the journal; grant the allow-list's approvals not on record yet; and on the
/// very first start (no user on record) create the admin's first token: returned to
/// be shown once; only its hash is journalled.
pub async fn bootstrap(
    cfg: &Config,
    ledger: &Handle,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<Option<String>> {
    read_journal(ledger, stop).await?;
    seed(cfg, ledger).await
}

/// Fold the journal as it is now. A broker that has just created the journal's
/// topic may not serve it for a moment (no leader yet): waited out, never taken for
/// an empty journal. A journal whose first records are gone ends the start: folding
/// the rest would forget users, approvals and what was notified, and mint a second
/// admin token.
pub async fn read_journal(ledger: &Handle, stop: &mut watch::Receiver<bool>) -> anyhow::Result<()> {
    let read = portwatch_projector::retry("reading the journal", stop, || async {
        match ledger.catch_up().await {
            Err(e) if !e.is_retryable() => Ok(Err(e)),
            other => other.map(Ok),
        }
    })
    .await;
    match read {
        None => anyhow::bail!("stopped before the journal could be read"),
        Some(Err(e)) => Err(anyhow::Error::from(e).context("reading the journal of decisions")),
        Some(Ok(_)) => Ok(()),
    }
}

/// Follow the journal every second while `leading` is false, until `stop`: a
/// standby control instance serves what the leader and the other instances decided
/// (the leader's notifier follows it at every pass).
pub async fn follow_journal(ledger: Handle, leading: watch::Receiver<bool>, mut stop: watch::Receiver<bool>) {
    loop {
        if !*leading.borrow() {
            if let Err(e) = ledger.catch_up().await {
                tracing::warn!(error = %e, "cannot read the journal of decisions; retrying");
            }
        }
        if !portwatch_projector::pause(&mut stop, std::time::Duration::from_secs(1)).await {
            return;
        }
    }
}

/// What the one deciding process records first (the embedded process; the leading
/// control instance, at each term): the allow-list's approvals not on record yet;
/// and, when no user is on record, the admin's first token, returned to be shown
/// once (only its hash is journalled).
pub async fn seed(cfg: &Config, ledger: &Handle) -> anyhow::Result<Option<String>> {
    let seeds: Vec<Decision> = {
        let state = ledger.read();
        let now = chrono::Utc::now();
        cfg.alerts
            .allow
            .iter()
            .filter(|r| !state.ledger().approvals().contains_key(&r.approval_id))
            .flat_map(|r| {
                [
                    Decision::new(now, ALLOW_LIST, DecisionKind::ApprovalRequested(r.clone())),
                    Decision::new(
                        now,
                        ALLOW_LIST,
                        DecisionKind::ApprovalGranted {
                            approval_id: r.approval_id.clone(),
                            bound: Vec::new(),
                            note: Some("seeded from the allow-list".into()),
                        },
                    ),
                ]
            })
            .collect()
    };
    if !seeds.is_empty() {
        tracing::info!(approvals = seeds.len() / 2, "allow-list approvals granted");
        ledger.record(seeds).await?;
    }
    let empty = ledger.read().ledger().users().is_empty();
    if !empty {
        return Ok(None);
    }
    let issued = portwatch_ledger::tokens::issue(
        None,
        "admin",
        Some(portwatch_projections::Role::Admin),
        &portwatch_projections::Actor::system("portwatch"),
    )?;
    ledger.record(issued.decisions).await?;
    tracing::info!(user = "admin", token = %issued.id, "first start: admin token issued");
    Ok(Some(issued.token))
}

/// Who grants the allow-list's approvals, in the journal.
pub const ALLOW_LIST: &str = "allow-list";

/// Keep the first admin token in `<data>/admin-token`, readable by this account only
/// (0600), and show it on stdout; never in the log. Services started without a
/// terminal find it in the file; delete the file once the token is stored elsewhere.
pub fn show_first_token(
    token: &str,
    listen: std::net::SocketAddr,
    data: &std::path::Path,
) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(data)
        .map_err(|e| anyhow::anyhow!("store.path: cannot create {}: {e}", data.display()))?;
    let path = data.join("admin-token");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    // A file made earlier by someone else keeps its mode on open: set it.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    writeln!(file, "{token}")?;
    file.sync_all()?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "\nportwatch: first start. The admin's API token, shown this once (only its hash is kept; also in {}, mode 0600):\n\n    {token}\n\nUse it as `Authorization: Bearer <token>` on http://{listen}/api/v1/ ; make more with\n`portwatch token create --user NAME --role viewer|operator|approver|admin`.\n",
        path.display()
    );
    let _ = out.flush();
    tracing::info!(path = %path.display(), "first admin token written (mode 0600)");
    Ok(())
}
