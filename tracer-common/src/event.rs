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
/// [`Ct`] block follows the packet bytes (see [`EVENT_HEADER_SIZE`]).
pub const FLAG_CT: u8 = 1 << 3;
/// Event flag: the event is nf_tables's verdict on the skb (`--nft-trace`):
/// a [`Ct`] block (meaningful only with [`FLAG_CT`]) and an [`Nft`] block
/// follow the packet bytes.
pub const FLAG_NFT: u8 = 1 << 4;

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
/// ([`record_data_len`]), then, with [`FLAG_CT`], a [`Ct`]. Only the
/// captured bytes are sent, not all of `data`: the ring buffer's cost grows
/// with the cache lines a record writes (a 104-byte conntrack block cost
/// ~50 ns per event on the host's flood benchmark).
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
    /// (for tests and benchmarks); with `nft`, the conntrack block is sent
    /// whether or not `ct` fills it.
    #[cfg(feature = "user")]
    pub fn to_record(&self, ct: Option<&Ct>, nft: Option<&Nft>) -> alloc::vec::Vec<u8> {
        let data_len = record_data_len(self.cap_len);
        let mut record = alloc::vec::Vec::with_capacity(EVENT_HEADER_SIZE + data_len + CT_SIZE + NFT_SIZE);
        // SAFETY: Event is repr(C) plain data whose first EVENT_HEADER_SIZE
        // bytes are its fields before `data`, without padding (asserted below).
        record.extend_from_slice(unsafe {
            core::slice::from_raw_parts((self as *const Self).cast::<u8>(), EVENT_HEADER_SIZE + data_len)
        });
        let mut flags = self.flags & !(FLAG_CT | FLAG_NFT);
        if ct.is_some() || nft.is_some() {
            flags |= if ct.is_some() { FLAG_CT } else { 0 };
            let ct = ct.copied().unwrap_or(Ct::zeroed());
            // SAFETY: Ct is repr(C) plain data without padding (sizes asserted below).
            record.extend_from_slice(unsafe { core::slice::from_raw_parts((&raw const ct).cast::<u8>(), CT_SIZE) });
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
/// read it. Only in records whose event has [`FLAG_CT`].
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

impl Ct {
    pub const fn zeroed() -> Self {
        const T: CtTuple = CtTuple { src: [0; 4], dst: [0; 4], src_u: 0, dst_u: 0, l3num: 0, protonum: 0, _pad: 0 };
        Self { nf_conn: 0, status: 0, orig: T, reply: T, mark: 0, zone: 0, zone_dir: 0, ctinfo: 0 }
    }

    /// The conntrack block of a ring-buffer record (after the packet bytes,
    /// see [`EVENT_HEADER_SIZE`]): `None` when the event has no [`FLAG_CT`]
    /// or the record is too short to hold the block.
    #[cfg(feature = "user")]
    pub fn from_record(bytes: &[u8]) -> Option<Self> {
        let flags = *bytes.get(core::mem::offset_of!(Event, flags))?;
        let at = blocks_at(bytes)?;
        let block = bytes.get(at..at + CT_SIZE)?;
        if flags & FLAG_CT == 0 {
            return None;
        }
        // SAFETY: `block` holds CT_SIZE bytes; Ct is plain data valid for any
        // bit pattern, and read_unaligned copes with the ring buffer's alignment.
        Some(unsafe { core::ptr::read_unaligned(block.as_ptr().cast::<Self>()) })
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
        let at = blocks_at(bytes)? + CT_SIZE;
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
