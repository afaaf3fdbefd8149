//! Notifications: what is sent to people about alerts. One notification reports a
//! group of alerts about one host (a new host with 30 open ports is one message),
//! and its id is the key a channel's delivery is made idempotent by.
//!
//! This module holds the record; the policy that decides when a group is sent
//! (group wait, group interval, repeat interval, resolved notices, the silent
//! baseline) is the next fold to land here.

use std::net::IpAddr;

use portwatch_events::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{Alert, AssetMatch, Severity};

/// Why a notification is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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
}

impl NotificationKind {
    /// Name as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Firing => "firing",
            NotificationKind::Reminder => "reminder",
            NotificationKind::Escalation => "escalation",
            NotificationKind::Resolved => "resolved",
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
