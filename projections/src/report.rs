//! MTTD, MTTR and convergence: how fast exposures are found, told and driven to
//! closure.
//!
//! Per exposure episode: the detection bound (MTTD: the episode's
//! `mttd_bound_secs`, from the last covering scan that did not see it open), the time
//! to notify (to the first message that told it), and the time to remediate: to the
//! first of its closing, an approval granted for it (that did not lapse), or a block
//! of it verified by the probes (a closing while a block of the exposure was in force
//! counts as the block's). Aggregated by risk class, owner, system or day, and
//! the convergence trend: exposures open and not remediated at the end of each day.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use chrono::{Duration, NaiveDate};
use portwatch_events::{Proto, RiskClass, Timestamp};
use serde::{Deserialize, Serialize};

use crate::ledger::Ledger;
use crate::NotificationKind;
use crate::{Assets, Episode, PortRow};

/// How an exposure was remediated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Remedy {
    /// The port closed.
    Closed,
    /// An approval was granted for it.
    Approved,
    /// A block of it was verified.
    Blocked,
}

impl Remedy {
    /// Its name in JSON and SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Remedy::Closed => "closed",
            Remedy::Approved => "approved",
            Remedy::Blocked => "blocked",
        }
    }
}

/// The figures of one exposure episode.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpisodeReport {
    /// The episode.
    pub episode_id: String,
    /// Host.
    pub ip: IpAddr,
    /// Protocol.
    pub proto: Proto,
    /// Port.
    pub port: u16,
    /// Its risk class.
    pub risk: RiskClass,
    /// Owner of the host's asset.
    pub owner: Option<String>,
    /// System of the host's asset.
    pub system: Option<String>,
    /// When it was first seen open.
    pub opened_at: Timestamp,
    /// Still open (not seen closed).
    pub open: bool,
    /// Upper bound of the time it was open before it was seen (MTTD).
    pub mttd_bound_secs: Option<i64>,
    /// When a message first told it.
    pub notified_at: Option<Timestamp>,
    /// From first seen to told.
    pub time_to_notify_secs: Option<i64>,
    /// When it was remediated, and how.
    pub remediated_at: Option<Timestamp>,
    /// How.
    pub remedy: Option<Remedy>,
    /// From first seen to remediated (MTTR).
    pub time_to_remediate_secs: Option<i64>,
}

/// An episode's risk class as its port's row has it (`risk_port` without a row),
/// for [`episodes`].
pub fn risk_by_port(rows: &[PortRow]) -> impl Fn(&Episode) -> RiskClass {
    let risk: HashMap<(IpAddr, Proto, u16), RiskClass> =
        rows.iter().map(|r| ((r.ip, r.proto, r.port), r.risk)).collect();
    move |e: &Episode| {
        risk.get(&(e.ip, e.proto, e.port))
            .copied()
            .unwrap_or(RiskClass::RiskPort)
    }
}

/// The figures of every episode in `episodes`; `risk_of` gives an episode's class
/// (from its port's row).
pub fn episodes(
    episodes: &[Episode],
    risk_of: &dyn Fn(&Episode) -> RiskClass,
    assets: &Assets,
    ledger: &Ledger,
) -> Vec<EpisodeReport> {
    episodes
        .iter()
        .map(|e| {
            let notified_at = ledger
                .episode_alerts(&e.id)
                .unwrap_or_default()
                .iter()
                .flat_map(|a| ledger.for_alert(&a.id))
                .filter(|r| {
                    matches!(
                        r.notification.kind,
                        NotificationKind::Firing | NotificationKind::Reopened | NotificationKind::Escalation
                    )
                })
                .map(|r| r.notification.at)
                .min();
            let approved = ledger
                .approvals()
                .values()
                .filter(|a| a.covers(e.ip, e.proto, e.port) && !a.lapsed.contains_key(&e.id))
                .filter_map(|a| a.decision.as_ref().filter(|d| d.granted).map(|d| d.at))
                .filter(|at| *at >= e.opened_at)
                .min();
            // A verified block: (applied, verified). The probes verify a block by
            // seeing the port closed, so a blocked exposure also closes; its closing
            // is the block's doing when the block was in force by then.
            let blocked = ledger
                .blocks()
                .values()
                .filter(|b| b.request.episode_id == e.id)
                .filter_map(|b| Some((b.applied.as_ref()?.applied_at, b.verified_at?)))
                .min();
            let closed = e.closed_at.map(|at| match blocked {
                Some((applied, _)) if applied <= at => (at, Remedy::Blocked),
                _ => (at, Remedy::Closed),
            });
            let remedies = [
                closed,
                approved.map(|at| (at, Remedy::Approved)),
                blocked
                    .filter(|_| e.closed_at.is_none())
                    .map(|(_, verified)| (verified, Remedy::Blocked)),
            ];
            let first = remedies.into_iter().flatten().min_by_key(|(at, _)| *at);
            let asset = assets.matching(e.ip);
            EpisodeReport {
                episode_id: e.id.clone(),
                ip: e.ip,
                proto: e.proto,
                port: e.port,
                risk: risk_of(e),
                owner: asset.owner,
                system: asset.system,
                opened_at: e.opened_at,
                open: e.closed_at.is_none(),
                mttd_bound_secs: e.mttd_bound_secs,
                notified_at,
                time_to_notify_secs: notified_at.map(|at| (at - e.opened_at).num_seconds()),
                remediated_at: first.map(|(at, _)| at),
                remedy: first.map(|(_, how)| how),
                time_to_remediate_secs: first.map(|(at, _)| (at - e.opened_at).num_seconds()),
            }
        })
        .collect()
}

/// What figures are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum By {
    /// Risk class.
    Risk,
    /// Owner.
    Owner,
    /// System.
    System,
    /// The UTC day the episode opened.
    Day,
}

impl std::str::FromStr for By {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "risk" => Ok(By::Risk),
            "owner" => Ok(By::Owner),
            "system" => Ok(By::System),
            "day" => Ok(By::Day),
            other => Err(format!("`{other}`: expected risk, owner, system or day")),
        }
    }
}

/// The figures of one group of episodes.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Group {
    /// The class, owner, system or day (`-` for none).
    pub key: String,
    /// Episodes in it.
    pub episodes: usize,
    /// Of which not remediated (yet).
    pub open: usize,
    /// Mean detection bound, over the episodes that have one.
    pub mttd_mean_secs: Option<f64>,
    /// Median detection bound.
    pub mttd_p50_secs: Option<i64>,
    /// Mean time to notify, over the episodes told.
    pub notify_mean_secs: Option<f64>,
    /// Mean time to remediate, over the episodes remediated.
    pub mttr_mean_secs: Option<f64>,
    /// Median time to remediate.
    pub mttr_p50_secs: Option<i64>,
}

fn mean(values: &[i64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<i64>() as f64 / values.len() as f64)
}

/// The lower median (the value itself, never an average of two).
fn median(values: &mut [i64]) -> Option<i64> {
    values.sort_unstable();
    values.get(values.len().saturating_sub(1) / 2).copied()
}

/// Episodes opened in `[since, until)`, grouped `by`.
pub fn aggregate(reports: &[EpisodeReport], by: By, since: Timestamp, until: Timestamp) -> Vec<Group> {
    let mut groups: BTreeMap<String, Vec<&EpisodeReport>> = BTreeMap::new();
    for r in reports
        .iter()
        .filter(|r| r.opened_at >= since && r.opened_at < until)
    {
        let key = match by {
            By::Risk => r.risk.as_str().to_string(),
            By::Owner => r.owner.clone().unwrap_or_else(|| "-".into()),
            By::System => r.system.clone().unwrap_or_else(|| "-".into()),
            By::Day => r.opened_at.date_naive().to_string(),
        };
        groups.entry(key).or_default().push(r);
    }
    groups
        .into_iter()
        .map(|(key, list)| {
            let mut mttd: Vec<i64> = list.iter().filter_map(|r| r.mttd_bound_secs).collect();
            let notify: Vec<i64> = list.iter().filter_map(|r| r.time_to_notify_secs).collect();
            let mut mttr: Vec<i64> = list.iter().filter_map(|r| r.time_to_remediate_secs).collect();
            Group {
                key,
                episodes: list.len(),
                open: list.iter().filter(|r| r.remediated_at.is_none()).count(),
                mttd_mean_secs: mean(&mttd),
                mttd_p50_secs: median(&mut mttd),
                notify_mean_secs: mean(&notify),
                mttr_mean_secs: mean(&mttr),
                mttr_p50_secs: median(&mut mttr),
            }
        })
        .collect()
}

/// The exposures of one risk class open now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OpenNow {
    /// The class.
    pub risk: RiskClass,
    /// Exposures open now.
    pub open: usize,
    /// Of which neither approved nor blocked: what still needs someone.
    pub unremediated: usize,
}

/// The exposures open now, by risk class (every class, in order).
pub fn open_now(reports: &[EpisodeReport]) -> Vec<OpenNow> {
    RiskClass::ALL
        .iter()
        .map(|&risk| {
            let open: Vec<&EpisodeReport> = reports.iter().filter(|r| r.risk == risk && r.open).collect();
            OpenNow {
                risk,
                open: open.len(),
                unremediated: open.iter().filter(|r| r.remediated_at.is_none()).count(),
            }
        })
        .collect()
}

/// One day of the convergence trend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Day {
    /// The UTC day.
    #[schema(value_type = String, format = Date)]
    pub day: NaiveDate,
    /// Exposures open and not remediated at its end.
    pub open_unremediated: usize,
}

/// For each UTC day from `first` to `last`, the exposures open and not remediated
/// at its end: the number a security team drives down.
pub fn convergence(reports: &[EpisodeReport], first: NaiveDate, last: NaiveDate) -> Vec<Day> {
    let mut out = Vec::new();
    let mut day = first;
    while day <= last {
        let end = (day + Duration::days(1))
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc())
            .unwrap_or_default();
        let open_unremediated = reports
            .iter()
            .filter(|r| r.opened_at < end && r.remediated_at.is_none_or(|at| at >= end))
            .count();
        out.push(Day {
            day,
            open_unremediated,
        });
        day += Duration::days(1);
    }
    out
}

#[cfg(test)]
mod tests {
    //! A scripted history, and figures computed by hand.

    use chrono::{TimeZone, Utc};
    use portwatch_events::PortSet;

    use super::*;
    use crate::ApprovalRequest;
    use crate::Notification;
    use crate::{Alert, AlertKind, Asset, AssetMatch, Severity};
    use crate::{Applied, BlockRequest};
    use crate::{Decision, DecisionKind};

    /// 2027-01-01 00:00 UTC plus `s` seconds.
    fn at(s: i64) -> Timestamp {
        Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).single().expect("ts") + Duration::seconds(s)
    }

    const DAY: i64 = 86_400;

    fn episode(
        id: &str,
        ip: &str,
        port: u16,
        opened: i64,
        mttd: Option<i64>,
        closed: Option<i64>,
    ) -> Episode {
        Episode {
            id: id.into(),
            ip: ip.parse().expect("ip"),
            port,
            proto: Proto::Tcp,
            opened_at: at(opened),
            last_seen: at(opened),
            last_negative_before_open: mttd.map(|m| at(opened - m)),
            mttd_bound_secs: mttd,
            closed_at: closed.map(at),
            closed_declared_at: closed.map(at),
            duration_secs: closed.map(|c| c - opened),
            observations: 1,
            alerts: vec![AlertKind::ExposureOpened],
        }
    }

    fn told(ledger: &mut Ledger, e: &Episode, s: i64) {
        let alert = Alert {
            id: format!("{}:exposure_opened", e.id),
            kind: AlertKind::ExposureOpened,
            severity: Severity::High,
            risk: RiskClass::HighRiskPort,
            ip: e.ip,
            proto: e.proto,
            port: e.port,
            episode_id: e.id.clone(),
            at: e.opened_at,
            baseline: false,
        };
        let notification = Notification {
            id: format!("n-{}", e.id),
            kind: NotificationKind::Firing,
            ip: e.ip,
            severity: Severity::High,
            asset: AssetMatch::default(),
            alerts: vec![alert],
            at: at(s),
        };
        ledger.apply(&Decision::new(
            at(s),
            "notifier",
            DecisionKind::Notified { notification },
        ));
    }

    #[test]
    fn figures_match_the_hand_computed_ones() {
        let e1 = episode("e1", "10.0.0.1", 6379, 600, Some(600), Some(2 * 3600 + 600));
        let e2 = episode("e2", "10.0.0.2", 8080, 1200, Some(300), None);
        let e3 = episode("e3", "10.0.0.1", 6379, DAY, None, Some(DAY + 1500));
        let e4 = episode("e4", "10.0.0.2", 22, DAY + 12 * 3600, Some(120), None);
        let mut ledger = Ledger::new();
        told(&mut ledger, &e1, 630);
        told(&mut ledger, &e3, DAY + 20);
        // e2: approved an hour after it opened.
        ledger.apply(&Decision::new(
            at(3000),
            "olga",
            DecisionKind::ApprovalRequested(ApprovalRequest {
                approval_id: "a1".into(),
                net: "10.0.0.2/32".parse().expect("net"),
                ports: PortSet::parse("8080").expect("ports"),
                proto: Proto::Tcp,
                service: None,
                reason: "status page".into(),
                owner: "web".into(),
                expires_at: at(30 * DAY),
            }),
        ));
        ledger.apply(&Decision::new(
            at(4800),
            "arno",
            DecisionKind::ApprovalGranted {
                approval_id: "a1".into(),
                bound: Vec::new(),
                note: None,
            },
        ));
        // e3: blocked; the port closed 25 minutes after it opened, the probes
        // verified the block 5 minutes later.
        for (s, by, what) in block_steps(&e3) {
            ledger.apply(&Decision::new(at(s), by, what));
        }
        let assets = Assets::new(vec![
            Asset {
                net: "10.0.0.1/32".parse().expect("net"),
                owner: Some("db-team".into()),
                system: Some("cache".into()),
                zone: "default".into(),
            },
            Asset {
                net: "10.0.0.2/32".parse().expect("net"),
                owner: Some("web-team".into()),
                system: None,
                zone: "default".into(),
            },
        ]);
        let risk = |e: &Episode| {
            if e.port == 6379 {
                RiskClass::HighRiskPort
            } else {
                RiskClass::RiskPort
            }
        };
        let reports = episodes(&[e1, e2, e3, e4], &risk, &assets, &ledger);
        let by_id: BTreeMap<&str, &EpisodeReport> =
            reports.iter().map(|r| (r.episode_id.as_str(), r)).collect();
        assert_eq!(
            (
                by_id["e1"].remedy,
                by_id["e1"].time_to_remediate_secs,
                by_id["e1"].time_to_notify_secs
            ),
            (Some(Remedy::Closed), Some(7200), Some(30))
        );
        assert_eq!(
            (
                by_id["e2"].remedy,
                by_id["e2"].time_to_remediate_secs,
                by_id["e2"].time_to_notify_secs
            ),
            (Some(Remedy::Approved), Some(3600), None)
        );
        assert_eq!(
            (
                by_id["e3"].remedy,
                by_id["e3"].time_to_remediate_secs,
                by_id["e3"].time_to_notify_secs
            ),
            (Some(Remedy::Blocked), Some(1500), Some(20))
        );
        assert_eq!(
            (by_id["e4"].remedy, by_id["e4"].time_to_remediate_secs),
            (None, None)
        );
        assert_eq!(by_id["e1"].owner.as_deref(), Some("db-team"));

        let groups = aggregate(&reports, By::Risk, at(0), at(2 * DAY));
        assert_eq!(
            groups,
            [
                Group {
                    key: "high_risk_port".into(),
                    episodes: 2,
                    open: 0,
                    mttd_mean_secs: Some(600.0),
                    mttd_p50_secs: Some(600),
                    notify_mean_secs: Some(25.0),
                    mttr_mean_secs: Some(4350.0),
                    mttr_p50_secs: Some(1500),
                },
                Group {
                    key: "risk_port".into(),
                    episodes: 2,
                    open: 1,
                    mttd_mean_secs: Some(210.0),
                    mttd_p50_secs: Some(120),
                    notify_mean_secs: None,
                    mttr_mean_secs: Some(3600.0),
                    mttr_p50_secs: Some(3600),
                },
            ]
        );
        let owners: Vec<(String, usize)> = aggregate(&reports, By::Owner, at(0), at(2 * DAY))
            .into_iter()
            .map(|g| (g.key, g.episodes))
            .collect();
        assert_eq!(owners, [("db-team".into(), 2), ("web-team".into(), 2)]);
        let days: Vec<(String, usize)> = aggregate(&reports, By::Day, at(0), at(2 * DAY))
            .into_iter()
            .map(|g| (g.key, g.open))
            .collect();
        assert_eq!(days, [("2027-01-01".into(), 0), ("2027-01-02".into(), 1)]);
        // The second day only: e3 and e4.
        assert_eq!(
            aggregate(&reports, By::Risk, at(DAY), at(2 * DAY))
                .iter()
                .map(|g| g.episodes)
                .sum::<usize>(),
            2
        );

        // Open now: e2 (approved: open, not unremediated) and e4 (risk_port).
        let now: Vec<(RiskClass, usize, usize)> = open_now(&reports)
            .into_iter()
            .map(|o| (o.risk, o.open, o.unremediated))
            .collect();
        assert_eq!(
            now,
            [
                (RiskClass::RiskPort, 2, 1),
                (RiskClass::HighRiskPort, 0, 0),
                (RiskClass::HighRiskService, 0, 0),
                (RiskClass::HighRiskAdminPanel, 0, 0),
            ]
        );

        let trend = convergence(&reports, at(0).date_naive(), at(DAY).date_naive());
        assert_eq!(
            trend.iter().map(|d| d.open_unremediated).collect::<Vec<_>>(),
            [0, 1],
            "end of day 1: all remediated; end of day 2: e4 open"
        );
    }

    #[test]
    fn a_closing_before_the_block_is_not_the_blocks_doing() {
        // Closed at DAY + 100, before the block was applied (DAY + 130).
        let e = episode("e3", "10.0.0.1", 6379, DAY, None, Some(DAY + 100));
        let mut ledger = Ledger::new();
        for (s, by, what) in block_steps(&e) {
            ledger.apply(&Decision::new(at(s), by, what));
        }
        let risk = |_: &Episode| RiskClass::HighRiskPort;
        let r = &episodes(&[e], &risk, &Assets::default(), &ledger)[0];
        assert_eq!(
            (r.remedy, r.time_to_remediate_secs),
            (Some(Remedy::Closed), Some(100))
        );
        for remedy in [Remedy::Closed, Remedy::Approved, Remedy::Blocked] {
            assert_eq!(serde_json::to_value(remedy).ok(), Some(remedy.as_str().into()));
        }
    }

    /// A block of `e`: proposed, confirmed, applied, verified half an hour in (the
    /// port closed at 25 minutes).
    fn block_steps(e: &Episode) -> Vec<(i64, &'static str, DecisionKind)> {
        let id = "bk_1".to_string();
        vec![
            (
                DAY + 60,
                "olga",
                DecisionKind::BlockProposed(BlockRequest {
                    block_id: id.clone(),
                    ip: e.ip,
                    proto: e.proto,
                    port: e.port,
                    episode_id: e.id.clone(),
                    reason: "Redis open".into(),
                    duration_secs: 3600,
                }),
            ),
            (
                DAY + 120,
                "arno",
                DecisionKind::BlockConfirmed { block_id: id.clone() },
            ),
            (
                DAY + 130,
                "controller",
                DecisionKind::BlockApplied {
                    block_id: id.clone(),
                    applied: Applied {
                        applied_at: at(DAY + 130),
                        expires_at: at(DAY + 3730),
                        dry_run: false,
                        rules: "add element ...".into(),
                    },
                },
            ),
            (
                DAY + 1800,
                "controller",
                DecisionKind::BlockVerified { block_id: id },
            ),
        ]
    }
}
