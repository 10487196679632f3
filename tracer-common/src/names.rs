//! Names that cross from the eBPF object to user space: programs, maps and
//! the globals user space patches. The eBPF side checks each of its names
//! against these at compile time (`tracer-ebpf/src/names.rs`), so renaming
//! a program or map on one side without the other fails to build.

/// A program per skb argument position of a kprobe, 0-based (`kprobe_skb_0`
/// reads the first argument).
pub const KPROBE_SKB: [&str; 5] = ["kprobe_skb_0", "kprobe_skb_1", "kprobe_skb_2", "kprobe_skb_3", "kprobe_skb_4"];
/// `kfree_skb_reason(skb, reason)` (Linux ≤ 6.10): skb in argument 0, reason in 1.
pub const KPROBE_DROP_SKB_0_REASON_1: &str = "kprobe_drop_skb_0_reason_1";
/// `sk_skb_reason_drop(sk, skb, reason)` (Linux ≥ 6.11): skb in argument 1, reason in 2.
pub const KPROBE_DROP_SKB_1_REASON_2: &str = "kprobe_drop_skb_1_reason_2";
/// The one program of every kprobe-multi link.
pub const KPROBE_MULTI_SKB: &str = "kprobe_multi_skb";
/// Entry and return of `skb_clone` and friends, for `--filter-track-skb`.
pub const KPROBE_CLONE_ENTRY: &str = "kprobe_clone_entry";
pub const KRETPROBE_CLONE_EXIT: &str = "kretprobe_clone_exit";
/// `__nft_trace_packet`, nf_tables's verdict on an skb (`--nft-trace`).
pub const KPROBE_NFT_TRACE: &str = "kprobe_nft_trace";
/// A program per skb argument position of a tracepoint, 0-based.
pub const TP_SKB: [&str; 4] = ["tp_skb_0", "tp_skb_1", "tp_skb_2", "tp_skb_3"];
/// `skb:kfree_skb`, which also reads the drop location and reason.
pub const TP_KFREE_SKB: &str = "tp_kfree_skb";

/// Every program in the object.
pub const PROGRAMS: [&str; 16] = [
    KPROBE_SKB[0],
    KPROBE_SKB[1],
    KPROBE_SKB[2],
    KPROBE_SKB[3],
    KPROBE_SKB[4],
    KPROBE_DROP_SKB_0_REASON_1,
    KPROBE_DROP_SKB_1_REASON_2,
    KPROBE_MULTI_SKB,
    KPROBE_CLONE_ENTRY,
    KRETPROBE_CLONE_EXIT,
    KPROBE_NFT_TRACE,
    TP_SKB[0],
    TP_SKB[1],
    TP_SKB[2],
    TP_SKB[3],
    TP_KFREE_SKB,
];

/// Event ring buffer.
pub const MAP_EVENTS: &str = "EVENTS";
/// Per-CPU scratch event.
pub const MAP_SCRATCH: &str = "SCRATCH";
/// Per-CPU copy of the skb's first bytes.
pub const MAP_SKB_COPY: &str = "SKB_COPY";
/// Events lost, per probe.
pub const MAP_LOST: &str = "LOST";
/// Tracked skbs.
pub const MAP_TRACKED: &str = "TRACKED";
/// Kernel stacks.
pub const MAP_STACKS: &str = "STACKS";
/// skbs being cloned, by task.
pub const MAP_CLONING: &str = "CLONING";
/// The read-only configuration global.
pub const GLOBAL_CONFIG: &str = "CONFIG";
/// Records of `--output-skb-metadata`, `--output-skb-cb`, `--output-skb` and
/// `--output-skb-shared-info` (`skb_out`).
pub const MAP_SKB_OUT: &str = "SKB_OUT";
/// Per-CPU buffer where such a record is built (`--set-percpu-buf`).
pub const MAP_SKB_OUT_BUF: &str = "SKB_OUT_BUF";
/// Their read-only configuration global (`skb_out::SkbOutConfig`).
pub const GLOBAL_SKB_OUT: &str = "SKB_OUT_CONFIG";

/// Whether two names are equal, in a `const` context.
pub const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}
