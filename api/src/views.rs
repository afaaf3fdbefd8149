//! What the API returns: the projected rows as the folds made them, each with the
//! asset match of its address (owner, system, zone).

use portwatch_events::Task;
use portwatch_projections::{Alert, AssetMatch, Assets, Episode, HostRow, PortRow};
use serde::Serialize;

/// A port row with its asset. Its `risk` is the fold's policy class.
#[derive(Debug, Serialize)]
pub struct PortView {
    /// The projected row.
    #[serde(flatten)]
    pub row: PortRow,
    /// Owner, system and zone.
    #[serde(flatten)]
    pub asset: AssetMatch,
}

/// An episode with its asset.
#[derive(Debug, Serialize)]
pub struct EpisodeView {
    /// The projected episode.
    #[serde(flatten)]
    pub row: Episode,
    /// Owner, system and zone.
    #[serde(flatten)]
    pub asset: AssetMatch,
}

/// A host with its asset.
#[derive(Debug, Serialize)]
pub struct HostView {
    /// The projected host.
    #[serde(flatten)]
    pub row: HostRow,
    /// Owner, system and zone.
    #[serde(flatten)]
    pub asset: AssetMatch,
}

/// An alert with its asset.
#[derive(Debug, Serialize)]
pub struct AlertView {
    /// The alert record.
    #[serde(flatten)]
    pub row: Alert,
    /// Owner, system and zone.
    #[serde(flatten)]
    pub asset: AssetMatch,
}

/// Rows of one kind, each joined with its asset.
pub(crate) fn with_assets<R, V>(
    rows: Vec<R>,
    assets: &Assets,
    ip: impl Fn(&R) -> std::net::IpAddr,
    view: impl Fn(R, AssetMatch) -> V,
) -> Vec<V> {
    rows.into_iter()
        .map(|row| {
            let asset = assets.matching(ip(&row));
            view(row, asset)
        })
        .collect()
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
