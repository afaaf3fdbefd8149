//! Syslog for SIEMs: RFC 5424 messages, optionally with an ArcSight CEF payload,
//! over UDP (one datagram per message) or TCP (RFC 6587 octet counting).

use std::time::Duration;

use portwatch_events::Timestamp;
use portwatch_projections::{Notification, NotificationKind, Severity};
use tokio::io::AsyncWriteExt;

use super::{Context, Deliver, Kind, Outcome, Spec, SpecError};
use crate::format;

/// `kind = "syslog"`: `udp://host:port` or `tcp://host:port`.
#[derive(Debug, Clone, Copy)]
pub struct Syslog;

impl Kind for Syslog {
    fn name(&self) -> &'static str {
        "syslog"
    }

    fn tls(&self) -> bool {
        false
    }

    fn build(&self, spec: &Spec<'_>) -> Result<std::sync::Arc<dyn Deliver>, SpecError> {
        let url = spec.url_with(&["udp", "tcp"], "udp://host:port or tcp://host:port")?;
        let port = url
            .port()
            .ok_or_else(|| SpecError::new("url", spec.shown_url(), "needs a port, e.g. udp://siem:514"))?;
        let host = url.host_str().unwrap_or_default();
        let facility = match spec.facility {
            None => 16,
            Some(f) if (0..=23).contains(&f) => f as u8,
            Some(f) => return Err(SpecError::new("facility", f.to_string(), "must be between 0 and 23")),
        };
        Ok(std::sync::Arc::new(SyslogChannel {
            transport: if url.scheme() == "udp" {
                Transport::Udp
            } else {
                Transport::Tcp
            },
            addr: format!("{host}:{port}"),
            cef: spec.cef.unwrap_or(false),
            facility,
            hostname: spec.node.to_string(),
        }))
    }
}

impl Deliver for SyslogChannel {
    fn kind(&self) -> &'static str {
        "syslog"
    }

    fn target(&self) -> String {
        format!("{:?} {}", self.transport, self.addr)
    }

    fn send<'a>(&'a self, n: &'a Notification, cx: Context<'a>) -> futures::future::BoxFuture<'a, Outcome> {
        Box::pin(async move {
            match send(self, n, cx.timeout).await {
                Ok(()) => Outcome::delivered(None),
                Err(e) => Outcome::failed(None, e),
            }
        })
    }
}

/// How syslog messages travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One datagram per message.
    Udp,
    /// A connection per delivery, messages framed by octet counting.
    Tcp,
}

/// A syslog destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogChannel {
    /// UDP or TCP.
    pub transport: Transport,
    /// `host:port`.
    pub addr: String,
    /// Send the CEF form as the message (else plain text).
    pub cef: bool,
    /// Syslog facility (0-23; 16 is local0).
    pub facility: u8,
    /// The HOSTNAME field (the node's name).
    pub hostname: String,
}

/// Syslog severity of a notification: critical for high-risk findings, warning for
/// the rest, notice for closings.
fn syslog_severity(n: &Notification) -> u8 {
    match (n.kind, n.severity) {
        (NotificationKind::Resolved, _) => 5,
        (NotificationKind::Expiring, _) => 4,
        (_, Severity::High) => 2,
        (_, Severity::Medium) => 4,
    }
}

/// CEF severity (0-10).
fn cef_severity(n: &Notification) -> u8 {
    match (n.kind, n.severity) {
        (NotificationKind::Resolved, _) => 3,
        (NotificationKind::Expiring, _) => 5,
        (NotificationKind::Escalation, Severity::High) => 9,
        (_, Severity::High) => 8,
        (_, Severity::Medium) => 5,
    }
}

/// A CEF header field: `\` and `|` escaped, no line breaks.
fn cef_header(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\r', '\n'], " ")
}

/// A CEF extension value: `\` and `=` escaped, line breaks as `\n`.
fn cef_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace("\r\n", "\\n")
        .replace(['\n', '\r'], "\\n")
}

/// The CEF form of `n`.
pub fn cef(n: &Notification) -> String {
    let mut ext = vec![
        format!("rt={}", n.at.timestamp_millis()),
        format!("dst={}", n.ip),
        format!("externalId={}", cef_value(&n.id)),
        "cat=exposure".to_string(),
    ];
    if let [only] = n.alerts.as_slice() {
        ext.push(format!("dpt={}", only.port));
        ext.push(format!("proto={}", only.proto.as_str().to_uppercase()));
    }
    let ports: Vec<String> = n
        .alerts
        .iter()
        .map(|a| format!("{}/{}", a.port, a.proto.as_str()))
        .collect();
    ext.push("cs1Label=ports".to_string());
    ext.push(format!("cs1={}", cef_value(&ports.join(","))));
    let labelled = [
        ("cs2", "owner", &n.asset.owner),
        ("cs3", "system", &n.asset.system),
        ("cs4", "zone", &n.asset.zone),
    ];
    for (key, label, value) in labelled {
        if let Some(v) = value {
            ext.push(format!("{key}Label={label}"));
            ext.push(format!("{key}={}", cef_value(v)));
        }
    }
    ext.push(format!("msg={}", cef_value(&format::lines(n).join("; "))));
    format!(
        "CEF:0|portwatch|portwatch|{}|{}|{}|{}|{}",
        cef_header(env!("CARGO_PKG_VERSION")),
        n.kind.as_str(),
        cef_header(&format::title(n)),
        cef_severity(n),
        ext.join(" ")
    )
}

/// An RFC 5424 header field: printable US-ASCII without spaces, or `-`.
fn field(text: &str, max: usize) -> String {
    let clean: String = text.chars().filter(|c| c.is_ascii_graphic()).take(max).collect();
    if clean.is_empty() {
        "-".into()
    } else {
        clean
    }
}

/// The RFC 5424 message for `n`, stamped `now` by process `pid`.
pub fn message(channel: &SyslogChannel, n: &Notification, now: Timestamp, pid: u32) -> String {
    let pri = u16::from(channel.facility) * 8 + u16::from(syslog_severity(n));
    let body = if channel.cef {
        cef(n)
    } else {
        format::text(n).replace('\n', "; ")
    };
    format!(
        "<{pri}>1 {} {} portwatch {pid} {} [origin software=\"portwatch\" swVersion=\"{}\"] {body}",
        now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        field(&channel.hostname, 255),
        n.kind.as_str(),
        env!("CARGO_PKG_VERSION"),
    )
}

/// Send `n` to `channel`.
pub async fn send(channel: &SyslogChannel, n: &Notification, timeout: Duration) -> Result<(), String> {
    let line = message(channel, n, chrono::Utc::now(), std::process::id());
    let work = async {
        match channel.transport {
            Transport::Udp => {
                let target = tokio::net::lookup_host(&channel.addr)
                    .await
                    .map_err(|e| format!("resolving {}: {e}", channel.addr))?
                    .next()
                    .ok_or_else(|| format!("{} resolves to nothing", channel.addr))?;
                let local = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
                let socket = tokio::net::UdpSocket::bind(local)
                    .await
                    .map_err(|e| e.to_string())?;
                socket
                    .send_to(line.as_bytes(), target)
                    .await
                    .map_err(|e| format!("sending to {target}: {e}"))?;
                Ok(())
            }
            Transport::Tcp => {
                let mut stream = tokio::net::TcpStream::connect(&channel.addr)
                    .await
                    .map_err(|e| format!("connecting to {}: {e}", channel.addr))?;
                let framed = format!("{} {line}", line.len());
                stream
                    .write_all(framed.as_bytes())
                    .await
                    .map_err(|e| e.to_string())?;
                stream.shutdown().await.map_err(|e| e.to_string())
            }
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("no answer from {} within {timeout:?}", channel.addr))?
}
