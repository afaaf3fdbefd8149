//! One request per channel kind: the URL, headers and body a notification becomes.
//! Pure: the time used for signatures is passed in, so the same notification at the
//! same time always becomes the same bytes (golden tests in `tests/`).

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use portwatch_projections::Notification;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{format, sign};

/// The kinds of channel that take an HTTP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpKind {
    /// Generic webhook: the notification as JSON, signed in `X-Portwatch-Signature`.
    Webhook,
    /// Slack incoming webhook (and compatible: Mattermost, Rocket.Chat).
    Slack,
    /// DingTalk custom robot, signed with its secret when one is set.
    Dingtalk,
    /// Feishu / Lark custom bot, signed with its secret when one is set.
    Feishu,
    /// WeCom (WeChat Work) group robot.
    Wecom,
}

/// Where and how to send.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpChannel {
    /// The kind.
    pub kind: HttpKind,
    /// The endpoint.
    pub url: String,
    /// The signing secret, if the receiver checks one.
    pub secret: Option<String>,
}

impl std::fmt::Debug for HttpChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never reaches a log.
        f.debug_struct("HttpChannel")
            .field("kind", &self.kind)
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// An HTTP POST to make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpRequest {
    /// URL (with a signature in the query for DingTalk).
    pub url: String,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body (JSON).
    pub body: Vec<u8>,
}

/// The request `channel` gets for `n`, at `now_ms` (milliseconds since the epoch).
pub fn request(channel: &HttpChannel, n: &Notification, now_ms: i64) -> HttpRequest {
    let mut url = channel.url.clone();
    let mut headers = vec![
        ("Content-Type".to_string(), "application/json".to_string()),
        // Receivers that dedupe by it see a redelivery as what it is.
        ("Idempotency-Key".to_string(), n.id.clone()),
    ];
    let body = match channel.kind {
        HttpKind::Webhook => json!({ "notification": n, "text": format::text(n) }),
        HttpKind::Slack => json!({
            "text": format::title(n),
            "blocks": [
                { "type": "section", "text": { "type": "mrkdwn", "text": format!("*{}*", format::title(n)) } },
                { "type": "section", "text": { "type": "mrkdwn", "text": format::lines(n).iter().map(|l| format!("• {l}")).collect::<Vec<_>>().join("\n") } },
            ],
        }),
        HttpKind::Dingtalk => {
            if let Some(secret) = &channel.secret {
                let sign = sign::dingtalk(secret, now_ms);
                let sep = if url.contains('?') { '&' } else { '?' };
                url = format!(
                    "{url}{sep}timestamp={now_ms}&sign={}",
                    utf8_percent_encode(&sign, NON_ALPHANUMERIC)
                );
            }
            json!({
                "msgtype": "markdown",
                "markdown": { "title": format::title(n), "text": format::markdown(n) },
            })
        }
        HttpKind::Feishu => {
            let mut body = json!({ "msg_type": "text", "content": { "text": format::text(n) } });
            if let Some(secret) = &channel.secret {
                let secs = now_ms.div_euclid(1000);
                body["timestamp"] = json!(secs.to_string());
                body["sign"] = json!(sign::feishu(secret, secs));
            }
            body
        }
        HttpKind::Wecom => json!({
            "msgtype": "markdown",
            "markdown": { "content": format::markdown(n) },
        }),
    };
    // Serialising a JSON value cannot fail.
    let body = serde_json::to_vec(&body).unwrap_or_default();
    if channel.kind == HttpKind::Webhook {
        if let Some(secret) = &channel.secret {
            let secs = now_ms.div_euclid(1000);
            headers.push(("X-Portwatch-Timestamp".to_string(), secs.to_string()));
            headers.push((
                "X-Portwatch-Signature".to_string(),
                sign::webhook(secret, secs, &body),
            ));
        }
    }
    HttpRequest { url, headers, body }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_printed_for_debugging_hides_its_secret() {
        let channel = HttpChannel {
            kind: HttpKind::Webhook,
            url: "http://127.0.0.1:9999/hook".into(),
            secret: Some("change-me".into()),
        };
        let shown = format!("{channel:?}");
        assert!(!shown.contains("change-me"), "{shown}");
        assert!(shown.contains("<redacted>") && shown.contains("9999"), "{shown}");
        let email = crate::EmailChannel {
            url: "smtp://mx".into(),
            username: Some("pw".into()),
            password: Some("hunter2".into()),
            from: "a@example.com".into(),
            to: vec!["b@example.com".into()],
        };
        assert!(!format!("{email:?}").contains("hunter2"));
    }
}
