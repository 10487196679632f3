//! Packets built with etherparse: outer headers, tunnel header, inner packet.

use etherparse::PacketBuilder;

use super::*;
use crate::decode::Proto;

fn vxlan_header(vni: u32) -> Vec<u8> {
    let v = vni.to_be_bytes();
    vec![0x08, 0, 0, 0, v[1], v[2], v[3], 0]
}

fn geneve_header(vni: u32, protocol: u16, options: &[u8]) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let v = vni.to_be_bytes();
    let p = protocol.to_be_bytes();
    let mut h = vec![(options.len() / 4) as u8, 0, p[0], p[1], v[1], v[2], v[3], 0];
    h.extend_from_slice(options);
    h
}

/// Inner Ethernet + IPv4 + TCP SYN 10.1.0.1:1234 → 10.1.0.2:80.
fn inner_tcp4() -> Vec<u8> {
    let mut buf = Vec::new();
    PacketBuilder::ethernet2([0xa; 6], [0xb; 6])
        .ipv4([10, 1, 0, 1], [10, 1, 0, 2], 64)
        .tcp(1234, 80, 7, 1000)
        .syn()
        .write(&mut buf, b"")
        .unwrap();
    buf
}

/// Inner Ethernet + IPv6 + UDP [fd00::1]:5353 → [fd00::2]:53.
fn inner_udp6() -> Vec<u8> {
    let mut buf = Vec::new();
    let a: std::net::Ipv6Addr = "fd00::1".parse().unwrap();
    let b: std::net::Ipv6Addr = "fd00::2".parse().unwrap();
    PacketBuilder::ethernet2([0xa; 6], [0xb; 6])
        .ipv6(a.octets(), b.octets(), 64)
        .udp(5353, 53)
        .write(&mut buf, b"q")
        .unwrap();
    buf
}

/// Outer Ethernet + IPv4 + UDP to `dport`, carrying `payload`.
fn outer4(dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    PacketBuilder::ethernet2([1; 6], [2; 6])
        .ipv4([192, 168, 0, 1], [192, 168, 0, 2], 64)
        .udp(54321, dport)
        .write(&mut buf, payload)
        .unwrap();
    buf
}

/// Outer IPv6 + UDP to `dport` (captured from the network header).
fn outer6(dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    PacketBuilder::ipv6([0x20; 16], [0x30; 16], 64).udp(40000, dport).write(&mut buf, payload).unwrap();
    buf
}

#[test]
fn vxlan_over_ipv4_with_inner_tcp() {
    let inner = inner_tcp4();
    let pkt = outer4(VXLAN_PORT, &[vxlan_header(0x12_3456), inner.clone()].concat());
    let t = tunnel(Capture::Mac, &pkt).expect("a VXLAN packet");
    assert_eq!((t.kind, t.vni), (TunnelKind::Vxlan, 0x12_3456));
    let eth_at = 14 + 20 + 8 + 8;
    assert_eq!(t.inner_mac_offset, Some(eth_at));
    assert_eq!(t.inner_network_offset, Some(eth_at + 14));
    assert_eq!(&pkt[eth_at..], &inner[..]);
    assert_eq!(t.inner.saddr, Some("10.1.0.1".parse().unwrap()));
    assert_eq!(t.inner.daddr, Some("10.1.0.2".parse().unwrap()));
    assert_eq!((t.inner.sport, t.inner.dport, t.inner.proto), (1234, 80, Proto::Ip(6)));
    assert_eq!(t.inner.tcp_flags, 0x02, "SYN");
}

#[test]
fn vxlan_on_linux_port_over_ipv6_with_inner_ipv6() {
    let pkt = outer6(VXLAN_LINUX_PORT, &[vxlan_header(7), inner_udp6()].concat());
    let t = tunnel(Capture::Network, &pkt).expect("a VXLAN packet on 8472");
    assert_eq!((t.kind, t.vni), (TunnelKind::Vxlan, 7));
    assert_eq!(t.inner_mac_offset, Some(40 + 8 + 8));
    assert_eq!(t.inner_network_offset, Some(40 + 8 + 8 + 14));
    assert_eq!(t.inner.saddr, Some("fd00::1".parse().unwrap()));
    assert_eq!(t.inner.daddr, Some("fd00::2".parse().unwrap()));
    assert_eq!((t.inner.sport, t.inner.dport, t.inner.proto.name()), (5353, 53, Some("udp")));
}

#[test]
fn geneve_skips_its_options() {
    let options = [0x01, 0x02, 0x80, 0x01, 0xde, 0xad, 0xbe, 0xef];
    let pkt = outer4(GENEVE_PORT, &[geneve_header(0xabcdef, ETHERTYPE_TEB, &options), inner_tcp4()].concat());
    let t = tunnel(Capture::Mac, &pkt).expect("a Geneve packet");
    assert_eq!((t.kind, t.vni), (TunnelKind::Geneve, 0xabcdef));
    let eth_at = 14 + 20 + 8 + 8 + options.len();
    assert_eq!(t.inner_mac_offset, Some(eth_at));
    assert_eq!(t.inner_network_offset, Some(eth_at + 14));
    assert_eq!((t.inner.sport, t.inner.dport), (1234, 80));
}

#[test]
fn geneve_carrying_ip_directly() {
    let mut inner = Vec::new();
    PacketBuilder::ipv4([10, 2, 0, 1], [10, 2, 0, 2], 64).icmpv4_echo_request(1, 1).write(&mut inner, b"").unwrap();
    let pkt = outer6(GENEVE_PORT, &[geneve_header(1, ETHERTYPE_IPV4, &[]), inner].concat());
    let t = tunnel(Capture::Network, &pkt).expect("a Geneve packet");
    assert_eq!(t.inner_mac_offset, None);
    assert_eq!(t.inner_network_offset, Some(40 + 8 + 8));
    assert_eq!(t.inner.proto.name(), Some("icmp"));
    assert_eq!(t.inner.daddr, Some("10.2.0.2".parse().unwrap()));
}

#[test]
fn not_tunnels() {
    let inner = inner_tcp4();
    // VXLAN without the I flag, Geneve version 1, an unknown Geneve protocol,
    // the right ports as the source only, other ports, and TCP.
    let mut no_flag = vxlan_header(1);
    no_flag[0] = 0;
    let mut v1 = geneve_header(1, ETHERTYPE_TEB, &[]);
    v1[0] |= 0x40;
    let mut from_4789 = Vec::new();
    PacketBuilder::ipv4([1; 4], [2; 4], 64).udp(VXLAN_PORT, 999).write(&mut from_4789, &vxlan_header(1)).unwrap();
    let mut tcp = Vec::new();
    PacketBuilder::ipv4([1; 4], [2; 4], 64).tcp(1, VXLAN_PORT, 0, 0).write(&mut tcp, &vxlan_header(1)).unwrap();
    for (what, capture, pkt) in [
        ("no I flag", Capture::Mac, outer4(VXLAN_PORT, &[no_flag, inner.clone()].concat())),
        ("Geneve v1", Capture::Mac, outer4(GENEVE_PORT, &[v1, inner.clone()].concat())),
        ("Geneve ARP", Capture::Mac, outer4(GENEVE_PORT, &geneve_header(1, 0x0806, &[]))),
        ("DNS", Capture::Mac, outer4(53, &[vxlan_header(1), inner.clone()].concat())),
        ("source port 4789", Capture::Network, from_4789),
        ("TCP to 4789", Capture::Network, tcp),
        ("no capture", Capture::None, outer4(VXLAN_PORT, &[vxlan_header(1), inner].concat())),
    ] {
        assert_eq!(tunnel(capture, &pkt), None, "{what}");
    }
}

#[test]
fn truncated_packets() {
    let options = [0u8; 12];
    let pkt = outer4(GENEVE_PORT, &[geneve_header(5, ETHERTYPE_TEB, &options), inner_tcp4()].concat());
    let udp_payload_at = 14 + 20 + 8;
    let inner_eth_at = udp_payload_at + 8 + options.len();
    // Every cut: no panic; a tunnel once its header and options are whole.
    for cut in 0..=pkt.len() {
        let t = tunnel(Capture::Mac, &pkt[..cut]);
        assert_eq!(t.is_some(), cut >= inner_eth_at, "cut at {cut}");
        if let Some(t) = t {
            assert_eq!(t.vni, 5);
            // Addresses once the inner IPv4 header is whole; ports once TCP's are.
            let has_ip = cut >= inner_eth_at + 14 + 20;
            assert_eq!(t.inner.saddr.is_some(), has_ip, "cut at {cut}");
            assert_eq!(t.inner_network_offset.is_some(), has_ip, "cut at {cut}");
        }
    }
    // The same for VXLAN over IPv6.
    let pkt = outer6(VXLAN_PORT, &[vxlan_header(9), inner_udp6()].concat());
    for cut in 0..=pkt.len() {
        assert_eq!(tunnel(Capture::Network, &pkt[..cut]).is_some(), cut >= 40 + 8 + 8, "cut at {cut}");
    }
}
