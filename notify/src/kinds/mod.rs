//! The kinds of channel, one file each, named once in the registry at the bottom.
//!
//! A kind turns a `[[channels]]` entry ([`Spec`]) into something that delivers
//! ([`Deliver`]). The chat robots and Alertmanager are [`Robot`]s: they only say
//! which HTTP request a notification becomes, and [`Http`] sends it with the
//! channel's client (the system's CA roots, plus its `ca_file`). Email and syslog
//! deliver over their own protocols.
//!
//! Adding a kind: a new file here implementing [`Robot`] (or [`Kind`] and
//! [`Deliver`] for another protocol), and its line in `registry!`. The config, its
//! error messages, `check-config` and the delivery workers take it from there.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use portwatch_projections::Notification;

pub use http::{Http, HttpChannel, HttpRequest, Robot};

mod http;

/// A `[[channels]]` entry as the config read it, whatever its kind.
#[derive(Clone, Copy)]
pub struct Spec<'a> {
    /// `url`, parsed.
    pub url: &'a url::Url,
    /// `url` as written (for messages).
    pub written: &'a str,
    /// `secret` (or the contents of `secret_file`): a signing secret, or a password.
    pub secret: Option<&'a str>,
    /// `username` (SMTP AUTH).
    pub username: Option<&'a str>,
    /// `from` (email).
    pub from: Option<&'a str>,
    /// `to` (email).
    pub to: &'a [String],
    /// `cef` (syslog).
    pub cef: Option<bool>,
    /// `facility` (syslog).
    pub facility: Option<i64>,
    /// The node's name (syslog's HOSTNAME).
    pub node: &'a str,
}

impl Debug for Spec<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spec")
            .field("url", &portwatch_events::redact::url(self.written))
            .finish_non_exhaustive()
    }
}

impl Spec<'_> {
    /// The URL as written and as it may be shown (credentials redacted), quoted.
    pub fn shown_url(&self) -> String {
        format!("{:?}", portwatch_events::redact::url(self.written))
    }

    /// The URL, if its scheme is one of `schemes` and it names a host; else the
    /// error naming `url` and what was `expected`.
    pub fn url_with(&self, schemes: &[&str], expected: &str) -> Result<&url::Url, SpecError> {
        if schemes.contains(&self.url.scheme()) && self.url.host().is_some() {
            Ok(self.url)
        } else {
            Err(SpecError::new("url", self.shown_url(), expected))
        }
    }
}

/// A setting a kind refuses: the key, its value as it may be shown, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key} = {value}: {why}")]
pub struct SpecError {
    /// The key of the `[[channels]]` entry.
    pub key: &'static str,
    /// Its value (secrets redacted).
    pub value: String,
    /// Why it is refused.
    pub why: String,
}

impl SpecError {
    /// `key = value` refused because `why`.
    pub fn new(key: &'static str, value: impl Into<String>, why: impl Into<String>) -> SpecError {
        SpecError {
            key,
            value: value.into(),
            why: why.into(),
        }
    }
}

/// What one attempt has to work with.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The channel's HTTP client (the system's roots, plus its `ca_file`).
    pub http: &'a reqwest::Client,
    /// Longest wait for the attempt.
    pub timeout: Duration,
    /// The channel's `ca_file`, for protocols other than HTTP.
    pub ca_pem: Option<&'a [u8]>,
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The channel took it.
    pub ok: bool,
    /// Protocol status (HTTP status, SMTP reply code), when one came back.
    pub status: Option<u16>,
    /// What went wrong (credentials in URLs are redacted before anyone sees it).
    pub error: Option<String>,
}

impl Outcome {
    /// Taken, with `status`.
    pub fn delivered(status: Option<u16>) -> Outcome {
        Outcome {
            ok: true,
            status,
            error: None,
        }
    }

    /// Not taken, because `error`.
    pub fn failed(status: Option<u16>, error: impl Into<String>) -> Outcome {
        Outcome {
            ok: false,
            status,
            error: Some(error.into()),
        }
    }
}

/// A configured channel's way of sending.
pub trait Deliver: Send + Sync + Debug {
    /// The config name of its kind.
    fn kind(&self) -> &'static str;
    /// Where it sends, as `check-config` shows it (credentials redacted).
    fn target(&self) -> String;
    /// Send `n` once.
    fn send<'a>(&'a self, n: &'a Notification, cx: Context<'a>) -> BoxFuture<'a, Outcome>;
    /// The HTTP request `n` becomes at `now_ms`, for the kinds that send one (to
    /// see exactly what would be sent).
    fn http_request(&self, _n: &Notification, _now_ms: i64) -> Option<HttpRequest> {
        None
    }
}

/// A kind of channel: its config name and how an entry of it becomes a sender.
pub trait Kind: Sync {
    /// `kind = "..."` in `[[channels]]`.
    fn name(&self) -> &'static str;
    /// Whether it speaks TLS (then `ca_file` applies).
    fn tls(&self) -> bool {
        true
    }
    /// The sender for `spec`, or the setting that is wrong.
    fn build(&self, spec: &Spec<'_>) -> Result<Arc<dyn Deliver>, SpecError>;
}

/// The kind named `name`.
pub fn kind(name: &str) -> Option<&'static dyn Kind> {
    KINDS.iter().copied().find(|k| k.name() == name)
}

/// Every kind's name, for messages: `webhook, slack, ... or alertmanager`.
pub fn names() -> String {
    let all: Vec<&str> = KINDS.iter().map(|k| k.name()).collect();
    match all.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => all.join(""),
    }
}

macro_rules! registry {
    ($($file:ident => $kind:expr),+ $(,)?) => {
        $(pub mod $file;)+
        /// Every kind of channel, as the docs list them.
        pub static KINDS: &[&dyn Kind] = &[$(&$kind),+];
    };
}

registry! {
    webhook => Http(webhook::Webhook),
    slack => Http(slack::Slack),
    dingtalk => Http(dingtalk::DingTalk),
    feishu => Http(feishu::Feishu),
    wecom => Http(wecom::WeCom),
    email => email::Email,
    syslog => syslog::Syslog,
    alertmanager => Http(alertmanager::Alertmanager),
}

pub use email::check_address;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_registered_once_and_named_in_messages() {
        let mut seen: Vec<&str> = KINDS.iter().map(|k| k.name()).collect();
        let n = seen.len();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), n, "one name, one kind");
        assert_eq!(
            names(),
            "webhook, slack, dingtalk, feishu, wecom, email, syslog or alertmanager"
        );
        assert!(kind("slack").is_some() && kind("pager").is_none());
        assert!(!kind("syslog").expect("syslog").tls());
    }
}
