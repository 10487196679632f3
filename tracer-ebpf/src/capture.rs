//! Builds one event from an skb: metadata, in-kernel filters, packet bytes,
//! pcap filter, then one copy into the ring buffer.

use core::ptr::read_volatile;

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns,
        generated::{bpf_get_current_comm, bpf_get_stackid, bpf_probe_read_kernel},
    },
};
use tracer_common::{
    Config, Event,
    config::{
        CFG_CALLER, CFG_CONNTRACK, CFG_IFINDEX, CFG_MARK, CFG_NETNS, CFG_PCAP, CFG_PID, CFG_SKB_EXPR, CFG_STACK,
        CFG_TRACK_SKB, CtOffsets, NftOffsets, OFFSET_NONE, SKB_READ_MAX,
    },
    event::{
        CT_SIZE, CT4_SIZE, Capture, EVENT_HEADER_SIZE, FLAG_CT4, FLAG_FREED, FLAG_HAS_REASON, FLAG_NFT, FLAG_TRACKED,
        NFT_SIZE, Nft,
    },
    limits::SNAPLEN_MAX,
};

const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;

use crate::{
    conntrack,
    filter::{skbtrace_filter_l2, skbtrace_filter_l3, skbtrace_filter_skb_expr},
    maps::{DATA_LEN_MASK, EVENTS, LOST, SCRATCH, SKB_COPY, STACKS, TRACKED},
};

/// Patched by user space into the object's data before load
/// (`loader.rs`, `patch_map_data`).
#[unsafe(no_mangle)]
static CONFIG: Config = Config::zeroed();
crate::names::check_map!(CONFIG, tracer_common::names::GLOBAL_CONFIG);

/// The `CFG_*` flags, for entry points that need them before `handle`.
#[inline(always)]
pub fn config_flags() -> u32 {
    // SAFETY: CONFIG is a plain static the kernel never writes; volatile so that LLVM keeps the load user space patched.
    unsafe { read_volatile(&CONFIG.flags) }
}

/// The conntrack offsets, read from the configuration where they are used:
/// `handle`'s copy of the configuration keeps every field it uses in a
/// stack slot of its own, and these 19 would take 152 of the 512 bytes.
#[inline(always)]
pub fn ct_offsets() -> CtOffsets {
    // SAFETY: CONFIG is plain data, read-only once loaded.
    unsafe { read_volatile(&CONFIG.offsets.ct) }
}

/// `sk_buff._nfct`'s offset alone: an skb without an entry costs one load
/// of it, not the 19 volatile loads of [`ct_offsets`].
#[inline(always)]
pub fn nfct_offset() -> u32 {
    // SAFETY: CONFIG is plain data, read-only once loaded.
    unsafe { read_volatile(&CONFIG.offsets.ct.skb_nfct) }
}

/// nf_tables's layout (`--nft-trace`), read where it is used, like
/// [`ct_offsets`].
#[inline(always)]
pub fn nft_offsets() -> NftOffsets {
    // SAFETY: CONFIG is plain data, read-only once loaded.
    unsafe { read_volatile(&CONFIG.nft) }
}

/// What a probe knows besides the skb.
pub struct Site {
    /// Kprobes: the probed function's address. Tracepoints: 0.
    pub func_ip: u64,
    pub probe_id: u32,
    pub reason: Option<u32>,
    pub location: u64,
    /// The skb is freed here: forget it after this event.
    pub frees: bool,
    /// `__nft_trace_packet`'s arguments: the event carries nf_tables's verdict.
    pub nft: Option<crate::nft::NftArgs>,
}

/// Reads a `T` at `base + off`; zero when the field is absent or unreadable.
#[inline(always)]
fn read<T: Copy + Default>(base: u64, off: u32) -> T {
    if base == 0 || off == OFFSET_NONE {
        return T::default();
    }
    let mut out = T::default();
    // SAFETY: the helper checks the kernel address and writes at most size_of::<T>() bytes into `out`.
    let ret = unsafe {
        bpf_probe_read_kernel((&raw mut out).cast(), core::mem::size_of::<T>() as u32, (base + off as u64) as *const _)
    };
    if ret != 0 { T::default() } else { out }
}

/// Reads `dst.len()` bytes at `base + off` straight into `dst` (no copy on
/// the stack); zeroes when the field is absent or unreadable.
#[inline(always)]
fn read_into<const N: usize>(dst: &mut [u8; N], base: u64, off: u32) {
    if base == 0 || off == OFFSET_NONE {
        *dst = [0; N];
        return;
    }
    // SAFETY: writes N bytes into `dst`; the helper checks the source and
    // zeroes `dst` when it cannot read it.
    unsafe { bpf_probe_read_kernel(dst.as_mut_ptr().cast(), N as u32, (base + off as u64) as *const _) };
}

/// The first bytes of an skb, read once.
pub struct SkbCopy {
    bytes: *const u8,
    len: u32,
    skb: u64,
}

impl SkbCopy {
    #[inline(always)]
    fn read(skb: u64, cfg: &Config) -> Self {
        let mut len = 0;
        let bytes = match SKB_COPY.get_ptr_mut(0) {
            Some(p) => {
                let want = cfg.offsets.skb_read_len.min(SKB_READ_MAX);
                // SAFETY: `p` points at SKB_COPY's per-CPU value, SKB_READ_MAX bytes, and `want` is at most that.
                if want > 0 && unsafe { bpf_probe_read_kernel(p.cast(), want, skb as *const _) } == 0 {
                    len = want;
                }
                p as *const u8
            }
            None => core::ptr::null(),
        };
        Self { bytes, len, skb }
    }

    /// A field at `off`, from the copy when it lies inside, else read.
    #[inline(always)]
    pub fn field<T: Copy + Default>(&self, off: u32) -> T {
        let size = core::mem::size_of::<T>() as u32;
        // The mask tells the verifier the offset's range.
        let o = off & (SKB_READ_MAX - 1);
        if off != OFFSET_NONE && o == off && o + size <= self.len && !self.bytes.is_null() {
            // SAFETY: `o + size <= self.len` was checked above and `bytes` holds `len` valid bytes of SKB_COPY.
            unsafe { core::ptr::read_unaligned(self.bytes.add(o as usize).cast::<T>()) }
        } else {
            read(self.skb, off)
        }
    }
}

#[inline(always)]
pub fn handle<C: EbpfContext>(ctx: &C, skb: u64, site: Site) -> u32 {
    if skb == 0 {
        return 0;
    }
    // SAFETY: as in config_flags: a read of the patched read-only static.
    let cfg: Config = unsafe { read_volatile(&CONFIG) };
    // SAFETY: TRACKED's values are plain u8s; the reference is dropped at once.
    let tracked = cfg.flags & CFG_TRACK_SKB != 0 && unsafe { TRACKED.get(&skb) }.is_some();
    let emitted = build_and_emit(ctx, skb, &cfg, &site, tracked);
    if cfg.flags & CFG_TRACK_SKB != 0 {
        if site.frees {
            let _ = TRACKED.remove(&skb);
        } else if emitted && !tracked {
            let _ = TRACKED.insert(&skb, &1, 0);
        }
    }
    0
}

/// Fills the per-CPU event for `skb`; returns whether it passed the filters.
#[inline(always)]
fn build_and_emit<C: EbpfContext>(ctx: &C, skb: u64, cfg: &Config, site: &Site, tracked: bool) -> bool {
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: `scratch` is this CPU's SCRATCH slot; programs do not migrate CPU while running, so nothing else uses it.
    let ev: &mut Event = unsafe { &mut (*scratch).event };
    let o = &cfg.offsets;
    // Whether there is a reason is settled here, into the event: carried to
    // the end in a register, it doubled the verifier's work on the
    // kprobe-multi program, where it is known only at run time.
    match site.reason {
        Some(reason) => {
            ev.reason = reason;
            ev.flags = FLAG_HAS_REASON;
            ev.location = site.location;
        }
        None => {
            ev.reason = 0;
            ev.flags = 0;
            ev.location = if cfg.flags & CFG_CALLER != 0 { site.location } else { 0 };
        }
    }
    // A tracked skb skips every filter. Folding that into one value (rather
    // than testing `tracked` at each filter) keeps LLVM from compiling the
    // whole function twice, which doubled the verifier's work at load.
    let filters = if tracked { 0 } else { cfg.flags };

    if filters & CFG_PID != 0 && (bpf_get_current_pid_tgid() >> 32) as u32 != cfg.pid {
        return false;
    }
    let sk_buff = SkbCopy::read(skb, cfg);
    ev.mark = sk_buff.field::<u32>(o.skb_mark);
    if filters & CFG_MARK != 0 && ev.mark & cfg.mark_mask != cfg.mark {
        return false;
    }
    // The skb expression reads what it needs itself: before the device,
    // the namespace and the packet bytes are read for an skb it rejects.
    if filters & CFG_SKB_EXPR != 0 && skbtrace_filter_skb_expr(skb) == 0 {
        return false;
    }
    let dev: u64 = sk_buff.field(o.skb_dev);
    // Device and namespace take three dependent reads: before the pcap
    // filter only when a filter needs them, after it otherwise, so that a
    // packet the expression rejects costs as little as possible.
    let early = filters & (CFG_IFINDEX | CFG_NETNS) != 0;
    if early && !device_and_netns(ev, &sk_buff, dev, cfg, filters) {
        return false;
    }

    let packet = Packet::locate(&sk_buff, cfg);
    ev.capture = packet.capture as u8;
    ev.data_offset = packet.data_offset;
    ev.cap_len = 0;
    ev.len = sk_buff.field::<u32>(o.skb_len);
    if filters & CFG_PCAP != 0 {
        // One copy serves the filter and the event: a read costs about the
        // same for 78 bytes as for 256, so a second read after a match
        // would cost more than the bytes a rejected packet saves.
        let reads = match packet.capture {
            Capture::Mac => cfg.filter_reads_l2,
            _ => cfg.filter_reads_l3,
        };
        packet.copy(ev, reads.max(cfg.snaplen));
        let data = ev.data.as_ptr();
        let wire_len = ev.wire_len();
        let verdict = match packet.capture {
            Capture::Mac => skbtrace_filter_l2(data, ev.cap_len as u32, wire_len),
            Capture::Network => skbtrace_filter_l3(data, ev.cap_len as u32, wire_len),
            Capture::None => 0,
        };
        if verdict == 0 {
            return false;
        }
    } else {
        packet.copy(ev, cfg.snaplen);
    }
    // The filter may have needed more than the snap length.
    if ev.cap_len as u32 > cfg.snaplen {
        ev.cap_len = cfg.snaplen as u16;
    }
    if !early {
        device_and_netns(ev, &sk_buff, dev, cfg, 0);
    }

    ev.skb = skb;
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    ev.ktime_ns = unsafe { bpf_ktime_get_ns() };
    ev.func_ip = site.func_ip;
    ev.probe_id = site.probe_id;
    if tracked {
        ev.flags |= FLAG_TRACKED;
    }
    if site.frees {
        ev.flags |= FLAG_FREED;
    }
    ev.pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: bpf_get_smp_processor_id has no preconditions.
    ev.cpu = unsafe { bpf_get_smp_processor_id() };
    // Straight into the event (a returned array would take stack the
    // programs have no room for); the helper zeroes it on failure.
    // SAFETY: `comm` holds the 16 bytes the helper writes.
    unsafe { bpf_get_current_comm(ev.comm.as_mut_ptr().cast(), ev.comm.len() as u32) };
    ev.protocol = sk_buff.field::<u16>(o.skb_protocol);
    ev.stack_id = if cfg.flags & CFG_STACK != 0 {
        // SAFETY: STACKS is a stack-trace map and `ctx` this program's context, as the helper requires.
        unsafe { bpf_get_stackid(ctx.as_ptr(), (&raw const STACKS).cast_mut().cast(), 0) as i32 }
    } else {
        -1
    };

    // The record (`EVENT_HEADER_SIZE`): the header, the captured bytes
    // rounded up to 8, and a conntrack block after them only when the skb
    // has an entry. The volatile read and the mask give the verifier a bound
    // (as in `Packet::copy`); cap_len ≤ SNAPLEN_MAX, so they change nothing.
    let cap_len = u32::from(ev.cap_len);
    // SAFETY: a volatile read of a local; see above for why.
    let data_len = (unsafe { read_volatile(&cap_len) } + 7) & DATA_LEN_MASK;
    let ct_at = EVENT_HEADER_SIZE as u32 + data_len;
    let (ktime_ns, cpu) = (ev.ktime_ns, ev.cpu);
    // Last, so that filtered-out packets never pay for it. From here on the
    // scratch slot is reached through `scratch` only.
    let ct_flags = if cfg.flags & CFG_CONNTRACK != 0 {
        conntrack::fill(
            // SAFETY: the per-CPU slot is ours, and `maps::Scratch` has room
            // for a Ct at `ct_at` (8-aligned, ≤ EVENT_HEADER_SIZE + DATA_LEN_MASK).
            unsafe { scratch.cast::<u8>().add(ct_at as usize) },
            &sk_buff,
            // SAFETY: as above; `nf_conn` is a separate field.
            unsafe { (*scratch).nf_conn.as_mut_ptr() },
        )
    } else {
        0
    };
    if ct_flags != 0 {
        // SAFETY: as above; `ev` is not used past this point.
        unsafe { (*scratch).event.flags |= ct_flags };
    }
    // The block's length as a branch on the flags: a constant on each path
    // for the verifier.
    let nft_at = ct_at
        + if ct_flags == 0 {
            0
        } else if ct_flags & FLAG_CT4 != 0 {
            CT4_SIZE as u32
        } else {
            CT_SIZE as u32
        };
    // nf_tables's verdict (`kprobe_nft_trace` only): its block follows the
    // conntrack block, if any.
    let size = match &site.nft {
        Some(args) => {
            // SAFETY: the per-CPU slot is ours, and `maps::Scratch` has room
            // for an Nft after a Ct at `ct_at` (8-aligned; so is a Ct4's end).
            crate::nft::fill(unsafe { &mut *scratch.cast::<u8>().add(nft_at as usize).cast::<Nft>() }, args);
            // SAFETY: as above.
            unsafe { (*scratch).event.flags |= FLAG_NFT };
            nft_at + NFT_SIZE as u32
        }
        None => nft_at,
    };

    // `--output-skb` and friends: their record goes first (`skb_dump.rs`).
    if crate::skb_dump::wanted() != 0 {
        crate::skb_dump::send(skb, ktime_ns, cpu);
    }

    // Batch wake-ups: waking the reader per event costs more than the event.
    // Wake it once, when this event fills the ring past the mark; below the
    // mark, and above it once woken, its 50 ms timer drains the ring.
    let waiting = EVENTS.query(BPF_RB_AVAIL_DATA);
    let mark = cfg.wakeup_bytes as u64;
    let flags = if waiting < mark && waiting + size as u64 >= mark { BPF_RB_FORCE_WAKEUP } else { BPF_RB_NO_WAKEUP };
    // SAFETY: `size` ≤ EVENT_HEADER_SIZE + DATA_LEN_MASK + CT_SIZE + NFT_SIZE,
    // within `maps::Scratch`, whose first bytes are the record.
    let record = unsafe { core::slice::from_raw_parts(scratch.cast::<u8>().cast_const(), size as usize) };
    let sent = EVENTS.output::<[u8]>(record, flags);
    if sent.is_err() {
        // No skb pointer in the message: under tp_btf it is a trusted
        // pointer, and formatting it is pointer arithmetic the verifier refuses.
        aya_log_ebpf::debug!(ctx, "ring buffer full: an event was lost");
        count_lost(if site.func_ip != 0 { site.func_ip } else { site.probe_id as u64 });
    }
    true
}

/// Reads the device's index, name and MTU and the network namespace (from the
/// device, or from the socket when there is no device yet); returns whether
/// they pass the ifindex and netns filters in `filters`.
#[inline(always)]
fn device_and_netns(ev: &mut Event, sk_buff: &SkbCopy, dev: u64, cfg: &Config, filters: u32) -> bool {
    let o = &cfg.offsets;
    ev.ifindex = read::<u32>(dev, o.dev_ifindex);
    if filters & CFG_IFINDEX != 0 && ev.ifindex != cfg.ifindex {
        return false;
    }
    let net: u64 = if dev != 0 {
        read(dev, o.dev_nd_net)
    } else {
        let sk: u64 = sk_buff.field(o.skb_sk);
        read(sk, o.sk_net)
    };
    ev.netns = read::<u32>(net, o.net_inum);
    if filters & CFG_NETNS != 0 && ev.netns != cfg.netns {
        return false;
    }
    ev.mtu = read::<u32>(dev, o.dev_mtu);
    read_into(&mut ev.ifname, dev, o.dev_name);
    true
}

/// Where an skb's packet bytes start, and how many there are in its head.
struct Packet {
    start: u64,
    len: u32,
    capture: Capture,
    /// `skb->data` minus `start`.
    data_offset: i16,
}

impl Packet {
    const NONE: Self = Self { start: 0, len: 0, capture: Capture::None, data_offset: 0 };

    /// From the MAC header when it is set, else from the network header.
    #[inline(always)]
    fn locate(sk_buff: &SkbCopy, cfg: &Config) -> Self {
        let o = &cfg.offsets;
        let head: u64 = sk_buff.field(o.skb_head);
        let mac: u16 = sk_buff.field(o.skb_mac_header);
        let network: u16 = sk_buff.field(o.skb_network_header);
        let tail: u32 = sk_buff.field(o.skb_tail);
        let data: u64 = sk_buff.field(o.skb_data);
        let has_network = network != u16::MAX && network != 0;
        // The MAC header only when it comes before the network header: after
        // a tunnel's encapsulation (until the device's transmit resets it) it
        // still points at the inner frame, and a device without a link
        // header leaves it equal to the network header.
        let (offset, capture) = if mac != u16::MAX && (!has_network || mac < network) {
            (mac as u32, Capture::Mac)
        } else if has_network {
            (network as u32, Capture::Network)
        } else {
            return Self::NONE;
        };
        if head == 0 || tail <= offset {
            return Self::NONE;
        }
        let start = head + offset as u64;
        let data_offset = data.wrapping_sub(start) as i64;
        let data_offset =
            if (i16::MIN as i64..=i16::MAX as i64).contains(&data_offset) { data_offset as i16 } else { 0 };
        Self { start, len: tail - offset, capture, data_offset }
    }

    /// Copies the packet's first `want` bytes (as far as the packet goes)
    /// into `ev.data`; on a failed read the event says nothing was captured.
    #[inline(always)]
    fn copy(&self, ev: &mut Event, want: u32) {
        let want = want.min(self.len).min(SNAPLEN_MAX as u32);
        // The mask gives the verifier a bound it can follow (it changes
        // nothing here), and `maps::Scratch` has room after `data` for it.
        // LLVM knows want ≤ 256 and would drop the mask; older verifiers
        // cannot learn that from the `min`: the volatile read hides it.
        // SAFETY: a volatile read of a local; see above for why.
        let n = unsafe { read_volatile(&want) } & (2 * SNAPLEN_MAX as u32 - 1);
        // SAFETY: `n` is below 2 * SNAPLEN_MAX and `maps::Scratch` has that much room after `data`; the helper checks the kernel address.
        let ret = unsafe { bpf_probe_read_kernel(ev.data.as_mut_ptr().cast(), n, self.start as *const _) };
        if ret == 0 {
            ev.cap_len = want as u16;
        } else {
            ev.cap_len = 0;
            ev.capture = Capture::None as u8;
        }
    }
}

#[inline(always)]
fn count_lost(key: u64) {
    match LOST.get_ptr_mut(&key) {
        // SAFETY: `n` points at this CPU's counter in LOST.
        Some(n) => unsafe { *n += 1 },
        None => {
            let _ = LOST.insert(&key, &1, 0);
        }
    }
}
