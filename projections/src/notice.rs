//! A notification: one message about a group of alerts of one host, and the id
//! every delivery of it is keyed by.

use std::net::IpAddr;

use portwatch_events::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{Alert, AssetMatch, Severity};

/// Who decides notifications, in decision records.
pub const NOTIFIER: &str = "notifier";

/// Why a notification is sent.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// New exposures (or new high-risk findings) on the host.
    Firing,
    /// A high-risk exposure is still open and unapproved.
    Reminder,
    /// Still open after the escalation deadline: sent to the escalation route.
    Escalation,
    /// The exposures it reported have closed.
    Resolved,
    /// Approved exposures whose approval stopped holding (expired, or the port
    /// serves something else): findings again.
    Reopened,
    /// Approved exposures whose approval expires soon.
    Expiring,
}

impl NotificationKind {
    /// Name as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Firing => "firing",
            NotificationKind::Reminder => "reminder",
            NotificationKind::Escalation => "escalation",
            NotificationKind::Resolved => "resolved",
            NotificationKind::Reopened => "reopened",
            NotificationKind::Expiring => "expiring",
        }
    }
}

/// One message about one host's alerts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Stable id: the idempotency key of every delivery of it.
    pub id: String,
    /// Why it is sent.
    pub kind: NotificationKind,
    /// The host.
    pub ip: IpAddr,
    /// The highest severity among its alerts.
    pub severity: Severity,
    /// Who answers for the host.
    #[serde(flatten)]
    pub asset: AssetMatch,
    /// The alerts it reports, oldest first.
    pub alerts: Vec<Alert>,
    /// When it was decided.
    pub at: Timestamp,
}

/// A message about `alerts` of one host. Its id names the host, the kind and the
/// first alert (and, for reminders, the time), so deciding again from the same
/// inputs names it the same.
pub(crate) fn message(
    kind: NotificationKind,
    ip: IpAddr,
    asset: &AssetMatch,
    mut alerts: Vec<Alert>,
    now: Timestamp,
    stamp: Option<Timestamp>,
) -> Notification {
    crate::sort_alerts(&mut alerts);
    let first = alerts.first().map(|a| a.id.clone()).unwrap_or_default();
    let id = match stamp {
        Some(at) => format!("{ip}:{}:{first}:{}", kind.as_str(), at.timestamp()),
        None => format!("{ip}:{}:{first}", kind.as_str()),
    };
    Notification {
        id,
        kind,
        ip,
        severity: alerts
            .iter()
            .map(|a| a.severity)
            .max()
            .unwrap_or(Severity::Medium),
        asset: asset.clone(),
        alerts,
        at: now,
    }
}
