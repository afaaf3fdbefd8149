//! What the API returns: the projected rows as the folds made them, each with the
//! asset match of its address (owner, system, zone).

use std::net::IpAddr;

use portwatch_events::Task;
use portwatch_projections::{Alert, AssetMatch, Assets, Episode, HostRow, PortRow};
use serde::Serialize;

/// A row with the asset match of its address, flattened into one JSON object.
#[derive(Debug, Serialize)]
pub struct WithAsset<R> {
    /// The projected row.
    #[serde(flatten)]
    pub row: R,
    /// Owner, system and zone.
    #[serde(flatten)]
    pub asset: AssetMatch,
}

/// A row about one address.
pub trait Located {
    /// The address.
    fn ip(&self) -> IpAddr;
}

impl Located for PortRow {
    fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl Located for Episode {
    fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl Located for HostRow {
    fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl Located for Alert {
    fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl<R: Located> WithAsset<R> {
    /// `row` joined with the most specific asset of its address.
    pub fn join(row: R, assets: &Assets) -> Self {
        let asset = assets.matching(row.ip());
        Self { row, asset }
    }
}

/// Rows of one kind, each joined with its asset.
pub fn with_assets<R: Located>(rows: Vec<R>, assets: &Assets) -> Vec<WithAsset<R>> {
    rows.into_iter().map(|row| WithAsset::join(row, assets)).collect()
}

/// One monitoring task of the schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduledTask {
    /// The task.
    pub task: Task,
    /// Its cadence, or none when it is not scheduled.
    pub cadence: Option<String>,
    /// Whether this build runs it.
    pub implemented: bool,
}
