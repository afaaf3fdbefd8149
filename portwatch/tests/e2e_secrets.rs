//! Secrets never shown, with the real binary: deliveries to a DingTalk robot (whose
//! `access_token` is its credential) and a Slack webhook (whose path is) fail
//! against a closed port in the test's namespace, and the credential appears
//! nowhere a person can read it: not in the alerts a viewer gets from the API, not
//! in `portwatch alerts --json` or `portwatch audit --json`, not in the log, not in
//! `check-config`, and not in any file of the data directory (the journal and the
//! state as stored). The first admin token is kept in `<data>/admin-token`, mode
//! 0600, and never logged.

#![allow(clippy::print_stderr)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use support::{loopback_up_config, stderr, stdout, tempdir, wait_for, Netns, Proc};

const API: &str = "127.0.0.1:18098";
const HOST: &str = "127.0.0.8";
const DINGTALK_TOKEN: &str = "SECRETDINGTALK0042";
const SLACK_PATH: &str = "T0SECRET1/B0SECRET2/SecretSlackWebhook0043";

#[test]
fn a_failing_robot_url_leaves_its_credential_nowhere_anyone_can_read() {
    let ns = Netns::new("secrets");
    let dir = tempdir();
    let data = dir.path().join("data");
    // Port 9 of the namespace's loopback: nothing listens, every delivery fails
    // with an error text that holds the URL.
    let channels = format!(
        r#"[auth]
anonymous_read = true

[alerts]
group_wait = "1s"

[[channels]]
name = "robot"
kind = "dingtalk"
url = "http://127.0.0.1:9/robot/send?access_token={DINGTALK_TOKEN}"

[[channels]]
name = "chat"
kind = "slack"
url = "http://127.0.0.1:9/services/{SLACK_PATH}"
"#
    );
    let cfg = loopback_up_config(
        dir.path(),
        &format!("[[assets]]\ncidr = \"{HOST}/32\""),
        "high_risk_ports = \"1s\"",
        API,
        &channels,
    );
    let cfg = cfg.to_str().expect("utf8").to_string();
    let _redis = ns.serve(&format!("{HOST}:6379"));
    let (log, out) = (dir.path().join("up.log"), dir.path().join("up.out"));
    let mut up = Proc(ns.spawn_portwatch_stdout(&["up", "--config", &cfg], &log, &out));

    // Both channels tried and failed, with an error on record.
    let alerts = wait_for(Duration::from_secs(60), || {
        let alerts = ns.get_json(API, &format!("/api/v1/alerts?ip={HOST}"))?;
        let errors = alerts
            .as_array()?
            .iter()
            .flat_map(|a| a["notifications"].as_array().cloned().unwrap_or_default())
            .flat_map(|n| n["deliveries"].as_array().cloned().unwrap_or_default())
            .filter(|d| d["last_error"].is_string())
            .count();
        (errors >= 2).then_some(alerts)
    })
    .unwrap_or_else(|| {
        panic!(
            "no failed deliveries on record; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    let shown = alerts.to_string();
    eprintln!("{shown}");
    assert!(
        shown.contains("access_token=***"),
        "the endpoint is still named: {shown}"
    );

    let alerts_cli = ns.portwatch(&["--config", &cfg, "alerts", "--json"]);
    assert!(alerts_cli.status.success(), "{}", stderr(&alerts_cli));
    let audit_cli = ns.portwatch(&["--config", &cfg, "audit", "--json"]);
    assert!(audit_cli.status.success(), "{}", stderr(&audit_cli));
    assert!(
        stdout(&audit_cli).contains("\"kind\":\"delivery\""),
        "{}",
        stdout(&audit_cli)
    );
    let check = ns.portwatch(&["--config", &cfg, "check-config"]);
    assert!(check.status.success(), "{}", stderr(&check));
    assert!(stdout(&check).contains("channel robot"), "{}", stdout(&check));
    assert_eq!(up.stop(), Some(0));

    // The first admin token: on stdout once and in <data>/admin-token (0600); never
    // in the log.
    let printed = std::fs::read_to_string(&out).unwrap_or_default();
    let token = printed
        .split_whitespace()
        .find(|w| w.starts_with("pwt_"))
        .expect("first admin token on stdout")
        .to_string();
    let kept = data.join("admin-token");
    assert_eq!(std::fs::read_to_string(&kept).expect("admin-token").trim(), token);
    assert_eq!(
        std::fs::metadata(&kept).expect("stat").permissions().mode() & 0o777,
        0o600
    );

    let mut places = vec![
        ("GET /api/v1/alerts (a viewer's read)", shown),
        ("portwatch alerts --json", stdout(&alerts_cli)),
        ("portwatch audit --json", stdout(&audit_cli)),
        ("portwatch check-config", stdout(&check) + &stderr(&check)),
        ("the log", std::fs::read_to_string(&log).unwrap_or_default()),
    ];
    for entry in std::fs::read_dir(&data).expect("data dir").flatten() {
        if entry.file_name() == "admin-token" {
            continue;
        }
        let bytes = std::fs::read(entry.path()).unwrap_or_default();
        places.push((
            "a file of the data directory",
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    for (place, text) in &places {
        for secret in [DINGTALK_TOKEN, "SecretSlackWebhook0043", "T0SECRET1"] {
            assert!(!text.contains(secret), "{secret} shows in {place}");
        }
    }
    assert!(!places[4].1.contains(&token), "the admin token was logged");
    eprintln!("{} places checked", places.len());
}
