//! What the API returns: the projected rows as the folds made them, each with the
//! asset match of its address (owner, system, zone).

use std::net::IpAddr;

use portwatch_events::{Task, Timestamp};
use portwatch_projections::{
    Alert, AssetMatch, Assets, DeliveryState, Episode, HostRow, Ledger, NotificationKind, PortRow,
};
use serde::Serialize;

/// A row with the asset match of its address, flattened into one JSON object.
#[derive(Debug, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ScheduledTask {
    /// The task.
    pub task: Task,
    /// The cadence it runs at, or none when it does not run.
    pub cadence: Option<String>,
    /// The config's cadence for it (none: off).
    pub configured: Option<String>,
    /// The admin who changed the cadence over the config's, if one did.
    pub set_by: Option<String>,
    /// When.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub set_at: Option<Timestamp>,
    /// Whether this build runs it.
    pub implemented: bool,
}

/// A notification that reported an alert, with its deliveries so far.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct NotificationView {
    /// Its id (the idempotency key channels saw).
    pub id: String,
    /// firing, reminder, escalation or resolved.
    pub kind: NotificationKind,
    /// When it was decided.
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// One entry per channel that took it: attempts, outcome, last status.
    pub deliveries: Vec<DeliveryState>,
}

/// An alert with its asset match and the notifications that told it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AlertView {
    /// The alert and its asset.
    #[serde(flatten)]
    pub alert: WithAsset<Alert>,
    /// Notifications that reported it, oldest first (none: not told, or recorded
    /// without paging).
    pub notifications: Vec<NotificationView>,
}

/// Alerts joined with their assets and, from the ledger, their notifications.
pub fn alert_views(alerts: Vec<Alert>, assets: &Assets, ledger: &Ledger) -> Vec<AlertView> {
    alerts
        .into_iter()
        .map(|a| {
            let notifications = ledger
                .for_alert(&a.id)
                .map(|r| NotificationView {
                    id: r.notification.id.clone(),
                    kind: r.notification.kind,
                    at: r.notification.at,
                    deliveries: r.deliveries.values().cloned().collect(),
                })
                .collect();
            AlertView {
                alert: WithAsset::join(a, assets),
                notifications,
            }
        })
        .collect()
}

/// A port row with its asset match and the approval that silences it, if any.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PortView {
    /// The row and its asset.
    #[serde(flatten)]
    pub port: WithAsset<PortRow>,
    /// The approval in force for this exposure (it still serves what was approved).
    pub approval: Option<String>,
}

/// Port rows joined with their assets and, from the ledger, their approvals.
pub fn port_views(rows: Vec<PortRow>, assets: &Assets, ledger: &Ledger) -> Vec<PortView> {
    rows.into_iter()
        .map(|row| {
            let approval = portwatch_projections::approvals::approved(ledger.approvals().values(), &row);
            PortView {
                port: WithAsset::join(row, assets),
                approval,
            }
        })
        .collect()
}
