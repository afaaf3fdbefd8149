//! `portwatch project`: fold the observations topic into ClickHouse.
//!
//! Instances with the same `[projector] group` share the topic's partitions. Each
//! owns the fold state of its partitions (one host's events live in one partition,
//! so partitions fold independently and together give the same state as one fold
//! over everything).
//!
//! Effectively-once, without transactions:
//! 1. On taking a partition, load its checkpoint from ClickHouse (next offset + fold
//!    state); records before that offset are skipped. Records are folded only in
//!    offset order without holes: when the consumer hands over a record past the
//!    next expected offset (it started past the checkpoint, or a broker served a
//!    later batch before an earlier one was readable), it seeks back and reads the
//!    missing records first. A hole that persists for [`GAP_PATIENCE`] (a topic
//!    with transaction markers would have such holes) is logged and skipped.
//! 2. Fold a batch; write raw observations and changed rows, each row versioned by
//!    the offset of the last event that changed it (ReplacingMergeTree(ver)).
//! 3. Every `checkpoint_interval`, write each dirty partition's checkpoint; then
//!    commit the same offsets to Kafka (for lag tools only).
//!
//! A crash anywhere replays from the last checkpoint and rewrites identical rows with
//! identical versions. A ClickHouse outage stalls the projector (it retries the same
//! batch) without losing or skipping anything. Records that do not decode go to the
//! dead-letter topic with the reason in a header, and the fold goes on.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use portwatch_events::Event;
use portwatch_projections::{FoldConfig, State};
use portwatch_stores::{Batch, Checkpoint, ClickHouseStore};
use rdkafka::consumer::{Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;

use portwatch_ingest::kafka::produce_keyed;

use super::{ready_clickhouse, ready_kafka, retry, stop_flag, stopping};
use crate::cli::ProjectArgs;
use crate::config::Config;
use crate::Shutdown;

#[derive(Default)]
struct Rebalances {
    /// Partitions taken away since the last batch boundary.
    revoked: Mutex<BTreeSet<i32>>,
    /// The current assignment.
    owned: Mutex<BTreeSet<i32>>,
    /// Partitions assigned since their state was last loaded: whatever this instance
    /// still holds for them is stale (another owner may have moved on meanwhile).
    fresh: Mutex<BTreeSet<i32>>,
}

struct Ctx {
    rebalances: Arc<Rebalances>,
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, _consumer: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut revoked = self.rebalances.revoked.lock().unwrap_or_else(|p| p.into_inner());
            let mut owned = self.rebalances.owned.lock().unwrap_or_else(|p| p.into_inner());
            for el in tpl.elements() {
                revoked.insert(el.partition());
                owned.remove(&el.partition());
            }
            tracing::info!(partitions = ?revoked, "partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            self.rebalances
                .owned
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(parts.iter().copied());
            self.rebalances
                .fresh
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(parts.iter().copied());
            tracing::info!(partitions = ?parts, "partitions assigned");
        }
    }
}

/// How long a hole in a partition's offsets is re-read before it is accepted as
/// real. portwatch's producers write no transaction markers, so on its own topics a
/// hole means records not yet readable, not records that do not exist.
pub const GAP_PATIENCE: Duration = Duration::from_secs(10);

/// Minimum spacing of seeks back to the same hole (records already fetched past
/// it may still arrive in between; they are dropped and read again after the seek).
const GAP_RESEEK: Duration = Duration::from_millis(200);

/// Fold state of one partition this instance owns.
struct Part {
    state: State,
    next: u64,
    dirty: bool,
    /// Waiting for offset `next` after seeing a later one: since when, last seek.
    gap: Option<(Instant, Option<Instant>)>,
}

/// What to do with a record at `offset` of a partition expecting `next`.
#[derive(Debug, PartialEq, Eq)]
enum Order {
    /// Already folded (a replay below the checkpoint or a re-read).
    Skip,
    /// The expected record (or a hole that outlasted [`GAP_PATIENCE`]).
    Fold,
    /// Past a hole: seek back to `next` (or, just after a seek, wait for it).
    SeekBack { seek: bool },
}

impl Part {
    fn order(&mut self, offset: u64, now: Instant) -> Order {
        if offset < self.next {
            return Order::Skip;
        }
        if offset == self.next {
            self.gap = None;
            return Order::Fold;
        }
        let (since, last_seek) = self.gap.get_or_insert((now, None));
        if now.duration_since(*since) >= GAP_PATIENCE {
            self.gap = None;
            return Order::Fold;
        }
        let seek = last_seek.is_none_or(|at| now.duration_since(at) >= GAP_RESEEK);
        if seek {
            *last_seek = Some(now);
        }
        Order::SeekBack { seek }
    }
}

/// The projector.
struct Projector {
    store: ClickHouseStore,
    consumer: StreamConsumer<Ctx>,
    producer: FutureProducer,
    rebalances: Arc<Rebalances>,
    cfg: Arc<Config>,
    fold: FoldConfig,
    group: String,
    topic: String,
    parts: BTreeMap<i32, Part>,
    batch: Batch,
    events_in_batch: usize,
    inflight: Option<tokio::task::JoinHandle<bool>>,
}

/// Run until `shutdown`.
pub async fn run(cfg: Config, args: ProjectArgs, shutdown: Shutdown) -> anyhow::Result<()> {
    let mut stop = stop_flag(shutdown);
    let cfg = Arc::new(cfg);
    crate::scaleout::control::install_metrics(args.metrics.as_deref()).await?;
    let so = &cfg.scaleout;
    let group = args.group.clone().unwrap_or_else(|| so.projector.group.clone());
    let store = ClickHouseStore::new(so.clickhouse.clone());
    ready_clickhouse(&store, &mut stop).await?;
    ready_kafka(&so.kafka, so.kafka_timeout, &mut stop).await?;

    let rebalances = Arc::new(Rebalances::default());
    let consumer: StreamConsumer<Ctx> = so.kafka.consumer_config(&group).create_with_context(Ctx {
        rebalances: rebalances.clone(),
    })?;
    consumer.subscribe(&[&so.kafka.topics.observations])?;
    let producer: FutureProducer = so.kafka.producer_config(so.kafka_timeout).create()?;
    tracing::info!(group = %group, topic = %so.kafka.topics.observations, "projector started");
    let mut p = Projector {
        store,
        consumer,
        producer,
        rebalances,
        fold: cfg.projection.clone(),
        group,
        topic: so.kafka.topics.observations.clone(),
        cfg: cfg.clone(),
        parts: BTreeMap::new(),
        batch: Batch::default(),
        events_in_batch: 0,
        inflight: None,
    };
    p.run(&mut stop).await;
    tracing::info!("projector stopped");
    Ok(())
}

impl Projector {
    async fn run(&mut self, stop: &mut watch::Receiver<bool>) {
        let settings = self.cfg.scaleout.projector.clone();
        let mut last_checkpoint = Instant::now();
        // Checkpoints serialise the whole fold state of the dirty partitions; with a
        // large state they are spaced out so that they take at most ~5% of the time
        // (`checkpoint_interval` is the minimum spacing).
        let mut checkpoint_every = settings.checkpoint_interval;
        loop {
            let deadline = tokio::time::Instant::now() + settings.batch_wait;
            while self.events_in_batch < settings.batch {
                let msg = tokio::select! {
                    m = tokio::time::timeout_at(deadline, self.consumer.recv()) => m,
                    _ = stop.wait_for(|s| *s) => break,
                };
                match msg {
                    Err(_elapsed) => break,
                    Ok(Err(err)) => {
                        tracing::warn!(error = %err, "consumer error");
                        break;
                    }
                    Ok(Ok(msg)) => {
                        let msg = msg.detach();
                        self.handle(&msg, stop).await;
                    }
                }
                if stopping(stop) {
                    break;
                }
            }
            let revoked: BTreeSet<i32> =
                std::mem::take(&mut *self.rebalances.revoked.lock().unwrap_or_else(|p| p.into_inner()));
            if !self.flush(stop).await {
                return; // stopped while ClickHouse was down: the checkpoint stays behind
            }
            if !revoked.is_empty() || stopping(stop) || last_checkpoint.elapsed() >= checkpoint_every {
                // A checkpoint covers only written rows: wait for the write in flight.
                if !self.settle().await {
                    return;
                }
                let took = Instant::now();
                if !self.checkpoint(stop).await {
                    return;
                }
                checkpoint_every = settings.checkpoint_interval.max(took.elapsed() * 20);
                last_checkpoint = Instant::now();
            }
            for partition in revoked {
                self.parts.remove(&partition);
            }
            if stopping(stop) {
                return;
            }
        }
    }

    async fn part(&mut self, partition: i32, stop: &mut watch::Receiver<bool>) -> Option<&mut Part> {
        if !self.parts.contains_key(&partition) {
            let (store, group, topic) = (self.store.clone(), self.group.clone(), self.topic.clone());
            let checkpoint = retry("clickhouse read checkpoint", stop, || {
                store.checkpoint(&group, &topic, partition as u32)
            })
            .await?;
            let (state, next) = match checkpoint {
                Some(cp) => (State::from_image(self.fold.clone(), cp.state), cp.next_offset),
                None => (State::new(self.fold.clone()), 0),
            };
            tracing::info!(partition, next_offset = next, "partition state loaded");
            self.parts.insert(
                partition,
                Part {
                    state,
                    next,
                    dirty: false,
                    gap: None,
                },
            );
        }
        self.parts.get_mut(&partition)
    }

    async fn handle(&mut self, msg: &rdkafka::message::OwnedMessage, stop: &mut watch::Receiver<bool>) {
        let partition = msg.partition();
        let offset = msg.offset().max(0) as u64;
        let topic = self.topic.clone();
        if !self
            .rebalances
            .owned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&partition)
        {
            // Fetched before the partition was revoked: its new owner folds it.
            return;
        }
        if self
            .rebalances
            .fresh
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&partition)
        {
            // Newly (re)assigned: load its checkpoint rather than trust a state this
            // instance kept from an earlier ownership. Rows of it still in the batch are
            // identical to what a replay writes.
            self.parts.remove(&partition);
        }
        let Some(part) = self.part(partition, stop).await else {
            return;
        };
        let next = part.next;
        match part.order(offset, Instant::now()) {
            Order::Skip => {
                metrics::counter!("portwatch_projector_replayed_skipped_total").increment(1);
                return;
            }
            Order::SeekBack { seek } => {
                if seek {
                    // Either the consumer started past the checkpoint (Kafka's committed
                    // offset ahead of ClickHouse's) or the broker served a later record
                    // before an earlier one: go back, or those events would be lost.
                    metrics::counter!("portwatch_projector_seek_backs_total").increment(1);
                    tracing::warn!(partition, from = offset, to = next, "offset hole; seeking back");
                    if let Err(err) = self.consumer.seek(
                        &topic,
                        partition,
                        Offset::Offset(next as i64),
                        Duration::from_secs(10),
                    ) {
                        tracing::warn!(partition, error = %err, "seek failed; will try again");
                    }
                }
                return;
            }
            Order::Fold => {
                if offset > next {
                    metrics::counter!("portwatch_projector_holes_skipped_total").increment(1);
                    tracing::error!(
                        partition,
                        from = next,
                        to = offset,
                        "offsets never became readable; folding on past them"
                    );
                }
            }
        }
        // Loaded by `part` above; nothing removes a partition before this returns.
        let Some(part) = self.parts.get_mut(&partition) else {
            return;
        };
        let text = String::from_utf8_lossy(msg.payload().unwrap_or_default());
        match Event::from_json(&text) {
            Ok(event) => {
                let changes = part.state.apply(&event);
                self.batch
                    .add(partition as u32, offset, &event, text.to_string(), changes);
                if let Some(ts) = msg.timestamp().to_millis() {
                    latency_seen(ts);
                }
            }
            Err(err) => {
                metrics::counter!("portwatch_projector_dead_letters_total").increment(1);
                tracing::error!(partition, offset, error = %err, "undecodable record; sending it to the dead-letter topic");
                self.dead_letter(msg, &err.to_string(), stop).await;
            }
        }
        let Some(part) = self.parts.get_mut(&partition) else {
            return;
        };
        part.next = offset + 1;
        part.dirty = true;
        self.events_in_batch += 1;
    }

    async fn dead_letter(
        &self,
        msg: &rdkafka::message::OwnedMessage,
        reason: &str,
        stop: &mut watch::Receiver<bool>,
    ) {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "portwatch-error",
                value: Some(reason),
            })
            .insert(Header {
                key: "portwatch-source",
                value: Some(&format!("{}/{}/{}", msg.topic(), msg.partition(), msg.offset())),
            });
        let dlq = &self.cfg.scaleout.kafka.topics.dead_letter;
        let key = msg.key().unwrap_or_default().to_vec();
        let payload = msg.payload().unwrap_or_default().to_vec();
        let _ = retry("kafka dead-letter produce", stop, || {
            let record = FutureRecord::to(dlq)
                .key(&key)
                .payload(&payload)
                .headers(headers.clone());
            let fut = self.producer.send(record, Duration::from_secs(10));
            async move { fut.await.map(drop).map_err(|(e, _)| e) }
        })
        .await;
    }

    /// Hand the batch to a background write and start the next one; the write of one
    /// batch overlaps the consuming and folding of the next. At most one write is in
    /// flight. False when stopped while the previous write was still retrying.
    async fn flush(&mut self, stop: &mut watch::Receiver<bool>) -> bool {
        if !self.settle().await {
            return false;
        }
        if self.batch.is_empty() {
            self.events_in_batch = 0;
            return true;
        }
        let batch = std::mem::take(&mut self.batch);
        let events = std::mem::take(&mut self.events_in_batch);
        let (store, producer) = (self.store.clone(), self.producer.clone());
        let topic = self.cfg.scaleout.kafka.topics.alerts.clone();
        let stop = stop.clone();
        self.inflight = Some(tokio::spawn(write_batch(
            store, producer, topic, batch, events, stop,
        )));
        true
    }

    /// Wait for the write in flight; false if it gave up because of a stop.
    async fn settle(&mut self) -> bool {
        match self.inflight.take() {
            None => true,
            Some(task) => task.await.unwrap_or(false),
        }
    }

    /// Write the checkpoint of every dirty partition; false when stopped first.
    async fn checkpoint(&mut self, stop: &mut watch::Receiver<bool>) -> bool {
        let started = Instant::now();
        let mut tpl = TopicPartitionList::new();
        let store = self.store.clone();
        for (&partition, part) in self.parts.iter_mut().filter(|(_, p)| p.dirty) {
            let checkpoint = Checkpoint {
                next_offset: part.next,
                state: part.state.image(),
            };
            tracing::debug!(
                partition,
                hosts = checkpoint.state.hosts.len(),
                ports = checkpoint.state.ports.len(),
                "checkpointing"
            );
            let (group, topic) = (&self.group, &self.topic);
            if retry("clickhouse checkpoint", stop, || {
                store.commit_checkpoint(group, topic, partition as u32, &checkpoint, Utc::now())
            })
            .await
            .is_none()
            {
                return false;
            }
            part.dirty = false;
            let _ = tpl.add_partition_offset(&self.topic, partition, Offset::Offset(part.next as i64));
        }
        tracing::debug!(
            partitions = tpl.count(),
            ms = started.elapsed().as_millis() as u64,
            "checkpoint written"
        );
        if tpl.count() > 0 {
            // Informational (lag tools); the checkpoint in ClickHouse is what counts.
            if let Err(err) = self.consumer.commit(&tpl, rdkafka::consumer::CommitMode::Async) {
                tracing::debug!(error = %err, "kafka offset commit failed (informational only)");
            }
        }
        true
    }
}

/// Write one batch's rows (retrying until ClickHouse takes them), then send its
/// alerts to the alerts topic (at least once; ids are stable, consumers dedupe by id).
async fn write_batch(
    store: ClickHouseStore,
    producer: FutureProducer,
    topic: String,
    batch: Batch,
    events: usize,
    mut stop: watch::Receiver<bool>,
) -> bool {
    let started = Instant::now();
    if retry("clickhouse write", &mut stop, || store.write(&batch))
        .await
        .is_none()
    {
        return false;
    }
    metrics::histogram!("portwatch_projector_batch_write_seconds").record(started.elapsed().as_secs_f64());
    tracing::debug!(
        events,
        rows = batch.rows(),
        write_ms = started.elapsed().as_millis() as u64,
        "batch written"
    );
    failpoint_after_write();
    metrics::counter!("portwatch_events_projected_total").increment(events as u64);
    metrics::counter!("portwatch_rows_written_total").increment(batch.rows() as u64);
    let count = batch.new_alerts().count() as u64;
    let mut pending: Vec<(String, String)> = batch
        .new_alerts()
        .map(|a| (a.ip.to_string(), serde_json::to_string(a).unwrap_or_default()))
        .collect();
    let mut delay = Duration::from_millis(200);
    while !pending.is_empty() {
        // All in flight at once; only the unacknowledged ones go again.
        let results = produce_keyed(&producer, &topic, &pending).await;
        let mut failed = Vec::new();
        for (record, result) in pending.into_iter().zip(results) {
            if let Err(err) = result {
                tracing::warn!(error = %err, "alert not delivered to the alerts topic; retrying");
                failed.push(record);
            }
        }
        pending = failed;
        if !pending.is_empty() && !super::pause(&mut stop, delay).await {
            break; // stopping: this batch's alerts are in ClickHouse, not all on the topic
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    metrics::counter!("portwatch_alerts_total").increment(count);
    true
}

/// Fault injection for the crash tests: `PORTWATCH_FAILPOINT=projector_after_write:N`
/// aborts the process right after the N-th batch write, before its checkpoint: the
/// worst moment for effectively-once.
fn failpoint_after_write() {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let Ok(spec) = std::env::var("PORTWATCH_FAILPOINT") else {
        return;
    };
    let Some(n) = spec
        .strip_prefix("projector_after_write:")
        .and_then(|n| n.parse::<u64>().ok())
    else {
        return;
    };
    if WRITES.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 >= n {
        tracing::error!(failpoint = %spec, "failpoint reached: aborting between write and checkpoint");
        std::process::abort();
    }
}

/// Record end-to-end latency from the record's produce timestamp to now (the row is
/// queryable once this batch is written, so the flush time adds to it; the benchmark
/// measures the full path by polling ClickHouse).
fn latency_seen(produced_ms: i64) {
    let now = Utc::now().timestamp_millis();
    metrics::histogram!("portwatch_projector_consume_latency_seconds")
        .record(((now - produced_ms).max(0)) as f64 / 1000.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(next: u64) -> Part {
        Part {
            state: State::new(FoldConfig::default()),
            next,
            dirty: false,
            gap: None,
        }
    }

    #[test]
    fn folds_only_contiguous_offsets_and_seeks_back_over_a_hole() {
        let t0 = Instant::now();
        let mut p = part(10);
        assert_eq!(p.order(9, t0), Order::Skip, "below next: already folded");
        assert_eq!(p.order(10, t0), Order::Fold);
        p.next = 11;
        // A later record first: seek back, once per GAP_RESEEK, drop what arrives between.
        assert_eq!(p.order(14, t0), Order::SeekBack { seek: true });
        assert_eq!(
            p.order(15, t0 + Duration::from_millis(50)),
            Order::SeekBack { seek: false }
        );
        assert_eq!(p.order(14, t0 + GAP_RESEEK), Order::SeekBack { seek: true });
        // The missing record arrives: the hole is closed and forgotten.
        assert_eq!(p.order(11, t0 + GAP_RESEEK), Order::Fold);
        assert!(p.gap.is_none());
    }

    #[test]
    fn a_hole_that_outlasts_the_patience_is_folded_past() {
        let t0 = Instant::now();
        let mut p = part(3);
        assert_eq!(p.order(5, t0), Order::SeekBack { seek: true });
        assert_eq!(p.order(5, t0 + GAP_PATIENCE / 2), Order::SeekBack { seek: true });
        assert_eq!(p.order(5, t0 + GAP_PATIENCE), Order::Fold);
        assert!(p.gap.is_none());
    }
}
