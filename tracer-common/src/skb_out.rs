//! What pwru's `--output-skb-metadata`, `--output-skb-cb`, `--output-skb` and
//! `--output-skb-shared-info` print: one record per event, in a ring buffer of
//! its own (`SKB_OUT`), so that [`Event`](crate::Event) keeps its layout and
//! these flags cost nothing when they are off.
//!
//! # Pairing a record with its event
//!
//! A program run sends its record to `SKB_OUT` just before it sends its event
//! to `EVENTS`, from the same CPU, and both carry the same `skb`, `ktime_ns`
//! and `cpu`. So when user space reads an event, its record is already in
//! `SKB_OUT`, behind the records of earlier events of that CPU: records whose
//! event was lost (`EVENTS` full) are skipped, and an event whose record was
//! lost (`SKB_OUT` full) is printed without it.
//!
//! # The record
//!
//! A [`SkbOutHeader`], then `skb_len` bytes of the `struct sk_buff` dump, then
//! `shinfo_len` bytes of the `struct skb_shared_info` dump (text from
//! `bpf_snprintf_btf`, without its NUL).

/// [`SkbOutConfig::what`]: read the `--output-skb-metadata` fields.
pub const SKB_OUT_METADATA: u32 = 1 << 0;
/// [`SkbOutConfig::what`]: copy `((struct qdisc_skb_cb *)skb->cb)->data`.
pub const SKB_OUT_CB: u32 = 1 << 1;
/// [`SkbOutConfig::what`]: dump `struct sk_buff`.
pub const SKB_OUT_SKB: u32 = 1 << 2;
/// [`SkbOutConfig::what`]: dump `struct skb_shared_info`.
pub const SKB_OUT_SHINFO: u32 = 1 << 3;

/// Most `--output-skb-metadata` fields (pwru's limit).
pub const METADATA_MAX: usize = 4;
/// Bytes of one metadata field: a value of up to 8 bytes, or a char array
/// of up to 16 (a device name).
pub const METADATA_BYTES: usize = 16;
/// `qdisc_skb_cb.data` is five `u32`s (`QDISC_CB_PRIV_LEN` is 20).
pub const CB_WORDS: usize = 5;

/// `--set-percpu-buf`'s default, pwru's: bytes for each dump, NUL included.
pub const DUMP_BYTES_DEFAULT: u32 = 4096;
/// The smallest `--set-percpu-buf`: room for a dump's first lines.
pub const DUMP_BYTES_MIN: u32 = 64;
/// The largest `--set-percpu-buf`: both dumps and the header are built in one
/// per-CPU map value, and the kernel refuses per-CPU values over 32 KiB
/// (`PCPU_MIN_UNIT_SIZE`).
pub const DUMP_BYTES_MAX: u32 = (PERCPU_VALUE_MAX - SKB_OUT_HEADER_SIZE as u32) / 2 / 8 * 8;
/// The kernel's largest per-CPU map value.
pub const PERCPU_VALUE_MAX: u32 = 32 * 1024;

/// Written by user space into the object before load, like [`Config`](crate::Config).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SkbOutConfig {
    /// `SKB_OUT_*` bits; 0: the programs never send a record.
    pub what: u32,
    /// `--set-percpu-buf`: the room for each dump, NUL included.
    pub dump_bytes: u32,
    /// vmlinux BTF ids of `struct sk_buff` and `struct skb_shared_info`.
    pub skb_btf_id: u32,
    pub shinfo_btf_id: u32,
    /// `offsetof(struct sk_buff, cb) + offsetof(struct qdisc_skb_cb, data)`.
    pub cb_data: u32,
    /// `sk_buff.head` and `sk_buff.end`: the shared info is at `head + end`.
    pub skb_head: u32,
    pub skb_end: u32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<SkbOutConfig>() == 8 * 4);

impl SkbOutConfig {
    pub const fn zeroed() -> Self {
        Self { what: 0, dump_bytes: 0, skb_btf_id: 0, shinfo_btf_id: 0, cb_data: 0, skb_head: 0, skb_end: 0, _pad: 0 }
    }

    /// The per-CPU buffer's value size: the header, and room for the dumps asked for.
    pub const fn buffer_bytes(&self) -> u32 {
        let dumps = (self.what & SKB_OUT_SKB != 0) as u32 + (self.what & SKB_OUT_SHINFO != 0) as u32;
        SKB_OUT_HEADER_SIZE as u32 + dumps * self.dump_bytes
    }
}

/// The start of a record; see the module docs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SkbOutHeader {
    /// The event's `skb`, `ktime_ns` and `cpu`.
    pub skb: u64,
    pub ktime_ns: u64,
    pub cpu: u32,
    /// Bytes of the `struct sk_buff` dump after the header.
    pub skb_len: u32,
    /// Bytes of the `struct skb_shared_info` dump after that.
    pub shinfo_len: u32,
    pub _pad: u32,
    /// Each field's bytes as read from the kernel (a bitfield's bytes
    /// unshifted); zeros when a pointer on its path was NULL.
    pub metadata: [[u8; METADATA_BYTES]; METADATA_MAX],
    pub cb: [u32; CB_WORDS],
    pub _pad2: u32,
}

pub const SKB_OUT_HEADER_SIZE: usize = 32 + METADATA_MAX * METADATA_BYTES + 4 * CB_WORDS + 4;
const _: () = assert!(core::mem::size_of::<SkbOutHeader>() == SKB_OUT_HEADER_SIZE);
const _: () = assert!(core::mem::align_of::<SkbOutHeader>() == 8);
const _: () = assert!(DUMP_BYTES_DEFAULT <= DUMP_BYTES_MAX && DUMP_BYTES_MIN < DUMP_BYTES_DEFAULT);
const _: () = assert!(SKB_OUT_HEADER_SIZE as u32 + 2 * DUMP_BYTES_MAX <= PERCPU_VALUE_MAX);

/// A record as user space reads it.
#[cfg(feature = "user")]
#[derive(Clone, Copy, Debug)]
pub struct SkbOutRecord<'a> {
    pub header: SkbOutHeader,
    pub skb_dump: &'a [u8],
    pub shinfo_dump: &'a [u8],
}

#[cfg(feature = "user")]
impl<'a> SkbOutRecord<'a> {
    /// Decodes ring-buffer bytes; `None` when shorter than the header. Dumps
    /// longer than the record are cut at its end.
    pub fn from_bytes(bytes: &'a [u8]) -> Option<Self> {
        if bytes.len() < SKB_OUT_HEADER_SIZE {
            return None;
        }
        // SAFETY: length checked above; the header is plain data valid for any
        // bit pattern, and read_unaligned copes with the ring buffer's alignment.
        let header = unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<SkbOutHeader>()) };
        let rest = &bytes[SKB_OUT_HEADER_SIZE..];
        let skb_len = (header.skb_len as usize).min(rest.len());
        let (skb_dump, rest) = rest.split_at(skb_len);
        let shinfo_dump = &rest[..(header.shinfo_len as usize).min(rest.len())];
        Some(Self { header, skb_dump, shinfo_dump })
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C), no padding (size asserted above), every bit pattern valid.
unsafe impl aya::Pod for SkbOutConfig {}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "user")]
    #[test]
    fn a_record_splits_into_header_and_dumps() {
        let mut header = SkbOutHeader {
            skb: 0xffff_8881_0000_0100,
            ktime_ns: 42,
            cpu: 1,
            skb_len: 5,
            shinfo_len: 3,
            _pad: 0,
            metadata: [[0; METADATA_BYTES]; METADATA_MAX],
            cb: [1, 2, 3, 4, 5],
            _pad2: 0,
        };
        header.metadata[1][0] = 7;
        // SAFETY: the header is plain data without padding.
        let head = unsafe {
            core::slice::from_raw_parts((&raw const header).cast::<u8>(), core::mem::size_of::<SkbOutHeader>())
        };
        let mut bytes = head.to_vec();
        bytes.extend_from_slice(b"(skb)abc");
        let r = SkbOutRecord::from_bytes(&bytes).unwrap();
        assert_eq!((r.header, r.skb_dump, r.shinfo_dump), (header, &b"(skb)"[..], &b"abc"[..]));
        // Cut short: the dumps end where the record does.
        let r = SkbOutRecord::from_bytes(&bytes[..bytes.len() - 2]).unwrap();
        assert_eq!((r.skb_dump, r.shinfo_dump), (&b"(skb)"[..], &b"a"[..]));
        assert!(SkbOutRecord::from_bytes(&bytes[..SKB_OUT_HEADER_SIZE - 1]).is_none());
    }

    #[test]
    fn the_buffer_holds_the_dumps_asked_for() {
        let c = SkbOutConfig { what: SKB_OUT_CB, dump_bytes: 4096, ..SkbOutConfig::zeroed() };
        assert_eq!(c.buffer_bytes(), SKB_OUT_HEADER_SIZE as u32);
        let c = SkbOutConfig { what: SKB_OUT_SKB | SKB_OUT_SHINFO, ..c };
        assert_eq!(c.buffer_bytes(), SKB_OUT_HEADER_SIZE as u32 + 8192);
        let max = SkbOutConfig { dump_bytes: DUMP_BYTES_MAX, ..c };
        assert!(max.buffer_bytes() <= PERCPU_VALUE_MAX);
    }
}
