//! Every kind of channel, end to end against real receivers in the test's
//! namespace: Slack, DingTalk (signed), Feishu (signed) and WeCom payloads to a real
//! HTTP server (Python's http.server, which checks the signatures the way the
//! vendors document them), email to a real SMTP server (aiosmtpd), syslog to a real
//! rsyslog (which parses RFC 5424) over UDP with a CEF payload and over TCP with
//! octet-counted framing, and Prometheus Alertmanager; plus email over STARTTLS with
//! AUTH and an HTTPS webhook, both behind a private CA (`ca_file`), and an HTTPS
//! webhook without it, which must fail on the certificate; and Alertmanager,
//! which must list the alert while the port is open and drop it once it closed.

#![allow(clippy::print_stderr)]

mod support;

use std::path::Path;
use std::time::Duration;

use support::receivers::{self, received, SECRET};
use support::{tempdir, wait_for, write_config, Netns, Proc};

const API: &str = "127.0.0.1:18091";
const HOOK: &str = "127.0.0.1:9999";

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn am_alerts(ns: &Netns) -> Vec<serde_json::Value> {
    ns.get_json("127.0.0.1:9093", "/api/v2/alerts")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

#[test]
fn every_channel_kind_reaches_its_real_receiver() {
    let ns = Netns::new("channels");
    let dir = tempdir();
    let hook_log = dir.path().join("hook.jsonl");
    let _http = receivers::http(&ns, HOOK, &hook_log, 0);
    let (_rsyslog, syslog_out) = receivers::rsyslog(&ns, dir.path(), 5514);
    let (_smtp, maildir) = receivers::smtp(&ns, dir.path(), 2525);
    let _am = receivers::alertmanager(&ns, dir.path(), 9093);
    // Receivers behind a private CA: SMTP with STARTTLS and AUTH, and HTTPS.
    let (ca, cert, key) = receivers::private_ca(dir.path());
    let (_smtp_tls, maildir_tls) =
        receivers::smtp_tls(&ns, dir.path(), 2526, &cert, &key, "portwatch", "s3cret");
    let https_log = dir.path().join("https.jsonl");
    let _https = receivers::http_tls(&ns, "127.0.0.1:9443", &https_log, 0, Some((&cert, &key)));
    let redis = ns.serve("127.0.0.7:6379");
    let data = dir.path().join("data");
    let cfg = write_config(
        dir.path(),
        &format!(
            r#"
[node]
name = "edge-1"

[scope]
allow_reserved = true

[[assets]]
cidr = "127.0.0.7/32"
owner = "cache-team@example.com"
system = "sessions"

[scan]
rate = 100000
timeout = "300ms"

[schedule]
high_risk_ports = "2s"

[store]
path = "{data}"

[auth]
anonymous_read = true

[api]
listen = "{API}"

[alerts]
group_wait = "1s"
group_interval = "2s"
baseline = false

[[channels]]
name = "slack"
kind = "slack"
url = "http://{HOOK}/slack"

[[channels]]
name = "dingtalk"
kind = "dingtalk"
url = "http://{HOOK}/dingtalk?access_token=t0k"
secret = "{SECRET}"

[[channels]]
name = "feishu"
kind = "feishu"
url = "http://{HOOK}/feishu"
secret = "{SECRET}"

[[channels]]
name = "wecom"
kind = "wecom"
url = "http://{HOOK}/wecom?key=k3y"

[[channels]]
name = "mail"
kind = "email"
url = "smtp://127.0.0.1:2525"
from = "portwatch@example.com"
to = ["soc@example.com", "Cache Team <cache-team@example.com>"]

[[channels]]
name = "siem"
kind = "syslog"
url = "udp://127.0.0.1:5514"
cef = true

[[channels]]
name = "siem-tcp"
kind = "syslog"
url = "tcp://127.0.0.1:5515"

[[channels]]
name = "mail-tls"
kind = "email"
url = "smtp://127.0.0.1:2526?tls=required"
from = "portwatch@example.com"
to = ["soc@example.com"]
username = "portwatch"
secret = "s3cret"
ca_file = "{ca}"

[[channels]]
name = "hook-tls"
kind = "webhook"
url = "https://127.0.0.1:9443/hook"
secret = "{SECRET}"
ca_file = "{ca}"

[[channels]]
name = "hook-untrusted"
kind = "webhook"
url = "https://127.0.0.1:9443/untrusted"

[[channels]]
name = "am"
kind = "alertmanager"
url = "http://127.0.0.1:9093"
"#,
            data = data.display(),
            ca = ca.display()
        ),
    );
    let cfg = cfg.to_str().expect("utf8");
    let log = dir.path().join("up.log");
    let _pw = Proc(ns.spawn_portwatch(&["up", "--config", cfg], &log));

    // Every channel delivers the one firing notification.
    let deliveries = wait_for(Duration::from_secs(40), || {
        let alerts = ns.get_json(API, "/api/v1/alerts?ip=127.0.0.7")?;
        let redis = alerts
            .as_array()?
            .iter()
            .find(|a| a["port"] == 6379 && a["kind"] == "exposure_opened")?
            .clone();
        let deliveries = redis["notifications"][0]["deliveries"].as_array()?.clone();
        // Every channel but the one that does not trust the private CA delivers;
        // that one fails on the certificate (and keeps retrying).
        let (untrusted, trusted): (Vec<_>, Vec<_>) = deliveries
            .into_iter()
            .partition(|d| d["channel"] == "hook-untrusted");
        let refused = untrusted.first().is_some_and(|d| {
            d["outcome"] == "failed"
                && d["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("certificate"))
        });
        (trusted.len() == 10 && trusted.iter().all(|d| d["outcome"] == "delivered") && refused)
            .then_some(trusted)
    })
    .unwrap_or_else(|| {
        panic!(
            "not delivered everywhere; alerts: {:?}\nlog:\n{}",
            ns.get_json(API, "/api/v1/alerts?ip=127.0.0.7"),
            log_of(&log)
        )
    });
    eprintln!(
        "delivered to {:?}",
        deliveries
            .iter()
            .map(|d| d["channel"].as_str().unwrap_or("?"))
            .collect::<Vec<_>>()
    );

    // The chat robots: the shapes their documentation gives, signatures valid.
    let got = received(&hook_log);
    let by_path = |prefix: &str| -> serde_json::Value {
        let hits: Vec<&serde_json::Value> = got
            .iter()
            .filter(|r| r["path"].as_str().is_some_and(|p| p.starts_with(prefix)))
            .collect();
        assert_eq!(hits.len(), 1, "{prefix}: {got:#?}");
        hits[0].clone()
    };
    let slack = receivers::body(&by_path("/slack"));
    assert!(
        slack["text"].as_str().expect("text").contains("127.0.0.7"),
        "{slack}"
    );
    assert_eq!(slack["blocks"][0]["type"], "section");
    assert!(slack["blocks"][1]["text"]["text"]
        .as_str()
        .expect("mrkdwn")
        .contains("6379/tcp"));

    let dingtalk_request = by_path("/dingtalk");
    assert_eq!(dingtalk_request["dingtalk_valid"], true, "{dingtalk_request}");
    assert!(dingtalk_request["path"]
        .as_str()
        .expect("path")
        .contains("access_token=t0k"));
    let dingtalk = receivers::body(&dingtalk_request);
    assert_eq!(dingtalk["msgtype"], "markdown");
    assert!(dingtalk["markdown"]["title"]
        .as_str()
        .expect("title")
        .contains("127.0.0.7"));
    assert!(dingtalk["markdown"]["text"]
        .as_str()
        .expect("text")
        .contains("6379/tcp"));

    let feishu_request = by_path("/feishu");
    assert_eq!(feishu_request["feishu_valid"], true, "{feishu_request}");
    let feishu = receivers::body(&feishu_request);
    assert_eq!(feishu["msg_type"], "text");
    assert!(feishu["content"]["text"]
        .as_str()
        .expect("text")
        .contains("6379/tcp"));

    let wecom = receivers::body(&by_path("/wecom"));
    assert_eq!(wecom["msgtype"], "markdown");
    assert!(wecom["markdown"]["content"]
        .as_str()
        .expect("content")
        .contains("6379/tcp"));

    // Over TLS with a private CA: the STARTTLS+AUTH server took the mail, the HTTPS
    // receiver the signed webhook; without the CA, nothing reached it.
    assert_eq!(receivers::mails(&maildir_tls).len(), 1, "STARTTLS mail");
    let https = received(&https_log);
    assert_eq!(https.len(), 1, "{https:#?}");
    assert_eq!(https[0]["path"], "/hook");
    assert_eq!(https[0]["signature_valid"], true);

    // Email: one multipart message with both parts, to both recipients.
    let mails = receivers::mails(&maildir);
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let mail = &mails[0];
    for needle in [
        "From: portwatch@example.com",
        "soc@example.com",
        "cache-team@example.com",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "Message-ID: <",
        "X-Peer:",
    ] {
        assert!(mail.contains(needle), "mail lacks {needle:?}:\n{mail}");
    }
    assert!(mail.contains("Subject: [portwatch] high"), "{mail}");

    // Syslog: rsyslog parsed every RFC 5424 header field; over UDP the message is
    // CEF, over TCP (octet-counted frames) plain text.
    let lines = log_of(&syslog_out);
    let text = lines
        .lines()
        .find(|l| {
            l.split('|')
                .nth(6)
                .is_some_and(|m| m.starts_with("[portwatch] high"))
        })
        .unwrap_or_else(|| panic!("no plain-text syslog message over TCP: {lines}"));
    assert_eq!(text.split('|').nth(2), Some("portwatch"), "{text}");
    let first = lines
        .lines()
        .find(|l| l.contains("CEF:0"))
        .unwrap_or_else(|| panic!("no CEF syslog message; log:\n{}", log_of(&log)));
    let fields: Vec<&str> = first.splitn(7, '|').collect();
    assert_eq!(fields.len(), 7, "{first}");
    assert_eq!(fields[1], "edge-1", "HOSTNAME: {first}");
    assert_eq!(fields[2], "portwatch", "APP-NAME: {first}");
    assert!(fields[3].parse::<u32>().is_ok(), "PROCID: {first}");
    assert_eq!(fields[4], "firing", "MSGID: {first}");
    assert!(
        fields[5].starts_with("[origin software=\"portwatch\""),
        "SD: {first}"
    );
    let cef = fields[6];
    assert!(
        cef.starts_with("CEF:0|portwatch|portwatch|"),
        "{cef}\nall:\n{lines}"
    );
    for needle in [
        "|firing|",
        "|8|",
        "dst=127.0.0.7",
        "dpt=6379",
        "cs2=cache-team@example.com",
    ] {
        assert!(cef.contains(needle), "CEF lacks {needle:?}: {cef}");
    }

    // Alertmanager lists the exposure while it is open...
    let listed = am_alerts(&ns);
    let am = listed
        .iter()
        .find(|a| a["labels"]["ip"] == "127.0.0.7" && a["labels"]["port"] == "6379")
        .unwrap_or_else(|| panic!("Alertmanager does not list the alert: {listed:#?}"));
    assert_eq!(am["labels"]["alertname"], "PortwatchExposure");
    assert_eq!(am["labels"]["severity"], "high");
    assert_eq!(am["labels"]["owner"], "cache-team@example.com");
    assert_eq!(am["status"]["state"], "active");

    // ... and no more once it closed and the resolved notice went out.
    drop(redis);
    wait_for(Duration::from_secs(40), || {
        am_alerts(&ns)
            .iter()
            .all(|a| a["labels"]["port"] != "6379" || a["status"]["state"] != "active")
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "Alertmanager still lists the closed exposure; log:\n{}",
            log_of(&log)
        )
    });
    let resolved = wait_for(Duration::from_secs(10), || {
        log_of(&syslog_out)
            .lines()
            .find(|l| l.split('|').nth(4) == Some("resolved") && l.contains("CEF:0"))
            .map(str::to_string)
    })
    .expect("a resolved syslog message");
    assert!(
        resolved.contains("|3|"),
        "CEF severity 3 for a closing: {resolved}"
    );
    let mails = wait_for(Duration::from_secs(10), || {
        let mails = receivers::mails(&maildir);
        (mails.len() == 2).then_some(mails)
    })
    .expect("the resolved notice is mailed too");
    assert!(
        mails.iter().any(|m| m.contains("exposure(s) closed")),
        "{mails:#?}"
    );
}
