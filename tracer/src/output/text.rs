//! pwru-compatible text lines.

use std::{fmt::Write as _, io::{self, Write}};

use super::{Printer, Record, func_column};

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

fn tuple_column(rec: &Record<'_>) -> String {
    let t = rec.tuple;
    match (t.saddr, t.daddr) {
        (Some(s), Some(d)) if t.sport != 0 || t.dport != 0 => {
            format!("{}:{}->{}:{}({})", fmt_addr(s), t.sport, fmt_addr(d), t.dport, t.proto)
        }
        (Some(s), Some(d)) => format!("{}->{}({})", fmt_addr(s), fmt_addr(d), t.proto),
        _ if !t.proto.is_empty() => format!("({})", t.proto),
        _ => String::new(),
    }
}

fn fmt_addr(a: std::net::IpAddr) -> String {
    match a {
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
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
            "{:<18} {:<3} {:<16} {:<10} {:<8} {:>16} {:<6} {:<5} {:<5} {} {}",
            "SKB", "CPU", "PROCESS", "NETNS", "MARK/x", "IFACE", "PROTO", "MTU", "LEN", "TUPLE", "FUNC"
        );
        writeln!(self.out, "{h}")
    }

    fn record(&mut self, rec: &Record<'_>) -> io::Result<()> {
        let ev = rec.ev;
        let line = &mut self.line;
        line.clear();
        if let Some(ts) = rec.timestamp {
            let _ = write!(line, "{ts:<20} ");
        }
        let iface = if ev.ifindex == 0 { "0".to_owned() } else { format!("{}:{}", rec.ifname, ev.ifindex) };
        let _ = write!(
            line,
            "{:<18} {:<3} {:<16} {:<10} {:<8} {:>16} {:#06x} {:<5} {:<5} {} {}",
            format_args!("{:#x}", ev.skb),
            ev.cpu,
            rec.process,
            ev.netns,
            format_args!("{:#x}", ev.mark),
            iface,
            u16::from_be(ev.protocol),
            ev.mtu,
            ev.len,
            tuple_column(rec),
            func_column(rec),
        );
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
