//! The decisions topic as a [`Journal`]: one partition, appends wait for every
//! acknowledgement, reads fetch from an offset up to the high watermark.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::{Offset as KOffset, TopicPartitionList};

use super::{kafka_err, produce_keyed, topic_partitions, KafkaSettings};
use crate::{Journal, JournalRecord, LogError, Offset};

/// The journal on the decisions topic.
pub struct KafkaJournal {
    topic: String,
    producer: FutureProducer,
    reader: Mutex<Tail>,
    timeout: Duration,
}

/// A consumer assigned to the topic's one partition, and the offset it will hand
/// out next: following the journal polls it without seeking again.
struct Tail {
    consumer: BaseConsumer,
    next: Option<u64>,
}

/// How long a read waits for records when the watermark says there are none (it
/// is only a hint: tansu 0.6 reports it behind the last record at times).
const QUIET: Duration = Duration::from_millis(300);

impl std::fmt::Debug for KafkaJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaJournal")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaJournal {
    /// Connect to the decisions topic (it must exist: see `ensure_topics`).
    pub fn open(settings: &KafkaSettings, timeout: Duration) -> Result<Self, LogError> {
        let topic = settings.topics.decisions.clone();
        let producer: FutureProducer = settings
            .producer_config(timeout)
            .create()
            .map_err(|e| kafka_err("creating producer", e))?;
        let mut cfg = settings.client_config();
        cfg.set("group.id", "portwatch-journal")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            // An offset the log no longer holds is an error, never a silent jump to
            // the end (librdkafka's default) or the start.
            .set("auto.offset.reset", "error");
        let consumer: BaseConsumer = cfg.create().map_err(|e| kafka_err("creating reader", e))?;
        if topic_partitions(&consumer, &topic, timeout)? == 0 {
            return Err(LogError::NoSuchTopic { topic });
        }
        Ok(Self {
            topic,
            producer,
            reader: Mutex::new(Tail { consumer, next: None }),
            timeout,
        })
    }
}

impl Journal for KafkaJournal {
    fn append_decisions(&self, records: &[(String, String)]) -> Result<(), LogError> {
        let results = futures::executor::block_on(produce_keyed(&self.producer, &self.topic, records));
        if let Some(e) = results.into_iter().find_map(Result::err) {
            return Err(kafka_err("journalling decisions", e));
        }
        self.producer
            .flush(self.timeout)
            .map_err(|e| kafka_err("flushing producer", e))
    }

    fn read_decisions(&self, from: Offset, max: usize) -> Result<Vec<JournalRecord>, LogError> {
        let mut tail = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        if tail.next != Some(from) {
            let mut tpl = TopicPartitionList::new();
            let start = i64::try_from(from).unwrap_or(i64::MAX);
            tpl.add_partition_offset(&self.topic, 0, KOffset::Offset(start))
                .map_err(|e| kafka_err("assigning", e))?;
            tail.consumer
                .assign(&tpl)
                .map_err(|e| kafka_err("assigning", e))?;
            tail.next = Some(from);
        }
        // Where the broker says records wait, wait for them as long as a request
        // may take; else only briefly, for records the watermark does not show yet.
        let (low, high) = tail
            .consumer
            .fetch_watermarks(&self.topic, 0, self.timeout)
            .map_err(|e| kafka_err("fetching watermarks", e))?;
        let start = u64::try_from(low).unwrap_or(0);
        if from < start {
            return Err(LogError::Gap {
                topic: self.topic.clone(),
                next: from,
                start,
            });
        }
        let wait = if u64::try_from(high).unwrap_or(0) > from {
            self.timeout
        } else {
            QUIET
        };
        let mut out: Vec<JournalRecord> = Vec::new();
        let deadline = Instant::now() + wait;
        while out.len() < max {
            let left = if out.is_empty() {
                deadline.saturating_duration_since(Instant::now())
            } else {
                Duration::from_millis(20)
            };
            if left.is_zero() {
                break;
            }
            let Some(msg) = tail.consumer.poll(left) else {
                break;
            };
            let msg = msg.map_err(|e| kafka_err("reading decisions", e))?;
            let offset = u64::try_from(msg.offset()).unwrap_or(0);
            if offset < from {
                continue;
            }
            out.push(JournalRecord {
                offset,
                body: String::from_utf8_lossy(msg.payload().unwrap_or_default()).to_string(),
            });
            tail.next = Some(offset + 1);
        }
        Ok(out)
    }
}
