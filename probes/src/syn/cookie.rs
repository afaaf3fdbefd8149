//! Probe packets and their answers: the keyed hash (the cookie) that makes a probe's
//! sequence number, the SYN and ACK probes built from it, and the parsing of
//! replies, which are matched to probes by that cookie alone.

use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr};

use etherparse::{IpNumber, Ipv4Header, Ipv4HeaderSlice, TcpHeader, TcpHeaderSlice, TcpOptionElement};

use super::ProbeKind;

/// A reply the receiver matched to one of our probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) ip: IpAddr,
    pub(crate) port: u16,
    pub(crate) open: bool,
    /// A SYN-ACK with window 0 or no TCP options: real stacks never send one, SYN
    /// floods' "protection" and some tarpits do. Not trusted as open.
    pub(crate) forged: bool,
}

/// Keyed hash of (target, port, source port): the probe's sequence number (SYN) or
/// acknowledgement number (ACK), which the target's answer echoes back.
#[derive(Debug, Clone)]
pub(crate) struct Cookie {
    key: std::collections::hash_map::RandomState,
    source_port: u16,
    kind: ProbeKind,
}

impl Cookie {
    #[cfg(test)]
    pub(crate) fn new(source_port: u16) -> Self {
        Self::of_kind(source_port, ProbeKind::Syn)
    }

    pub(crate) fn of_kind(source_port: u16, kind: ProbeKind) -> Self {
        Self {
            key: std::collections::hash_map::RandomState::new(),
            source_port,
            kind,
        }
    }

    pub(crate) fn seq(&self, ip: impl Into<IpAddr>, port: u16) -> u32 {
        match ip.into() {
            IpAddr::V4(v4) => self.key.hash_one((v4.octets(), port, self.source_port)) as u32,
            IpAddr::V6(v6) => self.key.hash_one((v6.octets(), port, self.source_port)) as u32,
        }
    }

    /// Match a raw IPv4 packet (IP header included) against our probes.
    pub(crate) fn check(&self, packet: &[u8]) -> Option<Reply> {
        let ip = Ipv4HeaderSlice::from_slice(packet).ok()?;
        if ip.protocol() != IpNumber::TCP {
            return None;
        }
        self.check_tcp(
            IpAddr::V4(ip.source_addr()),
            packet.get(usize::from(ip.ihl()) * 4..)?,
        )
    }

    /// Match a TCP segment from `src` against our probes (IPv6 raw sockets deliver
    /// the segment alone; the address comes from `recvfrom`).
    pub(crate) fn check_tcp(&self, src: IpAddr, segment: &[u8]) -> Option<Reply> {
        let tcp = TcpHeaderSlice::from_slice(segment).ok()?;
        if tcp.destination_port() != self.source_port {
            return None;
        }
        let port = tcp.source_port();
        if self.kind == ProbeKind::Ack {
            // RFC 9293: the reset answering an unacceptable ACK carries SEQ = SEG.ACK.
            let ours = tcp.rst() && tcp.sequence_number() == self.seq(src, port);
            return ours.then_some(Reply {
                ip: src,
                port,
                open: false,
                forged: false,
            });
        }
        if tcp.acknowledgment_number() != self.seq(src, port).wrapping_add(1) {
            return None;
        }
        if tcp.syn() && tcp.ack() {
            let forged = tcp.window_size() == 0 || tcp.options().is_empty();
            Some(Reply {
                ip: src,
                port,
                open: true,
                forged,
            })
        } else if tcp.rst() {
            Some(Reply {
                ip: src,
                port,
                open: false,
                forged: false,
            })
        } else {
            None
        }
    }

    fn syn_header(&self, dst: IpAddr, port: u16) -> TcpHeader {
        if self.kind == ProbeKind::Ack {
            let mut tcp = TcpHeader::new(self.source_port, port, self.seq(dst, port) ^ 0x9e37_79b9, 1024);
            tcp.ack = true;
            tcp.acknowledgment_number = self.seq(dst, port);
            return tcp;
        }
        let mut tcp = TcpHeader::new(self.source_port, port, self.seq(dst, port), 64240);
        tcp.syn = true;
        // Real stacks send options with a SYN; some firewalls drop option-less ones.
        let _ = tcp.set_options(&[TcpOptionElement::MaximumSegmentSize(1460)]);
        tcp
    }

    /// Build the SYN probe for (src → dst:port) into `buf`: a whole IPv4 packet, or
    /// for IPv6 the TCP segment alone (the kernel adds the IPv6 header, but not the
    /// TCP checksum, which covers the addresses). Returns its length.
    pub(crate) fn probe_to(&self, src: IpAddr, dst: IpAddr, port: u16, buf: &mut Vec<u8>) -> usize {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => self.probe(s, d, port, buf),
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut tcp = self.syn_header(dst, port);
                tcp.checksum = tcp
                    .calc_checksum_ipv6_raw(s.octets(), d.octets(), &[])
                    .unwrap_or(0);
                buf.clear();
                buf.extend_from_slice(&tcp.to_bytes());
                buf.len()
            }
            _ => {
                buf.clear();
                0
            }
        }
    }

    /// Build the IPv4 SYN probe for (src → dst:port) into `buf`; returns its length.
    pub(crate) fn probe(&self, src: Ipv4Addr, dst: Ipv4Addr, port: u16, buf: &mut Vec<u8>) -> usize {
        let mut tcp = self.syn_header(IpAddr::V4(dst), port);
        tcp.checksum = tcp
            .calc_checksum_ipv4_raw(src.octets(), dst.octets(), &[])
            .unwrap_or(0);
        buf.clear();
        if let Ok(mut ip) = Ipv4Header::new(
            tcp.header_len_u16(),
            64,
            IpNumber::TCP,
            src.octets(),
            dst.octets(),
        ) {
            ip.identification = (tcp.sequence_number >> 16) as u16;
            ip.header_checksum = ip.calc_header_checksum();
            buf.extend_from_slice(&ip.to_bytes());
            buf.extend_from_slice(&tcp.to_bytes());
        }
        buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply as a target would send it to `probe`, with the given flags and an
    /// acknowledgement number offset from the correct `seq + 1`.
    fn reply_to(probe: &[u8], syn: bool, rst: bool, ack_offset: u32) -> Vec<u8> {
        reply_with(probe, (syn, rst), ack_offset, (1024, true))
    }

    /// Like `reply_to`, with a chosen window and with or without an MSS option.
    fn reply_with(
        probe: &[u8],
        (syn, rst): (bool, bool),
        ack_offset: u32,
        (window, mss): (u16, bool),
    ) -> Vec<u8> {
        let ip = Ipv4HeaderSlice::from_slice(probe).expect("ip");
        let tcp = TcpHeaderSlice::from_slice(&probe[usize::from(ip.ihl()) * 4..]).expect("tcp");
        let mut reply = TcpHeader::new(tcp.destination_port(), tcp.source_port(), 12345, window);
        if mss {
            reply
                .set_options(&[TcpOptionElement::MaximumSegmentSize(1460)])
                .expect("options");
        }
        reply.syn = syn;
        reply.rst = rst;
        reply.ack = true;
        reply.acknowledgment_number = tcp.sequence_number().wrapping_add(1).wrapping_add(ack_offset);
        let (src, dst) = (ip.destination(), ip.source());
        reply.checksum = reply.calc_checksum_ipv4_raw(src, dst, &[]).expect("checksum");
        let mut header = Ipv4Header::new(reply.header_len_u16(), 64, IpNumber::TCP, src, dst).expect("ip");
        header.header_checksum = header.calc_header_checksum();
        let mut out = header.to_bytes().to_vec();
        out.extend_from_slice(&reply.to_bytes());
        out
    }

    fn probe(cookie: &Cookie, port: u16) -> Vec<u8> {
        let mut buf = Vec::new();
        cookie.probe(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 9),
            port,
            &mut buf,
        );
        buf
    }

    #[test]
    fn probe_is_a_valid_syn_with_mss_and_checksums() {
        let cookie = Cookie::new(61_234);
        let packet = probe(&cookie, 6379);
        let ip = Ipv4HeaderSlice::from_slice(&packet).expect("ip");
        assert_eq!(ip.to_header().calc_header_checksum(), ip.header_checksum());
        let tcp = TcpHeaderSlice::from_slice(&packet[20..]).expect("tcp");
        assert!(tcp.syn() && !tcp.ack() && !tcp.rst());
        assert_eq!((tcp.source_port(), tcp.destination_port()), (61_234, 6379));
        assert_eq!(
            tcp.sequence_number(),
            cookie.seq(Ipv4Addr::new(10, 0, 0, 9), 6379)
        );
        assert_eq!(
            tcp.to_header()
                .calc_checksum_ipv4_raw(ip.source(), ip.destination(), &[])
                .expect("sum"),
            tcp.checksum()
        );
        assert!(tcp.options().len() >= 4, "MSS option present");
    }

    #[test]
    fn syn_ack_is_open_and_rst_is_closed() {
        let cookie = Cookie::new(61_234);
        let packet = probe(&cookie, 22);
        let target = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
        assert_eq!(
            cookie.check(&reply_to(&packet, true, false, 0)),
            Some(Reply {
                ip: target,
                port: 22,
                open: true,
                forged: false
            })
        );
        assert_eq!(
            cookie.check(&reply_to(&packet, false, true, 0)),
            Some(Reply {
                ip: target,
                port: 22,
                open: false,
                forged: false
            })
        );
    }

    #[test]
    fn syn_acks_no_real_stack_sends_are_flagged_forged() {
        let cookie = Cookie::new(61_234);
        let packet = probe(&cookie, 22);
        let no_options = cookie
            .check(&reply_with(&packet, (true, false), 0, (1024, false)))
            .expect("reply");
        assert!(no_options.open && no_options.forged);
        let zero_window = cookie
            .check(&reply_with(&packet, (true, false), 0, (0, true)))
            .expect("reply");
        assert!(zero_window.open && zero_window.forged);
    }

    #[test]
    fn forged_or_foreign_replies_are_ignored() {
        let cookie = Cookie::new(61_234);
        let packet = probe(&cookie, 22);
        // Wrong acknowledgement number: not an answer to our probe.
        assert_eq!(cookie.check(&reply_to(&packet, true, false, 1)), None);
        // Another scanner (other key) probing the same target and port.
        let other = Cookie::new(61_234);
        assert_eq!(other.check(&reply_to(&packet, true, false, 0)), None);
        // Our own outgoing probe seen on the wire.
        assert_eq!(cookie.check(&packet), None);
        // Truncated garbage.
        assert_eq!(cookie.check(&packet[..10]), None);
        assert_eq!(cookie.check(&[]), None);
    }

    #[test]
    fn ipv6_probe_checksum_and_reply_matching() {
        let cookie = Cookie::new(61_234);
        let (src, dst): (IpAddr, IpAddr) =
            ("fd77:ff::1".parse().expect("ip"), "fd77::11".parse().expect("ip"));
        let mut buf = Vec::new();
        let len = cookie.probe_to(src, dst, 443, &mut buf);
        let tcp = TcpHeaderSlice::from_slice(&buf[..len]).expect("tcp");
        let (IpAddr::V6(s6), IpAddr::V6(d6)) = (src, dst) else {
            unreachable!()
        };
        assert!(tcp.syn() && tcp.destination_port() == 443);
        assert_eq!(
            tcp.to_header()
                .calc_checksum_ipv6_raw(s6.octets(), d6.octets(), &[])
                .expect("sum"),
            tcp.checksum()
        );
        // The target's SYN-ACK, as an IPv6 raw socket delivers it: the segment alone.
        let mut reply = TcpHeader::new(443, 61_234, 99, 65_000);
        reply.syn = true;
        reply.ack = true;
        reply.acknowledgment_number = tcp.sequence_number().wrapping_add(1);
        reply
            .set_options(&[TcpOptionElement::MaximumSegmentSize(1440)])
            .expect("options");
        let got = cookie.check_tcp(dst, &reply.to_bytes()).expect("ours");
        assert_eq!((got.ip, got.port, got.open, got.forged), (dst, 443, true, false));
        // The same segment claimed by another address is not ours.
        assert!(cookie
            .check_tcp("fd77::12".parse().expect("ip"), &reply.to_bytes())
            .is_none());
    }

    #[test]
    fn ack_probes_are_matched_by_the_reset_sequence_number() {
        let cookie = Cookie::of_kind(61_234, ProbeKind::Ack);
        let packet = probe(&cookie, 80);
        let tcp = TcpHeaderSlice::from_slice(&packet[20..]).expect("tcp");
        assert!(tcp.ack() && !tcp.syn() && !tcp.rst());
        let target = Ipv4Addr::new(10, 0, 0, 9);
        assert_eq!(tcp.acknowledgment_number(), cookie.seq(target, 80));
        let mut rst = TcpHeader::new(80, 61_234, tcp.acknowledgment_number(), 0);
        rst.rst = true;
        let got = cookie
            .check_tcp(IpAddr::V4(target), &rst.to_bytes())
            .expect("ours");
        assert!(!got.open && got.port == 80);
        rst.sequence_number = rst.sequence_number.wrapping_add(1);
        assert!(cookie.check_tcp(IpAddr::V4(target), &rst.to_bytes()).is_none());
    }

    #[test]
    fn cookies_differ_per_port_and_target() {
        let cookie = Cookie::new(61_234);
        let a = cookie.seq(Ipv4Addr::new(10, 0, 0, 9), 22);
        assert_ne!(a, cookie.seq(Ipv4Addr::new(10, 0, 0, 9), 23));
        assert_ne!(a, cookie.seq(Ipv4Addr::new(10, 0, 0, 8), 22));
        assert_eq!(a, cookie.seq(Ipv4Addr::new(10, 0, 0, 9), 22));
    }
}
