//! Notify: telling people about alerts.
//!
//! `probes → event log → projections → stores → **alerts → notifications** / API`
//!
//! A notification (`portwatch_projections::Notification`) reports a group of alerts
//! about one host. This crate turns one into what each kind of channel expects:
//! the shared words ([`format`]), the requests of the HTTP channels ([`channels`]:
//! generic webhook, Slack, DingTalk, Feishu/Lark, WeCom) and their signatures
//! ([`sign`]). Everything here is pure; delivery (cursors, retries, the delivery log)
//! sits on top of it.

pub mod channels;
pub mod format;
pub mod sign;

pub use channels::{request, HttpChannel, HttpKind, HttpRequest};
