//! The kinds that deliver one HTTP POST: a [`Robot`] says which request a
//! notification becomes, [`Http`] makes it a kind, [`HttpChannel`] sends it.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use portwatch_projections::Notification;
use serde::Serialize;

use super::{Context, Deliver, Kind, Outcome, Spec, SpecError};

/// The header that names a notification's delivery: the same on every attempt.
pub(crate) const DELIVERY_HEADER: &str = "X-Portwatch-Delivery";

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

impl HttpRequest {
    /// A JSON POST of `body` about `n` to `url`, keyed by the notification's id in
    /// `X-Portwatch-Delivery` and `Idempotency-Key`: every attempt at it, by any
    /// control instance (a standby that took over included), carries the same key,
    /// so a receiver sees a redelivery as what it is.
    pub fn json(url: String, n: &Notification, body: &serde_json::Value) -> HttpRequest {
        HttpRequest {
            url,
            headers: vec![
                ("Content-Type".to_string(), "application/json".to_string()),
                (DELIVERY_HEADER.to_string(), n.id.clone()),
                ("Idempotency-Key".to_string(), n.id.clone()),
            ],
            // Serialising a JSON value cannot fail.
            body: serde_json::to_vec(body).unwrap_or_default(),
        }
    }
}

/// A receiver that takes one HTTP request per notification.
pub trait Robot: Copy + Send + Sync + 'static {
    /// `kind = "..."`.
    fn name(&self) -> &'static str;
    /// What `url` must be, for the error when it is not http(s).
    fn expected_url(&self) -> &'static str {
        "an http:// or https:// URL"
    }
    /// The request `n` becomes at `now_ms` (milliseconds since the epoch): pure, so
    /// that the same notification at the same time is the same bytes.
    fn request(&self, url: &str, secret: Option<&str>, n: &Notification, now_ms: i64) -> HttpRequest;
    /// Whether a 2xx answer with this body is a refusal all the same (the chat
    /// robots answer 200 with an error code when they refuse a message).
    fn refused(&self, _body: &str) -> bool {
        false
    }
}

/// A robot as a kind of channel.
#[derive(Debug, Clone, Copy)]
pub struct Http<R>(pub R);

impl<R: Robot> Kind for Http<R> {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn build(&self, spec: &Spec<'_>) -> Result<Arc<dyn Deliver>, SpecError> {
        spec.url_with(&["http", "https"], self.0.expected_url())?;
        Ok(Arc::new(HttpChannel {
            robot: self.0,
            url: spec.written.to_string(),
            secret: spec.secret.map(str::to_string),
        }))
    }
}

/// Where and how to send.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpChannel<R> {
    /// The kind.
    pub robot: R,
    /// The endpoint.
    pub url: String,
    /// The signing secret, if the receiver checks one.
    pub secret: Option<String>,
}

impl<R: Robot> std::fmt::Debug for HttpChannel<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the secret nor the URL's credentials reach a log.
        f.debug_struct("HttpChannel")
            .field("kind", &self.robot.name())
            .field("url", &portwatch_events::redact::url(&self.url))
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl<R: Robot> HttpChannel<R> {
    /// The request this channel makes for `n` at `now_ms`.
    pub fn request(&self, n: &Notification, now_ms: i64) -> HttpRequest {
        self.robot.request(&self.url, self.secret.as_deref(), n, now_ms)
    }
}

impl<R: Robot> Deliver for HttpChannel<R> {
    fn kind(&self) -> &'static str {
        self.robot.name()
    }

    fn target(&self) -> String {
        portwatch_events::redact::url(&self.url)
    }

    fn http_request(&self, n: &Notification, now_ms: i64) -> Option<HttpRequest> {
        Some(self.request(n, now_ms))
    }

    fn send<'a>(&'a self, n: &'a Notification, cx: Context<'a>) -> BoxFuture<'a, Outcome> {
        async move {
            let req = self.request(n, chrono::Utc::now().timestamp_millis());
            let mut builder = cx.http.post(&req.url).timeout(cx.timeout).body(req.body);
            for (k, v) in &req.headers {
                builder = builder.header(k, v);
            }
            match builder.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    // Read (a little of) the body: some robots answer 200 with an error.
                    let text = resp.text().await.unwrap_or_default();
                    if status.is_success() && !self.robot.refused(&text) {
                        Outcome::delivered(Some(status.as_u16()))
                    } else {
                        let shown: String = text.chars().take(200).collect();
                        Outcome::failed(Some(status.as_u16()), format!("HTTP {status}: {shown}"))
                    }
                }
                Err(e) => Outcome::failed(e.status().map(|s| s.as_u16()), error_chain(&e)),
            }
        }
        .boxed()
    }
}

/// DingTalk, Feishu and WeCom answer HTTP 200 with a non-zero code in the body when
/// they refuse a message (bad signature, rate limit).
pub(super) fn nonzero_code(body: &str) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return false;
    };
    let code = v
        .get("errcode")
        .or_else(|| v.get("code"))
        .or_else(|| v.get("StatusCode"));
    code.and_then(serde_json::Value::as_i64).is_some_and(|c| c != 0)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::webhook::Webhook;
    use super::*;

    #[test]
    fn a_channel_printed_for_debugging_hides_its_secret_and_credentials() {
        let channel = HttpChannel {
            robot: Webhook,
            url: "http://127.0.0.1:9999/hook?access_token=SECRET".into(),
            secret: Some("change-me".into()),
        };
        let shown = format!("{channel:?}");
        assert!(
            !shown.contains("change-me") && !shown.contains("SECRET"),
            "{shown}"
        );
        assert!(shown.contains("<redacted>") && shown.contains("9999"), "{shown}");
        assert!(!channel.target().contains("SECRET"));
    }

    #[test]
    fn robots_refuse_with_a_code_in_a_200() {
        assert!(nonzero_code(r#"{"errcode":310000,"errmsg":"sign not match"}"#));
        assert!(nonzero_code(r#"{"code":19021,"msg":"sign match fail"}"#));
        assert!(!nonzero_code(r#"{"errcode":0,"errmsg":"ok"}"#));
        assert!(!nonzero_code("ok"));
    }
}
