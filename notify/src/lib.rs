//! Notify: telling people about alerts.
//!
//! `probes → event log → projections → stores → **alerts → notifications** / API`
//!
//! A notification (`portwatch_projections::Notification`) reports a group of alerts
//! about one host. This crate turns one into what each kind of channel expects:
//! the shared words ([`format`]), the requests of the HTTP channels ([`channels`]:
//! generic webhook, Slack, DingTalk, Feishu/Lark, WeCom) and their signatures
//! ([`sign`]); these are pure. [`deliver`] sends over a channel, and [`service`] runs
//! the notification policy and one delivery worker per channel against the journal
//! of decisions (cursors, retries, the delivery log).

pub mod alertmanager;
pub mod channels;
pub mod deliver;
pub mod email;
pub mod format;
pub mod service;
pub mod sign;
pub mod syslog;
pub mod trust;

pub use channels::{request, HttpChannel, HttpKind, HttpRequest};
pub use deliver::{Channel, Route, Sender, Senders};
pub use email::EmailChannel;
pub use service::{AlertSource, Service, Timing};
pub use syslog::{SyslogChannel, Transport};
