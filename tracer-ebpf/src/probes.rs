//! Entry points. Single kprobes have one program per `struct sk_buff *`
//! argument position (like pwru); a kprobe-multi link has one program for
//! all, told the position by each function's cookie. Tracepoint programs
//! come one per position too, reading the raw tracepoint arguments (the
//! same code loads as `tp_btf` or `raw_tp`); each reads only the arguments
//! its position needs, since the verifier rejects reads past a
//! tracepoint's last argument.

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_pid_tgid,
        generated::{bpf_get_attach_cookie, bpf_get_func_ip, bpf_probe_read_kernel},
    },
    macros::{kprobe, kretprobe, raw_tracepoint},
    programs::{ProbeContext, RawTracePointContext, RetProbeContext},
};
use tracer_common::{config::CFG_CALLER, cookie, limits::PROBE_ID_FREES, names};

use crate::{
    capture::{Site, handle},
    filter::skbtrace_probe_id,
    maps::{CLONING, TRACKED},
};

#[inline(always)]
fn kprobe_site(ctx: &ProbeContext, reason: Option<u32>) -> Site {
    let id = skbtrace_probe_id();
    Site {
        // SAFETY: `ctx` is this kprobe's context, as bpf_get_func_ip requires.
        func_ip: unsafe { bpf_get_func_ip(ctx.as_ptr()) },
        probe_id: id & !PROBE_ID_FREES,
        reason,
        location: caller(ctx),
        frees: id & PROBE_ID_FREES != 0,
        nft: None,
    }
}

/// The return address at the top of the stack on function entry (x86-64).
#[inline(always)]
fn caller(ctx: &ProbeContext) -> u64 {
    if crate::capture::config_flags() & CFG_CALLER == 0 {
        return 0;
    }
    // SAFETY: `ctx.regs` is the probe's saved registers, which the kernel passes in.
    let sp = unsafe { (*ctx.regs).rsp };
    let mut ret = 0u64;
    // SAFETY: the helper checks the kernel address and writes 8 bytes into `ret`.
    unsafe { bpf_probe_read_kernel((&raw mut ret).cast(), 8, sp as *const _) };
    ret
}

#[inline(always)]
fn kprobe_arg(ctx: &ProbeContext, n: usize) -> u64 {
    ctx.arg::<u64>(n).unwrap_or(0)
}

/// Argument `n` (0-based) when `n` is known only at run time (x86-64).
/// LLVM turns a match on `n` into one read at a computed offset, which the
/// verifier refuses on the context; a helper read at that address it takes.
#[inline(always)]
pub fn kprobe_arg_at(ctx: &ProbeContext, n: usize) -> u64 {
    let regs = ctx.regs;
    // SAFETY: only addresses of fields are taken; the helper reads them.
    let field: *const u64 = unsafe {
        match n {
            0 => &raw const (*regs).rdi,
            1 => &raw const (*regs).rsi,
            2 => &raw const (*regs).rdx,
            3 => &raw const (*regs).rcx,
            4 => &raw const (*regs).r8,
            _ => &raw const (*regs).r9,
        }
    };
    let mut value = 0u64;
    // SAFETY: the helper checks the address and writes 8 bytes into `value`.
    unsafe { bpf_probe_read_kernel((&raw mut value).cast(), 8, field.cast()) };
    value
}

macro_rules! kprobe_at {
    ($name:ident, $pos:expr) => {
        #[kprobe]
        pub fn $name(ctx: ProbeContext) -> u32 {
            handle(&ctx, kprobe_arg(&ctx, $pos), kprobe_site(&ctx, None))
        }
    };
}

kprobe_at!(kprobe_skb_0, 0);
kprobe_at!(kprobe_skb_1, 1);
kprobe_at!(kprobe_skb_2, 2);
kprobe_at!(kprobe_skb_3, 3);
kprobe_at!(kprobe_skb_4, 4);
crate::names::check_program!(kprobe_skb_0, names::KPROBE_SKB[0]);
crate::names::check_program!(kprobe_skb_1, names::KPROBE_SKB[1]);
crate::names::check_program!(kprobe_skb_2, names::KPROBE_SKB[2]);
crate::names::check_program!(kprobe_skb_3, names::KPROBE_SKB[3]);
crate::names::check_program!(kprobe_skb_4, names::KPROBE_SKB[4]);

/// `kfree_skb_reason(struct sk_buff *skb, enum skb_drop_reason reason)` (≤ 6.10).
#[kprobe]
pub fn kprobe_drop_skb_0_reason_1(ctx: ProbeContext) -> u32 {
    let reason = kprobe_arg(&ctx, 1) as u32;
    handle(&ctx, kprobe_arg(&ctx, 0), kprobe_site(&ctx, Some(reason)))
}
crate::names::check_program!(kprobe_drop_skb_0_reason_1, names::KPROBE_DROP_SKB_0_REASON_1);

/// `sk_skb_reason_drop(struct sock *sk, struct sk_buff *skb, enum skb_drop_reason reason)` (≥ 6.11).
#[kprobe]
pub fn kprobe_drop_skb_1_reason_2(ctx: ProbeContext) -> u32 {
    let reason = kprobe_arg(&ctx, 2) as u32;
    handle(&ctx, kprobe_arg(&ctx, 1), kprobe_site(&ctx, Some(reason)))
}
crate::names::check_program!(kprobe_drop_skb_1_reason_2, names::KPROBE_DROP_SKB_1_REASON_2);

/// Every function of a kprobe-multi link: its cookie says which argument
/// is the skb, which the drop reason, and whether the skb is freed here.
#[kprobe]
pub fn kprobe_multi_skb(ctx: ProbeContext) -> u32 {
    // SAFETY: `ctx` is this kprobe-multi program's context, as bpf_get_attach_cookie requires.
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    let skb = kprobe_arg_at(&ctx, cookie::skb_arg(cookie));
    let reason = cookie::reason_arg(cookie).map(|n| kprobe_arg_at(&ctx, n) as u32);
    let site = Site {
        // SAFETY: `ctx` is this kprobe's context, as bpf_get_func_ip requires.
        func_ip: unsafe { bpf_get_func_ip(ctx.as_ptr()) },
        probe_id: 0,
        reason,
        location: caller(&ctx),
        frees: cookie::frees(cookie),
        nft: None,
    };
    handle(&ctx, skb, site)
}
crate::names::check_program!(kprobe_multi_skb, names::KPROBE_MULTI_SKB);

/// `__nft_trace_packet` (`--nft-trace`): nf_tables's verdict on the skb
/// of `pkt->skb`; the arguments' positions differ per kernel (`nft.rs`).
#[kprobe]
pub fn kprobe_nft_trace(ctx: ProbeContext) -> u32 {
    let (skb, args) = crate::nft::args(&ctx);
    let site = Site {
        // SAFETY: `ctx` is this kprobe's context, as bpf_get_func_ip requires.
        func_ip: unsafe { bpf_get_func_ip(ctx.as_ptr()) },
        probe_id: 0,
        reason: None,
        location: caller(&ctx),
        frees: false,
        nft: Some(args),
    };
    handle(&ctx, skb, site)
}
crate::names::check_program!(kprobe_nft_trace, names::KPROBE_NFT_TRACE);

#[inline(always)]
fn tp_site(reason: Option<u32>, location: u64) -> Site {
    let id = skbtrace_probe_id();
    Site { func_ip: 0, probe_id: id & !PROBE_ID_FREES, reason, location, frees: id & PROBE_ID_FREES != 0, nft: None }
}

macro_rules! tracepoint_at {
    ($name:ident, $pos:expr) => {
        #[raw_tracepoint]
        pub fn $name(ctx: RawTracePointContext) -> u32 {
            handle(&ctx, ctx.arg::<u64>($pos), tp_site(None, 0))
        }
    };
}

tracepoint_at!(tp_skb_0, 0);
tracepoint_at!(tp_skb_1, 1);
tracepoint_at!(tp_skb_2, 2);
tracepoint_at!(tp_skb_3, 3);
crate::names::check_program!(tp_skb_0, names::TP_SKB[0]);
crate::names::check_program!(tp_skb_1, names::TP_SKB[1]);
crate::names::check_program!(tp_skb_2, names::TP_SKB[2]);
crate::names::check_program!(tp_skb_3, names::TP_SKB[3]);

/// `skb:kfree_skb(struct sk_buff *skb, void *location, enum skb_drop_reason reason, ...)`.
#[raw_tracepoint]
pub fn tp_kfree_skb(ctx: RawTracePointContext) -> u32 {
    let reason = ctx.arg::<u64>(2) as u32;
    let location = ctx.arg::<u64>(1);
    handle(&ctx, ctx.arg::<u64>(0), tp_site(Some(reason), location))
}
crate::names::check_program!(tp_kfree_skb, names::TP_KFREE_SKB);

/// Entry of `skb_clone`, `skb_copy`…: remembers a tracked skb being copied.
#[kprobe]
pub fn kprobe_clone_entry(ctx: ProbeContext) -> u32 {
    let skb = kprobe_arg(&ctx, 0);
    // SAFETY: TRACKED's values are plain u8s; the reference is dropped at once.
    if skb != 0 && unsafe { TRACKED.get(&skb) }.is_some() {
        let _ = CLONING.insert(&bpf_get_current_pid_tgid(), &skb, 0);
    }
    0
}
crate::names::check_program!(kprobe_clone_entry, names::KPROBE_CLONE_ENTRY);

/// Return of `skb_clone`, `skb_copy`…: the copy of a tracked skb is tracked too.
#[kretprobe]
pub fn kretprobe_clone_exit(ctx: RetProbeContext) -> u32 {
    let task = bpf_get_current_pid_tgid();
    // SAFETY: CLONING's values are plain u64s; the reference is dropped at once.
    if unsafe { CLONING.get(&task) }.is_some() {
        let _ = CLONING.remove(&task);
        let copy: u64 = ctx.ret();
        if copy != 0 {
            let _ = TRACKED.insert(&copy, &1, 0);
        }
    }
    0
}
crate::names::check_program!(kretprobe_clone_exit, names::KRETPROBE_CLONE_EXIT);
