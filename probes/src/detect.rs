//! Service and admin panel detection of one open port (tasks 3 and 5): identify
//! the service ([`crate::service`]), fall back to nmap's banner data when the
//! operator loaded it ([`crate::nmap`]), fingerprint web servers and run the panel
//! rules ([`crate::web`]). Which risk class that makes is policy, decided next to the
//! folds; detection reports the facts it rests on (service, high-risk panels).

use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;

use crate::nmap::NmapSource;
use crate::panels::{PanelRisk, Rules};
use crate::service::{identify_with, Identification, Limits, TlsInfo};
use crate::web::{fingerprint, HttpInfo, PanelHit, WebLimits};

/// How detection runs.
#[derive(Debug, Clone)]
pub struct DetectOptions {
    /// Per-conversation limits of the protocol probes.
    pub limits: Limits,
    /// Limits of the web fingerprint.
    pub web: WebLimits,
    /// Protocol probes run at once against one port.
    pub parallel: usize,
    /// Run the panel rules on web ports (task 5).
    pub panels: bool,
    /// Panel rules.
    pub rules: Arc<Rules>,
    /// nmap's NULL-probe matches, when the operator opted in.
    pub nmap: Option<Arc<NmapSource>>,
}

/// What detection found on one port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detection {
    /// The port's address.
    #[serde(skip)]
    pub addr: SocketAddr,
    /// Service name, or `unknown`.
    pub service: String,
    /// Product, when told.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// Version, when told.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Where the name came from: `portwatch` or `nmap-service-probes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched_by: Option<&'static str>,
    /// The banner's first line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub banner: Option<String>,
    /// TLS session and certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsInfo>,
    /// Web fingerprint of HTTP(S) ports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpInfo>,
    /// Admin panels found.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub panels: Vec<PanelHit>,
    /// Whether a panel rule of high risk matched (what makes the port a high-risk
    /// admin panel under the policy).
    #[serde(skip)]
    pub high_risk_panel: bool,
    /// Why the service is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Detection {
    /// The port_detail observation carrying this detection and the class the
    /// policy gave it.
    pub fn to_detail(
        &self,
        rtt_ms: Option<f64>,
        class: portwatch_events::RiskClass,
    ) -> portwatch_events::PortDetail {
        portwatch_events::PortDetail {
            ip: self.addr.ip(),
            port: self.addr.port(),
            proto: portwatch_events::Proto::Tcp,
            evidence: if self.service != "unknown" {
                portwatch_events::Evidence::Service
            } else if self.banner.is_some() {
                portwatch_events::Evidence::Data
            } else {
                portwatch_events::Evidence::Handshake
            },
            rtt_ms,
            service: Some(self.service.clone()),
            product: self.product.clone(),
            version: self.version.clone(),
            banner: self.banner.clone(),
            class: Some(class),
            panels: self.panels.iter().map(|p| p.id.clone()).collect(),
            title: self.http.as_ref().and_then(|h| h.title.clone()),
            tls_subject: self
                .tls
                .as_ref()
                .and_then(|t| t.cert.as_ref())
                .map(|c| c.subject.clone()),
        }
    }
}

/// Detect what runs at `addr`.
pub async fn detect(addr: SocketAddr, opts: &DetectOptions) -> Detection {
    let id: Identification = identify_with(addr, opts.limits, opts.parallel).await;
    let mut service = id.found.as_ref().map(|f| f.service.to_string());
    let mut product = id.found.as_ref().and_then(|f| f.product.clone());
    let mut version = id.found.as_ref().and_then(|f| f.version.clone());
    let mut matched_by = id.found.as_ref().map(|_| "portwatch");
    let mut reason = id.reason.clone();
    if service.is_none() && !id.raw_banner.is_empty() {
        if let Some(hit) = opts
            .nmap
            .as_ref()
            .and_then(|n| n.matcher().identify(&id.raw_banner))
        {
            service = Some(hit.service);
            product = hit.product;
            version = hit.version;
            matched_by = Some("nmap-service-probes");
            reason = None;
        }
    }
    let web = matches!(service.as_deref(), Some("http" | "https"));
    let (http, panels) = if web && opts.panels {
        match fingerprint(addr, service.as_deref() == Some("https"), &opts.rules, opts.web).await {
            Some(fp) => (Some(fp.http), fp.panels),
            None => (None, Vec::new()),
        }
    } else {
        (None, Vec::new())
    };
    let high_risk_panel = panels.iter().any(|p| p.risk == PanelRisk::High);
    Detection {
        addr,
        service: service.unwrap_or_else(|| "unknown".to_string()),
        product,
        version,
        matched_by,
        banner: id.banner,
        tls: id.tls,
        http,
        panels,
        high_risk_panel,
        reason,
    }
}
