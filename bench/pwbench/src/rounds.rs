//! Sweeps of a large estate for the checkpoint benchmark (`bench/checkpoint.sh`):
//! every host is scanned once per round on 8 high-risk ports; a host's open ports
//! follow its address, and one host in twenty changes them from round to round.
//! `verify` folds the same rounds with the pure fold and compares the open ports
//! and the port rows per state with what the projectors wrote to ClickHouse.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use chrono::Utc;
use portwatch_events::{Event, HostScan, JobId, Observation, Origin, OutcomeCounts, PortSet, Proto, Task};
use portwatch_ingest::kafka::{ensure_topics, produce_keyed};
use portwatch_ingest::KafkaSettings;
use portwatch_projections::{FoldConfig, PortState, State};
use portwatch_stores::ClickHouseStore;
use rdkafka::producer::FutureProducer;

/// The ports every sweep covers.
const COVERED: &str = "22,80,443,3306,5432,6379,8080,9200";

/// Host `i` of the estate: 10.0.0.0/8 upwards.
fn host(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32 + i as u32))
}

/// Open ports of host `i` in round `round`.
fn open_ports(i: usize, round: u32) -> Vec<u16> {
    let k = if i.is_multiple_of(20) {
        i + round as usize
    } else {
        i
    };
    match k % 13 {
        0 => vec![22],
        1 => vec![80, 443],
        2 => vec![3306],
        3 => vec![6379, 8080, 9200],
        _ => Vec::new(),
    }
}

/// Host `i`'s scan in round `round`.
fn scan(origin: &Origin, i: usize, round: u32) -> Event {
    host_scan(origin, host(i), open_ports(i, round))
}

/// A scan of `ip` on the 8 high-risk ports that found `open`.
pub(crate) fn host_scan(origin: &Origin, ip: IpAddr, open: Vec<u16>) -> Event {
    let now = Utc::now();
    Event::new(
        origin,
        now,
        Observation::HostScan(HostScan {
            ip,
            proto: Proto::Tcp,
            started_at: now,
            covered: PortSet::parse(COVERED).expect("ports"),
            counts: OutcomeCounts {
                open: open.len() as u32,
                closed: 8 - open.len() as u32,
                ..OutcomeCounts::default()
            },
            open,
            wildcard: false,
            unverified: 0,
        }),
    )
}

fn origin(round: u32) -> Origin {
    Origin {
        node: format!("bench-round-{round}"),
        job: JobId::new(),
        task: Task::HighRiskPorts,
    }
}

/// Produce round `round` of `hosts` scans to the observations topic of `settings`.
pub(crate) async fn produce(
    settings: &KafkaSettings,
    hosts: usize,
    round: u32,
) -> anyhow::Result<serde_json::Value> {
    ensure_topics(settings, Duration::from_secs(30)).await?;
    let producer: FutureProducer = settings.producer_config(Duration::from_secs(60)).create()?;
    let topic = settings.topics.observations.clone();
    let origin = origin(round);
    let started = Instant::now();
    let mut bytes = 0usize;
    for first in (0..hosts).step_by(5_000) {
        let records: Vec<(String, String)> = (first..(first + 5_000).min(hosts))
            .map(|i| {
                let e = scan(&origin, i, round);
                (e.key(), e.to_json())
            })
            .collect();
        bytes += records.iter().map(|r| r.1.len()).sum::<usize>();
        let failed = produce_keyed(&producer, &topic, &records)
            .await
            .into_iter()
            .filter(|r| r.is_err())
            .count();
        anyhow::ensure!(failed == 0, "{failed} records not acknowledged");
    }
    Ok(serde_json::json!({
        "measure": "round",
        "round": round,
        "hosts": hosts,
        "bytes": bytes,
        "seconds": started.elapsed().as_secs_f64(),
    }))
}

/// Fold rounds `1..=rounds` of `hosts` with the pure fold and compare with the
/// port rows in `store`.
pub(crate) async fn verify(
    store: &ClickHouseStore,
    hosts: usize,
    rounds: u32,
) -> anyhow::Result<serde_json::Value> {
    let mut state = State::new(FoldConfig::default());
    for round in 1..=rounds {
        let origin = origin(round);
        for i in 0..hosts {
            state.apply(&scan(&origin, i, round));
        }
    }
    let expected_open: BTreeSet<(IpAddr, u16)> = state
        .ports()
        .filter(|p| p.state == PortState::Open)
        .map(|p| (p.ip, p.port))
        .collect();
    let mut expected_counts = std::collections::BTreeMap::new();
    for p in state.ports() {
        *expected_counts
            .entry(p.state.as_str().to_string())
            .or_insert(0u64) += 1;
    }
    let stored_open: BTreeSet<(IpAddr, u16)> = store
        .query_json("SELECT ip, port FROM port_state FINAL WHERE state = 'open'")
        .await?
        .iter()
        .filter_map(|r| Some((r["ip"].as_str()?.parse().ok()?, number(&r["port"])? as u16)))
        .collect();
    let stored_counts: std::collections::BTreeMap<String, u64> = store
        .query_json("SELECT state, count() AS n FROM port_state FINAL GROUP BY state")
        .await?
        .iter()
        .filter_map(|r| Some((r["state"].as_str()?.to_string(), number(&r["n"])?)))
        .collect();
    let missing = expected_open.difference(&stored_open).count();
    let extra = stored_open.difference(&expected_open).count();
    Ok(serde_json::json!({
        "measure": "verify",
        "hosts": hosts,
        "rounds": rounds,
        "open_expected": expected_open.len(),
        "open_missing": missing,
        "open_extra": extra,
        "rows_expected": expected_counts,
        "rows_stored": stored_counts,
        "equal": missing == 0 && extra == 0 && expected_counts == stored_counts,
    }))
}

/// A JSON number, or a number in a string (ClickHouse's JSON quotes 64-bit ones).
fn number(v: &serde_json::Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str()?.parse().ok())
}
