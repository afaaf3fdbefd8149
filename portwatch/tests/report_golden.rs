//! MTTD, MTTR and convergence, golden: one scripted history of observations and
//! decisions (three days of scans of two hosts; notifications, an approval, a block)
//! is written in its wire format (events/SCHEMA.md) into the embedded log and journal
//! of `portwatch up` and into the observations and decisions topics of `portwatch
//! control` on tansu + ClickHouse. Both deployments fold it the way they fold
//! everything, and both serve the figures computed by hand below: the report API by
//! risk class, owner and day, the convergence trend, the gauges on `/metrics`; the
//! embedded `portwatch report` agrees; the scale-out one writes the same per-episode
//! figures to ClickHouse's `episode_reports`, and the Grafana panel's SQL over it
//! gives the same means.
//!
//! The history (times from D, midnight UTC three days ago; hosts A = 10.9.0.1, owner
//! db-team, and B = 10.9.0.2, owner web-team; 3306 and 6379 are high-risk ports):
//!
//! | episode | port | opened | MTTD | told | remediated | MTTR |
//! |---|---|---|---|---|---|---|
//! | E1 | A:6379 | D+600 | 600 | +60 | closed at D+4200 (missed at 4200 and 4500) | 3600 |
//! | E2 | B:3306 | D+1200 | 1200 | +30 | approved at D+7200 | 6000 |
//! | E3 | B:8443 | D+1200 | 1200 | +30 | open | - |
//! | E4 | A:6379 | D+1d+600 | 600 | +30 | blocked: applied D+1d+1000, closed D+1d+1200, verified | 600 |
//! | E5 | B:8500 | D+2d+3600 | 3600 | - | open | - |

#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Duration as Span, NaiveDate, Utc};
use serde_json::{json, Value};
use support::scaleout::{stack_config, Stack, API as CONTROL_API, BROKER_PORT};
use support::{stderr, stdout, wait_for, Proc};

const EMBEDDED_API: &str = "127.0.0.1:18082";
const A: &str = "10.9.0.1";
const B: &str = "10.9.0.2";
const DAY: i64 = 86_400;

/// Nothing scanned: the script is the whole history.
const SCHEDULE: &str = r#"high_risk_ports = "off"
service_detection = "off"
admin_panels = "off""#;

const ASSETS: &str = r#"
[[assets]]
cidr = "10.9.0.1/32"
owner = "db-team"
system = "cache"

[[assets]]
cidr = "10.9.0.2/32"
owner = "web-team"
system = "shop"
"#;

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The scripted history, from `d` (a midnight, UTC).
struct Script {
    d: DateTime<Utc>,
    events: Vec<String>,
    decisions: Vec<(String, String)>,
    /// Event id of each scan, by its time from `d` and host.
    scans: BTreeMap<(i64, &'static str), String>,
}

impl Script {
    fn at(&self, s: i64) -> DateTime<Utc> {
        self.d + Span::seconds(s)
    }

    /// A full TCP scan of `ip` at `s`, finding `open`. It takes no time: a detection
    /// bound runs from the start of the last scan that did not see the port open, so
    /// here from its `s`.
    fn scan(&mut self, s: i64, ip: &'static str, open: &[u16]) {
        let n = self.events.len() + 1;
        let id = format!("01900000-0000-7000-8000-{n:012x}");
        let event = json!({
            "v": 1, "id": id, "ts": rfc3339(self.at(s)), "node": "golden",
            "job": format!("01900000-0000-7000-9000-{n:012x}"), "task": "full_ports",
            "kind": "host_scan", "ip": ip, "proto": "tcp",
            "started_at": rfc3339(self.at(s)), "covered": "1-65535", "open": open,
            "counts": {"open": open.len(), "closed": 65535 - open.len(), "filtered": 0,
                       "unreachable": 0, "error": 0}
        });
        self.events.push(event.to_string());
        self.scans.insert((s, ip), id);
    }

    /// The episode a scan of `ip` at `s` opened on `port`.
    fn episode(&self, s: i64, ip: &'static str, port: u16) -> String {
        format!("{}-tcp-{port}", self.scans[&(s, ip)])
    }

    fn decide(&mut self, s: i64, by: &str, id: String, kind: Value) {
        let mut record = json!({"v": 1, "id": id, "at": rfc3339(self.at(s)), "by": by});
        record
            .as_object_mut()
            .unwrap()
            .extend(kind.as_object().unwrap().clone());
        // The wire format is what the ledger reads: refuse a typo here, not later.
        serde_json::from_value::<portwatch_projections::Decision>(record.clone())
            .unwrap_or_else(|e| panic!("scripted decision {record}: {e}"));
        self.decisions.push((id_of(&record), record.to_string()));
    }

    /// A firing notification at `s` about the openings of `episodes` (ip, port,
    /// opened at, risk) of host `ip`.
    fn told(&mut self, s: i64, ip: &str, owner: &str, episodes: &[(String, u16, i64, &str)]) {
        let alerts: Vec<Value> = episodes
            .iter()
            .map(|(e, port, opened, risk)| {
                json!({"id": format!("{e}:exposure_opened"), "kind": "exposure_opened",
                       "severity": if *risk == "risk_port" {"medium"} else {"high"},
                       "risk": risk, "ip": ip, "proto": "tcp", "port": port,
                       "episode_id": e, "at": rfc3339(self.at(*opened))})
            })
            .collect();
        let id = format!("n-{}", episodes[0].0);
        let notification = json!({"id": id, "kind": "firing", "ip": ip, "severity": "high",
            "owner": owner, "alerts": alerts, "at": rfc3339(self.at(s))});
        self.decide(
            s,
            "notifier",
            format!("notified:{id}"),
            json!({"kind": "notified", "notification": notification}),
        );
    }

    fn new(d: DateTime<Utc>) -> Script {
        let mut s = Script {
            d,
            events: Vec::new(),
            decisions: Vec::new(),
            scans: BTreeMap::new(),
        };
        // Day 0: both hosts seen with nothing open, then A:6379 (E1), B:3306 and
        // B:8443 (E2, E3); A's port is missed twice and closes.
        s.scan(0, A, &[]);
        s.scan(0, B, &[]);
        s.scan(600, A, &[6379]);
        s.scan(1200, B, &[3306, 8443]);
        s.scan(4200, A, &[]);
        s.scan(4500, A, &[]);
        // Day 1: A:6379 again (E4), blocked; closed while the block is in force.
        s.scan(DAY, A, &[]);
        s.scan(DAY + 600, A, &[6379]);
        s.scan(DAY + 1200, A, &[]);
        s.scan(DAY + 1500, A, &[]);
        // Day 2: B still serves 3306 and 8443, and now 8500 (E5).
        s.scan(2 * DAY, B, &[3306, 8443]);
        s.scan(2 * DAY + 3600, B, &[3306, 8443, 8500]);

        let (e1, e2, e3, e4) = (
            s.episode(600, A, 6379),
            s.episode(1200, B, 3306),
            s.episode(1200, B, 8443),
            s.episode(DAY + 600, A, 6379),
        );
        s.told(660, A, "db-team", &[(e1, 6379, 600, "high_risk_port")]);
        s.told(
            1230,
            B,
            "web-team",
            &[(e2, 3306, 1200, "high_risk_port"), (e3, 8443, 1200, "risk_port")],
        );
        s.told(
            DAY + 630,
            A,
            "db-team",
            &[(e4.clone(), 6379, DAY + 600, "high_risk_port")],
        );
        // E2: requested by olga, granted by arno at D+7200, expiring in 20 days.
        let expires = rfc3339(Utc::now() + Span::days(20));
        s.decide(
            1800,
            "olga",
            "approval:ap_golden".into(),
            json!({"kind": "approval_requested", "approval_id": "ap_golden", "net": "10.9.0.2/32",
                   "ports": "3306", "proto": "tcp", "reason": "billing replica", "owner": "web-team",
                   "expires_at": expires}),
        );
        s.decide(
            7200,
            "arno",
            "granted:ap_golden".into(),
            json!({"kind": "approval_granted", "approval_id": "ap_golden",
                   "bound": [{"ip": B, "proto": "tcp", "port": 3306}]}),
        );
        // E4: proposed by olga, confirmed by arno, applied, verified, ended.
        let block = |kind: &str, extra: Value| {
            let mut v = json!({"kind": kind, "block_id": "bk_golden"});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            v
        };
        let steps = [
            (
                DAY + 900,
                "olga",
                "block_proposed",
                json!({"ip": A, "proto": "tcp", "port": 6379, "episode_id": e4,
                       "reason": "Redis on the internet", "duration_secs": 3600}),
            ),
            (DAY + 960, "arno", "block_confirmed", json!({})),
            (
                DAY + 1000,
                "controller",
                "block_applied",
                json!({"applied_at": rfc3339(s.at(DAY + 1000)), "expires_at": rfc3339(s.at(DAY + 4600)),
                       "dry_run": false, "rules": "add element inet portwatch blocked4 { 10.9.0.1 . 6379 }"}),
            ),
            (DAY + 1510, "controller", "block_verified", json!({})),
            (
                DAY + 4600,
                "controller",
                "block_ending",
                json!({"why": "expired"}),
            ),
            (DAY + 4601, "controller", "block_removed", json!({})),
        ];
        for (at, by, kind, extra) in steps {
            let id = format!("{kind}:bk_golden");
            s.decide(at, by, id, block(kind, extra));
        }
        s
    }
}

fn id_of(record: &Value) -> String {
    record["id"].as_str().unwrap().to_string()
}

/// Figures of one group as the API serves them.
fn figures(g: &Value) -> Value {
    json!([
        g["key"],
        g["episodes"],
        g["open"],
        g["mttd_mean_secs"],
        g["mttd_p50_secs"],
        g["notify_mean_secs"],
        g["mttr_mean_secs"],
        g["mttr_p50_secs"]
    ])
}

/// The hand-computed figures.
fn expected_by_risk() -> Value {
    json!([
        // E1, E2, E4: MTTD (600+1200+600)/3, lower median 600; told (60+30+30)/3;
        // remediated (3600+6000+600)/3, median 3600.
        ["high_risk_port", 3, 0, 800.0, 600, 40.0, 3400.0, 3600],
        // E3, E5: MTTD (1200+3600)/2, lower median 1200; told 30 (E3); none remediated.
        ["risk_port", 2, 2, 2400.0, 1200, 30.0, null, null]
    ])
}

/// Exposures open and not remediated at the end of `day`.
fn expected_open(d: NaiveDate, day: NaiveDate) -> u64 {
    match (day - d).num_days() {
        ..=-1 => 0,
        0 | 1 => 1, // E3 (E1 closed, E2 approved; E4 blocked the next day)
        _ => 2,     // E3 and E5
    }
}

fn get(stack: &Stack, api: &str, path: &str) -> Option<Value> {
    stack.ns.get_json(api, path)
}

/// Check `api`'s report against the hand-computed figures; `None` while it differs.
fn report_matches(stack: &Stack, api: &str) -> Option<Value> {
    let report = get(stack, api, "/api/v1/report?by=risk&days=4")?;
    let by_risk: Vec<Value> = report["groups"].as_array()?.iter().map(figures).collect();
    (Value::Array(by_risk) == expected_by_risk()).then_some(report)
}

fn check_api(stack: &Stack, api: &str, d: NaiveDate) {
    let report = wait_for(Duration::from_secs(90), || report_matches(stack, api));
    let Some(report) = report else {
        let last = get(stack, api, "/api/v1/report?by=risk&days=4");
        panic!(
            "{api}: the report never matched the hand-computed figures; last answer: {last:?}\nup:\n{}\ncontrol:\n{}\nproject:\n{}",
            stack.log("up.log"),
            stack.log("control.log"),
            stack.log("project.log")
        );
    };
    eprintln!("{api}: by risk = {}", report["groups"]);

    // The convergence trend: from four days ago to today.
    let trend = report["convergence"].as_array().unwrap();
    assert_eq!(trend.len(), 5, "{api}: {trend:?}");
    for day in trend {
        let date: NaiveDate = day["day"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            day["open_unremediated"].as_u64(),
            Some(expected_open(d, date)),
            "{api}: convergence on {date}: {trend:?}"
        );
    }

    // By owner: A's episodes (E1, E4) are db-team's, B's (E2, E3, E5) web-team's.
    let owners = get(stack, api, "/api/v1/report?by=owner&days=4").unwrap();
    let owners: Vec<Value> = owners["groups"].as_array().unwrap().iter().map(figures).collect();
    assert_eq!(
        Value::Array(owners),
        json!([
            ["db-team", 2, 0, 600.0, 600, 45.0, 2100.0, 600],
            ["web-team", 3, 2, 2000.0, 1200, 30.0, 6000.0, 6000]
        ]),
        "{api}: by owner"
    );
    // By day: D has E1, E2, E3; D+1 E4; D+2 E5.
    let days = get(stack, api, "/api/v1/report?by=day&days=4").unwrap();
    let days: Vec<(String, u64, u64)> = days["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["key"].as_str().unwrap().to_string(),
                g["episodes"].as_u64().unwrap(),
                g["open"].as_u64().unwrap(),
            )
        })
        .collect();
    let day = |n: i64| (d + Span::days(n)).to_string();
    assert_eq!(
        days,
        [(day(0), 3, 1), (day(1), 1, 0), (day(2), 1, 1)],
        "{api}: by day"
    );

    // The gauges on /metrics (the reporter recomputes every 10 s).
    let want = [
        ("portwatch_exposures_unremediated", "high_risk_port", 0.0),
        ("portwatch_exposures_unremediated", "risk_port", 2.0),
        ("portwatch_exposure_episodes", "high_risk_port", 3.0),
        ("portwatch_exposure_episodes", "risk_port", 2.0),
        ("portwatch_mttd_seconds", "high_risk_port", 800.0),
        ("portwatch_mttd_seconds", "risk_port", 2400.0),
        ("portwatch_time_to_notify_seconds", "high_risk_port", 40.0),
        ("portwatch_time_to_notify_seconds", "risk_port", 30.0),
        ("portwatch_mttr_seconds", "high_risk_port", 3400.0),
        ("portwatch_exposures_unremediated", "high_risk_service", 0.0),
    ];
    let gauges = wait_for(Duration::from_secs(30), || {
        let (_, text) = stack.ns.http_get(api, "/metrics")?;
        let values = gauges(&text);
        want.iter()
            .all(|(name, risk, v)| values.get(&(name.to_string(), risk.to_string())) == Some(v))
            .then_some(values)
    });
    assert!(
        gauges.is_some(),
        "{api}: /metrics never showed the figures: {:?}",
        stack.ns.http_get(api, "/metrics").map(|(_, t)| t
            .lines()
            .filter(|l| l.contains("risk="))
            .collect::<Vec<_>>()
            .join("\n"))
    );
    let gauges = gauges.unwrap();
    let mttr_unremediated = gauges[&("portwatch_mttr_seconds".to_string(), "risk_port".to_string())];
    assert!(mttr_unremediated.is_nan(), "no risk_port exposure was remediated");
}

/// `name{risk="…"} value` lines of a Prometheus text page.
fn gauges(text: &str) -> BTreeMap<(String, String), f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, rest) = l.split_once("{risk=\"")?;
            let (risk, rest) = rest.split_once("\"}")?;
            let value = rest.trim().parse().ok()?;
            Some(((name.to_string(), risk.to_string()), value))
        })
        .collect()
}

#[test]
fn both_deployments_report_the_hand_computed_figures_of_a_scripted_history() {
    let config = format!("{}\n{ASSETS}", stack_config(SCHEDULE, ""));
    let stack = Stack::start("golden", &config);
    let d = (Utc::now() - Span::days(3))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let script = Script::new(d);
    let (events, decisions) = (script.events.clone(), script.decisions.clone());
    let parsed: Vec<portwatch_events::Event> = events
        .iter()
        .map(|e| portwatch_events::Event::from_json(e).unwrap_or_else(|err| panic!("{e}: {err}")))
        .collect();

    // Decisions are journalled sealed with the deployment's ledger key (made here
    // first, found by the deployment where its config says).
    let sealed = |key_file: &std::path::Path| -> Vec<(String, String)> {
        let key = portwatch_ledger::Key::load_or_create(key_file).unwrap();
        decisions
            .iter()
            .map(|(id, body)| {
                let d = portwatch_projections::Decision::from_json(body)
                    .unwrap_or_else(|e| panic!("{body}: {e}"));
                (id.clone(), portwatch_ledger::seal(&key, &d))
            })
            .collect()
    };

    // --- embedded: the log and the journal of `up`'s data directory ---------------
    let data = stack.path("embedded");
    {
        use portwatch_ingest::{EventLog, Journal};
        let log = portwatch_ingest::EmbeddedLog::open(data.join("events.db")).unwrap();
        log.append(&parsed).unwrap();
        log.append_decisions(&sealed(&data.join("ledger.key"))).unwrap();
    }

    // --- scale-out: the observations and decisions topics -------------------------
    let out = stack.portwatch(&["migrate", "--topics"]);
    assert!(out.status.success(), "migrate: {}", stderr(&out));
    let settings = portwatch_ingest::KafkaSettings::new(&format!("127.0.0.1:{BROKER_PORT}"), "portwatch.", 4);
    let produced = {
        let (settings, parsed, decisions) = (
            settings.clone(),
            parsed.clone(),
            sealed(&stack.path("data/ledger.key")),
        );
        stack.ns.within(move || -> Result<(), String> {
            use portwatch_ingest::{EventLog, Journal};
            let timeout = Duration::from_secs(10);
            let log =
                portwatch_ingest::KafkaLog::open(settings.clone(), timeout).map_err(|e| e.to_string())?;
            log.append(&parsed).map_err(|e| e.to_string())?;
            let journal =
                portwatch_ingest::KafkaJournal::open(&settings, timeout).map_err(|e| e.to_string())?;
            journal.append_decisions(&decisions).map_err(|e| e.to_string())
        })
    };
    produced.unwrap_or_else(|e| panic!("producing the script: {e}"));

    // --- both deployments fold it -------------------------------------------------
    let data_arg = data.to_str().unwrap().to_string();
    let _up: Proc = stack.spawn(&["--data", &data_arg, "up", "--listen", EMBEDDED_API], "up.log");
    let _project: Proc = stack.spawn(&["project"], "project.log");
    let _control: Proc = stack.spawn(&["control"], "control.log");

    let day0 = d.date_naive();
    for api in [EMBEDDED_API, CONTROL_API] {
        check_api(&stack, api, day0);
    }

    // The shell agrees with the embedded API.
    let out = stack.portwatch(&["--data", &data_arg, "report", "--json", "--days", "4"]);
    assert!(out.status.success(), "report: {}", stderr(&out));
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let groups: Vec<Value> = lines
        .iter()
        .filter(|l| l.get("key").is_some())
        .map(figures)
        .collect();
    assert_eq!(Value::Array(groups), expected_by_risk(), "portwatch report");
    let trend: Vec<u64> = lines
        .iter()
        .filter_map(|l| l.get("open_unremediated").and_then(Value::as_u64))
        .collect();
    assert_eq!(trend.len(), 5, "{lines:?}");

    // --- ClickHouse: the per-episode figures, and the dashboards' SQL over them ----
    let rows = wait_for(Duration::from_secs(30), || {
        let text = stack
            .sql(
                "SELECT port, risk, owner, mttd_bound_secs, time_to_notify_secs, remedy, \
                 time_to_remediate_secs FROM episode_reports FINAL ORDER BY opened_at, port FORMAT TSV",
            )
            .ok()?;
        (text.lines().count() == 5).then_some(text)
    })
    .unwrap_or_else(|| {
        panic!(
            "episode_reports never held the five episodes; control:\n{}",
            stack.log("control.log")
        )
    });
    assert_eq!(
        rows,
        "6379\thigh_risk_port\tdb-team\t600\t60\tclosed\t3600\n\
         3306\thigh_risk_port\tweb-team\t1200\t30\tapproved\t6000\n\
         8443\trisk_port\tweb-team\t1200\t30\t\t\\N\n\
         6379\thigh_risk_port\tdb-team\t600\t30\tblocked\t600\n\
         8500\trisk_port\tweb-team\t3600\t\\N\t\t\\N\n"
    );
    // The dashboard's panel, its time range the last four days.
    let sql = panel_sql("MTTD, time to notify and MTTR by risk class").replace(
        "$__timeFilter(opened_at)",
        &format!(
            "opened_at >= toDateTime({}) AND opened_at <= toDateTime({})",
            (Utc::now() - Span::days(4)).timestamp(),
            Utc::now().timestamp()
        ),
    );
    let by_risk = stack
        .sql(&format!("{sql} FORMAT TSV"))
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(
        by_risk, "high_risk_port\t3\t0\t800\t40\t3400\nrisk_port\t2\t2\t2400\t30\t\\N\n",
        "the dashboard's MTTD / MTTR by risk class"
    );
    // The convergence trend, as sql/README.md asks it: open and not remediated at
    // the end of each day.
    for n in -1..=3 {
        let end = format!("{} 00:00:00", day0 + Span::days(n + 1));
        let open = stack.sql_u64(&format!(
            "SELECT count() FROM episode_reports FINAL \
             WHERE opened_at < toDateTime('{end}', 'UTC') \
             AND (isNull(remediated_at) OR remediated_at >= toDateTime('{end}', 'UTC'))"
        ));
        assert_eq!(
            open,
            expected_open(day0, day0 + Span::days(n)),
            "convergence at {end}"
        );
    }
}

/// The SQL of the overview dashboard's panel whose title starts with `title`.
fn panel_sql(title: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../grafana/dashboards/portwatch-overview.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let panel = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["title"].as_str().is_some_and(|t| t.starts_with(title)))
        .unwrap_or_else(|| panic!("no panel {title:?}"));
    panel["targets"][0]["rawSql"].as_str().unwrap().to_string()
}
