//! Maps shared by every program. User space sizes them before load.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf, StackTrace},
};
use tracer_common::{
    Event,
    config::SKB_READ_MAX,
    event::{CT_SIZE, EVENT_HEADER_SIZE, EVENT_SIZE, NFT_SIZE},
    limits::{CLONING_ENTRIES, LOST_ENTRIES, RING_BYTES_DEFAULT, SNAPLEN_MAX, STACK_ENTRIES, TRACK_ENTRIES_DEFAULT},
    names,
};

/// Events to user space.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(RING_BYTES_DEFAULT, 0);

/// Per-CPU slot where an event is built and filtered before it is copied
/// into `EVENTS`, so that nothing is reserved for skbs the filter rejects.
#[map]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// The verifier's bound of a record's packet bytes (`record_data_len` in
/// tracer-common), a mask: a multiple of 8 at least `SNAPLEN_MAX`.
pub const DATA_LEN_MASK: u32 = 2 * SNAPLEN_MAX as u32 - 8;
/// How far past the event a record may reach as the verifier bounds it: to
/// the conntrack and nf_tables blocks after `DATA_LEN_MASK` packet bytes, or
/// to the end of `Packet::copy`'s masked length (2 * SNAPLEN_MAX - 1).
const RECORD_BOUND: usize = {
    let blocks_end = EVENT_HEADER_SIZE + DATA_LEN_MASK as usize + CT_SIZE + NFT_SIZE;
    let copy_end = EVENT_HEADER_SIZE + 2 * SNAPLEN_MAX;
    if blocks_end > copy_end { blocks_end } else { copy_end }
};
const SCRATCH_SLACK: usize = RECORD_BOUND - EVENT_SIZE;

/// The record being built (`EVENT_HEADER_SIZE` in tracer-common): the
/// event, then room for what the verifier must see room for. It knows
/// `Packet::copy`'s length only as a mask's bound, 511, and the blocks'
/// offset after the packet bytes as one, 504 (+ `CT_SIZE` + `NFT_SIZE`).
/// Then the copy of the skb's `nf_conn`.
#[repr(C)]
pub struct Scratch {
    pub event: Event,
    pub slack: [u64; SCRATCH_SLACK.div_ceil(8)],
    /// 8-aligned: fields are loaded from it with aligned loads.
    pub nf_conn: [u64; crate::conntrack::CT_BUF / 8],
}

/// Per-CPU copy of the first bytes of the current `struct sk_buff`: one
/// read instead of one per field.
#[map]
pub static SKB_COPY: PerCpuArray<[u8; SKB_READ_MAX as usize]> = PerCpuArray::with_max_entries(1, 0);

/// Events that did not fit into `EVENTS`, keyed by probe (function address
/// for kprobes, probe id for tracepoints).
#[map]
pub static LOST: PerCpuHashMap<u64, u64> = PerCpuHashMap::with_max_entries(LOST_ENTRIES, 0);

/// skbs that matched once, for `--filter-track-skb`.
#[map]
pub static TRACKED: LruHashMap<u64, u8> = LruHashMap::with_max_entries(TRACK_ENTRIES_DEFAULT, 0);

/// Kernel stacks for `--output-stack`.
#[map]
pub static STACKS: StackTrace = StackTrace::with_max_entries(STACK_ENTRIES, 0);

/// skbs being cloned or copied right now, by task, for `--filter-track-skb`:
/// set on entry to `skb_clone` and friends, read on their return.
#[map]
pub static CLONING: HashMap<u64, u64> = HashMap::with_max_entries(CLONING_ENTRIES, 0);

crate::names::check_map!(EVENTS, names::MAP_EVENTS);
crate::names::check_map!(SCRATCH, names::MAP_SCRATCH);
crate::names::check_map!(SKB_COPY, names::MAP_SKB_COPY);
crate::names::check_map!(LOST, names::MAP_LOST);
crate::names::check_map!(TRACKED, names::MAP_TRACKED);
crate::names::check_map!(STACKS, names::MAP_STACKS);
crate::names::check_map!(CLONING, names::MAP_CLONING);
