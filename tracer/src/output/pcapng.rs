//! The pcap-ng printer: one Enhanced Packet Block per event, with what the
//! text printer would say about it in the packet comment. Wireshark reads any
//! such file; tcpdump (libpcap) only while every interface has the link type of
//! the first, so a file mixing MAC and network-header captures stops it there.
//!
//! Blocks are pcap-parser structs serialized with its `ToVec`, except the
//! per-event Enhanced Packet Block: `ToVec` returns a fresh `Vec` (allocated,
//! grown, then copied) for every block, so that one block is laid out here
//! into a reused buffer, field for field as pcap-parser writes it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{self, Write};

use pcap_parser::{
    EPB_MAGIC, InterfaceDescriptionBlock, Linktype, OptionCode, PcapNGOption, SectionHeaderBlock, ToVec,
};
use tracer_common::event::{Capture, Event};

/// `if_tsresol` 9: timestamps count nanoseconds, the unit of `bpf_ktime_get_ns()`.
const TSRESOL_NS: u8 = 9;
/// pcap-ng `if_name`; pcap-parser has no constant for it.
const OPT_IF_NAME: OptionCode = OptionCode(2);
/// Longest comment an option can hold (its length field is 16 bits).
const COMMENT_MAX: usize = u16::MAX as usize;
/// Enhanced Packet Block bytes besides packet data and options: type, length,
/// interface id, timestamp (2), captured length, original length, trailing length.
const EPB_FIXED_LEN: usize = 32;

/// Writes events as a pcap-ng capture to any `io::Write`. Each call writes
/// whole blocks with one `write_all`, so give it a buffered writer.
pub struct PcapngWriter<W: Write> {
    out: W,
    snaplen: u32,
    /// Interface id (order of its IDB in the file) of every interface seen.
    interfaces: HashMap<InterfaceKey, u32>,
    /// The last interface looked up: consecutive events mostly share one.
    last: Option<(InterfaceKey, u32)>,
    /// Reused for every Enhanced Packet Block.
    buf: Vec<u8>,
}

/// What makes a pcap-ng interface distinct: each gets its own IDB.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct InterfaceKey {
    linktype: u16,
    ifindex: u32,
    /// The name up to its NUL, zero-filled: bytes after the NUL are whatever
    /// the kernel-side scratch slot held before, not part of the name.
    ifname: [u8; 16],
}

impl InterfaceKey {
    fn new(linktype: Linktype, ev: &Event) -> Self {
        let name = ifname(&ev.ifname);
        let mut ifname = [0; 16];
        ifname[..name.len()].copy_from_slice(name);
        Self {
            // Link types are 16 bits in an IDB; pcap-parser widens them to i32.
            linktype: linktype.0 as u16,
            ifindex: ev.ifindex,
            ifname,
        }
    }

    /// `if_name`: the device name, else its index, else "any" (no device).
    fn display_name(&self) -> String {
        let name = ifname(&self.ifname);
        if !name.is_empty() {
            String::from_utf8_lossy(name).into_owned()
        } else if self.ifindex != 0 {
            format!("ifindex {}", self.ifindex)
        } else {
            "any".to_owned()
        }
    }
}

/// The bytes of a kernel interface name before its NUL.
fn ifname(raw: &[u8; 16]) -> &[u8] {
    let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    &raw[..len]
}

impl<W: Write> PcapngWriter<W> {
    /// Writes the Section Header Block. `snaplen` goes into every interface's
    /// IDB (0 means no limit).
    pub fn new(mut out: W, snaplen: u32) -> io::Result<Self> {
        let userappl = concat!("skbtrace ", env!("CARGO_PKG_VERSION")).as_bytes();
        let mut shb = SectionHeaderBlock {
            block_type: 0,
            block_len1: 0,
            bom: 0,
            major_version: 0,
            minor_version: 0,
            // -1: length unknown, the file is written as a stream.
            section_len: -1,
            options: vec![option(OptionCode::ShbUserAppl, userappl)],
            block_len2: 0,
        };
        out.write_all(&shb.to_vec().map_err(serialize_error)?)?;
        Ok(Self { out, snaplen, interfaces: HashMap::new(), last: None, buf: Vec::with_capacity(512) })
    }

    /// Writes one Enhanced Packet Block for `ev`, preceded by an Interface
    /// Description Block when its (link type, ifindex, ifname) is new.
    ///
    /// `boot_offset_ns` turns the event's CLOCK_MONOTONIC ktime into wall-clock
    /// time; `comment` becomes the packet comment (left out when empty).
    pub fn write_event(&mut self, ev: &Event, boot_offset_ns: u64, comment: &str) -> io::Result<()> {
        // Events without bytes still get a packet, so packets match events one to one.
        let (linktype, data) = match ev.capture() {
            Capture::Mac => (Linktype::ETHERNET, ev.packet()),
            Capture::Network => (Linktype::RAW, ev.packet()),
            Capture::None => (Linktype::RAW, &[][..]),
        };
        let if_id = self.interface_id(InterfaceKey::new(linktype, ev))?;
        let ts = ev.ktime_ns.saturating_add(boot_offset_ns);
        let caplen = data.len() as u32;
        let origlen = ev.wire_len();
        let comment = &comment[..comment.floor_char_boundary(COMMENT_MAX)];

        let buf = &mut self.buf;
        buf.clear();
        let options_len = if comment.is_empty() {
            0
        } else {
            // opt_comment, then opt_endofopt.
            4 + comment.len().next_multiple_of(4) + 4
        };
        let block_len = (EPB_FIXED_LEN + data.len().next_multiple_of(4) + options_len) as u32;
        for field in [EPB_MAGIC, block_len, if_id, (ts >> 32) as u32, ts as u32, caplen, origlen] {
            buf.extend_from_slice(&field.to_le_bytes());
        }
        put_padded(buf, data);
        if !comment.is_empty() {
            buf.extend_from_slice(&OptionCode::Comment.0.to_le_bytes());
            buf.extend_from_slice(&(comment.len() as u16).to_le_bytes());
            put_padded(buf, comment.as_bytes());
            buf.extend_from_slice(&[0; 4]);
        }
        buf.extend_from_slice(&block_len.to_le_bytes());
        debug_assert_eq!(buf.len(), block_len as usize);
        self.out.write_all(buf)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The writer back, for tests that read what was written; the binary
    /// only ever flushes.
    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.out
    }

    /// The id of `key`'s interface, writing its IDB first if it is new.
    fn interface_id(&mut self, key: InterfaceKey) -> io::Result<u32> {
        if let Some((last, id)) = self.last
            && last == key
        {
            return Ok(id);
        }
        let id = match self.interfaces.get(&key) {
            Some(&id) => id,
            None => {
                let id = self.interfaces.len() as u32;
                self.write_idb(&key)?;
                self.interfaces.insert(key, id);
                id
            }
        };
        self.last = Some((key, id));
        Ok(id)
    }

    fn write_idb(&mut self, key: &InterfaceKey) -> io::Result<()> {
        let name = key.display_name();
        let mut idb = InterfaceDescriptionBlock {
            block_type: 0,
            block_len1: 0,
            linktype: Linktype(i32::from(key.linktype)),
            reserved: 0,
            snaplen: self.snaplen,
            options: vec![option(OPT_IF_NAME, name.as_bytes())],
            block_len2: 0,
            // fix() writes these two as the if_tsresol and if_tsoffset options.
            if_tsresol: TSRESOL_NS,
            if_tsoffset: 0,
        };
        self.out.write_all(&idb.to_vec().map_err(serialize_error)?)
    }
}

/// An option holding `value`; pcap-parser pads it when serializing.
fn option(code: OptionCode, value: &[u8]) -> PcapNGOption<'_> {
    PcapNGOption { code, len: value.len() as u16, value: Cow::Borrowed(value) }
}

/// Appends `bytes` zero-padded to a multiple of 4, as pcap-ng aligns fields.
fn put_padded(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(bytes);
    buf.resize(buf.len() + (bytes.len().next_multiple_of(4) - bytes.len()), 0);
}

/// pcap-parser's `ToVec` fails with cookie-factory's `GenError`, which it does
/// not re-export.
fn serialize_error(err: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("serializing a pcap-ng block: {err}"))
}

/// pcap-ng as a consumer: each event's packet, with the text printer's
/// words in the comment.
pub struct PcapConsumer<W: Write> {
    writer: PcapngWriter<W>,
    boot_offset_ns: u64,
    /// `--explain`: the verdict of a story that ended at this event.
    verdicts: Option<crate::explain::VerdictNotes>,
}

impl<W: Write> PcapConsumer<W> {
    pub fn new(writer: PcapngWriter<W>, boot_offset_ns: i128) -> Self {
        Self { writer, boot_offset_ns: boot_offset_ns as u64, verdicts: None }
    }

    /// The packet that ends a story gets its verdict in the comment
    /// (` verdict: …`); the explain consumer must run before this one.
    pub fn with_verdicts(mut self, notes: crate::explain::VerdictNotes) -> Self {
        self.verdicts = Some(notes);
        self
    }
}

impl<W: Write> super::Consumer for PcapConsumer<W> {
    fn event(&mut self, e: &crate::resolve::TraceEvent) -> io::Result<()> {
        let mut comment = super::pcap_comment(e);
        if let Some(v) = self.verdicts.as_ref().and_then(|n| n.for_event(e)) {
            comment.push_str(" verdict: ");
            comment.push_str(&v);
        }
        self.writer.write_event(&e.raw, self.boot_offset_ns, &comment)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

#[cfg(test)]
mod tests;
