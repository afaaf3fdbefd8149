//! HTTP/1.x (RFC 9112): `GET /`; the status line says it is HTTP, the `Server`
//! header often names the product and version. HTTP APIs of high-risk services
//! (Elasticsearch, CouchDB, ClickHouse, Docker, Kubernetes, etcd) are recognised from
//! the same answer, or from `GET /version` when the root does not say.

use super::{
    clickhouse, couchdb, docker, elasticsearch, etcd, kubernetes, product_version, Conn, Found, Reply,
    WireError,
};

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers in order (names as sent).
    pub headers: Vec<(String, String)>,
    /// Body, de-chunked, as far as received.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON, if it is.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

fn head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Parse a response (head and whatever of the body arrived).
pub fn parse_response(b: &[u8]) -> Option<Response> {
    let end = head_end(b)?;
    let head = String::from_utf8_lossy(&b[..end]);
    let mut lines = head.split("\r\n");
    let mut status = lines.next()?.split_whitespace();
    let proto = status.next()?;
    let code = status.next()?;
    if !proto.starts_with("HTTP/1.") || code.len() != 3 || !code.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let headers: Vec<(String, String)> = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut response = Response {
        status: code.parse().ok()?,
        headers,
        body: b[end..].to_vec(),
    };
    if response
        .header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        response.body = dechunk(&response.body);
    }
    Some(response)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = b.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&b[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok());
        let Some(size) = size.filter(|&s| s > 0) else {
            break;
        };
        let start = line_end + 2;
        let stop = (start + size).min(b.len());
        out.extend_from_slice(&b[start..stop]);
        b = b.get(stop + 2..).unwrap_or_default();
    }
    out
}

/// Whether a response is complete: head, and the body its length announces.
fn complete(b: &[u8]) -> bool {
    let Some(end) = head_end(b) else { return false };
    let head = String::from_utf8_lossy(&b[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match length {
        Some(n) => b.len() >= end + n,
        None if head.contains("transfer-encoding: chunked") => b.ends_with(b"0\r\n\r\n"),
        None => false, // read until the server closes (HTTP/1.0)
    }
}

/// `GET path` as HTTP/1.0.
pub fn request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.0\r\nHost: portwatch\r\nUser-Agent: portwatch\r\nAccept: */*\r\n\r\n")
        .into_bytes()
}

/// Fetch `path` on this connection.
pub async fn get(conn: &mut Conn, path: &str) -> Result<Option<Response>, WireError> {
    Ok(parse_response(conn.exchange(&request(path), complete).await?))
}

/// A service recognised by its HTTP API.
#[derive(Debug, Clone, Copy)]
pub struct Api {
    /// Path whose response tells (`/` is the answer already at hand).
    pub path: &'static str,
    /// Recogniser.
    pub recognise: fn(&Response) -> Option<Found>,
}

/// HTTP APIs of high-risk services.
pub static APIS: &[Api] = &[
    Api {
        path: "/",
        recognise: elasticsearch::recognise,
    },
    Api {
        path: "/",
        recognise: couchdb::recognise,
    },
    Api {
        path: "/",
        recognise: clickhouse::recognise_http,
    },
    Api {
        path: "/",
        recognise: docker::recognise,
    },
    Api {
        path: "/",
        recognise: kubernetes::recognise,
    },
    Api {
        path: "/version",
        recognise: etcd::recognise_version,
    },
    Api {
        path: "/version",
        recognise: docker::recognise_version,
    },
    Api {
        path: "/version",
        recognise: kubernetes::recognise_version,
    },
];

/// Answers in HTTP that say the port speaks something else: nginx and Apache on a
/// TLS port, ClickHouse's native port.
pub fn refuses_plain_http(r: &Response) -> bool {
    let text = r.text();
    r.status == 400
        && (text.contains("plain HTTP request was sent to HTTPS port")
            || text.contains("speaking plain HTTP to an SSL-enabled server port")
            || text.contains("requires TLS")
            || text.contains("is for clickhouse-client program"))
}

/// A plain web server's identity from its `Server` header (or, for Tomcat, which
/// sends none by default, from the version its error pages print).
pub fn server_product(r: &Response) -> Found {
    if r.header("server").is_none() {
        let text = r.text();
        if let Some(at) = text.find("Apache Tomcat/") {
            let version: String = text[at + 14..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
                .collect();
            return Found::new("http").product("Apache Tomcat").version(Some(version));
        }
    }
    let (product, version) = r
        .header("server")
        .and_then(|s| s.split_whitespace().next())
        .map_or((None, None), |token| product_version(token, '/'));
    let found = Found::new("http").version(version);
    match product {
        Some(p) => found.product(p),
        None => found,
    }
}

/// Parse a response head: whether it is HTTP, and the `Server` header.
pub fn parse(head: &[u8]) -> Option<Found> {
    parse_response(head).map(|r| server_product(&r))
}

/// The conversation.
pub fn talk(conn: &mut Conn) -> Reply<'_> {
    Box::pin(async move {
        let Some(root) = get(conn, "/").await? else {
            return Ok(None);
        };
        if refuses_plain_http(&root) {
            // A TLS or other port answering in HTTP that it is not HTTP: the TLS
            // probe (or the service's own) names it.
            return Ok(None);
        }
        for api in APIS.iter().filter(|a| a.path == "/") {
            if let Some(found) = (api.recognise)(&root) {
                return Ok(Some(refine(conn, found).await));
            }
        }
        // An API server often answers the root with 404 or an auth error in JSON.
        let api_like = matches!(root.status, 401 | 403 | 404) || root.body.first() == Some(&b'{');
        if api_like && conn.reconnect().await.is_ok() {
            if let Ok(Some(version)) = get(conn, "/version").await {
                for api in APIS.iter().filter(|a| a.path == "/version") {
                    if let Some(found) = (api.recognise)(&version) {
                        return Ok(Some(found));
                    }
                }
            }
        }
        Ok(Some(server_product(&root)))
    })
}

/// One more request where a recognised API tells its version elsewhere.
async fn refine(conn: &mut Conn, found: Found) -> Found {
    if found.service == "clickhouse" && found.version.is_none() && conn.reconnect().await.is_ok() {
        if let Ok(Some(r)) = get(conn, clickhouse::HTTP_VERSION_QUERY).await {
            return found.version(clickhouse::http_version(&r));
        }
    }
    found
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let f = parse(b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nContent-Type: text/html\r\n\r\n").unwrap();
        assert_eq!(
            (f.product.as_deref(), f.version.as_deref()),
            (Some("nginx"), Some("1.22.1"))
        );
        let f = parse(b"HTTP/1.0 404 Not Found\r\n\r\n").unwrap();
        assert_eq!((f.service, f.product), ("http", None));
        assert!(parse(b"+PONG\r\n").is_none());
        assert!(parse(b"HTTP/1.1 2000 x\r\n\r\n").is_none());
    }

    #[test]
    fn bodies() {
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"Wikipedia");
        assert!(complete(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
        assert!(!complete(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok"));
    }
}
