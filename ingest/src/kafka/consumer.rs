//! Following one topic as a member of a consumer group, for the roles that take
//! work or status from Kafka: probe nodes take their zone's jobs, the control plane
//! follows heartbeats and job results.

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset as KOffset, TopicPartitionList};

use super::{kafka_err, KafkaSettings};
use crate::LogError;

/// How a follower acknowledges what it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// The caller commits each record once its work is done ([`TopicConsumer::commit`]):
    /// a member that dies first leaves the record to the group's next member.
    Manual,
    /// Offsets are committed in the background (status streams, where a record read
    /// twice or lost in a crash is replaced by the next one anyway).
    Auto,
}

/// One record taken from the topic.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Its payload, lossily decoded.
    pub payload: String,
    /// Its key.
    pub key: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// A member of a consumer group on one topic.
pub struct TopicConsumer {
    consumer: StreamConsumer,
    topic: String,
    acks: Acks,
}

impl std::fmt::Debug for TopicConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicConsumer")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl TopicConsumer {
    /// Join `group` on `topic`; `properties` are librdkafka settings of this member
    /// (e.g. a long `max.poll.interval.ms` for records held while a job runs).
    pub fn join(
        settings: &KafkaSettings,
        group: &str,
        topic: &str,
        acks: Acks,
        properties: &[(&str, &str)],
    ) -> Result<Self, LogError> {
        let mut cfg = settings.consumer_config(group);
        if acks == Acks::Auto {
            cfg.set("enable.auto.commit", "true");
        }
        for (k, v) in properties {
            cfg.set(*k, *v);
        }
        let consumer: StreamConsumer = cfg.create().map_err(|e| kafka_err("creating consumer", e))?;
        consumer
            .subscribe(&[topic])
            .map_err(|e| kafka_err(&format!("subscribing to {topic}"), e))?;
        Ok(Self {
            consumer,
            topic: topic.to_string(),
            acks,
        })
    }

    /// The next record (waits for one). Errors are the broker's or the client's.
    pub async fn next(&self) -> Result<Delivery, LogError> {
        let msg = self
            .consumer
            .recv()
            .await
            .map_err(|e| kafka_err(&format!("consuming {}", self.topic), e))?;
        if self.acks == Acks::Auto {
            let _ = self.consumer.store_offset_from_message(&msg);
        }
        Ok(Delivery {
            payload: String::from_utf8_lossy(msg.payload().unwrap_or_default()).into_owned(),
            key: String::from_utf8_lossy(msg.key().unwrap_or_default()).into_owned(),
            partition: msg.partition(),
            offset: msg.offset(),
        })
    }

    /// Whether the group gave this member its partitions yet (a member joins while
    /// [`TopicConsumer::next`] is being awaited).
    pub fn assigned(&self) -> bool {
        self.consumer.assignment().is_ok_and(|a| a.count() > 0)
    }

    /// Commit `delivery` (and everything before it in its partition), waiting for
    /// the broker.
    pub fn commit(&self, delivery: &Delivery) -> Result<(), LogError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &self.topic,
            delivery.partition,
            KOffset::Offset(delivery.offset + 1),
        )
        .map_err(|e| kafka_err("committing", e))?;
        self.consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(|e| kafka_err(&format!("committing {}", self.topic), e))
    }
}
