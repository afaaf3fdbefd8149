//! Keyed producing to one topic, for the roles that publish: job orders, control
//! messages, alerts.

use std::time::Duration;

use rdkafka::producer::FutureProducer;

use super::{kafka_err, produce_keyed, KafkaSettings};
use crate::LogError;

/// An idempotent producer bound to one topic.
#[derive(Clone)]
pub struct TopicProducer {
    producer: FutureProducer,
    topic: String,
}

impl std::fmt::Debug for TopicProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicProducer")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl TopicProducer {
    /// A producer for `topic`; a record not acknowledged within `timeout` fails.
    pub fn new(settings: &KafkaSettings, topic: &str, timeout: Duration) -> Result<Self, LogError> {
        let producer = settings
            .producer_config(timeout)
            .create()
            .map_err(|e| kafka_err("creating producer", e))?;
        Ok(Self {
            producer,
            topic: topic.to_string(),
        })
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Send one record and wait for its acknowledgement.
    pub async fn send(&self, key: &str, payload: &str) -> Result<(), LogError> {
        let records = [(key.to_string(), payload.to_string())];
        match produce_keyed(&self.producer, &self.topic, &records).await.pop() {
            Some(Err(e)) => Err(kafka_err(&format!("producing to {}", self.topic), e)),
            _ => Ok(()),
        }
    }

    /// Send `(key, payload)` records at once; one result per record, in order.
    pub async fn send_all(&self, records: &[(String, String)]) -> Vec<Result<(), LogError>> {
        produce_keyed(&self.producer, &self.topic, records)
            .await
            .into_iter()
            .map(|r| r.map_err(|e| kafka_err(&format!("producing to {}", self.topic), e)))
            .collect()
    }
}
