//! Service detection: what speaks on an open port, whatever its number.
//!
//! Each protocol lives in its own file behind one small interface and is listed once
//! in [`PROBES`] (like fingerprintx's plugins or zmap's probe modules): its service
//! name (nmap's names where one exists), default ports, priority, and either a
//! matcher for what the server says first (a banner) or a conversation the client
//! starts. [`identify`] reads a banner first; if the server says nothing, it tries
//! the client-first probes, those whose default ports include the port first, then
//! the rest by priority. Every exchange is bounded ([`wire`]): a hostile or silent
//! server yields "unknown" with the reason, never a hang and never a false name.
//!
//! All fingerprints here are written for portwatch from the protocols' own
//! specifications; no third-party probe or signature data is included.

pub mod ftp;
pub mod http;
pub mod redis;
pub mod smtp;
pub mod ssh;
pub mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;

pub use wire::{Conn, Limits, WireError};

/// What a probe recognised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Found {
    /// Service name (`ssh`, `http`, `redis`, ...).
    pub service: &'static str,
    /// Product, when the protocol tells (`OpenSSH`, `nginx`, `Redis`).
    pub product: Option<String>,
    /// Version, when the protocol tells.
    pub version: Option<String>,
}

/// A client-first conversation on a fresh connection.
pub type Talk =
    for<'a> fn(&'a mut Conn) -> Pin<Box<dyn Future<Output = Result<Option<Found>, WireError>> + Send + 'a>>;

/// How a probe recognises its protocol.
#[derive(Debug, Clone, Copy)]
pub enum Method {
    /// The server speaks first: match its banner.
    Banner(fn(&[u8]) -> Option<Found>),
    /// The client speaks first.
    Talk(Talk),
}

/// One entry of the registry.
#[derive(Debug, Clone, Copy)]
pub struct ServiceProbe {
    /// Service name.
    pub name: &'static str,
    /// Ports the service usually listens on (tried first there).
    pub ports: &'static [u16],
    /// Order among probes not matching the port (lower first).
    pub priority: u8,
    /// How it recognises the service.
    pub method: Method,
}

/// Every service probe. Order within a method is by priority.
pub static PROBES: &[ServiceProbe] = &[
    ServiceProbe {
        name: "ssh",
        ports: &[22, 2222],
        priority: 10,
        method: Method::Banner(ssh::banner),
    },
    ServiceProbe {
        name: "ftp",
        ports: &[21, 2121],
        priority: 20,
        method: Method::Banner(ftp::banner),
    },
    ServiceProbe {
        name: "smtp",
        ports: &[25, 465, 587, 2525],
        priority: 30,
        method: Method::Banner(smtp::banner),
    },
    ServiceProbe {
        name: "redis",
        ports: &[6379, 16379],
        priority: 10,
        method: Method::Talk(redis::talk),
    },
    ServiceProbe {
        name: "http",
        ports: &[80, 8000, 8008, 8080, 8081, 8888, 9200],
        priority: 20,
        method: Method::Talk(http::talk),
    },
];

/// The outcome of identifying one port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identification {
    /// What was recognised; `None` is "unknown".
    pub found: Option<Found>,
    /// The server's first line, if it said something.
    pub banner: Option<String>,
    /// Why it is unknown (timeouts, closed connections, unrecognised banner).
    pub reason: Option<String>,
}

/// Probes to try on `port`, those listing the port first, then by priority.
pub fn order(port: u16) -> Vec<&'static ServiceProbe> {
    let mut probes: Vec<&ServiceProbe> = PROBES.iter().collect();
    probes.sort_by_key(|p| (!p.ports.contains(&port), p.priority));
    probes
}

/// Identify the service at `addr`.
pub async fn identify(addr: SocketAddr, limits: Limits) -> Identification {
    let probes = order(addr.port());
    // 1. Does the server speak first? Wait a little for a banner.
    let banner_limits = Limits {
        read: limits.read.min(Duration::from_millis(1000)),
        ..limits
    };
    let mut reasons = Vec::new();
    match Conn::open(addr, banner_limits).await {
        Err(e) => {
            return Identification {
                found: None,
                banner: None,
                reason: Some(e.to_string()),
            }
        }
        Ok(mut conn) => match conn.banner().await {
            Ok(bytes) if !bytes.is_empty() => {
                let banner = wire::first_line(bytes);
                for probe in &probes {
                    if let Method::Banner(matcher) = probe.method {
                        if let Some(found) = matcher(bytes) {
                            return Identification {
                                found: Some(found),
                                banner: Some(banner),
                                reason: None,
                            };
                        }
                    }
                }
                return Identification {
                    found: None,
                    banner: Some(banner),
                    reason: Some("banner not recognised".into()),
                };
            }
            Ok(_) => reasons.push("no banner".to_string()),
            Err(e) => reasons.push(format!("banner: {e}")),
        },
    }
    // 2. It waits for the client: try the conversations.
    for probe in &probes {
        let Method::Talk(talk) = probe.method else {
            continue;
        };
        let mut conn = match Conn::open(addr, limits).await {
            Ok(c) => c,
            Err(e) => {
                reasons.push(format!("{}: {e}", probe.name));
                continue;
            }
        };
        match talk(&mut conn).await {
            Ok(Some(found)) => {
                return Identification {
                    found: Some(found),
                    banner: None,
                    reason: None,
                }
            }
            Ok(None) => reasons.push(format!("{}: no match", probe.name)),
            Err(e) => reasons.push(format!("{}: {e}", probe.name)),
        }
    }
    Identification {
        found: None,
        banner: None,
        reason: Some(reasons.join("; ")),
    }
}

/// Split `product/version` or `product_version` (as in `nginx/1.22.1`).
pub(crate) fn product_version(token: &str, sep: char) -> (Option<String>, Option<String>) {
    match token.split_once(sep) {
        Some((p, v)) if !p.is_empty() => (Some(p.to_string()), Some(v.to_string()).filter(|v| !v.is_empty())),
        _ if !token.is_empty() => (Some(token.to_string()), None),
        _ => (None, None),
    }
}
