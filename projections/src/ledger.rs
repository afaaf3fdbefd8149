//! The ledger: decisions portwatch made about telling people, folded.
//!
//! Observations are replayable, decisions are not: the notification policy runs on
//! the wall clock and delivery talks to the outside world, so deciding again from a
//! replayed log could page someone twice. Every decision (a notification decided,
//! alerts recorded without paging, each delivery attempt) is therefore written as a
//! [`Decision`] record to its own journal (the embedded log file, or a Kafka topic)
//! before it takes effect, and [`Ledger`] folds that journal. Deleting and rebuilding
//! the projection state re-derives the same alerts with the same ids; the ledger
//! already holds them as told, so nothing is sent again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use portwatch_events::{Task, Timestamp};
use serde::Serialize;

use crate::approvals::{Approval, ApprovalDecision};
use crate::blocks::Block;
use crate::Alert;
use crate::{
    is_system_actor, Actor, AttemptOutcome, Decision, DecisionKind, Notification, NotificationKind, Role,
    SilenceReason,
};

/// A task's cadence as an admin set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduleChange {
    /// `10m`, `1h`, or `off`.
    pub every: String,
    /// Who set it.
    pub by: String,
    /// When.
    pub at: Timestamp,
}

/// Where delivery of one notification to one channel stands.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeliveryState {
    /// The channel.
    pub channel: String,
    /// Attempts made.
    pub attempts: u32,
    /// `delivered`, `failed` (will retry) or `gave_up`.
    pub outcome: AttemptOutcome,
    /// When the last attempt ended.
    #[schema(value_type = String, format = DateTime)]
    pub last_at: Timestamp,
    /// The last protocol status.
    pub last_status: Option<u16>,
    /// The last error.
    pub last_error: Option<String>,
}

/// A decided notification and its deliveries so far.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotificationRecord {
    /// The message.
    pub notification: Notification,
    /// Per channel, by name.
    pub deliveries: BTreeMap<String, DeliveryState>,
}

/// An exposure people know is open (told, or carried over a flap): what reminders
/// and the resolved notice are about.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Known {
    pub(crate) alert: Alert,
    pub(crate) reminded_at: Timestamp,
    pub(crate) escalated: bool,
}

/// Why a decider does not count as the second person (the two-person rule).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotSecond {
    /// They made the request.
    #[error("{0} made the request; someone else must decide it (two-person rule)")]
    Requester(String),
    /// They decided without a token (the shell, the system).
    #[error("{0} decided without a token; a second person decides with their own token (two-person rule)")]
    NoToken(String),
    /// Their token is not on record.
    #[error("token {0} is not on record (two-person rule)")]
    UnknownToken(String),
    /// The token is someone else's.
    #[error("token {token} is {owner}'s, not {who}'s (two-person rule)")]
    NotTheirs {
        /// The token.
        token: String,
        /// Whose it is.
        owner: String,
        /// Who used it.
        who: String,
    },
    /// The token was issued for them by someone else.
    #[error("token {token} was issued to {who} by {by}: a token issued for someone else counts for nobody's second confirmation (two-person rule)")]
    Delegated {
        /// The token.
        token: String,
        /// Its user.
        who: String,
        /// Who issued it.
        by: String,
    },
    /// The requester issued it, or a token it descends from.
    #[error("token {token} of {who} was issued by {requester} (through token {through}), who made the request: an admin cannot approve through a token they minted (two-person rule)")]
    Minted {
        /// The token.
        token: String,
        /// Its user.
        who: String,
        /// The requester.
        requester: String,
        /// The token of the chain the requester issued.
        through: String,
    },
    /// The requester created them after asking.
    #[error("{who} was created by {requester} after the request: a user the requester made since counts for no second confirmation (two-person rule)")]
    CreatedSince {
        /// The decider.
        who: String,
        /// The requester.
        requester: String,
    },
    /// The requester gave them their role after asking.
    #[error("{who} was given the role {role} by {requester} after the request (two-person rule)", role = role.as_str())]
    PromotedSince {
        /// The decider.
        who: String,
        /// The requester.
        requester: String,
        /// The role given.
        role: Role,
    },
}

/// Why the block controller refuses a block at apply time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockCheck {
    /// The proposer has no operator role.
    #[error("{0}, who proposed it, is not an operator")]
    NotOperator(String),
    /// Nobody confirmed it.
    #[error("nobody confirmed it")]
    Unconfirmed,
    /// The confirmer has no approver role.
    #[error("{0}, who confirmed it, is not an approver")]
    NotApprover(String),
    /// The confirmer is no second person.
    #[error(transparent)]
    NotSecond(#[from] NotSecond),
    /// It breaks the limits.
    #[error(transparent)]
    Bounds(#[from] crate::bounds::BlockRefusal),
}

/// A token on record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRecord {
    /// Its public id.
    pub id: String,
    /// Whose it is.
    pub user: String,
    /// The secret's hash.
    #[serde(skip)]
    pub hash: String,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// Who issued it.
    pub issued_by: String,
    /// The token its issuer used, by id (none when the system or the shell issued it).
    pub issued_with: Option<String>,
    /// Issued by someone else for a user who existed already: it works, but counts
    /// for nobody's second confirmation.
    pub delegated: bool,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
}

/// Who created a user and who last set their role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserRecord {
    /// Their role now.
    pub role: Role,
    /// Who created them.
    pub created_by: String,
    /// When.
    pub created_at: Timestamp,
    /// Who gave them their role now.
    pub role_by: String,
    /// When.
    pub role_at: Timestamp,
}

/// One decision as the audit shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Its place in the journal's order (0 first).
    pub seq: u64,
    /// The decision's id.
    pub id: String,
    /// When.
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// What kind of decision (`approval_granted`, `refused`, ...).
    pub kind: String,
    /// Who: a user or a system name.
    pub user: String,
    /// The token they decided with, by id.
    pub token: Option<String>,
    /// Who issued that token.
    pub issuer: Option<String>,
    /// The address the decision came from.
    pub client: Option<String>,
    /// What it is about.
    pub subject: String,
    /// For a refused attempt, the rule that refused it.
    pub rule: Option<String>,
}

/// The journal of decisions, folded.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    approvals: BTreeMap<String, Approval>,
    blocks: BTreeMap<String, Block>,
    /// The alerts recorded about each exposure (told or silenced), by episode.
    episode_alerts: HashMap<String, Vec<Alert>>,
    users: BTreeMap<String, Role>,
    user_records: BTreeMap<String, UserRecord>,
    audit: Vec<AuditEntry>,
    schedule: BTreeMap<Task, ScheduleChange>,
    tokens: BTreeMap<String, TokenRecord>,
    /// Console sessions signed out before they expire, until they would have.
    closed_sessions: BTreeMap<String, Timestamp>,
    applied: HashSet<String>,
    /// Alerts told or silenced: never decided about again.
    settled: HashSet<String>,
    /// Open exposures people know about, by episode.
    pub(crate) known: BTreeMap<String, Known>,
    /// When the last message about each host was decided.
    pub(crate) last_sent: BTreeMap<IpAddr, Timestamp>,
    notifications: Vec<NotificationRecord>,
    by_id: HashMap<String, usize>,
    by_alert: HashMap<String, Vec<usize>>,
    decisions: u64,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fold one decision; false when one with its id was folded before.
    pub fn apply(&mut self, d: &Decision) -> bool {
        if !self.applied.insert(d.id.clone()) {
            return false;
        }
        self.decisions += 1;
        self.audit.push(AuditEntry {
            seq: self.audit.len() as u64,
            id: d.id.clone(),
            at: d.at,
            kind: d.what.name().to_string(),
            user: d.by.clone(),
            token: d.token.clone(),
            issuer: d
                .token
                .as_deref()
                .and_then(|t| self.tokens.get(t))
                .map(|t| t.issued_by.clone()),
            client: d.client.clone(),
            subject: d.what.subject(),
            rule: match &d.what {
                DecisionKind::Refused { rule, .. } => Some(rule.clone()),
                _ => None,
            },
        });
        match &d.what {
            DecisionKind::Notified { notification: n } => self.notified(n),
            DecisionKind::Silenced { reason, alerts } => {
                for a in alerts {
                    self.settled.insert(a.id.clone());
                    self.remember(a);
                }
                if *reason == SilenceReason::Flap {
                    // [closing of the old episode, opening of the new one]: people
                    // still know the port as open, now as the new episode.
                    if let [closing, opening, ..] = alerts.as_slice() {
                        if let Some(mut known) = self.known.remove(&closing.episode_id) {
                            known.alert = opening.clone();
                            self.known.insert(opening.episode_id.clone(), known);
                        }
                    }
                }
            }
            DecisionKind::ApprovalRequested(r) => {
                self.approvals
                    .entry(r.approval_id.clone())
                    .or_insert_with(|| Approval {
                        request: r.clone(),
                        requested_by: d.by.clone(),
                        requested_at: d.at,
                        decision: None,
                        bound: Vec::new(),
                        lapsed: BTreeMap::new(),
                        warned: false,
                        expired: false,
                    });
            }
            DecisionKind::ApprovalGranted {
                approval_id,
                bound,
                note,
            } => {
                if let Some(a) = self.approvals.get_mut(approval_id) {
                    if a.decision.is_none() {
                        a.decision = Some(ApprovalDecision {
                            granted: true,
                            by: d.by.clone(),
                            at: d.at,
                            note: note.clone(),
                        });
                        a.bound.clone_from(bound);
                    }
                }
            }
            DecisionKind::ApprovalRejected { approval_id, note } => {
                if let Some(a) = self.approvals.get_mut(approval_id) {
                    if a.decision.is_none() {
                        a.decision = Some(ApprovalDecision {
                            granted: false,
                            by: d.by.clone(),
                            at: d.at,
                            note: note.clone(),
                        });
                    }
                }
            }
            DecisionKind::ApprovalLapsed {
                approval_id,
                episode_id,
                why,
                ..
            } => {
                if let Some(a) = self.approvals.get_mut(approval_id) {
                    a.lapsed.entry(episode_id.clone()).or_insert_with(|| why.clone());
                }
            }
            DecisionKind::ApprovalWarned { approval_id } => {
                if let Some(a) = self.approvals.get_mut(approval_id) {
                    a.warned = true;
                }
            }
            DecisionKind::ApprovalExpired { approval_id } => {
                if let Some(a) = self.approvals.get_mut(approval_id) {
                    a.expired = true;
                }
            }
            DecisionKind::BlockProposed(r) => {
                self.blocks.entry(r.block_id.clone()).or_insert_with(|| Block {
                    request: r.clone(),
                    proposed_by: d.by.clone(),
                    proposed_at: d.at,
                    confirmed_by: None,
                    confirmed_at: None,
                    confirmed_with: None,
                    applied: None,
                    error: None,
                    verified_at: None,
                    ending: None,
                    removed_at: None,
                });
            }
            DecisionKind::BlockConfirmed { block_id } => {
                if let Some(b) = self.blocks.get_mut(block_id) {
                    if b.confirmed_by.is_none() {
                        b.confirmed_by = Some(d.by.clone());
                        b.confirmed_at = Some(d.at);
                        b.confirmed_with.clone_from(&d.token);
                    }
                }
            }
            DecisionKind::BlockApplied { block_id, applied } => {
                if let Some(b) = self.blocks.get_mut(block_id) {
                    b.applied.get_or_insert_with(|| applied.clone());
                    b.error = None;
                }
            }
            DecisionKind::BlockFailed { block_id, error } => {
                if let Some(b) = self.blocks.get_mut(block_id) {
                    b.error = Some(portwatch_events::redact::text(error));
                }
            }
            DecisionKind::BlockVerified { block_id } => {
                if let Some(b) = self.blocks.get_mut(block_id) {
                    b.verified_at.get_or_insert(d.at);
                }
            }
            DecisionKind::BlockEnding { block_id, why } => {
                if let Some(b) = self.blocks.get_mut(block_id) {
                    b.ending.get_or_insert_with(|| (why.clone(), d.at));
                }
            }
            DecisionKind::BlockRemoved { block_id } => {
                if let Some(b) = self.blocks.get_mut(block_id) {
                    b.removed_at.get_or_insert(d.at);
                }
            }
            DecisionKind::UserSet { user, role } => {
                self.users.insert(user.clone(), *role);
                let record = self
                    .user_records
                    .entry(user.clone())
                    .or_insert_with(|| UserRecord {
                        role: *role,
                        created_by: d.by.clone(),
                        created_at: d.at,
                        role_by: d.by.clone(),
                        role_at: d.at,
                    });
                record.role = *role;
                record.role_by.clone_from(&d.by);
                record.role_at = d.at;
            }
            DecisionKind::Refused { .. } => {}
            DecisionKind::ScheduleSet { task, every } => {
                match every {
                    Some(every) => self.schedule.insert(
                        *task,
                        ScheduleChange {
                            every: every.clone(),
                            by: d.by.clone(),
                            at: d.at,
                        },
                    ),
                    None => self.schedule.remove(task),
                };
            }
            DecisionKind::TokenIssued(t) => {
                // A token for a user who had one already, issued by another user: it
                // works, but it is not that user's own doing.
                let existing = self.tokens.values().any(|x| x.user == t.user);
                let delegated = existing && d.by != t.user && !is_system_actor(&d.by);
                self.tokens
                    .entry(t.token_id.clone())
                    .or_insert_with(|| TokenRecord {
                        id: t.token_id.clone(),
                        user: t.user.clone(),
                        hash: t.hash.clone(),
                        issued_at: d.at,
                        issued_by: d.by.clone(),
                        issued_with: d.token.clone(),
                        delegated,
                        revoked_at: None,
                    });
            }
            DecisionKind::TokenRevoked { token_id } => {
                if let Some(t) = self.tokens.get_mut(token_id) {
                    t.revoked_at.get_or_insert(d.at);
                }
            }
            DecisionKind::SessionClosed { session, until } => {
                // Sessions past their expiry need no record: their cookies fail anyway.
                self.closed_sessions.retain(|_, until| *until > d.at);
                if *until > d.at {
                    self.closed_sessions.insert(session.clone(), *until);
                }
            }
            DecisionKind::Delivery(a) => {
                if let Some(&i) = self.by_id.get(&a.notification) {
                    let state = self.notifications[i]
                        .deliveries
                        .entry(a.channel.clone())
                        .or_insert_with(|| DeliveryState {
                            channel: a.channel.clone(),
                            attempts: 0,
                            outcome: AttemptOutcome::Failed,
                            last_at: d.at,
                            last_status: None,
                            last_error: None,
                        });
                    // A delivered notification stays delivered, whatever order
                    // attempts were journalled in.
                    if state.outcome != AttemptOutcome::Delivered {
                        state.outcome = a.outcome;
                    }
                    state.attempts = state.attempts.max(a.attempt);
                    state.last_at = d.at;
                    state.last_status = a.status;
                    // Journals written before errors were redacted at the source.
                    state.last_error = a.error.as_deref().map(portwatch_events::redact::text);
                }
            }
        }
        true
    }

    fn notified(&mut self, n: &Notification) {
        let i = self.notifications.len();
        self.notifications.push(NotificationRecord {
            notification: n.clone(),
            deliveries: BTreeMap::new(),
        });
        self.by_id.insert(n.id.clone(), i);
        let last = self.last_sent.entry(n.ip).or_insert(n.at);
        *last = (*last).max(n.at);
        for a in &n.alerts {
            self.by_alert.entry(a.id.clone()).or_default().push(i);
            self.remember(a);
            match n.kind {
                NotificationKind::Expiring => {}
                NotificationKind::Reopened => {
                    // Unapproved again: reminded about from now on, like a new finding.
                    self.settled.insert(a.id.clone());
                    let known = self.known.entry(a.episode_id.clone()).or_insert_with(|| Known {
                        alert: a.clone(),
                        reminded_at: n.at,
                        escalated: false,
                    });
                    known.reminded_at = n.at;
                    if a.severity > known.alert.severity {
                        known.alert = a.clone();
                    }
                }
                NotificationKind::Firing => {
                    self.settled.insert(a.id.clone());
                    let known = self.known.entry(a.episode_id.clone()).or_insert_with(|| Known {
                        alert: a.clone(),
                        reminded_at: n.at,
                        escalated: false,
                    });
                    // A high-risk detection on a port told about as a plain opening:
                    // reminders are about the detection from now on.
                    if a.severity > known.alert.severity {
                        known.alert = a.clone();
                        known.reminded_at = n.at;
                    }
                }
                NotificationKind::Reminder => {
                    if let Some(k) = self.known.get_mut(&a.episode_id) {
                        k.reminded_at = n.at;
                    }
                }
                NotificationKind::Escalation => {
                    if let Some(k) = self.known.get_mut(&a.episode_id) {
                        k.escalated = true;
                    }
                }
                NotificationKind::Resolved => {
                    self.settled.insert(a.id.clone());
                    self.known.remove(&a.episode_id);
                }
            }
        }
    }

    fn remember(&mut self, alert: &Alert) {
        let list = self.episode_alerts.entry(alert.episode_id.clone()).or_default();
        if !list.iter().any(|a| a.id == alert.id) {
            list.push(alert.clone());
        }
    }

    /// The alerts recorded about an exposure (told or silenced), if any.
    pub fn episode_alerts(&self, episode_id: &str) -> Option<Vec<Alert>> {
        self.episode_alerts.get(episode_id).cloned()
    }

    /// Every block, by id.
    pub fn blocks(&self) -> &BTreeMap<String, Block> {
        &self.blocks
    }

    /// Every approval, by id.
    pub fn approvals(&self) -> &BTreeMap<String, Approval> {
        &self.approvals
    }

    /// The cadences changed by an admin (over the config's), by task.
    pub fn schedule(&self) -> &BTreeMap<Task, ScheduleChange> {
        &self.schedule
    }

    /// A user's role, if the user exists.
    pub fn role(&self, user: &str) -> Option<Role> {
        self.users.get(user).copied()
    }

    /// Every user and their role.
    pub fn users(&self) -> &BTreeMap<String, Role> {
        &self.users
    }

    /// A token by id (revoked ones too).
    pub fn token(&self, id: &str) -> Option<&TokenRecord> {
        self.tokens.get(id)
    }

    /// Every token, by id.
    pub fn tokens(&self) -> impl Iterator<Item = &TokenRecord> {
        self.tokens.values()
    }

    /// Whether the console session with this cookie digest was signed out.
    pub fn session_closed(&self, digest: &str) -> bool {
        self.closed_sessions.contains_key(digest)
    }

    /// Who created `user` and who set their role, if the user exists.
    pub fn user_record(&self, user: &str) -> Option<&UserRecord> {
        self.user_records.get(user)
    }

    /// Every decision folded, in the journal's order.
    pub fn audit(&self) -> &[AuditEntry] {
        &self.audit
    }

    /// The two-person rule: whether `decider`, deciding with the token it names,
    /// counts as a person other than `requester`, who asked at `asked_at`. It does
    /// only if it is another user, its token is its own (not issued for it by
    /// someone else), no token in the chain that issued its token was issued by the
    /// requester (an admin cannot mint their own second person), and the requester
    /// has neither created the decider nor given them their role since asking.
    /// `Err` says which part failed.
    pub fn second_person(
        &self,
        requester: &str,
        asked_at: Timestamp,
        decider: &Actor,
    ) -> Result<(), NotSecond> {
        let who = decider.name.clone();
        if who == requester {
            return Err(NotSecond::Requester(who));
        }
        let Some(token_id) = decider.token.clone() else {
            return Err(NotSecond::NoToken(who));
        };
        let Some(token) = self.tokens.get(&token_id) else {
            return Err(NotSecond::UnknownToken(token_id));
        };
        if token.user != who {
            return Err(NotSecond::NotTheirs {
                token: token_id,
                owner: token.user.clone(),
                who,
            });
        }
        if token.delegated {
            return Err(NotSecond::Delegated {
                token: token_id,
                who,
                by: token.issued_by.clone(),
            });
        }
        // Walk the issuers: a token made with a token the requester issued is the
        // requester's doing too. Bounded: ids are unique, so a chain has no loop
        // longer than the tokens on record.
        let mut link = Some(token);
        for _ in 0..=self.tokens.len() {
            let Some(t) = link else { break };
            if t.issued_by == requester {
                return Err(NotSecond::Minted {
                    token: token_id,
                    who,
                    requester: requester.to_string(),
                    through: t.id.clone(),
                });
            }
            link = t.issued_with.as_deref().and_then(|id| self.tokens.get(id));
        }
        if let Some(u) = self.user_records.get(&who) {
            if u.created_by == requester && u.created_at >= asked_at {
                return Err(NotSecond::CreatedSince {
                    who,
                    requester: requester.to_string(),
                });
            }
            if u.role_by == requester && u.role_at >= asked_at {
                return Err(NotSecond::PromotedSince {
                    who,
                    requester: requester.to_string(),
                    role: u.role,
                });
            }
        }
        Ok(())
    }

    /// What the block controller checks again before it applies `block`, whatever
    /// the API checked when it was decided (the records may have reached the
    /// journal some other way): a proposer with at least the operator role, a
    /// confirmer with at least the approver role who counts as a second person,
    /// and the limits. `Err` says what failed.
    pub fn check_block(
        &self,
        block: &crate::blocks::Block,
        bounds: &crate::bounds::Bounds,
        assets: &crate::Assets,
    ) -> Result<(), BlockCheck> {
        let proposer = &block.proposed_by;
        if self.role(proposer).is_none_or(|r| r < Role::Operator) {
            return Err(BlockCheck::NotOperator(proposer.clone()));
        }
        let Some(confirmer) = &block.confirmed_by else {
            return Err(BlockCheck::Unconfirmed);
        };
        if self.role(confirmer).is_none_or(|r| r < Role::Approver) {
            return Err(BlockCheck::NotApprover(confirmer.clone()));
        }
        let actor = Actor {
            name: confirmer.clone(),
            token: block.confirmed_with.clone(),
            client: None,
        };
        self.second_person(proposer, block.proposed_at, &actor)?;
        Ok(bounds.block(assets, &block.request)?)
    }

    /// Whether the alert was told or silenced already.
    pub fn settled(&self, alert_id: &str) -> bool {
        self.settled.contains(alert_id)
    }

    /// Decisions folded.
    pub fn decisions(&self) -> u64 {
        self.decisions
    }

    /// Every decided notification, in the order decided.
    pub fn notifications(&self) -> &[NotificationRecord] {
        &self.notifications
    }

    /// One notification by id.
    pub fn notification(&self, id: &str) -> Option<&NotificationRecord> {
        self.by_id.get(id).map(|&i| &self.notifications[i])
    }

    /// The notifications that reported `alert_id`, in the order decided.
    pub fn for_alert(&self, alert_id: &str) -> impl Iterator<Item = &NotificationRecord> {
        self.by_alert
            .get(alert_id)
            .into_iter()
            .flatten()
            .map(|&i| &self.notifications[i])
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::{DeliveryAttempt, TokenIssued};

    /// A user with `role` and a token `token`, made by `by` (with `with`, its token) at `s`.
    fn user(ledger: &mut Ledger, s: i64, by: &Actor, name: &str, token: &str) {
        let at = Utc.timestamp_opt(1_800_000_000 + s, 0).single().expect("ts");
        if ledger.role(name).is_none() {
            ledger.apply(&by.decide(
                at,
                DecisionKind::UserSet {
                    user: name.into(),
                    role: Role::Admin,
                },
            ));
        }
        ledger.apply(&by.decide(
            at,
            DecisionKind::TokenIssued(TokenIssued {
                token_id: token.into(),
                user: name.into(),
                hash: String::new(),
            }),
        ));
    }

    fn with(name: &str, token: &str) -> Actor {
        Actor {
            name: name.into(),
            token: Some(token.into()),
            client: Some("192.0.2.9".into()),
        }
    }

    #[test]
    fn a_second_person_is_nobody_the_requester_minted() {
        let cli = Actor::system("cli:root");
        let at = |s: i64| Utc.timestamp_opt(1_800_000_000 + s, 0).single().expect("ts");
        let mut l = Ledger::new();
        user(&mut l, 0, &cli, "ada", "t-ada");
        user(&mut l, 0, &cli, "bob", "t-bob");
        // ada made carol before asking, through the API: carol's token passed
        // through ada's hands.
        user(&mut l, 10, &with("ada", "t-ada"), "carol", "t-carol");
        // carol made herself a new token with the one ada gave her: still ada's doing.
        user(&mut l, 20, &with("carol", "t-carol"), "carol", "t-carol2");
        let asked = at(100);
        // bob decides with his own token: a second person.
        assert_eq!(l.second_person("ada", asked, &with("bob", "t-bob")), Ok(()));
        // ada herself, any token.
        assert!(l.second_person("ada", asked, &with("ada", "t-ada")).is_err());
        // ada mints a token for bob (an existing user): delegated, counts for nobody.
        user(&mut l, 200, &with("ada", "t-ada"), "bob", "t-bob-by-ada");
        let e = l
            .second_person("ada", asked, &with("bob", "t-bob-by-ada"))
            .expect_err("minted for bob")
            .to_string();
        assert!(
            e.contains("two-person rule") && e.contains("issued to bob by ada"),
            "{e}"
        );
        let e = l
            .second_person("zed", asked, &with("bob", "t-bob-by-ada"))
            .expect_err("nobody's")
            .to_string();
        assert!(e.contains("nobody"), "{e}");
        // carol's tokens descend from ada's.
        for t in ["t-carol", "t-carol2"] {
            let e = l
                .second_person("ada", asked, &with("carol", t))
                .expect_err(t)
                .to_string();
            assert!(e.contains("issued by ada"), "{t}: {e}");
        }
        // A user ada creates after asking, even with a token from the shell.
        user(&mut l, 300, &with("ada", "t-ada"), "dan", "t-dan-api");
        user(&mut l, 301, &cli, "dan", "t-dan");
        let e = l
            .second_person("ada", asked, &with("dan", "t-dan"))
            .expect_err("created since")
            .to_string();
        assert!(e.contains("created by ada after the request"), "{e}");
        // Another person's request is not affected by ada's doings with dan.
        assert_eq!(l.second_person("bob", asked, &with("dan", "t-dan")), Ok(()));
        // A token that is someone else's, or unknown, or none.
        assert!(l.second_person("ada", asked, &with("bob", "t-dan")).is_err());
        assert!(l.second_person("ada", asked, &with("bob", "nope")).is_err());
        assert!(l.second_person("ada", asked, &Actor::system("bob")).is_err());
        // The audit has every decision with its token and the token's issuer.
        let minted = l
            .audit()
            .iter()
            .find(|e| e.subject.starts_with("t-bob-by-ada"))
            .expect("on record");
        assert_eq!(
            (
                minted.user.as_str(),
                minted.token.as_deref(),
                minted.issuer.as_deref()
            ),
            ("ada", Some("t-ada"), Some("cli:root"))
        );
        assert_eq!(minted.client.as_deref(), Some("192.0.2.9"));
        assert!(l.token("t-bob-by-ada").is_some_and(|t| t.delegated));
        assert!(
            !l.token("t-carol").is_some_and(|t| t.delegated),
            "a new user's first token"
        );
        assert!(!l.token("t-carol2").is_some_and(|t| t.delegated), "one's own");
    }

    #[test]
    fn system_names_are_the_systems() {
        for name in [
            "portwatch",
            "controller",
            "notifier",
            "allow-list",
            "cli:root",
            "channel:soc",
        ] {
            assert!(is_system_actor(name), "{name}");
        }
        assert!(!is_system_actor("ada"));
    }

    #[test]
    fn every_kind_of_decision_survives_its_json() {
        let at = Utc.timestamp_opt(1_800_000_000, 0).single().expect("ts");
        let kinds = vec![
            DecisionKind::ScheduleSet {
                task: Task::FullPorts,
                every: Some("6h".into()),
            },
            DecisionKind::ScheduleSet {
                task: Task::HighRiskPorts,
                every: None,
            },
            DecisionKind::UserSet {
                user: "ann".into(),
                role: Role::Approver,
            },
            DecisionKind::TokenIssued(TokenIssued {
                token_id: "0123456789abcdef".into(),
                user: "ann".into(),
                hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            }),
            DecisionKind::TokenRevoked {
                token_id: "0123456789abcdef".into(),
            },
            DecisionKind::Delivery(DeliveryAttempt {
                notification: "n1".into(),
                channel: "soc".into(),
                attempt: 2,
                outcome: AttemptOutcome::Failed,
                status: Some(500),
                error: Some("HTTP 500".into()),
                millis: 12,
            }),
            DecisionKind::Silenced {
                reason: SilenceReason::Baseline,
                alerts: Vec::new(),
            },
        ];
        let mut ledger = Ledger::new();
        for what in kinds {
            let d = Decision::new(at, "admin", what);
            let back = Decision::from_json(&d.to_json()).unwrap_or_else(|e| panic!("{}: {e}", d.to_json()));
            assert_eq!(back, d);
            assert!(ledger.apply(&back));
            assert!(!ledger.apply(&back), "applied once");
        }
        assert_eq!(ledger.role("ann"), Some(Role::Approver));
        let every: Vec<(Task, &str)> = ledger
            .schedule()
            .iter()
            .map(|(t, c)| (*t, c.every.as_str()))
            .collect();
        assert_eq!(every, [(Task::FullPorts, "6h")]);
        let token = ledger.token("0123456789abcdef").expect("token");
        assert_eq!((token.user.as_str(), token.issued_by.as_str()), ("ann", "admin"));
        assert_eq!(token.revoked_at, Some(at));
        assert_eq!("operator".parse::<Role>(), Ok(Role::Operator));
        assert!("root".parse::<Role>().expect_err("unknown").contains("root"));
    }
}
