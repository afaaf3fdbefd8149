//! Notifications: what is sent to people about alerts. One notification reports a
//! group of alerts about one host (a new host with 30 open ports is one message),
//! and its id is the key a channel's delivery is made idempotent by.
//!
//! [`Notifier`] is the policy as a fold, driven by the clock it is given: a host's
//! first findings wait `group_wait` for more, later ones go out at most every
//! `group_interval`, high-risk findings still open are reminded about every
//! `repeat_interval` and escalated once after `escalate_after`, closings are told as
//! resolved, a port that closes and reopens before its closing was told is a flap and
//! says nothing, and a suppression hook (approvals, blocks) keeps findings from
//! paging, and with `baseline` the ports a new asset has open the first time it is
//! scanned are recorded without paging, unless high-risk.

use std::collections::BTreeMap;
use std::net::IpAddr;

use portwatch_events::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{Alert, AlertKind, AssetMatch, Severity};

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

/// When to tell people (Alertmanager's grouping, per host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyPolicy {
    /// A host's first findings wait this long for more before the first message.
    pub group_wait: chrono::Duration,
    /// Later findings of a host that was told about are sent at most this often.
    pub group_interval: chrono::Duration,
    /// A high-risk finding still open is reminded about this often.
    pub repeat_interval: chrono::Duration,
    /// A high-risk finding open this long goes to the escalation route (once).
    pub escalate_after: Option<chrono::Duration>,
    /// Record a new asset's baseline (ports open the first time they are ever
    /// scanned) without paging, unless high-risk.
    pub baseline: bool,
}

/// What one call of [`Notifier::advance`] looks at besides the time.
pub struct Tick<'a> {
    /// Now.
    pub now: Timestamp,
    /// Asset matches for the messages.
    pub assets: &'a crate::Assets,
    /// Findings that must not page (approved, blocked): the hook of approvals.
    pub suppressed: &'a dyn Fn(&Alert) -> bool,
}

impl std::fmt::Debug for Tick<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tick")
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// A finding a message told about, while its exposure stays open.
#[derive(Debug, Clone)]
struct Told {
    alert: Alert,
    reminded_at: Timestamp,
    escalated: bool,
}

/// One host's notification state.
#[derive(Debug, Clone, Default)]
struct Group {
    /// Findings not told yet, and since when the oldest waits.
    pending: Vec<Alert>,
    pending_since: Option<Timestamp>,
    /// Closings of told findings not told yet.
    closed: Vec<Alert>,
    closed_since: Option<Timestamp>,
    /// When the last message about this host went out.
    last_sent: Option<Timestamp>,
    /// Told findings whose exposure is open, by episode.
    told: BTreeMap<String, Told>,
}

/// The notification policy as a fold: alerts in ([`Notifier::observe`]), messages out
/// when they are due ([`Notifier::advance`]). Pure: the same alerts and the same ticks
/// give the same notifications with the same ids.
#[derive(Debug, Clone)]
pub struct Notifier {
    policy: NotifyPolicy,
    groups: BTreeMap<IpAddr, Group>,
}

impl Notifier {
    /// A notifier with nothing pending.
    pub fn new(policy: NotifyPolicy) -> Self {
        Self {
            policy,
            groups: BTreeMap::new(),
        }
    }

    /// Take in one alert record.
    pub fn observe(&mut self, alert: &Alert) {
        let baseline_on = self.policy.baseline;
        let group = self.groups.entry(alert.ip).or_default();
        match alert.kind {
            AlertKind::ExposureClosed => {
                let before = group.pending.len();
                group.pending.retain(|a| a.episode_id != alert.episode_id);
                if group.pending.len() != before {
                    // Opened and closed before anyone was told: nothing to say.
                    if group.pending.is_empty() {
                        group.pending_since = None;
                    }
                } else if group.told.remove(&alert.episode_id).is_some() {
                    group.closed.push(alert.clone());
                    group.closed_since.get_or_insert(alert.at);
                }
            }
            AlertKind::ExposureOpened
                if baseline_on && alert.baseline && alert.severity != Severity::High =>
            {
                // Baseline: on record (the alert), not news to page anyone about.
            }
            AlertKind::ExposureOpened | AlertKind::HighRiskService | AlertKind::HighRiskAdminPanel => {
                // A port that closed and opened again before its closing was told is
                // a flap: the closing is withdrawn and the reopening is not news.
                if let Some(i) = group
                    .closed
                    .iter()
                    .position(|c| (c.proto, c.port) == (alert.proto, alert.port))
                {
                    let closed = group.closed.remove(i);
                    if group.closed.is_empty() {
                        group.closed_since = None;
                    }
                    group.told.insert(
                        alert.episode_id.clone(),
                        Told {
                            alert: alert.clone(),
                            reminded_at: closed.at,
                            escalated: false,
                        },
                    );
                    return;
                }
                group.pending.push(alert.clone());
                group.pending_since.get_or_insert(alert.at);
            }
        }
    }

    /// The messages due at `tick.now`, in host order.
    pub fn advance(&mut self, tick: &Tick<'_>) -> Vec<Notification> {
        let policy = self.policy.clone();
        let mut out = Vec::new();
        for (ip, group) in &mut self.groups {
            let asset = tick.assets.matching(*ip);
            let due = |since: Timestamp, last: Option<Timestamp>| match last {
                None => since + policy.group_wait,
                Some(last) => since.max(last + policy.group_interval),
            };
            let mut sent = false;
            if group
                .pending_since
                .is_some_and(|s| tick.now >= due(s, group.last_sent))
            {
                let alerts: Vec<Alert> = std::mem::take(&mut group.pending);
                group.pending_since = None;
                let (quiet, loud): (Vec<Alert>, Vec<Alert>) =
                    alerts.into_iter().partition(|a| (tick.suppressed)(a));
                for a in loud.iter().chain(&quiet) {
                    group.told.entry(a.episode_id.clone()).or_insert(Told {
                        alert: a.clone(),
                        reminded_at: tick.now,
                        escalated: false,
                    });
                }
                if !loud.is_empty() {
                    out.push(message(
                        NotificationKind::Firing,
                        *ip,
                        &asset,
                        loud,
                        tick.now,
                        None,
                    ));
                    sent = true;
                }
            }
            if group
                .closed_since
                .is_some_and(|s| tick.now >= due(s, group.last_sent))
            {
                let closed = std::mem::take(&mut group.closed);
                group.closed_since = None;
                out.push(message(
                    NotificationKind::Resolved,
                    *ip,
                    &asset,
                    closed,
                    tick.now,
                    None,
                ));
                sent = true;
            }
            let high_open = |t: &Told| t.alert.severity == Severity::High && !(tick.suppressed)(&t.alert);
            let reminders: Vec<Alert> = group
                .told
                .values_mut()
                .filter(|t| high_open(t) && tick.now >= t.reminded_at + policy.repeat_interval)
                .map(|t| {
                    t.reminded_at = tick.now;
                    t.alert.clone()
                })
                .collect();
            if !reminders.is_empty() {
                out.push(message(
                    NotificationKind::Reminder,
                    *ip,
                    &asset,
                    reminders,
                    tick.now,
                    Some(tick.now),
                ));
                sent = true;
            }
            if let Some(after) = policy.escalate_after {
                let escalations: Vec<Alert> = group
                    .told
                    .values_mut()
                    .filter(|t| high_open(t) && !t.escalated && tick.now >= t.alert.at + after)
                    .map(|t| {
                        t.escalated = true;
                        t.alert.clone()
                    })
                    .collect();
                if !escalations.is_empty() {
                    out.push(message(
                        NotificationKind::Escalation,
                        *ip,
                        &asset,
                        escalations,
                        tick.now,
                        None,
                    ));
                    sent = true;
                }
            }
            if sent {
                group.last_sent = Some(tick.now);
            }
        }
        out
    }
}

/// A message about `alerts` of one host. Its id names the host, the kind and the
/// first alert (and, for reminders, the time), so deciding again from the same
/// inputs names it the same.
fn message(
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

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone, Utc};
    use portwatch_events::{Proto, RiskClass};

    use super::*;
    use crate::Assets;

    fn at(s: i64) -> Timestamp {
        Utc.timestamp_opt(1_800_000_000 + s, 0).single().expect("ts")
    }

    fn alert(port: u16, episode: &str, kind: AlertKind, risk: RiskClass, s: i64) -> Alert {
        Alert {
            id: format!("{episode}:{}", kind.as_str()),
            kind,
            severity: Severity::of(risk),
            risk,
            ip: "203.0.113.7".parse().expect("ip"),
            proto: Proto::Tcp,
            port,
            episode_id: episode.to_string(),
            at: at(s),
            baseline: false,
        }
    }

    fn opened(port: u16, s: i64) -> Alert {
        let risk = if port == 6379 {
            RiskClass::HighRiskPort
        } else {
            RiskClass::RiskPort
        };
        alert(port, &format!("e{port}-{s}"), AlertKind::ExposureOpened, risk, s)
    }

    fn closed(open: &Alert, s: i64) -> Alert {
        alert(
            open.port,
            &open.episode_id,
            AlertKind::ExposureClosed,
            open.risk,
            s,
        )
    }

    fn policy() -> NotifyPolicy {
        NotifyPolicy {
            group_wait: Duration::seconds(10),
            group_interval: Duration::minutes(5),
            repeat_interval: Duration::hours(4),
            escalate_after: Some(Duration::hours(24)),
            baseline: true,
        }
    }

    fn tick(n: &mut Notifier, s: i64) -> Vec<Notification> {
        n.advance(&Tick {
            now: at(s),
            assets: &Assets::default(),
            suppressed: &|_| false,
        })
    }

    #[test]
    fn thirty_ports_at_once_are_one_message_after_the_group_wait() {
        let mut n = Notifier::new(policy());
        for port in 1000..1030 {
            n.observe(&opened(port, 0));
        }
        assert!(tick(&mut n, 9).is_empty(), "still within group_wait");
        let sent = tick(&mut n, 10);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].kind, NotificationKind::Firing);
        assert_eq!(sent[0].alerts.len(), 30);
        assert_eq!(sent[0].severity, Severity::Medium);
        assert!(tick(&mut n, 3600).is_empty(), "no reminders for risk ports");
    }

    #[test]
    fn later_findings_wait_for_the_group_interval_and_flaps_say_nothing() {
        let mut n = Notifier::new(policy());
        let first = opened(22, 0);
        n.observe(&first);
        assert_eq!(tick(&mut n, 10).len(), 1);
        // A new port a minute later: sent at last message + group_interval.
        n.observe(&opened(80, 70));
        assert!(tick(&mut n, 200).is_empty());
        let sent = tick(&mut n, 310);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].alerts[0].port, 80);
        // Port 22 closes and opens again before its closing was told: nothing.
        n.observe(&closed(&first, 400));
        n.observe(&opened(22, 450));
        assert!(tick(&mut n, 2000).is_empty(), "a flap is not news");
        // Closing for real: a resolved message, once the interval allows.
        n.observe(&closed(&opened(80, 70), 3000));
        let sent = tick(&mut n, 3000);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].kind, NotificationKind::Resolved);
        assert_eq!(sent[0].alerts[0].port, 80);
    }

    #[test]
    fn high_risk_findings_are_reminded_and_escalated_until_closed() {
        let mut n = Notifier::new(policy());
        let redis = opened(6379, 0);
        n.observe(&redis);
        let sent = tick(&mut n, 10);
        assert_eq!(
            (sent[0].kind, sent[0].severity),
            (NotificationKind::Firing, Severity::High)
        );
        assert!(
            tick(&mut n, 4 * 3600).is_empty(),
            "repeat_interval counts from the message"
        );
        let sent = tick(&mut n, 4 * 3600 + 10);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].kind, NotificationKind::Reminder);
        let kinds: Vec<NotificationKind> = tick(&mut n, 24 * 3600).iter().map(|m| m.kind).collect();
        assert_eq!(kinds, [NotificationKind::Reminder, NotificationKind::Escalation]);
        assert!(
            !tick(&mut n, 24 * 3600 + 60)
                .iter()
                .any(|m| m.kind == NotificationKind::Escalation),
            "escalated once"
        );
        n.observe(&closed(&redis, 25 * 3600));
        let sent = tick(&mut n, 25 * 3600);
        assert_eq!(
            sent.iter().map(|m| m.kind).collect::<Vec<_>>(),
            [NotificationKind::Resolved]
        );
        assert!(tick(&mut n, 40 * 3600).is_empty(), "closed: no more reminders");
    }

    #[test]
    fn opened_and_closed_before_the_group_wait_says_nothing_and_suppressed_findings_do_not_page() {
        let mut n = Notifier::new(policy());
        let blip = opened(8080, 0);
        n.observe(&blip);
        n.observe(&closed(&blip, 5));
        assert!(tick(&mut n, 60).is_empty());
        n.observe(&opened(6379, 100));
        let quiet = n.advance(&Tick {
            now: at(200),
            assets: &Assets::default(),
            suppressed: &|a| a.port == 6379,
        });
        assert!(quiet.is_empty(), "approved: recorded, not paged");
    }

    #[test]
    fn a_new_assets_baseline_pages_only_for_high_risk() {
        let mut n = Notifier::new(policy());
        let mut ssh = opened(22, 0);
        ssh.baseline = true;
        let mut redis = opened(6379, 0);
        redis.baseline = true;
        n.observe(&ssh);
        n.observe(&redis);
        let sent = tick(&mut n, 10);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].alerts.iter().map(|a| a.port).collect::<Vec<_>>(), [6379]);
        // Its closing later is no news either: nobody was told it was open.
        n.observe(&closed(&ssh, 100));
        assert!(tick(&mut n, 1000).is_empty());
        // Without the baseline rule, every opening pages.
        let mut all = Notifier::new(NotifyPolicy {
            baseline: false,
            ..policy()
        });
        all.observe(&ssh);
        assert_eq!(tick(&mut all, 10).len(), 1);
    }

    #[test]
    fn the_same_inputs_name_the_same_messages() {
        let run = || {
            let mut n = Notifier::new(policy());
            n.observe(&opened(6379, 0));
            n.observe(&opened(22, 1));
            let mut out = tick(&mut n, 10);
            out.extend(tick(&mut n, 5 * 3600));
            out.iter().map(|m| m.id.clone()).collect::<Vec<_>>()
        };
        let ids = run();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids, run());
        assert!(ids[0].starts_with("203.0.113.7:firing:"), "{ids:?}");
    }
}
