//! What the planner is told: the estate as configured ([`Estate`]) and, read from
//! the deployment's read model, what was last seen of it ([`observe`]): liveness,
//! open ports, probe nodes and how long recent passes took. Both deployments read
//! through the same `ReadModel`, so this is written once.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use portwatch_events::Task;
use portwatch_projections::{Assets, PortState};
use portwatch_stores::{HostQuery, PageRequest, PortQuery, ReadError, ReadModel};

use crate::plan::{self, Plan, Settings, ZoneFacts};

/// How far back recent passes are looked for.
const MEASURED_SINCE: chrono::Duration = chrono::Duration::days(7);

/// The estate as configured: the zones and their addresses, the rate of one probe
/// node and the port lists.
#[derive(Debug, Clone, PartialEq)]
pub struct Estate {
    /// Each zone and its addresses after exclusions. The embedded deployment has one,
    /// `default`, holding every asset: its one process probes them all.
    pub zones: Vec<(String, u64)>,
    /// Probes per second of one probe node (`[scan] rate`).
    pub rate: f64,
    /// Ports of `[scan] high_risk_ports`.
    pub high_risk_ports: u64,
    /// Ports of `[scan] liveness_ports`.
    pub liveness_ports: u64,
}

impl Estate {
    /// The zone an address is counted in.
    fn zone_of<'a>(&'a self, assets: &'a Assets, ip: IpAddr) -> Option<&'a str> {
        match self.zones.as_slice() {
            [(only, _)] => Some(only.as_str()),
            _ => assets.lookup(ip).map(|a| a.zone.as_str()),
        }
    }

    /// The plan settings with `cadences`.
    pub fn settings(&self, cadences: BTreeMap<Task, Duration>) -> Settings {
        Settings {
            cadences,
            rate: self.rate,
            high_risk_ports: self.high_risk_ports,
            liveness_ports: self.liveness_ports,
        }
    }
}

fn size(net: &IpNet) -> u128 {
    let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
    1u128.checked_shl(host_bits).unwrap_or(u128::MAX)
}

/// The addresses of each zone of `assets` outside `exclude`, by zone name. An
/// address counts in the zone of its most specific asset (as findings are
/// matched), so an asset of another zone inside one of this zone's counts there.
pub fn zone_sizes(assets: &Assets, exclude: &[IpNet]) -> Vec<(String, u64)> {
    let mut zones: BTreeMap<&str, Vec<IpNet>> = BTreeMap::new();
    for a in assets.list() {
        zones.entry(a.zone.as_str()).or_default().push(a.net);
    }
    zones
        .iter()
        .map(|(zone, nets)| {
            let nets = IpNet::aggregate(nets);
            // Taken out: the exclusions, and other zones' assets inside this one's.
            let mut out: Vec<IpNet> = exclude.to_vec();
            for a in assets.list().iter().filter(|a| a.zone != *zone) {
                if nets
                    .iter()
                    .any(|n| n.contains(&a.net) && n.prefix_len() < a.net.prefix_len())
                {
                    out.push(a.net);
                }
            }
            let out = IpNet::aggregate(&out);
            // Aggregated CIDR lists: two networks either nest or are apart.
            let total: u128 = nets
                .iter()
                .map(|n| {
                    let gone: u128 = out
                        .iter()
                        .map(|x| {
                            if n.contains(x) {
                                size(x)
                            } else if x.contains(n) {
                                size(n)
                            } else {
                                0
                            }
                        })
                        .sum();
                    size(n).saturating_sub(gone)
                })
                .fold(0, u128::saturating_add);
            ((*zone).to_string(), u64::try_from(total).unwrap_or(u64::MAX))
        })
        .collect()
}

/// What the read model says of each zone of `estate`. With `nodes`, every zone is
/// planned with that many probe nodes (a what-if) instead of those seen running.
pub async fn observe(
    read: &dyn ReadModel,
    assets: &Assets,
    estate: &Estate,
    nodes: Option<u32>,
) -> Result<Vec<ZoneFacts>, ReadError> {
    let all = PageRequest::all();
    let hosts = read.hosts(&HostQuery::default(), &all).await?.items;
    let open = PortQuery {
        state: Some(PortState::Open),
        ..PortQuery::default()
    };
    let ports = read.ports(&open, &all).await?.items;
    let running = read.nodes().await?;
    let runs = read.task_runs(chrono::Utc::now() - MEASURED_SINCE).await?;

    #[derive(Default)]
    struct Seen {
        live: u64,
        checked: u64,
        open: u64,
        web: u64,
        nodes: u32,
        measured: BTreeMap<Task, f64>,
    }
    let mut seen: HashMap<&str, Seen> = HashMap::new();
    for h in &hosts {
        let (Some(alive), Some(zone)) = (h.alive, estate.zone_of(assets, h.ip)) else {
            continue;
        };
        let s = seen.entry(zone).or_default();
        s.checked += 1;
        s.live += u64::from(alive);
    }
    for p in &ports {
        if let Some(zone) = estate.zone_of(assets, p.ip) {
            let s = seen.entry(zone).or_default();
            s.open += 1;
            s.web += u64::from(matches!(p.service.as_deref(), Some("http" | "https")));
        }
    }
    for n in running.iter().filter(|n| n.health == "ok") {
        if let Some((zone, _)) = estate.zones.iter().find(|(z, _)| *z == n.zone) {
            seen.entry(zone.as_str()).or_default().nodes += 1;
        }
    }
    for r in runs {
        let took = r
            .last_done
            .as_ref()
            .and_then(|j| Some((j.updated_at? - j.started_at?).num_milliseconds().max(0) as f64 / 1000.0));
        if let (Some(took), Some((zone, _))) = (took, estate.zones.iter().find(|(z, _)| *z == r.zone)) {
            seen.entry(zone.as_str())
                .or_default()
                .measured
                .insert(r.task, took);
        }
    }
    Ok(estate
        .zones
        .iter()
        .map(|(name, addresses)| {
            let s = seen.remove(name.as_str()).unwrap_or_default();
            ZoneFacts {
                name: name.clone(),
                assets: *addresses,
                live_ratio: (s.checked > 0).then(|| s.live as f64 / s.checked as f64),
                nodes: nodes.unwrap_or(s.nodes),
                open_ports: s.open,
                web_ports: s.web,
                measured: s.measured,
            }
        })
        .collect())
}

/// The plan of the deployment behind `read` now, with `cadences`.
pub async fn current(
    read: &dyn ReadModel,
    assets: &Assets,
    estate: &Estate,
    cadences: BTreeMap<Task, Duration>,
    nodes: Option<u32>,
) -> Result<Plan, ReadError> {
    let zones = observe(read, assets, estate, nodes).await?;
    Ok(plan::plan(&zones, &estate.settings(cadences)))
}

/// Publish a plan: gauges per task and zone (`portwatch_plan_*`), and every
/// warning logged once when it appears (and once more when it clears).
#[derive(Debug, Default)]
pub struct Announcer {
    warned: std::collections::BTreeSet<String>,
}

impl Announcer {
    /// Set the gauges of `plan` and log what changed in its warnings.
    pub fn publish(&mut self, plan: &Plan) {
        for z in &plan.zones {
            let zone = z.zone.clone();
            metrics::gauge!("portwatch_plan_budget_share", "zone" => zone.clone()).set(z.budget_share);
            metrics::gauge!("portwatch_plan_nodes", "zone" => zone.clone()).set(f64::from(z.nodes));
            for t in &z.tasks {
                let labels = [("zone", zone.clone()), ("task", t.task.clone())];
                metrics::gauge!("portwatch_plan_expected_pass_seconds", &labels).set(t.expected_pass_secs);
                metrics::gauge!("portwatch_plan_meets_cadence", &labels)
                    .set(f64::from(u8::from(t.meets_cadence)));
                if let Some(m) = t.measured_pass_secs {
                    metrics::gauge!("portwatch_plan_measured_pass_seconds", &labels).set(m);
                }
            }
            for d in &z.detection {
                let labels = [
                    ("zone", zone.clone()),
                    ("risk", d.risk.clone()),
                    ("hosts", d.hosts.clone()),
                ];
                metrics::gauge!("portwatch_plan_worst_detection_seconds", &labels)
                    .set(d.worst_secs.unwrap_or(-1.0));
            }
        }
        metrics::gauge!("portwatch_plan_warnings").set(plan.warnings.len() as f64);
        let now: std::collections::BTreeSet<String> = plan.warnings.iter().cloned().collect();
        for w in now.difference(&self.warned) {
            tracing::warn!(warning = %w, "plan: the configured cadences cannot all be met");
        }
        for w in self.warned.difference(&now) {
            tracing::info!(warning = %w, "plan: no longer the case");
        }
        self.warned = now;
    }
}

#[cfg(test)]
mod tests {
    use portwatch_projections::Asset;

    use super::*;

    fn asset(net: &str, zone: &str) -> Asset {
        Asset {
            net: net.parse().expect("net"),
            owner: None,
            system: None,
            zone: zone.into(),
        }
    }

    #[test]
    fn zones_count_their_addresses_after_exclusions_and_nested_assets() {
        let assets = Assets::new(vec![
            asset("10.0.0.0/16", "a"),
            asset("10.0.5.0/24", "b"),
            asset("192.0.2.0/24", "b"),
            asset("192.0.2.128/25", "b"),
        ]);
        let exclude: Vec<IpNet> = vec![
            "10.0.0.0/30".parse().expect("net"),
            "10.0.5.0/28".parse().expect("net"),
        ];
        let sizes = zone_sizes(&assets, &exclude);
        // a: 65,536 less b's /24 and the /30; b: its /24 less the /28, and 192.0.2.0/24
        // once (the /25 is inside it).
        assert_eq!(
            sizes,
            vec![("a".into(), 65_536 - 256 - 4), ("b".into(), 256 - 16 + 256)]
        );
        let whole: u64 = sizes.iter().map(|(_, n)| n).sum();
        let counted = (0..=u16::MAX)
            .map(|i| std::net::IpAddr::from([10, 0, (i >> 8) as u8, i as u8]))
            .chain((0..=255u8).map(|i| std::net::IpAddr::from([192, 0, 2, i])))
            .filter(|ip| !exclude.iter().any(|x| x.contains(ip)))
            .count();
        assert_eq!(whole, counted as u64);
    }
}
