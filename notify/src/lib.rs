//! Notify: telling people about alerts.
//!
//! `probes → event log → projections → stores → **alerts → notifications** / API`
//!
//! A notification (`portwatch_projections::Notification`) reports a group of alerts
//! about one host. This crate turns one into what each kind of channel expects:
//! the shared words ([`format`]), the kinds of channel ([`kinds`]: generic webhook,
//! Slack, DingTalk, Feishu/Lark, WeCom, email, syslog, Alertmanager; one file each,
//! named once in its registry) and their signatures ([`sign`]). [`deliver`] routes
//! and sends, and [`service`] runs
//! the notification policy and one delivery worker per channel against the journal
//! of decisions (cursors, retries, the delivery log).

pub mod deliver;
pub mod format;
pub mod kinds;
pub mod service;
pub mod sign;

pub use deliver::{Channel, Route, Senders};
pub use kinds::{Deliver, Kind, Spec, SpecError, KINDS};
pub use service::{Service, Timing};

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
