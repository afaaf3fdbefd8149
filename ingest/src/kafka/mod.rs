//! The Kafka engine of the event log (scale-out deployment).
//!
//! Topics (names from config, created on start when missing):
//!
//! | topic        | key      | what                                                   |
//! |--------------|----------|--------------------------------------------------------|
//! | jobs         | zone     | scan jobs for the probe nodes of one network zone      |
//! | observations | host ip  | observation events (one host's events stay in order)   |
//! | control      | subject  | heartbeats, job leases and results, operator decisions |
//! | alerts       | host ip  | alerts for SIEM consumers (stable ids; dedupe by id)   |
//! | dead-letter  | original | records the projector could not decode, with reason    |
//! | decisions    | id       | the journal of decisions (one partition, one order)    |
//!
//! The control plane's instances also join a group on `decisions` whose one partition
//! is their lease: its holder leads ([`Lease`]).
//!
//! Producers are idempotent with `acks=all`. TLS and SASL come from the typed
//! `[kafka]` keys ([`Security`]); other librdkafka options under `[kafka.client]`
//! are passed through unchanged (timeouts, buffers).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use portwatch_events::Event;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset as KOffset, TopicPartitionList};

use crate::{AppendReceipt, EventLog, LogError, Offset, Record};

mod consumer;
mod group;
mod journal;
mod lease;
mod producer;
mod security;
mod topics;

pub use consumer::{Acks, Delivery, TopicConsumer};
pub use group::GroupReader;
pub use journal::KafkaJournal;
pub use lease::Lease;
pub use producer::TopicProducer;
pub use security::{classify, preflight, Mechanism, Protocol, Reachable, Refusal, Sasl, Security};
pub use topics::{ensure_topics, Retention, TopicsReport, DEFAULT_OBSERVATIONS_RETENTION};

/// Names of portwatch's topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Scan jobs, keyed by zone.
    pub jobs: String,
    /// Observation events, keyed by host address.
    pub observations: String,
    /// Control messages: heartbeats, leases, job results, decisions.
    pub control: String,
    /// Alerts for SIEM consumers.
    pub alerts: String,
    /// Undecodable records and why.
    pub dead_letter: String,
    /// The journal of decisions (one partition).
    pub decisions: String,
}

impl Topics {
    /// The default names under `prefix` (e.g. `portwatch.`).
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            jobs: format!("{prefix}jobs"),
            observations: format!("{prefix}observations"),
            control: format!("{prefix}control"),
            alerts: format!("{prefix}alerts"),
            dead_letter: format!("{prefix}dead-letter"),
            decisions: format!("{prefix}decisions"),
        }
    }

    /// Every topic name.
    pub fn all(&self) -> [&str; 6] {
        [
            &self.jobs,
            &self.observations,
            &self.control,
            &self.alerts,
            &self.dead_letter,
            &self.decisions,
        ]
    }
}

/// How to reach Kafka and how the topics look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Topic names.
    pub topics: Topics,
    /// Partitions of each topic created here.
    pub partitions: u32,
    /// Replication factor of each topic created here.
    pub replication: u32,
    /// How long the observations topic keeps its records (ClickHouse's
    /// `observations` table is the archive); the decisions topic keeps them forever.
    pub observations_retention: Duration,
    /// TLS and SASL of every client.
    pub security: Security,
    /// Extra librdkafka properties for every client, passed through (never those
    /// [`Security`] owns: see [`Security::owned_property`]).
    pub client: BTreeMap<String, String>,
    /// Extra librdkafka properties for consumers only (e.g. `session.timeout.ms`).
    pub consumer: BTreeMap<String, String>,
}

impl KafkaSettings {
    /// Plaintext settings for `brokers` with the topics under `prefix` (tools and
    /// tests; the binary's come from the config).
    pub fn new(brokers: &str, prefix: &str, partitions: u32) -> Self {
        Self {
            brokers: brokers.to_string(),
            topics: Topics::with_prefix(prefix),
            partitions,
            replication: 1,
            observations_retention: DEFAULT_OBSERVATIONS_RETENTION,
            security: Security::default(),
            client: BTreeMap::new(),
            consumer: BTreeMap::new(),
        }
    }

    /// Base client config: brokers, security, then the pass-through properties.
    pub fn client_config(&self) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.brokers);
        self.security.apply(&mut cfg);
        for (k, v) in &self.client {
            cfg.set(k, v);
        }
        cfg
    }

    /// Producer config: idempotent, acks=all, messages give up after `timeout`.
    pub fn producer_config(&self, timeout: Duration) -> ClientConfig {
        self.with_defaults(&[
            ("enable.idempotence", "true".into()),
            ("acks", "all".into()),
            ("linger.ms", "5".into()),
            ("compression.type", "lz4".into()),
            ("message.timeout.ms", timeout.as_millis().to_string()),
        ])
    }

    /// Consumer config for `group`: manual commits, start from the beginning.
    pub fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut cfg = self.with_defaults(&[
            ("group.id", group.to_string()),
            ("enable.auto.commit", "false".into()),
            ("enable.auto.offset.store", "false".into()),
            ("auto.offset.reset", "earliest".into()),
            ("enable.partition.eof", "false".into()),
        ]);
        for (k, v) in &self.consumer {
            cfg.set(k, v);
        }
        cfg
    }

    /// The base config plus `defaults`, each unless `[kafka.client]` sets it
    /// (`ClientConfig::config_map` hides secrets, so configs are not merged).
    fn with_defaults(&self, defaults: &[(&str, String)]) -> ClientConfig {
        let mut cfg = self.client_config();
        for (k, v) in defaults {
            if !self.client.contains_key(*k) {
                cfg.set(*k, v);
            }
        }
        cfg
    }
}

pub(crate) fn kafka_err(what: &str, err: KafkaError) -> LogError {
    LogError::Kafka {
        what: what.to_string(),
        source: err,
    }
}

/// Number of partitions of `topic` as the broker reports them.
pub fn topic_partitions(consumer: &BaseConsumer, topic: &str, timeout: Duration) -> Result<u32, LogError> {
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| kafka_err("fetching metadata", e))?;
    let Some(found) = md.topics().iter().find(|t| t.name() == topic) else {
        return Ok(0);
    };
    match found.error().map(RDKafkaErrorCode::from) {
        Some(RDKafkaErrorCode::TopicAuthorizationFailed) => Err(LogError::NotAuthorized {
            topic: topic.to_string(),
        }),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition) => Ok(0),
        _ => Ok(u32::try_from(found.partitions().len()).unwrap_or(0)),
    }
}

/// One record of any topic, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// Partition.
    pub partition: u32,
    /// Offset.
    pub offset: u64,
    /// Key, if any.
    pub key: Option<String>,
    /// Payload (lossy UTF-8).
    pub payload: String,
    /// Headers with UTF-8 values.
    pub headers: BTreeMap<String, String>,
}

/// Every record of `topic` up to the high watermarks seen at the start (for tools and
/// tests: dead letters, alerts, jobs). At most `limit` records.
pub fn read_topic(
    settings: &KafkaSettings,
    topic: &str,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<RawRecord>, LogError> {
    use rdkafka::message::Headers;
    let mut cfg = settings.client_config();
    cfg.set("group.id", "portwatch-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let consumer: BaseConsumer = cfg.create().map_err(|e| kafka_err("creating reader", e))?;
    let partitions = topic_partitions(&consumer, topic, timeout)?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p as i32, timeout)
            .map_err(|e| kafka_err("fetching watermarks", e))?;
        if high > low {
            ends.insert(p, high as u64);
        }
        tpl.add_partition_offset(topic, p as i32, KOffset::Offset(low))
            .map_err(|e| kafka_err("assigning", e))?;
    }
    let mut out = Vec::new();
    consumer.assign(&tpl).map_err(|e| kafka_err("assigning", e))?;
    let deadline = std::time::Instant::now() + timeout;
    // Watermarks are hints (see READ_QUIET): stop once they are reached and the topic
    // has been quiet for a moment.
    let mut last_seen = std::time::Instant::now();
    while out.len() < limit && std::time::Instant::now() < deadline {
        if ends.is_empty() && last_seen.elapsed() >= READ_QUIET {
            break;
        }
        let Some(msg) = consumer.poll(Duration::from_millis(50)) else {
            continue;
        };
        last_seen = std::time::Instant::now();
        let msg = msg.map_err(|e| kafka_err("reading", e))?;
        let partition = msg.partition() as u32;
        let offset = msg.offset() as u64;
        let mut headers = BTreeMap::new();
        if let Some(h) = msg.headers() {
            for header in h.iter() {
                if let Some(v) = header.value {
                    headers.insert(header.key.to_string(), String::from_utf8_lossy(v).to_string());
                }
            }
        }
        out.push(RawRecord {
            partition,
            offset,
            key: msg.key().map(|k| String::from_utf8_lossy(k).to_string()),
            payload: String::from_utf8_lossy(msg.payload().unwrap_or_default()).to_string(),
            headers,
        });
        if ends.get(&partition).is_some_and(|&end| offset + 1 >= end) {
            ends.remove(&partition);
        }
    }
    Ok(out)
}

/// How long a partition must stay quiet, once the high watermark is reached, before
/// a read counts as complete.
const READ_QUIET: Duration = Duration::from_millis(400);

/// The observations topic as an [`EventLog`]: appends produce keyed by host address
/// and wait for every acknowledgement; reads assign a partition and fetch from an
/// offset (used by `rebuild`, tests and tools; the projector consumes as a group).
pub struct KafkaLog {
    settings: KafkaSettings,
    producer: FutureProducer,
    reader: Mutex<BaseConsumer>,
    partitions: u32,
    timeout: Duration,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("brokers", &self.settings.brokers)
            .field("topic", &self.settings.topics.observations)
            .finish_non_exhaustive()
    }
}

impl KafkaLog {
    /// Connect to the observations topic (it must exist: see [`ensure_topics`]).
    pub fn open(settings: KafkaSettings, timeout: Duration) -> Result<Self, LogError> {
        let producer: FutureProducer = settings
            .producer_config(timeout)
            .create()
            .map_err(|e| kafka_err("creating producer", e))?;
        let mut reader_cfg = settings.client_config();
        reader_cfg
            .set("group.id", "portwatch-reader")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false");
        let reader: BaseConsumer = reader_cfg.create().map_err(|e| kafka_err("creating reader", e))?;
        let partitions = topic_partitions(&reader, &settings.topics.observations, timeout)?;
        if partitions == 0 {
            return Err(LogError::NoSuchTopic {
                topic: settings.topics.observations.clone(),
            });
        }
        Ok(Self {
            settings,
            producer,
            reader: Mutex::new(reader),
            partitions,
            timeout,
        })
    }

    /// The settings.
    pub fn settings(&self) -> &KafkaSettings {
        &self.settings
    }
}

/// Produce `(key, payload)` records to `topic` and wait for every acknowledgement;
/// one result per record, in order.
pub async fn produce_keyed(
    producer: &FutureProducer,
    topic: &str,
    records: &[(String, String)],
) -> Vec<Result<(), KafkaError>> {
    let futures: Vec<_> = records
        .iter()
        .map(|(key, body)| {
            producer
                .send_result(FutureRecord::to(topic).key(key).payload(body))
                .map_err(|(e, _)| e)
        })
        .collect();
    let mut out = Vec::with_capacity(futures.len());
    for fut in futures {
        out.push(match fut {
            Ok(delivery) => match delivery.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((e, _))) => Err(e),
                Err(_) => Err(KafkaError::Canceled),
            },
            Err(e) => Err(e),
        });
    }
    out
}

/// Produce `events` to `topic` keyed by host address; fails if any was not acknowledged.
pub async fn produce_events(
    producer: &FutureProducer,
    topic: &str,
    events: &[Event],
) -> Result<(), LogError> {
    let records: Vec<(String, String)> = events.iter().map(|e| (e.key(), e.to_json())).collect();
    match produce_keyed(producer, topic, &records)
        .await
        .into_iter()
        .find_map(Result::err)
    {
        None => Ok(()),
        Some(e) => Err(kafka_err("producing events", e)),
    }
}

impl EventLog for KafkaLog {
    fn partitions(&self) -> u32 {
        self.partitions
    }

    fn append(&self, events: &[Event]) -> Result<AppendReceipt, LogError> {
        futures::executor::block_on(produce_events(
            &self.producer,
            &self.settings.topics.observations,
            events,
        ))?;
        self.producer
            .flush(self.timeout)
            .map_err(|e| kafka_err("flushing producer", e))?;
        // Kafka cannot refuse a duplicate id; the fold drops redeliveries instead.
        Ok(AppendReceipt {
            appended: events.len(),
            duplicates: 0,
        })
    }

    fn read(&self, partition: u32, from: Offset, max: usize) -> Result<Vec<Record>, LogError> {
        if partition >= self.partitions {
            return Err(LogError::NoSuchPartition {
                partition,
                partitions: self.partitions,
            });
        }
        if max == 0 {
            return Ok(Vec::new());
        }
        // The high watermark is only a hint here: tansu 0.6 reports it behind the last
        // record at times, so read until the partition stays quiet instead.
        let end = self.end_offset(partition)?;
        tracing::debug!(partition, from, end, "reading partition");
        let reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        let topic = &self.settings.topics.observations;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition as i32, KOffset::Offset(from as i64))
            .map_err(|e| kafka_err("assigning partition", e))?;
        reader
            .assign(&tpl)
            .map_err(|e| kafka_err("assigning partition", e))?;
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + self.timeout;
        let mut last_seen = std::time::Instant::now();
        while out.len() < max && std::time::Instant::now() < deadline {
            let quiet = last_seen.elapsed();
            let caught_up = out.last().map_or(from, |r: &Record| r.offset + 1) >= end;
            if caught_up && quiet >= READ_QUIET {
                break;
            }
            let Some(msg) = reader.poll(Duration::from_millis(50)) else {
                continue;
            };
            let msg = msg.map_err(|e| kafka_err("reading partition", e))?;
            let offset = msg.offset() as u64;
            // Fetches of an earlier assignment can still be queued: take only ours.
            if msg.partition() != partition as i32 || msg.topic() != topic.as_str() || offset < from {
                continue;
            }
            last_seen = std::time::Instant::now();
            let text = String::from_utf8_lossy(msg.payload().unwrap_or_default());
            out.push(Record {
                partition,
                offset,
                event: Event::from_json(&text),
            });
        }
        reader.unassign().map_err(|e| kafka_err("unassigning", e))?;
        Ok(out)
    }

    fn end_offset(&self, partition: u32) -> Result<Offset, LogError> {
        let reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        let (_, high) = reader
            .fetch_watermarks(&self.settings.topics.observations, partition as i32, self.timeout)
            .map_err(|e| kafka_err("fetching watermarks", e))?;
        Ok(high.max(0) as u64)
    }
}
