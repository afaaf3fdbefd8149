//! DingTalk custom robot: markdown, signed in the query (`timestamp`, `sign`) when
//! the robot has a secret. The URL's `access_token` is the credential.

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use portwatch_projections::Notification;
use serde_json::json;

use super::{http, HttpRequest, Robot};
use crate::{format, sign};

/// `kind = "dingtalk"`.
#[derive(Debug, Clone, Copy)]
pub struct DingTalk;

impl Robot for DingTalk {
    fn name(&self) -> &'static str {
        "dingtalk"
    }

    fn request(&self, url: &str, secret: Option<&str>, n: &Notification, now_ms: i64) -> HttpRequest {
        let mut url = url.to_string();
        if let Some(secret) = secret {
            let sign = sign::dingtalk(secret, now_ms);
            let sep = if url.contains('?') { '&' } else { '?' };
            url = format!(
                "{url}{sep}timestamp={now_ms}&sign={}",
                utf8_percent_encode(&sign, NON_ALPHANUMERIC)
            );
        }
        let body = json!({
            "msgtype": "markdown",
            "markdown": { "title": format::title(n), "text": format::markdown(n) },
        });
        HttpRequest::json(url, n, &body)
    }

    fn refused(&self, body: &str) -> bool {
        http::nonzero_code(body)
    }
}
