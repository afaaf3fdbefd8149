//! Jobs: one run of one task over its targets, and how its results reach the log.
//!
//! A job streams host results from the scanner, turns each into observation events
//! and appends them to the event log as soon as the host is done (with the hosts
//! finished meanwhile, in one write), so a long job's findings show up while it is
//! still running and a crash loses at most the hosts in flight (which the next run
//! covers again).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
pub use portwatch_events::control::ChunkRef;
use portwatch_events::{Event, JobId, Observation, Origin, PortSet, Task, Timestamp};
use portwatch_ingest::{EventLog, LogError};
use portwatch_probes::{HostResult, Pinger, ScanProgress, ScanRequest, Scanner, Scope};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Notify};

/// Appends events to the log, retrying transient faults, and wakes the projector.
#[derive(Clone)]
pub struct Appender {
    log: Arc<dyn EventLog>,
    notify: Arc<Notify>,
    /// Appends running on the blocking pool. One whose caller was dropped (a job
    /// cancelled at shutdown) still completes; a clean stop waits for them.
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for Appender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appender").finish_non_exhaustive()
    }
}

/// Attempts for one append before the job fails.
const APPEND_ATTEMPTS: u32 = 10;

impl Appender {
    /// An appender over `log` that wakes `notify` after each append.
    pub fn new(log: Arc<dyn EventLog>, notify: Arc<Notify>) -> Self {
        Self {
            log,
            notify,
            in_flight: Arc::default(),
        }
    }

    /// Wait until no append is running (bounded by `limit`). Call once nothing
    /// starts new appends: then every event recorded is in the log.
    pub async fn settled(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.in_flight.load(std::sync::atomic::Ordering::SeqCst) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Append a batch (atomically). Retrying is safe: the log skips ids it has.
    pub async fn append(&self, events: Vec<Event>) -> Result<(), LogError> {
        if events.is_empty() {
            return Ok(());
        }
        let events = Arc::new(events);
        let mut delay = Duration::from_millis(50);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let log = self.log.clone();
            let batch = events.clone();
            let flight = self.in_flight.clone();
            flight.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let result = tokio::task::spawn_blocking(move || {
                let result = log.append(&batch);
                flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                result
            })
            .await
            .unwrap_or_else(|join| {
                Err(LogError::Io {
                    path: "append task".into(),
                    source: std::io::Error::other(join.to_string()),
                })
            });
            match result {
                Ok(receipt) => {
                    metrics::counter!("portwatch_events_appended_total").increment(receipt.appended as u64);
                    self.notify.notify_one();
                    return Ok(());
                }
                Err(err) if err.is_retryable() && attempt < APPEND_ATTEMPTS => {
                    tracing::warn!(error = %err, attempt, "event log append failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(err) => return Err(err),
            }
        }
    }
}

pub use crate::board::JobState;

/// One job as the board keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    /// Job id (the `job` field of its events).
    pub job: JobId,
    /// Task it ran.
    pub task: Task,
    /// Running, done or failed.
    pub state: JobState,
    /// Start time.
    pub started_at: Timestamp,
    /// End time.
    pub finished_at: Option<Timestamp>,
    /// Number of target addresses.
    pub targets: u64,
    /// Ports probed per target.
    pub ports: String,
    /// Hosts finished.
    pub hosts_done: u64,
    /// Open ports found.
    pub open_found: u64,
    /// Why it failed.
    pub error: Option<String>,
    /// A chunk attempt: its pass and chunk (none for a pass).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<ChunkRef>,
    /// A pass: how far its chunks are (none for a chunk attempt, and for jobs
    /// recorded before passes were cut into chunks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<PassProgress>,
}

/// How far a pass is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PassProgress {
    /// Chunks in all.
    pub chunks: u32,
    /// Chunks ended (done or failed).
    pub ended: u32,
    /// Cadence slots skipped while it ran (overruns).
    pub overruns: u64,
}

/// The most recent jobs, newest first; with a store, every change of a job is also
/// written there (in the background, off the scan's path), so the list outlives a
/// restart.
#[derive(Debug, Default)]
pub struct JobBoard {
    jobs: Mutex<VecDeque<JobRecord>>,
    persist: Option<mpsc::UnboundedSender<JobRecord>>,
}

/// How many finished jobs the board keeps.
const JOB_BOARD_SIZE: usize = 200;

impl JobBoard {
    /// A board that also writes every job change to `store`; the returned task ends
    /// once the board is dropped and every change is written.
    pub fn persistent(store: Arc<portwatch_stores::EmbeddedStore>) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<JobRecord>();
        let writer = tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
                let rows: Vec<portwatch_stores::StoredJob> = batch
                    .iter()
                    .map(|r| portwatch_stores::StoredJob {
                        id: r.job.to_string(),
                        started_at: r.started_at,
                        data: serde_json::to_string(r).unwrap_or_default(),
                    })
                    .collect();
                let store = store.clone();
                match tokio::task::spawn_blocking(move || store.put_jobs(&rows)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => tracing::warn!(error = %err, "cannot record jobs in the state store"),
                    Err(err) => tracing::warn!(error = %err, "job recording task failed"),
                }
            }
        });
        let board = Self {
            jobs: Mutex::default(),
            persist: Some(tx),
        };
        (board, writer)
    }

    /// Record `record` (a pass), replacing what the board has of it.
    pub fn put(&self, record: JobRecord) {
        self.persist(&record);
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        match jobs.iter_mut().find(|r| r.job == record.job) {
            Some(known) => *known = record,
            None => {
                jobs.push_front(record);
                jobs.truncate(JOB_BOARD_SIZE);
            }
        }
    }

    fn update(&self, job: JobId, f: impl FnOnce(&mut JobRecord)) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(record) = jobs.iter_mut().find(|r| r.job == job) {
            f(record);
            self.persist(record);
        }
    }

    fn start(&self, record: JobRecord) {
        self.persist(&record);
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.push_front(record);
        jobs.truncate(JOB_BOARD_SIZE);
    }

    fn persist(&self, record: &JobRecord) {
        if let Some(tx) = &self.persist {
            let _ = tx.send(record.clone());
        }
    }

    /// A copy of the board.
    pub fn list(&self) -> Vec<JobRecord> {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// Embedded: passes on the job board (and so in the state store).
#[derive(Debug, Clone)]
pub struct BoardPasses(pub Arc<JobBoard>);

impl crate::PassLog for BoardPasses {
    fn record(&self, pass: &crate::board::Pass, overruns: u64, error: Option<&str>) {
        self.0.put(JobRecord {
            job: pass.pass,
            task: pass.task,
            state: pass.state(),
            started_at: pass.started_at,
            finished_at: pass.finished_at,
            targets: pass.addresses,
            ports: pass.ports.clone(),
            hosts_done: pass.hosts,
            open_found: pass.open,
            error: error.map(str::to_string),
            chunk: None,
            progress: Some(PassProgress {
                chunks: pass.chunks,
                ended: pass.done + pass.failed,
                overruns,
            }),
        });
    }
}

/// What a job needs from the process around it.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// Name of this probe node.
    pub node: String,
    /// The shared port scanner.
    pub scanner: Arc<Scanner>,
    /// The liveness pinger.
    pub pinger: Arc<Pinger>,
    /// The asset scope.
    pub scope: Arc<Scope>,
    /// Where events go.
    pub appender: Appender,
    /// Where jobs are listed.
    pub board: Arc<JobBoard>,
    /// Service and panel detection (tasks 3 and 5).
    pub detect: portwatch_probes::detect::DetectOptions,
    /// Ports examined at once by a detection job.
    pub detect_concurrency: usize,
    /// The risk policy a detection is classified by.
    pub policy: Arc<portwatch_projections::Policy>,
}

/// The risk class `policy` gives what detection found on a port.
pub fn detection_class(
    policy: &portwatch_projections::Policy,
    d: &portwatch_probes::detect::Detection,
) -> portwatch_events::RiskClass {
    policy.classify(d.addr.port(), Some(&d.service), d.high_risk_panel)
}

/// One job to run.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// Job id (the `job` field of its events).
    pub job: JobId,
    /// Task.
    pub task: Task,
    /// Target addresses.
    pub targets: Vec<IpAddr>,
    /// Ports per target.
    pub ports: PortSet,
    /// The pass and chunk it is an attempt of, if it is one.
    pub chunk: Option<ChunkRef>,
}

impl JobSpec {
    /// The attempt `lease` is of its chunk.
    pub fn of_lease(lease: crate::board::Lease) -> Self {
        let targets = portwatch_probes::TargetSet::from_nets(lease.chunk.targets);
        Self {
            job: lease.attempt,
            task: lease.task,
            targets: targets.iter().collect(),
            ports: lease.chunk.ports,
            chunk: Some(ChunkRef {
                pass: lease.pass,
                index: lease.index,
                chunks: lease.chunks,
                try_no: lease.try_no,
            }),
        }
    }
}

/// Run a job to the end; its events are in the log when this returns `Ok`.
pub async fn run_job(ctx: &JobContext, spec: JobSpec) -> anyhow::Result<JobRecord> {
    let origin = Origin {
        node: ctx.node.clone(),
        job: spec.job,
        task: spec.task,
    };
    ctx.board.start(JobRecord {
        job: origin.job,
        task: spec.task,
        state: JobState::Running,
        started_at: Utc::now(),
        finished_at: None,
        targets: spec.targets.len() as u64,
        ports: spec.ports.to_string(),
        hosts_done: 0,
        open_found: 0,
        error: None,
        chunk: spec.chunk,
        progress: None,
    });
    tracing::info!(job = %origin.job, task = %spec.task, targets = spec.targets.len(), ports = spec.ports.len(), "job started");
    let result = match spec.task {
        Task::Liveness => run_liveness(ctx, &origin, &spec).await,
        Task::ServiceDetection | Task::AdminPanels => run_detection(ctx, &origin, &spec).await,
        _ => run_port_scan(ctx, &origin, &spec).await,
    };
    let finished = Utc::now();
    match &result {
        Ok((hosts, open)) => {
            ctx.board.update(origin.job, |r| {
                r.state = JobState::Done;
                r.finished_at = Some(finished);
                r.hosts_done = *hosts;
                r.open_found = *open;
            });
            metrics::counter!("portwatch_scans_total", "task" => spec.task.as_str()).increment(1);
            tracing::info!(job = %origin.job, task = %spec.task, hosts, open, "job finished");
        }
        Err(err) => {
            let message = format!("{err:#}");
            ctx.board.update(origin.job, |r| {
                r.state = JobState::Failed;
                r.finished_at = Some(finished);
                r.error = Some(message.clone());
            });
            metrics::counter!("portwatch_jobs_failed_total", "task" => spec.task.as_str()).increment(1);
            tracing::error!(job = %origin.job, task = %spec.task, error = %message, "job failed");
        }
    }
    result?;
    ctx.board
        .list()
        .into_iter()
        .find(|r| r.job == origin.job)
        .ok_or_else(|| anyhow::anyhow!("job {} vanished from the board", origin.job))
}

/// Most host results appended to the log in one batch.
const APPEND_BATCH: usize = 1024;

/// The next host results: one as soon as it comes, with those already waiting
/// behind it (up to [`APPEND_BATCH`]): a fast scan appends in batches (one write
/// for many hosts), a slow one host by host, without waiting. None at the end.
async fn next_batch<T>(rx: &mut mpsc::Receiver<T>) -> Option<Vec<T>> {
    let first = rx.recv().await?;
    let mut batch = vec![first];
    while batch.len() < APPEND_BATCH {
        match rx.try_recv() {
            Ok(more) => batch.push(more),
            Err(_) => break,
        }
    }
    Some(batch)
}

async fn run_port_scan(ctx: &JobContext, origin: &Origin, spec: &JobSpec) -> anyhow::Result<(u64, u64)> {
    let (tx, mut rx) = mpsc::channel::<HostResult>(64);
    let scanner = ctx.scanner.clone();
    let scope = ctx.scope.clone();
    let ports = spec.ports.clone();
    let targets = spec.targets.clone();
    let scan = tokio::spawn(async move {
        let request = ScanRequest {
            ports: &ports,
            scope: &scope,
            record_outcomes: false,
            progress: Arc::new(ScanProgress::default()),
            canaries: true,
        };
        scanner.scan(targets.into_iter(), request, tx).await
    });
    let (mut hosts, mut open) = (0u64, 0u64);
    while let Some(batch) = next_batch(&mut rx).await {
        let mut events = Vec::new();
        for result in &batch {
            hosts += 1;
            open += result.open.len() as u64;
            events.extend(result.to_events(origin));
        }
        ctx.appender.append(events).await?;
        ctx.board.update(origin.job, |r| {
            r.hosts_done = hosts;
            r.open_found = open;
        });
    }
    scan.await??;
    Ok((hosts, open))
}

/// Tasks 3 and 5: detect what runs on each (target, port) of the job, which the
/// scheduler built from ports known open; one port_detail event per port. Task 3
/// takes ports not identified yet (or not for `redetect_after`), task 5 the web
/// ports, to look for admin panels again at its cadence.
async fn run_detection(ctx: &JobContext, origin: &Origin, spec: &JobSpec) -> anyhow::Result<(u64, u64)> {
    // Both tasks run the panel rules on web ports (`[service] panels`): a detection
    // is whole, so a later one never drops the panels an earlier one found.
    let opts = Arc::new(ctx.detect.clone());
    let addrs: Vec<std::net::SocketAddr> = spec
        .targets
        .iter()
        .filter(|ip| ctx.scope.allows(**ip))
        .flat_map(|ip| {
            spec.ports
                .iter()
                .map(move |port| std::net::SocketAddr::new(*ip, port))
        })
        .collect();
    let slots = Arc::new(tokio::sync::Semaphore::new(ctx.detect_concurrency.max(1)));
    let mut running = tokio::task::JoinSet::new();
    for addr in addrs {
        let (opts, slots) = (opts.clone(), slots.clone());
        running.spawn(async move {
            let _slot = slots.acquire_owned().await;
            portwatch_probes::detect::detect(addr, &opts).await
        });
    }
    let (mut done, mut identified) = (0u64, 0u64);
    while let Some(joined) = running.join_next().await {
        let detection = joined?;
        done += 1;
        if detection.service != "unknown" {
            identified += 1;
        }
        let class = detection_class(&ctx.policy, &detection);
        metrics::counter!("portwatch_detections_total", "class" => class.as_str()).increment(1);
        let event = Event::new(
            origin,
            Utc::now(),
            Observation::PortDetail(detection.to_detail(None, class)),
        );
        ctx.appender.append(vec![event]).await?;
        ctx.board.update(origin.job, |r| {
            r.hosts_done = done;
            r.open_found = identified;
        });
    }
    Ok((done, identified))
}

async fn run_liveness(ctx: &JobContext, origin: &Origin, spec: &JobSpec) -> anyhow::Result<(u64, u64)> {
    let (tx, mut rx) = mpsc::channel(64);
    let pinger = ctx.pinger.clone();
    let scope = ctx.scope.clone();
    let ports = spec.ports.clone();
    let targets = spec.targets.clone();
    let ping = tokio::spawn(async move { pinger.ping(targets, (&ports, &scope), tx).await });
    let mut hosts = 0u64;
    while let Some(batch) = next_batch(&mut rx).await {
        hosts += batch.len() as u64;
        let now = Utc::now();
        let events = batch
            .into_iter()
            .map(|verdict| Event::new(origin, now, Observation::HostLiveness(verdict)))
            .collect();
        ctx.appender.append(events).await?;
    }
    ping.await??;
    Ok((hosts, 0))
}
