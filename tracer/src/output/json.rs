//! One JSON object per line, every field present (zeros included), so that
//! `jq` filters never meet a missing key. The schema is in the README.

use std::io::{self, Write};

use serde_json::{Value, json};

use super::{Printer, Record, func_column};

pub struct JsonPrinter<W: Write> {
    out: W,
}

impl<W: Write> JsonPrinter<W> {
    pub fn new(out: W) -> Self {
        Self { out }
    }
}

fn addr(a: Option<std::net::IpAddr>) -> Value {
    a.map_or(Value::String(String::new()), |a| Value::String(a.to_string()))
}

pub fn record_value(rec: &Record<'_>) -> Value {
    let ev = rec.ev;
    let t = rec.tuple;
    json!({
        "skb": format!("{:#x}", ev.skb),
        "cpu": ev.cpu,
        "process": rec.process,
        "pid": ev.pid,
        "comm": crate::resolve::c_str(&ev.comm),
        "netns": ev.netns,
        "mark": ev.mark,
        "ifindex": ev.ifindex,
        "ifname": rec.ifname,
        "proto": u16::from_be(ev.protocol),
        "mtu": ev.mtu,
        "len": ev.len,
        "tuple": {
            "saddr": addr(t.saddr),
            "daddr": addr(t.daddr),
            "sport": t.sport,
            "dport": t.dport,
            "proto": t.proto,
            "tcp_flags": t.tcp_flags,
        },
        "func": rec.func,
        "func_column": func_column(rec),
        "drop_reason": rec.reason.unwrap_or(""),
        "drop_reason_code": if rec.reason.is_some() { ev.reason } else { 0 },
        "location": rec.location.unwrap_or(""),
        "ktime_ns": ev.ktime_ns,
        "timestamp": rec.timestamp.unwrap_or(""),
        "tracked": ev.flags & tracer_common::event::FLAG_TRACKED != 0,
        "capture": match ev.capture() {
            tracer_common::event::Capture::Mac => "mac",
            tracer_common::event::Capture::Network => "network",
            tracer_common::event::Capture::None => "none",
        },
        "cap_len": ev.cap_len,
        "stack": rec.stack,
    })
}

impl<W: Write> Printer for JsonPrinter<W> {
    fn header(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn record(&mut self, rec: &Record<'_>) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, &record_value(rec))?;
        self.out.write_all(b"\n")
    }

    fn summary(&mut self, printed: u64, lost: u64) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, &json!({"summary": {"events": printed, "lost": lost}}))?;
        self.out.write_all(b"\n")
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
