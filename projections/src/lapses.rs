//! What approvals call for as time passes and ports change: a warning ahead of an
//! expiry, the expiry, and a lapse for each exposure whose port serves something
//! other than what was approved; each lapse and expiry reopens its findings.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use portwatch_events::Timestamp;

use crate::ledger::Ledger;
use crate::notice::{message, NOTIFIER};
use crate::NotificationKind;
use crate::{Alert, AlertKind, Assets, PortRow};
use crate::{Decision, DecisionKind};

/// The approvals decisions due at `now`, given the open ports in the scopes of the
/// granted approvals (`rows`): a warning `warn_before` the expiry, the expiry, and a
/// lapse for each exposure whose port serves something else. Each lapse and expiry
/// reopens its findings with a `reopened` notification per host.
pub fn plan(
    ledger: &Ledger,
    rows: &[PortRow],
    now: Timestamp,
    warn_before: chrono::Duration,
    assets: &Assets,
) -> Vec<Decision> {
    let decide = |what| Decision::new(now, NOTIFIER, what);
    let mut out = Vec::new();
    let mut reopened: BTreeMap<IpAddr, Vec<Alert>> = BTreeMap::new();
    let mut expiring: BTreeMap<IpAddr, Vec<Alert>> = BTreeMap::new();
    let mut seen_episode = BTreeSet::new();
    for a in ledger.approvals().values() {
        if a.decision.as_ref().is_none_or(|d| !d.granted) || a.expired {
            continue;
        }
        let id = &a.request.approval_id;
        let covered: Vec<&PortRow> = rows
            .iter()
            .filter(|r| r.state == crate::PortState::Open && a.covers(r.ip, r.proto, r.port))
            .filter(|r| !a.lapsed.contains_key(&r.episode_id))
            .collect();
        let alerts_of = |r: &PortRow| {
            ledger
                .episode_alerts(&r.episode_id)
                .unwrap_or_else(|| vec![opening(r)])
        };
        if now >= a.request.expires_at {
            for r in &covered {
                if seen_episode.insert(r.episode_id.clone()) {
                    reopened.entry(r.ip).or_default().extend(alerts_of(r));
                }
            }
            out.push(decide(DecisionKind::ApprovalExpired {
                approval_id: id.clone(),
            }));
            continue;
        }
        for r in &covered {
            if let Some(why) = a.mismatch(r) {
                out.push(decide(DecisionKind::ApprovalLapsed {
                    approval_id: id.clone(),
                    episode_id: r.episode_id.clone(),
                    ip: r.ip,
                    proto: r.proto,
                    port: r.port,
                    why,
                }));
                if seen_episode.insert(r.episode_id.clone()) {
                    reopened.entry(r.ip).or_default().extend(alerts_of(r));
                }
            }
        }
        if !a.warned && now + warn_before >= a.request.expires_at {
            for r in covered.iter().filter(|r| a.mismatch(r).is_none()) {
                expiring.entry(r.ip).or_default().extend(alerts_of(r));
            }
            out.push(decide(DecisionKind::ApprovalWarned {
                approval_id: id.clone(),
            }));
        }
    }
    for (kind, groups) in [
        (NotificationKind::Reopened, reopened),
        (NotificationKind::Expiring, expiring),
    ] {
        for (ip, mut alerts) in groups {
            alerts.dedup_by(|a, b| a.id == b.id);
            let asset = assets.matching(ip);
            out.push(decide(DecisionKind::Notified {
                notification: message(kind, ip, &asset, alerts, now, Some(now)),
            }));
        }
    }
    out
}

/// An opening alert for a port whose alerts the ledger never saw (approved before
/// anyone was told): what a reopened notification reports about it.
fn opening(row: &PortRow) -> Alert {
    Alert {
        id: format!("{}:{}", row.episode_id, AlertKind::ExposureOpened.as_str()),
        kind: AlertKind::ExposureOpened,
        severity: crate::Severity::of(row.risk),
        risk: row.risk,
        ip: row.ip,
        proto: row.proto,
        port: row.port,
        episode_id: row.episode_id.clone(),
        at: row.first_seen,
        baseline: false,
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone, Utc};
    use portwatch_events::{Evidence, RiskClass};

    use portwatch_events::{PortSet, Proto};

    use super::*;
    use crate::approvals::{approved, ApprovalState};
    use crate::PortState;
    use crate::{ApprovalRequest, Bound, Fingerprint};

    fn at(s: i64) -> Timestamp {
        Utc.timestamp_opt(1_800_000_000 + s, 0).single().expect("ts")
    }

    fn row(port: u16, episode: &str, service: Option<&str>) -> PortRow {
        PortRow {
            ip: "203.0.113.7".parse().expect("ip"),
            port,
            proto: Proto::Tcp,
            state: PortState::Open,
            first_seen: at(0),
            last_seen: at(0),
            last_change: at(0),
            misses: 0,
            missing_since: None,
            episode_id: episode.into(),
            evidence: Evidence::Handshake,
            rtt_ms: None,
            service: service.map(str::to_string),
            product: None,
            version: None,
            banner: None,
            class: None,
            panels: Vec::new(),
            title: None,
            tls_subject: None,
            detected_at: Some(at(0)),
            risk: RiskClass::HighRiskPort,
        }
    }

    fn request(id: &str, expires: i64, service: Option<&str>) -> Decision {
        Decision::new(
            at(10),
            "olga",
            DecisionKind::ApprovalRequested(ApprovalRequest {
                approval_id: id.into(),
                net: "203.0.113.0/24".parse().expect("net"),
                ports: PortSet::parse("8080").expect("ports"),
                proto: Proto::Tcp,
                service: service.map(str::to_string),
                reason: "the shop's admin UI, behind SSO".into(),
                owner: "web-team".into(),
                expires_at: at(expires),
            }),
        )
    }

    fn grant(id: &str, bound: Vec<&PortRow>) -> Decision {
        Decision::new(
            at(20),
            "arno",
            DecisionKind::ApprovalGranted {
                approval_id: id.into(),
                bound: bound
                    .into_iter()
                    .map(|r| Bound {
                        ip: r.ip,
                        proto: r.proto,
                        port: r.port,
                        seen: Fingerprint::from(r),
                    })
                    .collect(),
                note: None,
            },
        )
    }

    fn kinds(decisions: &[Decision]) -> Vec<String> {
        decisions
            .iter()
            .map(|d| match &d.what {
                DecisionKind::Notified { notification } => format!("notified:{}", notification.kind.as_str()),
                other => serde_json::to_value(other).expect("json")["kind"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string(),
            })
            .collect()
    }

    #[test]
    fn a_granted_approval_holds_while_the_port_serves_what_it_served() {
        let http = row(8080, "e1", Some("http"));
        let mut ledger = Ledger::new();
        for d in [request("a1", 100_000, None), grant("a1", vec![&http])] {
            let back = Decision::from_json(&d.to_json()).expect("round trip");
            assert_eq!(back, d);
            ledger.apply(&back);
        }
        let a = &ledger.approvals()["a1"];
        assert_eq!(a.state(at(30)), ApprovalState::Approved);
        assert_eq!(a.requested_by, "olga");
        assert_eq!(
            approved(ledger.approvals().values(), &http).as_deref(),
            Some("a1")
        );
        // Another port, or the same port serving Redis: not approved.
        assert!(approved(ledger.approvals().values(), &row(8081, "e2", Some("http"))).is_none());
        let redis = row(8080, "e1", Some("redis"));
        assert!(approved(ledger.approvals().values(), &redis).is_none());
        assert!(a.mismatch(&redis).expect("mismatch").contains("now serves redis"));
        assert_eq!(a.state(at(100_000)), ApprovalState::Expired);
        // Past the expiry it holds until the expiry is acted on.
        assert!(approved(ledger.approvals().values(), &http).is_some());
        ledger.apply(&Decision::new(
            at(100_000),
            NOTIFIER,
            DecisionKind::ApprovalExpired {
                approval_id: "a1".into(),
            },
        ));
        assert!(approved(ledger.approvals().values(), &http).is_none());
        assert_eq!(
            ledger.approvals()["a1"].state(at(100_000)),
            ApprovalState::Expired
        );
    }

    #[test]
    fn pending_and_rejected_requests_silence_nothing() {
        let http = row(8080, "e1", Some("http"));
        let mut ledger = Ledger::new();
        ledger.apply(&request("a1", 100_000, Some("http")));
        assert!(approved(ledger.approvals().values(), &http).is_none(), "pending");
        ledger.apply(&Decision::new(
            at(20),
            "arno",
            DecisionKind::ApprovalRejected {
                approval_id: "a1".into(),
                note: Some("use the VPN".into()),
            },
        ));
        assert_eq!(ledger.approvals()["a1"].state(at(30)), ApprovalState::Rejected);
        assert!(approved(ledger.approvals().values(), &http).is_none());
        // A later grant does not overturn a rejection.
        ledger.apply(&grant("a1", vec![&http]));
        assert_eq!(ledger.approvals()["a1"].state(at(30)), ApprovalState::Rejected);
    }

    #[test]
    fn a_port_not_seen_when_granted_is_held_by_the_expected_service_only() {
        let mut ledger = Ledger::new();
        ledger.apply(&request("a1", 100_000, Some("http")));
        ledger.apply(&grant("a1", Vec::new()));
        assert!(approved(ledger.approvals().values(), &row(8080, "e1", Some("http"))).is_some());
        assert!(approved(ledger.approvals().values(), &row(8080, "e1", Some("ssh"))).is_none());
        assert!(
            approved(ledger.approvals().values(), &row(8080, "e1", None)).is_none(),
            "detection ran and did not identify it"
        );
        let mut unseen = row(8080, "e1", None);
        unseen.detected_at = None;
        assert!(
            approved(ledger.approvals().values(), &unseen).is_some(),
            "not looked at yet: held until it is"
        );
    }

    #[test]
    fn plans_lapse_when_the_service_changes_warn_before_expiry_and_reopen_at_expiry() {
        let http = row(8080, "e1", Some("http"));
        let mut ledger = Ledger::new();
        ledger.apply(&request("a1", 100_000, None));
        ledger.apply(&grant("a1", vec![&http]));
        let warn = Duration::seconds(3600);
        let assets = Assets::default();
        // Serving what it served, far from the expiry: nothing to do.
        assert!(plan(&ledger, std::slice::from_ref(&http), at(100), warn, &assets).is_empty());
        // Redis on the approved port: the approval lapses for it, and it reopens.
        let redis = row(8080, "e1", Some("redis"));
        let decided = plan(&ledger, std::slice::from_ref(&redis), at(200), warn, &assets);
        assert_eq!(kinds(&decided), ["approval_lapsed", "notified:reopened"]);
        for d in &decided {
            ledger.apply(d);
        }
        assert!(plan(&ledger, &[redis], at(300), warn, &assets).is_empty(), "once");
        // A second approval, for a port still serving http: warned, then expired.
        let other = row(8080, "e9", Some("http"));
        ledger.apply(&request("a2", 20_000, None));
        ledger.apply(&grant("a2", vec![&other]));
        let warned = plan(
            &ledger,
            std::slice::from_ref(&other),
            at(20_000 - 1800),
            warn,
            &assets,
        );
        assert_eq!(kinds(&warned), ["approval_warned", "notified:expiring"]);
        for d in &warned {
            ledger.apply(d);
        }
        assert!(plan(
            &ledger,
            std::slice::from_ref(&other),
            at(20_000 - 60),
            warn,
            &assets
        )
        .is_empty());
        let expired = plan(&ledger, std::slice::from_ref(&other), at(20_000), warn, &assets);
        assert_eq!(kinds(&expired), ["approval_expired", "notified:reopened"]);
        let reopened = expired
            .iter()
            .find_map(|d| match &d.what {
                DecisionKind::Notified { notification } => Some(notification.clone()),
                _ => None,
            })
            .expect("notification");
        assert_eq!(reopened.kind, NotificationKind::Reopened);
        assert_eq!(reopened.alerts[0].port, 8080);
        for d in &expired {
            ledger.apply(d);
        }
        assert!(plan(&ledger, &[other], at(30_000), warn, &assets).is_empty());
    }
}
