//! Alerts: the records of what people must hear about, derived by the fold.
//!
//! One alert per (exposure episode, kind): the episode opened, a detection found a
//! high-risk service or an admin panel on it, the episode closed. The id is the
//! episode id plus the kind, and the episode row remembers which kinds it has
//! raised, so re-detecting the same service, replaying the log or resuming from a
//! checkpoint yields the same alert, never a second one. Delivering alerts to people
//! (grouping, channels) is a later stage that reads these records.

use std::net::IpAddr;

use portwatch_events::{Proto, RiskClass, Timestamp};
use serde::{Deserialize, Serialize};

use crate::{Episode, PortRow};

/// What an alert is about.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A port was found open: a new exposure episode began.
    ExposureOpened,
    /// An exposure ended: covering scans declared the port closed.
    ExposureClosed,
    /// Service detection found a dangerous service on a port outside the
    /// high-risk list (Redis on 16379).
    HighRiskService,
    /// Panel detection found a web management console on the port.
    HighRiskAdminPanel,
}

impl AlertKind {
    /// Every kind.
    pub const ALL: [AlertKind; 4] = [
        AlertKind::ExposureOpened,
        AlertKind::ExposureClosed,
        AlertKind::HighRiskService,
        AlertKind::HighRiskAdminPanel,
    ];

    /// Name as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::ExposureOpened => "exposure_opened",
            AlertKind::ExposureClosed => "exposure_closed",
            AlertKind::HighRiskService => "high_risk_service",
            AlertKind::HighRiskAdminPanel => "high_risk_admin_panel",
        }
    }

    /// The kind a detection of `class` calls for, if any.
    pub fn for_class(class: RiskClass) -> Option<AlertKind> {
        match class {
            RiskClass::HighRiskService => Some(AlertKind::HighRiskService),
            RiskClass::HighRiskAdminPanel => Some(AlertKind::HighRiskAdminPanel),
            RiskClass::RiskPort | RiskClass::HighRiskPort => None,
        }
    }
}

/// How urgent an alert is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Any other open port: to be audited.
    Medium,
    /// A high-risk class: a dangerous port, service or admin panel.
    High,
}

impl Severity {
    /// Name as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::High => "high",
            Severity::Medium => "medium",
        }
    }

    /// The severity of a finding of `class`.
    pub fn of(class: RiskClass) -> Severity {
        if class.is_high() {
            Severity::High
        } else {
            Severity::Medium
        }
    }
}

/// An alert about one exposure episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Alert {
    /// `{episode id}:{kind}`: stable across re-detection, replay and restarts.
    pub id: String,
    /// What happened.
    pub kind: AlertKind,
    /// Urgency (high for every high-risk class).
    pub severity: Severity,
    /// The port's risk class when the alert was raised.
    #[serde(default = "default_risk")]
    pub risk: RiskClass,
    /// Host address.
    #[schema(value_type = String, example = "10.1.0.7")]
    pub ip: IpAddr,
    /// Protocol.
    pub proto: Proto,
    /// Port number.
    pub port: u16,
    /// The episode.
    pub episode_id: String,
    /// When it happened (opening: first seen open; closing: first covering miss;
    /// high-risk classes: the detection).
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// An opening found by the first scan that ever covered the port on this host
    /// (no earlier scan saw it closed): part of a new asset's baseline rather than a
    /// change. The notification policy records these without paging, unless high-risk.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub baseline: bool,
}

fn default_risk() -> RiskClass {
    RiskClass::RiskPort
}

impl Alert {
    /// The alert `kind` about `episode`, whose port row is `row`, with `risk`.
    pub(crate) fn new(kind: AlertKind, risk: RiskClass, episode: &Episode, at: Timestamp) -> Alert {
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
}

/// The canonical alert order: by time, then id.
pub fn sort_alerts(alerts: &mut [Alert]) {
    alerts.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
}
