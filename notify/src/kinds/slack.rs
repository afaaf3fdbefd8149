//! Slack incoming webhook (and compatible receivers: Mattermost, Rocket.Chat): a
//! title and one bullet per alert. The URL is the credential.

use portwatch_projections::Notification;
use serde_json::json;

use super::{HttpRequest, Robot};
use crate::format;

/// `kind = "slack"`.
#[derive(Debug, Clone, Copy)]
pub struct Slack;

impl Robot for Slack {
    fn name(&self) -> &'static str {
        "slack"
    }

    fn request(&self, url: &str, _secret: Option<&str>, n: &Notification, _now_ms: i64) -> HttpRequest {
        let bullets = format::lines(n)
            .iter()
            .map(|l| format!("• {l}"))
            .collect::<Vec<_>>()
            .join("\n");
        let body = json!({
            "text": format::title(n),
            "blocks": [
                { "type": "section", "text": { "type": "mrkdwn", "text": format!("*{}*", format::title(n)) } },
                { "type": "section", "text": { "type": "mrkdwn", "text": bullets } },
            ],
        });
        HttpRequest::json(url.to_string(), n, &body)
    }
}
