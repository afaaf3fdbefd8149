//! HTTP/1.x (RFC 9112): `GET /`; the status line says it is HTTP, the `Server`
//! header often names the product and version. HTTP APIs of high-risk services
//! (Elasticsearch, CouchDB, ClickHouse, Docker, Kubernetes, etcd) are recognised from
//! the same answer, or from `GET /version` when the root does not say.

mod clickhouse;
mod couchdb;
mod docker;
mod elasticsearch;
mod etcd;
mod kubernetes;
mod response;

use response::complete;
pub use response::{parse_response, Response};

use super::{product_version, Conn, Found, Reply, WireError};

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
}
