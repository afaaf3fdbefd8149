//! Prometheus Alertmanager: each alert of a notification becomes an Alertmanager
//! alert (`POST /api/v2/alerts`), so teams route portwatch's findings to PagerDuty,
//! Opsgenie and the rest with the routes and silences they already run.
//!
//! An Alertmanager alert is identified by its labels: `alertname`, `ip`, `port`,
//! `proto` and `episode` name the exposure (a port that reopens is a new alert);
//! `severity`, `risk`, `owner`, `system` and `zone` are there to route on. A firing
//! alert ends 24 h after it was sent unless a reminder renews it; the resolved
//! notice ends it at once.

use portwatch_events::Timestamp;
use portwatch_projections::{Notification, NotificationKind};
use serde_json::{json, Map, Value};

use super::{HttpRequest, Robot};
use crate::format;

/// `kind = "alertmanager"`: `url` is the Alertmanager's base URL.
#[derive(Debug, Clone, Copy)]
pub struct Alertmanager;

impl Robot for Alertmanager {
    fn name(&self) -> &'static str {
        "alertmanager"
    }

    fn expected_url(&self) -> &'static str {
        "the Alertmanager's base URL, e.g. http://127.0.0.1:9093"
    }

    fn request(&self, url: &str, _secret: Option<&str>, n: &Notification, now_ms: i64) -> HttpRequest {
        let now = chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_else(chrono::Utc::now);
        HttpRequest::json(
            format!("{}/api/v2/alerts", url.trim_end_matches('/')),
            n,
            &body(n, now),
        )
    }
}

/// How long a firing alert lasts in Alertmanager without news.
pub const FIRING_FOR: chrono::Duration = chrono::Duration::hours(24);

/// The request body for `n`, sent at `now`.
pub fn body(n: &Notification, now: Timestamp) -> Value {
    let lines = format::lines(n);
    let alerts: Vec<Value> = n
        .alerts
        .iter()
        .zip(lines)
        .map(|(a, line)| {
            let mut labels = Map::new();
            let mut put = |k: &str, v: String| {
                labels.insert(k.to_string(), Value::String(v));
            };
            put("alertname", "PortwatchExposure".into());
            put("ip", a.ip.to_string());
            put("port", a.port.to_string());
            put("proto", a.proto.as_str().into());
            put("episode", a.episode_id.clone());
            put("severity", a.severity.as_str().into());
            put("risk", a.risk.as_str().into());
            for (k, v) in [
                ("owner", &n.asset.owner),
                ("system", &n.asset.system),
                ("zone", &n.asset.zone),
            ] {
                if let Some(v) = v {
                    put(k, v.clone());
                }
            }
            let ends = if n.kind == NotificationKind::Resolved {
                now
            } else {
                now + FIRING_FOR
            };
            json!({
                "labels": labels,
                "annotations": { "summary": format::title(n), "description": line, "notification": n.id },
                "startsAt": a.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "endsAt": ends.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            })
        })
        .collect();
    Value::Array(alerts)
}
