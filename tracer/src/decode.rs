//! Packet bytes → the tuple a person reads, with etherparse. The kernel only
//! copies bytes; everything about protocols happens here.

use std::net::IpAddr;

use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice};
use tracer_common::event::Capture;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tuple {
    pub saddr: Option<IpAddr>,
    pub daddr: Option<IpAddr>,
    pub sport: u16,
    pub dport: u16,
    /// "tcp", "udp", "icmp", "icmp6", "arp", or the IP protocol number.
    pub proto: String,
    /// TCP flags like "SYN|ACK", empty otherwise.
    pub tcp_flags: String,
}

pub fn tuple(capture: Capture, bytes: &[u8]) -> Tuple {
    let sliced = match capture {
        Capture::Mac => LaxSlicedPacket::from_ethernet(bytes).ok(),
        Capture::Network => LaxSlicedPacket::from_ip(bytes).ok(),
        Capture::None => None,
    };
    let Some(p) = sliced else { return Tuple::default() };
    let mut t = Tuple::default();
    match &p.net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            let h = ip.header();
            t.saddr = Some(IpAddr::V4(h.source_addr()));
            t.daddr = Some(IpAddr::V4(h.destination_addr()));
            t.proto = ip_proto_name(h.protocol().0);
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let h = ip.header();
            t.saddr = Some(IpAddr::V6(h.source_addr()));
            t.daddr = Some(IpAddr::V6(h.destination_addr()));
            t.proto = ip_proto_name(ip.payload().ip_number.0);
        }
        Some(LaxNetSlice::Arp(_)) => t.proto = "arp".into(),
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

fn ip_proto_name(n: u8) -> String {
    match n {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        58 => "icmp6".into(),
        132 => "sctp".into(),
        47 => "gre".into(),
        other => other.to_string(),
    }
}

fn tcp_flags(tcp: &etherparse::TcpSlice<'_>) -> String {
    let names = [
        (tcp.fin(), "FIN"),
        (tcp.syn(), "SYN"),
        (tcp.rst(), "RST"),
        (tcp.psh(), "PSH"),
        (tcp.ack(), "ACK"),
        (tcp.urg(), "URG"),
        (tcp.ece(), "ECE"),
        (tcp.cwr(), "CWR"),
    ];
    let set: Vec<&str> = names.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect();
    set.join("|")
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
        assert_eq!((t.sport, t.dport, t.proto.as_str()), (40000, 4000, "udp"));
    }

    #[test]
    fn tcp_syn_over_raw_ipv6() {
        let mut buf = Vec::new();
        PacketBuilder::ipv6([0xfd; 16], [0xfe; 16], 64)
            .tcp(1234, 80, 1, 1000)
            .syn()
            .write(&mut buf, &[])
            .unwrap();
        let t = tuple(Capture::Network, &buf);
        assert_eq!((t.sport, t.dport, t.proto.as_str(), t.tcp_flags.as_str()), (1234, 80, "tcp", "SYN"));
    }

    #[test]
    fn truncated_packet_keeps_addresses() {
        let mut buf = Vec::new();
        PacketBuilder::ipv4([1, 2, 3, 4], [5, 6, 7, 8], 64).udp(1, 2).write(&mut buf, &[0; 100]).unwrap();
        let t = tuple(Capture::Network, &buf[..22]);
        assert_eq!(t.saddr, Some("1.2.3.4".parse().unwrap()));
    }
}
