//! One event: an skb seen at one probe.

use crate::limits::SNAPLEN_MAX;

/// Where the copied packet bytes start.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capture {
    /// Nothing was copied (no header set, or `--snaplen 0`).
    None = 0,
    /// Bytes start at the MAC header (Ethernet link type).
    Mac = 1,
    /// Bytes start at the network header (raw IP link type).
    Network = 2,
}

impl Capture {
    pub const fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Mac,
            2 => Self::Network,
            _ => Self::None,
        }
    }
}

/// Event flag: `reason` holds a drop reason.
pub const FLAG_HAS_REASON: u8 = 1 << 0;
/// Event flag: the skb was let through because it was already tracked.
pub const FLAG_TRACKED: u8 = 1 << 1;
/// Event flag: the skb is freed at this probe (a drop or a free); its
/// address may be reused by the next skb, so this event ends its story.
pub const FLAG_FREED: u8 = 1 << 2;
/// Event flag: the skb had a conntrack entry (or was marked untracked): a
/// conntrack block follows the packet bytes (see [`EVENT_HEADER_SIZE`]), a
/// [`Ct4`] with [`FLAG_CT4`], else a [`Ct`].
pub const FLAG_CT: u8 = 1 << 3;
/// Event flag: the event is nf_tables's verdict on the skb (`--nft-trace`):
/// an [`Nft`] block follows the packet bytes and the conntrack block, if any.
pub const FLAG_NFT: u8 = 1 << 4;
/// Event flag, with [`FLAG_CT`]: the conntrack block is the short IPv4 one,
/// a [`Ct4`].
pub const FLAG_CT4: u8 = 1 << 5;

/// One skb seen at one probe. Built in a per-CPU scratch slot, filtered, then
/// copied whole into the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Event {
    /// Address of the `struct sk_buff`.
    pub skb: u64,
    /// `bpf_ktime_get_ns()` at the probe.
    pub ktime_ns: u64,
    /// Kprobes: address of the probed function. Tracepoints: 0.
    pub func_ip: u64,
    /// Drop location for `skb:kfree_skb`, caller address under `--output-caller`.
    pub location: u64,
    /// Index into user space's probe table (tracepoints) or 0 (kprobes).
    pub probe_id: u32,
    /// Drop reason when `flags & FLAG_HAS_REASON`.
    pub reason: u32,
    /// Thread group id of the current task.
    pub pid: u32,
    pub cpu: u32,
    pub netns: u32,
    pub mark: u32,
    pub ifindex: u32,
    /// `skb->len`.
    pub len: u32,
    pub mtu: u32,
    /// Kernel stack id under `--output-stack`, else negative.
    pub stack_id: i32,
    /// `skb->protocol`, network byte order as in the kernel.
    pub protocol: u16,
    /// Number of valid bytes in `data`.
    pub cap_len: u16,
    /// `FLAG_*` bits.
    pub flags: u8,
    /// A [`Capture`] value.
    pub capture: u8,
    /// Where `skb->data` is, counted from the first captured byte: `len`
    /// counts from there, so the packet from the capture's start is
    /// `len + data_offset` bytes long (the original length in pcap terms).
    pub data_offset: i16,
    pub comm: [u8; 16],
    pub ifname: [u8; 16],
    pub data: [u8; SNAPLEN_MAX],
}

pub const EVENT_SIZE: usize = EVENT_HEADER_SIZE + SNAPLEN_MAX;
const _: () = assert!(core::mem::size_of::<Event>() == EVENT_SIZE);

/// A ring-buffer record is the event's fields before `data` (this many
/// bytes), its `cap_len` packet bytes rounded up to 8
/// ([`record_data_len`]), then, with [`FLAG_CT`], a conntrack block
/// ([`ct_block_len`] bytes), then, with [`FLAG_NFT`], an [`Nft`]. Only the
/// captured bytes are sent, not all of `data`: the ring buffer's cost grows
/// with the cache lines a record writes (a 104-byte conntrack block cost
/// ~50 ns per event on the host's flood benchmark, hence [`Ct4`]).
pub const EVENT_HEADER_SIZE: usize = 112;
const _: () = assert!(core::mem::offset_of!(Event, data) == EVENT_HEADER_SIZE);

/// The packet bytes of a record whose event captured `cap_len`: rounded up
/// to 8, so that a conntrack block after them is aligned.
pub const fn record_data_len(cap_len: u16) -> usize {
    let cap = if (cap_len as usize) < SNAPLEN_MAX { cap_len as usize } else { SNAPLEN_MAX };
    (cap + 7) & !7
}
const _: () = assert!(core::mem::align_of::<Event>() == 8);

impl Event {
    pub const fn zeroed() -> Self {
        Self {
            skb: 0,
            ktime_ns: 0,
            func_ip: 0,
            location: 0,
            probe_id: 0,
            reason: 0,
            pid: 0,
            cpu: 0,
            netns: 0,
            mark: 0,
            ifindex: 0,
            len: 0,
            mtu: 0,
            stack_id: -1,
            protocol: 0,
            cap_len: 0,
            flags: 0,
            capture: 0,
            data_offset: 0,
            comm: [0; 16],
            ifname: [0; 16],
            data: [0; SNAPLEN_MAX],
        }
    }

    /// Decodes an event from a ring-buffer record (see [`EVENT_HEADER_SIZE`]);
    /// `None` when the record is too short for its header or its packet bytes.
    #[cfg(feature = "user")]
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let header = bytes.get(..EVENT_HEADER_SIZE)?;
        let mut event = Self::zeroed();
        // SAFETY: `header` holds the EVENT_HEADER_SIZE bytes of the fields
        // before `data`, which `event` has; Event is plain data valid for any
        // bit pattern, and a byte copy needs no alignment.
        unsafe { core::ptr::copy_nonoverlapping(header.as_ptr(), (&raw mut event).cast::<u8>(), EVENT_HEADER_SIZE) };
        let cap = usize::from(event.cap_len).min(SNAPLEN_MAX);
        event.data[..cap].copy_from_slice(bytes.get(EVENT_HEADER_SIZE..EVENT_HEADER_SIZE + cap)?);
        Some(event)
    }

    /// The ring-buffer record of this event, as the eBPF side writes it
    /// (for tests and benchmarks): `ct` as a [`Ct4`] when one holds it all.
    #[cfg(feature = "user")]
    pub fn to_record(&self, ct: Option<&Ct>, nft: Option<&Nft>) -> alloc::vec::Vec<u8> {
        let data_len = record_data_len(self.cap_len);
        let mut record = alloc::vec::Vec::with_capacity(EVENT_HEADER_SIZE + data_len + CT_SIZE + NFT_SIZE);
        // SAFETY: Event is repr(C) plain data whose first EVENT_HEADER_SIZE
        // bytes are its fields before `data`, without padding (asserted below).
        record.extend_from_slice(unsafe {
            core::slice::from_raw_parts((self as *const Self).cast::<u8>(), EVENT_HEADER_SIZE + data_len)
        });
        let mut flags = self.flags & !(FLAG_CT | FLAG_CT4 | FLAG_NFT);
        match ct.map(|ct| (ct, Ct4::compact(ct))) {
            Some((_, Some(short))) => {
                flags |= FLAG_CT | FLAG_CT4;
                // SAFETY: Ct4 is repr(C) plain data without padding (size asserted below).
                record.extend_from_slice(unsafe {
                    core::slice::from_raw_parts((&raw const short).cast::<u8>(), CT4_SIZE)
                });
            }
            Some((ct, None)) => {
                flags |= FLAG_CT;
                // SAFETY: Ct is repr(C) plain data without padding (sizes asserted below).
                record
                    .extend_from_slice(unsafe { core::slice::from_raw_parts((ct as *const Ct).cast::<u8>(), CT_SIZE) });
            }
            None => {}
        }
        if let Some(nft) = nft {
            flags |= FLAG_NFT;
            // SAFETY: Nft is repr(C) plain data without padding (size asserted below).
            record
                .extend_from_slice(unsafe { core::slice::from_raw_parts((nft as *const Nft).cast::<u8>(), NFT_SIZE) });
        }
        record[core::mem::offset_of!(Event, flags)] = flags;
        record
    }

    pub fn capture(&self) -> Capture {
        Capture::from_u8(self.capture)
    }

    /// The packet's length from the first captured byte: what a capture
    /// of the whole packet from there would hold.
    pub fn wire_len(&self) -> u32 {
        let len = (self.len as i64 + self.data_offset as i64).max(0) as u32;
        len.max(self.cap_len as u32)
    }

    pub fn packet(&self) -> &[u8] {
        let n = (self.cap_len as usize).min(SNAPLEN_MAX);
        &self.data[..n]
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C), no padding (size asserted above), every bit pattern valid.
unsafe impl aya::Pod for Event {}

/// One direction of a conntrack entry, copied from the kernel's
/// `struct nf_conntrack_tuple` field by field (offsets from BTF), so this
/// layout is ours, not the kernel's. Multi-byte fields hold the kernel's
/// bytes as loaded from memory: `to_ne_bytes()` gives them back in order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtTuple {
    /// `src.u3` as four 32-bit words: an IPv4 address in the first, or an
    /// IPv6 address (network byte order in memory).
    pub src: [u32; 4],
    /// `dst.u3`.
    pub dst: [u32; 4],
    /// `src.u.all`: a big-endian port, or the ICMP echo id.
    pub src_u: u16,
    /// `dst.u.all`: a big-endian port, or the ICMP type then code.
    pub dst_u: u16,
    /// `src.l3num`: `NFPROTO_IPV4` (2) or `NFPROTO_IPV6` (10).
    pub l3num: u16,
    /// `dst.protonum`: an `IPPROTO_*` number.
    pub protonum: u8,
    pub _pad: u8,
}

pub const CT_TUPLE_SIZE: usize = 40;
const _: () = assert!(core::mem::size_of::<CtTuple>() == CT_TUPLE_SIZE);

/// The conntrack entry attached to an skb (`skb->_nfct`), as the eBPF side
/// read it. In records whose event has [`FLAG_CT`] but not [`FLAG_CT4`];
/// [`Ct::from_record`] gives one for either block.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ct {
    /// The `struct nf_conn` address (`_nfct & ~7`): a key for the flow in
    /// its network namespace, both directions and across NAT. 0 when the
    /// packet is marked untracked without an entry.
    pub nf_conn: u64,
    /// `nf_conn.status`: `enum ip_conntrack_status` bits.
    pub status: u64,
    /// `tuplehash[IP_CT_DIR_ORIGINAL].tuple`.
    pub orig: CtTuple,
    /// `tuplehash[IP_CT_DIR_REPLY].tuple`.
    pub reply: CtTuple,
    /// `nf_conn.mark`; 0 when the kernel has no conntrack marks.
    pub mark: u32,
    /// `nf_conn.zone.id`; 0 when the kernel has no zones.
    pub zone: u16,
    /// `nf_conn.zone.dir`: which directions the zone applies to.
    pub zone_dir: u8,
    /// `_nfct & 7`: an `enum ip_conntrack_info` value.
    pub ctinfo: u8,
}

pub const CT_SIZE: usize = 16 + 2 * CT_TUPLE_SIZE + 8;
const _: () = assert!(core::mem::size_of::<Ct>() == CT_SIZE);
const _: () = assert!(core::mem::align_of::<Ct>() == 8);

/// `src.l3num` of an IPv4 tuple (`NFPROTO_IPV4`, UAPI).
pub const NFPROTO_IPV4: u16 = 2;

/// One direction of an IPv4 entry: a [`CtTuple`] without the address
/// words IPv4 leaves zero, and with `l3num` and `protonum` in the [`Ct4`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtTuple4 {
    pub src: u32,
    pub dst: u32,
    pub src_u: u16,
    pub dst_u: u16,
}

/// An entry whose tuples are both IPv4 and whose status fits 32 bits
/// (every `enum ip_conntrack_status` bit does): a [`Ct`] in 48 bytes
/// rather than 104, for the common case. Records carry it with
/// [`FLAG_CT4`]; it stands for the [`Ct`] that [`Ct4::expand`] gives.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ct4 {
    pub nf_conn: u64,
    pub status: u32,
    pub mark: u32,
    pub orig: CtTuple4,
    pub reply: CtTuple4,
    pub zone: u16,
    pub zone_dir: u8,
    pub ctinfo: u8,
    /// `orig.dst.protonum`.
    pub orig_protonum: u8,
    /// `reply.dst.protonum`.
    pub reply_protonum: u8,
    pub _pad: [u8; 2],
}

pub const CT4_SIZE: usize = 48;
const _: () = assert!(core::mem::size_of::<Ct4>() == CT4_SIZE);
const _: () = assert!(core::mem::align_of::<Ct4>() == 8);

/// How many bytes of conntrack block follow the packet bytes in a record
/// whose event has `flags`.
pub const fn ct_block_len(flags: u8) -> usize {
    if flags & FLAG_CT == 0 {
        0
    } else if flags & FLAG_CT4 != 0 {
        CT4_SIZE
    } else {
        CT_SIZE
    }
}

impl Ct {
    pub const fn zeroed() -> Self {
        const T: CtTuple = CtTuple { src: [0; 4], dst: [0; 4], src_u: 0, dst_u: 0, l3num: 0, protonum: 0, _pad: 0 };
        Self { nf_conn: 0, status: 0, orig: T, reply: T, mark: 0, zone: 0, zone_dir: 0, ctinfo: 0 }
    }

    /// The conntrack block of a ring-buffer record (after the packet bytes,
    /// see [`EVENT_HEADER_SIZE`]), a [`Ct4`] expanded: `None` when the event
    /// has no [`FLAG_CT`] or the record is too short to hold the block.
    #[cfg(feature = "user")]
    pub fn from_record(bytes: &[u8]) -> Option<Self> {
        let flags = *bytes.get(core::mem::offset_of!(Event, flags))?;
        let at = blocks_at(bytes)?;
        let block = bytes.get(at..at + ct_block_len(flags))?;
        match ct_block_len(flags) {
            0 => None,
            CT4_SIZE => {
                // SAFETY: `block` holds CT4_SIZE bytes; Ct4 is plain data valid for
                // any bit pattern, and read_unaligned copes with the ring buffer's alignment.
                Some(unsafe { core::ptr::read_unaligned(block.as_ptr().cast::<Ct4>()) }.expand())
            }
            // SAFETY: as above, with CT_SIZE bytes and a Ct.
            _ => Some(unsafe { core::ptr::read_unaligned(block.as_ptr().cast::<Self>()) }),
        }
    }
}

impl Ct4 {
    /// `ct` in the short block, when it holds all of it.
    pub fn compact(ct: &Ct) -> Option<Self> {
        let tuple = |t: &CtTuple| {
            (t.l3num == NFPROTO_IPV4 && t.src[1..] == [0; 3] && t.dst[1..] == [0; 3] && t._pad == 0)
                .then_some(CtTuple4 { src: t.src[0], dst: t.dst[0], src_u: t.src_u, dst_u: t.dst_u })
        };
        Some(Self {
            nf_conn: ct.nf_conn,
            status: u32::try_from(ct.status).ok()?,
            mark: ct.mark,
            orig: tuple(&ct.orig)?,
            reply: tuple(&ct.reply)?,
            zone: ct.zone,
            zone_dir: ct.zone_dir,
            ctinfo: ct.ctinfo,
            orig_protonum: ct.orig.protonum,
            reply_protonum: ct.reply.protonum,
            _pad: [0; 2],
        })
    }

    /// The [`Ct`] this block stands for: IPv4 tuples, whose last twelve
    /// address bytes the kernel leaves zero.
    pub fn expand(&self) -> Ct {
        let tuple = |t: &CtTuple4, protonum| CtTuple {
            src: [t.src, 0, 0, 0],
            dst: [t.dst, 0, 0, 0],
            src_u: t.src_u,
            dst_u: t.dst_u,
            l3num: NFPROTO_IPV4,
            protonum,
            _pad: 0,
        };
        Ct {
            nf_conn: self.nf_conn,
            status: u64::from(self.status),
            orig: tuple(&self.orig, self.orig_protonum),
            reply: tuple(&self.reply, self.reply_protonum),
            mark: self.mark,
            zone: self.zone,
            zone_dir: self.zone_dir,
            ctinfo: self.ctinfo,
        }
    }
}

/// Room for a table's or chain's name; longer names are cut (nf_tables
/// allows 256 bytes, iptables-nft's chains have at most 28).
pub const NFT_NAME_LEN: usize = 64;

/// `Nft::trace_type` (`enum nft_trace_types`, UAPI).
pub const NFT_TRACETYPE_POLICY: u8 = 1;
pub const NFT_TRACETYPE_RETURN: u8 = 2;
pub const NFT_TRACETYPE_RULE: u8 = 3;

/// `Nft::flags`: the chain a rule is in could not be found within
/// `NFT_RULE_WALK_MAX` rules; `chain` is the base chain the packet entered.
pub const NFT_CHAIN_BASE: u8 = 1 << 0;

/// What nf_tables decided about an skb at one rule, or at a chain's end or
/// policy, as `__nft_trace_packet` saw it (`--nft-trace`). Only in records
/// whose event has [`FLAG_NFT`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nft {
    /// The rule's handle, as `nft -a list ruleset` shows it; 0 when the
    /// verdict is no rule's (a chain's policy or its end).
    pub handle: u64,
    /// `nft_verdict.code`: `NF_DROP` 0, `NF_ACCEPT` 1, `NF_STOLEN` 2,
    /// `NF_QUEUE` 3 (the queue number above), `NFT_CONTINUE` -1, `NFT_BREAK`
    /// -2, `NFT_JUMP` -3, `NFT_GOTO` -4, `NFT_RETURN` -5; for a policy, the
    /// base chain's policy.
    pub verdict: i32,
    /// `NFT_TRACETYPE_*`.
    pub trace_type: u8,
    /// The table's family: `NFPROTO_INET` 1, `IPV4` 2, `ARP` 3, `NETDEV` 5,
    /// `BRIDGE` 7, `IPV6` 10.
    pub family: u8,
    /// `nf_hook_state.hook`: with the family, which hook (`NF_INET_*`).
    pub hook: u8,
    /// `NFT_CHAIN_BASE`.
    pub flags: u8,
    /// NUL-terminated unless cut.
    pub table: [u8; NFT_NAME_LEN],
    pub chain: [u8; NFT_NAME_LEN],
    /// The chain a jump or goto goes to; empty for other verdicts.
    pub target: [u8; NFT_NAME_LEN],
}

pub const NFT_SIZE: usize = 16 + 3 * NFT_NAME_LEN;
const _: () = assert!(core::mem::size_of::<Nft>() == NFT_SIZE);

impl Nft {
    pub const fn zeroed() -> Self {
        Self {
            handle: 0,
            verdict: 0,
            trace_type: 0,
            family: 0,
            hook: 0,
            flags: 0,
            table: [0; NFT_NAME_LEN],
            chain: [0; NFT_NAME_LEN],
            target: [0; NFT_NAME_LEN],
        }
    }

    /// The nf_tables block of a ring-buffer record: `None` when the event
    /// has no [`FLAG_NFT`] or the record is too short to hold the block.
    #[cfg(feature = "user")]
    pub fn from_record(bytes: &[u8]) -> Option<Self> {
        let flags = *bytes.get(core::mem::offset_of!(Event, flags))?;
        let at = blocks_at(bytes)? + ct_block_len(flags);
        let block = bytes.get(at..at + NFT_SIZE)?;
        if flags & FLAG_NFT == 0 {
            return None;
        }
        // SAFETY: `block` holds NFT_SIZE bytes; Nft is plain data valid for
        // any bit pattern, and read_unaligned copes with the ring buffer's alignment.
        Some(unsafe { core::ptr::read_unaligned(block.as_ptr().cast::<Self>()) })
    }
}

/// Where a record's conntrack block (then the nf_tables block) starts: after
/// its packet bytes.
#[cfg(feature = "user")]
fn blocks_at(bytes: &[u8]) -> Option<usize> {
    let cap_len = core::mem::offset_of!(Event, cap_len);
    let cap_len = u16::from_ne_bytes(bytes.get(cap_len..cap_len + 2)?.try_into().ok()?);
    Some(EVENT_HEADER_SIZE + record_data_len(cap_len))
}
