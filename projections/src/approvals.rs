//! Approvals: exposures the organisation has accepted, for a while, as they were.
//!
//! An operator files a request (addresses, ports, protocol, the expected service, a
//! business reason, an owner and a mandatory expiry); an approver who is not the
//! requester grants or rejects it. Granting binds the approval to what each open
//! port in scope was seen serving at that moment (service, product, TLS
//! certificate subject): while the port still serves that, its findings do not
//! page; once it serves something else, or the approval expires, the approval
//! *lapses* for that exposure and the finding reopens (a `reopened` notification),
//! and ahead of the expiry the owner is warned (`expiring`). Every step is a
//! decision in the journal; this module is the pure part: what holds, and what is
//! due (the lapses, warnings and expiries are planned in the `lapses` module).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use portwatch_events::{Proto, Timestamp};
use serde::{Deserialize, Serialize};

use crate::PortRow;
use crate::{ApprovalRequest, Bound, Fingerprint};

/// An approval's target: an address (a /32 or /128) or a CIDR network (host bits
/// cleared).
pub fn parse_target(text: &str) -> Result<IpNet, String> {
    match text.parse::<IpNet>() {
        Ok(net) => Ok(net.trunc()),
        Err(_) => text
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("target `{text}`: not an address or CIDR network")),
    }
}

impl From<&PortRow> for Fingerprint {
    /// What `row` was last seen serving.
    fn from(row: &PortRow) -> Fingerprint {
        Fingerprint {
            service: row.service.clone(),
            product: row.product.clone(),
            tls_subject: row.tls_subject.clone(),
        }
    }
}

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    /// Filed, waiting for an approver.
    Pending,
    /// Granted and not expired.
    Approved,
    /// Refused.
    Rejected,
    /// Granted, and past its expiry.
    Expired,
}

/// An approval with its history.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Approval {
    /// What was asked.
    #[serde(flatten)]
    pub request: ApprovalRequest,
    /// Who asked, and when.
    pub requested_by: String,
    /// When.
    #[schema(value_type = String, format = DateTime)]
    pub requested_at: Timestamp,
    /// Granted, rejected, or neither yet.
    pub decision: Option<ApprovalDecision>,
    /// What each open port in scope served when it was granted.
    pub bound: Vec<Bound>,
    /// Exposures it stopped holding for, and why (by episode).
    pub lapsed: BTreeMap<String, String>,
    /// The owner was warned of the expiry.
    pub warned: bool,
    /// Its expiry was acted on.
    pub expired: bool,
}

/// Who decided an approval, how and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ApprovalDecision {
    /// Granted (else rejected).
    pub granted: bool,
    /// By whom.
    pub by: String,
    /// When.
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// Their note.
    pub note: Option<String>,
}

impl Approval {
    /// Its state at `now`.
    pub fn state(&self, now: Timestamp) -> ApprovalState {
        match &self.decision {
            None => ApprovalState::Pending,
            Some(d) if !d.granted => ApprovalState::Rejected,
            Some(_) if self.expired || now >= self.request.expires_at => ApprovalState::Expired,
            Some(_) => ApprovalState::Approved,
        }
    }

    /// Whether the port is in its scope.
    pub fn covers(&self, ip: IpAddr, proto: Proto, port: u16) -> bool {
        self.request.net.contains(&ip) && self.request.proto == proto && self.request.ports.contains(port)
    }

    /// Why it does not hold for what `row` serves now, if it does not: a port seen
    /// when it was granted must serve what it served then; one not seen then must
    /// serve the expected service (or, with none named, still be unidentified). A
    /// port service detection has not looked at yet is given the benefit of the
    /// doubt until it has.
    pub fn mismatch(&self, row: &PortRow) -> Option<String> {
        // Not looked at yet: nothing to compare (service detection is due).
        row.detected_at?;
        let now = Fingerprint::from(row);
        let expected = match self
            .bound
            .iter()
            .find(|b| (b.ip, b.proto, b.port) == (row.ip, row.proto, row.port))
        {
            Some(b) if b.seen.service.is_some() => b.seen.clone(),
            _ => Fingerprint {
                service: self.request.service.clone(),
                ..Fingerprint::default()
            },
        };
        let same = match (&expected.service, &now.service) {
            (None, None) => true,
            // A port bound while unidentified, or expected only by service name:
            // the service decides.
            (Some(s), Some(n)) if expected.product.is_none() && expected.tls_subject.is_none() => s == n,
            _ => expected == now,
        };
        (!same).then(|| {
            format!(
                "now serves {} (approved: {})",
                now.describe(),
                expected.describe()
            )
        })
    }

    /// Whether it silences the findings of the exposure `row` is in. Past its
    /// expiry it holds until the expiry is acted on (journalled, with the findings
    /// reopened), so that the reopening is the one message people get.
    pub fn holds_for(&self, row: &PortRow) -> bool {
        self.decision.as_ref().is_some_and(|d| d.granted)
            && !self.expired
            && self.covers(row.ip, row.proto, row.port)
            && !self.lapsed.contains_key(&row.episode_id)
            && self.mismatch(row).is_none()
    }
}

/// The approval among `approvals` that silences the exposure of `row`.
pub fn approved<'a>(approvals: impl IntoIterator<Item = &'a Approval>, row: &PortRow) -> Option<String> {
    approvals
        .into_iter()
        .find(|a| a.holds_for(row))
        .map(|a| a.request.approval_id.clone())
}
