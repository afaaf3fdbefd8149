//! Active control: blocking an exposure at a firewall, under a two-person rule.
//!
//! An operator proposes a block of one open port for a time; an approver who is not
//! the proposer confirms it; only then the controller applies it with the
//! configured driver (dry-run by default: rendered and checked, not applied). The
//! block ends on its own when its time is up, or when someone rolls it back, and
//! the controller removes the rule. The probes verify it: the port seen closed
//! after the block was applied. Every step is a decision in the journal; this
//! module is the pure part: the records, their state, and what is due.

use portwatch_events::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{Applied, BlockRequest};
use crate::{PortRow, PortState};

/// Where a block stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BlockState {
    /// Waiting for a second person.
    Proposed,
    /// Confirmed; the controller applies it next.
    Confirmed,
    /// The driver failed; the controller tries again.
    Failed,
    /// Rendered and checked, not applied (dry-run).
    DryRun,
    /// In force, the port not seen closed yet.
    Active,
    /// In force, and the probes saw the port closed.
    Verified,
    /// Ending: the controller removes the rule next.
    RollingBack,
    /// Ended, the rule removed.
    RolledBack,
}

/// A block with its history.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Block {
    /// What was proposed.
    #[serde(flatten)]
    pub request: BlockRequest,
    /// By whom.
    pub proposed_by: String,
    /// When.
    #[schema(value_type = String, format = DateTime)]
    pub proposed_at: Timestamp,
    /// The second person, and when.
    pub confirmed_by: Option<String>,
    /// When it was confirmed.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub confirmed_at: Option<Timestamp>,
    /// The token the second person confirmed with, by id (checked again at apply time).
    pub confirmed_with: Option<String>,
    /// As applied.
    pub applied: Option<Applied>,
    /// The driver's last error, if it failed.
    pub error: Option<String>,
    /// When the probes saw the port closed after it was applied.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub verified_at: Option<Timestamp>,
    /// Why it ends (expired, or rolled back by someone), and when.
    #[schema(value_type = Option<Vec<String>>)]
    pub ending: Option<(String, Timestamp)>,
    /// When its rule was removed.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub removed_at: Option<Timestamp>,
}

impl Block {
    /// Its state.
    pub fn state(&self) -> BlockState {
        match (&self.confirmed_by, &self.applied, &self.ending, self.removed_at) {
            (_, _, Some(_), Some(_)) => BlockState::RolledBack,
            (_, _, Some(_), None) => BlockState::RollingBack,
            (None, _, None, _) => BlockState::Proposed,
            (Some(_), None, None, _) if self.error.is_some() => BlockState::Failed,
            (Some(_), None, None, _) => BlockState::Confirmed,
            (Some(_), Some(a), None, _) if a.dry_run => BlockState::DryRun,
            (Some(_), Some(_), None, _) if self.verified_at.is_some() => BlockState::Verified,
            (Some(_), Some(_), None, _) => BlockState::Active,
        }
    }
}

/// What the controller is to do about one block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockAction {
    /// Apply it (confirmed, not applied yet).
    Apply(BlockRequest),
    /// Its time is up: end it.
    Expire(String),
    /// Remove its rule (it is ending).
    Remove(BlockRequest, bool),
    /// The probes saw the port closed since it was applied.
    Verify(String),
}

/// What is due for `blocks` at `now`, given the port rows of their ports (`rows`).
pub fn due<'a>(
    blocks: impl IntoIterator<Item = &'a Block>,
    rows: &[PortRow],
    now: Timestamp,
) -> Vec<BlockAction> {
    let mut out = Vec::new();
    for b in blocks {
        let id = &b.request.block_id;
        match b.state() {
            BlockState::Confirmed | BlockState::Failed => out.push(BlockAction::Apply(b.request.clone())),
            // Nothing applied (rolled back before it was), or applied in a dry run:
            // nothing for the driver to remove.
            BlockState::RollingBack => out.push(BlockAction::Remove(
                b.request.clone(),
                b.applied.as_ref().is_none_or(|a| a.dry_run),
            )),
            BlockState::Active | BlockState::DryRun | BlockState::Verified => {
                let Some(applied) = &b.applied else { continue };
                if now >= applied.expires_at {
                    out.push(BlockAction::Expire(id.clone()));
                } else if b.state() == BlockState::Active {
                    let closed = rows.iter().any(|r| {
                        (r.ip, r.proto, r.port) == (b.request.ip, b.request.proto, b.request.port)
                            && r.state == PortState::Closed
                            && r.last_change >= applied.applied_at
                    });
                    if closed {
                        out.push(BlockAction::Verify(id.clone()));
                    }
                }
            }
            BlockState::Proposed | BlockState::RolledBack => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use portwatch_events::{Evidence, Proto, RiskClass};

    use super::*;
    use crate::ledger::Ledger;
    use crate::{Decision, DecisionKind};

    fn at(s: i64) -> Timestamp {
        Utc.timestamp_opt(1_800_000_000 + s, 0).single().expect("ts")
    }

    fn row(state: PortState, changed: i64) -> PortRow {
        PortRow {
            ip: "203.0.113.7".parse().expect("ip"),
            port: 6379,
            proto: Proto::Tcp,
            state,
            first_seen: at(0),
            last_seen: at(0),
            last_change: at(changed),
            misses: 0,
            missing_since: None,
            episode_id: "e1".into(),
            evidence: Evidence::Handshake,
            rtt_ms: None,
            service: None,
            product: None,
            version: None,
            banner: None,
            class: None,
            panels: Vec::new(),
            title: None,
            tls_subject: None,
            detected_at: None,
            risk: RiskClass::HighRiskPort,
        }
    }

    fn apply(ledger: &mut Ledger, s: i64, by: &str, what: DecisionKind) {
        let d = Decision::new(at(s), by, what);
        let back = Decision::from_json(&d.to_json()).unwrap_or_else(|e| panic!("{}: {e}", d.to_json()));
        assert_eq!(back, d);
        ledger.apply(&back);
    }

    #[test]
    fn a_block_goes_from_proposal_to_verified_to_rolled_back() {
        let mut ledger = Ledger::new();
        let request = BlockRequest {
            block_id: "bk_1".into(),
            ip: "203.0.113.7".parse().expect("ip"),
            proto: Proto::Tcp,
            port: 6379,
            episode_id: "e1".into(),
            reason: "Redis open to the internet".into(),
            duration_secs: 600,
        };
        apply(
            &mut ledger,
            10,
            "olga",
            DecisionKind::BlockProposed(request.clone()),
        );
        let state = |l: &Ledger| l.blocks()["bk_1"].state();
        assert_eq!(state(&ledger), BlockState::Proposed);
        assert!(
            due(ledger.blocks().values(), &[], at(11)).is_empty(),
            "nothing before a second person"
        );
        // A proposal rolled back before it was applied: nothing for the driver to
        // remove (the port's rule, if any, is another block's).
        let mut unapplied = ledger.clone();
        apply(
            &mut unapplied,
            12,
            "olga",
            DecisionKind::BlockEnding {
                block_id: "bk_1".into(),
                why: "rolled back by olga".into(),
            },
        );
        assert_eq!(
            due(unapplied.blocks().values(), &[], at(13)),
            [BlockAction::Remove(request.clone(), true)]
        );
        apply(
            &mut ledger,
            20,
            "arno",
            DecisionKind::BlockConfirmed {
                block_id: "bk_1".into(),
            },
        );
        assert_eq!(
            due(ledger.blocks().values(), &[], at(21)),
            [BlockAction::Apply(request.clone())]
        );
        apply(
            &mut ledger,
            30,
            "controller",
            DecisionKind::BlockApplied {
                block_id: "bk_1".into(),
                applied: Applied {
                    applied_at: at(30),
                    expires_at: at(630),
                    dry_run: false,
                    rules: "add element ...".into(),
                },
            },
        );
        assert_eq!(state(&ledger), BlockState::Active);
        // Closed before the block: not its doing. Closed after: verified.
        assert!(due(ledger.blocks().values(), &[row(PortState::Closed, 5)], at(40)).is_empty());
        assert_eq!(
            due(ledger.blocks().values(), &[row(PortState::Closed, 35)], at(40)),
            [BlockAction::Verify("bk_1".into())]
        );
        apply(
            &mut ledger,
            40,
            "controller",
            DecisionKind::BlockVerified {
                block_id: "bk_1".into(),
            },
        );
        assert_eq!(state(&ledger), BlockState::Verified);
        assert_eq!(
            due(ledger.blocks().values(), &[], at(630)),
            [BlockAction::Expire("bk_1".into())]
        );
        apply(
            &mut ledger,
            630,
            "controller",
            DecisionKind::BlockEnding {
                block_id: "bk_1".into(),
                why: "expired".into(),
            },
        );
        assert_eq!(
            due(ledger.blocks().values(), &[], at(631)),
            [BlockAction::Remove(request, false)]
        );
        apply(
            &mut ledger,
            631,
            "controller",
            DecisionKind::BlockRemoved {
                block_id: "bk_1".into(),
            },
        );
        assert_eq!(state(&ledger), BlockState::RolledBack);
        assert!(due(ledger.blocks().values(), &[], at(700)).is_empty());
    }
}
