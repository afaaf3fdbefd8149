//! The notifier: the notification policy and delivery, run against a journal.
//!
//! One loop decides: it folds the journal (decisions made before, by this process or
//! an earlier one), takes in every alert of the read model, asks the policy what is
//! due and journals that before it counts. One worker per channel delivers: it walks
//! the decided notifications its route takes, from the first it has not finished (its
//! cursor, re-derived from the journal on start), sends those that are due (a failed
//! one waits out a backoff counted from its last journalled attempt) and journals
//! every attempt. A failing channel only delays itself; a restart resumes every
//! channel where its journal says; a notification is sent again only if the process
//! died between sending and journalling, and then with the same idempotency key.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use portwatch_ingest::LogError;
use portwatch_ledger::Handle;
use portwatch_projections::{
    Alert, Assets, AttemptOutcome, Decision, DecisionKind, DeliveryAttempt, Notification, PortRow, PortState,
    Tick,
};
use portwatch_stores::{AlertQuery, IpRange, PageRequest, PortQuery, ReadError, ReadModel};
use tokio::sync::{mpsc, watch, Notify};

use crate::deliver::{Channel, Senders};
use crate::NotifyError;

/// How often the notifier decides and how long deliveries are tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    /// Spacing of decisions (and of delivery passes when nothing wakes them).
    pub tick: Duration,
    /// Wait after the first failed attempt; doubled per attempt.
    pub retry_initial: Duration,
    /// Longest wait between attempts.
    pub retry_max: Duration,
    /// A notification not delivered this long after it was decided is given up.
    pub give_up_after: Duration,
    /// With a feed of new alerts, every alert is read from the store only this
    /// often (and at start): a safety net for a feed that missed some.
    pub full_reload: Duration,
    /// The owners of approved exposures are warned this long before the approval
    /// expires.
    pub warn_before: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(1),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            give_up_after: Duration::from_secs(24 * 3600),
            full_reload: Duration::from_secs(300),
            warn_before: Duration::from_secs(3 * 24 * 3600),
        }
    }
}

/// The wait before attempt `n + 1` after `n` failed attempts.
pub fn backoff(timing: &Timing, failed: u32) -> Duration {
    let factor = 2u32.saturating_pow(failed.saturating_sub(1));
    timing.retry_initial.saturating_mul(factor).min(timing.retry_max)
}

/// The notifier of one deployment: it follows the journal (so the API sees
/// decisions made elsewhere: tokens issued from the command line) and, with
/// channels configured, decides and delivers.
pub struct Service {
    ledger: Handle,
    read: Arc<dyn ReadModel>,
    assets: Arc<Assets>,
    channels: Vec<Arc<Channel>>,
    senders: Senders,
    timing: Timing,
    decided: Arc<Notify>,
    feed: Option<mpsc::UnboundedReceiver<Vec<Alert>>>,
    last_full: Option<std::time::Instant>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field(
                "channels",
                &self.channels.iter().map(|c| &c.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Service {
    /// A notifier deciding through `ledger` (whose state the API reads for
    /// deliveries) about the alerts of `read`, delivering over `channels` with
    /// `senders` (made from the same channels by [`Senders::new`], once per process:
    /// a control instance builds a notifier at every term it leads).
    pub fn new(
        ledger: Handle,
        read: Arc<dyn ReadModel>,
        assets: Arc<Assets>,
        channels: Vec<Channel>,
        senders: Senders,
        timing: Timing,
    ) -> Self {
        Self {
            ledger,
            read,
            assets,
            senders,
            channels: channels.into_iter().map(Arc::new).collect(),
            timing,
            decided: Arc::new(Notify::new()),
            feed: None,
            last_full: None,
        }
    }

    /// New alerts as they are written (the projector's outlet): then the store is
    /// read in full only at start and every `full_reload`, not at every tick.
    pub fn with_feed(mut self, feed: mpsc::UnboundedReceiver<Vec<Alert>>) -> Self {
        self.feed = Some(feed);
        self
    }

    /// The alerts to take in now: everything the store holds when due (or without a
    /// feed), else what the feed brought since the last pass.
    async fn new_alerts(&mut self) -> Result<Vec<Alert>, ReadError> {
        let mut alerts = Vec::new();
        if let Some(feed) = &mut self.feed {
            while let Ok(batch) = feed.try_recv() {
                alerts.extend(batch);
            }
        }
        let full_due = self.feed.is_none()
            || self
                .last_full
                .is_none_or(|at| at.elapsed() >= self.timing.full_reload);
        if full_due {
            alerts = self
                .read
                .alerts(&AlertQuery::default(), &PageRequest::all())
                .await?
                .items;
            self.last_full = Some(std::time::Instant::now());
        }
        Ok(alerts)
    }

    /// Fold what the journal holds beyond what was folded.
    async fn follow(&mut self) -> Result<(), LogError> {
        self.ledger.catch_up().await?;
        Ok(())
    }

    /// Decide and deliver until `stop` is set.
    pub async fn run(mut self, stop: watch::Receiver<bool>) {
        let mut workers = Vec::new();
        for channel in &self.channels {
            let worker = Worker {
                channel: channel.clone(),
                ledger: self.ledger.clone(),
                senders: self.senders.clone(),
                timing: self.timing.clone(),
                decided: self.decided.clone(),
                cursor: 0,
            };
            workers.push(tokio::spawn(worker.run(stop.clone())));
        }
        let mut stop_rx = stop.clone();
        let mut ready = false;
        loop {
            if *stop_rx.borrow() {
                break;
            }
            match self.decide(ready).await {
                Ok(()) => ready = true,
                Err(e) => tracing::warn!(error = %e, "notifier pass failed; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.timing.tick) => {}
                _ = stop_rx.wait_for(|s| *s) => break,
            }
        }
        for w in workers {
            let _ = w.await;
        }
    }

    async fn decide(&mut self, ready: bool) -> Result<(), NotifyError> {
        self.follow().await?;
        if self.channels.is_empty() {
            return Ok(());
        }
        if !ready {
            let state = self.ledger.read();
            tracing::info!(
                decisions = state.ledger().decisions(),
                notifications = state.ledger().notifications().len(),
                "notifier resumed from the journal"
            );
        }
        let alerts = self.new_alerts().await?;
        {
            let mut state = self.ledger.write();
            for a in &alerts {
                state.observe(a);
            }
        }
        // The open ports the approvals in force cover, to check what they serve.
        let now = Utc::now();
        let nets: Vec<ipnet::IpNet> = {
            let state = self.ledger.read();
            let mut nets: Vec<ipnet::IpNet> = state
                .ledger()
                .approvals()
                .values()
                .filter(|a| a.decision.as_ref().is_some_and(|d| d.granted) && !a.expired)
                .map(|a| a.request.net)
                .collect();
            nets.sort();
            nets.dedup();
            nets
        };
        let rows = if nets.is_empty() {
            Vec::new()
        } else {
            let query = PortQuery {
                state: Some(PortState::Open),
                within: Some(
                    nets.iter()
                        .map(|n| IpRange {
                            lo: n.network(),
                            hi: n.broadcast(),
                        })
                        .collect(),
                ),
                ..PortQuery::default()
            };
            self.read.ports(&query, &PageRequest::all()).await?.items
        };
        let by_port: std::collections::HashMap<(std::net::IpAddr, portwatch_events::Proto, u16), &PortRow> =
            rows.iter().map(|r| ((r.ip, r.proto, r.port), r)).collect();
        let decisions = {
            let state = self.ledger.read();
            let ledger = state.ledger();
            let suppressed = |a: &Alert| {
                by_port.get(&(a.ip, a.proto, a.port)).is_some_and(|r| {
                    portwatch_projections::approvals::approved(ledger.approvals().values(), r).is_some()
                })
            };
            let mut decisions = state.plan(&Tick {
                now,
                assets: &self.assets,
                suppressed: &suppressed,
            });
            decisions.extend(portwatch_projections::lapses::plan(
                ledger,
                &rows,
                now,
                chrono::Duration::from_std(self.timing.warn_before).unwrap_or(chrono::Duration::MAX),
                &self.assets,
            ));
            decisions
        };
        if decisions.is_empty() {
            return Ok(());
        }
        let notified = decisions
            .iter()
            .filter(|d| matches!(d.what, DecisionKind::Notified { .. }))
            .count();
        metrics::counter!("portwatch_notifications_total").increment(notified as u64);
        self.ledger.record(decisions).await?;
        self.decided.notify_waiters();
        Ok(())
    }
}

/// What one delivery pass over a channel is to do.
#[derive(Debug, Default, PartialEq)]
pub struct Planned {
    /// Notifications to send now, with the number of the attempt.
    pub due: Vec<(Notification, u32)>,
    /// Notifications never attempted here and too old to send (given up unsent).
    pub stale: Vec<Notification>,
    /// The wait until the next attempt falls due (at most one tick).
    pub next: Duration,
}

/// The deliveries `channel` owes at `now`, walking `records` from `cursor` (moved
/// past every notification this channel has finished with: not routed here,
/// delivered or given up). A failed one is due again a backoff after its last
/// attempt; one never attempted and older than `give_up_after` is stale.
pub fn plan_deliveries(
    records: &[portwatch_projections::NotificationRecord],
    channel: &Channel,
    cursor: &mut usize,
    now: chrono::DateTime<Utc>,
    timing: &Timing,
) -> Planned {
    let name = &channel.name;
    let finished = |r: &portwatch_projections::NotificationRecord| {
        !channel.route.matches(&r.notification)
            || r.deliveries
                .get(name)
                .is_some_and(|d| d.outcome != AttemptOutcome::Failed)
    };
    while *cursor < records.len() && finished(&records[*cursor]) {
        *cursor += 1;
    }
    let give_up = chrono::Duration::from_std(timing.give_up_after).unwrap_or(chrono::Duration::MAX);
    let mut planned = Planned {
        next: timing.tick,
        ..Planned::default()
    };
    for r in records.get(*cursor..).unwrap_or_default() {
        if finished(r) {
            continue;
        }
        match r.deliveries.get(name) {
            None if now - r.notification.at > give_up => planned.stale.push(r.notification.clone()),
            None => planned.due.push((r.notification.clone(), 1)),
            Some(d) => {
                let wait = backoff(timing, d.attempts);
                let at = d.last_at + chrono::Duration::from_std(wait).unwrap_or_default();
                if at <= now {
                    planned.due.push((r.notification.clone(), d.attempts + 1));
                } else {
                    planned.next = planned.next.min((at - now).to_std().unwrap_or_default());
                }
            }
        }
    }
    planned
}

/// One channel's deliveries.
struct Worker {
    channel: Arc<Channel>,
    ledger: Handle,
    senders: Senders,
    timing: Timing,
    decided: Arc<Notify>,
    /// Notifications before this index are finished for this channel.
    cursor: usize,
}

impl Worker {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let wait = self.pass(&mut stop).await;
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.decided.notified() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Deliver what is due; the wait until something may be due again.
    async fn pass(&mut self, stop: &mut watch::Receiver<bool>) -> Duration {
        let now = Utc::now();
        let Planned { due, stale, mut next } = {
            let state = self.ledger.read();
            plan_deliveries(
                state.ledger().notifications(),
                &self.channel,
                &mut self.cursor,
                now,
                &self.timing,
            )
        };
        for n in stale {
            // Decided long before this channel could take it (added later, or
            // portwatch was down for a day): on the record as not sent, not paged now.
            let decision = Decision::new(
                now,
                &format!("channel:{}", self.channel.name),
                DecisionKind::Delivery(DeliveryAttempt {
                    notification: n.id.clone(),
                    channel: self.channel.name.clone(),
                    attempt: 1,
                    outcome: AttemptOutcome::GaveUp,
                    status: None,
                    error: Some(format!(
                        "not sent: decided at {} and not attempted within {:?}",
                        n.at.to_rfc3339(),
                        self.timing.give_up_after
                    )),
                    millis: 0,
                }),
            );
            if let Err(e) = self.ledger.record(vec![decision]).await {
                tracing::warn!(error = %e, "could not journal a stale notification; next pass");
            }
        }
        metrics::gauge!("portwatch_deliveries_pending", "channel" => self.channel.name.clone())
            .set(due.len() as f64);
        for (n, attempt) in due {
            if *stop.borrow() {
                break;
            }
            let sent = self.senders.send(&self.channel, &n).await;
            let too_old = (Utc::now() - n.at).to_std().unwrap_or_default() >= self.timing.give_up_after;
            let outcome = match (sent.ok, too_old) {
                (true, _) => AttemptOutcome::Delivered,
                (false, false) => AttemptOutcome::Failed,
                (false, true) => AttemptOutcome::GaveUp,
            };
            let channel = self.channel.name.clone();
            metrics::counter!("portwatch_deliveries_total", "channel" => channel.clone(), "outcome" => outcome.as_str())
                .increment(1);
            metrics::histogram!("portwatch_delivery_seconds", "channel" => channel.clone())
                .record(sent.elapsed.as_secs_f64());
            match outcome {
                AttemptOutcome::Delivered => {
                    tracing::info!(channel = %channel, notification = %n.id, attempt, status = ?sent.status, "delivered")
                }
                _ => tracing::warn!(
                    channel = %channel, notification = %n.id, attempt, status = ?sent.status,
                    error = sent.error.as_deref().unwrap_or(""), outcome = outcome.as_str(), "delivery failed"
                ),
            }
            let decision = Decision::new(
                Utc::now(),
                &format!("channel:{channel}"),
                DecisionKind::Delivery(DeliveryAttempt {
                    notification: n.id.clone(),
                    channel,
                    attempt,
                    outcome,
                    status: sent.status,
                    error: sent.error,
                    millis: u64::try_from(sent.elapsed.as_millis()).unwrap_or(u64::MAX),
                }),
            );
            // Journalling is retried until it holds: the attempt happened.
            let mut delay = Duration::from_millis(200);
            while let Err(e) = self.ledger.record(vec![decision.clone()]).await {
                tracing::warn!(error = %e, "delivery attempt not journalled yet; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.wait_for(|s| *s) => return Duration::ZERO,
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            if outcome == AttemptOutcome::Failed {
                next = next.min(backoff(&self.timing, attempt));
            }
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use portwatch_projections::{AssetMatch, NotificationKind, NotificationRecord, Severity};

    use super::*;
    use crate::kinds::webhook::Webhook;
    use crate::kinds::HttpChannel;
    use crate::Route;

    fn at(s: i64) -> chrono::DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).single().expect("ts")
    }

    fn record(
        id: &str,
        severity: Severity,
        decided: i64,
        attempts: Option<(u32, AttemptOutcome, i64)>,
    ) -> NotificationRecord {
        let mut deliveries = std::collections::BTreeMap::new();
        if let Some((attempts, outcome, last)) = attempts {
            deliveries.insert(
                "soc".to_string(),
                portwatch_projections::DeliveryState {
                    channel: "soc".into(),
                    attempts,
                    outcome,
                    last_at: at(last),
                    last_status: None,
                    last_error: None,
                },
            );
        }
        NotificationRecord {
            notification: Notification {
                id: id.into(),
                kind: NotificationKind::Firing,
                ip: "203.0.113.7".parse().expect("ip"),
                severity,
                asset: AssetMatch::default(),
                alerts: Vec::new(),
                at: at(decided),
            },
            deliveries,
        }
    }

    #[test]
    fn a_pass_sends_what_is_due_waits_out_backoffs_and_skips_what_is_done_or_stale() {
        let channel = Channel {
            name: "soc".into(),
            route: Route {
                min_severity: Severity::High,
                ..Route::default()
            },
            sender: Arc::new(HttpChannel {
                robot: Webhook,
                url: "http://127.0.0.1:9/".into(),
                secret: None,
            }),
            timeout: Duration::from_secs(1),
            ca_pem: None,
        };
        let timing = Timing::default();
        let now = at(100_000);
        let records = vec![
            record(
                "delivered",
                Severity::High,
                0,
                Some((1, AttemptOutcome::Delivered, 1)),
            ),
            record("medium, not routed here", Severity::Medium, 99_990, None),
            record(
                "failed twice, backoff over",
                Severity::High,
                99_000,
                Some((2, AttemptOutcome::Failed, 99_990)),
            ),
            record(
                "failed three times, waiting",
                Severity::High,
                99_000,
                Some((3, AttemptOutcome::Failed, 99_998)),
            ),
            record("new", Severity::High, 99_999, None),
            record("a day old, never tried", Severity::High, 0, None),
        ];
        let mut cursor = 0;
        let planned = plan_deliveries(&records, &channel, &mut cursor, now, &timing);
        let due: Vec<(&str, u32)> = planned.due.iter().map(|(n, a)| (n.id.as_str(), *a)).collect();
        assert_eq!(due, [("failed twice, backoff over", 3), ("new", 1)]);
        assert_eq!(planned.stale.len(), 1);
        assert_eq!(planned.stale[0].id, "a day old, never tried");
        // Third failure at 99_998: the fourth attempt waits 4 s, so 2 s from now.
        assert_eq!(planned.next, Duration::from_secs(1), "at most one tick");
        assert_eq!(cursor, 2, "past the delivered and the unrouted");
    }

    #[test]
    fn backoff_doubles_from_the_initial_wait_up_to_the_cap() {
        let t = Timing {
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(10),
            ..Timing::default()
        };
        let waits: Vec<u64> = (1..=6).map(|n| backoff(&t, n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff(&t, 0), Duration::from_secs(1));
    }
}
