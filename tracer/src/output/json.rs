//! One JSON object per line, every field present (zeros included), so that
//! `jq` filters never meet a missing key. The schema is in the README.

use std::io::{self, Write};

use serde::Serialize;
use tracer_common::event::{Capture, FLAG_TRACKED};

use super::{Printer, Record, func_column};
use crate::decode::tcp_flag_names;

pub struct JsonPrinter<W: Write> {
    out: W,
}

impl<W: Write> JsonPrinter<W> {
    pub fn new(out: W) -> Self {
        Self { out }
    }
}

/// The wire form of one event; borrowed, so serializing allocates little.
#[derive(Serialize)]
struct JsonEvent<'a> {
    skb: String,
    cpu: u32,
    process: &'a str,
    pid: u32,
    comm: &'a str,
    netns: u32,
    mark: u32,
    ifindex: u32,
    ifname: &'a str,
    proto: u16,
    mtu: u32,
    len: u32,
    tuple: JsonTuple,
    func: &'a str,
    func_column: String,
    drop_reason: &'a str,
    drop_reason_code: u32,
    location: &'a str,
    ktime_ns: u64,
    timestamp: &'a str,
    tracked: bool,
    capture: &'static str,
    cap_len: u16,
    stack: &'a [String],
}

#[derive(Serialize)]
struct JsonTuple {
    saddr: String,
    daddr: String,
    sport: u16,
    dport: u16,
    proto: String,
    tcp_flags: String,
}

#[derive(Serialize)]
struct Summary {
    summary: SummaryFields,
}

#[derive(Serialize)]
struct SummaryFields {
    events: u64,
    lost: u64,
}

fn addr(a: Option<std::net::IpAddr>) -> String {
    a.map_or_else(String::new, |a| a.to_string())
}

impl<W: Write> Printer for JsonPrinter<W> {
    fn header(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn record(&mut self, rec: &Record<'_>) -> io::Result<()> {
        let ev = rec.ev;
        let t = rec.tuple;
        let value = JsonEvent {
            skb: format!("{:#x}", ev.skb),
            cpu: ev.cpu,
            process: rec.process,
            pid: ev.pid,
            comm: crate::resolve::c_str(&ev.comm),
            netns: ev.netns,
            mark: ev.mark,
            ifindex: ev.ifindex,
            ifname: rec.ifname,
            proto: u16::from_be(ev.protocol),
            mtu: ev.mtu,
            len: ev.len,
            tuple: JsonTuple {
                saddr: addr(t.saddr),
                daddr: addr(t.daddr),
                sport: t.sport,
                dport: t.dport,
                proto: t.proto.to_string(),
                tcp_flags: tcp_flag_names(t.tcp_flags),
            },
            func: rec.func,
            func_column: func_column(rec),
            drop_reason: rec.reason.unwrap_or(""),
            drop_reason_code: if rec.reason.is_some() { ev.reason } else { 0 },
            location: rec.location.unwrap_or(""),
            ktime_ns: ev.ktime_ns,
            timestamp: rec.timestamp.unwrap_or(""),
            tracked: ev.flags & FLAG_TRACKED != 0,
            capture: match ev.capture() {
                Capture::Mac => "mac",
                Capture::Network => "network",
                Capture::None => "none",
            },
            cap_len: ev.cap_len,
            stack: rec.stack,
        };
        serde_json::to_writer(&mut self.out, &value)?;
        self.out.write_all(b"\n")
    }

    fn summary(&mut self, printed: u64, lost: u64) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, &Summary { summary: SummaryFields { events: printed, lost } })?;
        self.out.write_all(b"\n")
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
