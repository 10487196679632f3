//! The skb's conntrack entry, copied into the event's conntrack block ([`Ct4`] or [`Ct`]).
//!
//! Contract:
//! - Called only with `CFG_CONNTRACK`, after every filter passed, with the
//!   skb's first bytes already copied (`_nfct` is inside them on every
//!   supported kernel; else it is read on its own).
//! - `_nfct == 0` (no entry, or conntrack cleared it, as `__udp4_lib_rcv`
//!   does before a no-socket drop): returns 0, writes nothing, and the
//!   event goes out without a block. That path costs one load and a test.
//! - Otherwise `nf_conn = _nfct & ~7` (`NFCT_PTRMASK`), `ctinfo = _nfct & 7`.
//!   A null `nf_conn` (untracked packets) gives a zeroed [`Ct`] with `ctinfo`
//!   set. Else the entry's first `read_len` bytes are read with one helper
//!   call into the per-CPU `nf_conn` buffer and every field taken from that
//!   copy; an absent field (`CT_OFFSET_NONE`) is 0, and so is every field when
//!   the read fails.
//! - The block is a [`Ct4`] (48 bytes) when both tuples are IPv4 and the
//!   status fits 32 bits, else a [`Ct`] (104): the ring buffer's cost grows
//!   with the bytes a record writes, and IPv4 leaves 24 address bytes of each
//!   tuple zero. Both hold everything user space shows.
//! - User space guarantees (`btf/conntrack.rs`) that every present offset
//!   plus its field's size is within `read_len` ≤ `CT_READ_MAX`, that each
//!   offset is aligned for its field, and that the tuples are laid out as
//!   [`NfConntrackTuple`]: a field is one aligned load from the copy at a
//!   masked offset (a tuple's fields at fixed places from its one masked
//!   offset), with no bounds test or fallback read. The buffer is `CT_BUF`
//!   bytes, so a masked offset plus the widest read (a tuple) stays inside
//!   it whatever the offsets say.
//! - Every field of the block is written on the paths that return a flag:
//!   the per-CPU slot holds the previous event's block.
//! - No loops; the one length is the configured `read_len`, masked.

use aya_ebpf::helpers::generated::bpf_probe_read_kernel;
use tracer_common::{
    config::{CT_OFFSET_NONE, CT_READ_MAX, NfConntrackTuple},
    event::{Ct, Ct4, CtTuple, CtTuple4, FLAG_CT, FLAG_CT4, NFPROTO_IPV4},
};

use crate::capture::{SkbCopy, ct_offsets, nfct_offset};

/// Bits of `_nfct` that hold the `enum ip_conntrack_info` (`NFCT_INFOMASK`).
const NFCT_INFOMASK: u64 = 7;

/// Size of the per-CPU buffer the entry is read into: `CT_READ_MAX`, and
/// room for a tuple at the last masked offset.
pub const CT_BUF: usize = CT_READ_MAX as usize + core::mem::size_of::<NfConntrackTuple>();

/// Fills the conntrack block at `block` from the skb's `_nfct`; returns the
/// event flags that say which block it wrote (`FLAG_CT`, with `FLAG_CT4`
/// for a [`Ct4`]), 0 when the skb has no entry. `block` has room for a
/// [`Ct`] and is 8-aligned; `buf` is a per-CPU buffer of `CT_BUF` bytes,
/// 8-aligned.
#[inline(always)]
pub fn fill(block: *mut u8, sk_buff: &SkbCopy, buf: *mut u64) -> u8 {
    let nfct: u64 = sk_buff.field(nfct_offset());
    if nfct == 0 {
        return 0;
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
        // SAFETY: `block` has room for a Ct and is 8-aligned; the slot is
        // this CPU's and nothing else points into it meanwhile.
        let ct = unsafe { &mut *block.cast::<Ct>() };
        // SAFETY: `ct` is a valid Ct, and all-zero bytes are a valid Ct. (An
        // assignment of `Ct::zeroed()` would build it on the stack first.)
        unsafe { core::ptr::write_bytes(ct as *mut Ct, 0, 1) };
        ct.nf_conn = conn;
        ct.ctinfo = ctinfo;
        return FLAG_CT;
    }
    let orig = tuple_at(buf, o.orig);
    let reply = tuple_at(buf, o.reply);
    let status: u64 = at(buf, o.status);
    let mark = if o.mark != CT_OFFSET_NONE { at(buf, o.mark) } else { 0 };
    let zone = if o.zone_id != CT_OFFSET_NONE { at(buf, o.zone_id) } else { 0 };
    let zone_dir = if o.zone_dir != CT_OFFSET_NONE { at(buf, o.zone_dir) } else { 0 };
    if orig.l3num == NFPROTO_IPV4 && reply.l3num == NFPROTO_IPV4 && status >> 32 == 0 {
        // SAFETY: as for `ct` above; a Ct4 is smaller than a Ct.
        let short = unsafe { &mut *block.cast::<Ct4>() };
        short.nf_conn = conn;
        short.status = status as u32;
        short.mark = mark;
        short.orig = tuple4(orig);
        short.reply = tuple4(reply);
        short.zone = zone;
        short.zone_dir = zone_dir;
        short.ctinfo = ctinfo;
        short.orig_protonum = orig.protonum;
        short.reply_protonum = reply.protonum;
        short._pad = [0; 2];
        return FLAG_CT | FLAG_CT4;
    }
    // SAFETY: as above.
    let ct = unsafe { &mut *block.cast::<Ct>() };
    ct.nf_conn = conn;
    ct.ctinfo = ctinfo;
    ct.status = status;
    ct.mark = mark;
    ct.zone = zone;
    ct.zone_dir = zone_dir;
    tuple(&mut ct.orig, orig);
    tuple(&mut ct.reply, reply);
    FLAG_CT
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

/// A tuple of the copy, in place: its fields are loads at fixed offsets
/// from one masked one.
#[inline(always)]
fn tuple_at<'a>(buf: *const u64, off: u16) -> &'a NfConntrackTuple {
    let o = u32::from(off) & (CT_READ_MAX - 1) & !3;
    // SAFETY: o < CT_READ_MAX, so the tuple's 40 bytes are inside the CT_BUF
    // bytes of `buf`; `buf` is 8-aligned, `o` a multiple of the tuple's
    // alignment (4), and any bytes are a valid tuple. The copy is not
    // written again during this program run.
    unsafe { &*buf.cast::<u8>().add(o as usize).cast::<NfConntrackTuple>() }
}

#[inline(always)]
fn tuple4(t: &NfConntrackTuple) -> CtTuple4 {
    CtTuple4 { src: t.src_u3[0], dst: t.dst_u3[0], src_u: t.src_u, dst_u: t.dst_u }
}

#[inline(always)]
fn tuple(t: &mut CtTuple, k: &NfConntrackTuple) {
    t.src = k.src_u3;
    t.dst = k.dst_u3;
    t.src_u = k.src_u;
    t.dst_u = k.dst_u;
    t.l3num = k.l3num;
    t.protonum = k.protonum;
    t._pad = 0;
}
