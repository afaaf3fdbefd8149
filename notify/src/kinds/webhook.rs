//! Generic webhook: the notification as JSON with its text, signed (when a secret is
//! set) in `X-Portwatch-Signature` over `X-Portwatch-Timestamp` + "." + the body.

use portwatch_projections::Notification;
use serde_json::json;

use super::{HttpRequest, Robot};
use crate::{format, sign};

/// `kind = "webhook"`.
#[derive(Debug, Clone, Copy)]
pub struct Webhook;

impl Robot for Webhook {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn request(&self, url: &str, secret: Option<&str>, n: &Notification, now_ms: i64) -> HttpRequest {
        let body = json!({ "notification": n, "text": format::text(n) });
        let mut req = HttpRequest::json(url.to_string(), n, &body);
        if let Some(secret) = secret {
            let secs = now_ms.div_euclid(1000);
            req.headers
                .push(("X-Portwatch-Timestamp".to_string(), secs.to_string()));
            req.headers.push((
                "X-Portwatch-Signature".to_string(),
                sign::webhook(secret, secs, &req.body),
            ));
        }
        req
    }
}
