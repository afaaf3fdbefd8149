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
use portwatch_events::{PortSet, Proto, Timestamp};
use serde::{Deserialize, Serialize};

use crate::PortRow;

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
    /// What `row` was last seen serving.
    pub fn of(row: &PortRow) -> Fingerprint {
        Fingerprint {
            service: row.service.clone(),
            product: row.product.clone(),
            tls_subject: row.tls_subject.clone(),
        }
    }

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
        let now = Fingerprint::of(row);
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
