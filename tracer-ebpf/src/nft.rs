//! nf_tables's verdict on an skb, read at `__nft_trace_packet`
//! (`--nft-trace`), into the event's [`Nft`] block.
//!
//! Contract:
//! - The function runs for every rule that matched without a final verdict,
//!   every final verdict, every chain's end and every base chain's policy,
//!   of every packet in every netns, while some rule sets `meta nftrace`
//!   (user space installs one: `nft_trace.rs`). Its `if (!info->trace)`
//!   test is inside it, so the kprobe at its entry sees them all.
//! - [`args`] takes the raw pointers from the arguments or from `struct
//!   nft_traceinfo`, as `NftOffsets` says where each is on this kernel
//!   (`NFT_ARG_NONE`: not an argument here). The skb is `pkt->skb`. The
//!   program then hands the skb to `capture::handle` like any probe, and
//!   only for an skb that passes the filters does [`fill`] read the rest:
//!   a packet the filters reject costs the argument reads and one read.
//! - [`fill`] writes every field of the block; a read that fails leaves 0
//!   (names empty).
//! - Verdict: `verdict->code`; for a policy, the base chain's policy.
//!   Handle: the rule's 42-bit `handle`, 0 without a rule or at a chain's
//!   end (the `is_last` entry is no rule).
//! - Chain: the argument where the function has one (6.1). Else the rule's:
//!   rules lie one after another (`rule + rule_size + dlen`) and the entry
//!   after a chain's last rule is an `nft_rule_dp_last` whose `chain` names
//!   it, as the kernel's own `nft_trace_get_chain` finds it; at most
//!   `NFT_RULE_WALK_MAX` rules are walked, past them (or without a rule, a
//!   policy) it is the base chain, flagged `NFT_CHAIN_BASE` in the first case.
//! - Table: `chain->table`, its name and family (a bitfield). Hook:
//!   `pkt->state->hook`. A jump's or goto's target: `verdict->chain->name`.

use aya_ebpf::{
    helpers::generated::{bpf_probe_read_kernel, bpf_probe_read_kernel_str},
    programs::ProbeContext,
};
use tracer_common::{
    config::{NFT_ARG_NONE, NFT_OFFSET_NONE, NFT_RULE_WALK_MAX, NftOffsets},
    event::{NFT_CHAIN_BASE, NFT_TRACETYPE_POLICY, Nft},
};

use crate::capture::nft_offsets;

/// `NFT_JUMP`, `NFT_GOTO` (`enum nft_verdicts`, UAPI).
const NFT_JUMP: i32 = -3;
const NFT_GOTO: i32 = -4;

/// The raw pointers `__nft_trace_packet` was called with (or found in its
/// `info`), read before the filters.
pub struct NftArgs {
    pub pkt: u64,
    pub verdict: u64,
    pub rule: u64,
    pub chain: u64,
    pub basechain: u64,
    pub trace_type: u32,
}

/// The skb and the raw pointers.
#[inline(always)]
pub fn args(ctx: &ProbeContext) -> (u64, NftArgs) {
    let o = nft_offsets();
    let arg = |n: u8| if n == NFT_ARG_NONE { 0 } else { crate::probes::kprobe_arg_at(ctx, n as usize) };
    let info = arg(o.arg_info);
    let from_info = |n: u8, off: u16| if n != NFT_ARG_NONE { arg(n) } else { read::<u64>(info, off) };
    let pkt = from_info(o.arg_pkt, o.info_pkt);
    let a = NftArgs {
        pkt,
        verdict: from_info(o.arg_verdict, o.info_verdict),
        rule: from_info(o.arg_rule, o.info_rule),
        chain: arg(o.arg_chain),
        basechain: read::<u64>(info, o.info_basechain),
        trace_type: arg(o.arg_type) as u32,
    };
    (read::<u64>(pkt, o.pkt_skb), a)
}

/// Fills `nft` for an skb that passed the filters.
#[inline(always)]
pub fn fill(nft: &mut Nft, a: &NftArgs) {
    let o = nft_offsets();
    let ty = a.trace_type as u8;
    nft.trace_type = ty;
    nft.flags = 0;
    let code: i32 = if ty == NFT_TRACETYPE_POLICY {
        i32::from(read::<u8>(a.basechain, o.basechain_policy))
    } else {
        read::<i32>(a.verdict, o.verdict_code)
    };
    nft.verdict = code;
    let state: u64 = read(a.pkt, o.pkt_state);
    nft.hook = read::<u8>(state, o.state_hook);
    nft.handle = 0;
    if a.rule != 0 {
        let word: u64 = read(a.rule, o.rule_handle.word);
        let head: u64 = read(a.rule, o.rule_is_last.word);
        if o.rule_is_last.get(head) == 0 {
            nft.handle = o.rule_handle.get(word);
        }
    }
    let chain = if a.chain != 0 {
        a.chain
    } else {
        match rule_chain(a.rule, &o) {
            Some(chain) => chain,
            None => {
                if a.rule != 0 {
                    nft.flags |= NFT_CHAIN_BASE;
                }
                base_chain(a.basechain, &o)
            }
        }
    };
    let table: u64 = read(chain, o.chain_table);
    read_name(&mut nft.chain, read(chain, o.chain_name));
    read_name(&mut nft.table, read(table, o.table_name));
    let family: u64 = read(table, o.table_family.word);
    nft.family = o.table_family.get(family) as u8;
    if code == NFT_JUMP || code == NFT_GOTO {
        let target: u64 = read(a.verdict, o.verdict_chain);
        read_name(&mut nft.target, read(target, o.chain_name));
    } else {
        nft.target[0] = 0;
    }
}

/// `&basechain->chain`.
#[inline(always)]
fn base_chain(basechain: u64, o: &NftOffsets) -> u64 {
    if basechain == 0 || o.basechain_chain == NFT_OFFSET_NONE { 0 } else { basechain + u64::from(o.basechain_chain) }
}

/// The chain `rule` is in, from the entry after its chain's last rule.
/// The loop only finds that entry and has one way out, so that the
/// verifier meets the same state after it whichever rule ended the walk.
#[inline(always)]
fn rule_chain(rule: u64, o: &NftOffsets) -> Option<u64> {
    if rule == 0 || o.last_chain == NFT_OFFSET_NONE {
        return None;
    }
    let mut at = rule;
    let mut last = 0u64;
    for _ in 0..NFT_RULE_WALK_MAX {
        let mut word = 0u64;
        // SAFETY: the helper checks the kernel address and writes 8 bytes into `word`.
        let ret = unsafe {
            bpf_probe_read_kernel((&raw mut word).cast(), 8, (at + u64::from(o.rule_is_last.word)) as *const _)
        };
        if ret != 0 {
            break;
        }
        if o.rule_is_last.get(word) != 0 {
            last = at;
            break;
        }
        at += u64::from(o.rule_size) + o.rule_dlen.get(word);
    }
    let chain: u64 = read(last, o.last_chain);
    (chain != 0).then_some(chain)
}

/// Reads a `T` at `base + off`; zero when absent or unreadable.
#[inline(always)]
fn read<T: Copy + Default>(base: u64, off: u16) -> T {
    if base == 0 || off == NFT_OFFSET_NONE {
        return T::default();
    }
    let mut out = T::default();
    // SAFETY: the helper checks the kernel address and writes at most size_of::<T>() bytes into `out`.
    let ret = unsafe {
        bpf_probe_read_kernel(
            (&raw mut out).cast(),
            core::mem::size_of::<T>() as u32,
            (base + u64::from(off)) as *const _,
        )
    };
    if ret != 0 { T::default() } else { out }
}

/// A NUL-terminated name at `src` into `dst` (cut to its size); empty when unreadable.
#[inline(always)]
fn read_name<const N: usize>(dst: &mut [u8; N], src: u64) {
    dst[0] = 0;
    if src != 0 {
        // SAFETY: writes at most N bytes into `dst`; the helper checks the source.
        unsafe { bpf_probe_read_kernel_str(dst.as_mut_ptr().cast(), N as u32, src as *const _) };
    }
}
