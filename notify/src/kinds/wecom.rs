//! WeCom (WeChat Work) group robot: markdown. The URL's `key` is the credential.

use portwatch_projections::Notification;
use serde_json::json;

use super::{http, HttpRequest, Robot};
use crate::format;

/// `kind = "wecom"`.
#[derive(Debug, Clone, Copy)]
pub struct WeCom;

impl Robot for WeCom {
    fn name(&self) -> &'static str {
        "wecom"
    }

    fn request(&self, url: &str, _secret: Option<&str>, n: &Notification, _now_ms: i64) -> HttpRequest {
        let body = json!({
            "msgtype": "markdown",
            "markdown": { "content": format::markdown(n) },
        });
        HttpRequest::json(url.to_string(), n, &body)
    }

    fn refused(&self, body: &str) -> bool {
        http::nonzero_code(body)
    }
}
