//! Golden tests: each folder under `tests/fixtures/` holds `events.jsonl` (events in
//! log order) and `expected.json` (the snapshot the fold must produce). Run with
//! `PORTWATCH_BLESS=1` to rewrite `expected.json` after a deliberate change, then
//! review the diff by hand.

use std::fs;
use std::path::Path;

use portwatch_events::Event;
use portwatch_projections::{
    fold_all, sort_episodes, Alert, AlertKind, ChangeSet, FoldConfig, Severity, Snapshot, State, StateImage,
};

fn run_case(name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = fs::read_to_string(dir.join("events.jsonl")).expect("events.jsonl");
    let events: Vec<Event> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| Event::from_json(l).unwrap_or_else(|e| panic!("{name} line {}: {e}", i + 1)))
        .collect();
    let snapshot = fold_all(FoldConfig::default(), &events);
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
        fold_all(FoldConfig::default(), &redelivered),
        expected,
        "{name}: redelivered events changed the fold"
    );

    // Checkpoint: stop half way, serialise the state image, restore, go on.
    for cut in [0, events.len() / 2, events.len()] {
        let mut state = State::new(FoldConfig::default());
        let mut changes = ChangeSet::default();
        for event in &events[..cut] {
            changes.extend(state.apply(event));
        }
        let json = serde_json::to_string(&state.image()).expect("image json");
        let image: StateImage = serde_json::from_str(&json).expect("image parses");
        let mut state = State::from_image(FoldConfig::default(), image);
        for event in &events[cut..] {
            changes.extend(state.apply(event));
        }
        let mut episodes: Vec<_> = changes.episodes.into_values().collect();
        sort_episodes(&mut episodes);
        let resumed = Snapshot {
            ports: state.ports().cloned().collect(),
            episodes,
            hosts: state.hosts().cloned().collect(),
        };
        assert_eq!(
            resumed, expected,
            "{name}: resuming from a checkpoint at {cut} differs"
        );
    }
}

/// Detections fill the port row; a later detection replaces class and panels, a
/// scan's bare detail keeps them, details of ports not open are ignored.
#[test]
fn detection() {
    run_case("detection");
}

/// A detection that classifies an open port high-risk raises one alert per episode
/// and class; detecting it again (or replaying) yields the same id.
#[test]
fn detection_alerts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/detection");
    let events: Vec<Event> = fs::read_to_string(dir.join("events.jsonl"))
        .expect("events")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Event::from_json(l).expect("event"))
        .collect();
    let alerts = |events: &[Event]| {
        let mut state = State::new(FoldConfig::default());
        let mut out = Vec::new();
        for event in events {
            let changes = state.apply(event);
            if let portwatch_events::Observation::PortDetail(detail) = &event.observation {
                out.extend(Alert::for_detail(detail, &changes));
            }
        }
        out
    };
    let first = alerts(&events);
    let ids: Vec<(&str, AlertKind, Severity)> = first
        .iter()
        .map(|a| (a.id.as_str(), a.kind, a.severity))
        .collect();
    assert_eq!(
        ids,
        [
            (
                "0190f000-0000-7000-8000-000000000101-tcp-16379:high_risk_service",
                AlertKind::HighRiskService,
                Severity::High
            ),
            (
                "0190f000-0000-7000-8000-000000000101-tcp-8080:high_risk_admin_panel",
                AlertKind::HighRiskAdminPanel,
                Severity::High
            ),
        ],
        "one alert per high-risk detection; none for risk_port, none for a port not open"
    );
    assert_eq!(
        first[0].at.to_rfc3339(),
        "2026-11-01T12:01:00+00:00",
        "at the detection"
    );
    assert_eq!(alerts(&events), first, "a replay raises the same alerts");
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
