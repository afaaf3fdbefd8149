//! The planner: whether the configured cadences can be met.
//!
//! A pass of a task costs the probes it sends (targets × ports) at the rate the zone's
//! probe nodes scan together; a task whose pass takes longer than its cadence cannot
//! keep it, and a zone whose tasks together need more probe time than there is
//! (the sum of pass / cadence over its tasks above 1) falls behind on all of them.
//! The worst case for finding a port that opens just after a pass went by is one
//! cadence (until the next pass starts) plus one pass (until it reaches the port),
//! through the fastest task that covers the port.
//!
//! Pure arithmetic over what the caller read (assets, liveness, nodes, measured
//! passes), so the same in both deployments and testable to the second.

use std::collections::BTreeMap;
use std::time::Duration;

use portwatch_events::Task;
use serde::Serialize;

/// Every port of a host.
pub const ALL_PORTS: u64 = 65_535;

/// What the planner knows of one network zone.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneFacts {
    /// The zone's name.
    pub name: String,
    /// Addresses of its assets, after exclusions.
    pub assets: u64,
    /// Of its hosts checked for liveness, the share that answered; none when none was
    /// checked yet (then every host counts as live, as the scheduler treats them).
    pub live_ratio: Option<f64>,
    /// Probe nodes scanning it (the embedded deployment: one).
    pub nodes: u32,
    /// Ports known open, and how many of them serve HTTP(S).
    pub open_ports: u64,
    /// Of those, the web ports (the admin panel task's targets).
    pub web_ports: u64,
    /// How long the last finished pass of each task took there, in seconds.
    pub measured: BTreeMap<Task, f64>,
}

/// The settings the plan is made for.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Each running task's cadence (tasks switched off are absent).
    pub cadences: BTreeMap<Task, Duration>,
    /// Probes per second of one probe node (`[scan] rate`).
    pub rate: f64,
    /// Ports of the high-risk list.
    pub high_risk_ports: u64,
    /// Ports the liveness check tries per host.
    pub liveness_ports: u64,
}

/// One task in one zone.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TaskPlan {
    /// The task, by its `[schedule]` key.
    pub task: String,
    /// Targets of one pass (hosts, or known open ports for the tasks that look at them).
    pub targets: u64,
    /// Ports tried per target.
    pub ports_per_target: u64,
    /// Probes of one pass.
    pub probes: u64,
    /// Its cadence.
    pub cadence_secs: u64,
    /// How long one pass takes at the zone's rate.
    pub expected_pass_secs: f64,
    /// How long the last finished pass took, if one did.
    pub measured_pass_secs: Option<f64>,
    /// Whether a pass fits in the cadence.
    pub meets_cadence: bool,
    /// The share of the zone's probe time the task takes (pass / cadence).
    pub budget_share: f64,
}

/// The worst case for finding one kind of exposure in a zone.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Detection {
    /// `high_risk_port` or `risk_port` (any other port).
    pub risk: String,
    /// `live` or `dead`: whether the host answered its last liveness check.
    pub hosts: String,
    /// Seconds from the port opening to a pass seeing it, at worst; none when no
    /// running task covers it.
    pub worst_secs: Option<f64>,
    /// The task(s) that find it that fast.
    pub via: Option<String>,
}

/// One zone's plan.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ZonePlan {
    /// The zone.
    pub zone: String,
    /// Addresses of its assets.
    pub assets: u64,
    /// Hosts counted live (assets × the liveness ratio last seen).
    pub live_hosts: u64,
    /// Probe nodes running there (the figures count at least one).
    pub nodes: u32,
    /// Probes per second of all its nodes together.
    pub probes_per_sec: f64,
    /// Each running task.
    pub tasks: Vec<TaskPlan>,
    /// The sum of the tasks' shares: above 1, the zone cannot keep up.
    pub budget_share: f64,
    /// Worst-case detection time per risk class and host state.
    pub detection: Vec<Detection>,
}

/// The plan of a deployment.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Plan {
    /// Per zone.
    pub zones: Vec<ZonePlan>,
    /// What cannot be met, and what would fix it.
    pub warnings: Vec<String>,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// A duration for people: `269 s`, `7.2 h`, `5.0 d`.
fn human(secs: f64) -> String {
    if secs < 120.0 {
        format!("{secs:.0} s")
    } else if secs < 7_200.0 {
        format!("{:.1} min", secs / 60.0)
    } else if secs < 172_800.0 {
        format!("{:.1} h", secs / 3_600.0)
    } else {
        format!("{:.1} d", secs / 86_400.0)
    }
}

impl ZoneFacts {
    /// Hosts counted live and dead.
    fn split(&self) -> (u64, u64) {
        let ratio = self.live_ratio.unwrap_or(1.0).clamp(0.0, 1.0);
        let live = (self.assets as f64 * ratio).round() as u64;
        (live, self.assets - live.min(self.assets))
    }
}

/// (targets, ports per target) of one pass of `task` in `zone`.
fn work_of(task: Task, zone: &ZoneFacts, s: &Settings) -> (u64, u64) {
    let (live, dead) = zone.split();
    match task {
        Task::Liveness => (zone.assets, s.liveness_ports),
        Task::FullPorts => (live, ALL_PORTS),
        Task::HighRiskPorts => (live, s.high_risk_ports),
        Task::OfflineHighRiskPorts => (dead, s.high_risk_ports),
        Task::OfflineFullPorts => (dead, ALL_PORTS),
        Task::AllAssetsFullPorts => (zone.assets, ALL_PORTS),
        Task::PortRecheck | Task::ServiceDetection => (zone.open_ports, 1),
        Task::AdminPanels => (zone.web_ports, 1),
        Task::Adhoc => (0, 0),
    }
}

/// Plan every zone of `zones` under `settings`.
pub fn plan(zones: &[ZoneFacts], settings: &Settings) -> Plan {
    let mut warnings = Vec::new();
    let zones = zones
        .iter()
        .map(|zone| plan_zone(zone, settings, &mut warnings))
        .collect();
    Plan { zones, warnings }
}

fn plan_zone(zone: &ZoneFacts, s: &Settings, warnings: &mut Vec<String>) -> ZonePlan {
    if zone.nodes == 0 && !s.cadences.is_empty() {
        warnings.push(format!(
            "zone {}: no probe node is running there (none sent a heartbeat lately): none of its tasks runs; \
             start one (`portwatch probe --zone {}`); the figures below are for one",
            zone.name, zone.name
        ));
    }
    let nodes = zone.nodes.max(1);
    let per_sec = s.rate.max(f64::MIN_POSITIVE) * f64::from(nodes);
    let mut tasks = Vec::new();
    for (&task, &cadence) in &s.cadences {
        let (targets, ports) = work_of(task, zone, s);
        let probes = targets.saturating_mul(ports);
        let pass = probes as f64 / per_sec;
        let cadence_secs = secs(cadence);
        let meets = pass <= cadence_secs;
        if !meets {
            // The nodes, or the rate per node, that would fit a pass in the cadence.
            let need_nodes = (probes as f64 / (s.rate * cadence_secs)).ceil();
            let need_rate = probes as f64 / (f64::from(nodes) * cadence_secs);
            warnings.push(format!(
                "zone {}: {} cannot keep its cadence of {}: a pass is {} probes, {} at {:.0} probes/s ({} node(s) at {:.0}/s); \
                 it needs {need_nodes:.0} node(s), or {need_rate:.0} probes/s per node, or a cadence of at least {}",
                zone.name,
                task.as_str(),
                human(cadence_secs),
                probes,
                human(pass),
                per_sec,
                nodes,
                s.rate,
                human(pass.ceil()),
            ));
        }
        tasks.push(TaskPlan {
            task: task.as_str().to_string(),
            targets,
            ports_per_target: ports,
            probes,
            cadence_secs: cadence.as_secs(),
            expected_pass_secs: pass,
            measured_pass_secs: zone.measured.get(&task).copied(),
            meets_cadence: meets,
            budget_share: if cadence_secs > 0.0 {
                pass / cadence_secs
            } else {
                f64::INFINITY
            },
        });
    }
    let budget_share = tasks.iter().map(|t| t.budget_share).fold(0.0, |a, b| a + b);
    if budget_share > 1.0 {
        let largest = tasks
            .iter()
            .max_by(|a, b| a.budget_share.total_cmp(&b.budget_share))
            .map(|t| t.task.clone())
            .unwrap_or_default();
        warnings.push(format!(
            "zone {}: the tasks need {:.1}× the probe time its {} node(s) have: every task falls behind; \
             add nodes ({:.0} in all), raise the rate, or lengthen cadences ({largest} takes the most)",
            zone.name,
            budget_share,
            nodes,
            (budget_share * f64::from(nodes)).ceil(),
        ));
    }
    let worst = |task: Task| -> Option<f64> {
        let t = tasks.iter().find(|t| t.task == task.as_str())?;
        Some(t.cadence_secs as f64 + t.expected_pass_secs)
    };
    // Each way to find an exposure: the tasks in turn (a dead host found live by the
    // liveness check, then scanned by the live hosts' task).
    let best = |paths: &[&[Task]]| -> (Option<f64>, Option<String>) {
        paths
            .iter()
            .filter_map(|path| {
                let total = path.iter().map(|t| worst(*t)).sum::<Option<f64>>()?;
                Some((
                    total,
                    path.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(" then "),
                ))
            })
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map_or((None, None), |(w, via)| (Some(w), Some(via)))
    };
    use Task::*;
    let ways: [(&str, &str, &[&[Task]]); 4] = [
        (
            "high_risk_port",
            "live",
            &[&[HighRiskPorts], &[FullPorts], &[AllAssetsFullPorts]],
        ),
        (
            "high_risk_port",
            "dead",
            &[
                &[OfflineHighRiskPorts],
                &[OfflineFullPorts],
                &[AllAssetsFullPorts],
                &[Liveness, HighRiskPorts],
            ],
        ),
        ("risk_port", "live", &[&[FullPorts], &[AllAssetsFullPorts]]),
        (
            "risk_port",
            "dead",
            &[&[OfflineFullPorts], &[AllAssetsFullPorts], &[Liveness, FullPorts]],
        ),
    ];
    let detection = ways
        .iter()
        .map(|(risk, hosts, paths)| {
            let (worst_secs, via) = best(paths);
            Detection {
                risk: (*risk).to_string(),
                hosts: (*hosts).to_string(),
                worst_secs,
                via,
            }
        })
        .collect();
    let (live, _) = zone.split();
    ZonePlan {
        zone: zone.name.clone(),
        assets: zone.assets,
        live_hosts: live,
        nodes: zone.nodes,
        probes_per_sec: per_sec,
        tasks,
        budget_share,
        detection,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(assets: u64, live_ratio: Option<f64>, nodes: u32) -> ZoneFacts {
        ZoneFacts {
            name: "default".into(),
            assets,
            live_ratio,
            nodes,
            open_ports: 0,
            web_ports: 0,
            measured: BTreeMap::new(),
        }
    }

    fn settings(cadences: &[(Task, u64)]) -> Settings {
        Settings {
            cadences: cadences
                .iter()
                .map(|(t, s)| (*t, Duration::from_secs(*s)))
                .collect(),
            rate: 10_000.0,
            high_risk_ports: 41,
            liveness_ports: 4,
        }
    }

    #[test]
    fn a_slash_16_high_risk_pass_at_ten_thousand_probes_a_second_is_269_seconds() {
        let plan = plan(
            &[zone(65_536, None, 1)],
            &settings(&[(Task::HighRiskPorts, 300), (Task::FullPorts, 60)]),
        );
        let z = &plan.zones[0];
        let high = z
            .tasks
            .iter()
            .find(|t| t.task == "high_risk_ports")
            .expect("task");
        // 65,536 hosts × 41 ports = 2,686,976 probes at 10,000/s.
        assert_eq!(high.probes, 2_686_976);
        assert!((high.expected_pass_secs - 268.6976).abs() < 1e-9, "{high:?}");
        assert!(high.meets_cadence);
        let full = z.tasks.iter().find(|t| t.task == "full_ports").expect("task");
        assert_eq!(full.probes, 65_536 * 65_535);
        assert!(!full.meets_cadence);
        // 4,294,901,760 probes at 10,000/s: 429,490 s, about 5 days.
        assert!((full.expected_pass_secs - 429_490.176).abs() < 1e-6);
        let warning = plan
            .warnings
            .iter()
            .find(|w| w.contains("full_ports cannot keep its cadence of 60 s"))
            .expect("full_ports flagged");
        assert!(
            warning.contains(
                "it needs 7159 node(s), or 71581696 probes/s per node, or a cadence of at least 5.0 d"
            ),
            "{warning}"
        );
        assert!(plan
            .warnings
            .iter()
            .any(|w| w.contains("every task falls behind")));
        // A high-risk port on a live host: one cadence plus one pass.
        let live = &z.detection[0];
        assert_eq!(
            (live.risk.as_str(), live.hosts.as_str()),
            ("high_risk_port", "live")
        );
        assert!((live.worst_secs.expect("covered") - 568.6976).abs() < 1e-9);
        assert_eq!(live.via.as_deref(), Some("high_risk_ports"));
    }

    #[test]
    fn dead_hosts_are_found_through_the_fastest_path_and_nodes_share_the_rate() {
        let s = settings(&[
            (Task::Liveness, 600),
            (Task::HighRiskPorts, 300),
            (Task::OfflineHighRiskPorts, 86_400),
        ]);
        let plan = plan(&[zone(131_072, Some(0.5), 3)], &s);
        let z = &plan.zones[0];
        assert_eq!(z.live_hosts, 65_536);
        assert_eq!(z.probes_per_sec, 30_000.0);
        let high = z
            .tasks
            .iter()
            .find(|t| t.task == "high_risk_ports")
            .expect("task");
        assert_eq!(high.targets, 65_536);
        assert!((high.expected_pass_secs - 2_686_976.0 / 30_000.0).abs() < 1e-9);
        // Dead: liveness (600 + 131,072 × 4 / 30,000) then high-risk (300 + 89.57),
        // sooner than the daily offline pass.
        let dead = &z.detection[1];
        let expected = 600.0 + 131_072.0 * 4.0 / 30_000.0 + 300.0 + 2_686_976.0 / 30_000.0;
        assert!(
            (dead.worst_secs.expect("covered") - expected).abs() < 1e-9,
            "{dead:?}"
        );
        assert_eq!(dead.via.as_deref(), Some("liveness then high_risk_ports"));
        // No task covers other ports: no figure rather than a made-up one.
        assert_eq!(z.detection[2].worst_secs, None);
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        let shares: f64 = z.tasks.iter().map(|t| t.budget_share).sum();
        assert!((z.budget_share - shares).abs() < 1e-12 && z.budget_share < 1.0);
    }
}
