//! Feishu / Lark custom bot: text, signed in the body (`timestamp`, `sign`) when the
//! bot has a secret.

use portwatch_projections::Notification;
use serde_json::json;

use super::{http, HttpRequest, Robot};
use crate::{format, sign};

/// `kind = "feishu"`.
#[derive(Debug, Clone, Copy)]
pub struct Feishu;

impl Robot for Feishu {
    fn name(&self) -> &'static str {
        "feishu"
    }

    fn request(&self, url: &str, secret: Option<&str>, n: &Notification, now_ms: i64) -> HttpRequest {
        let mut body = json!({ "msg_type": "text", "content": { "text": format::text(n) } });
        if let Some(secret) = secret {
            let secs = now_ms.div_euclid(1000);
            body["timestamp"] = json!(secs.to_string());
            body["sign"] = json!(sign::feishu(secret, secs));
        }
        HttpRequest::json(url.to_string(), n, &body)
    }

    fn refused(&self, body: &str) -> bool {
        http::nonzero_code(body)
    }
}
