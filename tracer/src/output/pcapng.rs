//! TEMPORARY stub until the pcap-ng writer lands.
use std::io::{self, Write};
use tracer_common::Event;
pub struct PcapngWriter<W: Write> { out: W }
impl<W: Write> PcapngWriter<W> {
    pub fn new(out: W, _snaplen: u32) -> io::Result<Self> { Ok(Self { out }) }
    pub fn write_event(&mut self, _ev: &Event, _boot_offset_ns: u64, _comment: &str) -> io::Result<()> { Ok(()) }
    pub fn flush(&mut self) -> io::Result<()> { self.out.flush() }
}
