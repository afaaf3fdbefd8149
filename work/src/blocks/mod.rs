//! The controller of active control, the same in both deployments: it follows the
//! blocks in the journal and does what is due with the configured driver: applies
//! confirmed blocks (dry-run by default), ends them when their time is up, removes
//! their rules, and records the probes' verification (the port seen closed).

pub mod drivers;
pub mod nftables;
mod settings;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use portwatch_ledger::Handle;
use portwatch_projections::blocks::{due, BlockAction, BlockState};
use portwatch_projections::bounds::Bounds;
use portwatch_projections::Applied;
use portwatch_projections::{Assets, Decision, DecisionKind};
use portwatch_stores::ReadModel;
use portwatch_stores::{PageRequest, PortQuery};
use tokio::sync::watch;

pub use settings::{ControlDriver, ControlSettings, ProtectEntry};

/// Who acts for the controller in the journal.
pub const CONTROLLER: &str = "controller";

/// How long a failed apply waits before the next try.
const RETRY: Duration = Duration::from_secs(30);

/// What the controller checks blocks against at apply time.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The limits of blocks (with the protected ports).
    pub bounds: Arc<Bounds>,
    /// The assets: only their addresses may be blocked.
    pub assets: Arc<Assets>,
}

/// Run until `stop`.
pub async fn run(
    settings: ControlSettings,
    limits: Limits,
    ledger: Handle,
    read: Arc<dyn ReadModel>,
    mut stop: watch::Receiver<bool>,
) {
    let driver = match drivers::Driver::new(&settings) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "block controller not started");
            return;
        }
    };
    let mut failed_at: HashMap<String, Instant> = HashMap::new();
    loop {
        let controller = Controller {
            settings: &settings,
            limits: &limits,
            driver: &driver,
        };
        if let Err(e) = controller.pass(&ledger, &read, &mut failed_at).await {
            tracing::warn!(error = %e, "block controller pass failed; next one in a second");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// What one pass works with.
struct Controller<'a> {
    settings: &'a ControlSettings,
    limits: &'a Limits,
    driver: &'a drivers::Driver,
}

impl Controller<'_> {
    async fn pass(
        &self,
        ledger: &Handle,
        read: &Arc<dyn ReadModel>,
        failed_at: &mut HashMap<String, Instant>,
    ) -> Result<(), String> {
        let (settings, driver) = (self.settings, self.driver);
        // Blocks with something left to do (not waiting for a second person, not over).
        let blocks: Vec<_> = {
            ledger
                .read()
                .ledger()
                .blocks()
                .values()
                .filter(|b| !matches!(b.state(), BlockState::Proposed | BlockState::RolledBack))
                .cloned()
                .collect()
        };
        if blocks.is_empty() {
            return Ok(());
        }
        // The rows of the ports of blocks in force, to see them closed.
        let mut rows = Vec::new();
        for b in blocks.iter().filter(|b| b.state() == BlockState::Active) {
            let query = PortQuery {
                ip: Some(b.request.ip),
                ..PortQuery::default()
            };
            let page = read
                .ports(&query, &PageRequest::all())
                .await
                .map_err(|e| e.to_string())?;
            rows.extend(page.items);
        }
        let now = Utc::now();
        for action in due(blocks.iter(), &rows, now) {
            let decision = match action {
                BlockAction::Apply(req) => {
                    if failed_at.get(&req.block_id).is_some_and(|t| t.elapsed() < RETRY) {
                        continue;
                    }
                    // Everything the API checked, again: the records may have reached
                    // the journal some other way.
                    let refused = {
                        let s = ledger.read();
                        let on_record = s.ledger();
                        match on_record.blocks().get(&req.block_id) {
                            Some(b) => on_record
                                .check_block(b, &self.limits.bounds, &self.limits.assets)
                                .err()
                                .map(|e| e.to_string()),
                            None => Some("not on record".to_string()),
                        }
                    };
                    if let Some(why) = refused {
                        tracing::error!(block = %req.block_id, ip = %req.ip, port = req.port, why = %why, "block refused at apply time; ending it unapplied");
                        metrics::counter!("portwatch_blocks_refused_total").increment(1);
                        let decision = DecisionKind::BlockEnding {
                            block_id: req.block_id.clone(),
                            why: format!("refused at apply time: {why}"),
                        };
                        ledger
                            .record(vec![Decision::new(now, CONTROLLER, decision)])
                            .await
                            .map_err(|e| e.to_string())?;
                        continue;
                    }
                    let dry_run = settings.dry_run;
                    match driver.apply(&req, dry_run).await {
                        Ok(rules) => {
                            tracing::info!(block = %req.block_id, ip = %req.ip, port = req.port, dry_run, "block applied");
                            DecisionKind::BlockApplied {
                                block_id: req.block_id.clone(),
                                applied: Applied {
                                    applied_at: now,
                                    expires_at: now + chrono::Duration::seconds(req.duration_secs as i64),
                                    dry_run,
                                    rules,
                                },
                            }
                        }
                        Err(error) => {
                            tracing::warn!(block = %req.block_id, error = %error, "block not applied; retrying");
                            failed_at.insert(req.block_id.clone(), Instant::now());
                            DecisionKind::BlockFailed {
                                block_id: req.block_id.clone(),
                                error,
                            }
                        }
                    }
                }
                BlockAction::Expire(id) => DecisionKind::BlockEnding {
                    block_id: id,
                    why: "expired".into(),
                },
                BlockAction::Remove(req, dry_run) => {
                    if !dry_run {
                        driver.remove(&req).await?;
                    }
                    tracing::info!(block = %req.block_id, "block removed");
                    DecisionKind::BlockRemoved {
                        block_id: req.block_id,
                    }
                }
                BlockAction::Verify(id) => {
                    tracing::info!(block = %id, "block verified: the port is seen closed");
                    DecisionKind::BlockVerified { block_id: id }
                }
            };
            ledger
                .record(vec![Decision::new(now, CONTROLLER, decision)])
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
