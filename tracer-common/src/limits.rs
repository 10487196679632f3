//! Sizes both sides must agree on.

/// Largest number of packet bytes an event can carry (`--snaplen` is capped here).
pub const SNAPLEN_MAX: usize = 256;

/// Default `--snaplen`.
pub const SNAPLEN_DEFAULT: u32 = 128;

/// Default size of the event ring buffer, in bytes (a power of two).
pub const RING_BYTES_DEFAULT: u32 = 8 << 20;

/// Default size of the map that remembers tracked skbs.
pub const TRACK_ENTRIES_DEFAULT: u32 = 16384;

/// Number of entries in the stack-trace map.
pub const STACK_ENTRIES: u32 = 16384;

/// skbs being cloned at once, for `--filter-track-skb`.
pub const CLONING_ENTRIES: u32 = 4096;

/// Probes the loss counter has a slot for (keyed by function address for
/// kprobes, probe id for tracepoints).
pub const LOST_ENTRIES: u32 = 8192;

/// Name of the eBPF subprogram that user space replaces with the compiled
/// pcap filter for captures that start at the MAC header.
pub const FILTER_L2_SYMBOL: &str = "skbtrace_filter_l2";
/// Same, for captures that start at the network header.
pub const FILTER_L3_SYMBOL: &str = "skbtrace_filter_l3";
/// Name of the eBPF subprogram that user space replaces with the compiled
/// `--filter-skb-expr` expression; it takes the `struct sk_buff *`.
pub const FILTER_SKB_EXPR_SYMBOL: &str = "skbtrace_filter_skb_expr";
/// Name of the eBPF subprogram that user space replaces, per loaded copy of a
/// tracepoint program, with one that returns that copy's probe id.
pub const PROBE_ID_SYMBOL: &str = "skbtrace_probe_id";

/// Bit set in a probe id (the value the probe-id placeholder returns) when the
/// probe is a point where the skb is freed, so `--filter-track-skb` forgets it.
pub const PROBE_ID_FREES: u32 = 1 << 31;
