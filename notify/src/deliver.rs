//! Channels: where a notification goes (its route) and how it gets there.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portwatch_events::RiskClass;
use portwatch_projections::{Notification, NotificationKind, Severity};

use crate::kinds::{Context, Deliver};
use crate::NotifyError;

/// Which notifications a channel takes. Empty lists match everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Only notifications at least this severe.
    pub min_severity: Severity,
    /// Only notifications with an alert of one of these risk classes.
    pub risks: Vec<RiskClass>,
    /// Only hosts of these owners.
    pub owners: Vec<String>,
    /// Only hosts of these systems.
    pub systems: Vec<String>,
    /// Only hosts in these zones.
    pub zones: Vec<String>,
    /// The escalation route: takes escalations, and only them.
    pub escalation: bool,
}

impl Default for Route {
    fn default() -> Self {
        Self {
            min_severity: Severity::Medium,
            risks: Vec::new(),
            owners: Vec::new(),
            systems: Vec::new(),
            zones: Vec::new(),
            escalation: false,
        }
    }
}

impl Route {
    /// Whether `n` goes this way.
    pub fn matches(&self, n: &Notification) -> bool {
        let listed = |list: &[String], value: &Option<String>| {
            list.is_empty() || value.as_ref().is_some_and(|v| list.contains(v))
        };
        (n.kind == NotificationKind::Escalation) == self.escalation
            && n.severity >= self.min_severity
            && (self.risks.is_empty() || n.alerts.iter().any(|a| self.risks.contains(&a.risk)))
            && listed(&self.owners, &n.asset.owner)
            && listed(&self.systems, &n.asset.system)
            && listed(&self.zones, &n.asset.zone)
    }
}

/// One configured channel.
#[derive(Debug, Clone)]
pub struct Channel {
    /// Its name (`[[channels]] name`): deliveries are recorded under it.
    pub name: String,
    /// What it takes.
    pub route: Route,
    /// How it sends (its kind's sender).
    pub sender: Arc<dyn Deliver>,
    /// Longest wait for one attempt.
    pub timeout: Duration,
    /// Extra trusted CA certificates (PEM), for receivers behind a private CA;
    /// the system's roots are trusted as well.
    pub ca_pem: Option<Vec<u8>>,
}

/// What one attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The channel took it.
    pub ok: bool,
    /// Protocol status, when one came back.
    pub status: Option<u16>,
    /// What went wrong (credentials redacted).
    pub error: Option<String>,
    /// How long it took.
    pub elapsed: Duration,
}

/// What the channels share: an HTTP client with the system's trust roots, and one
/// per channel that trusts its private CA as well.
#[derive(Debug, Clone)]
pub struct Senders {
    http: reqwest::Client,
    private: BTreeMap<String, reqwest::Client>,
}

impl Senders {
    /// Clients for `channels`.
    pub fn new(channels: &[Channel]) -> Result<Self, NotifyError> {
        let mut private = BTreeMap::new();
        for c in channels {
            if let Some(pem) = &c.ca_pem {
                let client = portwatch_trust::parse_pem(pem)
                    .and_then(|certs| portwatch_trust::http_client(&certs))
                    .map_err(|e| NotifyError::Channel {
                        channel: c.name.clone(),
                        reason: format!("ca_file: {e}"),
                    })?;
                private.insert(c.name.clone(), client);
            }
        }
        let http = portwatch_trust::http_client(&[]).map_err(|e| NotifyError::Channel {
            channel: "(every)".into(),
            reason: e.to_string(),
        })?;
        Ok(Self { http, private })
    }

    /// Send `n` over `channel` once.
    pub async fn send(&self, channel: &Channel, n: &Notification) -> Sent {
        let started = Instant::now();
        let cx = Context {
            http: self.private.get(&channel.name).unwrap_or(&self.http),
            timeout: channel.timeout,
            ca_pem: channel.ca_pem.as_deref(),
        };
        let outcome = channel.sender.send(n, cx).await;
        Sent {
            ok: outcome.ok,
            status: outcome.status,
            // Error texts name the URL, which for the chat robots is the credential:
            // hidden before anyone (the journal, the log, the API) sees it.
            error: outcome.error.map(|e| portwatch_events::redact::text(&e)),
            elapsed: started.elapsed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use portwatch_events::{Proto, RiskClass};
    use portwatch_projections::{Alert, AlertKind, AssetMatch};

    use super::*;

    fn notification(kind: NotificationKind, risk: RiskClass, owner: &str, zone: &str) -> Notification {
        let at = chrono::Utc::now();
        Notification {
            id: "n".into(),
            kind,
            ip: "203.0.113.7".parse().expect("ip"),
            severity: Severity::of(risk),
            asset: AssetMatch {
                owner: Some(owner.into()),
                system: Some("billing".into()),
                zone: Some(zone.into()),
            },
            alerts: vec![Alert {
                id: "e:exposure_opened".into(),
                kind: AlertKind::ExposureOpened,
                severity: Severity::of(risk),
                risk,
                ip: "203.0.113.7".parse().expect("ip"),
                proto: Proto::Tcp,
                port: 6379,
                episode_id: "e".into(),
                at,
                baseline: false,
            }],
            at,
        }
    }

    #[test]
    fn routes_match_severity_risk_owner_zone_and_the_escalation_route() {
        let db_high = notification(
            NotificationKind::Firing,
            RiskClass::HighRiskService,
            "db-team",
            "dc1",
        );
        let web_medium = notification(NotificationKind::Firing, RiskClass::RiskPort, "web-team", "dc2");
        let escalated = notification(
            NotificationKind::Escalation,
            RiskClass::HighRiskPort,
            "db-team",
            "dc1",
        );
        let everything = Route::default();
        assert!(everything.matches(&db_high) && everything.matches(&web_medium));
        assert!(
            !everything.matches(&escalated),
            "escalations go to the escalation route only"
        );
        let high = Route {
            min_severity: Severity::High,
            ..Route::default()
        };
        assert!(high.matches(&db_high) && !high.matches(&web_medium));
        let services = Route {
            risks: vec![RiskClass::HighRiskService],
            ..Route::default()
        };
        assert!(services.matches(&db_high) && !services.matches(&web_medium));
        let db = Route {
            owners: vec!["db-team".into()],
            zones: vec!["dc1".into()],
            systems: vec!["billing".into()],
            ..Route::default()
        };
        assert!(db.matches(&db_high) && !db.matches(&web_medium));
        let pager = Route {
            escalation: true,
            ..Route::default()
        };
        assert!(pager.matches(&escalated) && !pager.matches(&db_high));
    }
}
