//! `--filter-tunnel-pcap-l2` and `--filter-tunnel-pcap-l3`: pcap expressions
//! on the packet *inside* a VXLAN or Geneve tunnel (pwru's flags). They run in
//! user space, on the bytes the kernel copied, after the in-kernel filters:
//! the inner headers sit at an offset only known once the outer ones are
//! parsed, and the copy (`--snaplen`, 128 bytes by default) reaches them.
//! `len`, `greater` and `less` test the inner bytes copied, not the inner
//! packet's whole length. Packets without a tunnel do not match.

use pcap::{BpfProgram, Capture, Linktype};
use tracer_common::event::Capture as CaptureKind;

use super::FilterError;
use crate::decode;

/// The compiled inner filters; both must match when both are given.
pub struct TunnelFilter {
    /// On the inner Ethernet frame.
    l2: Option<BpfProgram>,
    /// On the inner IP packet.
    l3: Option<BpfProgram>,
}

impl TunnelFilter {
    /// `None` when neither expression is given.
    pub fn compile(l2: Option<&str>, l3: Option<&str>) -> Result<Option<Self>, FilterError> {
        if l2.is_none() && l3.is_none() {
            return Ok(None);
        }
        let compile = |expr: &str, dlt: Linktype| -> Result<BpfProgram, FilterError> {
            let message = |e: pcap::Error| FilterError::Invalid(e.to_string());
            Capture::dead(dlt).map_err(message)?.compile(expr, true).map_err(message)
        };
        Ok(Some(Self {
            l2: l2.map(|e| compile(e, Linktype::ETHERNET)).transpose()?,
            // DLT_RAW as libpcap spells it on Linux (see filter/pcap.rs).
            l3: l3.map(|e| compile(e, Linktype(12))).transpose()?,
        }))
    }

    /// Whether the packet carries a tunnel whose inner packet matches.
    pub fn accepts(&self, capture: CaptureKind, bytes: &[u8]) -> bool {
        let Some(tunnel) = decode::tunnel::tunnel(capture, bytes) else { return false };
        let inner = |offset: Option<usize>, program: &BpfProgram| {
            offset.and_then(|o| bytes.get(o..)).is_some_and(|inner| program.filter(inner))
        };
        self.l2.as_ref().is_none_or(|p| inner(tunnel.inner_mac_offset, p))
            && self.l3.as_ref().is_none_or(|p| inner(tunnel.inner_network_offset, p))
    }
}

#[cfg(test)]
mod tests {
    use etherparse::PacketBuilder;

    use super::*;

    /// A VXLAN packet whose inner frame carries UDP to `dport`.
    fn vxlan(dport: u16) -> Vec<u8> {
        let mut inner = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([192, 168, 0, 1], [192, 168, 0, 2], 64)
            .udp(1000, dport)
            .write(&mut inner, b"inner")
            .unwrap();
        let mut payload = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
        payload.extend_from_slice(&inner);
        let mut outer = Vec::new();
        PacketBuilder::ethernet2([3; 6], [4; 6])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(40000, 4789)
            .write(&mut outer, &payload)
            .unwrap();
        outer
    }

    #[test]
    fn inner_headers_are_filtered() {
        let f = TunnelFilter::compile(Some("udp dst port 53"), Some("host 192.168.0.2")).unwrap().unwrap();
        assert!(f.accepts(CaptureKind::Mac, &vxlan(53)));
        assert!(!f.accepts(CaptureKind::Mac, &vxlan(54)));
        // The outer headers do not count.
        let outer_only = TunnelFilter::compile(None, Some("host 10.0.0.2")).unwrap().unwrap();
        assert!(!outer_only.accepts(CaptureKind::Mac, &vxlan(53)));
    }

    #[test]
    fn packets_without_a_tunnel_do_not_match() {
        let f = TunnelFilter::compile(None, Some("udp")).unwrap().unwrap();
        let mut plain = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([1, 1, 1, 1], [2, 2, 2, 2], 64)
            .udp(1, 2)
            .write(&mut plain, b"x")
            .unwrap();
        assert!(!f.accepts(CaptureKind::Mac, &plain));
        assert!(TunnelFilter::compile(None, None).unwrap().is_none());
        assert!(TunnelFilter::compile(Some("not an expression ("), None).is_err());
    }
}
