//! `--output-skb-metadata`, `--output-skb-cb`, `--output-skb` and
//! `--output-skb-shared-info`: the record `tracer_common::skb_out` describes,
//! built in a per-CPU buffer and sent to `SKB_OUT` just before the event.
//!
//! `capture.rs` calls [`send`] only when [`wanted`] is not 0. That value comes
//! from the frozen `.rodata`, so without these flags the verifier sees the
//! call as dead code and removes it: the programs run exactly as before.

use core::ptr::read_volatile;

use aya_ebpf::{
    bindings::btf_ptr,
    helpers::generated::{bpf_probe_read_kernel, bpf_snprintf_btf},
    macros::map,
    maps::{PerCpuArray, RingBuf},
};
use tracer_common::{
    names,
    skb_out::{
        CB_WORDS, METADATA_BYTES, METADATA_MAX, SKB_OUT_CB, SKB_OUT_HEADER_SIZE, SKB_OUT_METADATA, SKB_OUT_SHINFO,
        SKB_OUT_SKB, SkbOutConfig, SkbOutHeader,
    },
};

const BPF_RB_NO_WAKEUP: u64 = 1;

/// Patched by user space before load, like `capture::CONFIG`.
#[unsafe(no_mangle)]
static SKB_OUT_CONFIG: SkbOutConfig = SkbOutConfig::zeroed();
crate::names::check_map!(SKB_OUT_CONFIG, names::GLOBAL_SKB_OUT);

/// The records. User space sizes it; it never wakes the reader, which reads
/// it when the events that follow the records arrive.
#[map]
pub static SKB_OUT: RingBuf = RingBuf::with_byte_size(4096, 0);
crate::names::check_map!(SKB_OUT, names::MAP_SKB_OUT);

/// Where a record is built: user space sizes the value for the header and
/// the dumps asked for (`SkbOutConfig::buffer_bytes`), and the verifier
/// checks every access against that size.
#[map]
pub static SKB_OUT_BUF: PerCpuArray<SkbOutHeader> = PerCpuArray::with_max_entries(1, 0);
crate::names::check_map!(SKB_OUT_BUF, names::MAP_SKB_OUT_BUF);

/// The `SKB_OUT_*` bits: 0 when none of the flags was given.
#[inline(always)]
pub fn wanted() -> u32 {
    // SAFETY: SKB_OUT_CONFIG is a plain static the kernel never writes; volatile so that LLVM keeps the load user space patched.
    unsafe { read_volatile(&SKB_OUT_CONFIG.what) }
}

/// Builds and sends the record of the event (`skb`, `ktime_ns`, `cpu`)
/// about to be sent. A full `SKB_OUT` loses the record only: user space
/// prints the event without it.
#[inline(never)]
pub fn send(skb: u64, ktime_ns: u64, cpu: u32) {
    // SAFETY: as in `wanted`.
    let cfg: SkbOutConfig = unsafe { read_volatile(&SKB_OUT_CONFIG) };
    let Some(buf) = SKB_OUT_BUF.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: `buf` is this CPU's SKB_OUT_BUF value, at least a header long; programs do not migrate CPU while running, so nothing else uses it.
    let header: &mut SkbOutHeader = unsafe { &mut *buf };
    header.skb = skb;
    header.ktime_ns = ktime_ns;
    header.cpu = cpu;
    if cfg.what & SKB_OUT_METADATA != 0 {
        // A field behind a NULL pointer is left as zeros.
        header.metadata = [[0; METADATA_BYTES]; METADATA_MAX];
        skbtrace_skb_metadata(skb, header.metadata.as_mut_ptr().cast());
    }
    if cfg.what & SKB_OUT_CB != 0 {
        let size = (CB_WORDS * 4) as u32;
        // SAFETY: `cb` holds CB_WORDS u32s; the helper checks the kernel address and zeroes `cb` when it cannot read it.
        unsafe { bpf_probe_read_kernel(header.cb.as_mut_ptr().cast(), size, (skb + cfg.cb_data as u64) as *const _) };
    }
    // SAFETY: only an address is computed; the buffer's value is SKB_OUT_HEADER_SIZE + the dumps' room long.
    let dumps = unsafe { buf.cast::<u8>().add(SKB_OUT_HEADER_SIZE) };
    let skb_len = if cfg.what & SKB_OUT_SKB != 0 { dump(dumps, cfg.dump_bytes, skb, cfg.skb_btf_id) } else { 0 };
    let shinfo_len = if cfg.what & SKB_OUT_SHINFO != 0 {
        // `skb_shinfo(skb)`: `skb->end` is an offset from `skb->head` on
        // 64-bit kernels (NET_SKBUFF_DATA_USES_OFFSET).
        let head: u64 = read(skb + cfg.skb_head as u64);
        let end: u32 = read(skb + cfg.skb_end as u64);
        // SAFETY: only an address is computed; `skb_len` < dump_bytes, and the room for two dumps follows the header.
        let at = unsafe { dumps.add(skb_len as usize) };
        if head != 0 { dump(at, cfg.dump_bytes, head + end as u64, cfg.shinfo_btf_id) } else { 0 }
    } else {
        0
    };
    header.skb_len = skb_len;
    header.shinfo_len = shinfo_len;
    let len = SKB_OUT_HEADER_SIZE + skb_len as usize + shinfo_len as usize;
    // SAFETY: the header and both dumps lie inside the buffer's value, as the lengths were bounded by `dump`.
    let record = unsafe { core::slice::from_raw_parts(buf.cast::<u8>().cast_const(), len) };
    let _ = SKB_OUT.output::<[u8]>(record, BPF_RB_NO_WAKEUP);
}

/// `bpf_snprintf_btf` of the object at `ptr` (type `type_id` of vmlinux)
/// into `at`, which has room for `size` bytes; returns the length of the
/// text written, NUL excluded: below `size`, 0 on failure.
#[inline(always)]
fn dump(at: *mut u8, size: u32, ptr: u64, type_id: u32) -> u32 {
    let mut p = btf_ptr { ptr: ptr as *mut _, type_id, flags: 0 };
    // SAFETY: `at` has room for `size` bytes; the helper reads `p`, of the size given, and checks the kernel object it points to.
    let n = unsafe { bpf_snprintf_btf(at.cast(), size, &raw mut p, size_of::<btf_ptr>() as u32, 0) };
    // Like snprintf, it returns the length the whole text would have had.
    if n <= 0 {
        0
    } else if n as u64 >= size as u64 {
        size - 1
    } else {
        n as u32
    }
}

/// Reads a `T` at `addr`; zero when unreadable.
#[inline(always)]
fn read<T: Copy + Default>(addr: u64) -> T {
    let mut out = T::default();
    // SAFETY: the helper checks the kernel address and writes at most size_of::<T>() bytes into `out`.
    let ret = unsafe { bpf_probe_read_kernel((&raw mut out).cast(), size_of::<T>() as u32, addr as *const _) };
    if ret != 0 { T::default() } else { out }
}

/// Reads the `--output-skb-metadata` fields of `skb` into `out`
/// (METADATA_MAX slots of METADATA_BYTES). User space replaces this body
/// (`tracer/src/filter/skb_expr/fields.rs` states the contract); this one
/// only keeps the call and its arguments alive through LLVM.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn skbtrace_skb_metadata(skb: u64, out: *mut u8) -> u32 {
    // SAFETY: a placeholder that user space replaces before load; the volatile read only keeps LLVM from folding it away.
    unsafe { (skb ^ read_volatile(out) as u64) as u32 }
}
crate::names::check_program!(skbtrace_skb_metadata, tracer_common::limits::SKB_METADATA_SYMBOL);
