//! The control plane's lease: which of several `control` instances leads.
//!
//! Every instance joins one consumer group on a one-partition topic (the journal of
//! decisions, which every control instance reads anyway and which has exactly one
//! partition): the group coordinator gives that partition to one member at a time,
//! and the member that holds it leads. A leader that dies stops heartbeating and
//! the coordinator hands the partition to a standby once `session.timeout.ms` has
//! passed; one that stops cleanly leaves the group and hands it over at once.
//! Assignment is cooperative-sticky, so an instance joining later does not take
//! the partition from a leader that still holds it.
//!
//! Librdkafka revokes a partition (as "lost") when its member has not reached the
//! coordinator for the session timeout, so a leader cut off from the brokers steps
//! down on its own, at about the time the coordinator moves the partition on.
//!
//! The member reads nothing it needs: it starts at the end of the topic and
//! discards what arrives (the journal itself is read through [`super::KafkaJournal`]).

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::ClientContext;
use tokio::sync::watch;

use super::{kafka_err, KafkaSettings};
use crate::LogError;

struct Ctx {
    held: watch::Sender<bool>,
    topic: String,
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            if tpl
                .elements_for_topic(&self.topic)
                .iter()
                .any(|e| e.partition() == 0)
            {
                tracing::info!(topic = %self.topic, "control lease revoked: this instance stops leading");
                self.held.send_replace(false);
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl)
                if tpl
                    .elements_for_topic(&self.topic)
                    .iter()
                    .any(|e| e.partition() == 0) =>
            {
                tracing::info!(topic = %self.topic, "control lease assigned: this instance leads");
                self.held.send_replace(true);
            }
            Rebalance::Error(err) => {
                tracing::warn!(error = %err, "control lease rebalance failed; stepping down until assigned");
                self.held.send_replace(false);
            }
            _ => {}
        }
    }
}

/// One instance's membership in the lease group.
pub struct Lease {
    consumer: StreamConsumer<Ctx>,
    held: watch::Receiver<bool>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("held", &*self.held.borrow())
            .finish_non_exhaustive()
    }
}

impl Lease {
    /// Join `group` on `settings`' decisions topic; a dead member's lease moves on
    /// after `session_timeout` (at least the broker's
    /// `group.min.session.timeout.ms`, 6 s by default).
    pub fn join(settings: &KafkaSettings, group: &str, session_timeout: Duration) -> Result<Self, LogError> {
        let (tx, held) = watch::channel(false);
        let topic = settings.topics.decisions.clone();
        let mut cfg = settings.consumer_config(group);
        let session_ms = session_timeout.as_millis().max(1);
        let heartbeat_ms = (session_ms / 6).max(100);
        cfg.set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", session_ms.to_string())
            .set("heartbeat.interval.ms", heartbeat_ms.to_string())
            .set("auto.offset.reset", "latest")
            .set("enable.auto.commit", "false");
        let consumer: StreamConsumer<Ctx> = cfg
            .create_with_context(Ctx {
                held: tx,
                topic: topic.clone(),
            })
            .map_err(|e| kafka_err("creating the control lease's consumer", e))?;
        consumer
            .subscribe(&[&topic])
            .map_err(|e| kafka_err(&format!("joining the control lease on {topic}"), e))?;
        Ok(Self { consumer, held })
    }

    /// Whether this instance leads, now and as it changes.
    pub fn held(&self) -> watch::Receiver<bool> {
        self.held.clone()
    }

    /// Take part in the group until `stop` is set (the rebalance callbacks run
    /// while the member polls), then leave it, handing the lease over at once.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            let failed = tokio::select! {
                polled = self.consumer.recv() => polled.err(),
                _ = stop.wait_for(|s| *s) => break,
            };
            if let Some(err) = failed {
                tracing::debug!(error = %err, "control lease consumer");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        // Leaving the group (unsubscribe, then close on drop) moves the partition
        // to a standby without waiting for the session to time out.
        self.consumer.context().held.send_replace(false);
        self.consumer.unsubscribe();
    }
}
