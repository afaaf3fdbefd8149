//! Two `control` instances on Apache Kafka: one leads (it holds the lease, the one
//! partition of the decisions topic in the lease group), the other serves the API.
//! The leader is SIGKILLed while its notifications are still failing at a real
//! webhook receiver; the standby takes over within 10 s, delivers them under the
//! keys (`X-Portwatch-Delivery`) the leader used, never one message under two keys, issues no job twice for a slot of the task's cadence,
//! and the console session opened at the dead leader goes on at the standby, and
//! still works at the old leader once it is back (a restart), until signed out.

#![allow(clippy::print_stderr)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use support::receivers::{self, received, SECRET};
use support::scaleout::{stack_config, Stack, API};
use support::wait_for;

const HOOK: &str = "127.0.0.1:9998";
const STANDBY_API: &str = "127.0.0.1:18081";
/// The cadence of the one scanning task: long enough that the takeover falls inside
/// the slot its first job was issued in.
const CADENCE_SECS: u64 = 40;
const LEADS: &str = "control lease assigned: this instance leads";

/// The log that says its instance leads, if one does.
fn leader<'a>(stack: &Stack, logs: &[&'a str]) -> Option<&'a str> {
    logs.iter().copied().find(|l| stack.log(l).contains(LEADS))
}

#[test]
fn a_standby_control_takes_over_without_issuing_or_notifying_twice() {
    let stack = Stack::start(
        "so-failover",
        &stack_config(
            &format!(
                "high_risk_ports = \"{CADENCE_SECS}s\"\nservice_detection = \"off\"\nadmin_panels = \"off\""
            ),
            &format!(
                r#"
[alerts]
group_wait = "1s"
baseline = false

[control]
lease_timeout = "6s"

[[channels]]
name = "soc"
kind = "webhook"
url = "http://{HOOK}/hook"
secret = "{SECRET}"
"#
            ),
        ),
    );
    // The receiver refuses the first six requests (the first two attempts at each
    // host's message): notifications are pending (failed, waiting out their
    // backoff) when the leader dies.
    let hook_log = stack.path("hook.jsonl");
    let _receiver = receivers::http(&stack.ns, HOOK, &hook_log, 6);
    let hosts = ["127.0.1.7:6379", "127.0.1.8:3306", "127.0.2.9:27017"];
    let _servers: Vec<_> = hosts.iter().map(|h| stack.ns.serve(h)).collect();

    let data = stack.path("data");
    let data = data.to_str().expect("utf8");
    let mut first = stack.spawn(&["--data", data, "control"], "control-1.log");
    let first_leads = wait_for(Duration::from_secs(60), || leader(&stack, &["control-1.log"])).is_some();
    assert!(first_leads, "no leader; log:\n{}", stack.log("control-1.log"));
    let mut second = stack.spawn(
        &["--data", data, "control", "--listen", STANDBY_API],
        "control-2.log",
    );
    let _probe_a = stack.spawn_probe("a");
    let _probe_b = stack.spawn_probe("b");
    let _projector = stack.spawn(&["project"], "project.log");
    for api in [API, STANDBY_API] {
        assert!(
            wait_for(Duration::from_secs(60), || stack.ns.get_json(api, "/healthz")).is_some(),
            "{api} does not serve"
        );
    }

    // A console session, opened at the leader.
    let token = wait_for(Duration::from_secs(30), || {
        std::fs::read_to_string(stack.path("data/admin-token")).ok()
    })
    .expect("the leader wrote the first admin token")
    .trim()
    .to_string();
    let (cookie, csrf) = stack.ns.sign_in(API, &token);

    // The first failed delivery: notifications are decided and pending.
    wait_for(Duration::from_secs(90), || {
        received(&hook_log)
            .iter()
            .any(|r| r["status"] == 500)
            .then_some(())
    })
    .unwrap_or_else(|| panic!("nothing was sent; leader log:\n{}", stack.log("control-1.log")));
    assert!(
        !stack.log("control-2.log").contains(LEADS),
        "the standby leads while the leader lives:\n{}",
        stack.log("control-2.log")
    );
    assert!(
        !stack
            .log("control-2.log")
            .contains("first start: admin token issued"),
        "the standby minted a token"
    );

    // SIGKILL the leader.
    first.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = first.0.wait();
    let killed = Instant::now();
    wait_for(Duration::from_secs(30), || leader(&stack, &["control-2.log"]))
        .unwrap_or_else(|| panic!("the standby never took over:\n{}", stack.log("control-2.log")));
    let takeover = killed.elapsed();
    eprintln!("takeover after {:.1} s", takeover.as_secs_f64());
    assert!(takeover <= Duration::from_secs(10), "takeover took {takeover:?}");

    // The session goes on at the standby: reads, and a change with its CSRF token.
    let cookie_header = [("Cookie", cookie.as_str())];
    let me = stack
        .ns
        .http("GET", STANDBY_API, "/api/v1/session", &cookie_header, "")
        .expect("session");
    assert_eq!(me.status, 200, "the session ended with its instance: {}", me.body);
    let change = stack
        .ns
        .http(
            "POST",
            STANDBY_API,
            "/api/v1/tokens",
            &[
                ("Cookie", cookie.as_str()),
                ("X-CSRF-Token", csrf.as_str()),
                ("Content-Type", "application/json"),
            ],
            r#"{"user":"after-failover","role":"viewer"}"#,
        )
        .expect("token");
    assert_eq!(
        change.status, 201,
        "a change through the session: {}",
        change.body
    );

    // Every notification is delivered once the receiver accepts, by the standby.
    let delivered = wait_for(Duration::from_secs(60), || {
        let alerts = stack.ns.get_json(STANDBY_API, "/api/v1/alerts")?;
        let alerts = alerts.as_array()?.clone();
        let opened: Vec<_> = alerts.iter().filter(|a| a["kind"] == "exposure_opened").collect();
        (opened.len() == hosts.len()
            && opened
                .iter()
                .all(|a| a["notifications"][0]["deliveries"][0]["outcome"] == "delivered"))
        .then_some(opened.len())
    });
    assert!(
        delivered.is_some(),
        "not all delivered; standby log:\n{}",
        stack.log("control-2.log")
    );
    // A quiet moment for any stray second delivery to show.
    std::thread::sleep(Duration::from_secs(5));
    let requests = received(&hook_log);
    // One key per message, whichever instance sent it, however often.
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut accepted: BTreeMap<String, u32> = BTreeMap::new();
    for r in &requests {
        let key = r["headers"]["x-portwatch-delivery"]
            .as_str()
            .unwrap_or_else(|| panic!("no X-Portwatch-Delivery: {r}"))
            .to_string();
        let n = &receivers::body(r)["notification"];
        assert_eq!(n["id"].as_str(), Some(key.as_str()), "{r}");
        let mut alerts: Vec<String> = n["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .map(|a| a["id"].as_str().expect("id").to_string())
            .collect();
        alerts.sort();
        keys.entry(format!("{}|{}|{}", n["kind"], n["ip"], alerts.join(",")))
            .or_default()
            .insert(key.clone());
        if r["status"] == 200 {
            *accepted.entry(key).or_default() += 1;
        }
    }
    eprintln!(
        "{} requests, {} messages, accepted per key: {accepted:?}",
        requests.len(),
        keys.len()
    );
    for (message, message_keys) in &keys {
        assert_eq!(
            message_keys.len(),
            1,
            "{message} sent under several keys: {message_keys:?}"
        );
    }
    assert_eq!(keys.len(), hosts.len(), "one message per host: {keys:#?}");
    // (Accepted twice would be allowed: a leader killed between a receiver's 200
    // and its journal record; the key tells the receiver.)
    assert_eq!(accepted.len(), hosts.len(), "each accepted: {accepted:?}");

    // Passes: none issued twice for a slot of the cadence, in either zone (their
    // chunk attempts are rows of their own). Wait for the next slot's passes, which
    // the standby issues when the cadence says.
    let issued = |zone: &str| -> Vec<u64> {
        let text = stack
            .sql(&format!(
                "SELECT toUInt32(issued_at) FROM jobs FINAL WHERE task = 'high_risk_ports' AND zone = '{zone}' \
                 AND visitParamExtractString(detail, 'pass') = '' ORDER BY issued_at FORMAT TSV"
            ))
            .expect("jobs");
        text.lines().map(|l| l.trim().parse().expect("secs")).collect()
    };
    let both = wait_for(Duration::from_secs(CADENCE_SECS + 30), || {
        let (a, b) = (issued("a"), issued("b"));
        (a.len() >= 2 && b.len() >= 2).then_some((a, b))
    })
    .unwrap_or_else(|| {
        panic!(
            "no second slot: a {:?} b {:?}; standby log:\n{}",
            issued("a"),
            issued("b"),
            stack.log("control-2.log")
        )
    });
    for (zone, times) in [("a", &both.0), ("b", &both.1)] {
        eprintln!("zone {zone}: jobs issued at {times:?}");
        for pair in times.windows(2) {
            // Seconds are whole: a full cadence apart, less the rounding.
            assert!(
                pair[1] - pair[0] + 1 >= CADENCE_SECS,
                "zone {zone}: two jobs in one slot: {times:?}"
            );
        }
    }

    // The old leader comes back as a standby: the session works there too, and a
    // sign-out at one instance ends it at both.
    let _first_again = stack.spawn(&["--data", data, "control"], "control-1b.log");
    let me = wait_for(Duration::from_secs(60), || {
        stack
            .ns
            .http("GET", API, "/api/v1/session", &cookie_header, "")
            .filter(|a| a.status == 200)
    });
    assert!(me.is_some(), "the restarted instance refuses the session");
    assert!(
        !stack.log("control-1b.log").contains(LEADS),
        "the restarted instance took the lease from a living leader"
    );
    let out = stack
        .ns
        .http("DELETE", STANDBY_API, "/api/v1/session", &cookie_header, "")
        .expect("sign out");
    assert_eq!(out.status, 204);
    let ended = wait_for(Duration::from_secs(10), || {
        [API, STANDBY_API]
            .iter()
            .all(|api| {
                stack
                    .ns
                    .http("GET", api, "/api/v1/session", &cookie_header, "")
                    .is_some_and(|a| a.status == 401)
            })
            .then_some(())
    });
    assert!(ended.is_some(), "a signed-out session still works somewhere");
    second.signal(nix::sys::signal::Signal::SIGTERM);
    let _ = second.0.wait();
}
