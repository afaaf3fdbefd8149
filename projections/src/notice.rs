//! A notification: one message about a group of alerts of one host, and the id
//! every delivery of it is keyed by.

use std::net::IpAddr;

use portwatch_events::Timestamp;

use crate::{Alert, AssetMatch, Notification, NotificationKind, Severity};

/// Who decides notifications, in decision records.
pub const NOTIFIER: &str = "notifier";

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
