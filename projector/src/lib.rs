//! The projector: one fold loop for both deployments.
//!
//! `probes → event log → **projections** → stores → alerts / API / dashboards`
//!
//! A [`Projector`] reads a partitioned log through a [`PartitionedReader`] (the
//! embedded SQLite log, or its share of a Kafka consumer group), folds each
//! partition's records in offset order with the pure folds of
//! `portwatch_projections`, and writes what changed to a [`StateSink`] (the embedded
//! store, or ClickHouse), with the offsets it reached:
//!
//! 1. A partition's fold state and next offset come from the sink when the reader
//!    first hands over one of its records (and again after a rebalance gave the
//!    partition back); the reader is moved to that offset.
//! 2. Records are folded only in offset order ([`order`]); records that do not
//!    decode are set aside by the reader (dead letters) and the fold goes on.
//! 3. Each batch's rows are written while the next batch is read and folded (at most
//!    one write in flight); a failed write is retried until it succeeds, so nothing
//!    is skipped and the in-memory state never runs ahead of what will be written.
//! 4. Where the sink keeps offsets with the rows (SQLite) that is the checkpoint;
//!    otherwise (ClickHouse) each dirty partition's checkpoint is written after its
//!    rows, every `checkpoint_interval` and at every rebalance or stop: the images of
//!    the hosts changed since the previous one (every event changes one host's share
//!    of the state), then the next offset. A checkpoint costs what changed, not the
//!    whole state.
//!
//! A crash anywhere resumes from the last durable offset and folds the same events
//! into the same rows again: nothing lost, nothing doubled. Alerts, part of the
//! rows, are also handed to an optional [`AlertOutlet`] (the Kafka alerts topic)
//! once written.

mod order;
pub mod retry;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use portwatch_ingest::{LogError, LogRecord, PartitionedReader};
use portwatch_projections::{Alert, FoldConfig, HostImage, PortState, State};
use portwatch_stores::{Batch, Loaded, StateSink};
use tokio::sync::watch;

use order::{Order, Part};
pub use retry::{pause, retry, stopping};

/// Spacing of the `portwatch_ports_open` / `portwatch_hosts_known` gauges.
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);

/// How a projector batches and checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Most events per batch.
    pub batch: usize,
    /// Longest wait to fill a batch.
    pub batch_wait: Duration,
    /// Shortest spacing of checkpoints (stretched so that they take at most ~5% of
    /// the time), where the sink needs them.
    pub checkpoint_interval: Duration,
    /// The folds' configuration (misses to close, the risk policy).
    pub fold: FoldConfig,
    /// On stop, fold everything the log holds first (the embedded log: nothing else
    /// will fold it before the next start) rather than stop at the next batch
    /// boundary (Kafka: the group's next member resumes from the checkpoint).
    pub drain_on_stop: bool,
    /// Fold on past records the log no longer holds (expired before any projector
    /// folded them), logging the range, instead of stopping with
    /// [`LogError::Gap`]: an operator's deliberate choice (`project --accept-gap`).
    pub accept_gap: bool,
}

/// Where written alerts go besides the store (the scale-out alerts topic).
pub trait AlertOutlet: Send + Sync {
    /// Publish `alerts` (at least once: their ids are stable, consumers dedupe by
    /// id); false when it gave up because of a stop.
    fn publish<'a>(&'a self, alerts: Vec<Alert>, stop: watch::Receiver<bool>) -> BoxFuture<'a, bool>;
}

/// The projector.
pub struct Projector<R: PartitionedReader> {
    reader: R,
    sink: Arc<dyn StateSink>,
    outlet: Option<Arc<dyn AlertOutlet>>,
    settings: Settings,
    parts: BTreeMap<u32, Part>,
    batch: Batch,
    events_in_batch: usize,
    inflight: Option<tokio::task::JoinHandle<bool>>,
    /// Why the fold cannot go on (records gone from the log).
    refused: Option<LogError>,
}

impl<R: PartitionedReader> std::fmt::Debug for Projector<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector")
            .field("partitions", &self.parts.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<R: PartitionedReader> Projector<R> {
    /// A projector from `reader` into `sink`.
    pub fn new(reader: R, sink: Arc<dyn StateSink>, settings: Settings) -> Self {
        Self {
            reader,
            batch: Batch::new(sink.keeps_observations()),
            sink,
            outlet: None,
            settings,
            parts: BTreeMap::new(),
            events_in_batch: 0,
            inflight: None,
            refused: None,
        }
    }

    /// Wait at most this long for a batch to fill (a rebuild has nothing to wait for).
    pub fn set_batch_wait(&mut self, wait: Duration) {
        self.settings.batch_wait = wait;
    }

    /// Also hand written alerts to `outlet`.
    pub fn with_outlet(mut self, outlet: Arc<dyn AlertOutlet>) -> Self {
        self.outlet = Some(outlet);
        self
    }

    /// Fold until `stop` is set (and, with `drain_on_stop`, the log is exhausted).
    /// Ends with [`LogError::Gap`] when a partition's log no longer holds the
    /// records after its checkpoint (unless `accept_gap`), having written everything
    /// folded before.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<(), LogError> {
        let mut last_checkpoint = Instant::now();
        let mut checkpoint_every = self.settings.checkpoint_interval;
        let mut last_gauges = Instant::now()
            .checked_sub(GAUGE_INTERVAL)
            .unwrap_or_else(Instant::now);
        loop {
            // Read before the poll: a poll that began after the stop (sent once
            // nothing appends any more) and found nothing has seen everything.
            let was_stopping = stopping(&stop);
            let drain = self.settings.drain_on_stop;
            let polled = tokio::select! {
                p = self.reader.poll(self.settings.batch, self.settings.batch_wait) => p,
                _ = stop.wait_for(|s| *s), if !drain && !was_stopping => Default::default(),
            };
            let got = polled.records.len();
            let revoked = polled.revoked;
            for record in polled.records {
                self.handle(record, &mut stop).await;
                if self.refused.is_some() {
                    break;
                }
            }
            if !self.flush(&mut stop).await {
                return Ok(()); // stopped while the store was down: it resumes from the last durable offset
            }
            if let Some(refused) = self.refused.take() {
                if self.settle().await && !self.sink.offsets_with_rows() {
                    self.checkpoint(&mut stop).await;
                }
                return Err(refused);
            }
            let now_stopping = stopping(&stop);
            let needs_checkpoint = !self.sink.offsets_with_rows()
                && (!revoked.is_empty() || now_stopping || last_checkpoint.elapsed() >= checkpoint_every);
            if needs_checkpoint {
                // A checkpoint covers only written rows: wait for the write in flight.
                if !self.settle().await {
                    return Ok(());
                }
                let took = Instant::now();
                if !self.checkpoint(&mut stop).await {
                    return Ok(());
                }
                checkpoint_every = self.settings.checkpoint_interval.max(took.elapsed() * 20);
                last_checkpoint = Instant::now();
            }
            for partition in revoked {
                self.parts.remove(&partition);
            }
            // Counting open ports walks the whole state: every few seconds is enough
            // for a gauge.
            if last_gauges.elapsed() >= GAUGE_INTERVAL {
                self.publish_gauges();
                last_gauges = Instant::now();
            }
            let done = if drain {
                was_stopping && got == 0
            } else {
                now_stopping
            };
            if done {
                self.settle().await;
                return Ok(());
            }
        }
    }

    /// Fold one record into its partition's state and the batch.
    async fn handle(&mut self, record: LogRecord, stop: &mut watch::Receiver<bool>) {
        let partition = record.partition;
        if self.reader.take_fresh(partition) {
            // Newly (re)assigned: load its state from the sink rather than trust one
            // kept from an earlier ownership. Rows of it still in the batch are
            // identical to what a replay writes.
            self.parts.remove(&partition);
        }
        if !self.parts.contains_key(&partition) {
            let (sink, fold) = (self.sink.clone(), self.settings.fold.clone());
            let what = format!("{} read checkpoint", sink.name());
            let Some(loaded) = retry(&what, stop, || sink.load(partition, &fold)).await else {
                return;
            };
            let mut loaded = loaded.unwrap_or_else(|| Loaded::at(State::new(self.settings.fold.clone()), 0));
            match self.reader.gap(partition, loaded.next) {
                Ok(None) => {}
                Ok(Some(LogError::Gap { start, .. })) if self.settings.accept_gap => {
                    metrics::counter!("portwatch_projector_gap_records_total").increment(start - loaded.next);
                    tracing::error!(
                        partition,
                        from = loaded.next,
                        to = start,
                        "records expired before any projector folded them; folding on from the log's start (--accept-gap)"
                    );
                    loaded.next = start;
                }
                Ok(Some(gap)) => {
                    self.refused = Some(gap);
                    return;
                }
                Err(err) => {
                    // The order check below still seeks back over a hole.
                    tracing::warn!(partition, error = %err, "cannot read where the log starts");
                }
            }
            tracing::info!(
                partition,
                next_offset = loaded.next,
                hosts_ahead = loaded.ahead.len(),
                "partition state loaded"
            );
            self.parts
                .insert(partition, Part::new(loaded, self.reader.contiguous()));
        }
        let Some(part) = self.parts.get_mut(&partition) else {
            return;
        };
        let next = part.next;
        match part.order(record.offset, Instant::now()) {
            Order::Skip => {
                metrics::counter!("portwatch_projector_replayed_skipped_total").increment(1);
                return;
            }
            Order::SeekBack { seek } => {
                if seek {
                    // Either the reader started past the checkpoint or a later record
                    // came before an earlier one: go back, or those events are lost.
                    metrics::counter!("portwatch_projector_seek_backs_total").increment(1);
                    tracing::warn!(
                        partition,
                        from = record.offset,
                        to = next,
                        "offset hole; seeking back"
                    );
                    self.reader.seek(partition, next);
                }
                return;
            }
            Order::Fold => {
                if record.offset > next && part.contiguous {
                    metrics::counter!("portwatch_projector_holes_skipped_total").increment(1);
                    tracing::error!(
                        partition,
                        from = next,
                        to = record.offset,
                        "offsets never became readable; folding on past them"
                    );
                }
            }
        }
        let (offset, produced_ms) = (record.offset, record.produced_ms);
        match record.event {
            Ok(ref event) if part.holds(event.observation.ip(), offset) => {
                // A checkpoint stored this host's image past the event but not its
                // offset: the image holds the event, and its rows are written.
                metrics::counter!("portwatch_projector_replayed_skipped_total").increment(1);
                self.batch.reached(partition, offset);
            }
            Ok(ref event) => {
                let changes = part.state.apply(event);
                self.batch.add(partition, offset, event, record.body, changes);
                if let Some(ms) = produced_ms {
                    let now = chrono::Utc::now().timestamp_millis();
                    metrics::histogram!("portwatch_projector_consume_latency_seconds")
                        .record(((now - ms).max(0)) as f64 / 1000.0);
                }
            }
            Err(ref err) => {
                metrics::counter!("portwatch_projection_skipped_events_total").increment(1);
                let reason = err.to_string();
                self.reader.reject(&record, &reason).await;
                self.batch.reached(partition, offset);
            }
        }
        if let Some(part) = self.parts.get_mut(&partition) {
            part.folded(offset);
        }
        self.events_in_batch += 1;
    }

    /// Hand the batch to a background write and start the next one: the write of
    /// one batch overlaps the reading and folding of the next. False when stopped
    /// while the previous write was still retrying.
    async fn flush(&mut self, stop: &mut watch::Receiver<bool>) -> bool {
        if !self.settle().await {
            return false;
        }
        if self.batch.is_empty() {
            self.events_in_batch = 0;
            return true;
        }
        let batch = std::mem::replace(&mut self.batch, Batch::new(self.sink.keeps_observations()));
        let events = std::mem::take(&mut self.events_in_batch);
        if self.sink.offsets_with_rows() {
            // The write is the checkpoint.
            for partition in batch.next.keys() {
                if let Some(part) = self.parts.get_mut(partition) {
                    part.dirty = false;
                }
            }
        }
        let (sink, outlet, stop) = (self.sink.clone(), self.outlet.clone(), stop.clone());
        self.inflight = Some(tokio::spawn(write_batch(sink, outlet, batch, events, stop)));
        true
    }

    /// Wait for the write in flight; false if it gave up because of a stop.
    async fn settle(&mut self) -> bool {
        match self.inflight.take() {
            None => true,
            Some(task) => task.await.unwrap_or(false),
        }
    }

    /// Write the checkpoint of every dirty partition (the images of its hosts changed
    /// since the last one, then its offset); false when stopped first.
    async fn checkpoint(&mut self, stop: &mut watch::Receiver<bool>) -> bool {
        let started = Instant::now();
        let mut committed = Vec::new();
        let (mut hosts, mut bytes) = (0usize, 0u64);
        let sink = self.sink.clone();
        let what = format!("{} checkpoint", sink.name());
        for (&partition, part) in self.parts.iter_mut().filter(|(_, p)| p.dirty) {
            let changed = part.state.take_changed();
            let images: Vec<HostImage> = changed.iter().map(|ip| part.state.host_image(*ip)).collect();
            let next = part.next;
            let Some(written) = retry(&what, stop, || sink.checkpoint(partition, next, &images)).await else {
                part.state.mark_changed(changed);
                return false;
            };
            hosts += images.len();
            bytes += written;
            part.dirty = false;
            committed.push((partition, next));
        }
        metrics::counter!("portwatch_projector_checkpoint_hosts_total").increment(hosts as u64);
        metrics::counter!("portwatch_projector_checkpoint_bytes_total").increment(bytes);
        tracing::debug!(
            partitions = committed.len(),
            hosts,
            bytes,
            ms = started.elapsed().as_millis() as u64,
            "checkpoint written"
        );
        self.reader.committed(&committed);
        true
    }

    fn publish_gauges(&self) {
        let states = self.parts.values().map(|p| &p.state);
        let (mut open, mut hosts) = (0usize, 0usize);
        for state in states {
            open += state.ports().filter(|p| p.state == PortState::Open).count();
            hosts += state.hosts().count();
        }
        metrics::gauge!("portwatch_ports_open").set(open as f64);
        metrics::gauge!("portwatch_hosts_known").set(hosts as f64);
    }
}

/// Write one batch's rows (retrying until the sink takes them), then hand its alerts
/// to the outlet.
async fn write_batch(
    sink: Arc<dyn StateSink>,
    outlet: Option<Arc<dyn AlertOutlet>>,
    batch: Batch,
    events: usize,
    mut stop: watch::Receiver<bool>,
) -> bool {
    let started = Instant::now();
    let what = format!("{} write", sink.name());
    let batch = Arc::new(batch);
    if retry(&what, &mut stop, || sink.write(batch.clone()))
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
    portwatch_stores::failpoint::pass("projector_after_write", "between write and checkpoint");
    metrics::counter!("portwatch_events_projected_total").increment(events as u64);
    metrics::counter!("portwatch_rows_written_total").increment(batch.rows() as u64);
    let alerts: Vec<Alert> = batch.new_alerts().cloned().collect();
    metrics::counter!("portwatch_alerts_total").increment(alerts.len() as u64);
    match outlet {
        Some(outlet) if !alerts.is_empty() => {
            // Stopping while publishing: the alerts are in the store, not all on the
            // topic (at least once is kept by the replay from the last checkpoint).
            outlet.publish(alerts, stop).await;
            true
        }
        _ => true,
    }
}
