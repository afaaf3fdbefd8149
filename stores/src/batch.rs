//! A projector's batch: the rows one batch of events changed, each at its last
//! version, and the offsets the batch reaches. Both stores write it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use portwatch_events::Event;
use portwatch_projections::{Alert, Change, Episode, HostRow, PortKey, PortRow};

use crate::clickhouse::ObservationRow;

/// A row value with the partition and version it was written with.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    /// The row.
    pub row: T,
    /// Log partition of the events behind it.
    pub partition: u32,
    /// Offset of the last event that changed it.
    pub ver: u64,
}

/// Everything one projector batch writes: raw observations and the rows the fold
/// changed (each once, at its last version in the batch).
#[derive(Debug, Clone)]
pub struct Batch {
    /// Whether raw observation rows are kept (a store that is not the log's only
    /// copy keeps them: ClickHouse; the embedded log already is one).
    pub keep_observations: bool,
    /// Raw observation rows.
    pub observations: Vec<ObservationRow>,
    /// Changed port rows.
    pub ports: BTreeMap<PortKey, Versioned<PortRow>>,
    /// Changed episodes.
    pub episodes: BTreeMap<String, Versioned<Episode>>,
    /// Changed hosts.
    pub hosts: BTreeMap<IpAddr, Versioned<HostRow>>,
    /// New alerts.
    pub alerts: BTreeMap<String, Versioned<Alert>>,
    /// Per partition, the next offset to fold once this batch is written.
    pub next: BTreeMap<u32, u64>,
}

impl Batch {
    /// An empty batch, keeping raw observation rows or not.
    pub fn new(keep_observations: bool) -> Self {
        Self {
            keep_observations,
            observations: Vec::new(),
            ports: BTreeMap::new(),
            episodes: BTreeMap::new(),
            hosts: BTreeMap::new(),
            alerts: BTreeMap::new(),
            next: BTreeMap::new(),
        }
    }

    /// Record the event at `partition`/`offset` (`body`: the record as it was in the
    /// log) and what folding it changed.
    pub fn add(&mut self, partition: u32, offset: u64, event: &Event, body: String, changes: Vec<Change>) {
        if self.keep_observations {
            let mut row = ObservationRow::without_body(event, partition, offset);
            row.body = body;
            self.observations.push(row);
        }
        self.reached(partition, offset);
        for change in changes {
            match change {
                Change::Port(row) => {
                    self.ports.insert(
                        (row.ip, row.proto, row.port),
                        Versioned {
                            row,
                            partition,
                            ver: offset,
                        },
                    );
                }
                Change::Episode(ep) => {
                    self.episodes.insert(
                        ep.id.clone(),
                        Versioned {
                            row: ep,
                            partition,
                            ver: offset,
                        },
                    );
                }
                Change::Host(host) => {
                    self.hosts.insert(
                        host.ip,
                        Versioned {
                            row: host,
                            partition,
                            ver: offset,
                        },
                    );
                }
                Change::Alert(alert) => {
                    self.alerts.insert(
                        alert.id.clone(),
                        Versioned {
                            row: alert,
                            partition,
                            ver: offset,
                        },
                    );
                }
            }
        }
    }

    /// Record that `partition` was read up to `offset` (also for records that did
    /// not decode and changed nothing).
    pub fn reached(&mut self, partition: u32, offset: u64) {
        let next = self.next.entry(partition).or_insert(0);
        *next = (*next).max(offset + 1);
    }

    /// The alerts of this batch, to publish once its rows are written.
    pub fn new_alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.values().map(|v| &v.row)
    }

    /// Rows in the batch (observations + changed rows).
    pub fn rows(&self) -> usize {
        self.observations.len()
            + self.ports.len()
            + self.episodes.len()
            + self.hosts.len()
            + self.alerts.len()
    }

    /// True when there is nothing to write (not even an offset to move).
    pub fn is_empty(&self) -> bool {
        self.rows() == 0 && self.next.is_empty()
    }
}
