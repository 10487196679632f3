//! Conntrack entries as a person reads them: the block the eBPF side copies
//! from an skb's `_nfct` ([`tracer_common::event::Ct`]) decoded into a
//! [`Conntrack`], and entries read from a namespace's table over ctnetlink
//! ([`netlink`]) as [`netlink::CtEntry`]. Both share [`CtTuple`] and
//! [`CtStatus`], so a rule can compare what a packet carried with what the
//! table holds.
//!
//! Contract:
//! - Names come from the running kernel's BTF ([`CtNames::from_btf`]):
//!   status bits from `enum ip_conntrack_status` (`IPS_SRC_NAT` → `SRC_NAT`),
//!   states from `enum ip_conntrack_info` (`IP_CT_NEW` → [`CtState::New`]).
//!   No bit value is compiled in; a bit the names do not cover prints as hex.
//! - A bit with two names takes the later one: the kernel declares
//!   `IPS_NAT_CLASH = IPS_UNTRACKED` after it, re-purposing the bit.
//! - Addresses by `l3num`: `NFPROTO_IPV4` (2) uses the first 4 bytes of the
//!   address, `NFPROTO_IPV6` (10) all 16 (both are UAPI values); any other
//!   family has no addresses. Ports for TCP, UDP, UDP-Lite, SCTP and DCCP;
//!   ICMP and ICMPv6 give the echo id, type and code instead.
//! - Text: [`Conntrack`]'s `Display` is one column,
//!   `ct=NEW [CONFIRMED|DST_NAT] orig=10.0.0.1:4000->10.0.0.2:53(udp) reply=…`,
//!   tuples written like the TUPLE column. JSON: [`json::push`].

pub mod json;
pub mod netlink;

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use tracer_common::event::{Ct, CtTuple as RawTuple};

use crate::btf::{KernelBtf, conntrack::EnumValue};

const NFPROTO_IPV4: u16 = 2;
const NFPROTO_IPV6: u16 = 10;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;

/// The packet's relation to its entry: `enum ip_conntrack_info`, the low
/// bits of `skb->_nfct`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CtState {
    /// `IP_CT_ESTABLISHED`: original direction, the entry has seen a reply.
    Established,
    /// `IP_CT_RELATED`: an expected connection (ICMP error, FTP data…).
    Related,
    /// `IP_CT_NEW`: original direction, no reply seen yet.
    New,
    /// `IP_CT_ESTABLISHED_REPLY` (= `IP_CT_IS_REPLY`): reply direction.
    EstablishedReply,
    /// `IP_CT_RELATED_REPLY`.
    RelatedReply,
    /// `IP_CT_UNTRACKED`: `NOTRACK`, no entry.
    Untracked,
    /// A value the kernel's enum does not name.
    Other(u8),
}

impl CtState {
    /// The kernel's name without `IP_CT_`; `None` for [`CtState::Other`].
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::Established => "ESTABLISHED",
            Self::Related => "RELATED",
            Self::New => "NEW",
            Self::EstablishedReply => "ESTABLISHED_REPLY",
            Self::RelatedReply => "RELATED_REPLY",
            Self::Untracked => "UNTRACKED",
            Self::Other(_) => return None,
        })
    }

    /// Whether the packet goes in the reply direction.
    pub fn is_reply(self) -> bool {
        matches!(self, Self::EstablishedReply | Self::RelatedReply)
    }
}

impl fmt::Display for CtState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.name(), self) {
            (Some(name), _) => f.write_str(name),
            (None, Self::Other(n)) => write!(f, "ctinfo {n}"),
            (None, _) => Ok(()),
        }
    }
}

/// One named status bit.
#[derive(Clone, Debug, PartialEq, Eq)]
struct StatusBit {
    mask: u64,
    /// Without `IPS_`.
    name: String,
}

/// The names of conntrack's enums on this kernel, read once per run.
#[derive(Clone, Debug, Default)]
pub struct CtNames {
    /// One per bit, in bit order.
    status: Arc<[StatusBit]>,
    /// By `ctinfo` value.
    states: [Option<CtState>; 8],
}

impl CtNames {
    /// From the running kernel's BTF (vmlinux, else nf_conntrack's); empty
    /// names when neither has the enums: states and bits then print as numbers.
    pub fn from_btf(btf: &KernelBtf) -> Self {
        let (status, info) = btf.conntrack_enums();
        Self::from_enums(&status, &info)
    }

    /// From the enums' values, as [`KernelBtf::conntrack_enums`] gives them.
    pub fn from_enums(status: &[EnumValue], info: &[EnumValue]) -> Self {
        let mut bits: Vec<StatusBit> = Vec::new();
        for (name, value) in status {
            let Some(short) = name.strip_prefix("IPS_") else { continue };
            // `IPS_*_BIT` are bit numbers, `IPS_*_MASK` unions of bits.
            if short.ends_with("_BIT") || short.ends_with("_MASK") || !value.is_power_of_two() {
                continue;
            }
            match bits.iter_mut().find(|b| b.mask == *value) {
                Some(bit) => bit.name = short.to_owned(),
                None => bits.push(StatusBit { mask: *value, name: short.to_owned() }),
            }
        }
        bits.sort_by_key(|b| b.mask);
        let mut states = [None; 8];
        for (name, value) in info {
            let state = match name.as_str() {
                "IP_CT_ESTABLISHED" => CtState::Established,
                "IP_CT_RELATED" => CtState::Related,
                "IP_CT_NEW" => CtState::New,
                "IP_CT_ESTABLISHED_REPLY" => CtState::EstablishedReply,
                "IP_CT_RELATED_REPLY" => CtState::RelatedReply,
                "IP_CT_UNTRACKED" => CtState::Untracked,
                // IP_CT_IS_REPLY, IP_CT_NUMBER, IP_CT_NEW_REPLY: aliases and counts.
                _ => continue,
            };
            if let Some(slot) = states.get_mut(*value as usize) {
                *slot = Some(state);
            }
        }
        Self { status: bits.into(), states }
    }

    pub fn state(&self, ctinfo: u8) -> CtState {
        self.states.get(usize::from(ctinfo)).copied().flatten().unwrap_or(CtState::Other(ctinfo))
    }

    pub fn status(&self, bits: u64) -> CtStatus {
        CtStatus { bits, names: Arc::clone(&self.status) }
    }
}

/// `nf_conn.status` bits, with the kernel's names for them.
#[derive(Clone, Debug)]
pub struct CtStatus {
    pub bits: u64,
    names: Arc<[StatusBit]>,
}

impl PartialEq for CtStatus {
    fn eq(&self, other: &Self) -> bool {
        self.bits == other.bits
    }
}

impl Eq for CtStatus {}

impl CtStatus {
    /// Names of the bits set, lowest bit first (`CONFIRMED`, `SRC_NAT`, …).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().filter(|b| self.bits & b.mask != 0).map(|b| b.name.as_str())
    }

    /// Set bits no name covers.
    pub fn unnamed(&self) -> u64 {
        self.names.iter().fold(self.bits, |rest, b| rest & !b.mask)
    }

    /// Whether the bit called `name` (with or without `IPS_`) is set; false
    /// for a name this kernel does not have.
    pub fn has(&self, name: &str) -> bool {
        let name = name.strip_prefix("IPS_").unwrap_or(name);
        self.names.iter().any(|b| b.name == name && self.bits & b.mask != 0)
    }
}

impl fmt::Display for CtStatus {
    /// `CONFIRMED|DST_NAT`, then unnamed bits as hex; empty for none.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for name in self.names() {
            write!(f, "{sep}{name}")?;
            sep = "|";
        }
        match self.unnamed() {
            0 => Ok(()),
            rest => write!(f, "{sep}{rest:#x}"),
        }
    }
}

/// One direction of an entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtTuple {
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    /// IP protocol number.
    pub proto: u8,
    /// Ports; 0 for ICMP and protocols without ports.
    pub sport: u16,
    pub dport: u16,
    /// ICMP and ICMPv6 only.
    pub icmp: Option<Icmp>,
}

/// The ICMP fields conntrack keys on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Icmp {
    pub id: u16,
    pub kind: u8,
    pub code: u8,
}

impl CtTuple {
    fn decode(raw: &RawTuple) -> Self {
        let (src, dst) = (bytes(&raw.src), bytes(&raw.dst));
        let (src, dst) = match raw.l3num {
            NFPROTO_IPV4 => (Some(v4(&src)), Some(v4(&dst))),
            NFPROTO_IPV6 => (Some(IpAddr::V6(Ipv6Addr::from(src))), Some(IpAddr::V6(Ipv6Addr::from(dst)))),
            _ => (None, None),
        };
        // The kernel's bytes, in memory order.
        let (src_u, dst_u) = (raw.src_u.to_ne_bytes(), raw.dst_u.to_ne_bytes());
        let proto = raw.protonum;
        if matches!(proto, IPPROTO_ICMP | IPPROTO_ICMPV6) {
            let icmp = Icmp { id: u16::from_be_bytes(src_u), kind: dst_u[0], code: dst_u[1] };
            return Self { src, dst, proto, sport: 0, dport: 0, icmp: Some(icmp) };
        }
        let (sport, dport) =
            if has_ports(proto) { (u16::from_be_bytes(src_u), u16::from_be_bytes(dst_u)) } else { (0, 0) };
        Self { src, dst, proto, sport, dport, icmp: None }
    }

    /// The same tuple seen from the other end.
    pub fn reversed(&self) -> Self {
        Self { src: self.dst, dst: self.src, sport: self.dport, dport: self.sport, ..*self }
    }

    /// The protocol's name (`udp`), or its number.
    pub fn proto_name(&self) -> std::borrow::Cow<'static, str> {
        match crate::decode::Proto::Ip(self.proto).name() {
            Some(name) => name.into(),
            None => self.proto.to_string().into(),
        }
    }
}

/// An address's four words back to the kernel's 16 bytes.
fn bytes(words: &[u32; 4]) -> [u8; 16] {
    let mut out = [0; 16];
    for (chunk, word) in out.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    out
}

fn v4(addr: &[u8; 16]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
}

/// TCP, UDP, DCCP, SCTP, UDP-Lite: conntrack keys them on ports.
fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 33 | 132 | 136)
}

impl fmt::Display for CtTuple {
    /// `10.0.0.1:4000->10.0.0.2:53(udp)`, `[fd00::1]:…`, ICMP as
    /// `10.0.0.1->10.0.0.2(icmp id 7 type 8 code 0)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = |f: &mut fmt::Formatter<'_>, addr: Option<IpAddr>, port: u16| -> fmt::Result {
            match addr {
                Some(IpAddr::V6(a)) => write!(f, "[{a}]")?,
                Some(IpAddr::V4(a)) => write!(f, "{a}")?,
                None => f.write_str("?")?,
            }
            if self.sport != 0 || self.dport != 0 { write!(f, ":{port}") } else { Ok(()) }
        };
        end(f, self.src, self.sport)?;
        f.write_str("->")?;
        end(f, self.dst, self.dport)?;
        write!(f, "({}", self.proto_name())?;
        if let Some(i) = self.icmp {
            write!(f, " id {} type {} code {}", i.id, i.kind, i.code)?;
        }
        f.write_str(")")
    }
}

/// The conntrack entry an event's skb carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conntrack {
    pub state: CtState,
    /// The `struct nf_conn` address: one entry, both directions, across
    /// NAT, in one network namespace. 0 for untracked packets.
    pub nf_conn: u64,
    pub status: CtStatus,
    pub orig: CtTuple,
    pub reply: CtTuple,
    pub zone: u16,
    /// `nf_conn.zone.dir`: 1 original, 2 reply, 3 both (0 on kernels without zones).
    pub zone_dir: u8,
    pub mark: u32,
}

impl Conntrack {
    pub fn decode(ct: &Ct, names: &CtNames) -> Self {
        Self {
            state: names.state(ct.ctinfo),
            nf_conn: ct.nf_conn,
            status: names.status(ct.status),
            orig: CtTuple::decode(&ct.orig),
            reply: CtTuple::decode(&ct.reply),
            zone: ct.zone,
            zone_dir: ct.zone_dir,
            mark: ct.mark,
        }
    }

    /// The entry in a ring-buffer record, if its event has one.
    pub fn from_record(bytes: &[u8], names: &CtNames) -> Option<Self> {
        Ct::from_record(bytes).map(|ct| Self::decode(&ct, names))
    }

    /// Whether the packet had an entry (rather than being untracked).
    pub fn has_entry(&self) -> bool {
        self.nf_conn != 0
    }
}

impl fmt::Display for Conntrack {
    /// `ct=NEW [CONFIRMED|DST_NAT] orig=… reply=…`, then ` zone=N` and
    /// ` mark=0x…` when set; `ct=UNTRACKED` alone without an entry.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ct={}", self.state)?;
        if !self.has_entry() {
            return Ok(());
        }
        write!(f, " [{}] orig={} reply={}", self.status, self.orig, self.reply)?;
        if self.zone != 0 {
            write!(f, " zone={}", self.zone)?;
        }
        if self.mark != 0 {
            write!(f, " mark={:#x}", self.mark)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
