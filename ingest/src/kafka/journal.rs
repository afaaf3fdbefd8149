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
    reader: Mutex<BaseConsumer>,
    timeout: Duration,
}

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
            .set("enable.partition.eof", "false");
        let reader: BaseConsumer = cfg.create().map_err(|e| kafka_err("creating reader", e))?;
        if topic_partitions(&reader, &topic, timeout)? == 0 {
            return Err(LogError::NoSuchTopic { topic });
        }
        Ok(Self {
            topic,
            producer,
            reader: Mutex::new(reader),
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
        let reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        let (_, high) = reader
            .fetch_watermarks(&self.topic, 0, self.timeout)
            .map_err(|e| kafka_err("fetching watermarks", e))?;
        let high = u64::try_from(high).unwrap_or(0);
        if high <= from {
            return Ok(Vec::new());
        }
        let mut tpl = TopicPartitionList::new();
        let start = i64::try_from(from).unwrap_or(i64::MAX);
        tpl.add_partition_offset(&self.topic, 0, KOffset::Offset(start))
            .map_err(|e| kafka_err("assigning", e))?;
        reader.assign(&tpl).map_err(|e| kafka_err("assigning", e))?;
        let mut out = Vec::new();
        let deadline = Instant::now() + self.timeout;
        while out.len() < max && Instant::now() < deadline {
            let Some(msg) = reader.poll(Duration::from_millis(100)) else {
                continue;
            };
            let msg = msg.map_err(|e| kafka_err("reading decisions", e))?;
            let offset = u64::try_from(msg.offset()).unwrap_or(0);
            out.push(JournalRecord {
                offset,
                body: String::from_utf8_lossy(msg.payload().unwrap_or_default()).to_string(),
            });
            if offset + 1 >= high {
                break;
            }
        }
        Ok(out)
    }
}
