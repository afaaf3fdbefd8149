//! The scheduler: runs each monitoring task at its cadence over its target set.
//!
//! Tasks are decoupled (MISSION.md): each runs in its own loop, one failing does not
//! stop the others, and results feed the next task only through the projected state,
//! via the named target sets:
//!
//! | set        | what                                         |
//! |------------|----------------------------------------------|
//! | IP_ASSETS  | every address of the configured assets       |
//! | IP_ONLINE  | assets not known to be dead (unknown counts as online, so new assets are scanned at once) |
//! | IP_OFFLINE | assets whose last liveness check got no answer |
//! | PORT_OPEN  | ports currently open in state                |
//!
//! A run of a task is a pass per zone, cut into chunks ([`crate::chunk`])
//! and put on the work board, which refuses a pass while the task's last one in the
//! zone is unfinished: that slot is an overrun, recorded on the running pass, and
//! nothing piles up.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use portwatch_events::{JobId, PortSet, Proto, Task};
use portwatch_projections::{PortRow, PortState};
use portwatch_stores::ReadModel;
use portwatch_stores::{HostQuery, PageRequest, PortQuery};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::board::Outcome;
use crate::chunk::{Chunk, Sizing};
use crate::jobs::{run_job, JobContext, JobSpec};
use crate::Work;

/// How often a task's loop looks at its cadence again (an admin may change it).
const FOLLOW: Duration = Duration::from_secs(1);

/// Whether this build implements a task (the others are accepted in config, logged
/// once, and skipped).
pub fn implemented(task: Task) -> bool {
    task != Task::Adhoc
}

/// Embedded: the process is its own probe node; its worker takes the chunks of its
/// zone from the board, most urgent first, renews its lease while it runs one, and
/// reports how each ended.
#[derive(Debug)]
pub struct LocalPool {
    /// What jobs need.
    pub ctx: JobContext,
    /// The board.
    pub work: Arc<Work>,
    /// The zone whose chunks it takes.
    pub zone: String,
    /// Woken when a scan found open ports (see [`Scheduler::detect_now`]).
    pub detect_now: Arc<tokio::sync::Notify>,
}

impl LocalPool {
    /// Take and run chunks until `stop`.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let renew_every = self.work.lease_for() / 3;
        loop {
            if *stop.borrow() {
                return;
            }
            self.work.expire();
            let Some(lease) = self.work.take(&self.zone, &self.ctx.node) else {
                tokio::select! {
                    _ = self.work.wait(FOLLOW) => {}
                    _ = stop.changed() => return,
                }
                continue;
            };
            let (attempt, task) = (lease.attempt, lease.task);
            let spec = JobSpec::of_lease(lease);
            let run = run_job(&self.ctx, spec);
            tokio::pin!(run);
            let result = loop {
                tokio::select! {
                    r = &mut run => break Some(r),
                    _ = tokio::time::sleep(renew_every) => { self.work.renew(attempt); }
                    _ = stop.changed() => break None,
                }
            };
            match result {
                // Cut short by a stop: recorded as interrupted at the next start.
                None => return,
                Some(Ok(record)) => {
                    self.work.finish(
                        attempt,
                        &Outcome::Done {
                            hosts: record.hosts_done,
                            open: record.open_found,
                        },
                    );
                    let scan = !matches!(task, Task::Liveness | Task::ServiceDetection | Task::AdminPanels);
                    if scan && record.open_found > 0 {
                        self.detect_now.notify_one();
                    }
                }
                // Logged and on the job list by run_job.
                Some(Err(err)) => self.work.finish(attempt, &Outcome::Failed(format!("{err:#}"))),
            }
        }
    }
}

/// What the scheduler is told by the config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The asset scope (its addresses are IP_ASSETS; nothing outside it is probed).
    pub scope: portwatch_probes::Scope,
    /// Ports the liveness check tries.
    pub liveness_ports: PortSet,
    /// The high-risk port list.
    pub high_risk_ports: PortSet,
    /// Probes per second of one node.
    pub rate: f64,
    /// A service identified longer ago is identified again.
    pub redetect_after: Duration,
    /// Each running task's configured cadence.
    pub cadences: std::collections::BTreeMap<Task, Duration>,
    /// How long a chunk should take at one node's rate.
    pub chunk_target: Duration,
}

/// Builds job specs from target sets and runs the task loops.
#[derive(Clone)]
pub struct Scheduler {
    cfg: Arc<Settings>,
    /// Where target sets are read from.
    read: Arc<dyn ReadModel>,
    /// Where passes go, cut into chunks.
    work: Arc<Work>,
    /// How big chunks are.
    sizing: Sizing,
    /// Scale-out: the assets, whose zones split a pass; embedded: none (one zone).
    zones: Option<Arc<portwatch_projections::Assets>>,
    /// The last target-set facts read, used while the store is unreachable.
    last_facts: Arc<std::sync::Mutex<Option<Facts>>>,
    /// Wakes the service detection task early: a job run here found open ports, so
    /// new ones may wait to be identified (in scale-out the results arrive later,
    /// through the projector, and the cadence applies).
    detect_now: Arc<tokio::sync::Notify>,
    /// The journal folded: cadences admins changed.
    ledger: Option<portwatch_ledger::Handle>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").finish_non_exhaustive()
    }
}

type Facts = (HashSet<IpAddr>, Vec<PortRow>);

impl Scheduler {
    /// A scheduler reading target sets from `read` and putting passes on `work`:
    /// one per zone of the assets with `zones`, else one (zone `default`).
    pub fn new(
        cfg: Arc<Settings>,
        read: Arc<dyn ReadModel>,
        work: Arc<Work>,
        zones: Option<Arc<portwatch_projections::Assets>>,
    ) -> Self {
        let sizing = Sizing {
            rate: cfg.rate,
            target: cfg.chunk_target,
            max_entries: crate::chunk::MAX_ENTRIES,
        };
        Self {
            cfg,
            read,
            work,
            sizing,
            zones,
            last_facts: Default::default(),
            detect_now: Default::default(),
            ledger: None,
        }
    }

    fn assets(&self) -> Vec<IpAddr> {
        self.cfg.scope.assets().iter().collect()
    }

    /// Hosts whose last liveness check got no answer, and ports open in state. When
    /// the store cannot be read (ClickHouse restarting), the last facts read are used:
    /// monitoring goes on with slightly stale target sets rather than stopping.
    async fn facts(&self) -> anyhow::Result<Facts> {
        match self.read_facts().await {
            Ok(facts) => {
                *self.last_facts.lock().unwrap_or_else(|p| p.into_inner()) = Some(facts.clone());
                Ok(facts)
            }
            Err(err) => match self.last_facts.lock().unwrap_or_else(|p| p.into_inner()).clone() {
                Some(facts) => {
                    tracing::warn!(error = %format!("{err:#}"), "cannot read target sets; using the last ones read");
                    Ok(facts)
                }
                None => Err(err),
            },
        }
    }

    async fn read_facts(&self) -> anyhow::Result<Facts> {
        let all = PageRequest::all();
        let hosts = self.read.hosts(&HostQuery::default(), &all).await?.items;
        let open_ports = PortQuery {
            state: Some(PortState::Open),
            ..PortQuery::default()
        };
        let open = self.read.ports(&open_ports, &all).await?.items;
        let dead = hosts
            .into_iter()
            .filter(|h| h.alive == Some(false))
            .map(|h| h.ip)
            .collect();
        Ok((dead, open))
    }

    /// The jobs one run of `task` consists of (empty when there is nothing to do).
    pub async fn jobs_for(&self, task: Task) -> anyhow::Result<Vec<JobSpec>> {
        let scan = &self.cfg;
        let (dead, open) = self.facts().await?;
        let online = || -> anyhow::Result<Vec<IpAddr>> {
            Ok(self
                .assets()
                .into_iter()
                .filter(|ip| !dead.contains(ip))
                .collect())
        };
        let offline = || -> anyhow::Result<Vec<IpAddr>> {
            Ok(self.assets().into_iter().filter(|ip| dead.contains(ip)).collect())
        };
        let spec = |targets: Vec<IpAddr>, ports: PortSet| JobSpec {
            job: JobId::new(),
            task,
            targets,
            ports,
            chunk: None,
        };
        let specs = match task {
            Task::Liveness => vec![spec(self.assets(), scan.liveness_ports.clone())],
            Task::FullPorts => vec![spec(online()?, PortSet::all())],
            Task::HighRiskPorts => vec![spec(online()?, scan.high_risk_ports.clone())],
            Task::OfflineHighRiskPorts => vec![spec(offline()?, scan.high_risk_ports.clone())],
            Task::OfflineFullPorts => vec![spec(offline()?, PortSet::all())],
            Task::AllAssetsFullPorts => vec![spec(self.assets(), PortSet::all())],
            Task::PortRecheck | Task::ServiceDetection | Task::AdminPanels => {
                // PORT_OPEN (task 3: those not identified in their current
                // exposure (a port that closed and opened again may serve something
                // else now) or not for `redetect_after`; task 5: web ports),
                // grouped so that hosts with the same open ports share a job.
                let stale = chrono::Utc::now()
                    - chrono::Duration::from_std(self.cfg.redetect_after).unwrap_or(chrono::Duration::MAX);
                let wanted = |r: &PortRow| match task {
                    Task::ServiceDetection => r.detected_at.is_none_or(|at| at < stale || at < r.last_change),
                    Task::AdminPanels => matches!(r.service.as_deref(), Some("http" | "https")),
                    _ => true,
                };
                let mut by_host: BTreeMap<IpAddr, Vec<u16>> = BTreeMap::new();
                for row in open
                    .iter()
                    .filter(|r| r.proto == Proto::Tcp && self.cfg.scope.allows(r.ip) && wanted(r))
                {
                    by_host.entry(row.ip).or_default().push(row.port);
                }
                let mut groups: BTreeMap<String, (PortSet, Vec<IpAddr>)> = BTreeMap::new();
                for (ip, ports) in by_host {
                    let set = PortSet::from_ports(ports);
                    groups
                        .entry(set.to_string())
                        .or_insert_with(|| (set, Vec::new()))
                        .1
                        .push(ip);
                }
                groups
                    .into_values()
                    .map(|(ports, ips)| spec(ips, ports))
                    .collect()
            }
            Task::Adhoc => Vec::new(),
        };
        Ok(specs
            .into_iter()
            .filter(|s| !s.targets.is_empty() && !s.ports.is_empty())
            .collect())
    }

    /// Follow the cadences admins set (journal decisions folded into `ledger`)
    /// over the config's.
    pub fn with_ledger(mut self, ledger: portwatch_ledger::Handle) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// The cadence `task` runs at now: an admin's change, else the config's; none
    /// when it is off.
    fn cadence(&self, task: Task) -> Option<Duration> {
        if let Some(state) = &self.ledger {
            if let Some(change) = state.read().ledger().schedule().get(&task) {
                return match change.every.as_str() {
                    "off" => None,
                    every => humantime::parse_duration(every).ok(),
                };
            }
        }
        self.cfg.cadences.get(&task).copied()
    }

    /// Run every implemented task at its cadence until `shutdown` flips. Each runs
    /// once when it is switched on (at start, for the configured ones), then every
    /// cadence (measured from the start of the previous slot; a slot that finds the
    /// last pass unfinished is an overrun, and the next slot tries again). The cadences are looked
    /// at again every second, so an admin's change applies within one.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let mut loops = JoinSet::new();
        for &task in self.cfg.cadences.keys() {
            if !implemented(task) {
                tracing::warn!(task = %task, "task is scheduled but not implemented in this version; skipping it");
            }
        }
        for task in Task::SCHEDULED.into_iter().filter(|t| implemented(*t)) {
            let me = self.clone();
            let mut stop = shutdown.clone();
            loops.spawn(async move {
                let mut last_start = me.resumed(task).await;
                let mut announced: Option<Option<Duration>> = None;
                // Woken early (detection after a scan found ports): not a cadence
                // slot, so a pass still running then is no overrun.
                let mut woken = false;
                loop {
                    let every = me.cadence(task);
                    if announced != Some(every) {
                        match every {
                            Some(d) => tracing::info!(task = %task, cadence = %humantime::format_duration(d), "task scheduled"),
                            None if announced.is_some() => tracing::info!(task = %task, "task switched off"),
                            None => {}
                        }
                        announced = Some(every);
                    }
                    let due = every.map(|d| last_start.map_or(Duration::ZERO, |at| d.saturating_sub(at.elapsed())));
                    if due == Some(Duration::ZERO) {
                        last_start = Some(tokio::time::Instant::now());
                        tokio::select! {
                            _ = me.run_task(task, !woken) => {}
                            _ = stop.changed() => return,
                        }
                        woken = false;
                        continue;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(due.unwrap_or(FOLLOW).min(FOLLOW)) => {}
                        _ = me.detect_now.notified(), if task == Task::ServiceDetection && every.is_some() => {
                            // Give the projector a moment to fold the scan that woke us.
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            last_start = None;
                            woken = true;
                        }
                        _ = stop.changed() => return,
                    }
                    if *stop.borrow() {
                        return;
                    }
                }
            });
        }
        while loops.join_next().await.is_some() {}
    }

    /// When the task's last run started, as an instant, if the dispatcher knows
    /// one (see [`crate::PassLog::last_issued`]) within a few seconds (a store that does
    /// not answer must not hold the task back: it runs now).
    async fn resumed(&self, task: Task) -> Option<tokio::time::Instant> {
        let asked = tokio::time::timeout(Duration::from_secs(10), self.work.log().last_issued(task));
        let at = asked.await.ok().flatten()?;
        let ago = (chrono::Utc::now() - at).to_std().unwrap_or_default();
        let start = tokio::time::Instant::now().checked_sub(ago)?;
        tracing::info!(task = %task, last_issued = %at.to_rfc3339(), "resuming the task's cadence from its last run on record");
        Some(start)
    }

    /// Woken when a scan run here found open ports: service detection runs then
    /// (in scale-out the results arrive through the projector, and the cadence
    /// applies).
    pub fn detect_now(&self) -> Arc<tokio::sync::Notify> {
        self.detect_now.clone()
    }

    /// The zone of each target: its asset's (scale-out), else `default`.
    fn by_zone(&self, targets: Vec<IpAddr>) -> BTreeMap<String, Vec<IpAddr>> {
        let mut zones: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
        match &self.zones {
            None => {
                zones.insert(crate::DEFAULT_ZONE.to_string(), targets);
            }
            Some(assets) => {
                for ip in targets {
                    match assets.lookup(ip) {
                        Some(asset) => zones.entry(asset.zone.clone()).or_default().push(ip),
                        None => tracing::warn!(%ip, "target outside every asset; not scanned"),
                    }
                }
            }
        }
        zones
    }

    /// Put a pass of `task` on the board in each zone with targets, cut into
    /// chunks; `slot`: at its cadence (a pass still running then is an overrun).
    async fn run_task(&self, task: Task, slot: bool) {
        let specs = match self.jobs_for(task).await {
            Ok(specs) => specs,
            Err(err) => {
                tracing::error!(task = %task, error = %format!("{err:#}"), "cannot build target set");
                return;
            }
        };
        if specs.is_empty() {
            tracing::debug!(task = %task, "nothing to scan");
        }
        let mut chunks: BTreeMap<String, Vec<Chunk>> = BTreeMap::new();
        for spec in specs {
            for (zone, ips) in self.by_zone(spec.targets) {
                chunks
                    .entry(zone)
                    .or_default()
                    .extend(crate::chunk::split(&ips, &spec.ports, &self.sizing));
            }
        }
        for (zone, chunks) in chunks {
            // An overrun is logged, counted and recorded on the running pass.
            let _ = self.work.submit(task, &zone, chunks, slot);
        }
    }
}

/// Format a cadence for people.
pub fn cadence(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures::FutureExt;
    use portwatch_projections::{Alert, Asset, Assets, Episode, HostRow};
    use portwatch_stores::{
        AlertQuery, EpisodeQuery, EventCursor, Health, JobView, NodeView, Page, ReadFuture, StoredEvent,
        TaskRuns,
    };

    use super::*;
    use crate::board::Pass;

    /// A read model of hosts only (the scheduler's facts); the rest is empty.
    struct Hosts(Vec<HostRow>);

    fn page<T>(items: Vec<T>) -> ReadFuture<'static, Page<T>>
    where
        T: Send + 'static,
    {
        async move { Ok(Page { items, next: None }) }.boxed()
    }

    impl ReadModel for Hosts {
        fn ports<'a>(&'a self, _: &'a PortQuery, _: &'a PageRequest) -> ReadFuture<'a, Page<PortRow>> {
            page(Vec::new())
        }
        fn hosts<'a>(&'a self, _: &'a HostQuery, _: &'a PageRequest) -> ReadFuture<'a, Page<HostRow>> {
            page(self.0.clone())
        }
        fn episodes<'a>(&'a self, _: &'a EpisodeQuery, _: &'a PageRequest) -> ReadFuture<'a, Page<Episode>> {
            page(Vec::new())
        }
        fn alerts<'a>(&'a self, _: &'a AlertQuery, _: &'a PageRequest) -> ReadFuture<'a, Page<Alert>> {
            page(Vec::new())
        }
        fn observations<'a>(
            &'a self,
            _: IpAddr,
            _: Option<&'a EventCursor>,
            _: usize,
        ) -> ReadFuture<'a, Vec<StoredEvent>> {
            async { Ok(Vec::new()) }.boxed()
        }
        fn jobs(&self, _: usize) -> ReadFuture<'_, Vec<JobView>> {
            async { Ok(Vec::new()) }.boxed()
        }
        fn task_runs(&self, _: portwatch_events::Timestamp) -> ReadFuture<'_, Vec<TaskRuns>> {
            async { Ok(Vec::new()) }.boxed()
        }
        fn nodes(&self) -> ReadFuture<'_, Vec<NodeView>> {
            async { Ok(Vec::new()) }.boxed()
        }
        fn health(&self) -> ReadFuture<'_, Health> {
            async {
                Ok(Health {
                    status: "ok",
                    projection_lag: None,
                })
            }
            .boxed()
        }
    }

    /// One record of a pass: (task, zone, chunks, overruns, finished).
    type Record = (Task, String, u32, u64, bool);

    /// The passes recorded.
    #[derive(Default)]
    struct Recorded(Mutex<Vec<Record>>);

    impl crate::PassLog for Arc<Recorded> {
        fn record(&self, pass: &Pass, overruns: u64, _: Option<&str>) {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).push((
                pass.task,
                pass.zone.clone(),
                pass.chunks,
                overruns,
                pass.finished(),
            ));
        }
    }

    fn dead(ip: &str) -> HostRow {
        HostRow {
            alive: Some(false),
            ..HostRow::unseen(ip.parse().expect("ip"))
        }
    }

    #[tokio::test]
    async fn a_slot_puts_a_pass_per_zone_on_the_board_and_the_next_one_overruns() {
        let net = |cidr: &str, zone: &str| Asset {
            net: cidr.parse().expect("net"),
            owner: None,
            system: None,
            zone: zone.into(),
        };
        let assets = Arc::new(Assets::new(vec![
            net("10.0.0.0/24", "a"),
            net("10.0.1.0/25", "b"),
        ]));
        let settings = Settings {
            scope: portwatch_probes::Scope::new(
                vec![
                    "10.0.0.0/24".parse().expect("net"),
                    "10.0.1.0/25".parse().expect("net"),
                ],
                1 << 20,
            ),
            liveness_ports: PortSet::parse("22,80,443").expect("ports"),
            high_risk_ports: PortSet::parse("1-40").expect("ports"),
            rate: 100.0,
            redetect_after: Duration::from_secs(3600),
            cadences: [(Task::HighRiskPorts, Duration::from_secs(60))].into(),
            chunk_target: Duration::from_secs(10),
        };
        let recorded = Arc::new(Recorded::default());
        let work = Arc::new(Work::new(Duration::from_secs(15), Box::new(recorded.clone())));
        // Two dead hosts in zone a are not high-risk targets.
        let read = Arc::new(Hosts(vec![dead("10.0.0.1"), dead("10.0.0.2")]));
        let scheduler = Scheduler::new(Arc::new(settings), read, work.clone(), Some(assets));
        scheduler.run_task(Task::HighRiskPorts, true).await;
        // 1,000 probes a chunk: 25 hosts of 40 ports; a: 254 live hosts in 11 chunks,
        // b: 128 in 6.
        let passes = work.passes();
        let chunks: Vec<(String, u32, u64)> = passes
            .iter()
            .map(|p| (p.zone.clone(), p.chunks, p.addresses))
            .collect();
        assert_eq!(chunks, [("a".to_string(), 11, 254), ("b".to_string(), 6, 128)]);
        // The next slot finds both unfinished: an overrun each, nothing queued.
        scheduler.run_task(Task::HighRiskPorts, true).await;
        assert_eq!(work.passes().len(), 2);
        let log = recorded.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let overran: Vec<(&str, u64)> = log
            .iter()
            .filter(|r| r.3 > 0)
            .map(|r| (r.1.as_str(), r.3))
            .collect();
        assert_eq!(overran, [("a", 1), ("b", 1)]);
        // A wake-up out of slot (detection after a scan) is no overrun.
        scheduler.run_task(Task::HighRiskPorts, false).await;
        assert_eq!(
            recorded.0.lock().unwrap_or_else(|p| p.into_inner()).len(),
            log.len()
        );
        // The zone's worker takes a's chunks, most urgent first, and finishes the pass.
        while let Some(lease) = work.take("a", "n1") {
            assert!(lease
                .chunk
                .targets
                .iter()
                .all(|n| !n.contains(&"10.0.0.1".parse::<IpAddr>().expect("ip"))));
            work.finish(
                lease.attempt,
                &Outcome::Done {
                    hosts: lease.chunk.addresses,
                    open: 0,
                },
            );
        }
        let last = recorded
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last()
            .cloned();
        assert_eq!(last, Some((Task::HighRiskPorts, "a".to_string(), 11, 1, true)));
        scheduler.run_task(Task::HighRiskPorts, true).await;
        assert_eq!(work.passes().len(), 2, "a new pass in a, b still running");
    }
}
