//! pwru-compatible text lines.

use std::{
    fmt::Write as _,
    io::{self, Write},
};

use std::net::IpAddr;

use super::{
    Consumer,
    fields::{column, insert_spaces, push_hex, push_hex_digits, push_ip, push_num, push_proto, push_spaces},
    push_func_column, push_local_time,
    skb_fields::{self, CB_WIDTH},
};
use crate::{
    cli::Timestamp,
    config::Columns,
    decode::{Proto, Tuple, push_tcp_flag_names},
    resolve::{Time, TraceEvent},
};

pub struct TextPrinter<W: Write> {
    out: W,
    timestamp: Timestamp,
    columns: Columns,
    line: String,
    /// The widest TUPLE so far: pwru pads the column to it.
    tuple_width: usize,
}

impl<W: Write> TextPrinter<W> {
    pub fn new(out: W, timestamp: Timestamp, columns: Columns) -> Self {
        Self { out, timestamp, columns, line: String::with_capacity(256), tuple_width: 0 }
    }
}

/// `s`'s last `width` bytes with a `~` in front when it is longer, as pwru
/// shortens PROCESS and IFACE.
fn push_trimmed(line: &mut String, s: &str, width: usize) {
    if s.len() <= width {
        line.push_str(s);
        return;
    }
    let mut start = s.len() - (width - 1);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    line.push('~');
    line.push_str(&s[start..]);
}

/// `s` centred in `width` columns, as pwru prints IFACE.
fn push_centred(line: &mut String, width: usize, write: impl FnOnce(&mut String)) {
    let start = line.len();
    write(line);
    let len = line[start..].chars().count();
    if len < width {
        let left = (width - len) / 2;
        insert_spaces(line, start, left);
        push_spaces(line, width - len - left);
    }
}

/// The TUPLE column alone, e.g. `10.0.0.1:53128->10.0.0.2:4000(udp)`.
pub fn tuple_column(t: &Tuple) -> String {
    // Room for two IPv4 endpoints and the protocol: growing from empty took
    // as long as writing the tuple.
    let mut s = String::with_capacity(64);
    push_tuple_column(&mut s, t);
    s
}

/// [`tuple_column`], appended to `out`.
pub fn push_tuple_column(out: &mut String, t: &Tuple) {
    push_tuple(out, t, false);
}

fn push_tuple(line: &mut String, t: &Tuple, tcp_flags: bool) {
    let proto = |line: &mut String| {
        line.push('(');
        push_proto(line, t.proto);
        if tcp_flags && t.proto == Proto::Ip(6) && t.tcp_flags != 0 {
            line.push(':');
            push_tcp_flag_names(line, t.tcp_flags);
        }
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
        let c = &self.columns;
        let mut h = String::new();
        if self.timestamp == Timestamp::Absolute {
            let _ = write!(h, "{:<23} ", "TIME");
        }
        let _ = write!(h, "{:<18} {:<3} {:<16}", "SKB", "CPU", "PROCESS");
        if self.timestamp != Timestamp::None {
            let _ = write!(h, " {:<16}", "TIMESTAMP");
        }
        if c.meta {
            let _ =
                write!(h, " {:<10} {:<8} {:^16} {:<6} {:<5} {:<5}", "NETNS", "MARK/x", "IFACE", "PROTO", "MTU", "LEN");
            if c.cb {
                let _ = write!(h, " {:<CB_WIDTH$}", "__sk_buff->cb[]");
            }
        }
        if let Some(width) = c.netns_names {
            let _ = write!(h, " {:<width$}", "NETNS_NAME");
        }
        if c.tuple {
            h.push_str(" TUPLE");
        }
        h.push_str(" FUNC");
        if c.tunnel {
            h.push_str(" TUNNEL");
        }
        writeln!(self.out, "{h}")
    }

    fn event(&mut self, e: &TraceEvent) -> io::Result<()> {
        // Written straight into one reused buffer: no allocation per event.
        let ev = &e.raw;
        let c = self.columns;
        let line = &mut self.line;
        line.clear();
        if let Some(Time::Absolute { wall_ns, .. }) = e.time {
            column(line, 23, |l| push_local_time(l, wall_ns));
        }
        column(line, 18, |l| push_hex(l, ev.skb, 0));
        column(line, 3, |l| push_num(l, ev.cpu));
        column(line, 16, |l| push_trimmed(l, &e.process, 16));
        if self.timestamp != Timestamp::None {
            column(line, 16, |l| e.time.into_iter().for_each(|t| push_num(l, t.column_ns())));
        }
        if c.meta {
            column(line, 10, |l| push_num(l, ev.netns));
            column(line, 8, |l| push_hex_digits(l, ev.mark.into()));
            let ifname = e.ifname();
            push_centred(line, 16, |l| {
                if ev.ifindex == 0 || ifname.is_empty() {
                    push_num(l, ev.ifindex);
                } else {
                    let mut iface = String::with_capacity(24);
                    iface.push_str(ifname);
                    iface.push(':');
                    push_num(&mut iface, ev.ifindex);
                    push_trimmed(l, &iface, 16);
                }
            });
            line.push(' ');
            column(line, 6, |l| push_hex(l, u16::from_be(ev.protocol).into(), 4));
            column(line, 5, |l| push_num(l, ev.mtu));
            column(line, 5, |l| push_num(l, ev.len));
            if c.cb {
                skb_fields::push_cb(line, &e.skb_fields.as_ref().map_or(Default::default(), |f| f.cb));
                line.push(' ');
            }
        }
        if let Some(width) = c.netns_names {
            column(line, width, |l| {
                let start = l.len();
                l.push_str(e.netns_name.as_deref().unwrap_or(""));
                let mut end = (start + width).min(l.len());
                while !l.is_char_boundary(end) {
                    end -= 1;
                }
                l.truncate(end);
            });
        }
        if c.tuple {
            let start = line.len();
            push_tuple(line, &e.tuple, c.tcp_flags);
            let width = line.len() - start;
            self.tuple_width = self.tuple_width.max(width);
            push_spaces(line, self.tuple_width - width + 1);
        }
        push_func_column(line, e);
        if let Some(fields) = &e.skb_fields {
            skb_fields::push_metadata(line, fields);
        }
        if let Some(nft) = &e.nft {
            let _ = write!(line, " {nft}");
        }
        if c.ct {
            // The Display form is several words, always last but the tunnel.
            match &e.ct {
                Some(ct) => {
                    let _ = write!(line, " {ct}");
                }
                None => line.push_str(" ct=none"),
            }
        }
        if c.tunnel {
            line.push(' ');
            match &e.tunnel {
                Some(t) => push_tuple(line, &t.inner, c.tcp_flags),
                // pwru prints the empty tuple.
                None => line.push_str(":0->:0()"),
            }
        }
        line.push('\n');
        for frame in &e.stack {
            let _ = writeln!(line, "    {frame}");
        }
        if let Some(fields) = &e.skb_fields {
            skb_fields::push_dumps(line, fields);
        }
        self.out.write_all(line.as_bytes())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
