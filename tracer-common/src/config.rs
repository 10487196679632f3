//! Read-only configuration that user space writes into the eBPF object before
//! load: kernel struct offsets read from the running kernel's BTF, and the
//! in-kernel filters. Nothing kernel-specific is compiled into the programs.

/// Byte offsets of the kernel fields the programs read. Taken from the
/// running kernel's BTF; a field the kernel lacks is `OFFSET_NONE`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offsets {
    pub skb_head: u32,
    pub skb_data: u32,
    pub skb_len: u32,
    pub skb_mark: u32,
    pub skb_protocol: u32,
    pub skb_mac_header: u32,
    pub skb_network_header: u32,
    pub skb_tail: u32,
    pub skb_dev: u32,
    pub skb_sk: u32,
    pub dev_ifindex: u32,
    pub dev_name: u32,
    pub dev_mtu: u32,
    /// `net_device.nd_net.net` (a `possible_net_t`).
    pub dev_nd_net: u32,
    /// `sock.__sk_common.skc_net.net`.
    pub sk_net: u32,
    /// `net.ns.inum`.
    pub net_inum: u32,
    /// How many leading bytes of `struct sk_buff` to read in one go (its
    /// size, at most `SKB_READ_MAX`); fields inside are taken from that copy.
    pub skb_read_len: u32,
    /// Conntrack fields, for `CFG_CONNTRACK`.
    pub ct: CtOffsets,
}

/// `struct nf_conntrack_tuple` as the kernel lays it out, and as the eBPF
/// side reads a tuple: one masked offset per tuple, then loads at these
/// fixed places (one offset per field cost a load, a mask and an add each,
/// ~25 instructions per tuple). User space checks BTF against it
/// (`btf/conntrack.rs`): a kernel laid out otherwise has no conntrack
/// output rather than a wrong one. The layout has not changed since the
/// tuple became protocol-independent (2.6.15).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NfConntrackTuple {
    /// `src.u3`: `union nf_inet_addr`.
    pub src_u3: [u32; 4],
    /// `src.u.all`.
    pub src_u: u16,
    /// `src.l3num`.
    pub l3num: u16,
    /// `dst.u3`.
    pub dst_u3: [u32; 4],
    /// `dst.u.all`.
    pub dst_u: u16,
    /// `dst.protonum`.
    pub protonum: u8,
    /// `dst.dir`.
    pub dir: u8,
}

/// Offsets of the conntrack fields the programs read. `skb_nfct` is
/// `OFFSET_NONE` when the kernel's BTF has no conntrack (the programs then
/// never read an entry). The rest are in `struct nf_conn`, each with its
/// whole field within the first `read_len` ≤ `CT_READ_MAX` bytes, hence
/// `u16`s; `mark` and the zone are `CT_OFFSET_NONE` on kernels built
/// without conntrack marks or zones.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtOffsets {
    /// `sk_buff._nfct`.
    pub skb_nfct: u32,
    pub status: u16,
    pub mark: u16,
    pub zone_id: u16,
    pub zone_dir: u16,
    /// `tuplehash[IP_CT_DIR_ORIGINAL].tuple`, an [`NfConntrackTuple`].
    pub orig: u16,
    /// `tuplehash[IP_CT_DIR_REPLY].tuple`.
    pub reply: u16,
    /// How many leading bytes of `struct nf_conn` the programs read, in one
    /// go: up to the end of the last field above.
    pub read_len: u16,
    pub _pad: u16,
}

/// Most bytes of `struct nf_conn` read at once.
pub const CT_READ_MAX: u32 = 256;

/// An `nf_conn` field this kernel does not have.
pub const CT_OFFSET_NONE: u16 = u16::MAX;

impl CtOffsets {
    /// No conntrack: the programs never read an entry.
    pub const NONE: Self = Self {
        skb_nfct: OFFSET_NONE,
        status: CT_OFFSET_NONE,
        mark: CT_OFFSET_NONE,
        zone_id: CT_OFFSET_NONE,
        zone_dir: CT_OFFSET_NONE,
        orig: CT_OFFSET_NONE,
        reply: CT_OFFSET_NONE,
        read_len: 0,
        _pad: 0,
    };
}

/// Most bytes of `struct sk_buff` read at once.
pub const SKB_READ_MAX: u32 = 256;

/// A bitfield inside one aligned 64-bit word: the word's byte offset, where
/// the field starts in it (bits, from the least significant) and its width.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BitField {
    pub word: u16,
    pub shift: u8,
    pub bits: u8,
}

impl BitField {
    /// The field's value in `word`, the 64-bit word at [`Self::word`].
    pub const fn get(self, word: u64) -> u64 {
        let mask = if self.bits >= 64 { u64::MAX } else { (1u64 << self.bits) - 1 };
        (word >> (self.shift & 63)) & mask
    }
}

/// For `--nft-trace`: where `__nft_trace_packet`'s arguments are, and the
/// offsets of what the program reads behind them, from nf_tables's BTF.
/// The function changed shape across kernels (6.1: `(info, chain, type)`
/// with the packet, rule and verdict in `info`; 6.12 and 6.18: `(pkt,
/// verdict, rule, info, type)`, the chain found after the rule's chain's
/// last rule), so each piece
/// comes either from an argument or from `struct nft_traceinfo`:
/// `NFT_ARG_NONE` and `NFT_OFFSET_NONE` say which.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NftOffsets {
    /// 0-based argument positions of `__nft_trace_packet`.
    pub arg_pkt: u8,
    pub arg_verdict: u8,
    pub arg_rule: u8,
    pub arg_info: u8,
    pub arg_chain: u8,
    pub arg_type: u8,
    pub _pad: [u8; 2],
    /// `struct nft_traceinfo`.
    pub info_pkt: u16,
    pub info_basechain: u16,
    pub info_rule: u16,
    pub info_verdict: u16,
    /// `struct nft_pktinfo`.
    pub pkt_skb: u16,
    pub pkt_state: u16,
    /// `struct nf_hook_state.hook`.
    pub state_hook: u16,
    /// `sizeof(struct nft_rule_dp)`: the next rule is this plus `dlen` on.
    pub rule_size: u16,
    /// `struct nft_rule_dp`'s bitfields.
    pub rule_is_last: BitField,
    pub rule_dlen: BitField,
    pub rule_handle: BitField,
    /// `struct nft_rule_dp_last.chain`, after a chain's last rule (not in 6.1).
    pub last_chain: u16,
    /// `struct nft_base_chain`.
    pub basechain_policy: u16,
    pub basechain_chain: u16,
    /// `struct nft_chain`.
    pub chain_table: u16,
    pub chain_name: u16,
    /// `struct nft_table`.
    pub table_name: u16,
    pub table_family: BitField,
    /// `struct nft_verdict`.
    pub verdict_code: u16,
    pub verdict_chain: u16,
}

/// An argument `__nft_trace_packet` does not have on this kernel.
pub const NFT_ARG_NONE: u8 = u8::MAX;
/// A field this kernel's nf_tables does not have.
pub const NFT_OFFSET_NONE: u16 = u16::MAX;
/// Rules walked at most to find the chain a rule is in (without a chain
/// argument); past
/// them the event names the base chain and says so (`NFT_CHAIN_BASE`).
pub const NFT_RULE_WALK_MAX: u32 = 64;

pub const OFFSET_NONE: u32 = u32::MAX;

/// Config flag: keep following an skb once it matched (`--filter-track-skb`).
pub const CFG_TRACK_SKB: u32 = 1 << 0;
/// Config flag: record the kernel stack (`--output-stack`).
pub const CFG_STACK: u32 = 1 << 1;
/// Config flag: record the caller's address (`--output-caller`).
pub const CFG_CALLER: u32 = 1 << 2;
/// Config flag: a pcap filter is compiled in; call it.
pub const CFG_PCAP: u32 = 1 << 3;
/// Config flag: filter on `mark & mark_mask == mark`.
pub const CFG_MARK: u32 = 1 << 4;
pub const CFG_NETNS: u32 = 1 << 5;
pub const CFG_IFINDEX: u32 = 1 << 6;
pub const CFG_PID: u32 = 1 << 7;
/// Config flag: an skb expression is compiled in (`--filter-skb-expr`); call it.
pub const CFG_SKB_EXPR: u32 = 1 << 8;
/// Config flag: copy the skb's conntrack entry into its event (`FLAG_CT`).
pub const CFG_CONNTRACK: u32 = 1 << 9;
/// Config flag: `--nft-trace`; `Config::nft` holds nf_tables's layout.
pub const CFG_NFT_TRACE: u32 = 1 << 10;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub offsets: Offsets,
    /// `CFG_*` bits.
    pub flags: u32,
    /// Bytes to copy from the packet, at most `SNAPLEN_MAX`.
    pub snaplen: u32,
    pub mark: u32,
    pub mark_mask: u32,
    pub netns: u32,
    pub ifindex: u32,
    pub pid: u32,
    /// Wake the reader only once this many bytes wait in the ring buffer;
    /// it also drains on a short timer, so quiet periods still show promptly.
    pub wakeup_bytes: u32,
    /// With `CFG_PCAP`: the packet bytes the filter can read when they start
    /// at the MAC header, and at the network header. The copy made before
    /// filtering covers these and `snaplen`.
    pub filter_reads_l2: u32,
    pub filter_reads_l3: u32,
    /// With `CFG_NFT_TRACE`.
    pub nft: NftOffsets,
}

const _: () = assert!(core::mem::size_of::<NfConntrackTuple>() == 40);
const _: () = assert!(core::mem::align_of::<NfConntrackTuple>() == 4);
const _: () = assert!(core::mem::size_of::<CtOffsets>() == 4 + 8 * 2);
const _: () = assert!(CT_READ_MAX < CT_OFFSET_NONE as u32);
const _: () = assert!(core::mem::size_of::<BitField>() == 4);
const _: () = assert!(core::mem::size_of::<NftOffsets>() == 8 + 8 * 2 + 3 * 4 + 6 * 2 + 4 + 2 * 2);
const _: () = assert!(core::mem::size_of::<Config>() == 17 * 4 + 20 + 10 * 4 + 56);

impl NftOffsets {
    const NO_BITS: BitField = BitField { word: NFT_OFFSET_NONE, shift: 0, bits: 0 };
    /// No `--nft-trace`: the program is never attached.
    pub const NONE: Self = Self {
        arg_pkt: NFT_ARG_NONE,
        arg_verdict: NFT_ARG_NONE,
        arg_rule: NFT_ARG_NONE,
        arg_info: NFT_ARG_NONE,
        arg_chain: NFT_ARG_NONE,
        arg_type: NFT_ARG_NONE,
        _pad: [0; 2],
        info_pkt: NFT_OFFSET_NONE,
        info_basechain: NFT_OFFSET_NONE,
        info_rule: NFT_OFFSET_NONE,
        info_verdict: NFT_OFFSET_NONE,
        pkt_skb: NFT_OFFSET_NONE,
        pkt_state: NFT_OFFSET_NONE,
        state_hook: NFT_OFFSET_NONE,
        rule_size: NFT_OFFSET_NONE,
        rule_is_last: Self::NO_BITS,
        rule_dlen: Self::NO_BITS,
        rule_handle: Self::NO_BITS,
        last_chain: NFT_OFFSET_NONE,
        basechain_policy: NFT_OFFSET_NONE,
        basechain_chain: NFT_OFFSET_NONE,
        chain_table: NFT_OFFSET_NONE,
        chain_name: NFT_OFFSET_NONE,
        table_name: NFT_OFFSET_NONE,
        table_family: Self::NO_BITS,
        verdict_code: NFT_OFFSET_NONE,
        verdict_chain: NFT_OFFSET_NONE,
    };
}

impl Config {
    pub const fn zeroed() -> Self {
        Self {
            offsets: Offsets {
                skb_head: 0,
                skb_data: 0,
                skb_len: 0,
                skb_mark: 0,
                skb_protocol: 0,
                skb_mac_header: 0,
                skb_network_header: 0,
                skb_tail: 0,
                skb_dev: 0,
                skb_sk: 0,
                dev_ifindex: 0,
                dev_name: 0,
                dev_mtu: 0,
                dev_nd_net: 0,
                sk_net: 0,
                net_inum: 0,
                skb_read_len: 0,
                ct: CtOffsets::NONE,
            },
            flags: 0,
            snaplen: 0,
            mark: 0,
            mark_mask: 0,
            netns: 0,
            ifindex: 0,
            pid: 0,
            wakeup_bytes: 0,
            filter_reads_l2: 0,
            filter_reads_l3: 0,
            nft: NftOffsets::NONE,
        }
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C), no padding (size asserted above), every bit pattern valid.
unsafe impl aya::Pod for Config {}
