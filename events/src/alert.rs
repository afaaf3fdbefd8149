//! Alerts and notifications: what the fold derives for people to hear about, and the
//! messages portwatch decides to send about them. They are part of decision records
//! (what was notified, what was silenced), so they live with the schema.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::{Proto, RiskClass, Timestamp};

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

/// The canonical alert order: by time, then id.
pub fn sort_alerts(alerts: &mut [Alert]) {
    alerts.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
}

/// The asset match a finding carries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AssetMatch {
    /// Owner from the most specific matching asset.
    pub owner: Option<String>,
    /// System from that asset.
    pub system: Option<String>,
    /// Zone from that asset.
    pub zone: Option<String>,
}

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
