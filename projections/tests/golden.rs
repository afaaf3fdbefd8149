//! Golden tests: each folder under `tests/fixtures/` holds `events.jsonl` (events in
//! log order) and `expected.json` (the snapshot the fold must produce). Run with
//! `PORTWATCH_BLESS=1` to rewrite `expected.json` after a deliberate change, then
//! review the diff by hand.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use portwatch_events::Event;
use portwatch_events::RiskClass;
use portwatch_projections::{
    fold_all, sort_alerts, sort_episodes, AlertKind, ChangeSet, FoldConfig, HostImage, Severity, Snapshot,
    State, StateImage,
};

fn load(name: &str) -> Vec<Event> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    fs::read_to_string(dir.join("events.jsonl"))
        .expect("events.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| Event::from_json(l).unwrap_or_else(|e| panic!("{name} line {}: {e}", i + 1)))
        .collect()
}

/// The fold config of the golden tests: the default policy, with the default ports
/// of the services the fixtures name (the binary fills these in from the probes).
fn config() -> FoldConfig {
    let mut policy = portwatch_projections::Policy::default();
    for (service, ports) in [
        ("redis", vec![6379]),
        ("postgresql", vec![5432]),
        ("http", vec![80, 8080]),
    ] {
        policy.service_ports.insert(service.to_string(), ports);
    }
    FoldConfig {
        policy: std::sync::Arc::new(policy),
        ..FoldConfig::default()
    }
}

fn run_case(name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let events = load(name);
    let snapshot = fold_all(config(), &events);
    let expected_path = dir.join("expected.json");
    if std::env::var_os("PORTWATCH_BLESS").is_some() {
        let json = serde_json::to_string_pretty(&snapshot).expect("json");
        fs::write(&expected_path, json + "\n").expect("write expected");
    }
    let expected: Snapshot =
        serde_json::from_str(&fs::read_to_string(&expected_path).expect("expected.json"))
            .expect("expected.json parses");
    assert_eq!(snapshot, expected, "fold of {name} differs from expected.json");

    // Redelivery: every event arrives again right after its successor (what a probe
    // node's spool resend looks like); the fold must drop the copies.
    let mut redelivered = Vec::new();
    for (i, event) in events.iter().enumerate() {
        redelivered.push(event.clone());
        if i > 0 {
            redelivered.push(events[i - 1].clone());
        }
    }
    assert_eq!(
        fold_all(config(), &redelivered),
        expected,
        "{name}: redelivered events changed the fold"
    );

    // Checkpoint: stop half way, serialise the state image, restore, go on.
    for cut in [0, events.len() / 2, events.len()] {
        let mut state = State::new(config());
        let mut changes = ChangeSet::default();
        for event in &events[..cut] {
            changes.extend(state.apply(event));
        }
        let json = serde_json::to_string(&state.image()).expect("image json");
        let image: StateImage = serde_json::from_str(&json).expect("image parses");
        let mut state = State::from_image(config(), image);
        for event in &events[cut..] {
            changes.extend(state.apply(event));
        }
        let resumed = snapshot_of(&state, changes);
        assert_eq!(
            resumed, expected,
            "{name}: resuming from a checkpoint at {cut} differs"
        );
    }
    resumes_from_host_images(name, &events, &expected);
}

/// The snapshot of a resumed fold: its state's rows and every change made on the way.
fn snapshot_of(state: &State, changes: ChangeSet) -> Snapshot {
    let mut episodes: Vec<_> = changes.episodes.into_values().collect();
    sort_episodes(&mut episodes);
    let mut alerts: Vec<_> = changes.alerts.into_values().collect();
    sort_alerts(&mut alerts);
    Snapshot {
        ports: state.ports().cloned().collect(),
        episodes,
        hosts: state.hosts().cloned().collect(),
        alerts,
    }
}

/// Incremental checkpoints: every `every` events the images of the hosts changed
/// since the last checkpoint are stored (a map standing in for the store, one image
/// per host, the latest winning); a restart at `cut` restores from the stored images
/// alone and goes on. The result equals the fold of everything in one go.
fn resumes_from_host_images(name: &str, events: &[Event], expected: &Snapshot) {
    for every in [1, 3, 7] {
        for cut in [0, events.len() / 3, events.len() / 2, events.len()] {
            let mut state = State::new(config());
            let mut stored: BTreeMap<std::net::IpAddr, HostImage> = BTreeMap::new();
            let mut changes = ChangeSet::default();
            let mut written = 0usize;
            for (i, event) in events[..cut].iter().enumerate() {
                changes.extend(state.apply(event));
                if (i + 1) % every == 0 {
                    for ip in state.take_changed() {
                        let json = serde_json::to_string(&state.host_image(ip)).expect("image json");
                        written += 1;
                        stored.insert(ip, serde_json::from_str(&json).expect("image parses"));
                    }
                }
            }
            // The events after the last checkpoint are folded again after the restart.
            let resume = cut - cut % every;
            let mut state = State::from_host_images(config(), stored.into_values());
            assert_eq!(
                state.changed_hosts(),
                0,
                "{name}: a restored state has nothing to write"
            );
            for event in &events[resume..] {
                changes.extend(state.apply(event));
            }
            let resumed = snapshot_of(&state, changes);
            assert_eq!(
                &resumed, expected,
                "{name}: resuming from host images (every {every}, cut {cut}, {written} written) differs"
            );
        }
    }
}

/// Detections fill the port row; a later detection replaces class and panels, a
/// scan's bare detail keeps them, details of ports not open are ignored.
#[test]
fn detection() {
    run_case("detection");
}

/// Every kind of alert in one story: a baseline scan, three ports open (one on the
/// high-risk list), Redis identified on 16379, a Tomcat manager on 8080, Redis
/// identified again a day later (no second alert), 6379 missed twice (closed) and
/// open again (a new episode, a new alert). Redelivery and checkpoint resumes are
/// checked by `run_case`; here the alert records themselves.
#[test]
fn alerts() {
    run_case("alerts");
    let events = load("alerts");
    let snapshot = fold_all(config(), &events);
    let got: Vec<(&str, AlertKind, Severity, RiskClass, String)> = snapshot
        .alerts
        .iter()
        .map(|a| {
            (
                a.id.as_str(),
                a.kind,
                a.severity,
                a.risk,
                format!("{}:{}", a.port, a.at.to_rfc3339()),
            )
        })
        .collect();
    let ep = |n: u32, port: u16| format!("0190f000-0000-7000-8000-{n:012}-tcp-{port}");
    let (e6379, e8080, e16379, reopened) = (ep(202, 6379), ep(202, 8080), ep(202, 16379), ep(208, 6379));
    let want = [
        // Same time: by id.
        (
            format!("{e16379}:exposure_opened"),
            AlertKind::ExposureOpened,
            Severity::Medium,
            RiskClass::RiskPort,
            "16379:2026-11-01T12:05:01+00:00",
        ),
        (
            format!("{e6379}:exposure_opened"),
            AlertKind::ExposureOpened,
            Severity::High,
            RiskClass::HighRiskPort,
            "6379:2026-11-01T12:05:01+00:00",
        ),
        (
            format!("{e8080}:exposure_opened"),
            AlertKind::ExposureOpened,
            Severity::Medium,
            RiskClass::RiskPort,
            "8080:2026-11-01T12:05:01+00:00",
        ),
        (
            format!("{e16379}:high_risk_service"),
            AlertKind::HighRiskService,
            Severity::High,
            RiskClass::HighRiskService,
            "16379:2026-11-01T12:06:00+00:00",
        ),
        (
            format!("{e8080}:high_risk_admin_panel"),
            AlertKind::HighRiskAdminPanel,
            Severity::High,
            RiskClass::HighRiskAdminPanel,
            "8080:2026-11-01T12:07:00+00:00",
        ),
        (
            format!("{e6379}:exposure_closed"),
            AlertKind::ExposureClosed,
            Severity::High,
            RiskClass::HighRiskPort,
            "6379:2026-11-02T12:10:01+00:00",
        ),
        (
            format!("{reopened}:exposure_opened"),
            AlertKind::ExposureOpened,
            Severity::High,
            RiskClass::HighRiskPort,
            "6379:2026-11-02T12:20:01+00:00",
        ),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|(id, k, s, r, at)| (id.as_str(), *k, *s, *r, at.to_string()))
        .collect();
    assert_eq!(got, want);
    // The episode remembers what it raised; that is what keeps a re-detection quiet.
    let redis = snapshot
        .episodes
        .iter()
        .find(|e| e.id == e16379)
        .expect("redis episode");
    assert_eq!(
        redis.alerts,
        [AlertKind::ExposureOpened, AlertKind::HighRiskService]
    );
    // The first scan covered these ports and found them closed: changes, not baseline.
    assert!(snapshot.alerts.iter().all(|a| !a.baseline));
    // The detection fixture's ports were open the first time they were ever scanned.
    let first = fold_all(config(), &load("detection"));
    let opened: Vec<bool> = first
        .alerts
        .iter()
        .filter(|a| a.kind == AlertKind::ExposureOpened)
        .map(|a| a.baseline)
        .collect();
    assert_eq!(opened, [true, true]);
    // Folding the same log again gives the same ids.
    assert_eq!(fold_all(config(), &events).alerts, snapshot.alerts);
}

/// Detections raise their alerts only on open ports and only for high-risk classes.
#[test]
fn detection_alerts() {
    let snapshot = fold_all(config(), &load("detection"));
    let detections: Vec<(&str, AlertKind)> = snapshot
        .alerts
        .iter()
        .filter(|a| a.kind != AlertKind::ExposureOpened)
        .map(|a| (a.id.as_str(), a.kind))
        .collect();
    assert_eq!(
        detections,
        [
            (
                "0190f000-0000-7000-8000-000000000101-tcp-16379:high_risk_service",
                AlertKind::HighRiskService
            ),
            (
                "0190f000-0000-7000-8000-000000000101-tcp-8080:high_risk_admin_panel",
                AlertKind::HighRiskAdminPanel
            ),
        ],
        "none for risk_port, none for a port not open"
    );
}

#[test]
fn alerts_fixture_covers_every_kind() {
    let snapshot = fold_all(config(), &load("alerts"));
    for kind in AlertKind::ALL {
        assert!(
            snapshot.alerts.iter().any(|a| a.kind == kind),
            "no {kind:?} alert"
        );
    }
}

#[test]
fn open_then_closed() {
    run_case("open_then_closed");
}

#[test]
fn flap_and_reopen() {
    run_case("flap_and_reopen");
}

#[test]
fn liveness() {
    run_case("liveness");
}

#[test]
fn late_and_partial() {
    run_case("late_and_partial");
}
