//! Placeholders that user space replaces before load.
//!
//! The loader finds these subprograms by symbol name and swaps their bodies
//! for generated code: the pcap filter compiled from the user's expression,
//! the `--filter-skb-expr` expression, and, for each loaded copy of a tracepoint program, a function returning
//! that copy's probe id. The bodies below only keep the calls and arguments
//! alive through LLVM (volatile reads stop it from folding them away).

use core::ptr::read_volatile;

#[unsafe(no_mangle)]
static SKBTRACE_PLACEHOLDER: u32 = 1;

/// Returns non-zero when the packet at `data` (`len` bytes copied from the
/// MAC header, of a packet `wire_len` bytes long from there) matches the
/// user's pcap expression.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn skbtrace_filter_l2(data: *const u8, len: u32, wire_len: u32) -> u32 {
    // SAFETY: placeholders that user space replaces before load; the reads only keep LLVM from folding the body away.
    unsafe { read_volatile(data) as u32 ^ len ^ wire_len ^ read_volatile(&SKBTRACE_PLACEHOLDER) }
}

/// Same as [`skbtrace_filter_l2`], for bytes from the network header.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn skbtrace_filter_l3(data: *const u8, len: u32, wire_len: u32) -> u32 {
    // SAFETY: as above.
    unsafe { read_volatile(data) as u32 ^ len ^ wire_len ^ read_volatile(&SKBTRACE_PLACEHOLDER) }
}

/// Returns 1 when the skb at `skb` matches the user's `--filter-skb-expr`,
/// 0 otherwise (`tracer/src/filter/skb_expr.rs` states the contract).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn skbtrace_filter_skb_expr(skb: u64) -> u32 {
    // SAFETY: as above.
    unsafe { (skb ^ read_volatile(&SKBTRACE_PLACEHOLDER) as u64) as u32 }
}
crate::names::check_program!(skbtrace_filter_skb_expr, tracer_common::limits::FILTER_SKB_EXPR_SYMBOL);

/// The probe id of this loaded copy of a tracepoint program.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn skbtrace_probe_id() -> u32 {
    // SAFETY: as above.
    unsafe { read_volatile(&SKBTRACE_PLACEHOLDER) }
}
