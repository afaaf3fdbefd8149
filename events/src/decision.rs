//! Decisions: what people and portwatch decided, as journalled records.
//!
//! Observations are replayable, decisions are not: the notification policy runs on
//! the wall clock, delivery talks to the outside world, and approvals, blocks, users
//! and tokens are people's choices. Each decision is therefore written as a
//! [`Decision`] to its own journal (the embedded log, or the `decisions` topic)
//! before it takes effect, sealed by the ledger (`portwatch_ledger`) so that only
//! portwatch can write one, and every deployment folds the same records
//! (`portwatch_projections::Ledger`). The JSON layout is part of the schema: see
//! `events/SCHEMA.md`.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::alert::{Alert, Notification};
use crate::{DecodeError, PortSet, Proto, Task, Timestamp, SCHEMA_VERSION};

/// Why alerts were recorded without a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SilenceReason {
    /// Ports a new asset had open the first time it was scanned (not high-risk).
    Baseline,
    /// A port closed and opened again before its closing was told.
    Flap,
    /// The exposure ended before anyone was told it began (or its beginning was
    /// itself not paged), so there is nothing to resolve.
    NotAnnounced,
    /// Approved or blocked: on record, not paged.
    Suppressed,
}

impl SilenceReason {
    /// Name as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceReason::Baseline => "baseline",
            SilenceReason::Flap => "flap",
            SilenceReason::NotAnnounced => "not_announced",
            SilenceReason::Suppressed => "suppressed",
        }
    }
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The channel took it (2xx, SMTP accepted, ...).
    Delivered,
    /// It failed and will be tried again.
    Failed,
    /// It failed and the channel stopped trying (too old, or refused for good).
    GaveUp,
}

impl AttemptOutcome {
    /// Name as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::GaveUp => "gave_up",
        }
    }
}

/// One attempt to deliver one notification to one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    /// The notification's id (the idempotency key the channel saw).
    pub notification: String,
    /// The channel's name.
    pub channel: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// Protocol status (HTTP status, SMTP reply code), when one came back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// What went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long it took, in milliseconds.
    pub millis: u64,
}

/// What a user may do. Each role may do everything the ones before it may.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read everything.
    Viewer,
    /// File approvals, propose blocks.
    Operator,
    /// Approve others' requests, confirm others' blocks.
    Approver,
    /// Manage users and tokens.
    Admin,
}

impl Role {
    /// Every role, least first.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Approver, Role::Admin];

    /// Name as in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role `{s}` (expected viewer, operator, approver or admin)"))
    }
}

/// The names the system acts under in the journal. No user may take one, so that a
/// user's decision never reads like portwatch's own.
pub const SYSTEM_ACTORS: [&str; 5] = ["portwatch", "controller", "notifier", "allow-list", "anonymous"];

/// Whether `name` is one the system acts under (`cli:*` and `channel:*` included).
pub fn is_system_actor(name: &str) -> bool {
    SYSTEM_ACTORS.contains(&name) || name.starts_with("cli:") || name.starts_with("channel:")
}

/// Who makes a decision: a user through one of their tokens (from an address), or
/// the system under one of its names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Actor {
    /// The user or system name.
    pub name: String,
    /// The token the user decided with, by id.
    pub token: Option<String>,
    /// The client's address, for decisions made through the API.
    pub client: Option<String>,
}

impl Actor {
    /// The system, or the shell, acting as `name` (no token).
    pub fn system(name: &str) -> Actor {
        Actor {
            name: name.to_string(),
            ..Actor::default()
        }
    }

    /// A decision made by this actor at `at`.
    pub fn decide(&self, at: Timestamp, what: DecisionKind) -> Decision {
        let mut d = Decision::new(at, &self.name, what);
        d.token.clone_from(&self.token);
        d.client.clone_from(&self.client);
        d
    }
}

/// An API token as journalled: never the token itself, only a hash of its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenIssued {
    /// The token's public id (the part before its secret).
    pub token_id: String,
    /// Whose it is.
    pub user: String,
    /// PHC string of the secret's hash (argon2id).
    pub hash: String,
}

/// What was decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DecisionKind {
    /// An admin changed a monitoring task's cadence (`every`: a duration such as
    /// `10m`, or `off`), or gave it back to the config (`every` absent).
    ScheduleSet {
        /// The task.
        task: Task,
        /// Its cadence from now on; none: as configured.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        every: Option<String>,
    },
    /// A user was created, or their role changed.
    UserSet {
        /// The user's name.
        user: String,
        /// Their role from now on.
        role: Role,
    },
    /// A token was issued.
    TokenIssued(TokenIssued),
    /// A token was revoked.
    TokenRevoked {
        /// Its id.
        token_id: String,
    },
    /// A console session was signed out before it expired: its cookie no longer
    /// works at any instance of the API, also after a restart.
    SessionClosed {
        /// The SHA-256 (hex) of the session's cookie.
        session: String,
        /// When the session would have expired; the record matters until then.
        until: Timestamp,
    },
    /// A notification is to be delivered to every channel its route matches.
    Notified {
        /// The message.
        notification: Notification,
    },
    /// Alerts recorded without paging anyone.
    Silenced {
        /// Why.
        reason: SilenceReason,
        /// The alerts.
        alerts: Vec<Alert>,
    },
    /// A delivery attempt and its result.
    Delivery(DeliveryAttempt),
    /// An operator filed an approval request.
    ApprovalRequested(ApprovalRequest),
    /// An approver (not the requester) granted it, bound to what was served.
    ApprovalGranted {
        /// The approval.
        approval_id: String,
        /// Each open port in scope and what it served then.
        bound: Vec<Bound>,
        /// The approver's note.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// An approver (not the requester) rejected it.
    ApprovalRejected {
        /// The approval.
        approval_id: String,
        /// Why.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// It stopped holding for one exposure: the port serves something else.
    ApprovalLapsed {
        /// The approval.
        approval_id: String,
        /// The exposure.
        episode_id: String,
        /// Host.
        ip: IpAddr,
        /// Protocol.
        proto: Proto,
        /// Port.
        port: u16,
        /// What changed.
        why: String,
    },
    /// Its owner was warned that it expires soon.
    ApprovalWarned {
        /// The approval.
        approval_id: String,
    },
    /// It expired, and its exposures were reopened.
    ApprovalExpired {
        /// The approval.
        approval_id: String,
    },
    /// An operator proposed blocking an open port.
    BlockProposed(BlockRequest),
    /// An approver (not the proposer) confirmed it.
    BlockConfirmed {
        /// The block.
        block_id: String,
    },
    /// The controller applied it (or, in dry-run, rendered and checked it).
    BlockApplied {
        /// The block.
        block_id: String,
        /// How.
        #[serde(flatten)]
        applied: Applied,
    },
    /// The driver failed to apply it.
    BlockFailed {
        /// The block.
        block_id: String,
        /// Why.
        error: String,
    },
    /// The probes saw the port closed after it was applied.
    BlockVerified {
        /// The block.
        block_id: String,
    },
    /// It ends: its time is up, or someone rolled it back.
    BlockEnding {
        /// The block.
        block_id: String,
        /// Why.
        why: String,
    },
    /// Its rule was removed.
    BlockRemoved {
        /// The block.
        block_id: String,
    },
    /// An attempt a rule refused: on the record, with no effect.
    Refused {
        /// What was attempted (`approve`, `confirm_block`, `issue_token`, ...).
        action: String,
        /// What it was about (an approval, a block, a user).
        subject: String,
        /// The rule that refused it, in words.
        rule: String,
    },
}

impl DecisionKind {
    /// The kind's name, as in JSON.
    pub fn name(&self) -> &'static str {
        match self {
            DecisionKind::ScheduleSet { .. } => "schedule_set",
            DecisionKind::UserSet { .. } => "user_set",
            DecisionKind::TokenIssued(_) => "token_issued",
            DecisionKind::TokenRevoked { .. } => "token_revoked",
            DecisionKind::SessionClosed { .. } => "session_closed",
            DecisionKind::Notified { .. } => "notified",
            DecisionKind::Silenced { .. } => "silenced",
            DecisionKind::Delivery(_) => "delivery",
            DecisionKind::ApprovalRequested(_) => "approval_requested",
            DecisionKind::ApprovalGranted { .. } => "approval_granted",
            DecisionKind::ApprovalRejected { .. } => "approval_rejected",
            DecisionKind::ApprovalLapsed { .. } => "approval_lapsed",
            DecisionKind::ApprovalWarned { .. } => "approval_warned",
            DecisionKind::ApprovalExpired { .. } => "approval_expired",
            DecisionKind::BlockProposed(_) => "block_proposed",
            DecisionKind::BlockConfirmed { .. } => "block_confirmed",
            DecisionKind::BlockApplied { .. } => "block_applied",
            DecisionKind::BlockFailed { .. } => "block_failed",
            DecisionKind::BlockVerified { .. } => "block_verified",
            DecisionKind::BlockEnding { .. } => "block_ending",
            DecisionKind::BlockRemoved { .. } => "block_removed",
            DecisionKind::Refused { .. } => "refused",
        }
    }

    /// What the decision is about, for the audit: an approval, a block, a user, a
    /// token, a task, a notification.
    pub fn subject(&self) -> String {
        match self {
            DecisionKind::ScheduleSet { task, .. } => task.as_str().to_string(),
            DecisionKind::UserSet { user, .. } => user.clone(),
            DecisionKind::TokenIssued(t) => format!("{} ({})", t.token_id, t.user),
            DecisionKind::TokenRevoked { token_id } => token_id.clone(),
            DecisionKind::SessionClosed { session, .. } => {
                format!("session {}", &session[..session.len().min(12)])
            }
            DecisionKind::Notified { notification } => notification.id.clone(),
            DecisionKind::Silenced { alerts, .. } => alerts.first().map(|a| a.id.clone()).unwrap_or_default(),
            DecisionKind::Delivery(d) => format!("{} via {}", d.notification, d.channel),
            DecisionKind::ApprovalRequested(r) => r.approval_id.clone(),
            DecisionKind::ApprovalGranted { approval_id, .. }
            | DecisionKind::ApprovalRejected { approval_id, .. }
            | DecisionKind::ApprovalLapsed { approval_id, .. }
            | DecisionKind::ApprovalWarned { approval_id }
            | DecisionKind::ApprovalExpired { approval_id } => approval_id.clone(),
            DecisionKind::BlockProposed(b) => b.block_id.clone(),
            DecisionKind::BlockConfirmed { block_id }
            | DecisionKind::BlockApplied { block_id, .. }
            | DecisionKind::BlockFailed { block_id, .. }
            | DecisionKind::BlockVerified { block_id }
            | DecisionKind::BlockEnding { block_id, .. }
            | DecisionKind::BlockRemoved { block_id } => block_id.clone(),
            DecisionKind::Refused { subject, .. } => subject.clone(),
        }
    }
}

/// One decision record: who decided what, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Schema version.
    pub v: u16,
    /// Unique and deterministic for what it decides: the journal (and the ledger)
    /// keep only the first record with an id, so a retried append is harmless.
    pub id: String,
    /// When.
    pub at: Timestamp,
    /// Who: `notifier`, a channel's deliverer, or a user.
    pub by: String,
    /// The token a user decided with, by id (none for the system and the shell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The address the decision came from, for decisions made through the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// HMAC-SHA256 of the record without this field, keyed with the ledger's key
    /// (`portwatch_ledger`): a record without a valid one never takes effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// What.
    #[serde(flatten)]
    pub what: DecisionKind,
}

impl Decision {
    /// A decision made now-ish (`at`) by `by`, with the id its content implies.
    pub fn new(at: Timestamp, by: &str, what: DecisionKind) -> Decision {
        let id = match &what {
            DecisionKind::Notified { notification } => format!("notified:{}", notification.id),
            DecisionKind::Silenced { reason, alerts } => format!(
                "silenced:{}:{}",
                reason.as_str(),
                alerts.first().map(|a| a.id.as_str()).unwrap_or_default()
            ),
            DecisionKind::Delivery(d) => format!("delivery:{}:{}:{}", d.channel, d.notification, d.attempt),
            DecisionKind::UserSet { user, role } => {
                format!("user:{user}:{}:{}", role.as_str(), at.timestamp_micros())
            }
            DecisionKind::ScheduleSet { task, .. } => {
                format!("schedule:{}:{}", task.as_str(), at.timestamp_micros())
            }
            DecisionKind::TokenIssued(t) => format!("token:{}", t.token_id),
            DecisionKind::TokenRevoked { token_id } => format!("revoked:{token_id}"),
            DecisionKind::SessionClosed { session, .. } => format!("session_closed:{session}"),
            DecisionKind::ApprovalRequested(r) => format!("approval:{}", r.approval_id),
            DecisionKind::ApprovalGranted { approval_id, .. } => format!("granted:{approval_id}"),
            DecisionKind::ApprovalRejected { approval_id, .. } => format!("rejected:{approval_id}"),
            DecisionKind::ApprovalLapsed {
                approval_id,
                episode_id,
                ..
            } => format!("lapsed:{approval_id}:{episode_id}"),
            DecisionKind::ApprovalWarned { approval_id } => format!("warned:{approval_id}"),
            DecisionKind::ApprovalExpired { approval_id } => format!("expired:{approval_id}"),
            DecisionKind::BlockProposed(b) => format!("block:{}", b.block_id),
            DecisionKind::BlockConfirmed { block_id } => format!("confirmed:{block_id}"),
            DecisionKind::BlockApplied { block_id, .. } => format!("applied:{block_id}"),
            DecisionKind::BlockFailed { block_id, .. } => {
                format!("failed:{block_id}:{}", at.timestamp_micros())
            }
            DecisionKind::BlockVerified { block_id } => format!("verified:{block_id}"),
            DecisionKind::BlockEnding { block_id, .. } => format!("ending:{block_id}"),
            DecisionKind::BlockRemoved { block_id } => format!("removed:{block_id}"),
            DecisionKind::Refused { action, subject, .. } => {
                format!("refused:{by}:{action}:{subject}:{}", at.timestamp_micros())
            }
        };
        Decision {
            v: SCHEMA_VERSION,
            id,
            at,
            by: by.to_string(),
            token: None,
            client: None,
            mac: None,
            what,
        }
    }

    /// One line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"encode_error\":\"{e}\"}}"))
    }

    /// Decode one record, refusing versions this build does not know.
    pub fn from_json(text: &str) -> Result<Decision, DecodeError> {
        crate::control::decode(text)
    }
}

/// What a port was seen serving.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Fingerprint {
    /// Service name, once identified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Product.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// TLS certificate subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_subject: Option<String>,
}

impl Fingerprint {
    /// `service/product [cert]`, or `unidentified`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<&str> = [self.service.as_deref(), self.product.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        if parts.is_empty() {
            parts.push("unidentified");
        }
        let mut out = parts.join(" ");
        if let Some(cert) = &self.tls_subject {
            out.push_str(&format!(" [{cert}]"));
        }
        out
    }
}

/// One port's fingerprint when the approval was granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Bound {
    /// Host.
    #[schema(value_type = String, example = "10.1.0.7")]
    pub ip: IpAddr,
    /// Protocol.
    pub proto: Proto,
    /// Port.
    pub port: u16,
    /// What it served.
    #[serde(flatten)]
    pub seen: Fingerprint,
}

/// What an operator asks to approve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApprovalRequest {
    /// Its id.
    pub approval_id: String,
    /// Addresses (one address is a /32 or /128).
    #[schema(value_type = String, example = "10.1.0.0/24")]
    pub net: IpNet,
    /// Ports.
    #[schema(value_type = String, example = "22,80,8000-8100")]
    pub ports: PortSet,
    /// Protocol.
    pub proto: Proto,
    /// The service expected there (binds ports not identified when granted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Why the business needs it.
    pub reason: String,
    /// Who answers for it.
    pub owner: String,
    /// When it stops holding (mandatory).
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
}

/// What an operator proposes to block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlockRequest {
    /// Its id.
    pub block_id: String,
    /// Host.
    #[schema(value_type = String, example = "10.1.0.7")]
    pub ip: IpAddr,
    /// Protocol.
    pub proto: Proto,
    /// Port.
    pub port: u16,
    /// The exposure it is about.
    pub episode_id: String,
    /// Why.
    pub reason: String,
    /// How long it lasts once applied, in seconds.
    pub duration_secs: u64,
}

/// A block as applied (or, in dry-run, as it would have been).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Applied {
    /// When (named apart from the decision's own `at`, beside which it is written).
    #[schema(value_type = String, format = DateTime)]
    pub applied_at: Timestamp,
    /// When it ends on its own.
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
    /// Rendered and checked only.
    pub dry_run: bool,
    /// What the driver did (the rule set, the command, the request).
    pub rules: String,
}
