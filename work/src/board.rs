//! The chunk board: every unfinished pass, its chunks, and who holds which.
//!
//! One board per deployment, the same code in both: the embedded process's worker
//! pool takes chunks from it directly; in the scale-out deployment the leading
//! control instance holds it and hands chunks to the probe nodes of each zone.
//!
//! - **Lanes.** A chunk is taken by priority: liveness and high-risk first, then
//!   the detection tasks, then the full sweeps; oldest first within a lane. A full
//!   sweep is many chunks, so a node yields to a high-risk chunk between two of
//!   them: a high-risk pass waits at most one chunk.
//! - **Leases.** A taken chunk is leased to one node until a deadline, renewed by
//!   its heartbeats. A chunk whose lease ran out (a dead or hung node) goes back to
//!   the front of its lane and is taken again, up to [`Board::MAX_TRIES`] times.
//!   What the stale holder still sends is accepted (events are idempotent): if it
//!   finishes first, the chunk is done.
//! - **No pile-up.** A task has at most one unfinished pass per zone: a new one is
//!   refused as an overrun ([`Overrun`]) until the last chunk of the old one is done.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use portwatch_events::{JobId, Task};
use serde::{Deserialize, Serialize};

use crate::chunk::Chunk;

/// The lanes, most urgent first.
pub const LANES: usize = 3;

/// A task's lane: 0 liveness and high-risk ports, 1 the detection tasks (few
/// targets: the ports known open), 2 the full sweeps.
pub fn lane(task: Task) -> usize {
    match task {
        Task::Liveness | Task::HighRiskPorts | Task::OfflineHighRiskPorts | Task::Adhoc => 0,
        Task::PortRecheck | Task::ServiceDetection | Task::AdminPanels => 1,
        Task::FullPorts | Task::OfflineFullPorts | Task::AllAssetsFullPorts => 2,
    }
}

/// State of a pass or of a chunk attempt (a job of the job list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Still scanning.
    Running,
    /// Finished.
    Done,
    /// Stopped by an error.
    Failed,
}

impl JobState {
    /// As the job list says it: `running`, `done` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }
}

/// A pass: one run of a task over a zone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pass {
    /// Its id.
    pub pass: JobId,
    /// The task.
    pub task: Task,
    /// The zone.
    pub zone: String,
    /// Addresses of the whole pass.
    pub addresses: u64,
    /// The ports its chunks probe, together.
    pub ports: String,
    /// Chunks in all.
    pub chunks: u32,
    /// Chunks finished well.
    pub done: u32,
    /// Chunks that failed (an error, or no node finished them in time).
    pub failed: u32,
    /// Hosts the finished chunks covered.
    pub hosts: u64,
    /// Open ports (or identified services) they found.
    pub open: u64,
    /// When it was issued.
    pub started_at: DateTime<Utc>,
    /// When its last chunk ended.
    pub finished_at: Option<DateTime<Utc>>,
}

impl Pass {
    /// Whether every chunk ended.
    pub fn finished(&self) -> bool {
        self.done + self.failed >= self.chunks
    }

    /// Running, done, or failed (ended with a chunk failed).
    pub fn state(&self) -> JobState {
        match (self.finished(), self.failed) {
            (false, _) => JobState::Running,
            (true, 0) => JobState::Done,
            (true, _) => JobState::Failed,
        }
    }
}

/// A new pass refused: the task's previous pass in the zone is still running.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overrun {
    /// The unfinished pass.
    pub running: Box<Pass>,
}

impl std::fmt::Display for Overrun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = &self.running;
        write!(
            f,
            "overrun: the previous {} pass in zone {} ({}) is unfinished, {} of {} chunks done since {}",
            p.task,
            p.zone,
            p.pass,
            p.done + p.failed,
            p.chunks,
            p.started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    }
}

/// A chunk leased to a node: what to run, and the attempt's id (the `job` of its
/// events and of its row in the job list).
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    /// This attempt.
    pub attempt: JobId,
    /// The pass it belongs to.
    pub pass: JobId,
    /// The task.
    pub task: Task,
    /// The zone.
    pub zone: String,
    /// The chunk's place in the pass (0-based).
    pub index: u32,
    /// Chunks of the pass.
    pub chunks: u32,
    /// Which try of the chunk this is (1 the first).
    pub try_no: u32,
    /// The node holding it.
    pub node: String,
    /// The chunk.
    pub chunk: Chunk,
}

/// How a chunk attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Finished: hosts covered, open ports found.
    Done {
        /// Hosts covered.
        hosts: u64,
        /// Open ports (or identified services) found.
        open: u64,
    },
    /// Stopped by an error.
    Failed(String),
}

/// A lease that ran out.
#[derive(Debug, Clone, PartialEq)]
pub struct Expired {
    /// The attempt.
    pub attempt: JobId,
    /// The node that held it.
    pub node: String,
    /// Its pass and chunk.
    pub pass: JobId,
    /// The chunk.
    pub index: u32,
    /// Whether the chunk waits to be taken again (else it failed: out of tries).
    pub requeued: bool,
    /// The pass, when that failure ended it.
    pub ended: Option<Pass>,
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Pending,
    Leased(JobId),
    Done,
    Failed,
}

#[derive(Debug)]
struct PassState {
    pass: Pass,
    chunks: Vec<Chunk>,
    states: Vec<State>,
    tries: Vec<u32>,
}

#[derive(Debug)]
struct Held {
    pass: JobId,
    index: u32,
    node: String,
    deadline: Instant,
}

/// The board.
#[derive(Debug)]
pub struct Board {
    lease_for: Duration,
    passes: HashMap<JobId, PassState>,
    current: HashMap<(Task, String), JobId>,
    queues: HashMap<String, [VecDeque<(JobId, u32)>; LANES]>,
    leases: HashMap<JobId, Held>,
    /// Attempts whose lease ran out, while their pass runs: what they still report
    /// is accepted.
    stale: HashMap<JobId, (JobId, u32)>,
}

impl Board {
    /// Tries of one chunk before it fails.
    pub const MAX_TRIES: u32 = 3;

    /// A board whose leases last `lease_for` unless renewed.
    pub fn new(lease_for: Duration) -> Self {
        Self {
            lease_for,
            passes: HashMap::new(),
            current: HashMap::new(),
            queues: HashMap::new(),
            leases: HashMap::new(),
            stale: HashMap::new(),
        }
    }

    /// How long a lease lasts unless renewed.
    pub fn lease_for(&self) -> Duration {
        self.lease_for
    }

    /// Put a pass of `task` over `zone` on the board, cut into `chunks`; refused
    /// while the task's previous pass there is unfinished. A pass of no chunk is
    /// finished at once.
    pub fn submit(
        &mut self,
        task: Task,
        zone: &str,
        chunks: Vec<Chunk>,
        now: DateTime<Utc>,
    ) -> Result<Pass, Overrun> {
        if let Some(running) = self
            .current
            .get(&(task, zone.to_string()))
            .and_then(|id| self.passes.get(id))
        {
            return Err(Overrun {
                running: Box::new(running.pass.clone()),
            });
        }
        let n = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
        let pass = Pass {
            pass: JobId::new(),
            task,
            zone: zone.to_string(),
            addresses: chunks.iter().map(|c| c.addresses).sum(),
            ports: portwatch_events::PortSet::from_ranges(
                chunks
                    .iter()
                    .flat_map(|c| c.ports.ranges().iter().copied())
                    .collect(),
            )
            .to_string(),
            chunks: n,
            done: 0,
            failed: 0,
            hosts: 0,
            open: 0,
            started_at: now,
            finished_at: (n == 0).then_some(now),
        };
        if n == 0 {
            return Ok(pass);
        }
        let queue = &mut self.queues.entry(zone.to_string()).or_default()[lane(task)];
        queue.extend((0..n).map(|i| (pass.pass, i)));
        self.current.insert((task, zone.to_string()), pass.pass);
        self.passes.insert(
            pass.pass,
            PassState {
                pass: pass.clone(),
                states: vec![State::Pending; chunks.len()],
                tries: vec![0; chunks.len()],
                chunks,
            },
        );
        Ok(pass)
    }

    /// The most urgent chunk of `zone` waiting, leased to `node` until `now` plus
    /// the lease time.
    pub fn take(&mut self, zone: &str, node: &str, now: Instant) -> Option<Lease> {
        let queues = self.queues.get_mut(zone)?;
        for queue in queues.iter_mut() {
            while let Some((pass, index)) = queue.pop_front() {
                let Some(p) = self.passes.get_mut(&pass) else {
                    continue;
                };
                let i = index as usize;
                if p.states[i] != State::Pending {
                    continue;
                }
                let attempt = JobId::new();
                p.states[i] = State::Leased(attempt);
                p.tries[i] += 1;
                self.leases.insert(
                    attempt,
                    Held {
                        pass,
                        index,
                        node: node.to_string(),
                        deadline: now + self.lease_for,
                    },
                );
                return Some(Lease {
                    attempt,
                    pass,
                    task: p.pass.task,
                    zone: zone.to_string(),
                    index,
                    chunks: p.pass.chunks,
                    try_no: p.tries[i],
                    node: node.to_string(),
                    chunk: p.chunks[i].clone(),
                });
            }
        }
        None
    }

    /// The holder of `attempt` is alive and at it: its lease runs until `now`
    /// plus the lease time. False when it holds no lease (it ran out).
    pub fn renew(&mut self, attempt: JobId, now: Instant) -> bool {
        match self.leases.get_mut(&attempt) {
            Some(held) => {
                held.deadline = now + self.lease_for;
                true
            }
            None => false,
        }
    }

    /// An attempt ended. The chunk is done (or failed) unless another attempt
    /// finished it already; the pass, when this ended it.
    pub fn finish(&mut self, attempt: JobId, outcome: &Outcome, now: DateTime<Utc>) -> Option<Pass> {
        let (pass, index) = match self.leases.remove(&attempt) {
            Some(held) => (held.pass, held.index),
            None => self.stale.remove(&attempt)?,
        };
        let p = self.passes.get_mut(&pass)?;
        let i = index as usize;
        match (&p.states[i], outcome) {
            (State::Done | State::Failed, _) => return None,
            // A stale attempt's failure leaves the chunk to the attempt holding it now.
            (State::Leased(holder), Outcome::Failed(_)) if *holder != attempt => return None,
            (State::Pending, Outcome::Failed(_)) => return None,
            (_, Outcome::Done { hosts, open }) => {
                p.states[i] = State::Done;
                p.pass.done += 1;
                p.pass.hosts += hosts;
                p.pass.open += open;
            }
            (_, Outcome::Failed(_)) => {
                p.states[i] = State::Failed;
                p.pass.failed += 1;
            }
        }
        self.ended(pass, now)
    }

    /// The pass, removed from the board if every chunk ended.
    fn ended(&mut self, pass: JobId, now: DateTime<Utc>) -> Option<Pass> {
        if !self.passes.get(&pass)?.pass.finished() {
            return None;
        }
        let mut p = self.passes.remove(&pass)?;
        p.pass.finished_at = Some(now);
        self.current.remove(&(p.pass.task, p.pass.zone.clone()));
        self.stale.retain(|_, (of, _)| *of != pass);
        Some(p.pass)
    }

    /// Leases whose deadline passed by `now`: each chunk goes back to the front of
    /// its lane, or fails once tried [`Board::MAX_TRIES`] times.
    pub fn expire(&mut self, now: Instant, wall: DateTime<Utc>) -> Vec<Expired> {
        let gone: Vec<JobId> = self
            .leases
            .iter()
            .filter(|(_, h)| h.deadline <= now)
            .map(|(a, _)| *a)
            .collect();
        let mut out = Vec::new();
        for attempt in gone {
            let Some(held) = self.leases.remove(&attempt) else {
                continue;
            };
            let Some(p) = self.passes.get_mut(&held.pass) else {
                continue;
            };
            let i = held.index as usize;
            if p.states[i] != State::Leased(attempt) {
                continue;
            }
            self.stale.insert(attempt, (held.pass, held.index));
            let requeued = p.tries[i] < Self::MAX_TRIES;
            if requeued {
                p.states[i] = State::Pending;
                let (task, zone) = (p.pass.task, p.pass.zone.clone());
                self.queues.entry(zone).or_default()[lane(task)].push_front((held.pass, held.index));
            } else {
                p.states[i] = State::Failed;
                p.pass.failed += 1;
            }
            let ended = if requeued {
                None
            } else {
                self.ended(held.pass, wall)
            };
            out.push(Expired {
                attempt,
                node: held.node,
                pass: held.pass,
                index: held.index,
                requeued,
                ended,
            });
        }
        out
    }

    /// The pass an attempt (current or stale) belongs to.
    pub fn pass_of(&self, attempt: JobId) -> Option<JobId> {
        self.leases
            .get(&attempt)
            .map(|h| h.pass)
            .or_else(|| self.stale.get(&attempt).map(|(p, _)| *p))
    }

    /// The attempts `node` holds.
    pub fn held_by(&self, node: &str) -> Vec<JobId> {
        let mut held: Vec<JobId> = self
            .leases
            .iter()
            .filter(|(_, h)| h.node == node)
            .map(|(a, _)| *a)
            .collect();
        held.sort();
        held
    }

    /// Chunks waiting in `zone`, per lane.
    pub fn waiting(&self, zone: &str) -> [usize; LANES] {
        let mut n = [0; LANES];
        if let Some(queues) = self.queues.get(zone) {
            for (lane, q) in queues.iter().enumerate() {
                n[lane] = q
                    .iter()
                    .filter(|(pass, i)| {
                        self.passes
                            .get(pass)
                            .is_some_and(|p| p.states[*i as usize] == State::Pending)
                    })
                    .count();
            }
        }
        n
    }

    /// The unfinished passes.
    pub fn passes(&self) -> Vec<Pass> {
        let mut all: Vec<Pass> = self.passes.values().map(|p| p.pass.clone()).collect();
        all.sort_by_key(|p| p.started_at);
        all
    }

    /// The unfinished pass of `task` in `zone`.
    pub fn running(&self, task: Task, zone: &str) -> Option<&Pass> {
        self.passes
            .get(self.current.get(&(task, zone.to_string()))?)
            .map(|p| &p.pass)
    }
}

#[cfg(test)]
mod tests {
    use portwatch_events::PortSet;

    use super::*;

    fn chunks(n: usize) -> Vec<Chunk> {
        (0..n)
            .map(|i| Chunk {
                targets: vec![ipnet::IpNet::from(std::net::IpAddr::from([10, 0, 0, i as u8]))],
                addresses: 1,
                ports: PortSet::parse("1-10").expect("ports"),
            })
            .collect()
    }

    fn done() -> Outcome {
        Outcome::Done { hosts: 1, open: 2 }
    }

    #[test]
    fn high_risk_chunks_are_taken_before_the_rest_of_a_full_sweep() {
        let mut b = Board::new(Duration::from_secs(10));
        let (t0, w0) = (Instant::now(), Utc::now());
        let full = b.submit(Task::FullPorts, "a", chunks(5), w0).expect("issued");
        let first = b.take("a", "n1", t0).expect("a chunk");
        assert_eq!(
            (first.pass, first.index, first.task),
            (full.pass, 0, Task::FullPorts)
        );
        let high = b.submit(Task::HighRiskPorts, "a", chunks(2), w0).expect("issued");
        // The node yields between two chunks of the sweep.
        let next = b.take("a", "n1", t0).expect("a chunk");
        assert_eq!((next.pass, next.index), (high.pass, 0));
        let next = b.take("a", "n2", t0).expect("a chunk");
        assert_eq!((next.pass, next.index), (high.pass, 1));
        assert_eq!(b.take("a", "n2", t0).expect("a chunk").task, Task::FullPorts);
        assert_eq!(b.waiting("a"), [0, 0, 3]);
        assert!(b.take("b", "n3", t0).is_none(), "another zone has nothing");
    }

    #[test]
    fn a_pass_is_done_when_its_chunks_are_and_the_next_is_refused_until_then() {
        let mut b = Board::new(Duration::from_secs(10));
        let (t0, w0) = (Instant::now(), Utc::now());
        let pass = b.submit(Task::HighRiskPorts, "a", chunks(2), w0).expect("issued");
        let overrun = b
            .submit(Task::HighRiskPorts, "a", chunks(2), w0)
            .expect_err("unfinished");
        assert_eq!(overrun.running.pass, pass.pass);
        assert!(overrun.to_string().contains("0 of 2 chunks done"), "{overrun}");
        // Another zone, or another task, is not held back.
        b.submit(Task::HighRiskPorts, "b", chunks(1), w0)
            .expect("other zone");
        b.submit(Task::Liveness, "a", chunks(1), w0).expect("other task");
        let (x, y) = (
            b.take("a", "n1", t0).expect("chunk"),
            b.take("a", "n2", t0).expect("chunk"),
        );
        assert_eq!(b.finish(x.attempt, &done(), w0), None, "one chunk left");
        let ended = b
            .finish(y.attempt, &Outcome::Failed("boom".into()), w0)
            .expect("ended");
        assert_eq!((ended.done, ended.failed, ended.hosts, ended.open), (1, 1, 1, 2));
        assert!(ended.finished_at.is_some());
        assert!(b.running(Task::HighRiskPorts, "a").is_none());
        b.submit(Task::HighRiskPorts, "a", chunks(1), w0)
            .expect("the next pass");
        // Nothing of a pass with no chunk waits.
        let empty = b.submit(Task::FullPorts, "a", Vec::new(), w0).expect("empty");
        assert!(empty.finished() && empty.finished_at.is_some());
        assert!(b.running(Task::FullPorts, "a").is_none());
    }

    #[test]
    fn a_dead_nodes_chunk_is_leased_again_and_the_stale_result_still_counts() {
        let mut b = Board::new(Duration::from_secs(10));
        let (t0, w0) = (Instant::now(), Utc::now());
        let pass = b.submit(Task::FullPorts, "a", chunks(2), w0).expect("issued");
        let dead = b.take("a", "n1", t0).expect("chunk");
        let alive = b.take("a", "n2", t0).expect("chunk");
        assert_eq!(b.held_by("n1"), vec![dead.attempt]);
        // n2 renews; n1 says nothing.
        assert!(b.renew(alive.attempt, t0 + Duration::from_secs(8)));
        let expired = b.expire(t0 + Duration::from_secs(11), w0);
        assert_eq!(expired.len(), 1);
        assert_eq!((expired[0].attempt, expired[0].requeued), (dead.attempt, true));
        assert!(b.held_by("n1").is_empty(), "a stale node holds nothing");
        assert!(!b.renew(dead.attempt, t0), "its lease is gone");
        let again = b
            .take("a", "n2", t0 + Duration::from_secs(11))
            .expect("leased again");
        assert_eq!((again.index, again.try_no), (dead.index, 2));
        assert_ne!(again.attempt, dead.attempt);
        // The stale attempt finishes first after all: its result counts, once.
        assert_eq!(b.finish(dead.attempt, &done(), w0), None);
        assert_eq!(b.finish(again.attempt, &done(), w0), None, "counted already");
        let ended = b.finish(alive.attempt, &done(), w0).expect("ended");
        assert_eq!(
            (ended.pass, ended.done, ended.failed, ended.hosts),
            (pass.pass, 2, 0, 2)
        );
    }

    #[test]
    fn a_chunk_nobody_finishes_fails_after_its_tries() {
        let mut b = Board::new(Duration::from_secs(1));
        let (mut t, w0) = (Instant::now(), Utc::now());
        b.submit(Task::HighRiskPorts, "a", chunks(1), w0).expect("issued");
        for try_no in 1..=Board::MAX_TRIES {
            let lease = b.take("a", "n1", t).expect("chunk");
            assert_eq!(lease.try_no, try_no);
            t += Duration::from_secs(2);
            let expired = b.expire(t, w0);
            assert_eq!(expired[0].requeued, try_no < Board::MAX_TRIES);
            if try_no == Board::MAX_TRIES {
                let ended = expired[0].ended.clone().expect("the pass ended");
                assert_eq!((ended.done, ended.failed), (0, 1));
            }
        }
        assert!(b.take("a", "n1", t).is_none());
        assert!(b.passes().is_empty());
    }
}
