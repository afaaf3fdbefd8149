//! Golden tests: one notification (a host with three new findings, one of them a
//! Redis on a non-standard port) as each channel kind's request, at a fixed time.
//! The expected files hold the URL, headers and body; regenerate them with
//! `PORTWATCH_BLESS=1` after a deliberate change and review the diff by hand.
//!
//! What each format must be, per the receivers' documentation: Slack incoming
//! webhooks take `text` and optional `blocks`; DingTalk robots take
//! `msgtype: markdown` with `markdown.title` and `markdown.text`, and a signed robot
//! wants `timestamp` (ms) and `sign` in the query; Feishu bots take
//! `msg_type: text` with `content.text`, and a signed bot wants `timestamp`
//! (seconds, a string) and `sign` in the body; WeCom robots take `msgtype: markdown`
//! with `markdown.content`.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use chrono::{TimeZone, Utc};
use portwatch_events::{Proto, RiskClass};
use std::sync::Arc;

use portwatch_notify::kinds::{kind, HttpRequest};
use portwatch_notify::{Deliver, Spec};
use portwatch_projections::{Alert, AlertKind, AssetMatch, Notification, NotificationKind, Severity};

const NOW_MS: i64 = 1_801_000_000_000;

fn notification() -> Notification {
    let at = |s: i64| Utc.timestamp_opt(1_800_000_000 + s, 0).single().unwrap();
    let alert = |port: u16, kind: AlertKind, risk: RiskClass, s: i64| Alert {
        id: format!(
            "0190f000-0000-7000-8000-000000000202-tcp-{port}:{}",
            kind.as_str()
        ),
        kind,
        severity: Severity::of(risk),
        risk,
        ip: "203.0.113.7".parse().unwrap(),
        proto: Proto::Tcp,
        port,
        episode_id: format!("0190f000-0000-7000-8000-000000000202-tcp-{port}"),
        at: at(s),
        baseline: false,
    };
    Notification {
        id: "203.0.113.7:0190f000-0000-7000-8000-000000000202-tcp-6379:exposure_opened".into(),
        kind: NotificationKind::Firing,
        ip: "203.0.113.7".parse().unwrap(),
        severity: Severity::High,
        asset: AssetMatch {
            owner: Some("db-team@example.com".into()),
            system: Some("billing".into()),
            zone: Some("dc1".into()),
        },
        alerts: vec![
            alert(6379, AlertKind::ExposureOpened, RiskClass::HighRiskPort, 0),
            alert(8080, AlertKind::ExposureOpened, RiskClass::RiskPort, 0),
            alert(16379, AlertKind::HighRiskService, RiskClass::HighRiskService, 60),
        ],
        at: at(70),
    }
}

/// The request of `channel`, as its kind renders it.
fn request(channel: &Arc<dyn Deliver>, n: &Notification, now_ms: i64) -> HttpRequest {
    channel.http_request(n, now_ms).expect("an HTTP kind")
}

fn check(name: &str, channel: Arc<dyn Deliver>) -> serde_json::Value {
    let req = request(&channel, &notification(), NOW_MS);
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    let got = serde_json::json!({ "url": req.url, "headers": req.headers, "body": body });
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.json"));
    if std::env::var_os("PORTWATCH_BLESS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
    }
    let want: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(got, want, "{name} differs from {}", path.display());
    got
}

/// A channel of `name`'s kind, built as the config builds it (through the registry).
fn channel(name: &str, url: &str, secret: Option<&str>) -> Arc<dyn Deliver> {
    let written = url;
    let url = url::Url::parse(url).unwrap();
    let spec = Spec {
        url: &url,
        written,
        secret,
        username: None,
        from: None,
        to: &[],
        cef: None,
        facility: None,
        node: "node-1",
    };
    kind(name).expect("registered").build(&spec).unwrap()
}

#[test]
fn generic_webhook_is_the_notification_signed() {
    let got = check(
        "webhook",
        channel("webhook", "http://127.0.0.1:9999/hook", Some("change-me")),
    );
    let req = request(
        &channel("webhook", "http://127.0.0.1:9999/hook", Some("change-me")),
        &notification(),
        NOW_MS,
    );
    // The signature is over the exact bytes sent.
    let signature = req
        .headers
        .iter()
        .find(|(k, _)| k == "X-Portwatch-Signature")
        .map(|(_, v)| v.clone())
        .unwrap();
    let timestamp = req
        .headers
        .iter()
        .find(|(k, _)| k == "X-Portwatch-Timestamp")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert_eq!(timestamp, (NOW_MS / 1000).to_string());
    assert_eq!(
        signature,
        portwatch_notify::sign::webhook("change-me", NOW_MS / 1000, &req.body)
    );
    assert_eq!(got["body"]["notification"]["alerts"].as_array().unwrap().len(), 3);
    assert_eq!(got["body"]["notification"]["owner"], "db-team@example.com");
}

#[test]
fn slack_text_and_blocks() {
    let got = check(
        "slack",
        channel("slack", "https://hooks.slack.com/services/T0/B0/x", None),
    );
    assert!(got["body"]["text"].as_str().unwrap().contains("203.0.113.7"));
    assert_eq!(got["body"]["blocks"].as_array().unwrap().len(), 2);
}

#[test]
fn dingtalk_markdown_signed_in_the_query() {
    let got = check(
        "dingtalk",
        channel(
            "dingtalk",
            "https://oapi.dingtalk.com/robot/send?access_token=abc",
            Some("SECtest"),
        ),
    );
    let url = got["url"].as_str().unwrap();
    let sign = portwatch_notify::sign::dingtalk("SECtest", NOW_MS);
    let encoded: String =
        percent_encoding::utf8_percent_encode(&sign, percent_encoding::NON_ALPHANUMERIC).to_string();
    assert_eq!(
        url,
        format!("https://oapi.dingtalk.com/robot/send?access_token=abc&timestamp={NOW_MS}&sign={encoded}")
    );
    assert_eq!(got["body"]["msgtype"], "markdown");
}

#[test]
fn feishu_text_signed_in_the_body() {
    let got = check(
        "feishu",
        channel(
            "feishu",
            "https://open.feishu.cn/open-apis/bot/v2/hook/x",
            Some("test"),
        ),
    );
    assert_eq!(got["body"]["timestamp"], (NOW_MS / 1000).to_string());
    assert_eq!(
        got["body"]["sign"],
        portwatch_notify::sign::feishu("test", NOW_MS / 1000)
    );
    assert_eq!(got["body"]["msg_type"], "text");
}

#[test]
fn wecom_markdown() {
    let got = check(
        "wecom",
        channel(
            "wecom",
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=x",
            None,
        ),
    );
    let content = got["body"]["markdown"]["content"].as_str().unwrap();
    assert!(
        content.contains("16379/tcp high_risk_service: dangerous service found"),
        "{content}"
    );
}
