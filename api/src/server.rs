//! Serving the router so that nobody can starve it, or the scanner beside it.
//!
//! `axum::serve` would keep a connection open for as long as its client likes to
//! send half a request, and accept as many as arrive: 1,100 of them once took every
//! file descriptor of `portwatch up`, and with them the scanner's raw sockets. Here:
//!
//! - at most `max_connections` connections are served at once; beyond that the
//!   listener waits (new connections queue in the kernel, costing no descriptor of
//!   ours), so the API's share of descriptors is fixed and the rest stay the
//!   scanner's;
//! - one client address holds at most `per_client` of them: a further connection
//!   from it is closed at once, so one address cannot take the others' places;
//! - a request's head must arrive within `header_timeout` (also the TLS handshake),
//!   and a request (body included) is answered within `request_timeout`, or 408/503.
//!
//! With `tls` the same loop speaks HTTPS (rustls).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

/// How the server protects itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest wait for a request's head (and a TLS handshake).
    pub header_timeout: Duration,
    /// Longest time to answer a request, its body included.
    pub request_timeout: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
    /// Most connections one client address holds at once.
    pub per_client: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 256,
            per_client: 32,
        }
    }
}

/// Connections held per client address; an entry leaves with its last connection.
#[derive(Debug, Default)]
struct PerClient(Mutex<HashMap<IpAddr, usize>>);

impl PerClient {
    fn enter(&self, ip: IpAddr, limit: usize) -> bool {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(ip).or_insert(0);
        if *n >= limit {
            return false;
        }
        *n += 1;
        true
    }

    fn leave(&self, ip: IpAddr) {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                held.remove(&ip);
            }
        }
    }
}

/// Leaves the client's count when the connection ends, however it ends.
struct Held {
    clients: Arc<PerClient>,
    ip: IpAddr,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.clients.leave(self.ip);
    }
}

/// `router` with every request bounded by `timeout`: a slow body, or a slow
/// handler, is answered 408 and the connection's place freed.
pub fn with_request_timeout(router: Router, timeout: Duration) -> Router {
    router.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| async move {
            match tokio::time::timeout(timeout, next.run(req)).await {
                Ok(response) => response,
                Err(_) => {
                    metrics::counter!("portwatch_api_timeouts_total").increment(1);
                    axum::response::IntoResponse::into_response((
                        axum::http::StatusCode::REQUEST_TIMEOUT,
                        axum::Json(crate::ErrorBody {
                            error: format!(
                                "the request took longer than {timeout:?} ([api] request_timeout)"
                            ),
                        }),
                    ))
                }
            }
        },
    ))
}

/// Serve `router` on `listener` within `limits` until `stop`, over TLS with `tls`.
/// In-flight requests get a few seconds to finish at the stop.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let router = with_request_timeout(router, limits.request_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let clients = Arc::new(PerClient::default());
    loop {
        // A place first: without one, connections wait in the kernel's queue.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = stopped(&mut stop) => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors (or a connection reset before accept):
                    // wait a moment rather than spin.
                    tracing::warn!(error = %e, "accept failed; pausing");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        if !clients.enter(peer.ip(), limits.per_client) {
            metrics::counter!("portwatch_api_connections_refused_total").increment(1);
            tracing::debug!(client = %peer.ip(), "connection refused: the client holds its share");
            drop(stream);
            continue;
        }
        let held = Held {
            clients: clients.clone(),
            ip: peer.ip(),
        };
        let router = router.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let _held = held;
            let _ = stream.set_nodelay(true);
            match tls {
                None => connection(TokioIo::new(stream), router, peer, header_timeout, stop).await,
                Some(acceptor) => match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        connection(TokioIo::new(stream), router, peer, header_timeout, stop).await
                    }
                    Ok(Err(e)) => tracing::debug!(client = %peer.ip(), error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(client = %peer.ip(), "TLS handshake too slow"),
                },
            }
        });
    }
    // Let the requests in flight finish (each connection closes after its answer).
    let all = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(Duration::from_secs(5), slots.acquire_many(all)).await;
    Ok(())
}

/// Until `stop` is set (the guard `wait_for` gives is not `Send`: dropped here).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

/// One connection: HTTP/1.1 with the head's deadline; closed gracefully at the stop.
async fn connection<I>(
    io: TokioIo<I>,
    router: Router,
    peer: SocketAddr,
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(req)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let stopping = async move { stopped(&mut stop).await };
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(client = %peer.ip(), error = %e, "connection ended");
            }
            return;
        }
        () = stopping => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
}

/// A TLS acceptor for the PEM certificate chain `cert` and private key `key`.
pub fn tls_acceptor(cert: &[u8], key: &[u8]) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls_cert: {e}"))?;
    if certs.is_empty() {
        return Err("tls_cert: no certificate in the file".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("tls_key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls_cert/tls_key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_holds_at_most_its_share_and_gives_it_back() {
        let clients = PerClient::default();
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let other: IpAddr = "192.0.2.2".parse().expect("ip");
        assert!(clients.enter(ip, 2) && clients.enter(ip, 2));
        assert!(!clients.enter(ip, 2), "a third");
        assert!(clients.enter(other, 2), "another address is not affected");
        clients.leave(ip);
        assert!(clients.enter(ip, 2), "a place freed");
        clients.leave(ip);
        clients.leave(ip);
        clients.leave(other);
        assert!(clients.0.lock().expect("lock").is_empty(), "no entry left behind");
    }
}
