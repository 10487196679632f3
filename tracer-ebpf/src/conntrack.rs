//! The skb's conntrack entry, copied into the event's [`Ct`] block.
//!
//! Contract:
//! - Called only with `CFG_CONNTRACK`, after every filter passed, with the
//!   skb's first bytes already copied (`_nfct` is inside them on every
//!   supported kernel; else it is read on its own).
//! - `_nfct == 0` (no entry, or conntrack cleared it, as `__udp4_lib_rcv`
//!   does before a no-socket drop): returns false, writes nothing, and the
//!   event goes out without a block. That path costs one load and a test.
//! - Otherwise `nf_conn = _nfct & ~7` (`NFCT_PTRMASK`), `ctinfo = _nfct & 7`.
//!   A null `nf_conn` (untracked packets) gives a zeroed block with `ctinfo`
//!   set. Else the entry's first `read_len` bytes are read with one helper
//!   call into the per-CPU `nf_conn` buffer and every field taken from that
//!   copy; an absent field (`CT_OFFSET_NONE`) is 0, and so is every field when
//!   the read fails.
//! - User space guarantees (`btf/conntrack.rs`) that every present offset
//!   plus its field's size is within `read_len` ≤ `CT_READ_MAX`, and that
//!   each offset is aligned for its field: a field is one aligned load from
//!   the copy at the masked offset, with no bounds test or fallback read.
//!   The buffer is `CT_BUF` bytes, so a masked offset plus the widest load
//!   (8 bytes) stays inside it whatever the offsets say.
//! - Every field of `ct` is written on the paths that return true: the
//!   per-CPU slot holds the previous event's block.
//! - No loops; the one length is the configured `read_len`, masked.

use aya_ebpf::helpers::generated::bpf_probe_read_kernel;
use tracer_common::{
    config::{CT_OFFSET_NONE, CT_READ_MAX, CtTupleOffsets},
    event::{Ct, CtTuple},
};

use crate::capture::{SkbCopy, ct_offsets, nfct_offset};

/// Bits of `_nfct` that hold the `enum ip_conntrack_info` (`NFCT_INFOMASK`).
const NFCT_INFOMASK: u64 = 7;

/// Size of the per-CPU buffer the entry is read into: `CT_READ_MAX`, and
/// room for an 8-byte load at the last masked offset.
pub const CT_BUF: usize = CT_READ_MAX as usize + 8;

/// Fills `ct` from the skb's `_nfct`; returns whether the skb had one.
/// `buf` is a per-CPU buffer of `CT_BUF` bytes, 8-aligned.
#[inline(always)]
pub fn fill(ct: &mut Ct, sk_buff: &SkbCopy, buf: *mut u64) -> bool {
    let nfct: u64 = sk_buff.field(nfct_offset());
    if nfct == 0 {
        return false;
    }
    let o = ct_offsets();
    let conn = nfct & !NFCT_INFOMASK;
    let ctinfo = (nfct & NFCT_INFOMASK) as u8;
    // The mask bounds the length for the verifier; user space keeps it ≤ CT_READ_MAX.
    let want = u32::from(o.read_len) & (2 * CT_READ_MAX - 1);
    let read = conn != 0
        && want <= CT_READ_MAX
        // SAFETY: `buf` holds CT_BUF > CT_READ_MAX ≥ `want` bytes; the helper checks `conn`.
        && unsafe { bpf_probe_read_kernel(buf.cast(), want, conn as *const _) } == 0;
    if !read {
        // SAFETY: `ct` is a valid Ct, and all-zero bytes are a valid Ct. (An
        // assignment of `Ct::zeroed()` would build it on the stack first.)
        unsafe { core::ptr::write_bytes(ct as *mut Ct, 0, 1) };
        ct.nf_conn = conn;
        ct.ctinfo = ctinfo;
        return true;
    }
    ct.nf_conn = conn;
    ct.ctinfo = ctinfo;
    ct.status = at(buf, o.status);
    ct.mark = if o.mark != CT_OFFSET_NONE { at(buf, o.mark) } else { 0 };
    ct.zone = if o.zone_id != CT_OFFSET_NONE { at(buf, o.zone_id) } else { 0 };
    ct.zone_dir = if o.zone_dir != CT_OFFSET_NONE { at(buf, o.zone_dir) } else { 0 };
    tuple(&mut ct.orig, buf, &o.orig);
    tuple(&mut ct.reply, buf, &o.reply);
    true
}

/// A field of the copy: one aligned load at the masked offset. (A load
/// the compiler must assume unaligned becomes a load per byte on BPF: the
/// extraction cost 20 ns per event that way.)
#[inline(always)]
fn at<T: Copy>(buf: *const u64, off: u16) -> T {
    let align = core::mem::align_of::<T>() as u32;
    let o = u32::from(off) & (CT_READ_MAX - 1) & !(align - 1);
    // SAFETY: o < CT_READ_MAX and size_of::<T>() ≤ 8, inside the CT_BUF bytes
    // of `buf`; `buf` is 8-aligned and `o` a multiple of T's alignment.
    unsafe { buf.cast::<u8>().add(o as usize).cast::<T>().read() }
}

/// An address (`union nf_inet_addr`, 4-aligned): four 32-bit words.
#[inline(always)]
fn addr(buf: *const u64, off: u16) -> [u32; 4] {
    [at(buf, off), at(buf, off.wrapping_add(4)), at(buf, off.wrapping_add(8)), at(buf, off.wrapping_add(12))]
}

#[inline(always)]
fn tuple(t: &mut CtTuple, buf: *const u64, o: &CtTupleOffsets) {
    t.src = addr(buf, o.src_u3);
    t.dst = addr(buf, o.dst_u3);
    t.src_u = at(buf, o.src_u);
    t.dst_u = at(buf, o.dst_u);
    t.l3num = at(buf, o.l3num);
    t.protonum = at(buf, o.protonum);
    t._pad = 0;
}
