//! The observations topic read by a consumer group of projectors.
//!
//! Instances of one group share the topic's partitions; librdkafka tells each which
//! it owns through rebalance callbacks, recorded here so that the projector can
//! drop the state of a partition it lost and reload the state of one it gained.
//! Rebalances are cooperative (incremental): a member keeps the partitions that do
//! not move, with their state.
//! Records that do not decode go to the dead-letter topic with the reason in a
//! header (`portwatch-error`) and their origin (`portwatch-source`).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use portwatch_events::Event;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset as KOffset, TopicPartitionList};

use super::{kafka_err, KafkaSettings};
use crate::reader::{LogRecord, PartitionedReader, Polled};
use crate::{LogError, Offset};

/// The librdkafka setting of how a group's partitions are assigned.
const ASSIGNMENT: &str = "partition.assignment.strategy";

#[derive(Default)]
struct Rebalances {
    /// Partitions taken away since the last poll.
    revoked: Mutex<BTreeSet<i32>>,
    /// The current assignment.
    owned: Mutex<BTreeSet<i32>>,
    /// Partitions assigned since their state was last loaded.
    fresh: Mutex<BTreeSet<i32>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned set of partition numbers is still a set of partition numbers.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Ctx {
    rebalances: Arc<Rebalances>,
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut revoked = locked(&self.rebalances.revoked);
            let mut owned = locked(&self.rebalances.owned);
            for el in tpl.elements() {
                revoked.insert(el.partition());
                owned.remove(&el.partition());
            }
            tracing::info!(partitions = ?revoked, "partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            locked(&self.rebalances.owned).extend(parts.iter().copied());
            locked(&self.rebalances.fresh).extend(parts.iter().copied());
            tracing::info!(partitions = ?parts, "partitions assigned");
        }
    }
}

/// One member of a projector consumer group on the observations topic.
pub struct GroupReader {
    consumer: StreamConsumer<Ctx>,
    producer: FutureProducer,
    rebalances: Arc<Rebalances>,
    topic: String,
    dead_letter: String,
}

impl std::fmt::Debug for GroupReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupReader")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl GroupReader {
    /// Join `group` on the observations topic of `settings`.
    pub fn join(settings: &KafkaSettings, group: &str, timeout: Duration) -> Result<Self, LogError> {
        let rebalances = Arc::new(Rebalances::default());
        let mut cfg = settings.consumer_config(group);
        if !settings.consumer.contains_key(ASSIGNMENT) {
            // A member joining or leaving moves only the partitions that must move;
            // the others keep folding, and only the moved ones reload their state.
            cfg.set(ASSIGNMENT, "cooperative-sticky");
        }
        let consumer: StreamConsumer<Ctx> = cfg
            .create_with_context(Ctx {
                rebalances: rebalances.clone(),
            })
            .map_err(|e| kafka_err("creating consumer", e))?;
        consumer
            .subscribe(&[&settings.topics.observations])
            .map_err(|e| kafka_err("subscribing", e))?;
        let producer: FutureProducer = settings
            .producer_config(timeout)
            .create()
            .map_err(|e| kafka_err("creating producer", e))?;
        Ok(Self {
            consumer,
            producer,
            rebalances,
            topic: settings.topics.observations.clone(),
            dead_letter: settings.topics.dead_letter.clone(),
        })
    }

    fn owns(&self, partition: i32) -> bool {
        locked(&self.rebalances.owned).contains(&partition)
    }
}

impl PartitionedReader for GroupReader {
    fn poll(&mut self, max: usize, wait: Duration) -> BoxFuture<'_, Polled> {
        async move {
            let deadline = tokio::time::Instant::now() + wait;
            let mut records = Vec::new();
            while records.len() < max {
                let msg = match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                    Err(_elapsed) => break,
                    Ok(Err(err)) => {
                        tracing::warn!(error = %err, "consumer error");
                        break;
                    }
                    Ok(Ok(msg)) => msg.detach(),
                };
                if !self.owns(msg.partition()) {
                    // Fetched before the partition was revoked: its new owner folds it.
                    continue;
                }
                let body = String::from_utf8_lossy(msg.payload().unwrap_or_default()).into_owned();
                records.push(LogRecord {
                    key: String::from_utf8_lossy(msg.key().unwrap_or_default()).into_owned(),
                    partition: msg.partition().max(0) as u32,
                    offset: msg.offset().max(0) as u64,
                    event: Event::from_json(&body),
                    body,
                    produced_ms: msg.timestamp().to_millis(),
                });
                // Stop at a rebalance, so the projector sees it at a batch boundary.
                if !locked(&self.rebalances.revoked).is_empty() {
                    break;
                }
            }
            let revoked = std::mem::take(&mut *locked(&self.rebalances.revoked))
                .into_iter()
                .map(|p| p.max(0) as u32)
                .collect();
            Polled { records, revoked }
        }
        .boxed()
    }

    fn take_fresh(&mut self, partition: u32) -> bool {
        locked(&self.rebalances.fresh).remove(&(partition as i32))
    }

    fn seek(&mut self, partition: u32, offset: Offset) {
        if let Err(err) = self.consumer.seek(
            &self.topic,
            partition as i32,
            KOffset::Offset(offset as i64),
            Duration::from_secs(10),
        ) {
            tracing::warn!(partition, error = %err, "seek failed; will try again");
        }
    }

    fn reject<'a>(&'a mut self, record: &'a LogRecord, reason: &'a str) -> BoxFuture<'a, ()> {
        async move {
            metrics::counter!("portwatch_projector_dead_letters_total").increment(1);
            tracing::error!(partition = record.partition, offset = record.offset, error = reason, "undecodable record; sending it to the dead-letter topic");
            let source = format!("{}/{}/{}", self.topic, record.partition, record.offset);
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "portwatch-error",
                    value: Some(reason),
                })
                .insert(Header {
                    key: "portwatch-source",
                    value: Some(&source),
                });
            // Under its original key: one host's dead letters stay in order.
            let mut delay = Duration::from_millis(200);
            for attempt in 1..=10 {
                let sent = self
                    .producer
                    .send(
                        FutureRecord::to(&self.dead_letter)
                            .key(&record.key)
                            .payload(&record.body)
                            .headers(headers.clone()),
                        Duration::from_secs(10),
                    )
                    .await;
                match sent {
                    Ok(_) => return,
                    Err((err, _)) => {
                        tracing::warn!(attempt, error = %err, "dead-letter produce failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
            tracing::error!(source = %source, "dead letter not delivered after 10 attempts; the record stays in its topic");
        }
        .boxed()
    }

    fn committed(&mut self, offsets: &[(u32, Offset)]) {
        let mut tpl = TopicPartitionList::new();
        for &(partition, next) in offsets {
            let _ = tpl.add_partition_offset(&self.topic, partition as i32, KOffset::Offset(next as i64));
        }
        if tpl.count() > 0 {
            // Informational (lag tools); the checkpoint in the store is what counts.
            if let Err(err) = self.consumer.commit(&tpl, CommitMode::Async) {
                tracing::debug!(error = %err, "kafka offset commit failed (informational only)");
            }
        }
    }

    fn contiguous(&self) -> bool {
        true
    }

    fn gap(&self, partition: u32, next: Offset) -> Result<Option<LogError>, LogError> {
        let p = i32::try_from(partition).unwrap_or(i32::MAX);
        let (low, _high) = self
            .consumer
            .fetch_watermarks(&self.topic, p, Duration::from_secs(10))
            .map_err(|e| {
                kafka_err(
                    &format!("fetching the watermarks of {} partition {partition}", self.topic),
                    e,
                )
            })?;
        let start = u64::try_from(low).unwrap_or(0);
        Ok((start > next).then(|| LogError::Gap {
            topic: format!("{} partition {partition}", self.topic),
            next,
            start,
        }))
    }
}
