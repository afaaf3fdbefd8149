//! ICMP echo ("ping") for host liveness, over a raw socket (root or CAP_NET_RAW).
//!
//! One identifier per run, the target's index in the sequence field: a reply is ours
//! when its identifier matches and it comes from an address we pinged. Unanswered
//! targets get a second request after the first wait, so one lost packet does not
//! make a host look dead.

use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use crate::connect::Pacer;
use etherparse::{IcmpEchoHeader, Icmpv4Header, Icmpv4Slice, Icmpv4Type, IpNumber, Ipv4HeaderSlice};
use socket2::{Domain, Protocol, Socket, Type};

use crate::syn::SynError;

/// Result of pinging one host.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EchoResult {
    /// An echo reply came back after this long.
    Reply(Duration),
    /// Nothing came back.
    Silent,
}

/// Pings IPv4 hosts with ICMP echo requests.
#[derive(Debug)]
pub struct IcmpPinger {
    socket: Socket,
    pacer: Pacer,
    wait: Duration,
}

impl IcmpPinger {
    /// Open the raw ICMP socket.
    pub fn new(pacer: Pacer, wait: Duration) -> Result<Self, SynError> {
        let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).map_err(|e| {
            if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) {
                SynError::NoPrivilege(e)
            } else {
                SynError::Socket(e)
            }
        })?;
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .map_err(SynError::Socket)?;
        // Room for a burst of replies between two drains.
        let _ = nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RcvBufForce, &(8 << 20));
        Ok(Self { socket, pacer, wait })
    }

    /// Ping every IPv4 address in `targets` (two tries); blocking, so call it from
    /// a blocking thread. Returns a result per target.
    pub fn ping(&self, targets: &[Ipv4Addr]) -> HashMap<Ipv4Addr, EchoResult> {
        let id: u16 = rand::random();
        let index: HashMap<Ipv4Addr, usize> = targets.iter().enumerate().map(|(i, ip)| (*ip, i)).collect();
        let mut results: HashMap<Ipv4Addr, EchoResult> = HashMap::new();
        let mut sent_at = vec![Instant::now(); targets.len()];
        for _try in 0..2 {
            let pending: Vec<usize> = (0..targets.len())
                .filter(|&i| !results.contains_key(&targets[i]))
                .collect();
            if pending.is_empty() {
                break;
            }
            // While sending, take only what is already queued (a blocking read here
            // would cost a read timeout per request); block in the wait below.
            if let Err(e) = self.socket.set_nonblocking(true) {
                tracing::warn!(error = %e, "ICMP socket mode");
            }
            for &i in &pending {
                while !self.pacer.try_take() {
                    std::thread::sleep(Duration::from_micros(200));
                }
                let seq = (i % 65_536) as u16;
                let header = Icmpv4Header::with_checksum(
                    Icmpv4Type::EchoRequest(IcmpEchoHeader { id, seq }),
                    b"portwatch",
                );
                let mut packet = header.to_bytes().to_vec();
                packet.extend_from_slice(b"portwatch");
                let addr = SocketAddr::V4(SocketAddrV4::new(targets[i], 0));
                sent_at[i] = Instant::now();
                if let Err(e) = self.socket.send_to(&packet, &addr.into()) {
                    tracing::debug!(ip = %targets[i], error = %e, "echo request not sent");
                }
                self.drain(id, &index, &sent_at, &mut results, Instant::now());
            }
            if let Err(e) = self.socket.set_nonblocking(false) {
                tracing::warn!(error = %e, "ICMP socket mode");
            }
            self.drain(id, &index, &sent_at, &mut results, Instant::now() + self.wait);
        }
        for ip in targets {
            results.entry(*ip).or_insert(EchoResult::Silent);
        }
        results
    }

    /// Read replies until `until` or until every target has answered (at least one
    /// read attempt).
    fn drain(
        &self,
        id: u16,
        index: &HashMap<Ipv4Addr, usize>,
        sent_at: &[Instant],
        results: &mut HashMap<Ipv4Addr, EchoResult>,
        until: Instant,
    ) {
        let mut buf = [0u8; 1500];
        let mut sock = &self.socket;
        loop {
            match sock.read(&mut buf) {
                Ok(n) => {
                    if let Some(from) = echo_reply_from(&buf[..n], id) {
                        if let Some(&i) = index.get(&from) {
                            results
                                .entry(from)
                                .or_insert(EchoResult::Reply(sent_at[i].elapsed()));
                        }
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if Instant::now() >= until {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "ICMP receive failed");
                    return;
                }
            }
            if results.len() == index.len() {
                return;
            }
        }
    }
}

/// The sender of an echo reply with our identifier, if `packet` (IPv4 + ICMP) is one.
fn echo_reply_from(packet: &[u8], id: u16) -> Option<Ipv4Addr> {
    let ip = Ipv4HeaderSlice::from_slice(packet).ok()?;
    if ip.protocol() != IpNumber::ICMP {
        return None;
    }
    let icmp = Icmpv4Slice::from_slice(packet.get(usize::from(ip.ihl()) * 4..)?).ok()?;
    match icmp.icmp_type() {
        Icmpv4Type::EchoReply(echo) if echo.id == id => Some(ip.source_addr()),
        _ => None,
    }
}

/// IPv4 addresses among `ips`.
pub fn ipv4_only(ips: &[IpAddr]) -> Vec<Ipv4Addr> {
    ips.iter()
        .filter_map(|ip| match ip {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::Ipv4Header;

    fn reply(id: u16, kind: &str) -> Vec<u8> {
        let echo = IcmpEchoHeader { id, seq: 1 };
        let t = if kind == "reply" {
            Icmpv4Type::EchoReply(echo)
        } else {
            Icmpv4Type::EchoRequest(echo)
        };
        let icmp = Icmpv4Header::with_checksum(t, b"x");
        let mut ip = Ipv4Header::new(
            (icmp.header_len() + 1) as u16,
            64,
            IpNumber::ICMP,
            [10, 0, 0, 9],
            [10, 0, 0, 1],
        )
        .expect("ip");
        ip.header_checksum = ip.calc_header_checksum();
        let mut out = ip.to_bytes().to_vec();
        out.extend_from_slice(&icmp.to_bytes());
        out.push(b'x');
        out
    }

    #[test]
    fn only_our_echo_replies_count() {
        assert_eq!(
            echo_reply_from(&reply(7, "reply"), 7),
            Some(Ipv4Addr::new(10, 0, 0, 9))
        );
        assert_eq!(
            echo_reply_from(&reply(8, "reply"), 7),
            None,
            "another pinger's reply"
        );
        assert_eq!(
            echo_reply_from(&reply(7, "request"), 7),
            None,
            "a request, not a reply"
        );
        assert_eq!(echo_reply_from(&[1, 2, 3], 7), None);
    }
}
