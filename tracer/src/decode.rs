//! Packet bytes → the tuple a person reads, with etherparse. The kernel only
//! copies bytes; everything about protocols happens here.

pub mod tunnel;

use std::net::IpAddr;

use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice};
use tracer_common::event::Capture;
pub use tunnel::{Tunnel, TunnelKind, tunnel};

/// Plain data, no allocation: decoding runs once per event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tuple {
    pub saddr: Option<IpAddr>,
    pub daddr: Option<IpAddr>,
    pub sport: u16,
    pub dport: u16,
    pub proto: Proto,
    /// TCP flag bits (FIN = 1 … CWR = 0x80), 0 otherwise.
    pub tcp_flags: u8,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Proto {
    #[default]
    None,
    Arp,
    Ip(u8),
}

impl Proto {
    pub fn is_none(self) -> bool {
        self == Self::None
    }
}

impl Proto {
    /// "tcp", "udp", "icmp", "icmp6", "arp", …; `None` for other protocol
    /// numbers and for no protocol.
    pub fn name(self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::Arp => Some("arp"),
            Self::Ip(6) => Some("tcp"),
            Self::Ip(17) => Some("udp"),
            Self::Ip(1) => Some("icmp"),
            Self::Ip(58) => Some("icmp6"),
            Self::Ip(132) => Some("sctp"),
            Self::Ip(47) => Some("gre"),
            Self::Ip(_) => None,
        }
    }
}

impl std::fmt::Display for Proto {
    /// The name, or the IP protocol number.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.name(), self) {
            (Some(name), _) => f.write_str(name),
            (None, Self::Ip(n)) => write!(f, "{n}"),
            (None, _) => Ok(()),
        }
    }
}

const TCP_FLAG_NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];

/// Appends `SYN|ACK` for the flag bits of [`Tuple::tcp_flags`]; nothing for none.
pub fn push_tcp_flag_names(out: &mut String, bits: u8) {
    for (i, name) in TCP_FLAG_NAMES.iter().enumerate().filter(|(i, _)| bits & (1 << i) != 0) {
        if bits & ((1 << i) - 1) != 0 {
            out.push('|');
        }
        out.push_str(name);
    }
}

pub fn tuple(capture: Capture, bytes: &[u8]) -> Tuple {
    sliced(capture, bytes).map_or_else(Tuple::default, |p| tuple_of(&p))
}

fn sliced(capture: Capture, bytes: &[u8]) -> Option<LaxSlicedPacket<'_>> {
    match capture {
        Capture::Mac => LaxSlicedPacket::from_ethernet(bytes).ok(),
        Capture::Network => LaxSlicedPacket::from_ip(bytes).ok(),
        Capture::None => None,
    }
}

fn tuple_of(p: &LaxSlicedPacket<'_>) -> Tuple {
    let mut t = Tuple::default();
    match &p.net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            let h = ip.header();
            t.saddr = Some(IpAddr::V4(h.source_addr()));
            t.daddr = Some(IpAddr::V4(h.destination_addr()));
            t.proto = Proto::Ip(h.protocol().0);
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let h = ip.header();
            t.saddr = Some(IpAddr::V6(h.source_addr()));
            t.daddr = Some(IpAddr::V6(h.destination_addr()));
            t.proto = Proto::Ip(ip.payload().ip_number.0);
        }
        Some(LaxNetSlice::Arp(_)) => t.proto = Proto::Arp,
        None => return t,
    }
    match &p.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            t.sport = tcp.source_port();
            t.dport = tcp.destination_port();
            t.tcp_flags = tcp_flags(tcp);
        }
        Some(TransportSlice::Udp(udp)) => {
            t.sport = udp.source_port();
            t.dport = udp.destination_port();
        }
        _ => {}
    }
    t
}

fn tcp_flags(tcp: &etherparse::TcpSlice<'_>) -> u8 {
    [tcp.fin(), tcp.syn(), tcp.rst(), tcp.psh(), tcp.ack(), tcp.urg(), tcp.ece(), tcp.cwr()]
        .iter()
        .enumerate()
        .fold(0, |bits, (i, on)| if *on { bits | 1 << i } else { bits })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    #[test]
    fn udp_over_ethernet() {
        let mut buf = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(40000, 4000)
            .write(&mut buf, b"hi")
            .unwrap();
        let t = tuple(Capture::Mac, &buf);
        assert_eq!(t.saddr, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(t.daddr, Some("10.0.0.2".parse().unwrap()));
        assert_eq!((t.sport, t.dport, t.proto.to_string().as_str()), (40000, 4000, "udp"));
    }

    #[test]
    fn tcp_syn_over_raw_ipv6() {
        let mut buf = Vec::new();
        PacketBuilder::ipv6([0xfd; 16], [0xfe; 16], 64).tcp(1234, 80, 1, 1000).syn().write(&mut buf, &[]).unwrap();
        let t = tuple(Capture::Network, &buf);
        assert_eq!((t.sport, t.dport, t.proto.to_string().as_str()), (1234, 80, "tcp"));
        let mut names = String::new();
        push_tcp_flag_names(&mut names, t.tcp_flags);
        assert_eq!(names, "SYN");
        names.clear();
        push_tcp_flag_names(&mut names, 0x12);
        assert_eq!(names, "SYN|ACK");
    }

    #[test]
    fn truncated_packet_keeps_addresses() {
        let mut buf = Vec::new();
        PacketBuilder::ipv4([1, 2, 3, 4], [5, 6, 7, 8], 64).udp(1, 2).write(&mut buf, &[0; 100]).unwrap();
        let t = tuple(Capture::Network, &buf[..22]);
        assert_eq!(t.saddr, Some("1.2.3.4".parse().unwrap()));
    }
}
