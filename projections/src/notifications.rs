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

use crate::ledger::Ledger;
use crate::notice::{message, NOTIFIER};
use crate::NotificationKind;
use crate::{Alert, AlertKind, Severity};
use crate::{Decision, DecisionKind, SilenceReason};

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

/// What one call of [`Notifier::plan`] looks at besides the alerts and the ledger.
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

/// The notification policy: alerts in ([`Notifier::observe`]), decisions out when
/// they are due ([`Notifier::plan`]), and decisions folded back in once journalled
/// ([`Notifier::apply`]). What was told lives in the [`Ledger`], so a notifier
/// rebuilt from the journal and fed every alert again decides nothing twice. Pure:
/// the same alerts, ledger and ticks give the same decisions with the same ids.
#[derive(Debug, Clone)]
pub struct Notifier {
    policy: NotifyPolicy,
    /// Alerts not told or silenced yet, per host.
    pending: BTreeMap<IpAddr, BTreeMap<String, Alert>>,
    ledger: Ledger,
}

impl Notifier {
    /// A notifier with nothing pending.
    pub fn new(policy: NotifyPolicy) -> Self {
        Self {
            policy,
            pending: BTreeMap::new(),
            ledger: Ledger::new(),
        }
    }

    /// The decisions folded so far.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Take in one alert record (again is harmless).
    pub fn observe(&mut self, alert: &Alert) {
        if !self.ledger.settled(&alert.id) {
            self.pending
                .entry(alert.ip)
                .or_default()
                .insert(alert.id.clone(), alert.clone());
        }
    }

    /// Fold one journalled decision; false when it was folded before.
    pub fn apply(&mut self, decision: &Decision) -> bool {
        if !self.ledger.apply(decision) {
            return false;
        }
        let ledger = &self.ledger;
        self.pending.retain(|_, alerts| {
            alerts.retain(|id, _| !ledger.settled(id));
            !alerts.is_empty()
        });
        true
    }

    /// The decisions due at `tick.now`, host by host. Nothing changes until they are
    /// journalled and [applied](Notifier::apply).
    pub fn plan(&self, tick: &Tick<'_>) -> Vec<Decision> {
        let policy = &self.policy;
        let now = tick.now;
        let ledger = &self.ledger;
        let decide = |what| Decision::new(now, NOTIFIER, what);
        let due = |since: Timestamp, ip: IpAddr| match ledger.last_sent.get(&ip) {
            None => since + policy.group_wait,
            Some(&last) => since.max(last + policy.group_interval),
        };
        let mut out = Vec::new();
        let mut closing_episodes = std::collections::HashSet::new();
        for (&ip, alerts) in &self.pending {
            let asset = tick.assets.matching(ip);
            let mut alerts: Vec<&Alert> = alerts.values().collect();
            alerts.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
            let (closings, fires): (Vec<&Alert>, Vec<&Alert>) = alerts
                .into_iter()
                .partition(|a| a.kind == AlertKind::ExposureClosed);
            let mut resolved: Vec<Alert> = Vec::new();
            let mut unannounced: Vec<Alert> = Vec::new();
            for c in closings {
                closing_episodes.insert(c.episode_id.clone());
                if ledger.known.contains_key(&c.episode_id) {
                    resolved.push(c.clone());
                } else {
                    unannounced.push(c.clone());
                }
            }
            let mut loud = Vec::new();
            let (mut baseline, mut suppressed) = (Vec::new(), Vec::new());
            for f in fires {
                if unannounced.iter().any(|c| c.episode_id == f.episode_id) {
                    // Opened and closed before anyone was told: nothing to say.
                    unannounced.push(f.clone());
                } else if let Some(i) = resolved.iter().position(|c| {
                    f.kind == AlertKind::ExposureOpened
                        && (c.proto, c.port) == (f.proto, f.port)
                        && c.at <= f.at
                }) {
                    // Closed and opened again before the closing was told: a flap.
                    let closing = resolved.remove(i);
                    out.push(decide(DecisionKind::Silenced {
                        reason: SilenceReason::Flap,
                        alerts: vec![closing, f.clone()],
                    }));
                } else if policy.baseline
                    && f.baseline
                    && f.kind == AlertKind::ExposureOpened
                    && f.severity != Severity::High
                {
                    baseline.push(f.clone());
                } else if (tick.suppressed)(f) {
                    suppressed.push(f.clone());
                } else {
                    loud.push(f.clone());
                }
            }
            for (reason, alerts) in [
                (SilenceReason::NotAnnounced, unannounced),
                (SilenceReason::Baseline, baseline),
                (SilenceReason::Suppressed, suppressed),
            ] {
                if !alerts.is_empty() {
                    let mut alerts = alerts;
                    crate::sort_alerts(&mut alerts);
                    out.push(decide(DecisionKind::Silenced { reason, alerts }));
                }
            }
            let oldest = |alerts: &[Alert]| alerts.iter().map(|a| a.at).min();
            if oldest(&loud).is_some_and(|since| now >= due(since, ip)) {
                out.push(decide(DecisionKind::Notified {
                    notification: message(NotificationKind::Firing, ip, &asset, loud, now, None),
                }));
            }
            if oldest(&resolved).is_some_and(|since| now >= due(since, ip)) {
                out.push(decide(DecisionKind::Notified {
                    notification: message(NotificationKind::Resolved, ip, &asset, resolved, now, None),
                }));
            }
        }
        // Reminders and escalations: high-risk exposures people know are open.
        let mut reminders: BTreeMap<IpAddr, Vec<Alert>> = BTreeMap::new();
        let mut escalations: BTreeMap<IpAddr, Vec<Alert>> = BTreeMap::new();
        for (episode, k) in &ledger.known {
            if k.alert.severity != Severity::High
                || closing_episodes.contains(episode)
                || (tick.suppressed)(&k.alert)
            {
                continue;
            }
            if now >= k.reminded_at + policy.repeat_interval {
                reminders.entry(k.alert.ip).or_default().push(k.alert.clone());
            }
            if let Some(after) = policy.escalate_after {
                if !k.escalated && now >= k.alert.at + after {
                    escalations.entry(k.alert.ip).or_default().push(k.alert.clone());
                }
            }
        }
        for (kind, groups, stamp) in [
            (NotificationKind::Reminder, reminders, Some(now)),
            (NotificationKind::Escalation, escalations, None),
        ] {
            for (ip, alerts) in groups {
                let asset = tick.assets.matching(ip);
                out.push(decide(DecisionKind::Notified {
                    notification: message(kind, ip, &asset, alerts, now, stamp),
                }));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone, Utc};
    use portwatch_events::{Proto, RiskClass};

    use super::*;
    use crate::Assets;
    use crate::Notification;

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
        tick_with(n, s, &|_| false)
    }

    /// Plan, journal (here: apply) and return what was sent.
    fn tick_with(n: &mut Notifier, s: i64, suppressed: &dyn Fn(&Alert) -> bool) -> Vec<Notification> {
        let decisions = n.plan(&Tick {
            now: at(s),
            assets: &Assets::default(),
            suppressed,
        });
        let mut sent = Vec::new();
        for d in &decisions {
            assert!(n.apply(d), "fresh decision {}", d.id);
            assert!(!n.apply(d), "a decision applies once");
            if let DecisionKind::Notified { notification } = &d.what {
                sent.push(notification.clone());
            }
        }
        sent
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
        let quiet = tick_with(&mut n, 200, &|a| a.port == 6379);
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

    #[test]
    fn a_notifier_rebuilt_from_its_journal_and_fed_every_alert_again_decides_nothing() {
        let mut n = Notifier::new(policy());
        let mut journal: Vec<String> = Vec::new();
        let redis = opened(6379, 0);
        let alerts = vec![opened(22, 0), redis.clone(), closed(&opened(22, 0), 500)];
        let mut step = |n: &mut Notifier, s: i64| {
            for d in n.plan(&Tick {
                now: at(s),
                assets: &Assets::default(),
                suppressed: &|_| false,
            }) {
                journal.push(d.to_json());
                n.apply(&d);
            }
        };
        n.observe(&alerts[0]);
        n.observe(&alerts[1]);
        step(&mut n, 10);
        n.observe(&alerts[2]);
        step(&mut n, 600);
        assert_eq!(n.ledger().notifications().len(), 2, "firing, resolved");
        // The state is rebuilt (alerts re-derived with the same ids), the journal kept.
        let mut again = Notifier::new(policy());
        for line in &journal {
            again.apply(&Decision::from_json(line).expect("decodes"));
        }
        for a in &alerts {
            again.observe(a);
        }
        let decided = again.plan(&Tick {
            now: at(700),
            assets: &Assets::default(),
            suppressed: &|_| false,
        });
        assert!(decided.is_empty(), "{decided:?}");
        // Reminders still run from the journalled times.
        let reminders = again.plan(&Tick {
            now: at(10 + 4 * 3600),
            assets: &Assets::default(),
            suppressed: &|_| false,
        });
        assert_eq!(reminders.len(), 1);
        assert!(
            matches!(&reminders[0].what, DecisionKind::Notified { notification } if notification.kind == NotificationKind::Reminder && notification.alerts[0].id == redis.id)
        );
    }
}
