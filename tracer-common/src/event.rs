//! One event: an skb seen at one probe.

use crate::limits::SNAPLEN_MAX;

/// Where the copied packet bytes start.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capture {
    /// Nothing was copied (no header set, or `--snaplen 0`).
    None = 0,
    /// Bytes start at the MAC header (Ethernet link type).
    Mac = 1,
    /// Bytes start at the network header (raw IP link type).
    Network = 2,
}

impl Capture {
    pub const fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Mac,
            2 => Self::Network,
            _ => Self::None,
        }
    }
}

/// Event flag: `reason` holds a drop reason.
pub const FLAG_HAS_REASON: u8 = 1 << 0;
/// Event flag: the skb was let through because it was already tracked.
pub const FLAG_TRACKED: u8 = 1 << 1;
/// Event flag: the skb is freed at this probe (a drop or a free); its
/// address may be reused by the next skb, so this event ends its story.
pub const FLAG_FREED: u8 = 1 << 2;

/// One skb seen at one probe. Built in a per-CPU scratch slot, filtered, then
/// copied whole into the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Event {
    /// Address of the `struct sk_buff`.
    pub skb: u64,
    /// `bpf_ktime_get_ns()` at the probe.
    pub ktime_ns: u64,
    /// Kprobes: address of the probed function. Tracepoints: 0.
    pub func_ip: u64,
    /// Drop location for `skb:kfree_skb`, caller address under `--output-caller`.
    pub location: u64,
    /// Index into user space's probe table (tracepoints) or 0 (kprobes).
    pub probe_id: u32,
    /// Drop reason when `flags & FLAG_HAS_REASON`.
    pub reason: u32,
    /// Thread group id of the current task.
    pub pid: u32,
    pub cpu: u32,
    pub netns: u32,
    pub mark: u32,
    pub ifindex: u32,
    /// `skb->len`.
    pub len: u32,
    pub mtu: u32,
    /// Kernel stack id under `--output-stack`, else negative.
    pub stack_id: i32,
    /// `skb->protocol`, network byte order as in the kernel.
    pub protocol: u16,
    /// Number of valid bytes in `data`.
    pub cap_len: u16,
    /// `FLAG_*` bits.
    pub flags: u8,
    /// A [`Capture`] value.
    pub capture: u8,
    /// Where `skb->data` is, counted from the first captured byte: `len`
    /// counts from there, so the packet from the capture's start is
    /// `len + data_offset` bytes long (the original length in pcap terms).
    pub data_offset: i16,
    pub comm: [u8; 16],
    pub ifname: [u8; 16],
    pub data: [u8; SNAPLEN_MAX],
}

pub const EVENT_SIZE: usize = 112 + SNAPLEN_MAX;
const _: () = assert!(core::mem::size_of::<Event>() == EVENT_SIZE);
const _: () = assert!(core::mem::align_of::<Event>() == 8);

impl Event {
    pub const fn zeroed() -> Self {
        Self {
            skb: 0,
            ktime_ns: 0,
            func_ip: 0,
            location: 0,
            probe_id: 0,
            reason: 0,
            pid: 0,
            cpu: 0,
            netns: 0,
            mark: 0,
            ifindex: 0,
            len: 0,
            mtu: 0,
            stack_id: -1,
            protocol: 0,
            cap_len: 0,
            flags: 0,
            capture: 0,
            data_offset: 0,
            comm: [0; 16],
            ifname: [0; 16],
            data: [0; SNAPLEN_MAX],
        }
    }

    /// Decodes an event from ring-buffer bytes; `None` when too short.
    #[cfg(feature = "user")]
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < EVENT_SIZE {
            return None;
        }
        // SAFETY: length checked above; Event is plain data valid for any bit
        // pattern, and read_unaligned copes with the ring buffer's alignment.
        Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<Self>()) })
    }

    pub fn capture(&self) -> Capture {
        Capture::from_u8(self.capture)
    }

    /// The packet's length from the first captured byte: what a capture
    /// of the whole packet from there would hold.
    pub fn wire_len(&self) -> u32 {
        let len = (self.len as i64 + self.data_offset as i64).max(0) as u32;
        len.max(self.cap_len as u32)
    }

    pub fn packet(&self) -> &[u8] {
        let n = (self.cap_len as usize).min(SNAPLEN_MAX);
        &self.data[..n]
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C), no padding (size asserted above), every bit pattern valid.
unsafe impl aya::Pod for Event {}
