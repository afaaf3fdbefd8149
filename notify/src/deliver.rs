//! Channels: where a notification goes (its route) and how it gets there.

use std::time::{Duration, Instant};

use portwatch_events::RiskClass;
use portwatch_projections::{Notification, NotificationKind, Severity};

use crate::channels::{request, HttpChannel, HttpRequest};
use crate::email::EmailChannel;
use crate::syslog::SyslogChannel;
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

/// How a channel sends.
#[derive(Debug, Clone)]
pub enum Sender {
    /// An HTTP POST (webhook, Slack, DingTalk, Feishu, WeCom).
    Http(HttpChannel),
    /// Email over SMTP.
    Email(EmailChannel),
    /// Syslog (RFC 5424, optionally CEF).
    Syslog(SyslogChannel),
    /// Prometheus Alertmanager at this base URL.
    Alertmanager(String),
}

impl Sender {
    /// The config name of its kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Sender::Http(h) => match h.kind {
                crate::HttpKind::Webhook => "webhook",
                crate::HttpKind::Slack => "slack",
                crate::HttpKind::Dingtalk => "dingtalk",
                crate::HttpKind::Feishu => "feishu",
                crate::HttpKind::Wecom => "wecom",
            },
            Sender::Email(_) => "email",
            Sender::Syslog(_) => "syslog",
            Sender::Alertmanager(_) => "alertmanager",
        }
    }
}

/// One configured channel.
#[derive(Debug, Clone)]
pub struct Channel {
    /// Its name (`[[channels]] name`): deliveries are recorded under it.
    pub name: String,
    /// What it takes.
    pub route: Route,
    /// How it sends.
    pub sender: Sender,
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
    /// What went wrong.
    pub error: Option<String>,
    /// How long it took.
    pub elapsed: Duration,
}

/// What the channels share: an HTTP client with the system's trust roots, and one
/// per channel that trusts a private CA as well.
#[derive(Debug, Clone)]
pub struct Senders {
    http: reqwest::Client,
    private: std::collections::BTreeMap<String, reqwest::Client>,
}

impl Senders {
    /// Clients for `channels`.
    pub fn new(channels: &[Channel]) -> Result<Self, NotifyError> {
        let mut private = std::collections::BTreeMap::new();
        for c in channels {
            if let (Some(pem), Sender::Http(_) | Sender::Alertmanager(_)) = (&c.ca_pem, &c.sender) {
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

    fn client(&self, channel: &Channel) -> &reqwest::Client {
        self.private.get(&channel.name).unwrap_or(&self.http)
    }

    /// Send `n` over `channel` once.
    pub async fn send(&self, channel: &Channel, n: &Notification) -> Sent {
        let started = Instant::now();
        let (ok, status, error) = match &channel.sender {
            Sender::Http(http) => self.post(channel, http, n).await,
            Sender::Email(email) => {
                match crate::email::send(email, n, channel.timeout, channel.ca_pem.as_deref()).await {
                    Ok(code) => (true, Some(code), None),
                    Err((code, e)) => (false, code, Some(e)),
                }
            }
            Sender::Syslog(syslog) => match crate::syslog::send(syslog, n, channel.timeout).await {
                Ok(()) => (true, None, None),
                Err(e) => (false, None, Some(e)),
            },
            Sender::Alertmanager(base) => {
                let url = format!("{}/api/v2/alerts", base.trim_end_matches('/'));
                let body = crate::alertmanager::body(n, chrono::Utc::now());
                let req = HttpRequest {
                    url,
                    headers: vec![("Content-Type".into(), "application/json".into())],
                    body: serde_json::to_vec(&body).unwrap_or_default(),
                };
                self.send_request(self.client(channel), req, None, channel.timeout)
                    .await
            }
        };
        Sent {
            ok,
            status,
            // Error texts name the URL, which for the chat robots is the credential:
            // hidden before anyone (the journal, the log, the API) sees it.
            error: error.map(|e| portwatch_events::redact::text(&e)),
            elapsed: started.elapsed(),
        }
    }

    async fn post(
        &self,
        channel: &Channel,
        http: &HttpChannel,
        n: &Notification,
    ) -> (bool, Option<u16>, Option<String>) {
        let req = request(http, n, chrono::Utc::now().timestamp_millis());
        self.send_request(self.client(channel), req, Some(http), channel.timeout)
            .await
    }

    async fn send_request(
        &self,
        client: &reqwest::Client,
        req: HttpRequest,
        channel: Option<&HttpChannel>,
        timeout: Duration,
    ) -> (bool, Option<u16>, Option<String>) {
        let mut builder = client.post(&req.url).timeout(timeout).body(req.body);
        for (k, v) in &req.headers {
            builder = builder.header(k, v);
        }
        match builder.send().await {
            Ok(resp) => {
                let status = resp.status();
                let ok = status.is_success();
                // Read (a little of) the body: some robots answer 200 with an error.
                let text = resp.text().await.unwrap_or_default();
                let refused = ok && channel.is_some_and(|c| robot_refused(c, &text));
                let error = if !ok || refused {
                    Some(format!(
                        "HTTP {status}: {}",
                        text.chars().take(200).collect::<String>()
                    ))
                } else {
                    None
                };
                (ok && !refused, Some(status.as_u16()), error)
            }
            Err(e) => (false, e.status().map(|s| s.as_u16()), Some(error_chain(&e))),
        }
    }
}

/// DingTalk, Feishu and WeCom answer HTTP 200 with a non-zero code in the body when
/// they refuse a message (bad signature, rate limit).
fn robot_refused(channel: &HttpChannel, body: &str) -> bool {
    use crate::channels::HttpKind;
    if !matches!(
        channel.kind,
        HttpKind::Dingtalk | HttpKind::Feishu | HttpKind::Wecom
    ) {
        return false;
    }
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return false;
    };
    let code = v
        .get("errcode")
        .or_else(|| v.get("code"))
        .or_else(|| v.get("StatusCode"));
    code.and_then(serde_json::Value::as_i64).is_some_and(|c| c != 0)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
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
