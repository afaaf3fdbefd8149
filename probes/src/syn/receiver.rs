//! The receive thread: reads replies from a raw socket while the sender paces
//! probes, and hands every reply whose cookie matches to the passes.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::mpsc;

use crate::connect::ScanError;

use super::{Cookie, Reply};

pub(super) struct Receiver {
    pub(super) replies: mpsc::UnboundedReceiver<Reply>,
    pub(super) stop: Arc<AtomicBool>,
}

impl Receiver {
    /// Start the receive thread(s): one per address family in use.
    pub(super) fn start(cookie: Arc<Cookie>, ipv6: bool) -> Result<Self, ScanError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let families: &[Domain] = if ipv6 {
            &[Domain::IPV4, Domain::IPV6]
        } else {
            &[Domain::IPV4]
        };
        for &domain in families {
            let socket = Socket::new(domain, Type::RAW, Some(Protocol::TCP))
                .map_err(|e| ScanError::Setup(format!("raw receive socket: {e}")))?;
            // A large receive buffer absorbs bursts of replies while the thread is
            // not scheduled; FORCE lifts the rmem_max cap (we are privileged anyway).
            let _ =
                nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RcvBufForce, &(32 << 20));
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .map_err(|e| ScanError::Setup(format!("raw receive socket: {e}")))?;
            let (tx, flag, cookie) = (tx.clone(), stop.clone(), cookie.clone());
            std::thread::Builder::new()
                .name("syn-recv".into())
                .spawn(move || receive_loop(&socket, domain == Domain::IPV6, &cookie, (&tx, &flag)))
                .map_err(|e| ScanError::Setup(format!("receiver thread: {e}")))?;
        }
        Ok(Self { replies: rx, stop })
    }
}

/// Read replies until `stop`; IPv4 raw sockets deliver whole packets, IPv6 ones
/// the TCP segment alone, with the sender's address from `recvfrom`.
pub(super) fn receive_loop(
    socket: &Socket,
    ipv6: bool,
    cookie: &Cookie,
    (tx, stop): (&mpsc::UnboundedSender<Reply>, &AtomicBool),
) {
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; 2048];
    let mut sock = socket;
    while !stop.load(Ordering::Relaxed) {
        let received = if ipv6 {
            nix::sys::socket::recvfrom::<nix::sys::socket::SockaddrIn6>(socket.as_raw_fd(), &mut buf)
                .map(|(n, from)| from.map(|a| (n, IpAddr::V6(a.ip()))))
                .map_err(std::io::Error::from)
        } else {
            sock.read(&mut buf)
                .map(|n| Some((n, IpAddr::V4(Ipv4Addr::UNSPECIFIED))))
        };
        match received {
            Ok(Some((n, from))) => {
                let reply = if ipv6 {
                    cookie.check_tcp(from, &buf[..n])
                } else {
                    cookie.check(&buf[..n])
                };
                if let Some(reply) = reply {
                    if tx.send(reply).is_err() {
                        return;
                    }
                }
            }
            Ok(None) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::error!(error = %e, "SYN receiver failed");
                return;
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
