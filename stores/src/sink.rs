//! State sinks: where a projector writes what it folded, and where it resumes from.
//!
//! The one projector loop is generic over a [`StateSink`]. The embedded store keeps
//! a partition's next offset in the same SQLite transaction as the rows, so its
//! checkpoints cost nothing; ClickHouse has no transactions, so its rows carry their
//! offsets as versions and a separate checkpoint is written after them: the images of
//! the hosts changed since the last one ([`HostImage`]), then the next offset. Either
//! way a crash resumes from a point whose rows are all written, and folding the same
//! events again writes the same rows.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use portwatch_projections::{FoldConfig, HostImage, State};

use crate::{Batch, ClickHouseError, ClickHouseStore, EmbeddedStore, StoreError};

/// A sink failed; the projector retries the same call.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The embedded store.
    #[error(transparent)]
    Embedded(#[from] StoreError),
    /// ClickHouse.
    #[error(transparent)]
    ClickHouse(#[from] ClickHouseError),
    /// The blocking task of an embedded write died.
    #[error("store task failed: {0}")]
    Task(String),
}

/// A partition's fold state as last made durable.
#[derive(Debug)]
pub struct Loaded {
    /// The state after every event before `next`.
    pub state: State,
    /// The next offset to fold.
    pub next: u64,
    /// Hosts whose stored image is ahead of `next`: a checkpoint stored their images
    /// (at the offset given here) but not its offset. Their events before that offset
    /// are in `state` already and must not be folded again.
    pub ahead: HashMap<IpAddr, u64>,
}

impl Loaded {
    /// A state with nothing ahead of its offset.
    pub fn at(state: State, next: u64) -> Self {
        Self {
            state,
            next,
            ahead: HashMap::new(),
        }
    }
}

/// Where a projector's folded state goes.
pub trait StateSink: Send + Sync {
    /// What to call the store in logs and metrics (`clickhouse`, `state store`).
    fn name(&self) -> &'static str;

    /// The fold state of `partition` and the next offset to fold, as last made
    /// durable; `None` for a partition never folded.
    fn load<'a>(
        &'a self,
        partition: u32,
        cfg: &'a FoldConfig,
    ) -> BoxFuture<'a, Result<Option<Loaded>, SinkError>>;

    /// Whether this store keeps the raw observations (then a batch carries them).
    fn keeps_observations(&self) -> bool;

    /// Write a batch's rows (and, where [`StateSink::offsets_with_rows`], the offsets
    /// in `batch.next` with them, atomically).
    fn write(&self, batch: Arc<Batch>) -> BoxFuture<'_, Result<(), SinkError>>;

    /// Whether [`StateSink::write`] makes the offsets durable with the rows, so that
    /// no checkpoint is needed.
    fn offsets_with_rows(&self) -> bool;

    /// Record that `partition` is folded up to `next`: first the images of the hosts
    /// `changed` since its last checkpoint, then the offset. Called only after the rows
    /// of everything before `next` are written. Answers the bytes of state written.
    fn checkpoint<'a>(
        &'a self,
        partition: u32,
        next: u64,
        changed: &'a [HostImage],
    ) -> BoxFuture<'a, Result<u64, SinkError>>;
}

/// The embedded store as a sink: the projection `state` of `portwatch up`.
#[derive(Debug, Clone)]
pub struct EmbeddedSink {
    store: Arc<EmbeddedStore>,
    projection: String,
    /// Recorded with the rows (a state built with another one needs a rebuild).
    cfg: FoldConfig,
}

impl EmbeddedSink {
    /// Projection name under which the state projection stores its offsets.
    pub const PROJECTION: &'static str = "state";

    /// A sink writing `store`, folded with `cfg`.
    pub fn new(store: Arc<EmbeddedStore>, cfg: FoldConfig) -> Self {
        Self {
            store,
            projection: Self::PROJECTION.to_string(),
            cfg,
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<EmbeddedStore> {
        &self.store
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&EmbeddedStore, &str) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, SinkError> {
        let (store, projection) = (self.store.clone(), self.projection.clone());
        tokio::task::spawn_blocking(move || f(&store, &projection))
            .await
            .map_err(|e| SinkError::Task(e.to_string()))?
            .map_err(SinkError::from)
    }
}

impl StateSink for EmbeddedSink {
    fn name(&self) -> &'static str {
        "state store"
    }

    fn load<'a>(
        &'a self,
        partition: u32,
        cfg: &'a FoldConfig,
    ) -> BoxFuture<'a, Result<Option<Loaded>, SinkError>> {
        let cfg = cfg.clone();
        async move {
            self.blocking(move |store, projection| {
                if let Some(stored) = store.fold_config()? {
                    if stored != cfg.close_after_misses {
                        tracing::warn!(
                            stored,
                            configured = cfg.close_after_misses,
                            "state was built with another projection.close_after_misses; new events use the configured value (run `portwatch rebuild` for a consistent history)"
                        );
                    }
                }
                // One partition's state is the whole state: the embedded log has one.
                let next = store.next_offset(projection, partition)?;
                Ok(Some(Loaded::at(store.load_state(cfg)?, next)))
            })
            .await
        }
        .boxed()
    }

    fn keeps_observations(&self) -> bool {
        false // the embedded log is on the same disk, whole
    }

    fn write(&self, batch: Arc<Batch>) -> BoxFuture<'_, Result<(), SinkError>> {
        let cfg = self.cfg.clone();
        async move {
            self.blocking(move |store, projection| {
                store.commit_rows(projection, &cfg, &crate::Rows::of_batch(&batch))
            })
            .await
        }
        .boxed()
    }

    fn offsets_with_rows(&self) -> bool {
        true
    }

    fn checkpoint<'a>(
        &'a self,
        _partition: u32,
        _next: u64,
        _changed: &'a [HostImage],
    ) -> BoxFuture<'a, Result<u64, SinkError>> {
        async { Ok(0) }.boxed()
    }
}

/// ClickHouse as a sink for the projectors of one consumer group on one topic.
#[derive(Debug, Clone)]
pub struct ClickHouseSink {
    store: ClickHouseStore,
    group: String,
    topic: String,
}

impl ClickHouseSink {
    /// A sink writing `store`, checkpointing as `group` reading `topic`.
    pub fn new(store: ClickHouseStore, group: String, topic: String) -> Self {
        Self { store, group, topic }
    }
}

impl StateSink for ClickHouseSink {
    fn name(&self) -> &'static str {
        "clickhouse"
    }

    fn load<'a>(
        &'a self,
        partition: u32,
        cfg: &'a FoldConfig,
    ) -> BoxFuture<'a, Result<Option<Loaded>, SinkError>> {
        async move {
            let Some(next) = self.store.checkpoint(&self.group, &self.topic, partition).await? else {
                // Host images stored by a first checkpoint whose offset never was.
                let (state, ahead) = self
                    .store
                    .host_images(&self.group, &self.topic, partition, cfg, 0)
                    .await?;
                return Ok((!ahead.is_empty()).then_some(Loaded {
                    state,
                    next: 0,
                    ahead,
                }));
            };
            let (state, ahead) = match next.legacy_state {
                // A whole-state checkpoint of an earlier version: every host of it is
                // written host by host at the next checkpoint.
                Some(image) => (State::from_image(cfg.clone(), image), HashMap::new()),
                None => {
                    self.store
                        .host_images(&self.group, &self.topic, partition, cfg, next.next_offset)
                        .await?
                }
            };
            Ok(Some(Loaded {
                state,
                next: next.next_offset,
                ahead,
            }))
        }
        .boxed()
    }

    fn keeps_observations(&self) -> bool {
        true
    }

    fn write(&self, batch: Arc<Batch>) -> BoxFuture<'_, Result<(), SinkError>> {
        async move { Ok(self.store.write(&batch).await?) }.boxed()
    }

    fn offsets_with_rows(&self) -> bool {
        false
    }

    fn checkpoint<'a>(
        &'a self,
        partition: u32,
        next: u64,
        changed: &'a [HostImage],
    ) -> BoxFuture<'a, Result<u64, SinkError>> {
        async move {
            let bytes = self
                .store
                .write_host_images(&self.group, &self.topic, partition, next, changed)
                .await?;
            if !changed.is_empty() {
                crate::failpoint::pass("checkpoint_after_images", "between host images and offset");
            }
            self.store
                .commit_checkpoint(&self.group, &self.topic, partition, next, chrono::Utc::now())
                .await?;
            Ok(bytes)
        }
        .boxed()
    }
}
