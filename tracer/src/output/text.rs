//! pwru-compatible text lines.

use std::{
    fmt::Write as _,
    io::{self, Write},
};

use std::net::IpAddr;

use super::{
    Consumer,
    fields::{column, push_hex, push_ip, push_num, push_proto},
    push_func_column, push_time,
};
use crate::{decode::Tuple, resolve::TraceEvent};

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
/// The TUPLE column alone, e.g. `10.0.0.1:53128->10.0.0.2:4000(udp)`.
pub fn tuple_column(t: &Tuple) -> String {
    let mut s = String::new();
    push_tuple(&mut s, t);
    s
}

fn push_tuple(line: &mut String, t: &Tuple) {
    let proto = |line: &mut String| {
        line.push('(');
        push_proto(line, t.proto);
        line.push(')');
    };
    match (t.saddr, t.daddr) {
        (Some(s), Some(d)) => {
            let ports = t.sport != 0 || t.dport != 0;
            push_addr(line, s);
            if ports {
                line.push(':');
                push_num(line, t.sport);
            }
            line.push_str("->");
            push_addr(line, d);
            if ports {
                line.push(':');
                push_num(line, t.dport);
            }
            proto(line);
        }
        _ if !t.proto.is_none() => proto(line),
        _ => {}
    }
}

fn push_addr(line: &mut String, a: IpAddr) {
    if a.is_ipv6() {
        line.push('[');
        push_ip(line, a);
        line.push(']');
    } else {
        push_ip(line, a);
    }
}

impl<W: Write> Consumer for TextPrinter<W> {
    fn start(&mut self) -> io::Result<()> {
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

    fn event(&mut self, e: &TraceEvent) -> io::Result<()> {
        // Written straight into one reused buffer: no allocation per event.
        let ev = &e.raw;
        let line = &mut self.line;
        line.clear();
        if self.timestamp {
            column(line, 20, |l| e.time.into_iter().for_each(|t| push_time(l, t)));
        }
        column(line, 18, |l| push_hex(l, ev.skb, 0));
        column(line, 3, |l| push_num(l, ev.cpu));
        column(line, 16, |l| l.push_str(&e.process));
        column(line, 10, |l| push_num(l, ev.netns));
        column(line, 8, |l| push_hex(l, ev.mark.into(), 0));
        // IFACE is right-aligned in 16 columns, like pwru's.
        let ifname = e.ifname();
        let iface_len = if ev.ifindex == 0 { 1 } else { ifname.len() + 1 + digits(ev.ifindex) };
        for _ in iface_len..16 {
            line.push(' ');
        }
        if ev.ifindex == 0 {
            line.push('0');
        } else {
            line.push_str(ifname);
            line.push(':');
            push_num(line, ev.ifindex);
        }
        line.push(' ');
        column(line, 6, |l| push_hex(l, u16::from_be(ev.protocol).into(), 4));
        column(line, 5, |l| push_num(l, ev.mtu));
        column(line, 5, |l| push_num(l, ev.len));
        push_tuple(line, &e.tuple);
        line.push(' ');
        push_func_column(line, e);
        line.push('\n');
        for frame in &e.stack {
            let _ = writeln!(line, "    {frame}");
        }
        self.out.write_all(line.as_bytes())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
