//! One JSON object per line, every field present (zeros included), so that
//! `jq` filters never meet a missing key. The schema is in the README.

use std::io::{self, Write};

use tracer_common::event::{Capture, FLAG_TRACKED};

use super::{
    Printer, Record,
    fields::{push_hex, push_ip, push_num, push_proto},
    push_func_column,
};
use crate::decode::push_tcp_flag_names;

pub struct JsonPrinter<W: Write> {
    out: W,
    /// One line, reused: no allocation per event.
    line: String,
}

impl<W: Write> JsonPrinter<W> {
    pub fn new(out: W) -> Self {
        Self { out, line: String::with_capacity(1024) }
    }
}

fn needs_escape(s: &str) -> bool {
    s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Appends `s` as a JSON string.
fn push_str(out: &mut String, s: &str) {
    if needs_escape(s) {
        out.push_str(&serde_json::to_string(s).expect("a str always serializes"));
    } else {
        out.push('"');
        out.push_str(s);
        out.push('"');
    }
}

/// Writes one object's members in order; the keys are literals.
struct Object<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Object<'a> {
    fn new(out: &'a mut String) -> Self {
        out.push('{');
        Self { out, first: true }
    }

    fn key(&mut self, key: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
        self.out
    }

    fn num(&mut self, key: &str, n: impl itoa::Integer) {
        push_num(self.key(key), n);
    }

    fn str(&mut self, key: &str, s: &str) {
        push_str(self.key(key), s);
    }

    /// A string value that `write` appends and that never needs escaping
    /// (digits, addresses, protocol and flag names).
    fn plain(&mut self, key: &str, write: impl FnOnce(&mut String)) {
        let out = self.key(key);
        out.push('"');
        write(out);
        out.push('"');
    }

    fn end(self) {
        self.out.push('}');
    }
}

impl<W: Write> Printer for JsonPrinter<W> {
    fn header(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn record(&mut self, rec: &Record<'_>) -> io::Result<()> {
        let ev = rec.ev;
        let t = rec.tuple;
        let line = &mut self.line;
        line.clear();
        let mut o = Object::new(line);
        o.plain("skb", |out| push_hex(out, ev.skb, 0));
        o.num("cpu", ev.cpu);
        o.str("process", rec.process);
        o.num("pid", ev.pid);
        o.str("comm", crate::resolve::c_str(&ev.comm));
        o.num("netns", ev.netns);
        o.num("mark", ev.mark);
        o.num("ifindex", ev.ifindex);
        o.str("ifname", rec.ifname);
        o.num("proto", u16::from_be(ev.protocol));
        o.num("mtu", ev.mtu);
        o.num("len", ev.len);
        {
            let mut tuple = Object::new(o.key("tuple"));
            tuple.plain("saddr", |out| t.saddr.into_iter().for_each(|a| push_ip(out, a)));
            tuple.plain("daddr", |out| t.daddr.into_iter().for_each(|a| push_ip(out, a)));
            tuple.num("sport", t.sport);
            tuple.num("dport", t.dport);
            tuple.plain("proto", |out| push_proto(out, t.proto));
            tuple.plain("tcp_flags", |out| push_tcp_flag_names(out, t.tcp_flags));
            tuple.end();
        }
        o.str("func", rec.func);
        let out = o.key("func_column");
        out.push('"');
        let start = out.len();
        push_func_column(out, rec);
        if needs_escape(&out[start..]) {
            let column = out.split_off(start);
            out.pop();
            push_str(out, &column);
        } else {
            out.push('"');
        }
        o.str("drop_reason", rec.reason.unwrap_or(""));
        o.num("drop_reason_code", if rec.reason.is_some() { ev.reason } else { 0 });
        o.str("location", rec.location.unwrap_or(""));
        o.num("ktime_ns", ev.ktime_ns);
        o.str("timestamp", rec.timestamp.unwrap_or(""));
        o.key("tracked").push_str(if ev.flags & FLAG_TRACKED != 0 { "true" } else { "false" });
        o.str(
            "capture",
            match ev.capture() {
                Capture::Mac => "mac",
                Capture::Network => "network",
                Capture::None => "none",
            },
        );
        o.num("cap_len", ev.cap_len);
        let out = o.key("stack");
        out.push('[');
        for (i, frame) in rec.stack.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_str(out, frame);
        }
        out.push(']');
        o.end();
        line.push('\n');
        self.out.write_all(line.as_bytes())
    }

    fn summary(&mut self, printed: u64, lost: u64) -> io::Result<()> {
        writeln!(self.out, r#"{{"summary":{{"events":{printed},"lost":{lost}}}}}"#)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
