//! Alerts: the records of what people must hear about, derived by the fold.
//!
//! One alert per (exposure episode, kind): the episode opened, a detection found a
//! high-risk service or an admin panel on it, the episode closed. The id is the
//! episode id plus the kind, and the episode row remembers which kinds it has
//! raised, so re-detecting the same service, replaying the log or resuming from a
//! checkpoint yields the same alert, never a second one. Delivering alerts to people
//! (grouping, channels) is a later stage that reads these records.

use portwatch_events::alert::{Alert, AlertKind, Severity};
use portwatch_events::{RiskClass, Timestamp};

use crate::{Episode, PortRow};

/// The alert `kind` about `episode`, with `risk`.
pub(crate) fn raise(kind: AlertKind, risk: RiskClass, episode: &Episode, at: Timestamp) -> Alert {
    Alert {
        id: format!("{}:{}", episode.id, kind.as_str()),
        kind,
        severity: Severity::of(risk),
        risk,
        ip: episode.ip,
        proto: episode.proto,
        port: episode.port,
        episode_id: episode.id.clone(),
        at,
        baseline: kind == AlertKind::ExposureOpened && episode.last_negative_before_open.is_none(),
    }
}

/// The time a detection alert about `row` happened.
pub(crate) fn detection_time(row: &PortRow) -> Timestamp {
    row.detected_at.unwrap_or(row.last_seen)
}
