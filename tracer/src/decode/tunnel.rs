//! VXLAN and Geneve: the tunnel id and the inner packet's tuple, from the
//! bytes of the outer packet (for `--output-tunnel`).
//!
//! pwru reads the inner headers where the kernel says they are
//! (`skb->inner_network_header`, set by the tunnel drivers on transmit and
//! unset on most receive paths) and prints no tunnel id. This finds the
//! encapsulation in the packet bytes themselves, so it works on both
//! directions and on any function, as far as the copied bytes reach:
//! - VXLAN (RFC 7348): UDP to port 4789 (IANA) or 8472 (Linux's default,
//!   also Flannel's and Cilium's), 8-byte header with the I flag set;
//! - Geneve (RFC 8926): UDP to port 6081, version 0, then options of
//!   4 × `Opt Len` bytes; the inner packet is Ethernet (protocol 0x6558) or
//!   IPv4/IPv6 directly (0x0800/0x86dd).
//!
//! Ports are matched on the destination only: the source port is a flow hash.
//! A packet cut short inside the tunnel header is not a tunnel; one cut inside
//! the inner packet is, with as much of the inner tuple as the bytes hold.

use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice};
use tracer_common::event::Capture;

use super::{Tuple, sliced, tuple_of};

pub const VXLAN_PORT: u16 = 4789;
pub const VXLAN_LINUX_PORT: u16 = 8472;
pub const GENEVE_PORT: u16 = 6081;

const VXLAN_HDR_LEN: usize = 8;
const VXLAN_FLAG_VNI: u8 = 0x08;
const GENEVE_HDR_LEN: usize = 8;
const ETHERTYPE_TEB: u16 = 0x6558;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunnelKind {
    Vxlan,
    Geneve,
}

impl TunnelKind {
    /// "vxlan" or "geneve".
    pub fn name(self) -> &'static str {
        match self {
            Self::Vxlan => "vxlan",
            Self::Geneve => "geneve",
        }
    }
}

/// An encapsulated packet found inside the captured bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tunnel {
    pub kind: TunnelKind,
    /// VXLAN Network Identifier, or Geneve's Virtual Network Identifier (24 bits).
    pub vni: u32,
    /// Offset in the captured bytes of the inner Ethernet header; `None` when
    /// Geneve carries IP directly.
    pub inner_mac_offset: Option<usize>,
    /// Offset in the captured bytes of the inner IPv4/IPv6 header (after any
    /// inner VLAN tags), when the bytes reach it.
    pub inner_network_offset: Option<usize>,
    /// The inner packet's tuple (empty fields where the bytes stop short).
    pub inner: Tuple,
}

/// The VXLAN or Geneve tunnel in `bytes` (captured as `capture` says, as
/// for [`tuple`](super::tuple)), if the outer packet is one.
pub fn tunnel(capture: Capture, bytes: &[u8]) -> Option<Tunnel> {
    let outer = sliced(capture, bytes)?;
    let Some(TransportSlice::Udp(udp)) = &outer.transport else { return None };
    let payload = udp.payload();
    let payload_at = offset_in(bytes, payload)?;
    let (kind, vni, inner_at, inner_is_ethernet) = match udp.destination_port() {
        VXLAN_PORT | VXLAN_LINUX_PORT => {
            let h = payload.get(..VXLAN_HDR_LEN)?;
            if h[0] & VXLAN_FLAG_VNI == 0 {
                return None;
            }
            (TunnelKind::Vxlan, vni_at(&h[4..7]), VXLAN_HDR_LEN, true)
        }
        GENEVE_PORT => {
            let h = payload.get(..GENEVE_HDR_LEN)?;
            if h[0] >> 6 != 0 {
                return None;
            }
            let options = usize::from(h[0] & 0x3f) * 4;
            let is_ethernet = match u16::from_be_bytes([h[2], h[3]]) {
                ETHERTYPE_TEB => true,
                ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => false,
                _ => return None,
            };
            // The options must be there, even if nothing follows them.
            payload.get(..GENEVE_HDR_LEN + options)?;
            (TunnelKind::Geneve, vni_at(&h[4..7]), GENEVE_HDR_LEN + options, is_ethernet)
        }
        _ => return None,
    };
    let inner_bytes = &payload[inner_at..];
    let inner_start = payload_at + inner_at;
    let inner = if inner_is_ethernet {
        LaxSlicedPacket::from_ethernet(inner_bytes).ok()
    } else {
        LaxSlicedPacket::from_ip(inner_bytes).ok()
    };
    let inner_network_offset = inner.as_ref().and_then(|p| match &p.net {
        Some(LaxNetSlice::Ipv4(ip)) => offset_in(bytes, ip.header().slice()),
        Some(LaxNetSlice::Ipv6(ip)) => offset_in(bytes, ip.header().slice()),
        _ => None,
    });
    Some(Tunnel {
        kind,
        vni,
        inner_mac_offset: inner_is_ethernet.then_some(inner_start),
        inner_network_offset,
        inner: inner.map_or_else(Tuple::default, |p| tuple_of(&p)),
    })
}

fn vni_at(b: &[u8]) -> u32 {
    u32::from_be_bytes([0, b[0], b[1], b[2]])
}

/// Where `part`, a sub-slice of `whole`, starts in it.
fn offset_in(whole: &[u8], part: &[u8]) -> Option<usize> {
    let at = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (at + part.len() <= whole.len()).then_some(at)
}

#[cfg(test)]
mod tests;
