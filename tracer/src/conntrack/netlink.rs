//! A network namespace's conntrack table, read over ctnetlink: for when the
//! events cannot show the entry (on the tracepoint backend the UDP
//! no-socket path clears `_nfct` before the drop is seen), or to find the
//! entry a packet did *not* match.
//!
//! Contract:
//! - The namespace is named by its inode, as events carry it. It is found
//!   among `/run/netns/*`, then `/proc/*/ns/net`; the netlink socket is
//!   opened on a thread that `setns`'d into it ([`crate::netns::within`]), so
//!   the caller's threads stay where they are. A namespace nothing holds
//!   any more is an error saying so.
//! - [`dump`] asks for every entry (`IPCTNL_MSG_CT_GET` with `NLM_F_DUMP`,
//!   family `AF_UNSPEC`: IPv4 and IPv6, every zone). [`lookup`] dumps and
//!   keeps the entries whose original *or* reply tuple equals the one asked
//!   for: the kernel's own tuple lookup needs the zone and one direction.
//! - Messages are built and parsed by `netlink-packet-netfilter` (with
//!   `netlink-packet-core`, `netlink-sys` for the socket). Attributes it does
//!   not type (`CTA_ZONE`, `CTA_ID`, the ICMP fields) are read from its raw
//!   attributes; nothing else is decoded by hand.
//! - Needs `CAP_NET_ADMIN` in the namespace's owner (root). Errors name the
//!   namespace, the step and what to do.

use std::{
    fmt,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, anyhow, bail};
use netlink_packet_core::{DefaultNla, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload, Nla};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
    conntrack::{ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Tuple},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

use super::{CtNames, CtStatus, CtTuple, Icmp};

/// `CTA_ID`, `CTA_ZONE` (`enum ctattr_type`, UAPI).
const CTA_ID: u16 = 12;
const CTA_ZONE: u16 = 18;
/// `CTA_PROTO_ICMP_{ID,TYPE,CODE}` and the ICMPv6 ones (`enum ctattr_l4proto`, UAPI).
const CTA_PROTO_ICMP_ID: u16 = 4;
const CTA_PROTO_ICMP_TYPE: u16 = 5;
const CTA_PROTO_ICMP_CODE: u16 = 6;
const CTA_PROTO_ICMPV6_ID: u16 = 7;
const CTA_PROTO_ICMPV6_TYPE: u16 = 8;
const CTA_PROTO_ICMPV6_CODE: u16 = 9;

/// One entry of a conntrack table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtEntry {
    /// `CTA_ID`: the kernel's id for the entry (not its address).
    pub id: u32,
    pub status: CtStatus,
    pub orig: CtTuple,
    pub reply: CtTuple,
    pub zone: u16,
    pub mark: u32,
    /// Seconds until the entry expires.
    pub timeout: u32,
}

impl CtEntry {
    /// Whether either direction is exactly `tuple`.
    pub fn matches(&self, tuple: &CtTuple) -> bool {
        self.orig == *tuple || self.reply == *tuple
    }
}

impl fmt::Display for CtEntry {
    /// `[CONFIRMED|SRC_NAT] orig=… reply=… timeout=30s`, zone and mark when set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] orig={} reply={}", self.status, self.orig, self.reply)?;
        if self.zone != 0 {
            write!(f, " zone={}", self.zone)?;
        }
        if self.mark != 0 {
            write!(f, " mark={:#x}", self.mark)?;
        }
        write!(f, " timeout={}s", self.timeout)
    }
}

/// Every entry of the table of network namespace `netns_inode`.
pub fn dump(netns_inode: u32, names: &CtNames) -> anyhow::Result<Vec<CtEntry>> {
    let path = netns_path(netns_inode)?;
    crate::netns::within(&path, || dump_here(names))
        .with_context(|| format!("reading the conntrack table of network namespace {netns_inode} ({})", path.display()))
}

/// The entries of network namespace `netns_inode` whose original or reply
/// tuple is `tuple`: none, one, or one per zone.
pub fn lookup(netns_inode: u32, tuple: &CtTuple, names: &CtNames) -> anyhow::Result<Vec<CtEntry>> {
    Ok(dump(netns_inode, names)?.into_iter().filter(|e| e.matches(tuple)).collect())
}

/// A file that is network namespace `inode`: a name under `/run/netns`, or
/// a process's `/proc/PID/ns/net`.
pub fn netns_path(inode: u32) -> anyhow::Result<PathBuf> {
    let is_it = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.ino() == u64::from(inode));
    if let Ok(names) = std::fs::read_dir("/run/netns") {
        for entry in names.flatten() {
            if is_it(&entry.path()) {
                return Ok(entry.path());
            }
        }
    }
    let procs = std::fs::read_dir("/proc").context("listing /proc to find a network namespace")?;
    for entry in procs.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let path = entry.path().join("ns/net");
        if is_it(&path) {
            return Ok(path);
        }
    }
    bail!(
        "network namespace {inode} not found: no /run/netns entry and no process holds it (it is gone, \
         or only a bind mount elsewhere or a socket keeps it)"
    )
}

/// Dumps the table of the namespace this thread is in.
fn dump_here(names: &CtNames) -> anyhow::Result<Vec<CtEntry>> {
    let mut socket = Socket::new(NETLINK_NETFILTER).context("opening a netfilter netlink socket")?;
    socket.bind_auto().context("binding the netfilter netlink socket")?;
    socket.connect(&SocketAddr::new(0, 0)).context("connecting the netfilter netlink socket")?;

    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = 1;
    let mut request = NetlinkMessage::new(
        header,
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, 0),
            ConntrackMessage::Get(Vec::new()),
        )),
    );
    request.finalize();
    let mut buf = vec![0; request.buffer_len()];
    request.serialize(&mut buf);
    socket.send(&buf, 0).context("sending the conntrack dump request")?;

    let mut entries = Vec::new();
    loop {
        let (datagram, _) = socket.recv_from_full().context("receiving the conntrack dump")?;
        let mut rest = datagram.as_slice();
        while !rest.is_empty() {
            let message = NetlinkMessage::<NetfilterMessage>::deserialize(rest)
                .map_err(|e| anyhow!("parsing a ctnetlink message: {e}"))?;
            let len = (message.header.length as usize).max(1).min(rest.len());
            rest = &rest[len..];
            match message.payload {
                NetlinkPayload::Done(_) => return Ok(entries),
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    let io = e.to_io();
                    let hint = match io.raw_os_error() {
                        Some(libc::EPERM) => ": reading conntrack needs CAP_NET_ADMIN (run as root)",
                        Some(libc::EOPNOTSUPP | libc::ENOENT) => {
                            ": the kernel has no ctnetlink (load nf_conntrack_netlink)"
                        }
                        _ => "",
                    };
                    bail!("the kernel refused the conntrack dump: {io}{hint}");
                }
                NetlinkPayload::InnerMessage(NetfilterMessage {
                    inner: NetfilterMessageInner::Conntrack(ConntrackMessage::New(attrs)),
                    ..
                }) => entries.push(entry(&attrs, names)),
                _ => {}
            }
        }
    }
}

fn entry(attrs: &[ConntrackAttribute], names: &CtNames) -> CtEntry {
    let mut e = CtEntry {
        id: 0,
        status: names.status(0),
        orig: CtTuple::default(),
        reply: CtTuple::default(),
        zone: 0,
        mark: 0,
        timeout: 0,
    };
    for attr in attrs {
        match attr {
            ConntrackAttribute::CtaTupleOrig(t) => e.orig = tuple(t),
            ConntrackAttribute::CtaTupleReply(t) => e.reply = tuple(t),
            ConntrackAttribute::CtaStatus(s) => e.status = names.status(u64::from(s.bits())),
            ConntrackAttribute::CtaMark(m) => e.mark = *m,
            ConntrackAttribute::CtaTimeout(t) => e.timeout = *t,
            ConntrackAttribute::Other(nla) => match nla.kind() {
                CTA_ID => e.id = be_u32(nla),
                CTA_ZONE => e.zone = be_u16(nla),
                _ => {}
            },
            _ => {}
        }
    }
    e
}

fn tuple(parts: &[Tuple]) -> CtTuple {
    let mut t = CtTuple::default();
    let mut icmp = Icmp::default();
    let mut is_icmp = false;
    for part in parts {
        match part {
            Tuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(a) => t.src = Some(*a),
                        IPTuple::DestinationAddress(a) => t.dst = Some(*a),
                        _ => {}
                    }
                }
            }
            Tuple::Proto(protos) => {
                for p in protos {
                    match p {
                        ProtoTuple::Protocol(n) => t.proto = u8::from(*n),
                        ProtoTuple::SourcePort(port) => t.sport = *port,
                        ProtoTuple::DestinationPort(port) => t.dport = *port,
                        ProtoTuple::Other(nla) => match nla.kind() {
                            CTA_PROTO_ICMP_ID | CTA_PROTO_ICMPV6_ID => (icmp.id, is_icmp) = (be_u16(nla), true),
                            CTA_PROTO_ICMP_TYPE | CTA_PROTO_ICMPV6_TYPE => {
                                (icmp.kind, is_icmp) = (first_byte(nla), true)
                            }
                            CTA_PROTO_ICMP_CODE | CTA_PROTO_ICMPV6_CODE => {
                                (icmp.code, is_icmp) = (first_byte(nla), true)
                            }
                            _ => {}
                        },
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if is_icmp {
        t.icmp = Some(icmp);
    }
    t
}

fn value(nla: &DefaultNla) -> Vec<u8> {
    let mut v = vec![0; nla.value_len()];
    nla.emit_value(&mut v);
    v
}

fn be_u16(nla: &DefaultNla) -> u16 {
    let v = value(nla);
    v.get(..2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
}

fn be_u32(nla: &DefaultNla) -> u32 {
    let v = value(nla);
    v.get(..4).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn first_byte(nla: &DefaultNla) -> u8 {
    value(nla).first().copied().unwrap_or(0)
}
