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

pub use channels::{request, HttpChannel, HttpKind, HttpRequest};
pub use deliver::{Channel, Route, Sender, Senders};
pub use email::EmailChannel;
pub use service::{Service, Timing};
pub use syslog::{SyslogChannel, Transport};

/// What keeps the notifier from working.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A channel cannot be set up (its CA bundle, its TLS or HTTP client).
    #[error("channel {channel}: {reason}")]
    Channel {
        /// The channel's name.
        channel: String,
        /// Why.
        reason: String,
    },
    /// The read model did not answer (retried at the next pass).
    #[error("alerts cannot be read: {0}")]
    Read(#[from] portwatch_stores::ReadError),
    /// The journal did not take or give records (retried at the next pass).
    #[error("the journal: {0}")]
    Journal(#[from] portwatch_ingest::LogError),
}
