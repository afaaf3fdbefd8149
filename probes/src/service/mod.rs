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

pub mod amqp;
pub mod cassandra;
pub mod clickhouse;
pub mod dns;
pub mod ftp;
pub mod http;
pub mod imap;
pub mod kafka;
pub mod ldap;
pub mod memcached;
pub mod modbus;
pub mod mongodb;
pub mod mqtt;
pub mod mssql;
pub mod mysql;
pub mod nats;
pub mod oracle;
pub mod pop3;
pub mod postgresql;
pub mod rdp;
pub mod redis;
pub mod rsync;
pub mod smb;
pub mod smtp;
pub mod ssh;
pub mod telnet;
pub mod tls;
pub mod vnc;
pub mod wire;
pub mod zookeeper;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;

pub use tls::{CertInfo, TlsInfo};
pub use wire::{Conn, Limits, WireError};

/// What a probe recognised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Found {
    /// Service name (`ssh`, `http`, `redis`, ...; nmap's names where one exists).
    pub service: &'static str,
    /// Product, when the protocol tells (`OpenSSH`, `nginx`, `Redis`).
    pub product: Option<String>,
    /// Version, when the protocol tells.
    pub version: Option<String>,
}

impl Found {
    /// A service with neither product nor version known.
    pub fn new(service: &'static str) -> Self {
        Self {
            service,
            product: None,
            version: None,
        }
    }

    /// With a product.
    pub fn product(mut self, product: impl Into<String>) -> Self {
        self.product = Some(product.into()).filter(|p: &String| !p.is_empty());
        self
    }

    /// With a version, if known.
    pub fn version(mut self, version: Option<String>) -> Self {
        self.version = version.map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        self
    }
}

/// Recognises a server's banner.
pub type Matcher = fn(&[u8]) -> Option<Found>;

/// A client-first conversation's result.
pub type Reply<'a> = Pin<Box<dyn Future<Output = Result<Option<Found>, WireError>> + Send + 'a>>;

/// A client-first conversation on a fresh connection.
pub type Talk = for<'a> fn(&'a mut Conn) -> Reply<'a>;

/// How a probe recognises its protocol.
#[derive(Debug, Clone, Copy)]
pub enum Method {
    /// The server speaks first: match its banner.
    Banner(Matcher),
    /// The client speaks first.
    Talk(Talk),
    /// A TLS handshake; when it succeeds, the other probes run through TLS.
    Tls,
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

const fn banner(
    name: &'static str,
    ports: &'static [u16],
    priority: u8,
    f: fn(&[u8]) -> Option<Found>,
) -> ServiceProbe {
    ServiceProbe {
        name,
        ports,
        priority,
        method: Method::Banner(f),
    }
}

const fn talk(name: &'static str, ports: &'static [u16], priority: u8, f: Talk) -> ServiceProbe {
    ServiceProbe {
        name,
        ports,
        priority,
        method: Method::Talk(f),
    }
}

/// Every service probe. Server-first protocols match the banner; the others are
/// conversations, tried in priority order (after those listing the port).
pub static PROBES: &[ServiceProbe] = &[
    // The server speaks first.
    banner("ssh", &[22], 10, ssh::banner),
    banner("ftp", &[21], 20, ftp::banner),
    banner("smtp", &[25, 465, 587, 2525], 30, smtp::banner),
    banner("pop3", &[110, 995], 30, pop3::banner),
    banner("imap", &[143, 993], 30, imap::banner),
    banner("mysql", &[3306], 10, mysql::banner),
    banner("vnc", &[5900, 5901, 5902, 5903], 20, vnc::banner),
    banner("rsync", &[873], 40, rsync::banner),
    banner("nats", &[4222], 40, nats::banner),
    banner("telnet", &[23, 2323], 50, telnet::banner),
    // The client speaks first.
    talk(
        "http",
        &[
            80, 5984, 8000, 8008, 8080, 8081, 8088, 8123, 8888, 9200, 2375, 2379,
        ],
        5,
        http::talk,
    ),
    ServiceProbe {
        name: "ssl",
        ports: &[443, 465, 636, 993, 995, 2376, 5986, 6443, 8443, 9443],
        priority: 4, // before HTTP: a TLS port often answers a plain GET with 400
        method: Method::Tls,
    },
    talk("redis", &[6379], 10, redis::talk),
    talk("postgresql", &[5432], 10, postgresql::talk),
    talk("memcached", &[11211], 15, memcached::talk),
    talk("mongodb", &[27017, 27018], 15, mongodb::talk),
    talk("ms-wbt-server", &[3389], 20, rdp::talk),
    talk("microsoft-ds", &[445, 139], 20, smb::talk),
    talk("ms-sql-s", &[1433], 20, mssql::talk),
    talk("clickhouse", &[9000], 25, clickhouse::talk_native),
    talk("kafka", &[9092, 9093], 25, kafka::talk),
    talk("zookeeper", &[2181], 25, zookeeper::talk),
    talk("amqp", &[5672], 25, amqp::talk),
    talk("mqtt", &[1883], 25, mqtt::talk),
    talk("cassandra", &[9042], 30, cassandra::talk),
    talk("ldap", &[389], 30, ldap::talk),
    talk("oracle-tns", &[1521], 30, oracle::talk),
    talk("domain", &[53], 35, dns::talk),
    talk("modbus", &[502], 40, modbus::talk),
];

/// Default ports of services recognised through their HTTP API.
const HTTP_API_PORTS: &[(&str, &[u16])] = &[
    ("clickhouse", &[8123]),
    ("couchdb", &[5984]),
    ("docker", &[2375, 2376]),
    ("elasticsearch", &[9200]),
    ("etcd", &[2379]),
    ("kubernetes", &[6443]),
];

/// The ports `service` listens on by default (empty if portwatch knows none).
pub fn default_ports(service: &str) -> Vec<u16> {
    PROBES
        .iter()
        .filter(|p| p.name == service)
        .flat_map(|p| p.ports.iter().copied())
        .chain(
            HTTP_API_PORTS
                .iter()
                .filter(|(s, _)| *s == service)
                .flat_map(|(_, ports)| ports.iter().copied()),
        )
        .collect()
}

/// Every service portwatch recognises with its default ports (what the risk policy
/// needs to tell a dangerous service on its own port from one elsewhere).
pub fn default_port_table() -> std::collections::BTreeMap<String, Vec<u16>> {
    let mut table = std::collections::BTreeMap::<String, Vec<u16>>::new();
    let names = PROBES
        .iter()
        .map(|p| p.name)
        .chain(HTTP_API_PORTS.iter().map(|(s, _)| *s));
    for name in names {
        table
            .entry(name.to_string())
            .or_insert_with(|| default_ports(name));
    }
    table
}

/// The outcome of identifying one port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identification {
    /// What was recognised; `None` is "unknown".
    pub found: Option<Found>,
    /// The server's first line, if it said something.
    pub banner: Option<String>,
    /// The TLS session, when the service spoke through TLS.
    pub tls: Option<TlsInfo>,
    /// Why it is unknown (timeouts, closed connections, unrecognised banner).
    pub reason: Option<String>,
    /// The banner's first bytes (at most 4 KiB), for extra matchers.
    #[serde(skip)]
    pub raw_banner: Vec<u8>,
}

impl Identification {
    fn unknown(banner: Option<String>, reason: String) -> Self {
        Self {
            found: None,
            banner,
            tls: None,
            reason: Some(reason),
            raw_banner: Vec::new(),
        }
    }
}

/// Probes to try on `port`, those listing the port first, then by priority.
pub fn order(port: u16) -> Vec<&'static ServiceProbe> {
    let mut probes: Vec<&ServiceProbe> = PROBES.iter().collect();
    probes.sort_by_key(|p| (!p.ports.contains(&port), p.priority));
    probes
}

/// Client-first probes run at once on separate connections (after the ones
/// listing the port, which run alone first).
pub const PARALLEL: usize = 8;

/// Identify the service at `addr`.
pub async fn identify(addr: SocketAddr, limits: Limits) -> Identification {
    identify_with(addr, limits, PARALLEL).await
}

/// Identify the service at `addr`, running `parallel` client-first probes at once.
pub async fn identify_with(addr: SocketAddr, limits: Limits, parallel: usize) -> Identification {
    let mut id = identify_over(addr, limits, false, parallel).await;
    // The TLS probe matched: run the probes again through TLS.
    if id.found.as_ref().is_some_and(|f| f.service == "ssl") {
        let inner = identify_over(addr, limits, true, parallel).await;
        let tls = inner.tls.clone();
        id = match inner.found {
            Some(mut found) => {
                if found.service == "http" {
                    found.service = "https";
                }
                Identification {
                    found: Some(found),
                    banner: inner.banner,
                    tls,
                    reason: None,
                    raw_banner: inner.raw_banner,
                }
            }
            // TLS, and nothing recognised inside it.
            None => Identification {
                found: Some(Found::new("ssl")),
                banner: inner.banner,
                tls,
                reason: inner.reason,
                raw_banner: inner.raw_banner,
            },
        };
    }
    id
}

async fn identify_over(addr: SocketAddr, limits: Limits, tls: bool, parallel: usize) -> Identification {
    let probes = order(addr.port());
    // 1. Does the server speak first? Wait a little for a banner: a line, or bytes
    //    one of the banner matchers recognises (binary greetings have no line end).
    let banner_limits = Limits {
        read: limits.read.min(Duration::from_millis(1000)),
        ..limits
    };
    let mut reasons = Vec::new();
    let session;
    match Conn::open_as(addr, banner_limits, tls).await {
        Err(e) => return Identification::unknown(None, e.to_string()),
        Ok(mut conn) => {
            session = conn.tls.take();
            let matchers: Vec<Matcher> = probes
                .iter()
                .filter_map(|p| match p.method {
                    Method::Banner(m) => Some(m),
                    _ => None,
                })
                .collect();
            let done = |b: &[u8]| b.contains(&b'\n') || matchers.iter().any(|m| m(b).is_some());
            match conn.read_until(done).await {
                Ok(bytes) if !bytes.is_empty() => {
                    let banner = wire::first_line(bytes);
                    let found = matchers.iter().find_map(|m| m(bytes));
                    let reason = found.is_none().then(|| "banner not recognised".to_string());
                    return Identification {
                        found,
                        banner: Some(banner),
                        tls: session,
                        reason,
                        raw_banner: bytes[..bytes.len().min(4096)].to_vec(),
                    };
                }
                Ok(_) => reasons.push("no banner".to_string()),
                Err(e) => reasons.push(format!("banner: {e}")),
            }
        }
    }
    // 2. It waits for the client: the probes listing the port one by one, then the
    //    others PARALLEL at a time; the first match in this order wins.
    let talks: Vec<&ServiceProbe> = probes
        .iter()
        .copied()
        .filter(|p| match p.method {
            Method::Talk(_) => true,
            Method::Tls => !tls,
            Method::Banner(_) => false,
        })
        .collect();
    let (listed, rest): (Vec<&ServiceProbe>, Vec<&ServiceProbe>) =
        talks.into_iter().partition(|p| p.ports.contains(&addr.port()));
    let mut groups: Vec<Vec<&ServiceProbe>> = listed.into_iter().map(|p| vec![p]).collect();
    groups.extend(rest.chunks(parallel.max(1)).map(<[&ServiceProbe]>::to_vec));
    for group in groups {
        let results = futures::future::join_all(group.iter().map(|p| run(p, addr, limits, tls))).await;
        for (probe, result) in group.iter().zip(results) {
            match result {
                Ok(Some(found)) => {
                    return Identification {
                        found: Some(found),
                        banner: None,
                        tls: session,
                        reason: None,
                        raw_banner: Vec::new(),
                    }
                }
                Ok(None) => reasons.push(format!("{}: no match", probe.name)),
                Err(e) => reasons.push(format!("{}: {e}", probe.name)),
            }
        }
    }
    Identification {
        tls: session,
        ..Identification::unknown(None, reasons.join("; "))
    }
}

async fn run(
    probe: &ServiceProbe,
    addr: SocketAddr,
    limits: Limits,
    tls: bool,
) -> Result<Option<Found>, WireError> {
    match probe.method {
        Method::Talk(talk) => {
            let mut conn = Conn::open_as(addr, limits, tls).await?;
            talk(&mut conn).await
        }
        Method::Tls => {
            Conn::open_tls(addr, limits).await?;
            Ok(Some(Found::new("ssl")))
        }
        Method::Banner(_) => Ok(None),
    }
}

/// The usual conversation: send one request, read until the reply is `complete`,
/// and `parse` it.
pub fn request_reply(
    conn: &mut Conn,
    request: Vec<u8>,
    complete: fn(&[u8]) -> bool,
    parse: fn(&[u8]) -> Option<Found>,
) -> Reply<'_> {
    Box::pin(async move { Ok(parse(conn.exchange(&request, complete).await?)) })
}

/// Split `product/version` or `product_version` (as in `nginx/1.22.1`).
pub(crate) fn product_version(token: &str, sep: char) -> (Option<String>, Option<String>) {
    match token.split_once(sep) {
        Some((p, v)) if !p.is_empty() => (Some(p.to_string()), Some(v.to_string()).filter(|v| !v.is_empty())),
        _ if !token.is_empty() => (Some(token.to_string()), None),
        _ => (None, None),
    }
}
