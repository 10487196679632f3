//! pwru-compatible text lines.

use std::{fmt::Write as _, io::{self, Write}};

use super::{Printer, Record, push_func_column};

fn digits(mut n: u32) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

pub struct TextPrinter<W: Write> {
    out: W,
    timestamp: bool,
    line: String,
}

impl<W: Write> TextPrinter<W> {
    pub fn new(out: W, timestamp: bool) -> Self {
        Self { out, timestamp, line: String::with_capacity(256) }
    }
}

/// Appends the TUPLE column: `10.0.0.1:40000->10.0.0.2:4000(udp)`.
fn push_tuple(line: &mut String, rec: &Record<'_>) {
    let t = rec.tuple;
    match (t.saddr, t.daddr) {
        (Some(s), Some(d)) if t.sport != 0 || t.dport != 0 => {
            push_addr(line, s);
            let _ = write!(line, ":{}->", t.sport);
            push_addr(line, d);
            let _ = write!(line, ":{}({})", t.dport, t.proto);
        }
        (Some(s), Some(d)) => {
            push_addr(line, s);
            line.push_str("->");
            push_addr(line, d);
            let _ = write!(line, "({})", t.proto);
        }
        _ if !t.proto.is_none() => {
            let _ = write!(line, "({})", t.proto);
        }
        _ => {}
    }
}

fn push_addr(line: &mut String, a: std::net::IpAddr) {
    let _ = match a {
        std::net::IpAddr::V6(v6) => write!(line, "[{v6}]"),
        std::net::IpAddr::V4(v4) => write!(line, "{v4}"),
    };
}

/// Appends `value` left-aligned in `width` columns.
fn pad_to(line: &mut String, start: usize, width: usize) {
    let used = line.len() - start;
    for _ in used..width {
        line.push(' ');
    }
}

impl<W: Write> Printer for TextPrinter<W> {
    fn header(&mut self) -> io::Result<()> {
        let mut h = String::new();
        if self.timestamp {
            let _ = write!(h, "{:<20} ", "TIME");
        }
        let _ = write!(
            h,
            "{:<18} {:<3} {:<16} {:<10} {:<8} {:>16} {:<6} {:<5} {:<5} TUPLE FUNC",
            "SKB", "CPU", "PROCESS", "NETNS", "MARK/x", "IFACE", "PROTO", "MTU", "LEN"
        );
        writeln!(self.out, "{h}")
    }

    fn record(&mut self, rec: &Record<'_>) -> io::Result<()> {
        // Written straight into one reused buffer: no allocation per event.
        let ev = rec.ev;
        let line = &mut self.line;
        line.clear();
        if let Some(ts) = rec.timestamp {
            let _ = write!(line, "{ts:<20} ");
        }
        let mut col = line.len();
        let _ = write!(line, "{:#x}", ev.skb);
        pad_to(line, col, 18);
        let _ = write!(line, " {:<3} ", ev.cpu);
        col = line.len();
        line.push_str(rec.process);
        pad_to(line, col, 16);
        let _ = write!(line, " {:<10} ", ev.netns);
        col = line.len();
        let _ = write!(line, "{:#x}", ev.mark);
        pad_to(line, col, 8);
        line.push(' ');
        // IFACE is right-aligned in 16 columns, like pwru's.
        let iface_len = if ev.ifindex == 0 { 1 } else { rec.ifname.len() + 1 + digits(ev.ifindex) };
        for _ in iface_len..16 {
            line.push(' ');
        }
        if ev.ifindex == 0 {
            line.push('0');
        } else {
            let _ = write!(line, "{}:{}", rec.ifname, ev.ifindex);
        }
        let _ = write!(line, " {:#06x} {:<5} {:<5} ", u16::from_be(ev.protocol), ev.mtu, ev.len);
        push_tuple(line, rec);
        line.push(' ');
        push_func_column(line, rec);
        line.push('\n');
        for frame in rec.stack {
            let _ = writeln!(line, "    {frame}");
        }
        self.out.write_all(line.as_bytes())
    }

    fn summary(&mut self, _printed: u64, _lost: u64) -> io::Result<()> {
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
